/*
 * decode.c — hardened decoders for requests, replies and snapshots.
 *
 * Every frame is untrusted.  A decode runs in two walks over the bytes:
 *
 *   check_frame()   proto_rd_skip() over the whole frame: exactly one value,
 *                   every count fits the remaining bytes, depth bounded, no
 *                   trailing bytes, the value is a map.  Allocates nothing.
 *   dec_entries()   the body map against a field table (encode.c).  Strings,
 *                   ids and vectors are copied; a matrix is first scanned
 *                   without allocating (types, equal rows, ±Inf, limits) and
 *                   only then allocated at its exact size and filled.
 *
 * Memory: every decoded value costs at most 8 bytes per wire byte that
 * carried it (a 1-byte fixint or nil becomes an 8-byte double; f32 data
 * doubles), so a decode holds at most 8 × frame + one byte per string.
 *
 * Error codes: structural faults (not msgpack, truncation, depth, trailing
 * bytes, not a map, missing/ill-typed/unknown/duplicate keys) are
 * BAD_REQUEST; `op` naming nothing is UNKNOWN_OP; a malformed matrix is
 * BAD_MATRIX, ±Inf in a matrix NON_FINITE, a matrix or frame over the limits
 * TOO_LARGE.  Messages name the key, the row and column (0-based) or the
 * byte offset at fault.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "proto_internal.h"

void proto_limits(const struct isvd_proto_limits *in, struct isvd_proto_limits *out)
{
	static const struct isvd_proto_limits def = {
		.max_frame = (size_t)256 << 20,
		.max_rows = (size_t)1 << 24,
		.max_cols = (size_t)1 << 24,
		.max_values = (size_t)1 << 25,
		.max_depth = 16,
	};
	*out = def;
	if (!in)
		return;
	if (in->max_frame)  out->max_frame = in->max_frame;
	if (in->max_rows)   out->max_rows = in->max_rows;
	if (in->max_cols)   out->max_cols = in->max_cols;
	if (in->max_values) out->max_values = in->max_values;
	if (in->max_depth)  out->max_depth = in->max_depth;
	if (out->max_values > SIZE_MAX / 8)
		out->max_values = SIZE_MAX / 8;
	if (out->max_depth < 3)
		out->max_depth = 3;     /* a request matrix needs map → array → array */
	if (out->max_depth > 64)
		out->max_depth = 64;
}

/* Printable copy of untrusted text for a message: at most 40 bytes, bytes
 * outside printable ASCII replaced by '?'. */
static const char *show(const uint8_t *p, size_t n, char buf[48])
{
	size_t k, m = n > 40 ? 40 : n;
	for (k = 0; k < m; k++)
		buf[k] = (p[k] >= 0x20 && p[k] < 0x7f && p[k] != '\'') ? (char)p[k] : '?';
	if (n > m) {
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = '\0';
	return buf;
}

static bool str_is(const struct proto_obj *o, const char *s)
{
	size_t n = strlen(s);
	return o->type == PT_STR && o->len == n && memcmp(o->ptr, s, n) == 0;
}

static uint8_t *copy_bytes(const uint8_t *p, size_t n)
{
	uint8_t *c = proto_malloc(n ? n : 1);
	if (c && n)
		memcpy(c, p, n);
	return c;
}

/* ---------------------------------------------------------------- matrices */

static int nonfinite(struct isvd_proto_error *err, const char *key, size_t i, size_t j, double v)
{
	return proto_fail(err, ISVD_PROTO_NON_FINITE, "%s: row %zu, column %zu is %s",
	                  key, i, j, v > 0 ? "+inf" : "-inf");
}

/* Form (a), after the outer array header of count elements.  With out NULL
 * it validates and reports the shape; with out it also fills out.
 * A first element that is not an array means one row of count numbers. */
static int scan_rows(struct proto_rd *rd, const char *key, uint32_t count,
                     const struct isvd_proto_limits *lim, double *out,
                     size_t *rows, size_t *cols, size_t *missing, struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc;
	*rows = *cols = *missing = 0;
	if (count == 0)
		return ISVD_PROTO_OK;

	struct proto_rd peek = *rd;
	if ((rc = proto_rd_obj(&peek, &o, err)))
		return rc;
	bool single = o.type != PT_ARRAY;
	size_t r = single ? 1 : count, c = 0;
	if (r > lim->max_rows)
		return proto_fail(err, ISVD_PROTO_TOO_LARGE, "%s: %zu rows exceed the limit of %zu",
		                  key, r, lim->max_rows);

	for (size_t i = 0; i < r; i++) {
		uint32_t n = count;
		if (!single) {
			if ((rc = proto_rd_obj(rd, &o, err)))
				return rc;
			if (o.type != PT_ARRAY)
				return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
				                  "%s: row %zu is %s; row 0 is an array, so every row must be one",
				                  key, i, proto_type_name(o.type));
			n = o.len;
		}
		if (i == 0) {
			c = n;
			if (c > lim->max_cols)
				return proto_fail(err, ISVD_PROTO_TOO_LARGE,
				                  "%s: %zu columns exceed the limit of %zu", key, c, lim->max_cols);
			if ((uint64_t)r * c > lim->max_values)
				return proto_fail(err, ISVD_PROTO_TOO_LARGE,
				                  "%s: %zu x %zu values exceed the limit of %zu",
				                  key, r, c, lim->max_values);
		} else if (n != c) {
			return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: row %zu has %" PRIu32
			                  " values; row 0 has %zu", key, i, n, c);
		}
		for (size_t j = 0; j < c; j++) {
			double v;
			if ((rc = proto_rd_obj(rd, &o, err)))
				return rc;
			if (o.type == PT_NIL) {
				v = NAN;
			} else if (!proto_obj_number(&o, &v)) {
				return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
				                  "%s: row %zu, column %zu is %s; a number or nil was expected",
				                  key, i, j, proto_type_name(o.type));
			} else if (isinf(v)) {
				return nonfinite(err, key, i, j, v);
			}
			if (isnan(v))
				++*missing;
			if (out)
				out[i * c + j] = v;
		}
	}
	*rows = r;
	*cols = c;
	return ISVD_PROTO_OK;
}

