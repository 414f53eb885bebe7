/*
 * test_monitor.c — the engine's monitoring statistics (monitor.c) against
 * references computed here from the model's factors and LAPACK:
 *   - SPE and T² of query rows, with and without gaps, in both modes;
 *   - scores at ingest are those of the model before each block, and the
 *     first block's are NaN;
 *   - exact and truncated modes give the same scores where both are exact;
 *   - the largest principal angle of a known rotation, small and large;
 *   - stability: two equal variances are both unstable, a clear gap is
 *     stable;
 *   - the tail moments the SPE limit is computed from (isvd_model_tail):
 *     exact mode's against LAPACK's SVD of all rows, on a snapshot and on
 *     the scoring model between blocks (whose basis the next block's
 *     scores then use); truncated mode's from its kept values;
 *   - the scoring thread (a model of one thread, both modes): scores and
 *     tails bit for bit those of the serial order, the model untouched;
 *   - a spectrum with no gap past k (refinement cannot converge): the
 *     eigenpairs are taken instead, refinement is retried after a growing
 *     wait, and the scores are still the model's.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "../../../update/internal.h"
#include "../../../update/par.h"

enum { N = 32, K = 4 };

/* SPE and T² of one row from the model's reported factors. */
static void reference_scores(const double *x, const double *sigma, const double *vt,
                             const double *mean, size_t k, double weight, double *spe,
                             double *t2)
{
	double d[N], c[N];
	for (size_t j = 0; j < N; j++)
		d[j] = x[j] - mean[j];
	*t2 = 0;
	for (size_t a = 0; a < k; a++) {
		c[a] = 0;
		for (size_t j = 0; j < N; j++)
			c[a] += vt[a * N + j] * d[j];
		*t2 += c[a] * c[a] / (sigma[a] * sigma[a] / weight);
	}
	*spe = 0;
	for (size_t j = 0; j < N; j++) {
		double v = d[j];
		for (size_t a = 0; a < k; a++)
			v -= vt[a * N + j] * c[a];
		*spe += v * v;
	}
}

static struct isvd_model *model(int mode, size_t k, size_t extra)
{
	struct isvd_options o = ref_options(N, k, extra);
	o.mode = mode;
	o.center = 1;
	return ref_create(&o);
}

/* An exact model of one thread (isvdd's model.threads default): the one
 * whose blocks are scored on the scoring thread. */
static struct isvd_model *model1(int mode, size_t k, size_t extra)
{
	struct isvd_options o = ref_options(N, k, extra);
	o.mode = mode;
	o.center = 1;
	o.threads = 1;
	return ref_create(&o);
}

/* The b scores spe, t2 of rows x at ingest are the query scores of twin,
 * a model without scoring fed the same blocks before them, to rel. */
static void assert_twin_scores(struct isvd_model *twin, const double *x, size_t b,
                               const double *spe, const double *t2, double rel)
{
	double *ws = ref_alloc(b), *wt = ref_alloc(b);
	REF_ASSERT_OK(isvd_model_scores(twin, x, b, N, ws, wt));
	for (size_t j = 0; j < b; j++) {
		REF_ASSERT_CLOSE(spe[j], ws[j], rel * (1 + ws[j]));
		REF_ASSERT_CLOSE(t2[j], wt[j], rel * (1 + wt[j]));
	}
	free(ws);
	free(wt);
}

