/*
 * test_fold.c — the fast truncated fold's parts, each against its definition.
 *
 * The fold (update/truncated.c, block.c, par.c) takes three shortcuts, each
 * guarded; this file checks each shortcut and each side of its guard:
 *   - centring by a Householder reflection (block.c): the b columns it
 *     produces have exactly the scatter of the centred block plus the
 *     mean-correction outer product, and are independent (so the residual's
 *     Cholesky succeeds), with and without forgetting;
 *   - the core by a symmetric eigen-decomposition (truncated.c): on a
 *     well-conditioned stream it is taken and agrees with the gesdd route
 *     (the guard moved to force gesdd) to rounding; on a stream spanning 8
 *     decades the guard sends every full core to gesdd, which matches
 *     LAPACK's SVD of the whole matrix to rounding, and the test shows the
 *     eigen route forced there would have been wrong by orders of magnitude;
 *   - the n-sized products split over threads (par.c): bit-identical
 *     factors for one thread count, equal to 1e-12 across counts; and exact
 *     mode's TSQR split of tall blocks, against LAPACK.
 * The internals (workspaces, route counters, the guard) are read through
 * internal.h, as the engine's own files do.
 */
#include "ref.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "../../../update/internal.h"
#include "../../../update/par.h"

/* ---- centring by reflection ---------------------------------------- */

/* Explicit scatter of what a block adds, n×n (column-major, like the
 * engine's Y): Σ w_i (x_i − μ_b)(x_i − μ_b)ᵀ + c²(μ_b − μ_a)(μ_b − μ_a)ᵀ with
 * c² = W_a·W_b/(W_a + W_b), the weights w_i = λ^(b−1−i). */
static void block_scatter(const double *x, size_t b, size_t n, double lambda,
                          double wa, const double *mu_a, double *out)
{
	double *mu = ref_alloc(n), wb = 0, w = 1;
	double *wt = ref_alloc(b);

	for (size_t i = b; i-- > 0;) {
		wt[i] = w;
		wb += w;
		w *= lambda;
	}
	for (size_t i = 0; i < b; i++)
		for (size_t j = 0; j < n; j++)
			mu[j] += wt[i] * x[i * n + j] / wb;
	memset(out, 0, n * n * sizeof *out);
	for (size_t i = 0; i < b; i++)
		for (size_t p = 0; p < n; p++)
			for (size_t q = 0; q < n; q++)
				out[q * n + p] += wt[i] * (x[i * n + p] - mu[p]) * (x[i * n + q] - mu[q]);
	if (wa > 0) {
		const double c2 = wa * wb / (wa + wb);
		for (size_t p = 0; p < n; p++)
			for (size_t q = 0; q < n; q++)
				out[q * n + p] += c2 * (mu[p] - mu_a[p]) * (mu[q] - mu_a[q]);
	}
	free(mu);
	free(wt);
}

