/*
 * test_exact_mode.c — the exact strategy (the stream's triangular factor R)
 * against LAPACK's SVD of the whole accumulated matrix.
 *
 * Every comparison builds the explicit matrix the model stands for (rows
 * weighted by sqrt(λ^age) and centred on the weighted mean, ref_weighted)
 * and takes its SVD with dgesdd.  Tolerances are the issue's: σ to 1e-12
 * relative to σ_1 (normwise: what a backward-stable SVD of the full matrix
 * itself guarantees), the projector VₖVₖᵀ onto the top k right singular
 * vectors to 1e-10 for every k ≤ n, with and without centring and
 * forgetting, at block sizes 1, 7 and 256.  Plus: save/load, refusal of bad
 * input, `auto`'s choice, accuracy on an ill-conditioned stream that
 * forming AᵀA would ruin, and projections against the reference.
 */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

#define N     20
#define ROWS  700

static struct isvd_options exact_options(size_t n, size_t k, int center, double forget,
                                         size_t block)
{
	struct isvd_options o = ref_options(n, k, 0);
	o.mode = ISVD_MODE_EXACT;
	o.center = center;
	o.forget = forget;
	o.max_block = block;
	return o;
}

/* max |(P_model − P_ref)_ij| for the projectors onto the top k rows of two
 * k×n orthonormal-row matrices. */
static double projector_diff(const double *vt, const double *vt_ref, size_t k, size_t n)
{
	double worst = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			double a = 0, b = 0;
			for (size_t c = 0; c < k; c++) {
				a += vt[c * n + i] * vt[c * n + j];
				b += vt_ref[c * n + i] * vt_ref[c * n + j];
			}
			worst = fmax(worst, fabs(a - b));
		}
	return worst;
}

/* The model (rank n, everything reported) against the reference for every
 * k ≤ n; also the mean and the info totals. */
static void check_every_k(const struct isvd_model *md, const double *x, size_t m, size_t n,
                          double forget, int center)
{
	double *a = ref_alloc(m * n), *mu = ref_alloc(n), w = 0;
	double *s_ref = ref_alloc(n), *vt_ref = ref_alloc(n * n);
	double *s, *vt, *mean;
	size_t r;
	struct isvd_info info;

	ref_weighted(x, m, n, forget, center, a, mu, &w);
	ref_svd(a, m, n, n, s_ref, vt_ref);
	ref_factors(md, &s, &vt, &mean, &r);
	assert_int_equal(r, n);
	for (size_t i = 0; i < n; i++)
		REF_ASSERT_LE(fabs(s[i] - s_ref[i]), 1e-12 * s_ref[0]);
	for (size_t k = 1; k <= n; k++)
		REF_ASSERT_LE(projector_diff(vt, vt_ref, k, n), 1e-10);
	for (size_t j = 0; j < n; j++)
		REF_ASSERT_CLOSE(mean[j], center ? mu[j] : 0.0, 1e-12 * (1 + fabs(mu[j])));
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_int_equal(info.mode, ISVD_MODE_EXACT);
	assert_int_equal(info.rows_seen, m);
	REF_ASSERT_CLOSE(info.weight_total, w, 1e-12 * w);
	REF_ASSERT_CLOSE(info.energy_total, ref_frob(a, m, n) * ref_frob(a, m, n),
	                 1e-12 * info.energy_total);
	REF_ASSERT_LE(info.orthogonality_error, 1e-13);
	assert_int_equal(info.reorth_count, 0);
	free(a);
	free(mu);
	free(s_ref);
	free(vt_ref);
	free(s);
	free(vt);
	free(mean);
}

static void run_case(int center, double forget, size_t block)
{
	/* full-rank data with a decaying spectrum and an offset (which only a
	 * centring model removes) */
	double *x = ref_make_rows(11, ROWS, N, N, 0.85, 0.01, 3.0);
	struct isvd_options o = exact_options(N, N, center, forget, block);
	struct isvd_model *md = ref_create(&o);

	ref_feed(md, x, ROWS, N, block, 0, 0);
	check_every_k(md, x, ROWS, N, forget, center);
	isvd_model_destroy(md);

	/* the same rows in a random mix of call sizes give the same answer */
	md = ref_create(&o);
	ref_feed(md, x, ROWS, N, 0, 40, 5);
	check_every_k(md, x, ROWS, N, forget, center);
	isvd_model_destroy(md);
	free(x);
}