/* Converts the n little-endian values of esz bytes (8: f64, 4: f32) in
 * data into out, counting NaNs (missing values) in *missing; an infinity is
 * refused, naming its row and column (c columns). */
static int read_values(const struct proto_obj *data, unsigned esz, uint64_t n, uint64_t c,
                       const char *key, double *out, size_t *missing, struct isvd_proto_error *err)
{
	for (uint64_t q = 0; q < n; q++) {
		const uint8_t *b = data->ptr + q * esz;
		uint64_t u = 0;
		double x;
		for (unsigned t = esz; t-- > 0; )
			u = (u << 8) | b[t];
		if (esz == 8) {
			memcpy(&x, &u, sizeof x);
		} else {
			uint32_t w = (uint32_t)u;
			float f;
			memcpy(&f, &w, sizeof f);
			x = f;
		}
		if (isinf(x))
			return nonfinite(err, key, (size_t)(q / c), (size_t)(q % c), x);
		*missing += isnan(x) != 0;
		out[q] = x;
	}
	return ISVD_PROTO_OK;
}

/* Form (b), after the map header of count entries. */
static int dec_shaped(struct proto_rd *rd, const char *key, uint32_t count,
                      const struct isvd_proto_limits *lim, bool allow_empty,
                      struct isvd_proto_matrix *m, struct isvd_proto_error *err)
{
	struct proto_obj k, v, shape_r = { 0 }, shape_c = { 0 }, data = { 0 };
	bool has_shape = false, has_dtype = false, has_data = false;
	unsigned esz = 8;
	char buf[48];
	int rc;

