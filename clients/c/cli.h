/*
 * cli.h — internals of the `isvd` command-line tool (isvd.c), shared by its
 * helper files: cli_input.c reads rows from text or raw files, cli_output.c
 * writes CSV, NPY and JSON and draws the terminal output.  Nothing here is
 * part of libisvd.
 */
#ifndef ISVD_CLI_H
#define ISVD_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "isvd/client.h"

/* ------------------------------------------------------------------ input */

enum cli_format {
	CLI_FMT_AUTO = 0,   /* text: CSV, TSV or whitespace, decided by the first row */
	CLI_FMT_CSV,
	CLI_FMT_TSV,
	CLI_FMT_TEXT,       /* values separated by spaces and tabs */
	CLI_FMT_F64,        /* raw little-endian binary64, needs a dimension */
	CLI_FMT_F32,        /* raw little-endian binary32, needs a dimension */
	CLI_FMT_NPY         /* NumPy .npy (also detected by its magic under auto) */
};

/* Parses "csv", "tsv", "text", "f64", "f32", "npy", "auto"; -1 when unknown. */
int cli_format_parse(const char *s);

/* A row reader over one file or standard input.
 *
 * Text: blank lines and lines starting with '#' are skipped.  The first
 * remaining line decides the separator (',' → CSV, tab → TSV, else
 * whitespace) unless the format was given; it is a header when none of its
 * fields is a number (its names are kept in `header`).  Every later row must
 * have as many values as the first.  An empty field is a missing value
 * (NaN); "NA" and "NaN" are too, in any case.  CSV fields may be
 * double-quoted.
 *
 * .npy (NumPy's format, versions 1 to 3): chosen by --format npy, or under
 * auto by the file's first byte (0x93, the start of the magic "\x93NUMPY",
 * never the start of text), so it works on pipes too.  dtypes float64,
 * float32 and signed or unsigned integers of 1 to 8 bytes, either byte
 * order; C order is streamed a row at a time, Fortran order is read whole
 * and transposed; shape (N, M) is N rows of M values, shape (M,) one row.
 * A NaN is a missing value, as in text.
 *
 * Errors are written to `err` as "FILE:LINE: what" (raw and .npy: "FILE: …"). */
struct cli_reader {
	FILE *f;
	bool own;                /* f was opened here */
	char name[256];          /* the path, or "<stdin>" */
	enum cli_format fmt;
	size_t dim;              /* values per row; 0 until the first row */
	size_t line;             /* text: line number of the last line read */
	size_t first_line;       /* text: line number of the first data row */
	size_t rows;             /* rows returned so far */
	char **header;           /* owned; nheader names, or NULL */
	size_t nheader;
	char *buf;               /* getline buffer */
	size_t cap;
	uint64_t bytes;          /* bytes consumed */
	int64_t size;            /* total bytes when known (regular file), else -1 */
	bool started;
	/* .npy: the array's layout, from its header */
	char npy_kind;           /* 'f', 'i' or 'u' */
	size_t npy_size;         /* bytes per value */
	bool npy_swap;           /* stored in the other byte order than this machine's */
	bool npy_fortran;
	size_t npy_rows;         /* rows the shape declares */
	unsigned char *npy_row;  /* one row of raw bytes (C order) */
	double *npy_all;         /* Fortran order: every row, transposed, read at the first call */
	char **fields;           /* text: the current line's fields (fcap of them) */
	size_t fcap;
	char err[1024];
};

/* Opens path ("-" is standard input).  dim is required for raw formats and
 * checked against the rows of text ones (0: any).  Returns 0, or -1 with
 * r->err set; either way release with cli_reader_close(). */
int cli_reader_open(struct cli_reader *r, const char *path, enum cli_format fmt, size_t dim);
/* Reads up to max rows into *rows (grown with realloc as needed; *cap is its
 * size in doubles; the caller frees it).  *n = 0 means end of input.
 * *line_out (may be NULL) receives the line of the first row returned.
 * Returns 0, or -1 with r->err set. */
int cli_reader_next(struct cli_reader *r, size_t max, double **rows, size_t *cap, size_t *n,
                    size_t *line_out);
/* Reads everything (for project/reconstruct). */
int cli_reader_all(struct cli_reader *r, double **rows, size_t *n);
void cli_reader_close(struct cli_reader *r);
/* A text reader with no file: the caller reads lines itself (push --follow
 * polls standard input) and hands each to cli_reader_feed().  fmt is auto,
 * csv, tsv or text (else -1 with r->err set). */
int cli_reader_open_lines(struct cli_reader *r, const char *name, enum cli_format fmt, size_t dim);
/* One line of len bytes (its newline may be included; line[len] must be
 * writable), under the rules above: skipped, a header, or a row appended at
 * (*rows)[*n] (*n incremented; *rows grown as by cli_reader_next).  Returns
 * 0, or -1 with r->err set ("NAME:LINE: …"). */
int cli_reader_feed(struct cli_reader *r, char *line, size_t len, double **rows, size_t *cap,
                    size_t *n);

/* ----------------------------------------------------------------- output */

/* Writes one double the shortest exact way ("%.17g"; NaN as "nan"). */
void cli_put_double(FILE *f, double v);
/* JSON number or null for a non-finite value. */
void cli_json_double(FILE *f, double v);
void cli_json_vec(FILE *f, const double *v, size_t n);
void cli_json_matrix(FILE *f, const struct isvd_client_matrix *m);

/* Writes a CSV of m (optional header names: nhead == m->cols, or 0) plus,
 * when extra is given, one more column named extra_name. */
int cli_write_csv(FILE *f, const char *const *head, size_t nhead, const struct isvd_client_matrix *m,
                  const char *extra_name, const double *extra);

/* Writes an NPY v1.0 file of little-endian float64: shape (n,) when rows is
 * 0, else (rows, cols).  Returns 0, or -1 with errno set. */
int cli_write_npy(const char *path, const double *v, size_t rows, size_t cols);

/* The spectrum as a bar chart (info). */
void cli_print_info(FILE *f, const struct isvd_client_info *info, bool utf8);
void cli_print_info_json(FILE *f, const struct isvd_client_info *info);

/* One line per snapshot. */
void cli_print_snapshot(FILE *f, const struct isvd_client_snapshot *s, bool json);

/* Progress of a push on a terminal: redraws one line of stderr. */
struct cli_progress {
	bool tty;
	double t0, last;
	int64_t size;
};
double cli_now(void);
void cli_progress_start(struct cli_progress *p, int64_t size);
void cli_progress_update(struct cli_progress *p, uint64_t rows, uint64_t bytes, bool final);

#endif /* ISVD_CLI_H */
