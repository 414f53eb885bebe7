/*
 * ref.h — reference code shared by the engine's unit tests.
 *
 * Everything the tests compare the engine against lives here, so each test
 * states only what it checks: a seeded generator (splitmix64 + Box–Muller)
 * of low-rank-plus-noise rows, LAPACK's SVD of a whole accumulated matrix,
 * the explicitly weighted and centred matrix a model with forgetting and
 * centring stands for, principal angles between subspaces, and small
 * helpers that feed, save and compare models while asserting every return
 * code.  Matrices are row-major (one observation per row), like the engine's
 * public interface; a "vt" is r×n row-major, its rows the right singular
 * vectors.
 *
 * Helpers fail the current cmocka test on any unexpected engine or LAPACK
 * return code; memory they hand back is owned by the caller (free()).
 */
#ifndef ISVD_TESTS_REF_H
#define ISVD_TESTS_REF_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "isvd_model.h"

/* ---- assertions with numbers in the message ---- */

/* Fails unless val ≤ bound (a NaN val fails). */
#define REF_ASSERT_LE(val, bound) do { \
	double ref_v_ = (val), ref_b_ = (bound); \
	if (!(ref_v_ <= ref_b_)) { \
		print_error("%s = %.17g is not <= %s = %.17g\n", #val, ref_v_, #bound, ref_b_); \
		fail(); \
	} \
} while (0)

/* Fails unless |a − b| ≤ tol (NaN fails). */
#define REF_ASSERT_CLOSE(a, b, tol) do { \
	double ref_a_ = (a), ref_bb_ = (b), ref_t_ = (tol); \
	if (!(fabs(ref_a_ - ref_bb_) <= ref_t_)) { \
		print_error("%s = %.17g and %s = %.17g differ by %.3g > %.3g\n", \
		            #a, ref_a_, #b, ref_bb_, fabs(ref_a_ - ref_bb_), ref_t_); \
		fail(); \
	} \
} while (0)

/* Fails unless the engine call returned the expected code; names both. */
#define REF_ASSERT_ERR(call, expected) do { \
	int ref_rc_ = (call), ref_ex_ = (expected); \
	if (ref_rc_ != ref_ex_) { \
		print_error("%s returned %d (%s), expected %d (%s)\n", #call, ref_rc_, \
		            isvd_strerror(ref_rc_), ref_ex_, isvd_strerror(ref_ex_)); \
		fail(); \
	} \
} while (0)

#define REF_ASSERT_OK(call) REF_ASSERT_ERR(call, ISVD_OK)

/* ---- seeded random numbers ---- */

struct ref_rng {
	uint64_t s;
	int have_spare;
	double spare;
};

void ref_rng_seed(struct ref_rng *g, uint64_t seed);
uint64_t ref_rng_u64(struct ref_rng *g);      /* splitmix64 */
double ref_rng_uniform(struct ref_rng *g);    /* uniform in (0, 1) */
double ref_rng_normal(struct ref_rng *g);     /* standard normal (Box–Muller) */
size_t ref_rng_range(struct ref_rng *g, size_t lo, size_t hi); /* uniform in [lo, hi] */

/* ---- synthetic streams ----
 * Rows are  x = offset + Σ_{j<r} z_j·decay^j·b_j + noise·e,  z, e standard
 * normal, b_j fixed random unit vectors (drawn at init), offset a fixed
 * random vector of norm `offset` (0: none).  With noise = 0 the rows span
 * exactly r dimensions (plus the offset direction). */
struct ref_gen {
	size_t n, r;
	double noise;
	double decay;
	double *basis;   /* r×n */
	double *offset;  /* n */
	struct ref_rng rng;
};

void ref_gen_init(struct ref_gen *g, uint64_t seed, size_t n, size_t r, double decay,
                  double noise, double offset);
void ref_gen_rows(struct ref_gen *g, double *rows, size_t m, size_t ld);
void ref_gen_fini(struct ref_gen *g);

/* Convenience: m×n rows (ld = n) from a fresh generator; caller frees. */
double *ref_make_rows(uint64_t seed, size_t m, size_t n, size_t r, double decay,
                      double noise, double offset);