	for (uint32_t e = 0; e < count; e++) {
		if ((rc = proto_rd_obj(rd, &k, err)))
			return rc;
		if (k.type != PT_STR)
			return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
			                  "%s: a key of the matrix map is %s; keys are strings",
			                  key, proto_type_name(k.type));
		bool *seen = str_is(&k, "shape") ? &has_shape : str_is(&k, "dtype") ? &has_dtype
		           : str_is(&k, "data") ? &has_data : NULL;
		if (!seen)
			return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
			                  "%s: unknown key '%s' in the matrix map (shape, dtype, data)",
			                  key, show(k.ptr, k.len, buf));
		if (*seen)
			return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: key '%s' appears twice in the matrix map",
			                  key, show(k.ptr, k.len, buf));
		*seen = true;
		if ((rc = proto_rd_obj(rd, &v, err)))
			return rc;
		if (seen == &has_shape) {
			if (v.type != PT_ARRAY || v.len != 2
			    || proto_rd_obj(rd, &shape_r, NULL) || shape_r.type != PT_UINT
			    || proto_rd_obj(rd, &shape_c, NULL) || shape_c.type != PT_UINT)
				return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
				                  "%s: shape must be [rows, cols], two non-negative integers", key);
		} else if (seen == &has_dtype) {
			if (str_is(&v, "f32"))
				esz = 4;
			else if (!str_is(&v, "f64"))
				return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
				                  "%s: dtype must be \"f64\" or \"f32\"", key);
		} else {
			if (v.type != PT_BIN)
				return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: data is %s; it must be a bin",
				                  key, proto_type_name(v.type));
			data = v;
		}
	}
	if (!has_shape || !has_dtype || !has_data)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: the matrix map lacks '%s'", key,
		                  !has_shape ? "shape" : !has_dtype ? "dtype" : "data");

	uint64_t r = shape_r.u, c = shape_c.u;
	if (r > lim->max_rows || c > lim->max_cols)
		return proto_fail(err, ISVD_PROTO_TOO_LARGE,
		                  "%s: shape [%" PRIu64 ", %" PRIu64 "] exceeds the limits of %zu rows and %zu columns",
		                  key, r, c, lim->max_rows, lim->max_cols);
	if (c && r > lim->max_values / c)
		return proto_fail(err, ISVD_PROTO_TOO_LARGE,
		                  "%s: shape [%" PRIu64 ", %" PRIu64 "] has more than %zu values",
		                  key, r, c, lim->max_values);
	uint64_t n = r * c;
	if (n * esz != data.len)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
		                  "%s: shape [%" PRIu64 ", %" PRIu64 "] of %s needs %" PRIu64
		                  " bytes of data; data has %" PRIu32,
		                  key, r, c, esz == 8 ? "f64" : "f32", n * esz, data.len);
	if (n == 0 && !allow_empty)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: the matrix is empty (shape [%" PRIu64
		                  ", %" PRIu64 "])", key, r, c);

	double *out = proto_malloc(n ? (size_t)n * sizeof *out : 1);
	if (!out)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	size_t missing = 0;
	if ((rc = read_values(&data, esz, n, c, key, out, &missing, err))) {
		proto_free(out);
		return rc;
	}
	m->data = out;
	m->rows = (size_t)r;
	m->cols = (size_t)c;
	m->n_missing = missing;
	return ISVD_PROTO_OK;
}

int proto_decode_matrix(struct proto_rd *rd, const char *key, const struct isvd_proto_limits *lim,
                        bool allow_empty, struct isvd_proto_matrix *m,
                        struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type == PT_MAP)
		return dec_shaped(rd, key, o.len, lim, allow_empty, m, err);
	if (o.type != PT_ARRAY)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
		                  "%s: a matrix is an array of rows or a {shape, dtype, data} map; got %s",
		                  key, proto_type_name(o.type));

	/* validate without allocating, then allocate the exact size and fill */
	struct proto_rd body = *rd;
	size_t r, c, missing;
	if ((rc = scan_rows(rd, key, o.len, lim, NULL, &r, &c, &missing, err)))
		return rc;
	if ((r == 0 || c == 0) && !allow_empty)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "%s: the matrix is empty (%zu rows of %zu values)",
		                  key, r, c);
	double *out = proto_malloc((r && c) ? r * c * sizeof *out : 1);
	if (!out)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	if ((rc = scan_rows(&body, key, o.len, lim, out, &r, &c, &missing, err))) {
		proto_free(out);
		return rc;
	}
	m->data = out;
	m->rows = r;
	m->cols = c;
	m->n_missing = missing;
	return ISVD_PROTO_OK;
}

/* ------------------------------------------------------------------ fields */

static int dec_uvec(struct proto_rd *rd, const char *key, bool *present,
                    struct isvd_proto_uvec *vec, struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type != PT_ARRAY)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; an array of non-negative "
		                  "integers was expected", key, proto_type_name(o.type));
	/* o.len <= bytes left: at most 8 bytes allocated per wire byte */
	uint64_t *v = proto_malloc(o.len ? (size_t)o.len * sizeof *v : 1);
	if (!v)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	for (uint32_t k = 0; k < o.len; k++) {
		struct proto_obj x;
		if ((rc = proto_rd_obj(rd, &x, err)) == 0 && x.type != PT_UINT)
			rc = proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s': element %" PRIu32
			                " is %s; a non-negative integer was expected", key, k,
			                x.type == PT_INT ? "negative" : proto_type_name(x.type));
		if (rc) {
			proto_free(v);
			return rc;
		}
		v[k] = x.u;
	}
	vec->v = v;
	vec->n = o.len;
	if (present)
		*present = true;
	return ISVD_PROTO_OK;
}

static int dec_key(struct proto_rd *rd, struct proto_obj *k, struct isvd_proto_error *err);
static int dec_str(struct proto_rd *rd, const char *key, size_t max, char **out,
                   struct isvd_proto_error *err);

