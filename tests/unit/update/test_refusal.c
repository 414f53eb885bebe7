/*
 * test_refusal.c — bad input is refused and leaves the model untouched.
 *
 * "Untouched" is checked byte for byte: the saved image (the complete
 * state) before a refused call equals the image after it, and the model
 * then goes on exactly like a twin that never saw the bad call.  Covered:
 * NaN/±Inf in the first row, in the middle of a call that spans several
 * blocks, in the very last value; bad leading dimensions and NULLs for
 * every call; values whose squares could overflow (refused like NaN, the
 * whole call) and large ones that cannot (taken); invalid creation options
 * (and *out left alone); the limits themselves accepted.
 */
#include "ref.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N 6
#define MAXB 4

struct fixture {
	struct isvd_model *md;    /* receives the bad calls */
	struct isvd_model *twin;  /* same good rows, never a bad call */
	unsigned char *image;     /* md's image before the bad calls */
	size_t len;
	double *good;             /* 20 + 8 good rows */
};

static struct isvd_options fixture_options(void)
{
	struct isvd_options o = ref_options(N, 3, 2);
	o.max_block = MAXB;
	o.center = 1;
	o.forget = 0.97;
	return o;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	struct isvd_options o = fixture_options();
	f->md = ref_create(&o);
	f->twin = ref_create(&o);
	f->good = ref_make_rows(4242, 28, N, N, 0.8, 0.1, 1.0);
	ref_feed(f->md, f->good, 20, N, 0, 9, 1);
	ref_feed(f->twin, f->good, 20, N, 0, 9, 1);
	f->image = ref_save(f->md, &f->len);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	isvd_model_destroy(f->md);
	isvd_model_destroy(f->twin);
	free(f->image);
	free(f->good);
	free(f);
	return 0;
}

/* The model's image still equals the one taken in setup. */
static void assert_untouched(const struct fixture *f)
{
	size_t len;
	unsigned char *now = ref_save(f->md, &len);
	assert_int_equal(len, f->len);
	assert_memory_equal(now, f->image, len);
	free(now);
	assert_int_equal(isvd_model_rows_seen(f->md), 20);
}

/* After the bad calls, md and twin take the same good rows and must end
 * up bit-identical. */
