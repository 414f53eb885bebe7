/*
 * cli_input.c — rows for the `isvd` tool from CSV, TSV, whitespace text,
 * raw float64/float32 files or NumPy .npy files (cli.h describes the rules).  Text is read a
 * line at a time, so a push streams a file of any size; every error names
 * the file and line.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

int cli_format_parse(const char *s)
{
	static const char *const names[] = { "auto", "csv", "tsv", "text", "f64", "f32", "npy" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	return -1;
}

static int rerr(struct cli_reader *r, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (r->fmt == CLI_FMT_F64 || r->fmt == CLI_FMT_F32 || r->fmt == CLI_FMT_NPY)
		snprintf(r->err, sizeof r->err, "%s: %s", r->name, what);
	else
		snprintf(r->err, sizeof r->err, "%s:%zu: %s", r->name, r->line, what);
	return -1;
}

/* ------------------------------------------------------------------- .npy */

/* NumPy's format (numpy/lib/format.py): the magic, a major and minor
 * version byte, the header's length (u16 LE in version 1, u32 LE in 2 and
 * 3), then the header, a Python dict literal such as
 *   {'descr': '<f8', 'fortran_order': False, 'shape': (100, 64), }
 * padded with spaces and ended by a newline, then the data. */
static const char NPY_MAGIC[] = "\x93NUMPY";
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER (1u << 20)

/* The text after `key`: in the header, past the colon and spaces; NULL when absent. */
static const char *npy_field(const char *h, const char *key)
{
	const char *p = strstr(h, key);
	if (!p)
		return NULL;
	p += strlen(key);
	while (*p == ' ')
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (*p == ' ')
		p++;
	return p;
}

static bool host_little_endian(void)
{
	const uint16_t one = 1;
	unsigned char b;
	memcpy(&b, &one, 1);
	return b == 1;
}

/* Reads the magic, the version and the header; *out (the caller frees it)
 * is the header's text, NUL-terminated. */
static int npy_read_header(struct cli_reader *r, char **out)
{
	unsigned char pre[NPY_MAGIC_LEN + 2 + 4];
	if (fread(pre, 1, NPY_MAGIC_LEN + 2, r->f) != NPY_MAGIC_LEN + 2
	    || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return rerr(r, "not a .npy file (no \\x93NUMPY magic)");
	unsigned major = pre[NPY_MAGIC_LEN];
	size_t lenbytes = major == 1 ? 2 : (major == 2 || major == 3) ? 4 : 0;
	if (!lenbytes)
		return rerr(r, ".npy format version %u.%u is not supported (1 to 3 are)", major,
		            pre[NPY_MAGIC_LEN + 1]);
	if (fread(pre + NPY_MAGIC_LEN + 2, 1, lenbytes, r->f) != lenbytes)
		return rerr(r, "the .npy header is cut short");
	size_t hlen = 0;
	for (size_t i = lenbytes; i-- > 0;)
		hlen = hlen << 8 | pre[NPY_MAGIC_LEN + 2 + i];
	if (hlen == 0 || hlen > NPY_MAX_HEADER)
		return rerr(r, "the .npy header declares %zu bytes", hlen);
	char *h = malloc(hlen + 1);
	if (!h)
		return rerr(r, "out of memory");
	if (fread(h, 1, hlen, r->f) != hlen) {
		free(h);
		return rerr(r, "the .npy header is cut short");
	}
	h[hlen] = '\0';
	r->bytes += NPY_MAGIC_LEN + 2 + lenbytes + hlen;
	*out = h;
	return 0;
}

/* descr (at its opening quote): byte order, kind, size, e.g. '<f8', '|u1',
 * '>i4'; sets npy_kind, npy_size and npy_swap. */
static int npy_parse_descr(struct cli_reader *r, const char *d)
{
	char order = d[1], kind = d[2];
	char *end;
	unsigned long size = strtoul(d + 3, &end, 10);
	bool sized = (kind == 'f' && (size == 4 || size == 8))
	             || ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8));
	if (!strchr("<>|=", order) || !sized || *end != *d) {
		const char *q = strchr(d + 1, *d);
		return rerr(r, ".npy dtype %.*s is not supported (float64, float32 or integers)",
		            q ? (int)(q - d + 1) : 8, d);
	}
	r->npy_kind = kind;
	r->npy_size = size;
	r->npy_swap = size > 1 && ((order == '<' && !host_little_endian())
	                           || (order == '>' && host_little_endian()));
	return 0;
}

