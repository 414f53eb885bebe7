/*
 * test_nomem.c — allocation failures, made on purpose.
 *
 * The program is linked with -Wl,--wrap=malloc,--wrap=calloc, so every
 * malloc/calloc of the statically linked engine goes through the wrappers
 * below, which can be armed to fail the N-th call (or every call).  Checked:
 *   create and load fail with ISVD_ERR_NOMEM at every allocation, leave
 *     *out alone and leak nothing (LeakSanitizer in the sanitizer build);
 *   info, project and reconstruct without any memory: at least one of them
 *     reports ISVD_ERR_NOMEM, and each either does so or answers exactly
 *     as with memory, leaving the model as it was;
 *   info, project, reconstruct, factors and snapshot with their k-th
 *     allocation failing, for every k until they succeed: ISVD_ERR_NOMEM,
 *     the model unchanged, then the answer given with memory;
 *   update and reorthogonalize allocate nothing at all (the header: "all
 *     workspaces are allocated here, so updates allocate nothing");
 *   merge with its k-th allocation failing, for every k until it succeeds:
 *     ISVD_ERR_NOMEM, *out left alone, nothing leaked, then the same image
 *     as a merge with memory.
 */
#include "ref.h"

#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t nmemb, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t nmemb, size_t size);

static long fail_at = -1;   /* fail the call with this index; -1: never */
static int fail_all;        /* fail every call while set */
static long ncalls;         /* calls since arming */

static int should_fail(void)
{
	long i = ncalls++;
	return fail_all || (fail_at >= 0 && i == fail_at);
}

void *__wrap_malloc(size_t size)
{
	return should_fail() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
	return should_fail() ? NULL : __real_calloc(nmemb, size);
}

static void arm(long at, int all)
{
	ncalls = 0;
	fail_at = at;
	fail_all = all;
}

static void disarm(void)
{
	fail_at = -1;
	fail_all = 0;
}

/* The strategy under test: main() runs every test in both. */
static int g_mode = ISVD_MODE_TRUNCATED;

static struct isvd_options opts(void)
{
	struct isvd_options o = ref_options(12, 3, 2);
	o.mode = g_mode;
	o.center = 1;
	o.forget = 0.99;
	o.max_block = 8;
	return o;
}

/* A model with opts(), fed 40 seeded noisy rows of 12 (returned in *x);
 * the caller frees both. */
static struct isvd_model *fed_model(uint64_t seed, double **x)
{
	struct isvd_options o = opts();
	struct isvd_model *md = ref_create(&o);
	*x = ref_make_rows(seed, 40, 12, 12, 0.8, 0.1, 1.0);
	ref_feed(md, *x, 40, 12, 0, 9, seed + 1);
	return md;
}

static void test_create(void **state)
{
	(void)state;
	struct isvd_options o = opts();
	static int sentinel;
	long i;
	for (i = 0; i < 1000; i++) {
		struct isvd_model *out = (struct isvd_model *)(void *)&sentinel;
		arm(i, 0);
		int rc = isvd_model_create(&o, &out);
		disarm();
		if (rc == ISVD_OK) {
			assert_true(out != (struct isvd_model *)(void *)&sentinel);
			isvd_model_destroy(out);
			break;
		}
		REF_ASSERT_ERR(rc, ISVD_ERR_NOMEM);
		assert_ptr_equal(out, (struct isvd_model *)(void *)&sentinel);
	}
	print_message("create survived failures at each of its %ld allocations\n", i);
	assert_true(i >= 1 && i < 1000);
}

static void test_load(void **state)
{
	(void)state;
	double *x;
	struct isvd_model *md = fed_model(5, &x);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	long i;
	for (i = 0; i < 1000; i++) {
		struct isvd_model *out = NULL;
		arm(i, 0);
		int rc = isvd_model_load(img, len, &out);
		disarm();
		if (rc == ISVD_OK) {
			size_t len2;
			unsigned char *img2 = ref_save(out, &len2);
			assert_int_equal(len2, len);
			assert_memory_equal(img2, img, len);
			free(img2);
			isvd_model_destroy(out);
			break;
		}
		REF_ASSERT_ERR(rc, ISVD_ERR_NOMEM);
		assert_null(out);
	}
	assert_true(i >= 1 && i < 1000);
	free(img);
	free(x);
	isvd_model_destroy(md);
}