static void assert_goes_on_like_twin(const struct fixture *f)
{
	ref_feed(f->md, f->good + 20 * N, 8, N, 3, 0, 0);
	ref_feed(f->twin, f->good + 20 * N, 8, N, 3, 0, 0);
	size_t la, lb;
	unsigned char *a = ref_save(f->md, &la), *b = ref_save(f->twin, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	free(a);
	free(b);
}

/* nrows (≤ 12, i.e. up to 3 blocks of MAXB) good rows with one poisoned
 * value at (row, col): update refuses them whole and the model is
 * untouched; with queries_too, project and reconstruct refuse ±Inf too
 * and take a NaN as a gap (test_missing checks the values). */
static void refuse_poisoned(const struct fixture *f, size_t nrows, size_t row, size_t col,
                            double bad, int queries_too)
{
	double *rows = ref_make_rows(99 + row * N + col, nrows, N, N, 0.8, 0.1, 1.0);
	rows[row * N + col] = bad;
	REF_ASSERT_ERR(isvd_model_update(f->md, rows, nrows, N), ISVD_ERR_NONFINITE);
	assert_untouched(f);
	if (!queries_too) {
		free(rows);
		return;
	}
	double coords[12 * 3], resid[12], out[12 * N];
	const int want = isnan(bad) ? ISVD_OK : ISVD_ERR_NONFINITE;
	REF_ASSERT_ERR(isvd_model_project(f->md, rows, nrows, N, ISVD_SPACE_SCORES, coords,
	                                  resid), want);
	REF_ASSERT_ERR(isvd_model_reconstruct(f->md, rows, nrows, N, out), want);
	free(rows);
}

static void test_nonfinite_rows(void **state)
{
	struct fixture *f = *state;
	refuse_poisoned(f, 1, 0, 0, NAN, 1);               /* first value, single row */
	refuse_poisoned(f, 5, 0, 0, NAN, 1);               /* first row of a call */
	refuse_poisoned(f, 12, 0, 3, INFINITY, 1);
	refuse_poisoned(f, 12, 6, 2, NAN, 1);              /* middle block of three */
	refuse_poisoned(f, 12, 5, N - 1, -INFINITY, 1);
	refuse_poisoned(f, 12, 11, N - 1, NAN, 1);         /* very last value */
	refuse_poisoned(f, 12, 11, N - 1, INFINITY, 1);
	refuse_poisoned(f, 1, 0, N - 1, -NAN, 1);
	assert_goes_on_like_twin(f);
}

/* Values so large that their squares could overflow (the header: "about
 * 1e150 and beyond") are refused like NaN, wherever they sit in a call
 * spanning several blocks; values comfortably below are taken and the state
 * stays finite. */
static void test_out_of_range_values(void **state)
{
	struct fixture *f = *state;
	const double big[] = { 1e155, -1e200, 1e300, -DBL_MAX };
	for (size_t h = 0; h < 4; h++)
		for (size_t row = 0; row < 12; row += 5)
			refuse_poisoned(f, 12, row, (row + h) % N, big[h], 0);
	assert_goes_on_like_twin(f);

	struct isvd_options o = fixture_options();
	o.center = 0;
	o.forget = 1.0;
	struct isvd_model *md = ref_create(&o);
	double *rows = ref_alloc(12 * N);
	for (size_t i = 0; i < 12 * N; i++)
		rows[i] = (i % 3 ? 1.0 : -1.0) * 1e145;
	rows[7] = 0.5e145;
	REF_ASSERT_OK(isvd_model_update(md, rows, 12, N));
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_true(isfinite(info.energy_total) && info.energy_total > 0.0);
	REF_ASSERT_LE(info.orthogonality_error, 1e-12);
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	assert_true(r >= 1);
	for (size_t i = 0; i < r; i++)
		assert_true(isfinite(s[i]));
	free(s);
	free(vt);
	free(mu);
	free(rows);
	isvd_model_destroy(md);
}

static void test_bad_update_args(void **state)
{
	struct fixture *f = *state;
	double rows[4 * N];
	for (size_t i = 0; i < 4 * N; i++)
		rows[i] = (double)(i % 7) - 3.0;

	int rc = isvd_model_update(f->md, rows, 2, N - 1);   /* ld < dim */
	if (rc != ISVD_ERR_INVALID && rc != ISVD_ERR_DIM)
		fail_msg("update with ld < dim returned %d (%s)", rc, isvd_strerror(rc));
	rc = isvd_model_update(f->md, rows, 1, 0);
	if (rc != ISVD_ERR_INVALID && rc != ISVD_ERR_DIM)
		fail_msg("update with ld = 0 returned %d (%s)", rc, isvd_strerror(rc));
	REF_ASSERT_ERR(isvd_model_update(f->md, NULL, 3, N), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_update(NULL, rows, 3, N), ISVD_ERR_INVALID);
	REF_ASSERT_OK(isvd_model_update(f->md, rows, 0, N));  /* a no-op */
	assert_untouched(f);
	REF_ASSERT_ERR(isvd_model_reorthogonalize(NULL), ISVD_ERR_INVALID);
	assert_goes_on_like_twin(f);
}

static void test_bad_query_args(void **state)
{
	struct fixture *f = *state;
	double rows[2 * N] = { 0 }, coords[2 * 3], resid[2], out[2 * N];
	rows[0] = 1.0;
	int rc = isvd_model_project(f->md, rows, 2, N - 1, ISVD_SPACE_SCORES, coords, resid);
	if (rc != ISVD_ERR_INVALID && rc != ISVD_ERR_DIM)
		fail_msg("project with ld < dim returned %d (%s)", rc, isvd_strerror(rc));
	rc = isvd_model_reconstruct(f->md, rows, 2, 1, out);
	if (rc != ISVD_ERR_INVALID && rc != ISVD_ERR_DIM)
		fail_msg("reconstruct with ld < dim returned %d (%s)", rc, isvd_strerror(rc));
	REF_ASSERT_ERR(isvd_model_project(f->md, rows, 2, N, (enum isvd_space)7, coords, resid),
	               ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_project(f->md, NULL, 2, N, ISVD_SPACE_SCORES, coords, resid),
	               ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_project(NULL, rows, 2, N, ISVD_SPACE_SCORES, coords, resid),
	               ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_reconstruct(f->md, rows, 2, N, NULL), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_reconstruct(f->md, NULL, 2, N, out), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_reconstruct(NULL, rows, 2, N, out), ISVD_ERR_INVALID);

	struct isvd_info info;
	struct isvd_options o;
	double s[3];
	REF_ASSERT_ERR(isvd_model_info(NULL, &info), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_info(f->md, NULL), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_options(NULL, &o), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_options(f->md, NULL), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_factors(NULL, s, NULL, NULL, NULL), ISVD_ERR_INVALID);
	/* Every pointer of factors may be NULL. */
	REF_ASSERT_OK(isvd_model_factors(f->md, NULL, NULL, NULL, NULL));
	/* Options read back as created. */
	struct isvd_options want = fixture_options();
	REF_ASSERT_OK(isvd_model_options(f->md, &o));
	assert_int_equal(o.dim, want.dim);
	assert_int_equal(o.rank, want.rank);
	assert_int_equal(o.extra, want.extra);
	assert_int_equal(o.max_block, want.max_block);
	assert_int_equal(o.center, want.center);
	REF_ASSERT_CLOSE(o.forget, want.forget, 0.0);
	assert_int_equal(o.reorth_every, want.reorth_every);
	REF_ASSERT_CLOSE(o.rcond, want.rcond, 0.0);
	assert_int_equal(isvd_model_dim(f->md), N);
	assert_untouched(f);
}

/* Padding beyond dim in each row (ld > dim) is not data: NaN there is fine
 * and the model equals one fed the packed rows. */
static void test_padding_is_not_data(void **state)
{
	(void)state;
	const size_t m = 30, ld = N + 3;
	double *packed = ref_make_rows(777, m, N, N, 0.8, 0.1, 1.0);
	double *padded = ref_alloc(m * ld);
	for (size_t i = 0; i < m; i++) {
		memcpy(padded + i * ld, packed + i * N, N * sizeof *padded);
		for (size_t c = N; c < ld; c++)
			padded[i * ld + c] = (c == N) ? NAN : INFINITY;
	}
	struct isvd_options o = fixture_options();
	struct isvd_model *a = ref_create(&o), *b = ref_create(&o);
	ref_feed(a, packed, m, N, 7, 0, 0);
	ref_feed(b, padded, m, ld, 7, 0, 0);
	size_t la, lb;
	unsigned char *ia = ref_save(a, &la), *ib = ref_save(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ia, ib, la);

	double ca[30 * 3], cb[30 * 3], ra[30], rb[30], oa[30 * N], ob[30 * N];
	REF_ASSERT_OK(isvd_model_project(a, packed, m, N, ISVD_SPACE_U, ca, ra));
	REF_ASSERT_OK(isvd_model_project(a, padded, m, ld, ISVD_SPACE_U, cb, rb));
	assert_memory_equal(ca, cb, sizeof ca);
	assert_memory_equal(ra, rb, sizeof ra);
	REF_ASSERT_OK(isvd_model_reconstruct(a, packed, m, N, oa));
	REF_ASSERT_OK(isvd_model_reconstruct(a, padded, m, ld, ob));
	assert_memory_equal(oa, ob, sizeof oa);
	free(ia);
	free(ib);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
	free(packed);
	free(padded);
}

/* create() refuses, and leaves *out alone. */
static void refuse_options(const struct isvd_options *o, int want1, int want2,
                           const char *what)
{
	static int sentinel;
	struct isvd_model *out = (struct isvd_model *)(void *)&sentinel;
	int rc = isvd_model_create(o, &out);
	if (rc != want1 && rc != want2) {
		if (rc == ISVD_OK)
			isvd_model_destroy(out);
		fail_msg("create with %s returned %d (%s)", what, rc, isvd_strerror(rc));
	}
	assert_ptr_equal(out, (struct isvd_model *)(void *)&sentinel);
}

static void test_bad_options(void **state)
{
	(void)state;
	struct isvd_options base = ref_options(8, 3, 2), o;
	struct isvd_model *out = NULL;
	REF_ASSERT_ERR(isvd_model_create(NULL, &out), ISVD_ERR_INVALID);
	assert_null(out);
	REF_ASSERT_ERR(isvd_model_create(&base, NULL), ISVD_ERR_INVALID);

	const int I = ISVD_ERR_INVALID, T = ISVD_ERR_TOO_LARGE;
	o = base; o.dim = 0;                   refuse_options(&o, I, I, "dim 0");
	o = base; o.rank = 0;                  refuse_options(&o, I, I, "rank 0");
	o = base; o.forget = 0.0;              refuse_options(&o, I, I, "forget 0");
	o = base; o.forget = -0.5;             refuse_options(&o, I, I, "forget -0.5");
	o = base; o.forget = 1.0000001;        refuse_options(&o, I, I, "forget > 1");
	o = base; o.forget = NAN;              refuse_options(&o, I, I, "forget NaN");
	o = base; o.forget = INFINITY;         refuse_options(&o, I, I, "forget inf");
	o = base; o.rcond = NAN;               refuse_options(&o, I, I, "rcond NaN");
	o = base; o.rcond = -1.0;              refuse_options(&o, I, I, "rcond -1");
	o = base; o.max_block = ISVD_MAX_BLOCK + 1; refuse_options(&o, I, T, "max_block too big");
	o = base; o.dim = ISVD_MAX_DIM + 1;    refuse_options(&o, I, T, "dim too big");
	o = base; o.rank = ISVD_MAX_RANK + 1;  refuse_options(&o, I, T, "rank too big");
	o = base; o.dim = SIZE_MAX;            refuse_options(&o, I, T, "dim SIZE_MAX");
	o = base; o.rcond = 1.0;               refuse_options(&o, I, I, "rcond 1");

	isvd_model_destroy(NULL);   /* a no-op */
}

/* The limits themselves are allowed, and with dim = 8 they are cheap: the
 * header promises memory O(n·(k + p + max_block)). */
static void test_limits_accepted(void **state)
{
	(void)state;
	struct isvd_options o = ref_options(8, ISVD_MAX_RANK, 2);
	struct isvd_model *md = NULL;
	REF_ASSERT_OK(isvd_model_create(&o, &md));
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_int_equal(info.rank_max, 8);
	isvd_model_destroy(md);

	o = ref_options(8, 3, 2);
	o.max_block = ISVD_MAX_BLOCK;
	md = NULL;
	REF_ASSERT_OK(isvd_model_create(&o, &md));
	double *x = ref_make_rows(4243, 100, 8, 3, 0.8, 0.0, 0.0);
	REF_ASSERT_OK(isvd_model_update(md, x, 100, 8));
	ref_check_against(md, x, 100, 8, 3, 3, NULL, 1e-10, 1e-8);
	free(x);
	isvd_model_destroy(md);
}

/* extra so large that k + extra overflows: either refused, or the model is
 * simply untruncated (k + extra ≥ n) and exact. */
static void test_huge_extra(void **state)
{
	(void)state;
	struct isvd_options o = ref_options(N, 3, SIZE_MAX);
	struct isvd_model *md = NULL;
	int rc = isvd_model_create(&o, &md);
	if (rc == ISVD_ERR_INVALID || rc == ISVD_ERR_TOO_LARGE) {
		assert_null(md);
		return;
	}
	REF_ASSERT_OK(rc);
	double *x = ref_make_rows(31337, 40, N, N, 0.7, 0.0, 0.0);
	ref_feed(md, x, 40, N, 0, 6, 5);
	ref_check_against(md, x, 40, N, 3, 3, NULL, 1e-10, 1e-8);
	free(x);
	isvd_model_destroy(md);
}

/* The documented defaults. */
static void test_defaults(void **state)
{
	(void)state;
	struct isvd_options o;
	memset(&o, 0x5A, sizeof o);
	isvd_options_default(&o);
	assert_int_equal(o.dim, 0);
	assert_int_equal(o.rank, 0);
	assert_int_equal(o.extra, 10);
	assert_int_equal(o.max_block, 0);
	assert_int_equal(o.center, 0);
	REF_ASSERT_CLOSE(o.forget, 1.0, 0.0);
	assert_int_equal(o.reorth_every, 100000);
	REF_ASSERT_CLOSE(o.rcond, 1e-12, 0.0);
	assert_int_equal(o.mode, ISVD_MODE_AUTO);
}

int main(void)
{
	/* A model must never need gigabytes here; fail allocations instead. */
	ref_limit_memory((size_t)2 << 30);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nonfinite_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_update_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_query_args, setup, teardown),
		cmocka_unit_test(test_padding_is_not_data),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_limits_accepted),
		cmocka_unit_test(test_huge_extra),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