static void query_scores(int mode)
{
	double *x = ref_make_rows(51, 2000 + 16, N, K + 2, 0.7, 0.05, 1.5);
	struct isvd_model *md = model(mode, K, 3);
	ref_feed(md, x, 2000, N, 0, 150, 5);
	double *q = x + 2000 * N, spe[16], t2[16], *sigma, *vt, *mean;
	size_t k;
	REF_ASSERT_OK(isvd_model_scores(md, q, 16, N, spe, t2));
	ref_factors(md, &sigma, &vt, &mean, &k);
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	for (size_t i = 0; i < 16; i++) {
		double rs, rt;
		reference_scores(q + i * N, sigma, vt, mean, k, info.weight_total, &rs, &rt);
		REF_ASSERT_CLOSE(spe[i], rs, 1e-10 * (1 + rs));
		REF_ASSERT_CLOSE(t2[i], rt, 1e-10 * (1 + rt));
		assert_true(rs > 0 && rt > 0);
	}
	/* a row with gaps: SPE is project's residual squared (over the
	 * observed values), T² from its completed row's scores */
	double g[N], coords[K], res;
	memcpy(g, q, sizeof g);
	g[3] = g[17] = NAN;
	REF_ASSERT_OK(isvd_model_scores(md, g, 1, N, spe, t2));
	REF_ASSERT_OK(isvd_model_project(md, g, 1, N, ISVD_SPACE_SCORES, coords, &res));
	REF_ASSERT_CLOSE(spe[0], res * res, 1e-12 * (1 + res * res));
	double want = 0;
	for (size_t a = 0; a < k; a++)
		want += coords[a] * coords[a] / (sigma[a] * sigma[a] / info.weight_total);
	REF_ASSERT_CLOSE(t2[0], want, 1e-12 * (1 + want));
	/* refusals */
	struct isvd_model *empty = model(mode, K, 3);
	REF_ASSERT_ERR(isvd_model_scores(empty, q, 1, N, spe, t2), ISVD_ERR_NOT_READY);
	REF_ASSERT_ERR(isvd_model_scores(md, q, 1, N, NULL, t2), ISVD_ERR_INVALID);
	g[0] = INFINITY;
	REF_ASSERT_ERR(isvd_model_scores(md, g, 1, N, spe, t2), ISVD_ERR_NONFINITE);
	isvd_model_destroy(empty);
	free(sigma); free(vt); free(mean); free(x);
	isvd_model_destroy(md);
}

static void test_query_scores_truncated(void **state)
{
	(void)state;
	query_scores(ISVD_MODE_TRUNCATED);
}

static void test_query_scores_exact(void **state)
{
	(void)state;
	query_scores(ISVD_MODE_EXACT);
}

/* Ingest scores are the query scores of the model before each block: a
 * twin model fed the same blocks without scoring answers the same.  With
 * noise 0 the rows are of rank K − 1 (K with the offset, uncentred): they
 * lie in the top k's span, so SPE = ‖x − μ‖² − ‖c‖² cancels and the
 * residual is taken instead. */
static void ingest_scores(int mode, int center, double noise)
{
	const size_t m = 1500;
	double *x = ref_make_rows(52, m, N, noise > 0 ? K + 2 : K - 1, 0.7, noise, 1.5);
	struct isvd_options o = ref_options(N, K, 3);
	o.mode = mode;
	o.center = center;
	struct isvd_model *md = ref_create(&o), *twin = ref_create(&o);
	double *spe = ref_alloc(m), *t2 = ref_alloc(m);
	struct ref_rng r;
	ref_rng_seed(&r, 3);
	size_t i = 0, blocks = 0;
	while (i < m) {
		size_t b = ref_rng_range(&r, 1, 200);
		if (b > m - i)
			b = m - i;
		REF_ASSERT_OK(isvd_model_update_scored(md, x + i * N, b, N, spe + i, t2 + i));
		if (i == 0) {
			for (size_t j = 0; j < b; j++)
				assert_true(isnan(spe[j]) && isnan(t2[j]));
		} else {
			assert_twin_scores(twin, x + i * N, b, spe + i, t2 + i, 1e-9);
		}
		REF_ASSERT_OK(isvd_model_update(twin, x + i * N, b, N));
		i += b;
		blocks++;
	}
	assert_true(blocks > 5);
	ref_assert_same_image(md, twin);   /* scoring does not touch the model */
	free(spe); free(t2); free(x);
	isvd_model_destroy(md);
	isvd_model_destroy(twin);
}

static void test_ingest_scores_truncated(void **state)
{
	(void)state;
	ingest_scores(ISVD_MODE_TRUNCATED, 1, 0.05);
}

static void test_ingest_scores_exact(void **state)
{
	(void)state;
	ingest_scores(ISVD_MODE_EXACT, 1, 0.05);
}

/* Without centring the scores read the rows in place (no copy). */
static void test_ingest_scores_uncentred(void **state)
{
	(void)state;
	ingest_scores(ISVD_MODE_EXACT, 0, 0.05);
	ingest_scores(ISVD_MODE_TRUNCATED, 0, 0.05);
	ingest_scores(ISVD_MODE_EXACT, 0, 0.0);
	ingest_scores(ISVD_MODE_TRUNCATED, 1, 0.0);
}

/* Data of rank 3 with k = 3 and extra = 2: truncation loses nothing, so
 * both modes hold the same model and score alike. */
