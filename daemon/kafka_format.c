/*
 * kafka_format.c — a Kafka message of rows, decoded in kafka.format
 * (kafka.h, kfk_decode_rows()):
 *
 *   msgpack  one matrix in either protocol form (protocol/'s decoder:
 *            an array of rows, nil a gap, or {shape, dtype, data})
 *   json     an array of numbers (one row) or an array of such arrays;
 *            null is a gap (jansson: Debian's, strict RFC 8259, so no
 *            NaN or Infinity literals get in)
 *   csv      one line per row, values separated by commas, blanks around
 *            them ignored; an empty field is a gap; blank lines skipped
 *   f64      raw little-endian IEEE-754 doubles, a multiple of model.dim
 *
 * Whatever the format, the rows are then held to one rule, the one pushes
 * are held to (reply.c, rpl_check_values()): model.dim values a row,
 * magnitudes the engine admits, gaps only under model.missing impute and
 * never a whole row of them, at most limits.max_rows_per_push rows.  A
 * message that fails is the caller's to skip, count and dead-letter: one
 * bad message never stops a partition.
 */
#define ISVD_KAFKA_INTERNAL
#include "kafka.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "isvd_bytes.h"
#include "reply.h"

/* Grows *v to hold n doubles.  false when out of memory. */
static bool reserve(double **v, size_t *cap, size_t n)
{
	if (n <= *cap)
		return true;
	size_t c = *cap ? *cap : 64;
	while (c < n)
		c *= 2;
	double *p = realloc(*v, c * sizeof *p);
	if (!p)
		return false;
	*v = p;
	*cap = c;
	return true;
}

static int decode_msgpack(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                          size_t *nrows, char *why, size_t cap)
{
	struct isvd_proto_limits lim = { 0 };
	struct isvd_proto_matrix m;
	struct isvd_proto_error err;

	lim.max_frame = cfg->limits.max_message_bytes;
	lim.max_rows = cfg->limits.max_rows_per_push;
	lim.max_cols = ISVD_MAX_DIM;
	if (isvd_proto_matrix_decode(buf, len, &lim, &m, &err)) {
		snprintf(why, cap, "msgpack: %s", err.message);
		isvd_proto_matrix_fini(&m);
		return -1;
	}
	if (m.cols != cfg->model.dim) {
		snprintf(why, cap, "msgpack: rows have %zu values; model.dim is %llu", m.cols,
		         (unsigned long long)cfg->model.dim);
		isvd_proto_matrix_fini(&m);
		return -1;
	}
	/* the codec's buffer is its own (proto_free()): copy it out */
	double *v = malloc(m.rows * m.cols * sizeof *v);
	if (!v) {
		snprintf(why, cap, "out of memory");
		isvd_proto_matrix_fini(&m);
		return -1;
	}
	memcpy(v, m.data, m.rows * m.cols * sizeof *v);
	*rows = v;
	*nrows = m.rows;
	isvd_proto_matrix_fini(&m);
	return 0;
}

/* One JSON row (an array of numbers and nulls) into out[0..dim). */
static int json_row(const json_t *a, size_t r, size_t dim, double *out, char *why, size_t cap)
{
	if (!json_is_array(a)) {
		snprintf(why, cap, "json: row %zu is not an array", r);
		return -1;
	}
	if (json_array_size(a) != dim) {
		snprintf(why, cap, "json: row %zu has %zu values; model.dim is %zu", r,
		         json_array_size(a), dim);
		return -1;
	}
	for (size_t j = 0; j < dim; j++) {
		const json_t *x = json_array_get(a, j);
		if (json_is_number(x))
			out[j] = json_number_value(x);
		else if (json_is_null(x))
			out[j] = NAN;
		else {
			snprintf(why, cap, "json: row %zu, column %zu is not a number or null", r, j);
			return -1;
		}
	}
	return 0;
}

static int decode_json(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                       size_t *nrows, char *why, size_t cap)
{
	const size_t dim = (size_t)cfg->model.dim;
	json_error_t jerr;
	json_t *doc = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
	double *v = NULL;
	size_t n = 0;
	int ret = -1;

	if (!doc) {
		snprintf(why, cap, "json: line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_array(doc) || json_array_size(doc) == 0) {
		snprintf(why, cap, "json: not an array of values or an array of rows");
		goto out;
	}
	const bool one = !json_is_array(json_array_get(doc, 0));   /* [x, ...] is one row */
	n = one ? 1 : json_array_size(doc);
	if (n > cfg->limits.max_rows_per_push) {
		snprintf(why, cap, "json: %zu rows; limits.max_rows_per_push is %llu", n,
		         (unsigned long long)cfg->limits.max_rows_per_push);
		goto out;
	}
	if (!(v = malloc(n * dim * sizeof *v))) {
		snprintf(why, cap, "out of memory");
		goto out;
	}
	for (size_t r = 0; r < n; r++)
		if (json_row(one ? doc : json_array_get(doc, r), r, dim, v + r * dim, why, cap))
			goto out;
	*rows = v;
	*nrows = n;
	v = NULL;
	ret = 0;
out:
	free(v);
	json_decref(doc);
	return ret;
}

/* One CSV field [s, e) into *x: blanks around it ignored, empty = a gap. */
static int csv_field(const char *s, const char *e, double *x)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (s == e) {
		*x = NAN;
		return 0;
	}
	char tmp[64], *end;
	if ((size_t)(e - s) >= sizeof tmp)
		return -1;
	memcpy(tmp, s, (size_t)(e - s));
	tmp[e - s] = '\0';
	errno = 0;
	*x = strtod(tmp, &end);
	return *end || errno == ERANGE ? -1 : 0;
}