static void check_reflection(double lambda, size_t b, int prior)
{
	const size_t n = 12;
	struct isvd_options o = ref_options(n, 3, 2);
	o.center = 1;
	o.forget = lambda;
	o.max_block = 64;
	struct isvd_model *md = ref_create(&o);
	double *x0 = ref_make_rows(11, 40, n, n, 0.8, 0.1, 3.0);
	double *x = ref_make_rows(12, b, n, n, 0.8, 0.1, 3.0);
	double *scat = ref_alloc(n * n), *mu_a = ref_alloc(n);
	size_t bb;
	double w_new, e_new, lam_b;

	if (prior)
		REF_ASSERT_OK(isvd_model_update(md, x0, 40, n));
	memcpy(mu_a, md->mean, n * sizeof *mu_a);
	const double wa = md->weight * pow(lambda, (double)b);
	block_scatter(x, b, n, lambda, wa, mu_a, scat);

	upd_weigh_block(md, x, b, n, &bb, &w_new, &e_new, &lam_b);
	/* b − 1 reflected columns, plus the correction when rows came before */
	assert_int_equal(bb, prior ? b : b - 1);
	/* Y·Yᵀ equals the explicit scatter, and the column norms are recorded */
	double smax = 0, dmax = 0, energy = 0;
	for (size_t p = 0; p < n; p++)
		for (size_t q = 0; q < n; q++) {
			double acc = 0;
			for (size_t i = 0; i < bb; i++)
				acc += md->Y[i * n + p] * md->Y[i * n + q];
			smax = fmax(smax, fabs(scat[q * n + p]));
			dmax = fmax(dmax, fabs(acc - scat[q * n + p]));
		}
	REF_ASSERT_LE(dmax, 1e-13 * smax);
	for (size_t i = 0; i < bb; i++)
		for (size_t p = 0; p < n; p++)
			energy += md->Y[i * n + p] * md->Y[i * n + p];
	/* the energy the block reports adding is the columns' */
	REF_ASSERT_CLOSE(e_new - lam_b * md->energy, energy, 1e-13 * energy);
	for (size_t p = 0; p < n; p++)
		energy -= scat[p * n + p];   /* the trace is the energy added */
	REF_ASSERT_LE(fabs(energy), 1e-13 * smax * n);
	/* independent columns: the Gram matrix of the bb ≤ n columns has a
	 * Cholesky factor with no tiny pivot (the centred block plus the
	 * correction had rank bb, not bb + 1 columns of rank bb) */
	if (bb > 0 && bb <= n) {
		double *g = ref_alloc(bb * bb);
		for (size_t i = 0; i < bb; i++)
			for (size_t j = 0; j < bb; j++)
				for (size_t p = 0; p < n; p++)
					g[j * bb + i] += md->Y[i * n + p] * md->Y[j * n + p];
		assert_int_equal(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)bb, g,
		                                (lapack_int)bb), 0);
		double dmin = INFINITY, dmx = 0;
		for (size_t i = 0; i < bb; i++) {
			dmin = fmin(dmin, fabs(g[i * bb + i]));
			dmx = fmax(dmx, fabs(g[i * bb + i]));
		}
		REF_ASSERT_LE(dmx, 1e4 * dmin);
		free(g);
	}
	free(x0);
	free(x);
	free(scat);
	free(mu_a);
	isvd_model_destroy(md);
}

static void test_reflection(void **state)
{
	(void)state;
	const double lambdas[] = { 1.0, 0.97 };
	const size_t blocks[] = { 1, 2, 5, 12 };
	for (size_t l = 0; l < 2; l++)
		for (size_t bi = 0; bi < 4; bi++)
			for (int prior = 0; prior <= 1; prior++) {
				if (blocks[bi] == 1 && !prior)
					continue;    /* one centred row alone adds nothing */
				check_reflection(lambdas[l], blocks[bi], prior);
			}
}

/* A first row alone, centred: nothing to fold but the mean (bb = 0). */
static void test_first_row_centred(void **state)
{
	(void)state;
	struct isvd_options o = ref_options(300, 4, 2);
	o.center = 1;
	struct isvd_model *md = ref_create(&o);
	double *x = ref_make_rows(21, 3, 300, 4, 0.5, 0.01, 2.0);
	REF_ASSERT_OK(isvd_model_update(md, x, 1, 300));
	assert_int_equal(isvd_model_rank(md), 0);
	for (size_t j = 0; j < 300; j++)
		REF_ASSERT_CLOSE(md->mean[j], x[j], 0.0);
	REF_ASSERT_OK(isvd_model_update(md, x + 300, 2, 300));
	double *w = ref_alloc(3 * 300), *mu = ref_alloc(300);
	ref_weighted(x, 3, 300, 1.0, 1, w, mu, NULL);
	ref_check_against(md, w, 3, 300, 2, 2, mu, 1e-12, 1e-10);
	free(w);
	free(mu);
	free(x);
	isvd_model_destroy(md);
}

/* Centred noisy low-rank data at n = 400: with the reflection, nearly every
 * fold takes the implicit residual (before it, centring sent about half of
 * them to Householder QR), with and without forgetting. */
static void test_centred_path(void **state)
{
	(void)state;
	const double lambdas[] = { 1.0, 0.9995 };
	for (size_t l = 0; l < 2; l++) {
		struct isvd_options o = ref_options(400, 10, 5);
		o.center = 1;
		o.forget = lambdas[l];
		o.max_block = 64;
		o.threads = 1;
		struct isvd_model *md = ref_create(&o);
		double *x = ref_make_rows(31 + l, 6400, 400, 10, 0.8, 1e-3, 5.0);
		ref_feed(md, x, 6400, 400, 64, 0, 0);
		const uint64_t folds = 6400 / 64;
		print_message("lambda %g: implicit residual %llu of %llu folds, eigen core %llu\n",
		              lambdas[l], (unsigned long long)md->stat_implicit,
		              (unsigned long long)folds, (unsigned long long)md->stat_eig);
		REF_ASSERT_LE((double)(folds - 3), (double)md->stat_implicit);
		REF_ASSERT_LE((double)(folds - 3), (double)md->stat_eig);
		/* and the model is the PCA of the weighted rows: compare with LAPACK */
		double *w = ref_alloc(6400 * 400), *mu = ref_alloc(400);
		ref_weighted(x, 6400, 400, lambdas[l], 1, w, mu, NULL);
		ref_check_against(md, w, 6400, 400, 10, 10, mu, 1e-9, 1e-5);
		free(w);
		free(mu);
		free(x);
		isvd_model_destroy(md);
	}
}

