/*
 * monitor.c — what the engine tells about a stream beyond its factors:
 * per-row anomaly statistics (Q/SPE and Hotelling's T² over the top k
 * components), the largest principal angle between two subspaces (drift),
 * and the stability of each reported component (the spectral gap).  Pure
 * numerics like the rest of update/: the control limits, which need
 * distribution quantiles, are the daemon's (daemon/monitor.c, GSL).
 *
 * DEFINITIONS (k = the reported rank, V_k, σ_i, μ, W = the total weight)
 *   c    = V_kᵀ(x − μ), the row's scores;
 *   SPE  = ‖(x − μ) − V_k c‖², the squared prediction error (Q statistic);
 *   T²   = Σ_{i≤k} c_i² / v_i with v_i = σ_i²/W, the variance of the rows
 *          along component i (the weighted population variance);
 *   for a row with gaps (NaN) the row is first completed as queries
 *   complete it (isvd_model_impute's estimator) and SPE covers its
 *   observed values only.
 *   Principal angles between the row spaces of two k × n matrices with
 *   orthonormal rows A and B: sin θ_max = ‖B − (BAᵀ)A‖₂, computed so (not
 *   from cos θ = σ_min(BAᵀ)) to keep small angles accurate.
 *   Stability of component i: g_i = min over its neighbours j of
 *   |σ_i² − σ_j²| / σ_1², against the noise in σ_i² estimated as
 *   s_i = σ_i²·√(2/W) (the standard error of a covariance eigenvalue from W
 *   rows, Anderson 1963) plus, in truncated mode, the energy the model has
 *   not kept (what truncation may have moved between components);
 *   stable when g_i·σ_1² > ISVD_STABILITY_FACTOR · max(s_i, s_j) for both
 *   neighbours.  A component whose σ is that close to a neighbour's is not
 *   determined on its own: only the span of the pair is (its vector turns
 *   freely within it from one block to the next).
 *
 * DESIGN
 *   Scores at ingest (isvd_model_update_scored) are taken against the model
 *   before each block, from one dgemm per block; the workspace comes from
 *   isvd_model_set_scoring(), so the fold allocates nothing.  Exact mode
 *   brings its SVD of R up to date once per block to do so.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* Rows per chunk of the query-time scores. */
#define SCORE_CHUNK 256

/* Variance of component i, or 0 when it has none. */
static double comp_var(const struct isvd_model *m, size_t i)
{
	return m->weight > 0 ? m->sigma[i] * m->sigma[i] / m->weight : 0.0;
}

/* T² of one row from its k scores. */
static double t2_of(const struct isvd_model *m, const double *c, size_t k)
{
	double t2 = 0;

	for (size_t i = 0; i < k; i++) {
		const double v = comp_var(m, i);
		if (v > 0)
			t2 += c[i] * c[i] / v;
	}
	return t2;
}

int isvd_model_scores(const struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                      double *spe, double *t2)
{
	double *coords = NULL, *res = NULL;
	size_t k;
	int err;

	if (!m || (nrows && (!spe || !t2)))
		return ISVD_ERR_INVALID;
	if (m->rows_seen == 0)
		return ISVD_ERR_NOT_READY;
	k = isvd_model_rank(m);   /* refreshes exact mode's SVD */
	const size_t chunk = nrows < SCORE_CHUNK ? nrows : SCORE_CHUNK;
	coords = malloc((k ? k : 1) * (chunk ? chunk : 1) * sizeof *coords);
	res = malloc((chunk ? chunk : 1) * sizeof *res);
	if (!coords || !res) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	err = ISVD_OK;
	for (size_t i0 = 0; i0 < nrows && !err; i0 += chunk) {
		const size_t c = nrows - i0 < chunk ? nrows - i0 : chunk;
		err = isvd_model_project(m, rows + i0 * ld, c, ld, ISVD_SPACE_SCORES, coords, res);
		for (size_t i = 0; i < c && !err; i++) {
			spe[i0 + i] = res[i] * res[i];
			t2[i0 + i] = t2_of(m, coords + i * k, k);
		}
	}
out:
	free(coords);
	free(res);
	return err;
}

void upd_score_fini(struct isvd_model *m)
{
	free(m->score_x);
	free(m->score_c);
	m->score_x = m->score_c = NULL;
}

int isvd_model_set_scoring(struct isvd_model *m, int on)
{
	if (!m || m->frozen)
		return ISVD_ERR_INVALID;
	if (!on) {
		upd_score_fini(m);
		return ISVD_OK;
	}
	if (m->score_x)
		return ISVD_OK;
	m->score_x = malloc(m->n * m->B * sizeof *m->score_x);
	m->score_c = malloc((m->kmax ? m->kmax : 1) * m->B * sizeof *m->score_c);
	if (!m->score_x || !m->score_c) {
		upd_score_fini(m);
		return ISVD_ERR_NOMEM;
	}
	return ISVD_OK;
}

/*
 * Scores of b rows (the block about to be folded: x, ld apart, completed
 * rows with NaN-free values) against the model as it stands; gaps (NaN in
 * orig, may be x itself) are left out of SPE.  Uses m->score_x/score_c.
 */