/* Caps this process's address space (RLIMIT_AS) so a runaway allocation
 * fails with NULL instead of exhausting the machine.  A no-op under
 * AddressSanitizer, whose shadow memory needs a huge address space (the
 * test environment sets ASan's own max_allocation_size_mb instead). */
void ref_limit_memory(size_t bytes);

/* calloc that fails the test instead of returning NULL. */
double *ref_alloc(size_t count);

/* ---- reference linear algebra ---- */

/* Full thin SVD of the m×n row-major matrix a (ld lda) with LAPACKE_dgesdd:
 * s gets min(m, n) values (non-increasing), vt (may be NULL) gets
 * min(m, n) rows of n values. */
void ref_svd(const double *a, size_t m, size_t n, size_t lda, double *s, double *vt);

/* The matrix a model with forgetting λ and centring stands for: row i of the
 * m rows (oldest first) becomes sqrt(λ^(m−1−i))·(x_i − μ), μ the weighted
 * mean when center (else 0).  out is m×n (ld n); mean (may be NULL) gets μ;
 * *weight (may be NULL) gets Σ λ^t. */
void ref_weighted(const double *x, size_t m, size_t n, double lambda, int center,
                  double *out, double *mean, double *weight);

/* Sine of the largest principal angle between the row spaces of two r×n
 * matrices with orthonormal rows. */
double ref_sin_angle(const double *vt1, const double *vt2, size_t r, size_t n);

/* ‖vt·vtᵀ − I‖_F (i.e. ‖VᵀV − I‖_F) for r×n vt. */
double ref_orth_error(const double *vt, size_t r, size_t n);

/* ‖A‖_F of an m×n row-major matrix. */
double ref_frob(const double *a, size_t m, size_t n);

/* ‖A − A·VᵀV‖_F for the k×n vt (rows orthonormal): the error of projecting
 * A onto the span of vt's rows. */
double ref_proj_error(const double *a, size_t m, size_t n, const double *vt, size_t k);

/* ---- engine helpers (assert success) ---- */

/* Options with dim, rank and extra set, mode TRUNCATED, the rest default. */
struct isvd_options ref_options(size_t n, size_t k, size_t extra);

struct isvd_model *ref_create(const struct isvd_options *o);

/* Feeds m rows (ld) in calls of `block` rows; block = 0 means a seeded
 * random mix of call sizes in [1, mix_max]. */
void ref_feed(struct isvd_model *md, const double *rows, size_t m, size_t ld,
              size_t block, size_t mix_max, uint64_t mix_seed);

/* Saved image (malloc'd, *len its size). */
unsigned char *ref_save(const struct isvd_model *md, size_t *len);

/* Asserts that two models save to the same bytes (their whole state is
 * bit-identical). */
void ref_assert_same_image(const struct isvd_model *a, const struct isvd_model *b);

/* Recomputes the trailing CRC32C of a saved image after a test edits it. */
void ref_fix_crc(unsigned char *img, size_t len);

/* Replaces the one occurrence of the little-endian bit pattern of `old` in
 * the image (before its CRC) by that of `new` and fixes the CRC; returns 1,
 * or 0 (image untouched) when the pattern does not occur exactly once. */
int ref_patch_double(unsigned char *img, size_t len, double old, double new);

/* Factors as read out; *rank receives the count.  Caller frees the three. */
void ref_factors(const struct isvd_model *md, double **sigma, double **vt, double **mean,
                 size_t *rank);

/* The central comparison: the model's reported factors against LAPACK's SVD
 * of the explicit matrix `a` (m×n, ld n) the model stands for.  Asserts
 * that the reported rank is `rank` (rank ≤ min(m, n)), that the first ncmp
 * singular values agree to tol_sigma relative, that the spans of the first
 * ncmp right singular vectors agree (largest principal-angle sine ≤
 * tol_angle), and that the model's mean equals `mean` (NULL: all zeros) to
 * tol_sigma·max(1, max|mean|) (test data is of order 1). */
void ref_check_against(const struct isvd_model *md, const double *a, size_t m, size_t n,
                       size_t rank, size_t ncmp, const double *mean, double tol_sigma,
                       double tol_angle);

#endif