/* fortran_order: True or False; sets npy_fortran. */
static int npy_parse_order(struct cli_reader *r, const char *fo)
{
	if (!strncmp(fo, "True", 4))
		r->npy_fortran = true;
	else if (!strncmp(fo, "False", 5))
		r->npy_fortran = false;
	else
		return rerr(r, "the .npy header's fortran_order is neither True nor False");
	return 0;
}

/* shape (at its '('): (N, M) or (M,); *rows and *cols receive N (1 for a
 * one-dimensional array) and M, *nd the number of dimensions. */
static int npy_parse_shape(struct cli_reader *r, const char *sh, size_t *rows, size_t *cols,
                           size_t *ndims)
{
	size_t dims[2], nd = 0;
	const char *p = sh + 1;
	char *end;

	for (;;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == ')')
			break;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || errno || v > SIZE_MAX / 8)
			return rerr(r, "the .npy header's shape cannot be read");
		if (nd == 2)
			return rerr(r, "the .npy array has more than 2 dimensions; rows need 1 or 2");
		dims[nd++] = (size_t)v;
		p = end;
	}
	if (nd == 0)
		return rerr(r, "the .npy array is a scalar; rows need 1 or 2 dimensions");
	*ndims = nd;
	*rows = nd == 2 ? dims[0] : 1;
	*cols = nd == 2 ? dims[1] : dims[0];
	if (*cols == 0)
		return rerr(r, "the .npy array has rows of 0 values");
	return 0;
}

/* Reads and checks the header; sets dim and the npy_* layout. */
static int npy_open(struct cli_reader *r)
{
	char *h = NULL;
	size_t rows = 0, cols = 0, nd = 0;
	int rc = -1;

	if (npy_read_header(r, &h))
		return -1;
	const char *d = npy_field(h, "'descr'"), *fo = npy_field(h, "'fortran_order'");
	const char *sh = npy_field(h, "'shape'");
	if (!d || !fo || !sh || (*d != '\'' && *d != '"') || *sh != '(') {
		rerr(r, "the .npy header is not a dict with descr, fortran_order and shape");
		goto out;
	}
	if (npy_parse_descr(r, d) || npy_parse_order(r, fo) || npy_parse_shape(r, sh, &rows, &cols, &nd))
		goto out;
	if (r->dim && r->dim != cols) {
		rerr(r, "the .npy array has rows of %zu values; --dim is %zu", cols, r->dim);
		goto out;
	}
	r->dim = cols;
	r->npy_rows = rows;
	if (nd == 1)                         /* one row: both orders are the same bytes */
		r->npy_fortran = false;
	if (!(r->npy_row = malloc(r->dim * r->npy_size))) {
		rerr(r, "out of memory");
		goto out;
	}
	rc = 0;
out:
	free(h);
	return rc;
}

/* The value at p (npy_size bytes of kind npy_kind) as a double. */
static double npy_value(const struct cli_reader *r, const unsigned char *p)
{
	unsigned char b[8];
	for (size_t i = 0; i < r->npy_size; i++)
		b[i] = r->npy_swap ? p[r->npy_size - 1 - i] : p[i];
	switch (r->npy_kind) {
	case 'f':
		if (r->npy_size == 8) {
			double v;
			memcpy(&v, b, 8);
			return v;
		} else {
			float v;
			memcpy(&v, b, 4);
			return v;
		}
	case 'i':
		switch (r->npy_size) {
		case 1: { int8_t v; memcpy(&v, b, 1); return v; }
		case 2: { int16_t v; memcpy(&v, b, 2); return v; }
		case 4: { int32_t v; memcpy(&v, b, 4); return v; }
		default: { int64_t v; memcpy(&v, b, 8); return (double)v; }
		}
	default:
		switch (r->npy_size) {
		case 1: { uint8_t v; memcpy(&v, b, 1); return v; }
		case 2: { uint16_t v; memcpy(&v, b, 2); return v; }
		case 4: { uint32_t v; memcpy(&v, b, 4); return v; }
		default: { uint64_t v; memcpy(&v, b, 8); return (double)v; }
		}
	}
}

/* Reads row i of the array's data (C order, the next one in the file) into out. */
static int npy_read_row(struct cli_reader *r, double *out)
{
	size_t rowb = r->dim * r->npy_size;
	size_t got = fread(r->npy_row, 1, rowb, r->f);
	r->bytes += got;
	if (got < rowb) {
		if (ferror(r->f))
			return rerr(r, "read: %s", strerror(errno));
		return rerr(r, "the .npy data ends in row %zu of %zu (shape promises %zu bytes a row)",
		            r->rows + 1, r->npy_rows, rowb);
	}
	for (size_t j = 0; j < r->dim; j++)
		out[j] = npy_value(r, r->npy_row + j * r->npy_size);
	return 0;
}

