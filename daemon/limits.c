/*
 * limits.c — control limits for SPE and T² (see limits.h for the
 * formulas).  A pure function of the model's spectrum, so it is tested on
 * its own (tests/unit/daemon/test_limits.c) against simulated statistics.
 */
#include "limits.h"

#include <math.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>

uint64_t mon_warmup(const struct cfg *cfg)
{
	return cfg->monitor.warmup_rows ? cfg->monitor.warmup_rows : 10 * cfg->model.rank;
}

void mon_model_limits(const struct cfg *cfg, const struct isvd_model *m, struct mon_limits *out)
{
	double sigma[ISVD_MAX_RANK + 1];   /* kept ≤ k + extra ≤ ISVD_MAX_RANK + 1, checked below */
	double weight = 0, energy = 0;
	struct mon_limits lim = { INFINITY, INFINITY };
	struct isvd_options o;
	size_t r = 0;

	out->spe = out->t2 = INFINITY;
	if (!m || isvd_model_rows_seen(m) < mon_warmup(cfg))
		return;
	isvd_model_options(m, &o);
	if (o.rank + o.extra > ISVD_MAX_RANK + 1 ||
	    isvd_model_kept(m, sigma, &r, &weight, &energy) != ISVD_OK)
		return;
	mon_limits(cfg->monitor.confidence, sigma, r, isvd_model_rank(m), o.dim, energy, weight, &lim);
	out->spe = cfg->monitor.spe_limit > 0 ? cfg->monitor.spe_limit : lim.spe;
	out->t2 = cfg->monitor.t2_limit > 0 ? cfg->monitor.t2_limit : lim.t2;
}

/* Smallest SPE limit, relative to the total variance per row. */
#define SPE_FLOOR 1e-12

void mon_limits(double confidence, const double *sigma, size_t r, size_t k, size_t n,
                double energy, double weight, struct mon_limits *out)
{
	/* GSL reports a failure by calling abort() unless told otherwise; a
	 * quantile that fails is NaN and leaves its limit infinite instead */
	gsl_set_error_handler_off();
	out->spe = out->t2 = INFINITY;
	if (!(weight > 0) || !(confidence > 0 && confidence < 1) || k > r)
		return;
	double kept = 0, t1 = 0, t2 = 0, t3 = 0;
	for (size_t j = 0; j < r; j++)
		kept += sigma[j] * sigma[j];
	for (size_t j = k; j < r; j++) {
		const double l = sigma[j] * sigma[j] / weight;
		t1 += l;
		t2 += l * l;
		t3 += l * l * l;
	}
	if (n > r) {   /* the energy not kept, spread over what is left */
		const double d = (double)(n - r), l = fmax(energy - kept, 0.0) / weight / d;
		t1 += d * l;
		t2 += d * l * l;
		t3 += d * l * l * l;
	}
	const double floor = SPE_FLOOR * energy / weight;
	if (t1 > 0 && t2 > 0 && t3 > 0) {
		/* a + b·χ²_ν with SPE's first three cumulants */
		const double b = t3 / t2, nu = t2 * t2 * t2 / (t3 * t3), a = t1 - b * nu;
		out->spe = a + b * gsl_cdf_chisq_Pinv(confidence, nu);
		if (!isfinite(out->spe))
			out->spe = INFINITY;
		else if (!(out->spe > floor))
			out->spe = floor;
	} else {
		out->spe = floor > 0 ? floor : INFINITY;
	}
	const double nn = weight;
	if (k > 0 && nn > (double)k + 1) {
		/* F_{k, ν} for ν past 1e5 is χ²_k/k to 1e-5 (GSL's F inverse stops
		 * converging out there) */
		const double nu = nn - (double)k;
		double f = nu > 1e5 ? gsl_cdf_chisq_Pinv(confidence, (double)k) / (double)k
		                    : gsl_cdf_fdist_Pinv(confidence, (double)k, nu);
		if (isfinite(f) && f > 0)
			out->t2 = (double)k * (nn - 1) * (nn + 1) / (nn * (nn - (double)k)) * f;
	}
}