static void test_updates_allocate_nothing(void **state)
{
	(void)state;
	struct isvd_options o = opts();
	o.reorth_every = 50;   /* automatic re-orthogonalisations happen too */
	struct isvd_model *md = ref_create(&o);
	double *x = ref_make_rows(7, 300, 12, 12, 0.8, 0.1, 1.0);
	arm(-1, 1);
	/* Calls of 1..20 rows (split by max_block 8), straight to the engine. */
	int rc = ISVD_OK;
	for (size_t i = 0, b = 1; i < 300 && rc == ISVD_OK; i += b, b = b % 20 + 1) {
		size_t nb = b < 300 - i ? b : 300 - i;
		rc = isvd_model_update(md, x + i * 12, nb, 12);
	}
	int rc2 = isvd_model_reorthogonalize(md);
	long used = ncalls;
	disarm();
	REF_ASSERT_OK(rc);
	REF_ASSERT_OK(rc2);
	assert_int_equal(used, 0);
	assert_int_equal(isvd_model_rows_seen(md), 300);
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	if (g_mode == ISVD_MODE_TRUNCATED)
		assert_true(info.reorth_count >= 6);
	/* exact mode: the factor reads after the updates allocate nothing either */
	arm(-1, 1);
	double sigma[3];
	size_t r = 0;
	rc = isvd_model_factors(md, sigma, NULL, NULL, &r);
	used = ncalls;
	disarm();
	REF_ASSERT_OK(rc);
	assert_int_equal(used, 0);
	assert_int_equal(r, 3);
	free(x);
	isvd_model_destroy(md);
}

/* A query's answer, flattened into doubles so that one loop can compare
 * them: the query runs on md over x (40 rows of 12) and writes out. */
#define QUERY_OUT (40 * 12 + 40)
typedef int (*query_fn)(const struct isvd_model *md, const double *x, double *out);

static int query_info(const struct isvd_model *md, const double *x, double *out)
{
	struct isvd_info info;
	(void)x;
	memset(&info, 0, sizeof info);
	int rc = isvd_model_info(md, &info);
	out[0] = (double)info.rank;
	out[1] = info.orthogonality_error;
	out[2] = info.energy_captured;
	out[3] = info.explained_energy_ratio;
	return rc;
}

static int query_project(const struct isvd_model *md, const double *x, double *out)
{
	return isvd_model_project(md, x, 40, 12, ISVD_SPACE_U, out, out + 40 * 3);
}

static int query_reconstruct(const struct isvd_model *md, const double *x, double *out)
{
	return isvd_model_reconstruct(md, x, 40, 12, out);
}

static int query_factors(const struct isvd_model *md, const double *x, double *out)
{
	size_t r = 0;
	(void)x;
	int rc = isvd_model_factors(md, out, out + 3, out + 3 + 3 * 12, &r);
	out[QUERY_OUT - 1] = (double)r;
	return rc;
}

/* Runs query q on target with its k-th allocation failing, k = 0, 1, ...
 * until it succeeds: each failure must be ISVD_ERR_NOMEM with target
 * unchanged (its saved image; a snapshot cannot be saved), and the answer
 * that finally comes the one src gives with memory.  Returns the number of
 * failures seen (the allocations the query makes). */
static long fail_each_allocation(const struct isvd_model *src, const struct isvd_model *target,
                                 const double *x, query_fn q)
{
	size_t len = 0, len2;
	unsigned char *before = target == src ? ref_save(target, &len) : NULL;
	double *want = ref_alloc(QUERY_OUT), *got = ref_alloc(QUERY_OUT);
	REF_ASSERT_OK(q(src, x, want));
	long k;
	for (k = 0; k < 1000; k++) {
		memset(got, 0, QUERY_OUT * sizeof *got);
		arm(k, 0);
		int rc = q(target, x, got);
		disarm();
		if (before) {
			unsigned char *after = ref_save(target, &len2);
			assert_int_equal(len2, len);
			assert_memory_equal(after, before, len);
			free(after);
		}
		if (rc == ISVD_OK) {
			assert_memory_equal(got, want, QUERY_OUT * sizeof *got);
			break;
		}
		REF_ASSERT_ERR(rc, ISVD_ERR_NOMEM);
	}
	assert_true(k < 1000);
	free(want);
	free(got);
	free(before);
	return k;
}

static const struct { const char *name; query_fn q; } queries[] = {
	{ "info", query_info }, { "project", query_project },
	{ "reconstruct", query_reconstruct }, { "factors", query_factors },
};

/* Every query on target, failing at each allocation in turn; returns the
 * total number of failures. */
static long fail_queries(const struct isvd_model *src, const struct isvd_model *target,
                         const double *x)
{
	long total = 0;
	for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
		long n = fail_each_allocation(src, target, x, queries[i].q);
		print_message("%s%s: failed at each of its %ld allocations\n",
		              target == src ? "" : "snapshot ", queries[i].name, n);
		total += n;
	}
	return total;
}