/* info's pushers: an array of maps, each with `key` (required) and the
 * counters (absent ones 0); unknown keys are skipped.  An entry takes at
 * least 6 wire bytes ({key: ""}) and 40 bytes decoded. */
static int dec_pushers(struct proto_rd *rd, const char *key, bool *present,
                       struct isvd_proto_pushers *out, struct isvd_proto_error *err)
{
	static const char *const names[4] = { "pushes", "rows", "limited_pushes", "limited_rows" };
	struct proto_obj o;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type != PT_ARRAY)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; an array of maps was expected",
		                  key, proto_type_name(o.type));
	struct isvd_proto_pusher *v = proto_malloc(o.len ? (size_t)o.len * sizeof *v : 1);
	if (!v)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	if (o.len)
		memset(v, 0, (size_t)o.len * sizeof *v);
	out->v = v;                      /* released by isvd_proto_reply_fini() even on failure */
	out->n = o.len;
	for (uint32_t i = 0; i < o.len; i++) {
		struct proto_obj m, k, x;
		if ((rc = proto_rd_obj(rd, &m, err)))
			return rc;
		if (m.type != PT_MAP)
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "%s: element %" PRIu32 " is %s; a map "
			                  "was expected", key, i, proto_type_name(m.type));
		for (uint32_t e = 0; e < m.len; e++) {
			if ((rc = dec_key(rd, &k, err)))
				return rc;
			int which = -1;
			for (int j = 0; j < 4; j++)
				if (str_is(&k, names[j]))
					which = j;
			if (str_is(&k, "key") && !v[i].key) {
				if ((rc = dec_str(rd, "pushers.key", ISVD_PROTO_MAX_CLIENT, &v[i].key, err)))
					return rc;
			} else if (which >= 0) {
				if ((rc = proto_rd_obj(rd, &x, err)))
					return rc;
				if (x.type != PT_UINT)
					return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "%s: element %" PRIu32 ": '%s' "
					                  "is %s; a non-negative integer was expected", key, i,
					                  names[which], proto_type_name(x.type));
				uint64_t *dst[4] = { &v[i].pushes, &v[i].rows, &v[i].limited_pushes,
				                     &v[i].limited_rows };
				*dst[which] = x.u;
			} else if ((rc = proto_rd_skip(rd, 3, err))) {
				return rc;
			}
		}
		if (!v[i].key)
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "%s: element %" PRIu32 " lacks 'key'",
			                  key, i);
	}
	if (present)
		*present = true;
	return ISVD_PROTO_OK;
}

static int dec_vec(struct proto_rd *rd, const char *key, bool nil_ok, bool *present,
                   struct isvd_proto_vec *vec, struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type == PT_NIL && nil_ok)
		return ISVD_PROTO_OK;
	if (o.type != PT_ARRAY)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; an array of numbers%s was expected",
		                  key, proto_type_name(o.type), nil_ok ? " or nil" : "");
	/* o.len <= bytes left: at most 8 bytes allocated per wire byte */
	double *v = proto_malloc(o.len ? (size_t)o.len * sizeof *v : 1);
	if (!v)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	for (uint32_t k = 0; k < o.len; k++) {
		struct proto_obj x;
		if ((rc = proto_rd_obj(rd, &x, err)) == 0 && !proto_obj_number(&x, &v[k]))
			rc = proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s': element %" PRIu32
			                " is %s; a number was expected", key, k, proto_type_name(x.type));
		if (rc) {
			proto_free(v);
			return rc;
		}
	}
	vec->v = v;
	vec->n = o.len;
	if (present)
		*present = true;
	return ISVD_PROTO_OK;
}

static int dec_str(struct proto_rd *rd, const char *key, size_t max, char **out,
                   struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type != PT_STR)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; a string was expected",
		                  key, proto_type_name(o.type));
	if (o.len == 0 || o.len > max || memchr(o.ptr, 0, o.len))
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "key '%s' must be a string of 1 to %zu bytes without NUL", key, max);
	char *s = proto_malloc((size_t)o.len + 1);
	if (!s)
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	memcpy(s, o.ptr, o.len);
	s[o.len] = '\0';
	*out = s;
	return ISVD_PROTO_OK;
}

/* Copies the raw bytes of the value at rd (already validated). */
static int dec_raw(struct proto_rd *rd, const char *key, uint8_t **out, size_t *out_len,
                   struct isvd_proto_error *err)
{
	const uint8_t *start = rd->p;
	int rc = proto_rd_skip(rd, 2, err);
	if (rc)
		return rc;
	size_t n = (size_t)(rd->p - start);
	if (!(*out = copy_bytes(start, n)))
		return proto_fail(err, ISVD_PROTO_NOMEM, "%s: out of memory", key);
	*out_len = n;
	return ISVD_PROTO_OK;
}

