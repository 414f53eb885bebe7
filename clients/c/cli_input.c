/*
 * cli_input.c — rows for the `isvd` tool from CSV, TSV, whitespace text or
 * raw float64/float32 files (cli.h describes the rules).  Text is read a
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
	static const char *const names[] = { "auto", "csv", "tsv", "text", "f64", "f32" };
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
	if (r->fmt == CLI_FMT_F64 || r->fmt == CLI_FMT_F32)
		snprintf(r->err, sizeof r->err, "%s: %s", r->name, what);
	else
		snprintf(r->err, sizeof r->err, "%s:%zu: %s", r->name, r->line, what);
	return -1;
}

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

int cli_reader_next(struct cli_reader *r, size_t max, double **rows, size_t *cap, size_t *n,
                    size_t *line_out)
{
	char **fields = NULL;
	size_t fcap = 0;
	int rc = -1;

	*n = 0;
	if (line_out)
		*line_out = 0;
	if (r->fmt == CLI_FMT_F64 || r->fmt == CLI_FMT_F32)
		return read_raw(r, max, rows, cap, n);
	while (*n < max) {
		char *line = NULL;
		if (next_line(r, &line))
			goto out;
		if (!line)
			break;
		if (!r->started && r->fmt == CLI_FMT_AUTO)
			r->fmt = strchr(line, ',') ? CLI_FMT_CSV : strchr(line, '\t') ? CLI_FMT_TSV : CLI_FMT_TEXT;
		long nf = split(r, line, &fields, &fcap);
		if (nf < 0) {
			rerr(r, "out of memory");
			goto out;
		}
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
				if (!r->header) {
					rerr(r, "out of memory");
					goto out;
				}
				r->nheader = (size_t)nf;
				for (long j = 0; j < nf; j++)
					if (!(r->header[j] = strdup(fields[j]))) {
						rerr(r, "out of memory");
						goto out;
					}
				if (r->dim && r->dim != (size_t)nf) {
					rerr(r, "the header has %ld names; --dim is %zu", nf, r->dim);
					goto out;
				}
				r->dim = (size_t)nf;
				continue;
			}
		}
		if (r->dim == 0)
			r->dim = (size_t)nf;
		if ((size_t)nf != r->dim) {
			if (r->first_line)
				rerr(r, "row has %ld values; expected %zu (as on line %zu)", nf, r->dim, r->first_line);
			else if (r->nheader)
				rerr(r, "row has %ld values; the header has %zu names", nf, r->dim);
			else
				rerr(r, "row has %ld values; --dim is %zu", nf, r->dim);
			goto out;
		}
		if (!r->first_line)
			r->first_line = r->line;
		if (grow(rows, cap, (*n + 1) * r->dim)) {
			rerr(r, "out of memory");
			goto out;
		}
		for (size_t j = 0; j < r->dim; j++)
			if (parse_value(fields[j], &(*rows)[*n * r->dim + j])) {
				rerr(r, "column %zu: cannot parse '%.40s' as a number", j + 1, fields[j]);
				goto out;
			}
		if (*n == 0 && line_out)
			*line_out = r->line;
		(*n)++;
		r->rows++;
	}
	rc = 0;
out:
	free(fields);
	return rc;
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
