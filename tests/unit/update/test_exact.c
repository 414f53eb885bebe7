/*
 * test_exact.c — the engine against LAPACK's SVD of the whole accumulated
 * matrix, without centring or forgetting.
 *
 *   exact rank-r data (r ≤ k): σ to 1e-10 relative, the subspace to a
 *     largest principal-angle sine of 1e-8, reported rank r, for calls of 1
 *     row, k rows, a seeded mix of sizes, and calls split by a small
 *     max_block;
 *   noisy low-rank data: ‖A − A·VₖVₖᵀ‖_F within ~10x the engine's observed
 *     excess over the Eckart–Young optimum ‖A − A_k‖_F (2.5e-6 relative at
 *     5% noise, 3e-5 at 10%), and σ as close (bounds, and the values
 *     observed at c9bbbef, beside each case);
 *   n < k and k = n: nothing is truncated, so the factors are the full SVD;
 *   data scaled by 2^±480: same answers, scaled.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

struct exact_case {
	size_t n, k, extra, r, m;
	size_t block;      /* rows per call; 0 = seeded mix in [1, mix_max] */
	size_t mix_max;
	size_t max_block;  /* 0 = default */
	uint64_t seed;
};

/* Streams exactly rank-r rows and compares with the full SVD. */
static void run_exact(const struct exact_case *c)
{
	double *a = ref_make_rows(c->seed, c->m, c->n, c->r, 0.8, 0.0, 0.0);
	struct isvd_options o = ref_options(c->n, c->k, c->extra);
	if (c->max_block)
		o.max_block = c->max_block;
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, a, c->m, c->n, c->block, c->mix_max, c->seed ^ 0x5EEDu);

	size_t kmax = c->k < c->n ? c->k : c->n;
	size_t expect = c->r < kmax ? c->r : kmax;
	ref_check_against(md, a, c->m, c->n, expect, expect, NULL, 1e-10, 1e-8);

	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_int_equal(info.dim, c->n);
	assert_int_equal(info.rank, expect);
	assert_int_equal(info.rank_max, kmax);
	assert_true(info.rank_internal >= info.rank);
	assert_true(info.rank_internal <= (c->k + c->extra < c->n ? c->k + c->extra : c->n));
	assert_int_equal(info.rows_seen, c->m);
	REF_ASSERT_CLOSE(info.weight_total, (double)c->m, 0.0);
	double fro = ref_frob(a, c->m, c->n);
	REF_ASSERT_CLOSE(info.energy_total, fro * fro, 1e-10 * fro * fro);

	isvd_model_destroy(md);
	free(a);
}

static void test_rank_r_block1(void **state)
{
	(void)state;
	const struct exact_case c = { .n = 40, .k = 6, .extra = 4, .r = 4, .m = 300,
	                              .block = 1, .seed = 11 };
	run_exact(&c);
}

static void test_rank_r_blockk(void **state)
{
	(void)state;
	const struct exact_case c = { .n = 40, .k = 6, .extra = 4, .r = 4, .m = 300,
	                              .block = 6, .seed = 12 };
	run_exact(&c);
}

static void test_rank_r_mixed(void **state)
{
	(void)state;
	const struct exact_case c = { .n = 40, .k = 6, .extra = 4, .r = 4, .m = 500,
	                              .block = 0, .mix_max = 37, .seed = 13 };
	run_exact(&c);
}

static void test_rank_r_split_calls(void **state)
{
	(void)state;
	/* Calls of up to 40 rows, max_block 3: most calls are split. */
	const struct exact_case c = { .n = 40, .k = 6, .extra = 4, .r = 4, .m = 500,
	                              .block = 0, .mix_max = 40, .max_block = 3, .seed = 14 };
	run_exact(&c);
}

static void test_rank_k_block1(void **state)
{
	(void)state;
	/* r = k and no extra components: nothing to spare. */
	const struct exact_case c = { .n = 30, .k = 5, .extra = 0, .r = 5, .m = 200,
	                              .block = 1, .seed = 15 };
	run_exact(&c);
}

static void test_rank_k_blockk(void **state)
{
	(void)state;
	const struct exact_case c = { .n = 30, .k = 5, .extra = 0, .r = 5, .m = 200,
	                              .block = 5, .seed = 16 };
	run_exact(&c);
}

static void test_rank_k_mixed(void **state)
{
	(void)state;
	const struct exact_case c = { .n = 30, .k = 5, .extra = 2, .r = 5, .m = 400,
	                              .block = 0, .mix_max = 70, .seed = 17 };
	run_exact(&c);
}

static void test_rank_r_large_blocks(void **state)
{
	(void)state;
	/* Blocks longer than n (the block alone already spans everything). */
	const struct exact_case c = { .n = 20, .k = 3, .extra = 2, .r = 3, .m = 600,
	                              .block = 100, .seed = 18 };
	run_exact(&c);
}

static void test_rank_r_wide(void **state)
{
	(void)state;
	/* n > 128: the default max_block is smaller there, calls up to 150 rows
	 * are split by it. */
	const struct exact_case c = { .n = 200, .k = 5, .extra = 5, .r = 5, .m = 600,
	                              .block = 0, .mix_max = 150, .seed = 22 };
	run_exact(&c);
}

static void test_n_below_k(void **state)
{
	(void)state;
	/* n = 5 < k = 8: full-rank rows, every component is reported. */
	const struct exact_case c = { .n = 5, .k = 8, .extra = 10, .r = 5, .m = 200,
	                              .block = 0, .mix_max = 9, .seed = 19 };
	run_exact(&c);
}