/* Fortran order: column j is npy_rows values; reads them all, transposed. */
static int npy_read_all(struct cli_reader *r)
{
	size_t n = r->npy_rows, w = r->npy_size;
	if (n && r->dim > SIZE_MAX / sizeof(double) / n)
		return rerr(r, "the .npy array is too large");
	if (!(r->npy_all = malloc((n ? n : 1) * r->dim * sizeof(double))))
		return rerr(r, "out of memory (a Fortran-order .npy is read whole)");
	unsigned char b[8];
	for (size_t j = 0; j < r->dim; j++)
		for (size_t i = 0; i < n; i++) {
			if (fread(b, 1, w, r->f) != w) {
				if (ferror(r->f))
					return rerr(r, "read: %s", strerror(errno));
				return rerr(r, "the .npy data ends in column %zu of %zu (Fortran order)",
				            j + 1, r->dim);
			}
			r->bytes += w;
			r->npy_all[i * r->dim + j] = npy_value(r, b);
		}
	return 0;
}

static int grow(double **rows, size_t *cap, size_t need);

static int read_npy(struct cli_reader *r, size_t max, double **rows, size_t *cap, size_t *n)
{
	*n = 0;
	size_t left = r->npy_rows - r->rows;
	size_t want = left < max ? left : max;
	if (want == 0)
		return 0;
	if (grow(rows, cap, want * r->dim))
		return rerr(r, "out of memory");
	if (r->npy_fortran && !r->npy_all && npy_read_all(r))
		return -1;
	for (size_t i = 0; i < want; i++) {
		double *dst = *rows + i * r->dim;
		if (r->npy_all)
			memcpy(dst, r->npy_all + r->rows * r->dim, r->dim * sizeof *dst);
		else if (npy_read_row(r, dst))
			return -1;
		(*n)++;
		r->rows++;
	}
	return 0;
}

/* ---------------------------------------------------------------- readers */

int cli_reader_open(struct cli_reader *r, const char *path, enum cli_format fmt, size_t dim)
{
	struct stat st;

	memset(r, 0, sizeof *r);
	r->fmt = fmt;
	r->dim = dim;
	r->size = -1;
	if (!strcmp(path, "-")) {
		r->f = stdin;
		snprintf(r->name, sizeof r->name, "<stdin>");
	} else {
		snprintf(r->name, sizeof r->name, "%s", path);
		r->f = fopen(path, "rb");
		if (!r->f) {
			snprintf(r->err, sizeof r->err, "%s: %s", path, strerror(errno));
			return -1;
		}
		r->own = true;
	}
	if (fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode))
		r->size = (int64_t)st.st_size;
	if ((fmt == CLI_FMT_F64 || fmt == CLI_FMT_F32) && dim == 0) {
		snprintf(r->err, sizeof r->err, "%s: raw input needs --dim", r->name);
		return -1;
	}
	if (fmt == CLI_FMT_AUTO || fmt == CLI_FMT_NPY) {
		int ch = getc(r->f);          /* one byte of look-ahead: pipes allow no more */
		if (ch != EOF)
			ungetc(ch, r->f);
		if (ch == (unsigned char)NPY_MAGIC[0] || fmt == CLI_FMT_NPY) {
			r->fmt = CLI_FMT_NPY;
			return npy_open(r);
		}
	}
	return 0;
}

void cli_reader_close(struct cli_reader *r)
{
	if (r->own && r->f)
		fclose(r->f);
	for (size_t i = 0; i < r->nheader; i++)
		free(r->header[i]);
	free(r->header);
	free(r->buf);
	free(r->npy_row);
	free(r->npy_all);
	free(r->fields);
	memset(r, 0, sizeof *r);
}

/* Splits line (modified in place) into fields at the reader's separator.
 * *fields is grown as needed.  Returns the count, or -1 (out of memory). */
