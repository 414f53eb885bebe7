/*
 * image.c — saved model images: the complete state as bytes, and back.
 *
 * FORMAT (version 1; every integer and double little-endian, doubles as
 * their IEEE-754 bit patterns, so an image is bit-exact across machines):
 *
 *   off  size  field
 *     0     8  magic "ISVDMODL"
 *     8     4  u32 format version (1)
 *    12     4  u32 flags: bit 0 = centring on, bit 1 = exact mode; other
 *                bits must be 0
 *    16     8  u64 total image length in bytes, CRC included
 *    24     8  u64 n (dimension)           32  u64 k (rank)
 *    40     8  u64 p (extra)               48  u64 max_block
 *    56     8  f64 forget                  64  f64 rcond
 *    72     8  u64 reorth_every            80  u64 r (components kept)
 *    88     8  u64 rows_seen               96  u64 rows_since_reorth
 *   104     8  u64 reorth_count           112  f64 weight
 *   120     8  f64 energy
 *   128  8·r   f64 sigma[r]
 *        8·n·r f64 V, column by column (column j = right singular vector j)
 *        8·n   f64 mean (only when centring is on)
 *   8·n(n+1)/2 f64 R's upper triangle, column by column (exact mode only;
 *              sigma and V above are then its SVD)
 *         4    u32 CRC32C of every byte before it
 *
 * Loading checks, in order: length against the header (TRUNCATED), magic,
 * version, flags and declared length (FORMAT), CRC (CORRUPT), then every
 * field against the limits create() enforces and the state invariants:
 * σ positive, finite, non-increasing; ‖VᵀV − I‖_F ≤ 1e-6; totals and
 * magnitudes within the bounds a running model keeps (FORMAT).  The model
 * is built aside and returned only when all pass.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "isvd_bytes.h"

#define IMAGE_MAGIC   "ISVDMODL"
#define IMAGE_VERSION 1u
#define HEADER_LEN    128u
#define FLAG_CENTER   1u
#define FLAG_EXACT    2u
/* Largest σ or |μ_j| a loaded image may hold: sqrt(DBL_MAX)/4, so that
 * sums of squares formed from them in queries and updates stay finite. */
#define MAX_MAGNITUDE 3.35e153

static void put_f64(unsigned char *p, double d)
{
	uint64_t v;
	memcpy(&v, &d, sizeof v);
	isvd_put_le64(p, v);
}

static double get_f64(const unsigned char *p)
{
	uint64_t v = isvd_get_le64(p);
	double d;
	memcpy(&d, &v, sizeof d);
	return d;
}

/* Image length for the given shape, or 0 on overflow. */
static uint64_t image_len(uint64_t n, uint64_t r, int center, int exact)
{
	const uint64_t lim = UINT64_MAX / 16;
	if (n > lim || r > lim || (r && n > lim / r) || (exact && n > (1u << 30)))
		return 0;
	return HEADER_LEN + 8 * r + 8 * n * r + (center ? 8 * n : 0) +
	       (exact ? 4 * n * (n + 1) : 0) + 4;
}

size_t isvd_model_saved_size(const struct isvd_model *m)
{
	if (!m || m->frozen || upd_refresh(m))
		return 0;
	return (size_t)image_len(m->n, m->r, m->center, m->mode == ISVD_MODE_EXACT);
}

int isvd_model_save(const struct isvd_model *m, void *buf, size_t cap, size_t *len)
{
	if (!m || !buf || m->frozen)
		return ISVD_ERR_INVALID;
	const int err = upd_refresh(m);
	if (err)
		return err;
	const size_t total = isvd_model_saved_size(m);
	const int exact = m->mode == ISVD_MODE_EXACT;
	unsigned char *p = buf, *q;

	if (cap < total)
		return ISVD_ERR_TOO_LARGE;
	memcpy(p, IMAGE_MAGIC, 8);
	isvd_put_le32(p + 8, IMAGE_VERSION);
	isvd_put_le32(p + 12, (m->center ? FLAG_CENTER : 0) | (exact ? FLAG_EXACT : 0));
	isvd_put_le64(p + 16, total);
	isvd_put_le64(p + 24, m->n);
	isvd_put_le64(p + 32, m->k);
	isvd_put_le64(p + 40, m->p);
	isvd_put_le64(p + 48, m->B);
	put_f64(p + 56, m->forget);
	put_f64(p + 64, m->rcond);
	isvd_put_le64(p + 72, m->reorth_every);
	isvd_put_le64(p + 80, m->r);
	isvd_put_le64(p + 88, m->rows_seen);
	isvd_put_le64(p + 96, m->rows_since_reorth);
	isvd_put_le64(p + 104, m->reorth_count);
	put_f64(p + 112, m->weight);
	put_f64(p + 120, m->energy);
	q = p + HEADER_LEN;
	for (size_t i = 0; i < m->r; i++, q += 8)
		put_f64(q, m->sigma[i]);
	for (size_t i = 0; i < m->n * m->r; i++, q += 8)
		put_f64(q, m->V[i]);
	if (m->center)
		for (size_t i = 0; i < m->n; i++, q += 8)
			put_f64(q, m->mean[i]);
	if (exact)
		for (size_t j = 0; j < m->n; j++)
			for (size_t i = 0; i <= j; i++, q += 8)
				put_f64(q, m->Rt[j * m->n + i]);
	isvd_put_le32(q, isvd_crc32c(0, p, (size_t)(q - p)));
	if (len)
		*len = total;
	return ISVD_OK;
}

/* Checks an image's header, length and CRC and reads the options it
 * declares into *o and its component count into *r.  isvd_err codes. */
