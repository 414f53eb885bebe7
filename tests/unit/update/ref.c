/*
 * ref.c — reference code shared by the engine's unit tests (see ref.h).
 *
 * The references are deliberately naive: they keep the whole accumulated
 * matrix and hand it to LAPACK, so that what the tests compare the engine
 * against is obviously right rather than fast.
 */
#include "ref.h"
#include "isvd_bytes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include <cblas.h>
#include <lapacke.h>

#if defined(__SANITIZE_ADDRESS__)
#define REF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REF_ASAN 1
#endif
#endif

/* ---- random numbers ---- */

void ref_rng_seed(struct ref_rng *g, uint64_t seed)
{
	g->s = seed;
	g->have_spare = 0;
	g->spare = 0.0;
}

uint64_t ref_rng_u64(struct ref_rng *g)
{
	uint64_t z = (g->s += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

double ref_rng_uniform(struct ref_rng *g)
{
	/* 53 random bits, shifted off zero: (0, 1). */
	return ((double)(ref_rng_u64(g) >> 11) + 0.5) * 0x1.0p-53;
}

double ref_rng_normal(struct ref_rng *g)
{
	if (g->have_spare) {
		g->have_spare = 0;
		return g->spare;
	}
	double u1 = ref_rng_uniform(g), u2 = ref_rng_uniform(g);
	double rad = sqrt(-2.0 * log(u1));
	double ang = 2.0 * M_PI * u2;
	g->spare = rad * sin(ang);
	g->have_spare = 1;
	return rad * cos(ang);
}

size_t ref_rng_range(struct ref_rng *g, size_t lo, size_t hi)
{
	return lo + (size_t)(ref_rng_u64(g) % (uint64_t)(hi - lo + 1));
}

void ref_limit_memory(size_t bytes)
{
#ifndef REF_ASAN
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_AS, &rl), 0);
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)bytes)
		rl.rlim_cur = (rlim_t)bytes;
	assert_int_equal(setrlimit(RLIMIT_AS, &rl), 0);
#else
	(void)bytes;
#endif
}

double *ref_alloc(size_t count)
{
	double *p = calloc(count ? count : 1, sizeof *p);
	assert_non_null(p);
	return p;
}

/* ---- synthetic streams ---- */

void ref_gen_init(struct ref_gen *g, uint64_t seed, size_t n, size_t r, double decay,
                  double noise, double offset)
{
	ref_rng_seed(&g->rng, seed);
	g->n = n;
	g->r = r;
	g->noise = noise;
	g->decay = decay;
	g->basis = ref_alloc(r * n);
	g->offset = ref_alloc(n);
	for (size_t j = 0; j < r; j++) {
		double *b = g->basis + j * n, nrm = 0.0;
		for (size_t c = 0; c < n; c++) {
			b[c] = ref_rng_normal(&g->rng);
			nrm += b[c] * b[c];
		}
		nrm = sqrt(nrm);
		double scale = pow(decay, (double)j) / nrm;
		for (size_t c = 0; c < n; c++)
			b[c] *= scale;
	}
	if (offset > 0.0) {
		double nrm = 0.0;
		for (size_t c = 0; c < n; c++) {
			g->offset[c] = ref_rng_normal(&g->rng);
			nrm += g->offset[c] * g->offset[c];
		}
		nrm = sqrt(nrm);
		for (size_t c = 0; c < n; c++)
			g->offset[c] *= offset / nrm;
	}
}

void ref_gen_rows(struct ref_gen *g, double *rows, size_t m, size_t ld)
{
	for (size_t i = 0; i < m; i++) {
		double *x = rows + i * ld;
		memcpy(x, g->offset, g->n * sizeof *x);
		for (size_t j = 0; j < g->r; j++) {
			double z = ref_rng_normal(&g->rng);
			const double *b = g->basis + j * g->n;
			for (size_t c = 0; c < g->n; c++)
				x[c] += z * b[c];
		}
		if (g->noise > 0.0)
			for (size_t c = 0; c < g->n; c++)
				x[c] += g->noise * ref_rng_normal(&g->rng);
	}
}

void ref_gen_fini(struct ref_gen *g)
{
	free(g->basis);
	free(g->offset);
	g->basis = g->offset = NULL;
}

double *ref_make_rows(uint64_t seed, size_t m, size_t n, size_t r, double decay,
                      double noise, double offset)
{
	struct ref_gen g;
	ref_gen_init(&g, seed, n, r, decay, noise, offset);
	double *rows = ref_alloc(m * n);
	ref_gen_rows(&g, rows, m, n);
	ref_gen_fini(&g);
	return rows;
}

/* ---- reference linear algebra ---- */

