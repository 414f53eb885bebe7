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

void mon_tail_limits(const struct cfg *cfg, uint64_t rows_seen, const struct isvd_tail *t,
                     struct mon_limits *out)
{
	struct mon_limits lim = { INFINITY, INFINITY };

	out->spe = out->t2 = INFINITY;
	if (rows_seen < mon_warmup(cfg))
		return;
	mon_limits(cfg->monitor.confidence, t->k, t->theta, t->energy, t->weight, &lim);
	out->spe = cfg->monitor.spe_limit > 0 ? cfg->monitor.spe_limit : lim.spe;
	out->t2 = cfg->monitor.t2_limit > 0 ? cfg->monitor.t2_limit : lim.t2;
}

void mon_model_limits(const struct cfg *cfg, const struct isvd_model *m, struct mon_limits *out)
{
	struct isvd_tail t = { 0, { 0, 0, 0 }, 0, 0 };

	out->spe = out->t2 = INFINITY;
	if (!m || isvd_model_rows_seen(m) < mon_warmup(cfg) ||
	    isvd_model_tail(m, &t.k, t.theta, &t.weight, &t.energy) != ISVD_OK)
		return;
	mon_tail_limits(cfg, isvd_model_rows_seen(m), &t, out);
}

/* Smallest SPE limit, relative to the total variance per row. */
#define SPE_FLOOR 1e-12

void mon_limits(double confidence, size_t k, const double theta[3], double energy, double weight,
                struct mon_limits *out)
{
	/* GSL reports a failure by calling abort() unless told otherwise; a
	 * quantile that fails is NaN and leaves its limit infinite instead */
	gsl_set_error_handler_off();
	out->spe = out->t2 = INFINITY;
	if (!(weight > 0) || !(confidence > 0 && confidence < 1))
		return;
	const double t1 = theta[0], t2 = theta[1], t3 = theta[2];
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