static void test_modes_agree(void **state)
{
	(void)state;
	double *x = ref_make_rows(53, 800 + 8, N, 3, 0.8, 0.0, 2.0);
	for (size_t i = 800 * N; i < 808 * N; i++)   /* queries off the subspace too */
		x[i] += 0.01 * (double)((i * 7919) % 13);
	struct isvd_model *a = model(ISVD_MODE_EXACT, 3, 2), *b = model(ISVD_MODE_TRUNCATED, 3, 2);
	ref_feed(a, x, 800, N, 0, 100, 1);
	ref_feed(b, x, 800, N, 0, 100, 2);
	double sa[8], ta[8], sb[8], tb[8];
	REF_ASSERT_OK(isvd_model_scores(a, x + 800 * N, 8, N, sa, ta));
	REF_ASSERT_OK(isvd_model_scores(b, x + 800 * N, 8, N, sb, tb));
	for (size_t i = 0; i < 8; i++) {
		REF_ASSERT_CLOSE(sa[i], sb[i], 1e-8 * (1 + sa[i]));
		REF_ASSERT_CLOSE(ta[i], tb[i], 1e-8 * (1 + ta[i]));
	}
	free(x);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
}

/* B = A with its first vector turned by θ toward a direction orthogonal to
 * A: the largest principal angle is θ. */
/* θ_p = Σ_{j≥k} (s_j²/W)^p from LAPACK's singular values of the weighted,
 * centred rows. */
static void reference_tail(const double *x, size_t m, size_t k, double theta[3], double *w)
{
	double *a = ref_alloc(m * N), s[N];
	ref_weighted(x, m, N, 1.0, 1, a, NULL, w);
	ref_svd(a, m, N, N, s, NULL);
	theta[0] = theta[1] = theta[2] = 0;
	for (size_t j = k; j < N; j++) {
		const double v = s[j] * s[j] / *w;
		theta[0] += v;
		theta[1] += v * v;
		theta[2] += v * v * v;
	}
	free(a);
}

static void test_tail_exact(void **state)
{
	(void)state;
	const size_t m = 3000, b = 250;
	double *x = ref_make_rows(54, m, N, K + 2, 0.7, 0.05, 1.5);
	struct isvd_model *md = model(ISVD_MODE_EXACT, K, 3), *twin = model(ISVD_MODE_EXACT, K, 3);
	double *spe = ref_alloc(b), *t2 = ref_alloc(b);
	REF_ASSERT_OK(isvd_model_set_scoring(md, 1));
	for (size_t i = 0; i < m; i += b) {
		if (i > 0) {
			double theta[3], ref[3], w, wr, e;
			size_t k;
			/* the scoring model between blocks: its refined basis */
			REF_ASSERT_OK(isvd_model_tail(md, &k, theta, &w, &e));
			reference_tail(x, i, K, ref, &wr);
			assert_int_equal(k, K);
			REF_ASSERT_CLOSE(w, wr, 1e-12 * wr);
			for (int p = 0; p < 3; p++)
				REF_ASSERT_CLOSE(theta[p], ref[p], 1e-9 * ref[p]);
			/* the twin without scoring: the SVD of R, the same θ */
			double t2nd[3];
			REF_ASSERT_OK(isvd_model_tail(twin, &k, t2nd, NULL, NULL));
			for (int p = 0; p < 3; p++)
				REF_ASSERT_CLOSE(theta[p], t2nd[p], 1e-9 * t2nd[p]);
		}
		/* the block's scores, against the basis the tail kept, are still
		 * those of the model before the block */
		REF_ASSERT_OK(isvd_model_update_scored(md, x + i * N, b, N, spe, t2));
		if (i > 0) {
			assert_twin_scores(twin, x + i * N, b, spe, t2, 1e-9);
		}
		REF_ASSERT_OK(isvd_model_update(twin, x + i * N, b, N));
	}
	free(spe); free(t2); free(x);
	isvd_model_destroy(md);
	isvd_model_destroy(twin);
}

/* Rows with variances 1 + 1/j along a random orthonormal basis (j = 1 …
 * N), plus an offset: no gap anywhere, so the top K are determined (the
 * variances are distinct) but subspace iteration on K + 3 columns gains
 * only (λ_{K+4}/λ_K)² ≈ 0.87 a step. */
