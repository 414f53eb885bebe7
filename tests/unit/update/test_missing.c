/*
 * test_missing.c — rows with gaps (isvd_options.missing = IMPUTE), in both
 * modes, against references computed here:
 *   - random gaps: rank-5 data with noise, n = 64, 20% of the values
 *     missing at random.  The subspace learned from the stream with gaps is
 *     within sin θ ≤ 0.02 of the true one, and filling every row's gaps
 *     with the final model has an RMSE within 1.1× of an offline iterative
 *     SVD imputation of the whole matrix (SVD-impute: fill with the column
 *     means, then repeatedly take LAPACK's rank-5 SVD of the centred matrix
 *     and refill the gaps from it, to convergence);
 *   - a dead sensor: one column missing for 5,000 rows leaves the model as
 *     good as a model fed without gaps, and once the column returns it is
 *     predicted from the others as well as by that model;
 *   - the rules: NaN refused without imputation, ±Inf always, a row with
 *     no observed value refused (nothing applied), warm-up from the mean,
 *     observed values untouched by gap filling, counters, and bit-identical
 *     factors for the same rows in the same blocks;
 *   - queries with gaps (project, reconstruct, impute) against the
 *     estimator written out with LAPACK.
 */
#include "ref.h"

#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

enum { N = 64, K = 5 };

/* The generator's signal basis, orthonormalised: K×N rows. */
static double *true_basis(const struct ref_gen *g)
{
	double *a = ref_alloc(N * K), *tau = ref_alloc(K), *vt = ref_alloc(K * N);
	for (size_t j = 0; j < K; j++)        /* a = basisᵀ, column-major N×K */
		for (size_t i = 0; i < N; i++)
			a[j * N + i] = g->basis[j * N + i];
	assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, N, K, a, N, tau), 0);
	assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, N, K, K, a, N, tau), 0);
	for (size_t j = 0; j < K; j++)
		for (size_t i = 0; i < N; i++)
			vt[j * N + i] = a[j * N + i];
	free(a);
	free(tau);
	return vt;
}

/* Offline SVD-impute of the m×N matrix x with gaps (NaN) at rank K:
 * returns the completed matrix. */
static double *svd_impute(const double *x, size_t m)
{
	double *y = ref_alloc(m * N), *c = ref_alloc(m * N), *mu = ref_alloc(N);
	double *s = ref_alloc(N), *vt = ref_alloc(N * N), *sc = ref_alloc(K);
	for (size_t j = 0; j < N; j++) {
		double sum = 0;
		size_t cnt = 0;
		for (size_t i = 0; i < m; i++)
			if (!isnan(x[i * N + j])) {
				sum += x[i * N + j];
				cnt++;
			}
		for (size_t i = 0; i < m; i++)
			y[i * N + j] = isnan(x[i * N + j]) ? sum / (double)cnt : x[i * N + j];
	}
	for (int it = 0; it < 200; it++) {
		memset(mu, 0, N * sizeof *mu);
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < N; j++)
				mu[j] += y[i * N + j] / (double)m;
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < N; j++)
				c[i * N + j] = y[i * N + j] - mu[j];
		ref_svd(c, m, N, N, s, vt);
		double change = 0, scale = 0;
		for (size_t i = 0; i < m; i++) {
			const double *row = y + i * N;
			for (size_t q = 0; q < K; q++) {
				sc[q] = 0;
				for (size_t j = 0; j < N; j++)
					sc[q] += (row[j] - mu[j]) * vt[q * N + j];
			}
			for (size_t j = 0; j < N; j++) {
				if (!isnan(x[i * N + j]))
					continue;
				double v = mu[j];
				for (size_t q = 0; q < K; q++)
					v += sc[q] * vt[q * N + j];
				change += (v - y[i * N + j]) * (v - y[i * N + j]);
				scale += v * v;
				y[i * N + j] = v;
			}
		}
		if (change <= 1e-20 * scale)
			break;
	}
	free(c); free(mu); free(s); free(vt); free(sc);
	return y;
}

/* RMSE over the gaps of x (NaN) between a completed matrix and the truth. */
static double gap_rmse(const double *x, const double *filled, const double *truth, size_t m)
{
	double acc = 0;
	size_t cnt = 0;
	for (size_t i = 0; i < m * N; i++)
		if (isnan(x[i])) {
			acc += (filled[i] - truth[i]) * (filled[i] - truth[i]);
			cnt++;
		}
	return sqrt(acc / (double)cnt);
}