static void test_plain_b1(void **s) { (void)s; run_case(0, 1.0, 1); }
static void test_plain_b7(void **s) { (void)s; run_case(0, 1.0, 7); }
static void test_plain_b256(void **s) { (void)s; run_case(0, 1.0, 256); }
static void test_centred_b1(void **s) { (void)s; run_case(1, 1.0, 1); }
static void test_centred_b7(void **s) { (void)s; run_case(1, 1.0, 7); }
static void test_centred_b256(void **s) { (void)s; run_case(1, 1.0, 256); }
static void test_forget_b1(void **s) { (void)s; run_case(0, 0.995, 1); }
static void test_forget_b7(void **s) { (void)s; run_case(0, 0.995, 7); }
static void test_forget_b256(void **s) { (void)s; run_case(0, 0.995, 256); }
static void test_forget_centred_b1(void **s) { (void)s; run_case(1, 0.995, 1); }
static void test_forget_centred_b7(void **s) { (void)s; run_case(1, 0.995, 7); }
static void test_forget_centred_b256(void **s) { (void)s; run_case(1, 0.995, 256); }

/* A reported k < n: the top k of the same exact decomposition. */
static void test_reported_rank_below_n(void **state)
{
	(void)state;
	double *x = ref_make_rows(12, ROWS, N, N, 0.85, 0.01, 1.0);
	double *a = ref_alloc(ROWS * N), *mu = ref_alloc(N);
	struct isvd_options o = exact_options(N, 5, 1, 1.0, 7);
	struct isvd_model *md = ref_create(&o);

	ref_feed(md, x, ROWS, N, 7, 0, 0);
	ref_weighted(x, ROWS, N, 1.0, 1, a, mu, NULL);
	/* extra is 0: nothing but the reported 5 is kept, yet the 5 are exact */
	ref_check_against(md, a, ROWS, N, 5, 5, mu, 1e-12, 1e-10);
	isvd_model_destroy(md);
	free(a);
	free(mu);
	free(x);
}

/* Reads right after an update see it (the cached SVD is refreshed). */
static void test_reads_see_every_push(void **state)
{
	(void)state;
	double *x = ref_make_rows(13, 60, N, N, 0.9, 0.1, 0.0);
	struct isvd_options o = exact_options(N, N, 0, 1.0, 0);
	struct isvd_model *md = ref_create(&o);
	double prev = 0;

	for (size_t i = 0; i < 60; i++) {
		double sig[N];
		size_t r;
		REF_ASSERT_OK(isvd_model_update(md, x + i * N, 1, N));
		REF_ASSERT_OK(isvd_model_factors(md, sig, NULL, NULL, &r));
		const double s1 = sig[0];
		assert_true(r >= 1 && r == isvd_model_rank(md));
		assert_int_equal(r, i + 1 < N ? i + 1 : N);
		assert_true(s1 > prev);   /* σ₁ grows with every row, none missed */
		prev = s1;
	}
	double *a = ref_alloc(60 * N);
	ref_weighted(x, 60, N, 1.0, 0, a, NULL, NULL);
	ref_check_against(md, a, 60, N, N, N, NULL, 1e-12, 1e-10);
	isvd_model_destroy(md);
	free(a);
	free(x);
}

/* Condition number 1e10: the exact mode keeps the smallest σ to a relative
 * accuracy near 1e-16·σ₁/σ_min ≈ 1e-6, where anything that formed AᵀA would
 * have lost it completely (its eigenvalues carry errors ~1e-16·σ₁²). */