static void test_k_equals_n(void **state)
{
	(void)state;
	const struct exact_case c1 = { .n = 6, .k = 6, .extra = 0, .r = 6, .m = 150,
	                               .block = 1, .seed = 20 };
	run_exact(&c1);
	const struct exact_case c2 = { .n = 6, .k = 6, .extra = 3, .r = 6, .m = 150,
	                               .block = 0, .mix_max = 11, .seed = 21 };
	run_exact(&c2);
}

/* Tiny and huge data (scaled by 2^∓480; the largest values stay below
 * ISVD_MAX_ABS_VALUE): the same subspace, σ scaled alike — no overflow,
 * underflow or absolute threshold. */
static void test_scale_invariance(void **state)
{
	(void)state;
	const size_t n = 10, m = 100;
	const double scales[] = { 0x1p-480, 0x1p480 };
	for (size_t si = 0; si < 2; si++) {
		for (size_t block = 1; block <= 16; block += 15) {
			double *a = ref_make_rows(41, m, n, 3, 0.8, 0.0, 0.0);
			for (size_t i = 0; i < m * n; i++)
				a[i] *= scales[si];
			struct isvd_options o = ref_options(n, 3, 2);
			struct isvd_model *md = ref_create(&o);
			ref_feed(md, a, m, n, block, 0, 0);
			ref_check_against(md, a, m, n, 3, 3, NULL, 1e-10, 1e-8);
			struct isvd_info info;
			REF_ASSERT_OK(isvd_model_info(md, &info));
			double fro = ref_frob(a, m, n);
			REF_ASSERT_CLOSE(info.energy_total, fro * fro, 1e-10 * fro * fro);
			REF_ASSERT_CLOSE(info.explained_energy_ratio, 1.0, 1e-10);
			isvd_model_destroy(md);
			free(a);
		}
	}
}

/* Noisy low-rank data: the projection error of the model's k-subspace
 * exceeds the best possible by at most proj_tol (relative), and each of the
 * leading σ falls short of LAPACK's by at most sigma_tol (relative).  The
 * bounds are about 10x what the engine achieves (see the cases below), so
 * that a subspace that lost the extra components' benefit is caught. */
static void run_eckart_young(size_t block, double noise, uint64_t seed, double proj_tol,
                             double sigma_tol)
{
	const size_t n = 80, k = 8, m = 3000;
	double *a = ref_make_rows(seed, m, n, k, 0.85, noise, 0.0);
	struct isvd_options o = ref_options(n, k, 10);
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, a, m, n, block, 50, seed + 1);

	double *s_ref = ref_alloc(n);
	ref_svd(a, m, n, n, s_ref, NULL);
	double tail = 0.0;
	for (size_t i = n; i-- > k;)
		tail += s_ref[i] * s_ref[i];
	double opt = sqrt(tail);

	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	assert_int_equal(r, k);
	double err = ref_proj_error(a, m, n, vt, r);
	double sigma_short = 0.0;
	for (size_t i = 0; i < k; i++)
		sigma_short = fmax(sigma_short, (s_ref[i] - s[i]) / s_ref[i]);
	print_message("block %zu noise %.2f: error %.9g, optimum %.9g, ratio - 1 %.3g, "
	              "largest relative sigma shortfall %.3g\n", block, noise, err, opt,
	              err / opt - 1.0, sigma_short);
	REF_ASSERT_LE(err, (1.0 + proj_tol) * opt);
	/* Nothing beats Eckart–Young unless vt's rows are not orthonormal. */
	REF_ASSERT_LE(opt * (1.0 - 1e-10), err);
	/* The leading σ are close too (they can only be underestimated by
	 * truncation, and by no more than the discarded tail). */
	for (size_t i = 0; i < k; i++) {
		REF_ASSERT_LE(s[i], s_ref[i] * (1.0 + 1e-10));
		REF_ASSERT_LE(s_ref[i] - s[i], sigma_tol * s_ref[i]);
	}

	free(s);
	free(vt);
	free(mu);
	free(s_ref);
	isvd_model_destroy(md);
	free(a);
}

static void test_eckart_young_block1(void **state)
{
	(void)state;
	/* observed: ratio - 1 = 2.3e-7, σ shortfall 4.9e-5 */
	run_eckart_young(1, 0.05, 31, 2.5e-6, 5e-4);
}

static void test_eckart_young_block64(void **state)
{
	(void)state;
	/* observed: ratio - 1 = 2.0e-7, σ shortfall 2.0e-5 */
	run_eckart_young(64, 0.05, 32, 2.5e-6, 2.5e-4);
}

static void test_eckart_young_mixed(void **state)
{
	(void)state;
	/* observed: ratio - 1 = 1.8e-7, σ shortfall 2.0e-5 */
	run_eckart_young(0, 0.05, 33, 2.5e-6, 2.5e-4);
}

static void test_eckart_young_noisier(void **state)
{
	(void)state;
	/* observed: ratio - 1 = 3.0e-6, σ shortfall 4.1e-4 */
	run_eckart_young(8, 0.1, 34, 3e-5, 4e-3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rank_r_block1),
		cmocka_unit_test(test_rank_r_blockk),
		cmocka_unit_test(test_rank_r_mixed),
		cmocka_unit_test(test_rank_r_split_calls),
		cmocka_unit_test(test_rank_k_block1),
		cmocka_unit_test(test_rank_k_blockk),
		cmocka_unit_test(test_rank_k_mixed),
		cmocka_unit_test(test_rank_r_large_blocks),
		cmocka_unit_test(test_rank_r_wide),
		cmocka_unit_test(test_n_below_k),
		cmocka_unit_test(test_k_equals_n),
		cmocka_unit_test(test_scale_invariance),
		cmocka_unit_test(test_eckart_young_block1),
		cmocka_unit_test(test_eckart_young_block64),
		cmocka_unit_test(test_eckart_young_mixed),
		cmocka_unit_test(test_eckart_young_noisier),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