int upd_score_block(struct isvd_model *m, const double *x, size_t xld, const double *orig,
                    size_t old, size_t b, double *spe, double *t2)
{
	const size_t n = m->n;
	int err;

	if (m->rows_seen == 0 || !(m->weight > 0)) {
		for (size_t i = 0; i < b; i++)
			spe[i] = t2[i] = NAN;   /* nothing to score against yet */
		return ISVD_OK;
	}
	if ((err = upd_refresh(m)))
		return err;
	const size_t k = isvd_model_rank(m);
	double *xc = m->score_x, *c = m->score_c;
	for (size_t i = 0; i < b; i++)
		for (size_t j = 0; j < n; j++)
			xc[i * n + j] = m->center ? x[i * xld + j] - m->mean[j] : x[i * xld + j];
	if (k > 0) {
		cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)k, (int)b, (int)n, 1.0, m->V,
		            (int)n, xc, (int)n, 0.0, c, (int)k);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)b, (int)k, -1.0,
		            m->V, (int)n, c, (int)k, 1.0, xc, (int)n);
	}
	for (size_t i = 0; i < b; i++) {
		const double *r = xc + i * n, *o = orig + i * old;
		double acc = 0, amax = 0;
		for (size_t j = 0; j < n; j++)
			if (!isnan(o[j]) && fabs(r[j]) > amax)
				amax = fabs(r[j]);
		if (amax > 0)   /* scaled, as norm2 in model.c: no square overflows */
			for (size_t j = 0; j < n; j++)
				if (!isnan(o[j])) {
					const double y = r[j] / amax;
					acc += y * y;
				}
		spe[i] = amax * amax * acc;
		t2[i] = t2_of(m, c + i * k, k);
	}
	return ISVD_OK;
}

int isvd_subspace_sin(const double *a, const double *b, size_t k, size_t n, double *sin_max)
{
	double *p = NULL, *d = NULL, *s = NULL, *work = NULL;
	double q = 0;
	int err = ISVD_OK;

	if (!a || !b || !sin_max || n == 0 || k == 0 || k > n)
		return ISVD_ERR_INVALID;
	p = malloc(k * k * sizeof *p);
	d = malloc(k * n * sizeof *d);
	s = malloc(k * sizeof *s);
	if (!p || !d || !s) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	/* rows of a and b are the vectors: as column-major n × k, A = aᵀ.
	 * P = Bᵀ A (k × k), D = B − A Pᵀ (n × k, column-major). */
	cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)k, (int)k, (int)n, 1.0, a,
	            (int)n, b, (int)n, 0.0, p, (int)k);
	memcpy(d, b, k * n * sizeof *d);
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)k, -1.0, a,
	            (int)n, p, (int)k, 1.0, d, (int)n);
	lapack_int info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'N', (lapack_int)n,
	                                      (lapack_int)k, d, (lapack_int)n, s, NULL, 1, NULL, 1,
	                                      &q, -1);
	if (info == 0) {
		work = malloc(((size_t)q + 1) * sizeof *work);
		if (!work) {
			err = ISVD_ERR_NOMEM;
			goto out;
		}
		info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'N', (lapack_int)n, (lapack_int)k,
		                           d, (lapack_int)n, s, NULL, 1, NULL, 1, work,
		                           (lapack_int)q + 1);
	}
	if (info != 0) {
		err = info < 0 ? ISVD_ERR_INVALID : ISVD_ERR_LAPACK;
		goto out;
	}
	*sin_max = s[0] > 1 ? 1 : s[0];
out:
	free(p);
	free(d);
	free(s);
	free(work);
	return err;
}

int isvd_model_stability(const struct isvd_model *m, double *gap, int *stable, size_t *count)
{
	int err;

	if (!m)
		return ISVD_ERR_INVALID;
	if ((err = upd_refresh(m)))
		return err;
	const size_t k = isvd_model_rank(m), r = m->r;
	if (count)
		*count = k;
	if (k == 0)
		return ISVD_OK;
	double kept = 0;
	for (size_t i = 0; i < r; i++)
		kept += m->sigma[i] * m->sigma[i];
	const double s1 = m->sigma[0] * m->sigma[0];
	const double lost = m->mode == ISVD_MODE_TRUNCATED ? fmax(m->energy - kept, 0.0) : 0.0;
	const double rel = m->weight > 0 ? sqrt(2.0 / m->weight) : INFINITY;
	/* below the last kept component: the untracked energy per dimension */
	const double floor2 = m->n > r ? fmax(m->energy - kept, 0.0) / (double)(m->n - r) : 0.0;
	for (size_t i = 0; i < k; i++) {
		const double li = m->sigma[i] * m->sigma[i];
		const double si = li * rel + lost;
		double g = INFINITY;
		int ok = 1;
		for (int side = -1; side <= 1; side += 2) {
			double lj, sj;
			if (side < 0 && i == 0)
				continue;
			if (side < 0) {
				lj = m->sigma[i - 1] * m->sigma[i - 1];
			} else if (i + 1 < r) {
				lj = m->sigma[i + 1] * m->sigma[i + 1];
			} else {
				lj = floor2;
			}
			sj = lj * rel + lost;
			const double d = fabs(li - lj);
			if (d / s1 < g)
				g = d / s1;
			if (!(d > ISVD_STABILITY_FACTOR * fmax(si, sj)))
				ok = 0;
		}
		if (gap)
			gap[i] = isfinite(g) ? g : 1.0;
		if (stable)
			stable[i] = ok;
	}
	return ISVD_OK;
}

int isvd_model_kept(const struct isvd_model *m, double *sigma, size_t *r, double *weight,
                    double *energy)
{
	int err;

	if (!m || !r)
		return ISVD_ERR_INVALID;
	if ((err = upd_refresh(m)))
		return err;
	*r = m->r;
	if (sigma)
		memcpy(sigma, m->sigma, m->r * sizeof *sigma);
	if (weight)
		*weight = m->weight;
	if (energy)
		*energy = m->energy;
	return ISVD_OK;
}