void ref_svd(const double *a, size_t m, size_t n, size_t lda, double *s, double *vt)
{
	/* The row-major m×n matrix is the column-major n×m matrix Aᵀ = V Σ Uᵀ,
	 * so LAPACK's "U" of Aᵀ, n×min(m,n) column-major with ld n, is exactly
	 * our vt in row-major. */
	size_t mn = m < n ? m : n;
	double *t = ref_alloc(n * m);
	for (size_t i = 0; i < m; i++)
		memcpy(t + i * n, a + i * lda, n * sizeof *t);
	lapack_int info;
	if (vt) {
		double *uu = ref_alloc(mn * m);
		info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)n, (lapack_int)m, t,
		                      (lapack_int)n, s, vt, (lapack_int)n, uu, (lapack_int)mn);
		free(uu);
	} else {
		double dummy = 0.0;
		info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)m, t,
		                      (lapack_int)n, s, &dummy, 1, &dummy, 1);
	}
	free(t);
	assert_int_equal(info, 0);
}

void ref_weighted(const double *x, size_t m, size_t n, double lambda, int center,
                  double *out, double *mean, double *weight)
{
	double *mu = ref_alloc(n);
	double wsum = 0.0;
	/* Oldest first: the small weights are summed before the large ones. */
	for (size_t i = 0; i < m; i++) {
		double w = pow(lambda, (double)(m - 1 - i));
		wsum += w;
		for (size_t c = 0; c < n; c++)
			mu[c] += w * x[i * n + c];
	}
	for (size_t c = 0; c < n; c++)
		mu[c] = center ? mu[c] / wsum : 0.0;
	for (size_t i = 0; i < m; i++) {
		double sw = sqrt(pow(lambda, (double)(m - 1 - i)));
		for (size_t c = 0; c < n; c++)
			out[i * n + c] = sw * (x[i * n + c] - mu[c]);
	}
	if (mean)
		memcpy(mean, mu, n * sizeof *mean);
	if (weight)
		*weight = wsum;
	free(mu);
}

double ref_sin_angle(const double *vt1, const double *vt2, size_t r, size_t n)
{
	if (r == 0)
		return 0.0;
	/* Rows of M = vt1 − (vt1·vt2ᵀ)·vt2 are the parts of span(vt1) outside
	 * span(vt2); its largest singular value is sin θ_max. */
	double *p = ref_alloc(r * r), *mm = ref_alloc(r * n), *s = ref_alloc(r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)r, (int)n, 1.0,
	            vt1, (int)n, vt2, (int)n, 0.0, p, (int)r);
	memcpy(mm, vt1, r * n * sizeof *mm);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)n, (int)r, -1.0,
	            p, (int)r, vt2, (int)n, 1.0, mm, (int)n);
	ref_svd(mm, r, n, n, s, NULL);
	double res = s[0];
	free(p);
	free(mm);
	free(s);
	return res;
}

double ref_orth_error(const double *vt, size_t r, size_t n)
{
	if (r == 0)
		return 0.0;
	double *gm = ref_alloc(r * r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)r, (int)n, 1.0,
	            vt, (int)n, vt, (int)n, 0.0, gm, (int)r);
	for (size_t i = 0; i < r; i++)
		gm[i * r + i] -= 1.0;
	double e = ref_frob(gm, r, r);
	free(gm);
	return e;
}

double ref_frob(const double *a, size_t m, size_t n)
{
	/* Scaled sum of squares, so nothing overflows or underflows. */
	double scale = 0.0, ssq = 1.0;
	for (size_t i = 0; i < m * n; i++) {
		double v = fabs(a[i]);
		if (v == 0.0)
			continue;
		if (scale < v) {
			ssq = 1.0 + ssq * (scale / v) * (scale / v);
			scale = v;
		} else {
			ssq += (v / scale) * (v / scale);
		}
	}
	return scale * sqrt(ssq);
}

double ref_proj_error(const double *a, size_t m, size_t n, const double *vt, size_t k)
{
	double *res = ref_alloc(m * n);
	memcpy(res, a, m * n * sizeof *res);
	if (k > 0) {
		double *b = ref_alloc(m * k);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)k, (int)n, 1.0,
		            a, (int)n, vt, (int)n, 0.0, b, (int)k);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, -1.0,
		            b, (int)k, vt, (int)n, 1.0, res, (int)n);
		free(b);
	}
	double e = ref_frob(res, m, n);
	free(res);
	return e;
}

/* ---- engine helpers ---- */

struct isvd_options ref_options(size_t n, size_t k, size_t extra)
{
	struct isvd_options o;
	isvd_options_default(&o);
	o.dim = n;
	o.rank = k;
	o.extra = extra;
	/* the suites written for the truncated strategy test it explicitly;
	 * test_exact_mode.c sets ISVD_MODE_EXACT and ISVD_MODE_AUTO itself */
	o.mode = ISVD_MODE_TRUNCATED;
	return o;
}

struct isvd_model *ref_create(const struct isvd_options *o)
{
	struct isvd_model *md = NULL;
	REF_ASSERT_OK(isvd_model_create(o, &md));
	assert_non_null(md);
	return md;
}