static struct isvd_model *impute_model(int mode, size_t rank)
{
	struct isvd_options o = ref_options(N, rank, 5);
	o.mode = mode;
	o.center = 1;
	o.missing = ISVD_MISSING_IMPUTE;
	return ref_create(&o);
}

static void random_gaps(int mode)
{
	const size_t m = 8000;
	struct ref_gen g;
	ref_gen_init(&g, 101, N, K, 0.8, 0.05, 2.0);
	double *truth = ref_alloc(m * N), *x = ref_alloc(m * N), *filled = ref_alloc(m * N);
	ref_gen_rows(&g, truth, m, N);
	struct ref_rng r;
	ref_rng_seed(&r, 7);
	size_t holes = 0;
	for (size_t i = 0; i < m * N; i++) {
		x[i] = ref_rng_uniform(&r) < 0.2 ? NAN : truth[i];
		holes += isnan(x[i]);
	}
	struct isvd_model *md = impute_model(mode, K);
	ref_feed(md, x, m, N, 0, 100, 3);

	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_int_equal(info.missing, ISVD_MISSING_IMPUTE);
	assert_int_equal(info.values_imputed, holes);
	assert_int_equal(info.rows_seen, m);

	double *vt_true = true_basis(&g), *s, *vt, *mu;
	size_t rk;
	ref_factors(md, &s, &vt, &mu, &rk);
	assert_int_equal(rk, K);
	const double sin = ref_sin_angle(vt, vt_true, K, N);
	/* the same stream without gaps, for scale: finite samples already cost
	 * some of the 0.02 */
	struct isvd_model *nogap = impute_model(mode, K);
	ref_feed(nogap, truth, m, N, 0, 100, 3);
	double *s0, *vt0, *mu0;
	ref_factors(nogap, &s0, &vt0, &mu0, &rk);
	const double sin0 = ref_sin_angle(vt0, vt_true, K, N);
	free(s0); free(vt0); free(mu0);
	isvd_model_destroy(nogap);

	REF_ASSERT_OK(isvd_model_impute(md, x, m, N, filled));
	for (size_t i = 0; i < m * N; i++)      /* observed values untouched */
		if (!isnan(x[i]))
			assert_memory_equal(&filled[i], &x[i], sizeof x[i]);
	const double rmse = gap_rmse(x, filled, truth, m);
	double *ref = svd_impute(x, m);
	const double rmse_ref = gap_rmse(x, ref, truth, m);
	print_message("%s: sin to the true subspace %.4f (%.4f without gaps); gap RMSE %.5f, "
	              "offline SVD-impute %.5f (ratio %.3f); noise 0.05\n", isvd_mode_name(mode),
	              sin, sin0, rmse, rmse_ref, rmse / rmse_ref);
	REF_ASSERT_LE(sin, 0.02);
	REF_ASSERT_LE(rmse, 1.1 * rmse_ref);

	free(ref); free(vt_true); free(s); free(vt); free(mu);
	free(truth); free(x); free(filled);
	ref_gen_fini(&g);
	isvd_model_destroy(md);
}

static void test_random_gaps_truncated(void **state)
{
	(void)state;
	random_gaps(ISVD_MODE_TRUNCATED);
}

static void test_random_gaps_exact(void **state)
{
	(void)state;
	random_gaps(ISVD_MODE_EXACT);
}