/* ---- the core's two routes ----------------------------------------- */

/* Max relative σ difference over the top k and the largest principal-angle
 * sine between two models' top-k subspaces. */
static void compare_models(const struct isvd_model *a, const struct isvd_model *b, size_t k,
                           double *dsig, double *dsin)
{
	double *sa, *va, *ma, *sb, *vb, *mb;
	size_t ra, rb;
	ref_factors(a, &sa, &va, &ma, &ra);
	ref_factors(b, &sb, &vb, &mb, &rb);
	assert_int_equal(ra, rb);
	assert_true(ra >= k);
	*dsig = 0;
	for (size_t i = 0; i < k; i++)
		*dsig = fmax(*dsig, fabs(sa[i] - sb[i]) / sa[0]);
	*dsin = ref_sin_angle(va, vb, k, a->n);
	free(sa); free(va); free(ma);
	free(sb); free(vb); free(mb);
}

/* Well-conditioned (σ₁/σ_m ≈ 100): the eigen route is taken for every full
 * core and agrees with gesdd's to rounding. */
static void test_eigen_side(void **state)
{
	(void)state;
	const size_t n = 300, k = 8, rows = 4000;
	struct isvd_options o = ref_options(n, k, 4);
	o.center = 1;
	o.threads = 1;
	double *x = ref_make_rows(41, rows, n, k, 0.7, 1e-2, 1.0);
	struct isvd_model *eig = ref_create(&o), *svd = ref_create(&o);
	svd->eig_max_cond = 0;      /* every core by gesdd */
	ref_feed(eig, x, rows, n, 0, 100, 7);
	ref_feed(svd, x, rows, n, 0, 100, 7);
	print_message("eigen route: %llu folds; forced gesdd: %llu\n",
	              (unsigned long long)eig->stat_eig, (unsigned long long)svd->stat_eig);
	assert_int_equal(svd->stat_eig, 0);
	assert_true(eig->stat_eig >= 50);    /* ~75 calls of 1–100 rows, all full */
	double dsig, dsin;
	compare_models(eig, svd, k, &dsig, &dsin);
	print_message("eigen vs gesdd: sigma %.3g, sin %.3g\n", dsig, dsin);
	/* observed 1e-15 and 3e-13: both routes are accurate to rounding here */
	REF_ASSERT_LE(dsig, 1e-13);
	REF_ASSERT_LE(dsin, 1e-11);
	free(x);
	isvd_model_destroy(eig);
	isvd_model_destroy(svd);
}

/* A stream spanning 8 decades (σ_j ∝ 10^(−8j/(r−1)) over r = 20 signal
 * directions, noise 1e-10, centred): the guard keeps every core on gesdd,
 * and the model is as accurate as the engine was before the fast fold
 * (observed: σ 4.81e-9 relative to each σ_i, top-20 sine 7.45e-7, the same
 * figures to three digits as before it; bounds ~10× that).  The eigen
 * route forced on the same stream loses the small end (observed sine 0.6,
 * σ off by 90%), which is why the guard exists. */