static double *flat_rows(uint64_t seed, size_t m)
{
	struct ref_rng r;
	double *q = ref_alloc(N * N), *x = ref_alloc(m * N), tau[N];
	ref_rng_seed(&r, seed);
	for (size_t i = 0; i < N * N; i++)
		q[i] = ref_rng_normal(&r);
	REF_ASSERT_OK(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, N, N, q, N, tau));
	REF_ASSERT_OK(LAPACKE_dorgqr(LAPACK_COL_MAJOR, N, N, N, q, N, tau));
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < N; j++) {
			const double z = sqrt(1.0 + 1.0 / (double)(j + 1)) * ref_rng_normal(&r);
			for (size_t c = 0; c < N; c++)
				x[i * N + c] += z * q[j * N + c];
		}
	for (size_t i = 0; i < m * N; i++)
		x[i] += 3.0;
	free(q);
	return x;
}

/* The scoring thread computes what the serial order computes: a model
 * whose scoring thread is taken away (spool NULL: serial) and one with it
 * give the same scores and tails bit for bit, over structured data then
 * data without a gap (in exact mode both refinement and the eigenpairs),
 * and the same model. */
static void scoring_thread(int mode)
{
	const size_t m1 = 1500, m2 = 1500, m = m1 + m2;
	double *x = ref_alloc(m * N), *a = ref_make_rows(56, m1, N, K + 2, 0.7, 0.05, 1.5),
	       *f = flat_rows(57, m2);
	memcpy(x, a, m1 * N * sizeof *x);
	memcpy(x + m1 * N, f, m2 * N * sizeof *x);
	struct isvd_model *th = model1(mode, K, 3), *se = model1(mode, K, 3);
	REF_ASSERT_OK(isvd_model_set_scoring(th, 1));
	REF_ASSERT_OK(isvd_model_set_scoring(se, 1));
	assert_non_null(th->spool);   /* one thread: it scores aside */
	upd_pool_destroy(se->spool);
	se->spool = NULL;
	double *s1 = ref_alloc(m), *t1 = ref_alloc(m), *s2 = ref_alloc(m), *t2 = ref_alloc(m);
	struct ref_rng r;
	ref_rng_seed(&r, 4);
	size_t i = 0, eig_blocks = 0;
	while (i < m) {
		size_t b = ref_rng_range(&r, 1, 200);
		if (b > m - i)
			b = m - i;
		struct isvd_tail ta, tb;
		REF_ASSERT_OK(isvd_model_update_monitored(th, x + i * N, b, N, s1 + i, t1 + i, &ta));
		REF_ASSERT_OK(isvd_model_update_monitored(se, x + i * N, b, N, s2 + i, t2 + i, &tb));
		assert_memory_equal(s1 + i, s2 + i, b * sizeof *s1);
		assert_memory_equal(t1 + i, t2 + i, b * sizeof *t1);
		assert_int_equal(ta.k, tb.k);
		assert_memory_equal(ta.theta, tb.theta, sizeof ta.theta);
		assert_true(ta.weight == tb.weight && ta.energy == tb.energy);
		assert_int_equal(th->srefine_backoff, se->srefine_backoff);
		eig_blocks += th->srefine_backoff > 0;
		i += b;
	}
	/* exact mode: the data without a gap took the eigenpairs */
	assert_true(mode != ISVD_MODE_EXACT || eig_blocks > 0);
	ref_assert_same_image(th, se);
	free(s1); free(t1); free(s2); free(t2); free(x); free(a); free(f);
	isvd_model_destroy(th);
	isvd_model_destroy(se);
}

static void test_scoring_thread_exact(void **state)
{
	(void)state;
	scoring_thread(ISVD_MODE_EXACT);
}

static void test_scoring_thread_truncated(void **state)
{
	(void)state;
	scoring_thread(ISVD_MODE_TRUNCATED);
}

/* The scoring thread follows the model's threads: stopped when the fold
 * takes two parts (the scores are then split over them), started again on
 * one; the scores stay those of a twin's queries throughout. */