static void *at(void *base, size_t off)
{
	return (unsigned char *)base + off;
}

static int dec_field(struct proto_rd *rd, const struct proto_field *f, void *base,
                     const struct isvd_proto_limits *lim, bool allow_empty,
                     struct isvd_proto_error *err)
{
	void *p = at(base, f->off);
	bool *flag = f->flag_off == PROTO_NO_FLAG ? NULL : at(base, f->flag_off);
	struct proto_obj o;
	int rc;

	switch (f->type) {
	case FT_MAT:
		return proto_decode_matrix(rd, f->key, lim, allow_empty, p, err);
	case FT_VEC:
	case FT_VEC_NIL:
		return dec_vec(rd, f->key, f->type == FT_VEC_NIL, flag, p, err);
	case FT_UVEC:
		return dec_uvec(rd, f->key, flag, p, err);
	case FT_PUSHERS:
		return dec_pushers(rd, f->key, flag, p, err);
	case FT_STR:
		return dec_str(rd, f->key, f->max_len ? f->max_len : ISVD_PROTO_MAX_STRING, p, err);
	case FT_RAW: {
		struct isvd_proto_raw *r = p;
		if ((rc = dec_raw(rd, f->key, &r->p, &r->n, err)))
			return rc;
		if (flag)
			*flag = true;
		return ISVD_PROTO_OK;
	}
	default:
		break;
	}
	if ((rc = proto_rd_obj(rd, &o, err)))
		return rc;
	switch (f->type) {
	case FT_U64:
		if (o.type != PT_UINT)
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
			                  "key '%s' is %s; a non-negative integer was expected",
			                  f->key, o.type == PT_INT ? "negative" : proto_type_name(o.type));
		*(uint64_t *)p = o.u;
		break;
	case FT_I64:
		if ((o.type != PT_UINT && o.type != PT_INT) || (o.type == PT_UINT && o.u > INT64_MAX))
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
			                  "key '%s' is %s; a 64-bit integer was expected", f->key,
			                  proto_type_name(o.type));
		*(int64_t *)p = o.type == PT_INT ? o.i : (int64_t)o.u;
		break;
	case FT_F64:
		if (!proto_obj_number(&o, p))
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; a number was expected",
			                  f->key, proto_type_name(o.type));
		break;
	case FT_BOOL:
		if (o.type != PT_BOOL)
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' is %s; a boolean was expected",
			                  f->key, proto_type_name(o.type));
		*(bool *)p = o.b;
		break;
	case FT_SPACE:
		if (str_is(&o, "scores"))
			*(enum isvd_proto_space *)p = ISVD_PROTO_SPACE_SCORES;
		else if (str_is(&o, "u"))
			*(enum isvd_proto_space *)p = ISVD_PROTO_SPACE_U;
		else
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
			                  "key '%s' must be \"scores\" or \"u\"", f->key);
		break;
	default:
		return proto_fail(err, ISVD_PROTO_INTERNAL, "key '%s': bad field table", f->key);
	}
	if (flag)
		*flag = true;
	return ISVD_PROTO_OK;
}

/* --------------------------------------------------------------- the body */

/* The first walk: one well-formed value, a map, nothing after it.  Leaves
 * *rd just after the map header and *count at its entry count. */
static int check_frame(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                       struct proto_rd *rd, uint32_t *count, struct isvd_proto_error *err)
{
	struct proto_obj o;
	int rc;
	if (!buf && len)
		return proto_fail(err, ISVD_PROTO_INVALID, "no buffer");
	if (len > lim->max_frame)
		return proto_fail(err, ISVD_PROTO_TOO_LARGE, "the frame has %zu bytes; the limit is %zu",
		                  len, lim->max_frame);
	if (len == 0)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "the frame is empty");
	proto_rd_init(rd, buf, len, lim->max_depth);
	if ((rc = proto_rd_skip(rd, 1, err)))
		return rc;
	if (proto_rd_left(rd))
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "%zu trailing bytes after the body, which ends at byte %zu",
		                  proto_rd_left(rd), proto_rd_offset(rd));
	proto_rd_init(rd, buf, len, lim->max_depth);
	if ((rc = proto_rd_obj(rd, &o, err)))
		return rc;
	if (o.type != PT_MAP)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "the body is %s; it must be a map",
		                  proto_type_name(o.type));
	*count = o.len;
	return ISVD_PROTO_OK;
}

enum body { BODY_REQUEST, BODY_REPLY, BODY_SNAPSHOT };