void ref_feed(struct isvd_model *md, const double *rows, size_t m, size_t ld,
              size_t block, size_t mix_max, uint64_t mix_seed)
{
	struct ref_rng g;
	ref_rng_seed(&g, mix_seed);
	uint64_t before = isvd_model_rows_seen(md);
	size_t i = 0;
	while (i < m) {
		size_t b = block ? block : ref_rng_range(&g, 1, mix_max);
		if (b > m - i)
			b = m - i;
		REF_ASSERT_OK(isvd_model_update(md, rows + i * ld, b, ld));
		i += b;
	}
	assert_int_equal(isvd_model_rows_seen(md), before + m);
}

unsigned char *ref_save(const struct isvd_model *md, size_t *len)
{
	size_t cap = isvd_model_saved_size(md);
	assert_true(cap > 0);
	unsigned char *buf = malloc(cap);
	assert_non_null(buf);
	memset(buf, 0xA5, cap);
	*len = 0;
	REF_ASSERT_OK(isvd_model_save(md, buf, cap, len));
	assert_int_equal(*len, cap);
	return buf;
}

void ref_factors(const struct isvd_model *md, double **sigma, double **vt, double **mean,
                 size_t *rank)
{
	struct isvd_options o;
	REF_ASSERT_OK(isvd_model_options(md, &o));
	size_t kmax = o.rank < o.dim ? o.rank : o.dim;
	*sigma = ref_alloc(kmax);
	*vt = ref_alloc(kmax * o.dim);
	*mean = ref_alloc(o.dim);
	*rank = (size_t)-1;
	REF_ASSERT_OK(isvd_model_factors(md, *sigma, *vt, *mean, rank));
	assert_true(*rank <= kmax);
	assert_int_equal(*rank, isvd_model_rank(md));
}

void ref_check_against(const struct isvd_model *md, const double *a, size_t m, size_t n,
                       size_t rank, size_t ncmp, const double *mean, double tol_sigma,
                       double tol_angle)
{
	size_t mn = m < n ? m : n;
	double *s_ref = ref_alloc(mn), *vt_ref = ref_alloc(mn * n);
	ref_svd(a, m, n, n, s_ref, vt_ref);

	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	if (r != rank) {
		print_error("reported rank %zu, expected %zu\n", r, rank);
		for (size_t i = 0; i < mn && i < rank + 3; i++)
			print_error("  sigma_ref[%zu] = %.17g  model %.17g\n", i, s_ref[i],
			            i < r ? s[i] : 0.0);
		fail();
	}
	assert_true(ncmp <= r);
	for (size_t i = 0; i < ncmp; i++) {
		if (!(fabs(s[i] - s_ref[i]) <= tol_sigma * s_ref[i])) {
			print_error("sigma[%zu] = %.17g, reference %.17g, relative error %.3g > %.3g\n",
			            i, s[i], s_ref[i], fabs(s[i] - s_ref[i]) / s_ref[i], tol_sigma);
			fail();
		}
	}
	for (size_t i = 1; i < r; i++)
		REF_ASSERT_LE(s[i], s[i - 1]);
	REF_ASSERT_LE(ref_sin_angle(vt, vt_ref, ncmp, n), tol_angle);
	REF_ASSERT_LE(ref_orth_error(vt, r, n), 1e-12);

	double scale = 1.0;
	for (size_t c = 0; mean && c < n; c++)
		scale = fmax(scale, fabs(mean[c]));
	for (size_t c = 0; c < n; c++)
		REF_ASSERT_CLOSE(mu[c], mean ? mean[c] : 0.0, tol_sigma * scale);

	free(s_ref);
	free(vt_ref);
	free(s);
	free(vt);
	free(mu);
}

void ref_fix_crc(unsigned char *img, size_t len)
{
	uint32_t crc = isvd_crc32c(0, img, len - 4);
	for (int i = 0; i < 4; i++)
		img[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
}

int ref_patch_double(unsigned char *img, size_t len, double old, double new)
{
	unsigned char o[8], nw[8];
	uint64_t u, v;
	memcpy(&u, &old, 8);
	memcpy(&v, &new, 8);
	for (int i = 0; i < 8; i++) {
		o[i] = (unsigned char)(u >> (8 * i));
		nw[i] = (unsigned char)(v >> (8 * i));
	}
	size_t found = 0, at = 0;
	for (size_t p = 0; p + 8 <= len - 4; p++)
		if (memcmp(img + p, o, 8) == 0) {
			found++;
			at = p;
		}
	if (found != 1)
		return 0;
	memcpy(img + at, nw, 8);
	ref_fix_crc(img, len);
	return 1;
}

void ref_assert_same_image(const struct isvd_model *a, const struct isvd_model *b)
{
	size_t la, lb;
	unsigned char *ia = ref_save(a, &la), *ib = ref_save(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ia, ib, la);
	free(ia);
	free(ib);
}