static void test_scoring_thread_follows_threads(void **state)
{
	(void)state;
	const size_t m = 3000, b = 500;
	double *x = ref_make_rows(59, m, N, K + 2, 0.7, 0.05, 1.5);
	struct isvd_model *md = model1(ISVD_MODE_EXACT, K, 3), *twin = model1(ISVD_MODE_EXACT, K, 3);
	double spe[500], t2[500];
	REF_ASSERT_OK(isvd_model_set_scoring(md, 1));
	for (size_t i = 0; i < m; i += b) {
		const size_t threads = (i / b) % 2 ? 2 : 1;
		REF_ASSERT_OK(isvd_model_set_threads(md, threads));
		struct isvd_options o;
		REF_ASSERT_OK(isvd_model_options(md, &o));
		/* a pool of one part has the scoring thread beside it, two do not */
		assert_true((o.threads == 1) == (md->spool != NULL));
		if (threads == 2)
			assert_int_equal(o.threads, 2);   /* blocks of 500 ≥ 8n rows a part */
		REF_ASSERT_OK(isvd_model_update_scored(md, x + i * N, b, N, spe, t2));
		if (i > 0) {
			assert_twin_scores(twin, x + i * N, b, spe, t2, 1e-9);
		}
		REF_ASSERT_OK(isvd_model_update(twin, x + i * N, b, N));
	}
	free(x);
	isvd_model_destroy(md);
	isvd_model_destroy(twin);
}

/* Without a gap past k, refinement gives up and waits (1, 2, 4 … blocks),
 * the scores come from the eigenpairs of RᵀR, and they are the model's:
 * a twin's query scores (the SVD of R) agree. */
static void test_refine_backoff(void **state)
{
	(void)state;
	const size_t m = 6000, b = 100;
	double *x = flat_rows(58, m);
	struct isvd_model *md = model1(ISVD_MODE_EXACT, K, 3), *twin = model1(ISVD_MODE_EXACT, K, 3);
	double spe[100], t2[100];
	unsigned most = 0;
	for (size_t i = 0; i < m; i += b) {
		struct isvd_tail t;
		REF_ASSERT_OK(isvd_model_update_monitored(md, x + i * N, b, N, spe, t2, &t));
		if (md->srefine_backoff > most)
			most = md->srefine_backoff;
		if (i > 0) {
			double theta[3];
			size_t k;
			assert_twin_scores(twin, x + i * N, b, spe, t2, 1e-8);
			REF_ASSERT_OK(isvd_model_tail(twin, &k, theta, NULL, NULL));
			assert_int_equal(t.k, k);
			for (int p = 0; p < 3; p++)
				REF_ASSERT_CLOSE(t.theta[p], theta[p], 1e-9 * theta[p]);
		}
		REF_ASSERT_OK(isvd_model_update(twin, x + i * N, b, N));
	}
	assert_true(most >= 4);   /* it failed several times in a row and waited longer */
	free(x);
	isvd_model_destroy(md);
	isvd_model_destroy(twin);
}

/* Truncated mode: the kept values past k, and the energy not kept spread
 * evenly over the n − r directions left. */
static void test_tail_truncated(void **state)
{
	(void)state;
	const size_t m = 2000;
	double *x = ref_make_rows(55, m, N, K + 2, 0.7, 0.05, 1.5);
	struct isvd_model *md = model(ISVD_MODE_TRUNCATED, K, 3);
	ref_feed(md, x, m, N, 0, 150, 5);
	double sigma[N], theta[3], w, e, want[3] = { 0, 0, 0 }, kept = 0;
	size_t r, k;
	REF_ASSERT_OK(isvd_model_kept(md, sigma, &r, &w, &e));
	REF_ASSERT_OK(isvd_model_tail(md, &k, theta, NULL, NULL));
	assert_int_equal(k, K);
	assert_int_equal(r, K + 3);
	for (size_t j = 0; j < r; j++)
		kept += sigma[j] * sigma[j];
	for (size_t j = 0; j < N; j++) {
		const double v = (j < r ? sigma[j] * sigma[j] : (e - kept) / (double)(N - r)) / w;
		if (j >= K)
			for (int p = 0; p < 3; p++)
				want[p] += pow(v, p + 1);
	}
	for (int p = 0; p < 3; p++)
		REF_ASSERT_CLOSE(theta[p], want[p], 1e-12 * want[p]);
	free(x);
	isvd_model_destroy(md);
}