static void test_gesdd_side(void **state)
{
	(void)state;
	const size_t n = 1000, r = 20, rows = 4000;
	const double decay = pow(10.0, -8.0 / (double)(r - 1));
	struct isvd_options o = ref_options(n, r, 3);
	o.center = 1;
	o.threads = 1;
	double *x = ref_make_rows(51, rows, n, r, decay, 1e-10, 1.0);
	struct isvd_model *guarded = ref_create(&o), *forced = ref_create(&o);
	forced->eig_max_cond = INFINITY;     /* every core by the eigen route */
	ref_feed(guarded, x, rows, n, 64, 0, 0);
	ref_feed(forced, x, rows, n, 64, 0, 0);
	print_message("guarded: eigen route on %llu folds; forced: %llu\n",
	              (unsigned long long)guarded->stat_eig, (unsigned long long)forced->stat_eig);
	assert_int_equal(guarded->stat_eig, 0);
	assert_true(forced->stat_eig > 0);
	double *w = ref_alloc(rows * n), *mu = ref_alloc(n);
	ref_weighted(x, rows, n, 1.0, 1, w, mu, NULL);
	ref_check_against(guarded, w, rows, n, r, r, mu, 5e-8, 8e-6);

	double *s_ref = ref_alloc(n), *vt_ref = ref_alloc(n * n), *sg, *vg, *mg;
	size_t rg;
	ref_svd(w, rows, n, n, s_ref, vt_ref);
	ref_factors(forced, &sg, &vg, &mg, &rg);
	const double sin_forced = rg >= r ? ref_sin_angle(vg, vt_ref, r, n) : 1.0;
	print_message("forced eigen route: sin(top %zu) %.3g\n", r, sin_forced);
	REF_ASSERT_LE(1e-2, sin_forced);
	free(s_ref); free(vt_ref); free(sg); free(vg); free(mg);
	free(w);
	free(mu);
	free(x);
	isvd_model_destroy(guarded);
	isvd_model_destroy(forced);
}

/* ---- threads ---------------------------------------------------------- */

static struct isvd_model *fit_threads(size_t threads, const double *x, size_t rows, size_t n)
{
	struct isvd_options o = ref_options(n, 8, 4);
	o.center = 1;
	o.threads = threads;
	o.reorth_every = 1500;   /* re-orthogonalisation inside the run too */
	struct isvd_model *md = ref_create(&o);
	struct isvd_options got;
	REF_ASSERT_OK(isvd_model_options(md, &got));
	assert_int_equal(got.threads, threads);
	ref_feed(md, x, rows, n, 0, 130, 9);
	return md;
}

static void test_threads(void **state)
{
	(void)state;
	const size_t n = 517, rows = 4000;   /* n not a multiple of 8 or of 3 */
	double *x = ref_make_rows(61, rows, n, 8, 0.75, 1e-3, 2.0);
	struct isvd_model *a1 = fit_threads(1, x, rows, n);
	struct isvd_model *a2 = fit_threads(2, x, rows, n);
	struct isvd_model *b2 = fit_threads(2, x, rows, n);
	struct isvd_model *a3 = fit_threads(3, x, rows, n);

	/* a model switched to 2 threads before its rows runs as one created so,
	 * bit for bit; switching back and out of range */
	struct isvd_model *s2 = fit_threads(1, x, 0, n);
	REF_ASSERT_OK(isvd_model_set_threads(s2, 2));
	assert_int_equal(upd_pool_size(s2->pool), 2);
	ref_feed(s2, x, rows, n, 0, 130, 9);
	assert_memory_equal(a2->V, s2->V, a2->r * n * sizeof *a2->V);
	REF_ASSERT_OK(isvd_model_set_threads(s2, 1));
	assert_null(s2->pool);
	REF_ASSERT_ERR(isvd_model_set_threads(s2, ISVD_MAX_THREADS + 1), ISVD_ERR_INVALID);
	isvd_model_destroy(s2);
	/* the same count: bit-identical state */
	assert_int_equal(a2->r, b2->r);
	assert_memory_equal(a2->sigma, b2->sigma, a2->r * sizeof *a2->sigma);
	assert_memory_equal(a2->V, b2->V, a2->r * n * sizeof *a2->V);
	assert_memory_equal(a2->mean, b2->mean, n * sizeof *a2->mean);
	/* across counts: equal to rounding, top k */
	double dsig, dsin;
	compare_models(a1, a2, 8, &dsig, &dsin);
	print_message("1 vs 2 threads: sigma %.3g, sin %.3g\n", dsig, dsin);
	REF_ASSERT_LE(dsig, 1e-12);
	REF_ASSERT_LE(dsin, 1e-12);
	compare_models(a1, a3, 8, &dsig, &dsin);
	print_message("1 vs 3 threads: sigma %.3g, sin %.3g\n", dsig, dsin);
	REF_ASSERT_LE(dsig, 1e-12);
	REF_ASSERT_LE(dsin, 1e-12);
	/* and the threaded split did run its parts on another thread's rows */
	assert_int_equal(upd_pool_size(a2->pool), 2);
	assert_int_equal(upd_pool_size(a3->pool), 3);
	free(x);
	isvd_model_destroy(a1);
	isvd_model_destroy(a2);
	isvd_model_destroy(b2);
	isvd_model_destroy(a3);
}