/* Column 0 dead for rows [1000, 6000) of 8000. */
static void dead_sensor(int mode)
{
	const size_t m = 8000, probe = 500;
	struct ref_gen g;
	ref_gen_init(&g, 202, N, K, 0.8, 0.05, 2.0);
	double *truth = ref_alloc(m * N), *x = ref_alloc(m * N);
	double *fresh = ref_alloc(probe * N), *masked = ref_alloc(probe * N);
	double *fa = ref_alloc(probe * N), *fb = ref_alloc(probe * N);
	ref_gen_rows(&g, truth, m, N);
	ref_gen_rows(&g, fresh, probe, N);
	memcpy(x, truth, m * N * sizeof *x);
	for (size_t i = 1000; i < 6000; i++)
		x[i * N] = NAN;
	double *vt_true = true_basis(&g);

	struct isvd_model *gap = impute_model(mode, K), *full = impute_model(mode, K);
	ref_feed(gap, x, 6000, N, 64, 0, 0);
	ref_feed(full, truth, 6000, N, 64, 0, 0);
	double *s, *vg, *vf, *mu;
	size_t rk;
	ref_factors(gap, &s, &vg, &mu, &rk);
	free(s); free(mu);
	ref_factors(full, &s, &vf, &mu, &rk);
	free(s); free(mu);
	const double sin_gap = ref_sin_angle(vg, vt_true, K, N);
	const double sin_full = ref_sin_angle(vf, vt_true, K, N);
	print_message("%s, after the outage: sin to the truth %.4f with it, %.4f without\n",
	              isvd_mode_name(mode), sin_gap, sin_full);
	REF_ASSERT_LE(sin_gap, 1.5 * sin_full + 1e-3);
	free(vg); free(vf);

	/* the column returns: the rest of the stream, then predict column 0 of
	 * fresh rows from the other 63 with each model */
	ref_feed(gap, x + 6000 * N, m - 6000, N, 64, 0, 0);
	ref_feed(full, truth + 6000 * N, m - 6000, N, 64, 0, 0);
	memcpy(masked, fresh, probe * N * sizeof *masked);
	for (size_t i = 0; i < probe; i++)
		masked[i * N] = NAN;
	REF_ASSERT_OK(isvd_model_impute(gap, masked, probe, N, fa));
	REF_ASSERT_OK(isvd_model_impute(full, masked, probe, N, fb));
	const double ra = gap_rmse(masked, fa, fresh, probe);
	const double rb = gap_rmse(masked, fb, fresh, probe);
	print_message("%s, column 0 predicted after it returned: RMSE %.5f (model with the "
	              "outage), %.5f (without)\n", isvd_mode_name(mode), ra, rb);
	REF_ASSERT_LE(ra, 1.1 * rb);
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(gap, &info));
	assert_int_equal(info.rows_with_gaps, 5000);
	assert_int_equal(info.values_imputed, 5000);

	free(truth); free(x); free(fresh); free(masked); free(fa); free(fb); free(vt_true);
	ref_gen_fini(&g);
	isvd_model_destroy(gap);
	isvd_model_destroy(full);
}

static void test_dead_sensor_truncated(void **state)
{
	(void)state;
	dead_sensor(ISVD_MODE_TRUNCATED);
}

static void test_dead_sensor_exact(void **state)
{
	(void)state;
	dead_sensor(ISVD_MODE_EXACT);
}

static void test_rules(void **state)
{
	(void)state;
	for (int mode = ISVD_MODE_EXACT; mode <= ISVD_MODE_TRUNCATED; mode++) {
		double rows[3 * 4] = { 1, 2, 3, 4,  NAN, 1, NAN, 2,  5, 6, 7, 8 };
		/* without imputation a NaN is refused whole */
		struct isvd_options o = ref_options(4, 2, 1);
		o.mode = mode;
		o.center = 1;
		struct isvd_model *rej = ref_create(&o);
		REF_ASSERT_ERR(isvd_model_update(rej, rows, 3, 4), ISVD_ERR_NONFINITE);
		assert_int_equal(isvd_model_rows_seen(rej), 0);

		/* with it: ±Inf refused, a row of gaps refused, nothing applied */
		struct isvd_model *md = impute_model(mode, 2);
		isvd_model_destroy(md);
		o.missing = ISVD_MISSING_IMPUTE;
		md = ref_create(&o);
		double inf[4] = { 1, INFINITY, NAN, 2 };
		REF_ASSERT_ERR(isvd_model_update(md, inf, 1, 4), ISVD_ERR_NONFINITE);
		double none[2 * 4] = { 1, 2, 3, 4,  NAN, NAN, NAN, NAN };
		REF_ASSERT_ERR(isvd_model_update(md, none, 2, 4), ISVD_ERR_GAPS);
		assert_int_equal(isvd_model_rows_seen(md), 0);
		assert_int_equal(isvd_row_observed(none + 4, 4), 0);
		assert_int_equal(isvd_row_observed(rows + 4, 4), 2);

		/* warm-up: the first row's gap takes the mean, 0 before any row */
		double first[4] = { NAN, 2, 3, 4 };
		REF_ASSERT_OK(isvd_model_update(md, first, 1, 4));
		double mean[4];
		REF_ASSERT_OK(isvd_model_factors(md, NULL, NULL, mean, NULL));
		REF_ASSERT_CLOSE(mean[0], 0.0, 0.0);
		REF_ASSERT_CLOSE(mean[3], 4.0, 0.0);
		/* later rows: gaps filled, observed values kept, counters */
		REF_ASSERT_OK(isvd_model_update(md, rows, 3, 4));
		struct isvd_info info;
		REF_ASSERT_OK(isvd_model_info(md, &info));
		assert_int_equal(info.rows_with_gaps, 2);
		assert_int_equal(info.values_imputed, 3);
		double out[3 * 4];
		REF_ASSERT_OK(isvd_model_impute(md, rows, 3, 4, out));
		for (int i = 0; i < 12; i++)
			if (!isnan(rows[i]))
				REF_ASSERT_CLOSE(out[i], rows[i], 0.0);
			else
				assert_true(isfinite(out[i]));
		REF_ASSERT_ERR(isvd_model_impute(md, none, 2, 4, out), ISVD_ERR_GAPS);
		/* the setting reads back, turns off, and is refused out of range */
		struct isvd_options got;
		REF_ASSERT_OK(isvd_model_options(md, &got));
		assert_int_equal(got.missing, ISVD_MISSING_IMPUTE);
		REF_ASSERT_OK(isvd_model_set_missing(md, ISVD_MISSING_REJECT));
		REF_ASSERT_ERR(isvd_model_update(md, rows, 3, 4), ISVD_ERR_NONFINITE);
		REF_ASSERT_ERR(isvd_model_set_missing(md, 7), ISVD_ERR_INVALID);
		o.missing = 2;
		struct isvd_model *bad = NULL;
		REF_ASSERT_ERR(isvd_model_create(&o, &bad), ISVD_ERR_INVALID);
		isvd_model_destroy(rej);
		isvd_model_destroy(md);
	}
}