static int read_header(const unsigned char *p, size_t len, struct isvd_options *o,
                       uint64_t *r)
{
	if (len < HEADER_LEN + 4)
		return ISVD_ERR_TRUNCATED;
	if (memcmp(p, IMAGE_MAGIC, 8) != 0 || isvd_get_le32(p + 8) != IMAGE_VERSION)
		return ISVD_ERR_FORMAT;
	const uint32_t flags = isvd_get_le32(p + 12);
	if (flags & ~(FLAG_CENTER | FLAG_EXACT))
		return ISVD_ERR_FORMAT;
	const uint64_t total = isvd_get_le64(p + 16);
	if (total < HEADER_LEN + 4)
		return ISVD_ERR_FORMAT;
	if (len < total)
		return ISVD_ERR_TRUNCATED;
	if (len > total)
		return ISVD_ERR_FORMAT;  /* trailing bytes */
	if (isvd_crc32c(0, p, total - 4) != isvd_get_le32(p + total - 4))
		return ISVD_ERR_CORRUPT;

	const uint64_t n = isvd_get_le64(p + 24);
	const int center = (flags & FLAG_CENTER) != 0, exact = (flags & FLAG_EXACT) != 0;
	*r = isvd_get_le64(p + 80);
	if (n < 1 || n > ISVD_MAX_DIM || image_len(n, *r, center, exact) != total)
		return ISVD_ERR_FORMAT;
	isvd_options_default(o);
	o->dim = (size_t)n;
	o->rank = (size_t)isvd_get_le64(p + 32);
	o->extra = (size_t)isvd_get_le64(p + 40);
	o->max_block = (size_t)isvd_get_le64(p + 48);
	o->center = center;
	o->forget = get_f64(p + 56);
	o->rcond = get_f64(p + 64);
	o->reorth_every = isvd_get_le64(p + 72);
	o->mode = exact ? ISVD_MODE_EXACT : ISVD_MODE_TRUNCATED;
	if (isvd_get_le64(p + 32) > ISVD_MAX_RANK || isvd_get_le64(p + 40) > ISVD_MAX_RANK ||
	    isvd_get_le64(p + 48) > ISVD_MAX_BLOCK || upd_validate_options(o) != ISVD_OK)
		return ISVD_ERR_FORMAT;
	return ISVD_OK;
}

/* Reads the state after the header into the freshly allocated m (r
 * components) and checks it against the invariants a running model keeps.
 * ISVD_ERR_FORMAT when any field is out of them. */
static int read_state(struct isvd_model *m, const unsigned char *p, uint64_t r)
{
	const unsigned char *q;

	if (r > m->m)
		return ISVD_ERR_FORMAT;
	m->r = (size_t)r;
	m->rows_seen = isvd_get_le64(p + 88);
	m->rows_since_reorth = isvd_get_le64(p + 96);
	m->reorth_count = isvd_get_le64(p + 104);
	m->weight = get_f64(p + 112);
	m->energy = get_f64(p + 120);
	/* The bounds a running model keeps (see check_rows in model.c): energy
	 * below DBL_MAX/4, hence σ and |μ| far below overflow when squared. */
	if (!(isfinite(m->weight) && m->weight >= 0 && m->energy >= 0 &&
	      m->energy < DBL_MAX / 4))
		return ISVD_ERR_FORMAT;
	if ((m->rows_seen == 0) != (m->weight == 0))
		return ISVD_ERR_FORMAT;
	q = p + HEADER_LEN;
	for (size_t i = 0; i < m->r; i++, q += 8) {
		m->sigma[i] = get_f64(q);
		if (!(m->sigma[i] > 0 && m->sigma[i] <= MAX_MAGNITUDE) ||
		    (i > 0 && m->sigma[i] > m->sigma[i - 1]))
			return ISVD_ERR_FORMAT;
	}
	for (size_t i = 0; i < m->n * m->r; i++, q += 8) {
		m->V[i] = get_f64(q);
		if (!isfinite(m->V[i]) || fabs(m->V[i]) > 1.0 + 1e-9)
			return ISVD_ERR_FORMAT;
	}
	if (m->center)
		for (size_t i = 0; i < m->n; i++, q += 8) {
			m->mean[i] = get_f64(q);
			if (!(fabs(m->mean[i]) <= MAX_MAGNITUDE))
				return ISVD_ERR_FORMAT;
		}
	if (m->mode == ISVD_MODE_EXACT) {   /* R; sigma and V above are its SVD */
		for (size_t j = 0; j < m->n; j++)
			for (size_t i = 0; i <= j; i++, q += 8) {
				m->Rt[j * m->n + i] = get_f64(q);
				if (!(fabs(m->Rt[j * m->n + i]) <= MAX_MAGNITUDE))
					return ISVD_ERR_FORMAT;
			}
		m->stale = 0;
	}
	/* V must be orthonormal (loosely: a running model keeps ‖VᵀV − I‖_F
	 * near 1e-12 and re-orthogonalises on schedule). */
	double orth;
	const int err = upd_orthogonality_error(m, &orth);
	if (err)
		return err;
	return orth <= 1e-6 ? ISVD_OK : ISVD_ERR_FORMAT;
}

int isvd_model_load(const void *buf, size_t len, struct isvd_model **out)
{
	struct isvd_options o;
	struct isvd_model *m = NULL;
	uint64_t r;
	int err;

	if (!buf || !out)
		return ISVD_ERR_INVALID;
	if ((err = read_header(buf, len, &o, &r)))
		return err;
	if ((err = upd_alloc(&o, &m)))
		return err;
	if ((err = read_state(m, buf, r))) {
		isvd_model_destroy(m);
		return err;
	}
	*out = m;
	return ISVD_OK;
}