static void test_queries(void **state)
{
	(void)state;
	double *x;
	struct isvd_model *md = fed_model(8, &x);
	size_t len;
	unsigned char *before = ref_save(md, &len);
	double coords[40 * 3], res[40], out[40 * 12];
	double coords2[40 * 3], res2[40], out2[40 * 12];
	struct isvd_info info, info2;
	memset(&info, 0, sizeof info);
	memset(&info2, 0, sizeof info2);

	arm(-1, 1);
	int rc_info = isvd_model_info(md, &info2);
	int rc_proj = isvd_model_project(md, x, 40, 12, ISVD_SPACE_U, coords2, res2);
	int rc_rec = isvd_model_reconstruct(md, x, 40, 12, out2);
	disarm();

	size_t len2;
	unsigned char *after = ref_save(md, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(after, before, len);

	/* Each either says it could not get memory, or — if it needs none —
	 * gives exactly the answer it gives with memory. */
	REF_ASSERT_OK(isvd_model_info(md, &info));
	REF_ASSERT_OK(isvd_model_project(md, x, 40, 12, ISVD_SPACE_U, coords, res));
	REF_ASSERT_OK(isvd_model_reconstruct(md, x, 40, 12, out));
	if (rc_info != ISVD_OK) {
		REF_ASSERT_ERR(rc_info, ISVD_ERR_NOMEM);
	} else {
		assert_int_equal(info2.rank, info.rank);
		REF_ASSERT_CLOSE(info2.orthogonality_error, info.orthogonality_error, 0.0);
		REF_ASSERT_CLOSE(info2.energy_captured, info.energy_captured, 0.0);
	}
	if (rc_proj != ISVD_OK) {
		REF_ASSERT_ERR(rc_proj, ISVD_ERR_NOMEM);
	} else {
		assert_memory_equal(coords2, coords, sizeof coords);
		assert_memory_equal(res2, res, sizeof res);
	}
	if (rc_rec != ISVD_OK)
		REF_ASSERT_ERR(rc_rec, ISVD_ERR_NOMEM);
	else
		assert_memory_equal(out2, out, sizeof out);
	/* without memory something must have failed, or nothing above was tested */
	print_message("without memory: info %d, project %d, reconstruct %d\n", rc_info, rc_proj,
	              rc_rec);
	assert_true(rc_info == ISVD_ERR_NOMEM || rc_proj == ISVD_ERR_NOMEM ||
	            rc_rec == ISVD_ERR_NOMEM);
	/* and failing at each allocation in turn */
	assert_true(fail_queries(md, md, x) > 0);
	free(before);
	free(after);
	free(x);
	isvd_model_destroy(md);
}

/* isvd_model_snapshot() fails at its k-th allocation with ISVD_ERR_NOMEM,
 * *out untouched and the source unchanged; queries on the snapshot that
 * finally comes (in exact mode the first one computes its SVD) fail at
 * each allocation alike and then answer as the source does. */
static void test_snapshot_fails_at_each_allocation(void **state)
{
	static int sentinel;
	struct isvd_model *snap = NULL;
	double *x;
	struct isvd_model *md = fed_model(12, &x);
	size_t len, len2;
	unsigned char *before = ref_save(md, &len);
	(void)state;
	long k;
	for (k = 0; k < 1000; k++) {
		struct isvd_model *out = (struct isvd_model *)(void *)&sentinel;
		arm(k, 0);
		int rc = isvd_model_snapshot(md, &out);
		disarm();
		unsigned char *after = ref_save(md, &len2);
		assert_int_equal(len2, len);
		assert_memory_equal(after, before, len);
		free(after);
		if (rc == ISVD_OK) {
			snap = out;
			break;
		}
		REF_ASSERT_ERR(rc, ISVD_ERR_NOMEM);
		assert_ptr_equal(out, (struct isvd_model *)(void *)&sentinel);
	}
	print_message("snapshot survived failures at each of its %ld allocations\n", k);
	assert_true(k >= 1 && k < 1000);
	assert_true(fail_queries(md, snap, x) > 0);
	isvd_model_destroy(snap);
	free(before);
	free(x);
	isvd_model_destroy(md);
}

static void test_merge_fails_at_each_allocation(void **state)
{
	(void)state;
	double *x, *y;
	struct isvd_model *a = fed_model(5, &x), *b = fed_model(6, &y), *want = NULL;
	const struct isvd_model *in[2] = { a, b };
	static int sentinel;
	size_t len;
	long i;

	REF_ASSERT_OK(isvd_model_merge(in, 2, &want));
	unsigned char *img = ref_save(want, &len);
	for (i = 0; i < 1000; i++) {
		struct isvd_model *out = (struct isvd_model *)(void *)&sentinel;
		arm(i, 0);
		int rc = isvd_model_merge(in, 2, &out);
		disarm();
		if (rc == ISVD_OK) {
			size_t len2;
			unsigned char *img2 = ref_save(out, &len2);
			assert_int_equal(len2, len);
			assert_memory_equal(img2, img, len);
			free(img2);
			isvd_model_destroy(out);
			break;
		}
		REF_ASSERT_ERR(rc, ISVD_ERR_NOMEM);
		assert_ptr_equal(out, (struct isvd_model *)(void *)&sentinel);
	}
	print_message("merge survived failures at each of its %ld allocations\n", i);
	assert_true(i >= 1 && i < 1000);
	free(img);
	free(x);
	free(y);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
	isvd_model_destroy(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_updates_allocate_nothing),
		cmocka_unit_test(test_queries),
		cmocka_unit_test(test_snapshot_fails_at_each_allocation),
		cmocka_unit_test(test_merge_fails_at_each_allocation),
	};
	int failed = cmocka_run_group_tests_name("truncated mode", tests, NULL, NULL);
	g_mode = ISVD_MODE_EXACT;
	return failed + cmocka_run_group_tests_name("exact mode", tests, NULL, NULL);
}