static long split(struct cli_reader *r, char *line, char ***fields, size_t *fcap)
{
	size_t n = 0;
	char *p = line;
	const bool ws = r->fmt == CLI_FMT_TEXT;
	const char sep = r->fmt == CLI_FMT_CSV ? ',' : '\t';

	for (;;) {
		if (ws) {
			while (*p == ' ' || *p == '\t')
				p++;
			if (!*p)
				break;
		}
		if (n == *fcap) {
			size_t cap = *fcap ? 2 * *fcap : 16;
			char **f = realloc(*fields, cap * sizeof *f);
			if (!f)
				return -1;
			*fields = f;
			*fcap = cap;
		}
		char *start = p;
		while (r->fmt == CLI_FMT_CSV && *start == ' ')
			start++;
		if (r->fmt == CLI_FMT_CSV && *start == '"') {
			/* quoted: up to the closing quote, "" is a quote; the text is
			 * moved left over the opening quote */
			char *w = start;
			p = start + 1;
			while (*p) {
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
			while (*p && *p != sep)
				p++;
			*w = '\0';              /* w < p: the separator is intact */
		} else {
			start = p;
			while (*p && (ws ? (*p != ' ' && *p != '\t') : *p != sep))
				p++;
		}
		(*fields)[n++] = start;
		if (!*p)
			break;
		*p++ = '\0';
	}
	return (long)n;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* A field as a number: 0, or -1 when it is not one.  Missing (NaN): an
 * empty field, "NA" and "nan" in any case (strtod reads "nan"). */
static int parse_value(const char *s, double *v)
{
	char *end;
	if (!*s || !strcasecmp(s, "na")) {
		*v = NAN;
		return 0;
	}
	errno = 0;
	*v = strtod(s, &end);
	if (end == s || *end)
		return -1;
	if (errno == ERANGE && isinf(*v))
		return -1;
	return 0;
}

/* The next data line (trailing newline removed), or NULL at the end.
 * Returns -1 on a read error. */
static int next_line(struct cli_reader *r, char **out)
{
	for (;;) {
		ssize_t n = getline(&r->buf, &r->cap, r->f);
		if (n < 0) {
			*out = NULL;
			if (ferror(r->f))
				return rerr(r, "read: %s", strerror(errno));
			return 0;
		}
		r->bytes += (uint64_t)n;
		r->line++;
		while (n && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r'))
			r->buf[--n] = '\0';
		if (memchr(r->buf, '\0', (size_t)n))
			return rerr(r, "binary data in a text file (use --format f64|f32 --dim N)");
		char *s = r->buf;
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s || *s == '#')
			continue;
		*out = r->buf;
		return 0;
	}
}

static int grow(double **rows, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 1024;
	while (c < need)
		c *= 2;
	double *p = realloc(*rows, c * sizeof *p);
	if (!p)
		return -1;
	*rows = p;
	*cap = c;
	return 0;
}

static int read_raw(struct cli_reader *r, size_t max, double **rows, size_t *cap, size_t *n)
{
	size_t w = r->fmt == CLI_FMT_F64 ? 8 : 4;
	size_t rowb = w * r->dim;
	unsigned char buf[8];

	*n = 0;
	if (grow(rows, cap, max * r->dim))
		return rerr(r, "out of memory");
	while (*n < max) {
		for (size_t j = 0; j < r->dim; j++) {
			size_t got = fread(buf, 1, w, r->f);
			r->bytes += got;
			if (got < w) {
				if (ferror(r->f))
					return rerr(r, "read: %s", strerror(errno));
				if (got == 0 && j == 0)
					return 0;
				return rerr(r, "row %zu: the input ends %zu bytes into a row of %zu bytes (%zu × %s); "
				            "is --dim right?",
				            r->rows + 1, j * w + got, rowb, r->dim, w == 8 ? "f64" : "f32");
			}
			double v;
			if (w == 8) {
				uint64_t u = 0;
				for (int b = 7; b >= 0; b--)
					u = u << 8 | buf[b];
				memcpy(&v, &u, 8);
			} else {
				uint32_t u = 0;
				float fv;
				for (int b = 3; b >= 0; b--)
					u = u << 8 | buf[b];
				memcpy(&fv, &u, 4);
				v = fv;
			}
			(*rows)[*n * r->dim + j] = v;
		}
		(*n)++;
		r->rows++;
	}
	return 0;
}

/* One data line of text (blank and comment lines already skipped; modified
 * in place): the header, consumed, or a row appended at (*rows)[*n].
 * Returns 0, or -1 with r->err set. */
static int take_line(struct cli_reader *r, char *line, double **rows, size_t *cap, size_t *n,
                     size_t *line_out)
{
	if (!r->started && r->fmt == CLI_FMT_AUTO)
		r->fmt = strchr(line, ',') ? CLI_FMT_CSV : strchr(line, '\t') ? CLI_FMT_TSV : CLI_FMT_TEXT;
	long nf = split(r, line, &r->fields, &r->fcap);
	if (nf < 0)
		return rerr(r, "out of memory");
	char **fields = r->fields;
	for (long j = 0; j < nf; j++)
		fields[j] = trim(fields[j]);
	if (!r->started) {
		r->started = true;
		size_t numeric = 0;
		for (long j = 0; j < nf; j++) {
			double v;
			if (*fields[j] && !parse_value(fields[j], &v) && !isnan(v))
				numeric++;   /* a missing marker (NA, nan) is no number */
		}
		if (numeric == 0) {                  /* a header */
			r->header = calloc((size_t)nf, sizeof *r->header);
			if (!r->header)
				return rerr(r, "out of memory");
			r->nheader = (size_t)nf;
			for (long j = 0; j < nf; j++)
				if (!(r->header[j] = strdup(fields[j])))
					return rerr(r, "out of memory");
			if (r->dim && r->dim != (size_t)nf)
				return rerr(r, "the header has %ld names; --dim is %zu", nf, r->dim);
			r->dim = (size_t)nf;
			return 0;
		}
	}
	if (r->dim == 0)
		r->dim = (size_t)nf;
	if ((size_t)nf != r->dim) {
		if (r->first_line)
			return rerr(r, "row has %ld values; expected %zu (as on line %zu)", nf, r->dim,
			            r->first_line);
		if (r->nheader)
			return rerr(r, "row has %ld values; the header has %zu names", nf, r->dim);
		return rerr(r, "row has %ld values; --dim is %zu", nf, r->dim);
	}
	if (!r->first_line)
		r->first_line = r->line;
	if (grow(rows, cap, (*n + 1) * r->dim))
		return rerr(r, "out of memory");
	for (size_t j = 0; j < r->dim; j++)
		if (parse_value(fields[j], &(*rows)[*n * r->dim + j]))
			return rerr(r, "column %zu: cannot parse '%.40s' as a number", j + 1, fields[j]);
	if (*n == 0 && line_out)
		*line_out = r->line;
	(*n)++;
	r->rows++;
	return 0;
}

int cli_reader_next(struct cli_reader *r, size_t max, double **rows, size_t *cap, size_t *n,
                    size_t *line_out)
{
	*n = 0;
	if (line_out)
		*line_out = 0;
	if (r->fmt == CLI_FMT_F64 || r->fmt == CLI_FMT_F32)
		return read_raw(r, max, rows, cap, n);
	if (r->fmt == CLI_FMT_NPY)
		return read_npy(r, max, rows, cap, n);
	while (*n < max) {
		char *line = NULL;
		if (next_line(r, &line))
			return -1;
		if (!line)
			break;
		if (take_line(r, line, rows, cap, n, line_out))
			return -1;
	}
	return 0;
}

int cli_reader_open_lines(struct cli_reader *r, const char *name, enum cli_format fmt, size_t dim)
{
	memset(r, 0, sizeof *r);
	r->fmt = fmt;
	r->dim = dim;
	r->size = -1;
	snprintf(r->name, sizeof r->name, "%s", name);
	if (fmt != CLI_FMT_AUTO && fmt != CLI_FMT_CSV && fmt != CLI_FMT_TSV && fmt != CLI_FMT_TEXT) {
		snprintf(r->err, sizeof r->err, "%s: lines are text: auto, csv, tsv or text", name);
		return -1;
	}
	return 0;
}

int cli_reader_feed(struct cli_reader *r, char *line, size_t len, double **rows, size_t *cap,
                    size_t *n)
{
	r->bytes += len + 1;
	r->line++;
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	if (memchr(line, '\0', len))
		return rerr(r, "binary data in a text line");
	line[len] = '\0';
	char *s = line;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s || *s == '#')
		return 0;
	return take_line(r, line, rows, cap, n, NULL);
}

int cli_reader_all(struct cli_reader *r, double **rows, size_t *n)
{
	size_t cap = 0, got;
	*rows = NULL;
	*n = 0;
	for (;;) {
		double *chunk = NULL;
		size_t ccap = 0;
		if (cli_reader_next(r, 4096, &chunk, &ccap, &got, NULL)) {
			free(chunk);
			return -1;
		}
		if (got == 0) {
			free(chunk);
			break;
		}
		if (grow(rows, &cap, (*n + got) * r->dim)) {
			free(chunk);
			return rerr(r, "out of memory");
		}
		memcpy(*rows + *n * r->dim, chunk, got * r->dim * sizeof *chunk);
		*n += got;
		free(chunk);
	}
	if (*n == 0) {
		snprintf(r->err, sizeof r->err, "%s: no rows", r->name);
		return -1;
	}
	return 0;
}