static void test_subspace_angle(void **state)
{
	(void)state;
	const size_t n = 20, k = 3;
	double a[3 * 20] = { 0 }, b[3 * 20];
	for (size_t i = 0; i < k; i++)   /* A: rows e_0, e_1, e_2 rotated a little */
		a[i * n + i] = 1;
	const double thetas[] = { 1e-9, 1e-4, 0.3, 1.2, M_PI / 2 };
	for (size_t t = 0; t < sizeof thetas / sizeof thetas[0]; t++) {
		memcpy(b, a, sizeof b);
		b[0] = cos(thetas[t]);
		b[7] = sin(thetas[t]);   /* e_7 is orthogonal to A */
		double s;
		REF_ASSERT_OK(isvd_subspace_sin(a, b, k, n, &s));
		REF_ASSERT_CLOSE(s, sin(thetas[t]), 1e-14 + 1e-12 * sin(thetas[t]));
	}
	double s;
	REF_ASSERT_OK(isvd_subspace_sin(a, a, k, n, &s));
	REF_ASSERT_LE(s, 1e-15);
	/* the same subspace in another basis: angle 0 */
	memcpy(b, a, sizeof b);
	b[0] = b[1] = M_SQRT1_2;
	b[n + 0] = -M_SQRT1_2;
	b[n + 1] = M_SQRT1_2;
	REF_ASSERT_OK(isvd_subspace_sin(a, b, k, n, &s));
	REF_ASSERT_LE(s, 1e-15);
	REF_ASSERT_ERR(isvd_subspace_sin(a, b, 0, n, &s), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_subspace_sin(a, b, n + 1, n, &s), ISVD_ERR_INVALID);
}

/* Gaussian rows with variances 9, 4, 4, 1 and 0.01 beyond, in a random
 * rotation: components 2 and 3 are one plane (both unstable), 1 and 4 are
 * clear (stable). */
static void stability(int mode)
{
	const size_t m = 20000;
	const double sd[6] = { 3, 2, 2, 1, 0.1, 0.1 };
	double *x = ref_alloc(m * N), *rot = ref_alloc(N * N), *tau = ref_alloc(N);
	struct ref_rng r;
	ref_rng_seed(&r, 77);
	for (size_t i = 0; i < N * N; i++)
		rot[i] = ref_rng_normal(&r);
	assert_int_equal(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, N, N, rot, N, tau), 0);
	assert_int_equal(LAPACKE_dorgqr(LAPACK_COL_MAJOR, N, N, N, rot, N, tau), 0);
	for (size_t i = 0; i < m; i++) {
		double z[N];
		for (size_t j = 0; j < N; j++)
			z[j] = ref_rng_normal(&r) * (j < 6 ? sd[j] : 0.1);
		for (size_t j = 0; j < N; j++) {
			double v = 0;
			for (size_t q = 0; q < N; q++)
				v += rot[q * N + j] * z[q];
			x[i * N + j] = v;
		}
	}
	struct isvd_model *md = model(mode, K, 4);
	ref_feed(md, x, m, N, 0, 500, 6);
	double gap[K];
	int stable[K];
	size_t count;
	REF_ASSERT_OK(isvd_model_stability(md, gap, stable, &count));
	assert_int_equal(count, K);
	print_message("%s: gaps %.4f %.4f %.4f %.4f, stable %d %d %d %d\n", isvd_mode_name(mode),
	              gap[0], gap[1], gap[2], gap[3], stable[0], stable[1], stable[2], stable[3]);
	assert_true(stable[0] && stable[3]);
	assert_false(stable[1]);
	assert_false(stable[2]);
	REF_ASSERT_CLOSE(gap[0], (9.0 - 4.0) / 9.0, 0.05);
	REF_ASSERT_LE(gap[1], 0.02);
	free(x); free(rot); free(tau);
	isvd_model_destroy(md);
}

static void test_stability_exact(void **state)
{
	(void)state;
	stability(ISVD_MODE_EXACT);
}

static void test_stability_truncated(void **state)
{
	(void)state;
	stability(ISVD_MODE_TRUNCATED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_scores_truncated),
		cmocka_unit_test(test_query_scores_exact),
		cmocka_unit_test(test_ingest_scores_truncated),
		cmocka_unit_test(test_ingest_scores_exact),
		cmocka_unit_test(test_ingest_scores_uncentred),
		cmocka_unit_test(test_modes_agree),
		cmocka_unit_test(test_tail_exact),
		cmocka_unit_test(test_tail_truncated),
		cmocka_unit_test(test_scoring_thread_exact),
		cmocka_unit_test(test_scoring_thread_truncated),
		cmocka_unit_test(test_scoring_thread_follows_threads),
		cmocka_unit_test(test_refine_backoff),
		cmocka_unit_test(test_subspace_angle),
		cmocka_unit_test(test_stability_exact),
		cmocka_unit_test(test_stability_truncated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