/* Exact mode splits a tall block TSQR-style: bit-identical for one thread
 * count, and against LAPACK's SVD of the whole matrix to rounding for 1, 2
 * and 3 threads (σ 1e-12 of σ₁, the projector 1e-10, as test_exact_mode
 * holds the one-thread path). */
static void test_exact_threads(void **state)
{
	(void)state;
	const size_t n = 40, rows = 5000;
	double *x = ref_make_rows(71, rows, n, n, 0.9, 1e-2, 3.0);
	double *w = ref_alloc(rows * n), *mu = ref_alloc(n);
	ref_weighted(x, rows, n, 0.9999, 1, w, mu, NULL);
	struct isvd_model *md[4];
	const size_t threads[4] = { 1, 2, 2, 3 };
	for (int i = 0; i < 4; i++) {
		struct isvd_options o = ref_options(n, 6, 2);
		o.mode = ISVD_MODE_EXACT;
		o.center = 1;
		o.forget = 0.9999;
		o.max_block = 1024;
		o.threads = threads[i];
		md[i] = ref_create(&o);
		assert_int_equal(md[i]->threads, threads[i]);   /* 1025/3 ≥ 8·40 rows a part */
		ref_feed(md[i], x, rows, n, 0, 1024, 5);
		ref_check_against(md[i], w, rows, n, 6, 6, mu, 1e-12, 1e-10);
	}
	assert_memory_equal(md[1]->Rt, md[2]->Rt, n * n * sizeof *md[1]->Rt);
	/* short blocks at n = 3 (8n = 24 rows a part): 7 rows run as one part,
	 * 49 rows split 24 + 25 */
	struct isvd_options o3 = ref_options(3, 3, 0);
	o3.mode = ISVD_MODE_EXACT;
	o3.threads = 2;
	struct isvd_model *tiny = ref_create(&o3);
	assert_int_equal(tiny->threads, 2);
	REF_ASSERT_OK(isvd_model_update(tiny, x, 7, 3));
	REF_ASSERT_OK(isvd_model_update(tiny, x + 21, 49, 3));
	ref_check_against(tiny, x, 56, 3, 3, 3, NULL, 1e-12, 1e-10);
	isvd_model_destroy(tiny);
	/* a block too short for every part to keep n rows runs as one part */
	struct isvd_options o = ref_options(200, 6, 2);
	o.mode = ISVD_MODE_EXACT;
	o.max_block = 256;
	o.threads = 2;
	struct isvd_model *one = ref_create(&o);
	assert_int_equal(one->threads, 1);
	isvd_model_destroy(one);
	for (int i = 0; i < 4; i++)
		isvd_model_destroy(md[i]);
	free(w);
	free(mu);
	free(x);
}

/* The pool's row ranges tile 0 … n in order, inner bounds on multiples of 8. */
static void test_ranges(void **state)
{
	(void)state;
	const size_t ns[] = { 0, 1, 7, 8, 9, 256, 517, 1000, 10001 };
	for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
		for (size_t parts = 1; parts <= 5; parts++) {
			size_t next = 0;
			for (size_t p = 0; p < parts; p++) {
				size_t lo, hi;
				upd_pool_range(ns[a], parts, p, &lo, &hi);
				assert_int_equal(lo, next);
				assert_true(hi >= lo);
				if (p + 1 < parts && hi < ns[a])
					assert_int_equal(hi % 8, 0);
				next = hi;
			}
			assert_int_equal(next, ns[a]);
		}
}

/* A pool runs every part exactly once per job, part 0 on the caller. */
struct count_arg {
	int hits[4];
};

static void count_part(void *arg, size_t part)
{
	((struct count_arg *)arg)->hits[part]++;
}

static void test_pool(void **state)
{
	(void)state;
	struct upd_pool *p = NULL;
	assert_int_equal(upd_pool_create(4, -1, &p), 0);
	struct count_arg c = { { 0 } };
	for (int i = 0; i < 1000; i++)
		upd_pool_run(p, count_part, &c);
	for (int i = 0; i < 4; i++)
		assert_int_equal(c.hits[i], 1000);
	upd_pool_destroy(p);
	upd_pool_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reflection),
		cmocka_unit_test(test_first_row_centred),
		cmocka_unit_test(test_centred_path),
		cmocka_unit_test(test_eigen_side),
		cmocka_unit_test(test_gesdd_side),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_exact_threads),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