/* Reads a key; it must be a string. */
static int dec_key(struct proto_rd *rd, struct proto_obj *k, struct isvd_proto_error *err)
{
	int rc = proto_rd_obj(rd, k, err);
	if (rc)
		return rc;
	if (k->type != PT_STR)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "a key of the body map is %s; keys are strings",
		                  proto_type_name(k->type));
	return ISVD_PROTO_OK;
}

/* The `error` map of a failed reply: {code: str, message: str}. */
static int dec_error(struct proto_rd *rd, struct isvd_proto_reply *rep, struct isvd_proto_error *err)
{
	struct proto_obj o, k;
	bool has_code = false;
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type != PT_MAP)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'error' is %s; a map was expected",
		                  proto_type_name(o.type));
	for (uint32_t e = 0; e < o.len; e++) {
		if ((rc = dec_key(rd, &k, err)))
			return rc;
		if (str_is(&k, "code") && !has_code) {
			struct proto_obj c;
			if ((rc = proto_rd_obj(rd, &c, err)))
				return rc;
			if (c.type != PT_STR)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "error.code is %s; a string was expected",
				                  proto_type_name(c.type));
			rep->error_code = isvd_proto_err_from_name((const char *)c.ptr, c.len);
			has_code = true;
		} else if (str_is(&k, "message") && !rep->error_message) {
			if ((rc = dec_str(rd, "error.message", ISVD_PROTO_MAX_STRING, &rep->error_message, err)))
				return rc;
		} else if (str_is(&k, "retry_after_ms")) {
			struct proto_obj r;
			if ((rc = proto_rd_obj(rd, &r, err)))
				return rc;
			if (r.type != PT_UINT)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "error.retry_after_ms is %s; a "
				                  "non-negative integer was expected", proto_type_name(r.type));
			rep->retry_after_ms = r.u;
		} else if ((rc = proto_rd_skip(rd, 3, err))) {
			return rc;
		}
	}
	if (!has_code)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "the error map lacks 'code'");
	return ISVD_PROTO_OK;
}

/* The second walk over the count entries of the body map.  Requests reject
 * unknown keys; replies and snapshots skip them.  `op` and `id` of a request
 * were taken by the first walk. */
static int dec_entries(struct proto_rd *rd, uint32_t count, enum body kind,
                       const struct proto_field *table, void *base,
                       const struct isvd_proto_limits *lim, const char *opname,
                       struct isvd_proto_error *err)
{
	struct isvd_proto_reply *rep = kind == BODY_REPLY ? base : NULL;
	bool has_ok = false, has_error = false;
	uint64_t seen = 0;
	char buf[48];
	int rc;

	for (uint32_t e = 0; e < count; e++) {
		struct proto_obj k;
		if ((rc = dec_key(rd, &k, err)))
			return rc;
		if (kind == BODY_REQUEST && (str_is(&k, "op") || str_is(&k, "id"))) {
			if ((rc = proto_rd_skip(rd, 2, err)))
				return rc;
			continue;
		}
		if (rep && str_is(&k, "ok")) {
			struct proto_obj v;
			if (has_ok)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'ok' appears twice");
			if ((rc = proto_rd_obj(rd, &v, err)))
				return rc;
			if (v.type != PT_BOOL)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'ok' is %s; a boolean was expected",
				                  proto_type_name(v.type));
			rep->ok = v.b;
			has_ok = true;
			continue;
		}
		if (rep && str_is(&k, "id")) {
			if (rep->id)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'id' appears twice");
			if ((rc = dec_raw(rd, "id", &rep->id, &rep->id_len, err)))
				return rc;
			continue;
		}
		if (rep && str_is(&k, "error")) {
			if (has_error)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'error' appears twice");
			has_error = true;
			if ((rc = dec_error(rd, rep, err)))
				return rc;
			continue;
		}
		size_t fi = 0;
		while (table[fi].key && !str_is(&k, table[fi].key))
			fi++;
		if (!table[fi].key) {
			if (kind == BODY_REQUEST)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "unknown key '%s' for op '%s'",
				                  show(k.ptr, k.len, buf), opname);
			if ((rc = proto_rd_skip(rd, 2, err)))
				return rc;
			continue;
		}
		if (seen & ((uint64_t)1 << fi))
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key '%s' appears twice", table[fi].key);
		seen |= (uint64_t)1 << fi;
		if ((rc = dec_field(rd, &table[fi], base, lim, kind != BODY_REQUEST, err)))
			return rc;
	}

	if (rep && !has_ok)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "the reply lacks key 'ok'");
	if (rep && !rep->ok) {
		if (!has_error)
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "a failed reply lacks key 'error'");
		return ISVD_PROTO_OK;
	}
	for (size_t fi = 0; table[fi].key; fi++)
		if (table[fi].required && !(seen & ((uint64_t)1 << fi)))
			return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "%s '%s' requires key '%s'",
			                  kind == BODY_SNAPSHOT ? "snapshot" : kind == BODY_REPLY ? "the reply to"
			                  : "op", opname, table[fi].key);
	return ISVD_PROTO_OK;
}