static void test_ill_conditioned_stream(void **state)
{
	(void)state;
	const size_t n = 12, m = 400;
	double *x = ref_alloc(m * n), *vt_true = ref_alloc(n * n), *s_true = ref_alloc(n);
	double *u = ref_make_rows(21, m, n, n, 1.0, 0.0, 0.0);   /* random m×n */
	double *b = ref_make_rows(22, n, n, n, 1.0, 0.0, 0.0);

	/* A = Q_u diag(σ) Q_vᵀ with σ_i = 10^(−10 i/(n−1)) */
	ref_svd(b, n, n, n, s_true, vt_true);                     /* orthonormal vt_true */
	double *su = ref_alloc(n), *vu = ref_alloc(n * n);
	ref_svd(u, m, n, n, su, vu);
	/* orthonormal columns from u: u·vuᵀ·diag(1/su) */
	double *q = ref_alloc(m * n);
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			double acc = 0;
			for (size_t c = 0; c < n; c++)
				acc += u[i * n + c] * vu[j * n + c];
			q[i * n + j] = acc / su[j];
		}
	for (size_t j = 0; j < n; j++)
		s_true[j] = pow(10.0, -10.0 * (double)j / (double)(n - 1));
	for (size_t i = 0; i < m; i++)
		for (size_t c = 0; c < n; c++) {
			double acc = 0;
			for (size_t j = 0; j < n; j++)
				acc += q[i * n + j] * s_true[j] * vt_true[j * n + c];
			x[i * n + c] = acc;
		}
	struct isvd_options o = exact_options(n, n, 0, 1.0, 7);
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, x, m, n, 7, 0, 0);
	double *s, *vt, *mean;
	size_t r;
	ref_factors(md, &s, &vt, &mean, &r);
	assert_int_equal(r, n);
	REF_ASSERT_LE(fabs(s[n - 1] - s_true[n - 1]) / s_true[n - 1], 1e-4);
	for (size_t j = 0; j < n; j++)
		REF_ASSERT_LE(fabs(s[j] - s_true[j]), 1e-14 * s_true[0] + 1e-4 * s_true[j]);
	isvd_model_destroy(md);
	free(s);
	free(vt);
	free(mean);
	free(x);
	free(vt_true);
	free(s_true);
	free(u);
	free(b);
	free(su);
	free(vu);
	free(q);
}