static int decode_csv(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                      size_t *nrows, char *why, size_t cap)
{
	const size_t dim = (size_t)cfg->model.dim;
	const char *p = buf, *end = p + len;
	double *v = NULL;
	size_t n = 0, vcap = 0;

	if (memchr(buf, '\0', len)) {
		snprintf(why, cap, "csv: a NUL byte");
		return -1;
	}
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le = eol ? eol : end;
		const char *next = eol ? eol + 1 : end;
		if (le > p && le[-1] == '\r')
			le--;
		const char *q = p;
		while (q < le && (*q == ' ' || *q == '\t'))
			q++;
		if (q == le) {   /* a blank line */
			p = next;
			continue;
		}
		if (n >= cfg->limits.max_rows_per_push) {
			snprintf(why, cap, "csv: more than limits.max_rows_per_push (%llu) rows",
			         (unsigned long long)cfg->limits.max_rows_per_push);
			goto fail;
		}
		if (!reserve(&v, &vcap, (n + 1) * dim)) {
			snprintf(why, cap, "out of memory");
			goto fail;
		}
		size_t j = 0;
		for (const char *f = p; ; j++) {
			const char *comma = memchr(f, ',', (size_t)(le - f));
			const char *fe = comma ? comma : le;
			if (j >= dim) {
				snprintf(why, cap, "csv: line %zu has more than %zu values (model.dim)", n + 1, dim);
				goto fail;
			}
			if (csv_field(f, fe, &v[n * dim + j])) {
				snprintf(why, cap, "csv: line %zu, field %zu is not a number", n + 1, j + 1);
				goto fail;
			}
			if (!comma)
				break;
			f = comma + 1;
		}
		if (j + 1 != dim) {
			snprintf(why, cap, "csv: line %zu has %zu values; model.dim is %zu", n + 1, j + 1, dim);
			goto fail;
		}
		n++;
		p = next;
	}
	if (n == 0) {
		snprintf(why, cap, "csv: no rows");
		goto fail;
	}
	*rows = v;
	*nrows = n;
	return 0;
fail:
	free(v);
	return -1;
}

static int decode_f64(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                      size_t *nrows, char *why, size_t cap)
{
	const size_t dim = (size_t)cfg->model.dim;
	const uint8_t *b = buf;

	if (len == 0 || len % (8 * dim)) {
		snprintf(why, cap, "f64: %zu bytes are not whole rows of %zu doubles (model.dim)", len, dim);
		return -1;
	}
	const size_t n = len / (8 * dim);
	if (n > cfg->limits.max_rows_per_push) {
		snprintf(why, cap, "f64: %zu rows; limits.max_rows_per_push is %llu", n,
		         (unsigned long long)cfg->limits.max_rows_per_push);
		return -1;
	}
	double *v = malloc(n * dim * sizeof *v);
	if (!v) {
		snprintf(why, cap, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n * dim; i++) {
		const uint64_t u = isvd_get_le64(b + 8 * i);
		memcpy(&v[i], &u, sizeof u);
	}
	*rows = v;
	*nrows = n;
	return 0;
}

int kfk_decode_rows(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                    size_t *nrows, char *why, size_t cap)
{
	typedef int decode_fn(const struct cfg *, const void *, size_t, double **, size_t *, char *,
	                      size_t);
	static decode_fn *const by_format[] = {
		[CFG_KAFKA_MSGPACK] = decode_msgpack, [CFG_KAFKA_JSON] = decode_json,
		[CFG_KAFKA_CSV] = decode_csv, [CFG_KAFKA_F64] = decode_f64,
	};
	struct isvd_proto_matrix m = { 0 };
	char msg[256];

	*rows = NULL;
	*nrows = 0;
	if (len > cfg->limits.max_message_bytes) {
		snprintf(why, cap, "%zu bytes; limits.max_message_bytes is %llu", len,
		         (unsigned long long)cfg->limits.max_message_bytes);
		return -1;
	}
	if (by_format[cfg->kafka.format](cfg, buf, len, &m.data, &m.rows, why, cap))
		return -1;
	m.cols = (size_t)cfg->model.dim;
	for (size_t i = 0; i < m.rows * m.cols; i++)
		m.n_missing += isnan(m.data[i]) != 0;
	if (rpl_check_values(&m, cfg->model.missing == CFG_MISSING_IMPUTE, msg, sizeof msg)) {
		snprintf(why, cap, "%s", msg);
		free(m.data);
		return -1;
	}
	*rows = m.data;
	*nrows = m.rows;
	return 0;
}