/* ------------------------------------------------------------ entry points */

/* What every decoder does first: clear *err, refuse a NULL output (naming
 * what) and zero the output so its _fini is safe whatever follows. */
static int decode_start(void *out, size_t size, const char *what, struct isvd_proto_error *err)
{
	if (err) {
		err->code = ISVD_PROTO_OK;
		err->message[0] = '\0';
	}
	if (!out)
		return proto_fail(err, ISVD_PROTO_INVALID, "no %s structure", what);
	memset(out, 0, size);
	return ISVD_PROTO_OK;
}

int isvd_proto_request_decode(const void *buf, size_t len, const struct isvd_proto_limits *limits,
                              struct isvd_proto_request *req, struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	struct proto_obj k, opv = { 0 };
	uint32_t count = 0;
	bool has_op = false;
	char sbuf[48];
	int rc;

	if ((rc = decode_start(req, sizeof *req, "request", err)))
		return rc;
	proto_limits(limits, &lim);
	if ((rc = check_frame(buf, len, &lim, &rd, &count, err)))
		return rc;

	/* first: op and id, wherever they are in the map */
	struct proto_rd entries = rd;
	for (uint32_t e = 0; e < count; e++) {
		if ((rc = dec_key(&rd, &k, err)))
			return rc;
		if (str_is(&k, "op")) {
			if (has_op)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'op' appears twice");
			if ((rc = proto_rd_obj(&rd, &opv, err)))
				return rc;
			has_op = true;
			if (opv.type != PT_STR)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'op' is %s; a string was expected",
				                  proto_type_name(opv.type));
		} else if (str_is(&k, "id")) {
			if (req->id)
				return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "key 'id' appears twice");
			if ((rc = dec_raw(&rd, "id", &req->id, &req->id_len, err)))
				return rc;
		} else if ((rc = proto_rd_skip(&rd, 2, err))) {
			return rc;
		}
	}
	if (!has_op)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "the request lacks key 'op'");
	for (int op = ISVD_OP_NONE + 1; op < ISVD_OP_COUNT_; op++)
		if (str_is(&opv, isvd_proto_op_name((enum isvd_proto_op)op)))
			req->op = (enum isvd_proto_op)op;
	if (req->op == ISVD_OP_NONE)
		return proto_fail(err, ISVD_PROTO_UNKNOWN_OP, "unknown op '%s'", show(opv.ptr, opv.len, sbuf));

	/* then the op's arguments */
	return dec_entries(&entries, count, BODY_REQUEST, proto_request_fields[req->op], req, &lim,
	                   isvd_proto_op_name(req->op), err);
}

void isvd_proto_request_fini(struct isvd_proto_request *req)
{
	if (!req)
		return;
	proto_free(req->id);
	proto_free(req->rows.data);
	proto_free(req->client);
	memset(req, 0, sizeof *req);
}

int isvd_proto_reply_decode(const void *buf, size_t len, enum isvd_proto_op op,
                            const struct isvd_proto_limits *limits, struct isvd_proto_reply *rep,
                            struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	uint32_t count = 0;
	int rc;

	if ((rc = decode_start(rep, sizeof *rep, "reply", err)))
		return rc;
	if (!isvd_proto_op_name(op))
		return proto_fail(err, ISVD_PROTO_INVALID, "no such op");
	rep->op = op;
	proto_limits(limits, &lim);
	if ((rc = check_frame(buf, len, &lim, &rd, &count, err)))
		return rc;
	return dec_entries(&rd, count, BODY_REPLY, proto_reply_fields[op], rep, &lim,
	                   isvd_proto_op_name(op), err);
}

void isvd_proto_reply_fini(struct isvd_proto_reply *rep)
{
	if (!rep)
		return;
	proto_free(rep->id);
	proto_free(rep->error_message);
	proto_free(rep->version);
	proto_free(rep->mode);
	proto_free(rep->sigma.v);
	proto_free(rep->coords.data);
	proto_free(rep->residual.v);
	proto_free(rep->observed.v);
	proto_free(rep->missing);
	proto_free(rep->spe.v);
	proto_free(rep->t2.v);
	proto_free(rep->gap.v);
	proto_free(rep->stable.v);
	proto_free(rep->rows.data);
	proto_free(rep->vt.data);
	proto_free(rep->mean.v);
	for (size_t i = 0; rep->pushers.v && i < rep->pushers.n; i++)
		proto_free(rep->pushers.v[i].key);
	proto_free(rep->pushers.v);
	proto_free(rep->kafka.p);
	memset(rep, 0, sizeof *rep);
}