/* The same rows with gaps in the same blocks: bit-identical factors (what
 * replay after a crash relies on). */
static void test_deterministic(void **state)
{
	(void)state;
	const size_t m = 3000;
	double *x = ref_make_rows(303, m, N, K, 0.8, 0.05, 1.0);
	struct ref_rng r;
	ref_rng_seed(&r, 9);
	for (size_t i = 0; i < m * N; i++)
		if (ref_rng_uniform(&r) < 0.1)
			x[i] = NAN;
	struct isvd_model *a = impute_model(ISVD_MODE_TRUNCATED, K);
	struct isvd_model *b = impute_model(ISVD_MODE_TRUNCATED, K);
	ref_feed(a, x, m, N, 0, 200, 4);
	ref_feed(b, x, m, N, 0, 200, 4);
	ref_assert_same_image(a, b);
	free(x);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
}

/* The estimator written out with LAPACK, for a row with gaps: out gets the
 * row completed.  PPCA over the r kept components (extra = 0, so the r
 * reported ones), in both modes: c solves (V_OᵀV_O + s²·diag(W/σ_i²)) c =
 * V_Oᵀd, s² = (E − Σσ²)/(W(n − r)), and x_M = μ_M + V_M c. */
static void reference_fill(const double *row, const double *sigma, const double *vt,
                           const double *mean, double s2, double weight, double *out)
{
	size_t obs[N], gap[N], no = 0, ng = 0;
	double d[N];
	for (size_t j = 0; j < N; j++) {
		d[j] = isnan(row[j]) ? 0.0 : row[j] - mean[j];
		if (isnan(row[j]))
			gap[ng++] = j;
		else
			obs[no++] = j;
		out[j] = row[j];
	}
	if (ng == 0)
		return;
	double g[K * K] = { 0 }, c[K] = { 0 };
	for (size_t a = 0; a < K; a++) {
		for (size_t q = 0; q < no; q++)
			c[a] += vt[a * N + obs[q]] * d[obs[q]];
		for (size_t b = 0; b < K; b++)
			for (size_t q = 0; q < no; q++)
				g[a * K + b] += vt[a * N + obs[q]] * vt[b * N + obs[q]];
		g[a * K + a] += s2 * weight / (sigma[a] * sigma[a]);
	}
	assert_int_equal(LAPACKE_dposv(LAPACK_COL_MAJOR, 'U', K, 1, g, K, c, K), 0);
	for (size_t q = 0; q < ng; q++) {
		double v = mean[gap[q]];
		for (size_t a = 0; a < K; a++)
			v += vt[a * N + gap[q]] * c[a];
		out[gap[q]] = v;
	}
}

/* Queries with gaps, against reference_fill(): a row with gaps is
 * completed by the estimator and answered as a complete row, its residual
 * over the observed values only; impute returns the completed rows.  Rows
 * without gaps in the same call get the plain answers. */
