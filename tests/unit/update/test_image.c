/*
 * test_image.c — saved images: bit-exact round trips, and every damaged
 * image refused.
 *
 *   save → load → save gives the same bytes; both models then take the
 *     same rows and stay bit-identical;
 *   the image starts with the magic and ends with the CRC32C of everything
 *     before it (isvd_model.h);
 *   every truncation length is refused (TRUNCATED or FORMAT, never OK);
 *   every single flipped byte (one bit, and all eight bits) is refused
 *     (CORRUPT, FORMAT or TRUNCATED);
 *   damage that passes the CRC (the CRC recomputed after the change) is
 *     either refused or yields a model whose state is finite and consistent
 *     — never a NaN state, never a crash (run this under ASan); NOMEM is
 *     allowed, as damage may declare a legal but huge max_block;
 *   NaN written into σ or μ with a valid CRC is refused.
 * Every check runs on a truncated-mode and on an exact-mode model (whose
 * image also holds the triangular factor R).
 */
#include "ref.h"
#include "isvd_bytes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct img_case {
	size_t n, k, extra, m;
	int center;
	double forget;
};

/* The strategy under test: main() runs the sweeps in both. */
static int g_mode = ISVD_MODE_TRUNCATED;

static struct isvd_model *make_model(const struct img_case *c, uint64_t seed)
{
	struct isvd_options o = ref_options(c->n, c->k, c->extra);
	o.mode = g_mode;
	o.center = c->center;
	o.forget = c->forget;
	o.max_block = 5;
	o.reorth_every = 40;     /* non-defaults, so options must round-trip */
	o.rcond = 1e-11;
	struct isvd_model *md = ref_create(&o);
	if (c->m) {
		double *x = ref_make_rows(seed, c->m, c->n, c->n, 0.8, 0.1, 1.5);
		ref_feed(md, x, c->m, c->n, 0, 9, seed);
		free(x);
	}
	return md;
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}


/* Loading must fail with one of the allowed codes and leave *out alone. */
static void assert_refused(const unsigned char *img, size_t len, const int *allowed,
                           size_t nallowed, const char *what, size_t pos)
{
	struct isvd_model *out = NULL;
	int rc = isvd_model_load(img, len, &out);
	for (size_t i = 0; i < nallowed; i++)
		if (rc == allowed[i]) {
			assert_null(out);
			return;
		}
	if (rc == ISVD_OK)
		isvd_model_destroy(out);
	fail_msg("load of %s (position/length %zu) returned %d (%s)", what, pos, rc,
	         isvd_strerror(rc));
}

static void round_trip(const struct img_case *c, uint64_t seed)
{
	struct isvd_model *a = make_model(c, seed);
	size_t len;
	unsigned char *img = ref_save(a, &len);
	assert_memory_equal(img, "ISVDMODL", 8);
	assert_int_equal(get_le32(img + len - 4), isvd_crc32c(0, img, len - 4));

	/* Too small a buffer. */
	unsigned char *small = malloc(len);
	assert_non_null(small);
	size_t got = 12345;
	REF_ASSERT_ERR(isvd_model_save(a, small, len - 1, &got), ISVD_ERR_TOO_LARGE);
	int rc = isvd_model_save(a, NULL, 0, &got);
	if (rc != ISVD_ERR_TOO_LARGE && rc != ISVD_ERR_INVALID)
		fail_msg("save into NULL/0 returned %d", rc);
	REF_ASSERT_ERR(isvd_model_save(NULL, small, len, &got), ISVD_ERR_INVALID);
	free(small);

	struct isvd_model *b = NULL;
	REF_ASSERT_OK(isvd_model_load(img, len, &b));
	assert_non_null(b);
	size_t len2;
	unsigned char *img2 = ref_save(b, &len2);
	assert_int_equal(len2, len);
	assert_memory_equal(img2, img, len);

	struct isvd_options oa, ob;
	REF_ASSERT_OK(isvd_model_options(a, &oa));
	REF_ASSERT_OK(isvd_model_options(b, &ob));
	assert_int_equal(oa.dim, ob.dim);
	assert_int_equal(oa.rank, ob.rank);
	assert_int_equal(oa.extra, ob.extra);
	assert_int_equal(oa.max_block, ob.max_block);
	assert_int_equal(oa.center, ob.center);
	assert_int_equal(oa.reorth_every, ob.reorth_every);
	assert_memory_equal(&oa.forget, &ob.forget, sizeof oa.forget);
	assert_memory_equal(&oa.rcond, &ob.rcond, sizeof oa.rcond);
	struct isvd_info ia, ib;
	REF_ASSERT_OK(isvd_model_info(a, &ia));
	REF_ASSERT_OK(isvd_model_info(b, &ib));
	assert_int_equal(ia.rank, ib.rank);
	assert_int_equal(ia.rank_internal, ib.rank_internal);
	assert_int_equal(ia.rows_seen, ib.rows_seen);
	assert_int_equal(ia.reorth_count, ib.reorth_count);
	assert_memory_equal(&ia.weight_total, &ib.weight_total, sizeof(double));
	assert_memory_equal(&ia.energy_total, &ib.energy_total, sizeof(double));

	/* Both go on identically (re-orthogonalisations included: 40 rows). */
	double *x = ref_make_rows(seed + 1, 60, c->n, c->n, 0.8, 0.1, 1.5);
	ref_feed(a, x, 60, c->n, 0, 7, seed + 2);
	ref_feed(b, x, 60, c->n, 0, 7, seed + 2);
	double *sa, *va, *ma, *sb, *vb, *mb;
	size_t ra, rb;
	ref_factors(a, &sa, &va, &ma, &ra);
	ref_factors(b, &sb, &vb, &mb, &rb);
	assert_int_equal(ra, rb);
	assert_true(ra > 0);
	assert_memory_equal(sa, sb, ra * sizeof *sa);
	assert_memory_equal(va, vb, ra * c->n * sizeof *va);
	assert_memory_equal(ma, mb, c->n * sizeof *ma);
	ref_assert_same_image(a, b);

	free(sa);
	free(va);
	free(ma);
	free(sb);
	free(vb);
	free(mb);
	free(x);
	free(img);
	free(img2);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
}