int isvd_proto_spectrum_decode(const void *buf, size_t len, const struct isvd_proto_limits *limits,
                               struct isvd_proto_spectrum *s, struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	uint32_t count = 0;
	int rc;

	if ((rc = decode_start(s, sizeof *s, "snapshot", err)))
		return rc;
	proto_limits(limits, &lim);
	if ((rc = check_frame(buf, len, &lim, &rd, &count, err)))
		return rc;
	return dec_entries(&rd, count, BODY_SNAPSHOT, proto_spectrum_fields, s, &lim,
	                   ISVD_PROTO_TOPIC_SPECTRUM, err);
}

void isvd_proto_spectrum_fini(struct isvd_proto_spectrum *s)
{
	if (!s)
		return;
	proto_free(s->sigma.v);
	proto_free(s->stable.v);
	memset(s, 0, sizeof *s);
}

int isvd_proto_anomaly_decode(const void *buf, size_t len, const struct isvd_proto_limits *limits,
                              struct isvd_proto_anomaly *a, struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	uint32_t count = 0;
	int rc;

	if ((rc = decode_start(a, sizeof *a, "snapshot", err)))
		return rc;
	proto_limits(limits, &lim);
	if ((rc = check_frame(buf, len, &lim, &rd, &count, err)))
		return rc;
	if ((rc = dec_entries(&rd, count, BODY_SNAPSHOT, proto_anomaly_fields, a, &lim,
	                      ISVD_PROTO_TOPIC_ANOMALY, err)))
		return rc;
	if (a->spe.n != a->seq.n || a->t2.n != a->seq.n)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST, "anomaly: seq, spe and t2 differ in length");
	return ISVD_PROTO_OK;
}

void isvd_proto_anomaly_fini(struct isvd_proto_anomaly *a)
{
	if (!a)
		return;
	proto_free(a->seq.v);
	proto_free(a->spe.v);
	proto_free(a->t2.v);
	memset(a, 0, sizeof *a);
}

int isvd_proto_drift_decode(const void *buf, size_t len, const struct isvd_proto_limits *limits,
                            struct isvd_proto_drift *d, struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	uint32_t count = 0;
	int rc;

	if ((rc = decode_start(d, sizeof *d, "snapshot", err)))
		return rc;
	proto_limits(limits, &lim);
	if ((rc = check_frame(buf, len, &lim, &rd, &count, err)))
		return rc;
	return dec_entries(&rd, count, BODY_SNAPSHOT, proto_drift_fields, d, &lim,
	                   ISVD_PROTO_TOPIC_DRIFT, err);
}

int isvd_proto_matrix_decode(const void *buf, size_t len, const struct isvd_proto_limits *limits,
                             struct isvd_proto_matrix *m, struct isvd_proto_error *err)
{
	struct isvd_proto_limits lim;
	struct proto_rd rd;
	int rc;

	if ((rc = decode_start(m, sizeof *m, "matrix", err)))
		return rc;
	proto_limits(limits, &lim);
	if (!buf && len)
		return proto_fail(err, ISVD_PROTO_INVALID, "no buffer");
	if (len > lim.max_frame)
		return proto_fail(err, ISVD_PROTO_TOO_LARGE, "the matrix has %zu bytes; the limit is %zu",
		                  len, lim.max_frame);
	if (len == 0)
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX, "the message is empty");
	/* the first walk: one well-formed value and nothing after it */
	proto_rd_init(&rd, buf, len, lim.max_depth);
	if ((rc = proto_rd_skip(&rd, 1, err)))
		return rc;
	if (proto_rd_left(&rd))
		return proto_fail(err, ISVD_PROTO_BAD_MATRIX,
		                  "%zu trailing bytes after the matrix, which ends at byte %zu",
		                  proto_rd_left(&rd), proto_rd_offset(&rd));
	proto_rd_init(&rd, buf, len, lim.max_depth);
	return proto_decode_matrix(&rd, "rows", &lim, false, m, err);
}

void isvd_proto_matrix_fini(struct isvd_proto_matrix *m)
{
	if (!m)
		return;
	proto_free(m->data);
	memset(m, 0, sizeof *m);
}