/* Save, load, and both copies continue identically. */
static void test_save_load_round_trip(void **state)
{
	(void)state;
	double *x = ref_make_rows(14, 300, N, N, 0.85, 0.01, 2.0);
	struct isvd_options o = exact_options(N, 6, 1, 0.999, 16);
	struct isvd_model *md = ref_create(&o), *back = NULL;
	size_t len, len2, img_len;
	unsigned char *img;

	ref_feed(md, x, 200, N, 16, 0, 0);
	img = ref_save(md, &img_len);
	len = img_len;
	REF_ASSERT_OK(isvd_model_load(img, len, &back));
	struct isvd_options ob;
	REF_ASSERT_OK(isvd_model_options(back, &ob));
	assert_int_equal(ob.mode, ISVD_MODE_EXACT);
	unsigned char *img2 = ref_save(back, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(img, img2, len);
	free(img2);
	ref_feed(md, x + 200 * N, 100, N, 16, 0, 0);
	ref_feed(back, x + 200 * N, 100, N, 16, 0, 0);
	unsigned char *a1 = ref_save(md, &len), *a2 = ref_save(back, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(a1, a2, len);
	/* a flipped byte of R is caught by the CRC */
	img[img_len - 20] ^= 0x10;   /* inside R, the last section */
	struct isvd_model *bad = NULL;
	REF_ASSERT_ERR(isvd_model_load(img, img_len, &bad), ISVD_ERR_CORRUPT);
	assert_null(bad);
	free(a1);
	free(a2);
	free(img);
	isvd_model_destroy(md);
	isvd_model_destroy(back);
	free(x);
}

/* Non-finite or overflowing rows are refused whole; the state is untouched. */
static void test_refusal_leaves_state_alone(void **state)
{
	(void)state;
	double *x = ref_make_rows(15, 50, N, N, 0.85, 0.01, 0.0);
	struct isvd_options o = exact_options(N, N, 1, 1.0, 0);
	struct isvd_model *md = ref_create(&o);
	size_t len, len2;

	ref_feed(md, x, 40, N, 0, 9, 3);
	unsigned char *before = ref_save(md, &len);
	x[45 * N + 3] = NAN;
	REF_ASSERT_ERR(isvd_model_update(md, x + 40 * N, 10, N), ISVD_ERR_NONFINITE);
	x[45 * N + 3] = INFINITY;
	REF_ASSERT_ERR(isvd_model_update(md, x + 40 * N, 10, N), ISVD_ERR_NONFINITE);
	x[45 * N + 3] = 1e200;
	REF_ASSERT_ERR(isvd_model_update(md, x + 40 * N, 10, N), ISVD_ERR_NONFINITE);
	unsigned char *after = ref_save(md, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(before, after, len);
	free(before);
	free(after);
	isvd_model_destroy(md);
	free(x);
}

/* Projections and reconstructions use the exact factors. */
static void test_project_against_reference(void **state)
{
	(void)state;
	double *x = ref_make_rows(16, 200, N, N, 0.8, 0.01, 1.5);
	struct isvd_options o = exact_options(N, 4, 1, 1.0, 0);
	struct isvd_model *md = ref_create(&o);
	double *a = ref_alloc(200 * N), *mu = ref_alloc(N), *s = ref_alloc(N), *vt = ref_alloc(N * N);
	double coords[3 * 4], resid[3], rec[3 * N];

	ref_feed(md, x, 200, N, 0, 30, 2);
	ref_weighted(x, 200, N, 1.0, 1, a, mu, NULL);
	ref_svd(a, 200, N, N, s, vt);
	REF_ASSERT_OK(isvd_model_project(md, x, 3, N, ISVD_SPACE_SCORES, coords, resid));
	REF_ASSERT_OK(isvd_model_reconstruct(md, x, 3, N, rec));
	/* Each of the model's components is ± LAPACK's: the sign, taken from
	 * the model's own factors, must carry over to its coordinates. */
	double *ms, *mvt, *mmu, sign[4];
	size_t mr;
	ref_factors(md, &ms, &mvt, &mmu, &mr);
	assert_int_equal(mr, 4);
	for (size_t c = 0; c < 4; c++) {
		double dot = 0;
		for (size_t j = 0; j < N; j++)
			dot += mvt[c * N + j] * vt[c * N + j];
		REF_ASSERT_CLOSE(fabs(dot), 1.0, 1e-9);
		sign[c] = dot > 0 ? 1.0 : -1.0;
	}
	free(ms);
	free(mvt);
	free(mmu);
	for (size_t i = 0; i < 3; i++) {
		double r2 = 0;
		for (size_t c = 0; c < 4; c++) {
			double sc = 0;
			for (size_t j = 0; j < N; j++)
				sc += vt[c * N + j] * (x[i * N + j] - mu[j]);
			REF_ASSERT_CLOSE(coords[i * 4 + c], sign[c] * sc, 1e-9);
		}
		for (size_t j = 0; j < N; j++) {
			double p = mu[j];
			for (size_t c = 0; c < 4; c++) {
				double sc = 0;
				for (size_t t = 0; t < N; t++)
					sc += vt[c * N + t] * (x[i * N + t] - mu[t]);
				p += sc * vt[c * N + j];
			}
			REF_ASSERT_CLOSE(rec[i * N + j], p, 1e-9);
			r2 += (x[i * N + j] - p) * (x[i * N + j] - p);
		}
		REF_ASSERT_CLOSE(resid[i], sqrt(r2), 1e-9);
	}
	isvd_model_destroy(md);
	free(a);
	free(mu);
	free(s);
	free(vt);
	free(x);
}

/* auto picks exact at n = 64 and truncated at n = 10,000. */
static void test_auto_choice(void **state)
{
	(void)state;
	struct isvd_options o, got;
	struct isvd_model *md;

	isvd_options_default(&o);
	o.dim = 64;
	o.rank = 8;
	md = ref_create(&o);
	REF_ASSERT_OK(isvd_model_options(md, &got));
	assert_int_equal(got.mode, ISVD_MODE_EXACT);
	isvd_model_destroy(md);

	isvd_options_default(&o);
	o.dim = 10000;
	o.rank = 100;
	md = ref_create(&o);
	REF_ASSERT_OK(isvd_model_options(md, &got));
	assert_int_equal(got.mode, ISVD_MODE_TRUNCATED);
	isvd_model_destroy(md);

	assert_string_equal(isvd_mode_name(ISVD_MODE_EXACT), "exact");
	assert_null(isvd_mode_name(7));
	o.mode = 7;
	o.dim = 4;
	o.rank = 2;
	REF_ASSERT_ERR(isvd_model_create(&o, &md), ISVD_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_b1),
		cmocka_unit_test(test_plain_b7),
		cmocka_unit_test(test_plain_b256),
		cmocka_unit_test(test_centred_b1),
		cmocka_unit_test(test_centred_b7),
		cmocka_unit_test(test_centred_b256),
		cmocka_unit_test(test_forget_b1),
		cmocka_unit_test(test_forget_b7),
		cmocka_unit_test(test_forget_b256),
		cmocka_unit_test(test_forget_centred_b1),
		cmocka_unit_test(test_forget_centred_b7),
		cmocka_unit_test(test_forget_centred_b256),
		cmocka_unit_test(test_reported_rank_below_n),
		cmocka_unit_test(test_reads_see_every_push),
		cmocka_unit_test(test_ill_conditioned_stream),
		cmocka_unit_test(test_save_load_round_trip),
		cmocka_unit_test(test_refusal_leaves_state_alone),
		cmocka_unit_test(test_project_against_reference),
		cmocka_unit_test(test_auto_choice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