static void test_round_trip(void **state)
{
	(void)state;
	round_trip(&(struct img_case){ 7, 3, 2, 50, 1, 0.98 }, 1);
	round_trip(&(struct img_case){ 7, 3, 2, 50, 0, 1.0 }, 2);
	round_trip(&(struct img_case){ 40, 5, 5, 200, 1, 1.0 }, 3);
	round_trip(&(struct img_case){ 4, 6, 0, 30, 0, 0.9 }, 4);     /* n < k */
	round_trip(&(struct img_case){ 9, 2, 1, 0, 1, 0.99 }, 5);     /* no rows yet */
}

/* Every proper prefix of an image is refused. */
static void truncations(const struct img_case *c, uint64_t seed)
{
	struct isvd_model *md = make_model(c, seed);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	const int allowed[] = { ISVD_ERR_TRUNCATED, ISVD_ERR_FORMAT };
	for (size_t l = 0; l < len; l++) {
		/* A copy of exactly l bytes, so ASan sees any read past it. */
		unsigned char *cut = malloc(l ? l : 1);
		assert_non_null(cut);
		memcpy(cut, img, l);
		assert_refused(cut, l, allowed, 2, "truncated image", l);
		free(cut);
	}
	struct isvd_model *out = NULL;
	REF_ASSERT_ERR(isvd_model_load(NULL, len, &out), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_load(img, len, NULL), ISVD_ERR_INVALID);
	assert_null(out);
	free(img);
	isvd_model_destroy(md);
}

static void test_truncations(void **state)
{
	(void)state;
	truncations(&(struct img_case){ 7, 3, 2, 50, 1, 0.98 }, 11);
	truncations(&(struct img_case){ 30, 4, 4, 100, 0, 1.0 }, 12);
	truncations(&(struct img_case){ 5, 2, 1, 0, 1, 1.0 }, 13);
}

/* Every single damaged byte is refused. */
static void flips(const struct img_case *c, uint64_t seed)
{
	struct isvd_model *md = make_model(c, seed);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	unsigned char *bad = malloc(len);
	assert_non_null(bad);
	const int allowed[] = { ISVD_ERR_CORRUPT, ISVD_ERR_FORMAT, ISVD_ERR_TRUNCATED };
	const unsigned char masks[] = { 0, 0xFF };
	for (size_t pos = 0; pos < len; pos++) {
		for (size_t mi = 0; mi < 2; mi++) {
			memcpy(bad, img, len);
			bad[pos] ^= masks[mi] ? masks[mi] : (unsigned char)(1u << (pos % 8));
			assert_refused(bad, len, allowed, 3, "image with a flipped byte", pos);
		}
	}
	/* And the undamaged image still loads. */
	struct isvd_model *ok = NULL;
	REF_ASSERT_OK(isvd_model_load(img, len, &ok));
	isvd_model_destroy(ok);
	free(bad);
	free(img);
	isvd_model_destroy(md);
}

static void test_flipped_bytes(void **state)
{
	(void)state;
	flips(&(struct img_case){ 7, 3, 2, 50, 1, 0.98 }, 21);
	flips(&(struct img_case){ 24, 4, 3, 100, 0, 1.0 }, 22);
	flips(&(struct img_case){ 5, 2, 1, 0, 1, 1.0 }, 23);
}

/* A loaded model is sane: info works and is finite, σ non-increasing and
 * positive, factors finite, a query runs. */