static void queries_with_gaps(int mode)
{
	const size_t m = 3000, q = 24;
	double *x = ref_make_rows(404, m + q, N, K, 0.8, 0.05, 1.0);
	struct isvd_options o = ref_options(N, K, 0);
	o.mode = mode;
	o.center = 1;
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, x, m, N, 0, 250, 4);
	double *y = x + m * N;           /* q query rows; row 0 keeps every value */
	struct ref_rng r;
	ref_rng_seed(&r, 11);
	for (size_t i = N; i < q * N; i++)
		if (ref_rng_uniform(&r) < 0.3)
			y[i] = NAN;
	y[3 * N + 5] = NAN;              /* at least one gap in row 3 */
	double *sigma, *vt, *mean;
	size_t k;
	ref_factors(md, &sigma, &vt, &mean, &k);
	assert_int_equal(k, K);
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	double cap = 0;
	for (size_t i = 0; i < k; i++)
		cap += sigma[i] * sigma[i];
	double s2 = (info.energy_total - cap) / (info.weight_total * (double)(N - k));
	assert_true(s2 > 1e-12 * sigma[0] * sigma[0] / info.weight_total);   /* no floor here */

	double coords[24 * K], ucoords[24 * K], resid[24], rec[24 * N], fill[24 * N];
	REF_ASSERT_OK(isvd_model_project(md, y, q, N, ISVD_SPACE_SCORES, coords, resid));
	REF_ASSERT_OK(isvd_model_project(md, y, q, N, ISVD_SPACE_U, ucoords, NULL));
	REF_ASSERT_OK(isvd_model_reconstruct(md, y, q, N, rec));
	REF_ASSERT_OK(isvd_model_impute(md, y, q, N, fill));
	double gap_change = 0;
	for (size_t i = 0; i < q; i++) {
		const double *row = y + i * N;
		double xh[N], d[N], c[K] = { 0 };
		reference_fill(row, sigma, vt, mean, s2, info.weight_total, xh);
		for (size_t j = 0; j < N; j++) {
			d[j] = xh[j] - mean[j];
			if (isnan(row[j])) {
				REF_ASSERT_CLOSE(fill[i * N + j], xh[j], 1e-8 * (1 + fabs(xh[j])));
				gap_change = fmax(gap_change, fabs(xh[j] - mean[j]));
			} else {
				assert_true(fill[i * N + j] == row[j]);
			}
		}
		for (size_t a = 0; a < K; a++)
			for (size_t j = 0; j < N; j++)
				c[a] += vt[a * N + j] * d[j];
		double res = 0;
		for (size_t j = 0; j < N; j++) {
			double v = 0;
			for (size_t a = 0; a < K; a++)
				v += vt[a * N + j] * c[a];
			REF_ASSERT_CLOSE(rec[i * N + j], mean[j] + v, 1e-8 * (1 + fabs(mean[j] + v)));
			if (!isnan(row[j]))
				res += (d[j] - v) * (d[j] - v);
		}
		for (size_t a = 0; a < K; a++) {
			REF_ASSERT_CLOSE(coords[i * K + a], c[a], 1e-8 * (1 + fabs(c[a])));
			REF_ASSERT_CLOSE(ucoords[i * K + a], c[a] / sigma[a], 1e-8 * (1 + fabs(c[a] / sigma[a])));
		}
		REF_ASSERT_CLOSE(resid[i], sqrt(res), 1e-8 * (1 + sqrt(res)));
	}
	assert_true(gap_change > 0.1);   /* the gaps were filled with something */
	/* ±Inf is still refused by queries; a row with nothing observed too */
	y[2 * N + 1] = INFINITY;
	REF_ASSERT_ERR(isvd_model_project(md, y, q, N, ISVD_SPACE_SCORES, coords, resid),
	               ISVD_ERR_NONFINITE);
	for (size_t j = 0; j < N; j++)
		y[2 * N + j] = NAN;
	REF_ASSERT_ERR(isvd_model_reconstruct(md, y, q, N, rec), ISVD_ERR_GAPS);
	free(sigma); free(vt); free(mean); free(x);
	isvd_model_destroy(md);
}

static void test_queries_truncated(void **state)
{
	(void)state;
	queries_with_gaps(ISVD_MODE_TRUNCATED);
}

static void test_queries_exact(void **state)
{
	(void)state;
	queries_with_gaps(ISVD_MODE_EXACT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_gaps_truncated),
		cmocka_unit_test(test_random_gaps_exact),
		cmocka_unit_test(test_dead_sensor_truncated),
		cmocka_unit_test(test_dead_sensor_exact),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_queries_truncated),
		cmocka_unit_test(test_queries_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