static void assert_sane(struct isvd_model *md, size_t pos)
{
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	if (!isfinite(info.weight_total) || !isfinite(info.energy_total) ||
	    !isfinite(info.energy_captured) || !isfinite(info.explained_energy_ratio) ||
	    !isfinite(info.condition_number) || !isfinite(info.orthogonality_error))
		fail_msg("image damaged at %zu (CRC fixed) loaded with non-finite info", pos);
	assert_true(info.rank <= info.rank_max);
	assert_true(info.rank <= info.rank_internal);
	assert_true(info.rank_max <= info.dim);
	if (info.dim > 4096 || info.rank_max > 64)
		return;   /* a legal but large model: do not read it out */
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	for (size_t i = 0; i < r; i++) {
		if (!isfinite(s[i]) || !(s[i] > 0.0) || (i > 0 && s[i] > s[i - 1]))
			fail_msg("image damaged at %zu loaded with sigma[%zu] = %g", pos, i, s[i]);
	}
	for (size_t i = 0; i < r * info.dim; i++)
		if (!isfinite(vt[i]))
			fail_msg("image damaged at %zu loaded with a non-finite V", pos);
	for (size_t i = 0; i < info.dim; i++)
		if (!isfinite(mu[i]))
			fail_msg("image damaged at %zu loaded with a non-finite mean", pos);
	if (info.rows_seen > 0) {
		double *x = ref_alloc(info.dim), *coords = ref_alloc(r ? r : 1), resid = -1.0;
		x[0] = 1.0;
		REF_ASSERT_OK(isvd_model_project(md, x, 1, info.dim, ISVD_SPACE_U, coords, &resid));
		assert_true(isfinite(resid) && resid >= 0.0);
		for (size_t i = 0; i < r; i++)
			assert_true(isfinite(coords[i]));
		free(x);
		free(coords);
	}
	free(s);
	free(vt);
	free(mu);
}

static void crc_passing_damage(const struct img_case *c, uint64_t seed)
{
	struct isvd_model *md = make_model(c, seed);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	unsigned char *bad = malloc(len);
	assert_non_null(bad);
	const unsigned char masks[] = { 0xFF, 0x01, 0x80, 0x40 };
	size_t loaded = 0, refused = 0;
	for (size_t pos = 0; pos + 4 < len; pos++) {
		for (size_t mi = 0; mi < sizeof masks; mi++) {
			memcpy(bad, img, len);
			bad[pos] ^= masks[mi];
			ref_fix_crc(bad, len);
			struct isvd_model *out = NULL;
			int rc = isvd_model_load(bad, len, &out);
			if (rc == ISVD_OK) {
				assert_non_null(out);
				assert_sane(out, pos);
				isvd_model_destroy(out);
				loaded++;
			} else {
				if (rc != ISVD_ERR_FORMAT && rc != ISVD_ERR_TRUNCATED &&
				    rc != ISVD_ERR_TOO_LARGE && rc != ISVD_ERR_CORRUPT &&
				    rc != ISVD_ERR_NOMEM)
					fail_msg("damage at %zu (CRC fixed) gave %d (%s)", pos, rc,
					         isvd_strerror(rc));
				assert_null(out);
				refused++;
			}
		}
	}
	print_message("CRC-passing damage: %zu loaded (sane), %zu refused\n", loaded, refused);
	/* The header fields (magic, version, flags, length) are always checked,
	 * so some damage must be refused even with a valid CRC. */
	assert_true(refused >= 8 * sizeof masks);
	free(bad);
	free(img);
	isvd_model_destroy(md);
}

static void test_crc_passing_damage(void **state)
{
	(void)state;
	crc_passing_damage(&(struct img_case){ 7, 3, 2, 50, 1, 0.98 }, 31);
	crc_passing_damage(&(struct img_case){ 6, 8, 2, 20, 0, 1.0 }, 32);
}


static void test_nan_state_refused(void **state)
{
	(void)state;
	const struct img_case c = { 7, 3, 2, 50, 1, 0.98 };
	struct isvd_model *md = make_model(&c, 41);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	const int allowed[] = { ISVD_ERR_FORMAT };
	const double poison[] = { NAN, INFINITY, -INFINITY };
	for (size_t pi = 0; pi < 3; pi++) {
		unsigned char *bad = malloc(len);
		assert_non_null(bad);
		memcpy(bad, img, len);
		assert_true(ref_patch_double(bad, len, s[0], poison[pi]));
		assert_refused(bad, len, allowed, 1, "image with a non-finite sigma", pi);
		memcpy(bad, img, len);
		assert_true(ref_patch_double(bad, len, mu[2], poison[pi]));
		assert_refused(bad, len, allowed, 1, "image with a non-finite mean", pi);
		free(bad);
	}
	free(s);
	free(vt);
	free(mu);
	free(img);
	isvd_model_destroy(md);
}

int main(void)
{
	/* Damage may declare a legal but huge max_block; such a load may fail
	 * with NOMEM but must not take the machine's memory. */
	ref_limit_memory((size_t)2 << 30);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_crc_passing_damage),
		cmocka_unit_test(test_nan_state_refused),
	};
	int failed = cmocka_run_group_tests_name("truncated mode", tests, NULL, NULL);
	g_mode = ISVD_MODE_EXACT;
	return failed + cmocka_run_group_tests_name("exact mode", tests, NULL, NULL);
}
