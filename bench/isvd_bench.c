/*
 * isvd_bench.c — throughput, memory and accuracy of the incremental SVD engine.
 *
 * `isvd-bench` streams rows through isvd_model_update() and prints, for each
 * (n, k) configuration, the rows streamed, rows per second, peak memory, and
 * the accuracy of the model against LAPACK's exact SVD of all the rows.  It
 * is a program that prints numbers; it asserts nothing about time.
 *
 * DESIGN
 *   Rows come from a seeded generator (splitmix64 + Box–Muller): a signal of
 *   rank r (default r = k) with a geometrically decaying spectrum
 *   s_j = 10^(−j/r), j = 0…r−1, along a random orthonormal basis, plus i.i.d.
 *   Gaussian noise of standard deviation --noise.  Or they are read from a
 *   raw little-endian float64 file (--input, row-major, --dim values a row).
 *   All rows are in memory before the clock starts: only the update calls are
 *   timed, in calls of --block rows, which is also the model's max_block.
 *
 *   Memory: peak RSS (getrusage ru_maxrss) is read right after streaming,
 *   before the exact SVD, so it counts the process, the rows held in memory
 *   (data MiB, printed alongside) and the model.  On Linux the high-water
 *   mark is reset before each configuration (/proc/self/clear_refs), so the
 *   peak is per configuration; where that is impossible it is process-wide
 *   and the JSON says so.  The model's own footprint is the growth of the
 *   malloc heap from before isvd_model_create() to after the last update
 *   (glibc mallinfo2), and the size of its saved image.
 *
 *   Accuracy: after streaming, the full matrix (centred when --center) goes
 *   through LAPACKE_dgesdd.  σ error is max_i |σ_i − σ̂_i| / σ_1 over the top
 *   k; subspace error is the sine of the largest principal angle between the
 *   model's Vₖ and the exact top-k right singular vectors, computed as the
 *   2-norm of (I − VVᵀ)V̂ (accurate for tiny angles, unlike √(1 − cos²)).
 *
 *   --merge P: the same rows split into P contiguous parts, each streamed
 *   into a model of its own (untimed), then isvd_model_merge() of the P
 *   models timed (the fastest of --repeat merges), and the merged model's
 *   errors against the exact SVD of all rows, as above.
 */
#include "isvd_model.h"
#include "bench_util.h"

#include <cblas.h>
#include <lapacke.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PROG "isvd-bench"

#ifdef __GLIBC__
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif
#endif

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

struct bench_config {
	size_t n, k;
	uint64_t rows; /* default rows for this size */
};

/* The default sizes and their row counts: small enough that the whole
 * default run (the exact SVD of 4000×10000 dominates) takes a couple of
 * minutes on two cores. */
static const struct bench_config default_configs[] = {
	{64, 8, 50000},
	{1000, 50, 20000},
	{10000, 100, 4000},
};
#define N_DEFAULT_CONFIGS (sizeof default_configs / sizeof default_configs[0])

struct bench_opts {
	size_t dim, rank;        /* 0 = not given */
	size_t extra;            /* SIZE_MAX = engine default */
	size_t block;            /* 0 = the engine's choice */
	uint64_t rows;           /* 0 = default for the size / whole file */
	size_t signal_rank;      /* 0 = rank */
	double noise;
	int center;
	uint64_t seed;
	const char *input;       /* NULL = generate */
	const char *save_factors;
	unsigned repeat;         /* streams timed; the fastest is reported */
	int json;
	int no_exact;
	int mode;                /* -1 = both (truncated, then exact); else enum isvd_mode */
	size_t threads;          /* the engine's threads (0 = its auto choice) */
	double gaps[8];          /* --missing: fractions of values made gaps */
	size_t ngaps;            /* 0: option absent, imputation off */
	double run_gaps;         /* the fraction of the run in progress (< 0: off) */
	size_t merge;            /* --merge P: time merging P models (0: off) */
	int run_mode;            /* the mode of the run in progress */
};

/* With --mode both, exact mode is skipped above this dimension: its n×n
 * factor and O(n²) work per row make it the wrong tool there (and `auto`
 * never picks it). */
#define BOTH_EXACT_MAX_DIM 2048

static void usage(FILE *f)
{
	fprintf(f,
	"usage: isvd-bench [options]\n"
	"\n"
	"Streams seeded low-rank-plus-noise rows through the isvd engine and prints\n"
	"rows/s (engine time only), peak memory and accuracy against LAPACK's exact\n"
	"SVD of all rows, for (n,k) = (64,8), (1000,50), (10000,100) by default.\n"
	"\n"
	"  --dim N          row length n (one configuration only; with a default n\n"
	"                   the rank defaults to that configuration's k)\n"
	"  --rank K         target rank k (without --dim: applied to every default n)\n"
	"  --extra P        extra internal components (default: the engine's, 10)\n"
	"  --rows R         rows to stream (default 50000 / 20000 / 4000 for n =\n"
	"                   64 / 1000 / 10000, else 5000; with --input the whole file)\n"
	"  --block B        rows per isvd_model_update() call and max_block (default:\n"
	"                   the engine's choice for the dimension, max_block = 0)\n"
	"  --center         mean-centring on; the reference is then the exact PCA\n"
	"  --seed S         generator seed (default 1)\n"
	"  --repeat R       stream the rows R times, each into a new model, and report\n"
	"                   the fastest (for a busy machine; default 1); the JSON's\n"
	"                   cpu_seconds (all threads) is the least of the R as well\n"
	"  --noise E        noise standard deviation per entry (default 1e-3)\n"
	"  --signal-rank R  rank of the synthetic signal (default k)\n"
	"  --input FILE     read rows from FILE (raw little-endian float64, row-major,\n"
	"                   --dim values a row) instead of generating them\n"
	"  --save-factors FILE  write the model's σ (k values) then Vₖ (k rows of n,\n"
	"                   row-major) as raw little-endian float64 (one configuration)\n"
	"  --mode M         the engine's strategy: truncated, exact, auto, or both\n"
	"                   (default: both, truncated then exact, exact only for\n"
	"                   n <= 2048); exact's time includes the one SVD of R that\n"
	"                   reading the factors costs at the end\n"
	"  --no-exact       skip the reference SVD (no accuracy figures)\n"
	"  --missing LIST   comma list of fractions in [0, 1) (e.g. 0,0.01,0.1,0.5):\n"
	"                   each configuration runs once per fraction with that\n"
	"                   share of values, at seeded random places, made gaps\n"
	"                   (NaN) and the model imputing them (missing = impute);\n"
	"                   errors are against the SVD of the rows without gaps\n"
	"  --merge P        instead of streaming: split the rows into P contiguous\n"
	"                   parts, stream each into its own model (untimed) and time\n"
	"                   isvd_model_merge() of the P models (P >= 1); errors are\n"
	"                   the merged model's against the SVD of all rows\n"
	"  --threads T      the engine's threads for the n-sized products (default:\n"
	"                   its choice, up to 2); the BLAS itself always runs one\n"
	"  --json           one JSON object per configuration instead of the table\n"
	"  --help           this text\n");
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
	enum { O_DIM = 256, O_RANK, O_EXTRA, O_ROWS, O_BLOCK, O_CENTER, O_SEED, O_NOISE,
	       O_SIGNAL, O_INPUT, O_SAVE, O_NOEXACT, O_JSON, O_REPEAT, O_MODE, O_THREADS, O_MISSING, O_MERGE, O_HELP };
	static const struct option longopts[] = {
		{"dim", required_argument, NULL, O_DIM},
		{"rank", required_argument, NULL, O_RANK},
		{"extra", required_argument, NULL, O_EXTRA},
		{"rows", required_argument, NULL, O_ROWS},
		{"block", required_argument, NULL, O_BLOCK},
		{"center", no_argument, NULL, O_CENTER},
		{"seed", required_argument, NULL, O_SEED},
		{"noise", required_argument, NULL, O_NOISE},
		{"signal-rank", required_argument, NULL, O_SIGNAL},
		{"input", required_argument, NULL, O_INPUT},
		{"save-factors", required_argument, NULL, O_SAVE},
		{"no-exact", no_argument, NULL, O_NOEXACT},
		{"json", no_argument, NULL, O_JSON},
		{"repeat", required_argument, NULL, O_REPEAT},
		{"mode", required_argument, NULL, O_MODE},
		{"threads", required_argument, NULL, O_THREADS},
		{"missing", required_argument, NULL, O_MISSING},
		{"merge", required_argument, NULL, O_MERGE},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof *o);
	o->extra = SIZE_MAX;
	o->block = 0; /* the engine's choice */
	o->noise = 1e-3;
	o->seed = 1;
	o->repeat = 1;
	o->mode = -1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		const char *name = argv[optind - 1];
		int rc = 0;

		switch (c) {
		case O_DIM: rc = parse_size(PROG, "--dim", optarg, 1, ISVD_MAX_DIM, &o->dim); break;
		case O_RANK: rc = parse_size(PROG, "--rank", optarg, 1, ISVD_MAX_RANK, &o->rank); break;
		case O_EXTRA: rc = parse_size(PROG, "--extra", optarg, 0, ISVD_MAX_RANK, &o->extra); break;
		case O_ROWS: rc = parse_u64(PROG, "--rows", optarg, 1, UINT64_MAX, &o->rows); break;
		case O_BLOCK: rc = parse_size(PROG, "--block", optarg, 1, ISVD_MAX_BLOCK, &o->block); break;
		case O_CENTER: o->center = 1; break;
		case O_SEED: rc = parse_u64(PROG, "--seed", optarg, 0, UINT64_MAX, &o->seed); break;
		case O_SIGNAL:
			rc = parse_size(PROG, "--signal-rank", optarg, 1, ISVD_MAX_DIM, &o->signal_rank);
			break;
		case O_NOISE: {
			char *end;
			errno = 0;
			o->noise = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' || !(o->noise >= 0) ||
			    !isfinite(o->noise)) {
				fprintf(stderr, "isvd-bench: --noise needs a finite number >= 0, got '%s'\n",
				        optarg);
				rc = -1;
			}
			break;
		}
		case O_INPUT: o->input = optarg; break;
		case O_SAVE: o->save_factors = optarg; break;
		case O_NOEXACT: o->no_exact = 1; break;
		case O_JSON: o->json = 1; break;
		case O_THREADS: rc = parse_size(PROG, "--threads", optarg, 1, 64, &o->threads); break;
		case O_MERGE: rc = parse_size(PROG, "--merge", optarg, 1, 4096, &o->merge); break;
		case O_MISSING: {
			const char *p = optarg;
			o->ngaps = 0;
			for (;;) {
				char *end;
				errno = 0;
				const double f = strtod(p, &end);
				if (errno != 0 || end == p || !(f >= 0 && f < 1) ||
				    o->ngaps == sizeof o->gaps / sizeof o->gaps[0] ||
				    (*end != ',' && *end != '\0')) {
					fprintf(stderr, "isvd-bench: --missing needs up to 8 fractions in "
					        "[0, 1), comma-separated, got '%s'\n", optarg);
					rc = -1;
					break;
				}
				o->gaps[o->ngaps++] = f;
				if (*end == '\0')
					break;
				p = end + 1;
			}
			break;
		}
		case O_MODE:
			if (!strcmp(optarg, "both")) {
				o->mode = -1;
			} else if (!strcmp(optarg, "auto")) {
				o->mode = ISVD_MODE_AUTO;
			} else if (!strcmp(optarg, "exact")) {
				o->mode = ISVD_MODE_EXACT;
			} else if (!strcmp(optarg, "truncated")) {
				o->mode = ISVD_MODE_TRUNCATED;
			} else {
				fprintf(stderr, "isvd-bench: --mode must be truncated, exact, auto or both, "
				        "got '%s'\n", optarg);
				rc = -1;
			}
			break;
		case O_REPEAT: {
			size_t v;
			rc = parse_size(PROG, "--repeat", optarg, 1, 1000, &v);
			o->repeat = (unsigned)v;
			break;
		}
		case 'h':
		case O_HELP: usage(stdout); exit(0);
		case ':':
			fprintf(stderr, "isvd-bench: option %s needs a value\n", name);
			rc = -1;
			break;
		default:
			if (optopt != 0 && optopt < 256 && c == '?' && name[0] == '-' && name[1] != '-')
				fprintf(stderr, "isvd-bench: unknown option -%c\n", optopt);
			else
				fprintf(stderr, "isvd-bench: unknown option %s\n", name);
			rc = -1;
			break;
		}
		if (rc != 0) {
			fprintf(stderr, "Try 'isvd-bench --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "isvd-bench: unexpected argument '%s'\nTry 'isvd-bench --help'.\n",
		        argv[optind]);
		return -1;
	}
	if (o->input != NULL && o->dim == 0) {
		fprintf(stderr, "isvd-bench: --input needs --dim (the row length of the file)\n");
		return -1;
	}
	if (o->input != NULL && o->signal_rank != 0)
		fprintf(stderr, "isvd-bench: note: --signal-rank has no effect with --input\n");
	if (o->dim != 0 && o->rank == 0) {
		for (size_t i = 0; i < N_DEFAULT_CONFIGS; i++)
			if (default_configs[i].n == o->dim)
				o->rank = default_configs[i].k;
		if (o->rank == 0) {
			fprintf(stderr, "isvd-bench: --dim %zu needs --rank (only n = 64, 1000, "
			        "10000 have a default rank)\n", o->dim);
			return -1;
		}
	}
	if (o->merge && (o->ngaps || o->save_factors || o->input)) {
		fprintf(stderr, "isvd-bench: --merge goes with neither --missing, --save-factors "
		        "nor --input\n");
		return -1;
	}
	if (o->save_factors != NULL && o->dim == 0) {
		fprintf(stderr, "isvd-bench: --save-factors needs a single configuration (--dim)\n");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Seeded data                                                              */

/* Fills x (nrows × n, row-major) with rank-r signal plus noise: row i is
 * Σ_j s_j z_ij q_j + noise·e_i with z, e standard normal, s_j = 10^(−j/r),
 * and q_j orthonormal (QR of a Gaussian n×r matrix).  Returns 0 or -1. */
static int generate_rows(size_t n, size_t r, size_t nrows, double noise, uint64_t seed,
                         double *x)
{
	struct rng g = {seed, 0, 0.0};
	double *q = NULL, *tau = NULL, *z = NULL;
	lapack_int info;
	int ret = -1;

	if (r > n)
		r = n;
	q = malloc(n * r * sizeof *q);
	tau = malloc(r * sizeof *tau);
	z = malloc(nrows * r * sizeof *z);
	if (q == NULL || tau == NULL || z == NULL) {
		fprintf(stderr, "isvd-bench: out of memory generating %zu rows of %zu\n", nrows, n);
		goto out;
	}
	for (size_t i = 0; i < n * r; i++)
		q[i] = rng_normal(&g);
	/* Column-major n×r, made orthonormal; read row-major it is Qᵀ (r×n). */
	info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r, q, (lapack_int)n, tau);
	if (info == 0)
		info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r, (lapack_int)r,
		                      q, (lapack_int)n, tau);
	if (info != 0) {
		fprintf(stderr, "isvd-bench: QR of the random basis failed (info %d)\n", (int)info);
		goto out;
	}
	for (size_t i = 0; i < nrows; i++)
		for (size_t j = 0; j < r; j++)
			z[i * r + j] = pow(10.0, -(double)j / (double)r) * rng_normal(&g);
	for (size_t i = 0; i < nrows * n; i++)
		x[i] = noise * rng_normal(&g);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nrows, (int)n, (int)r,
	            1.0, z, (int)r, q, (int)n, 1.0, x, (int)n);
	ret = 0;
out:
	free(z);
	free(tau);
	free(q);
	return ret;
}

static int host_is_little_endian(void)
{
	const uint16_t one = 1;
	unsigned char b;

	memcpy(&b, &one, 1);
	return b == 1;
}

/* v with its 8 bytes reversed (little- ↔ big-endian). */
static double swap_f64(double v)
{
	unsigned char b[8], t;

	memcpy(b, &v, 8);
	for (int j = 0; j < 4; j++) {
		t = b[j];
		b[j] = b[7 - j];
		b[7 - j] = t;
	}
	memcpy(&v, b, 8);
	return v;
}

/* Reads rows from a raw little-endian float64 file of n values a row.
 * *nrows in: the rows wanted (0 = all); out: the rows read.  The caller owns
 * *out.  Returns 0 or -1 with the error printed. */
static int read_rows(const char *path, size_t n, uint64_t *nrows, double **out)
{
	FILE *f = fopen(path, "rb");
	long size;
	uint64_t have;
	double *x = NULL;

	if (f == NULL) {
		fprintf(stderr, "isvd-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "isvd-bench: %s: cannot size the file: %s\n", path, strerror(errno));
		goto fail;
	}
	if ((uint64_t)size % (n * sizeof(double)) != 0) {
		fprintf(stderr, "isvd-bench: %s: size %ld bytes is not a multiple of a row "
		        "(--dim %zu × 8 bytes)\n", path, size, n);
		goto fail;
	}
	have = (uint64_t)size / (n * sizeof(double));
	if (have == 0) {
		fprintf(stderr, "isvd-bench: %s: the file holds no rows\n", path);
		goto fail;
	}
	if (*nrows == 0) {
		*nrows = have;
	} else if (*nrows > have) {
		fprintf(stderr, "isvd-bench: --rows %llu but %s holds only %llu rows of dim %zu\n",
		        (unsigned long long)*nrows, path, (unsigned long long)have, n);
		goto fail;
	}
	x = malloc((size_t)*nrows * n * sizeof *x);
	if (x == NULL) {
		fprintf(stderr, "isvd-bench: out of memory reading %llu rows of %zu\n",
		        (unsigned long long)*nrows, n);
		goto fail;
	}
	if (fread(x, sizeof *x * n, (size_t)*nrows, f) != (size_t)*nrows) {
		fprintf(stderr, "isvd-bench: %s: short read: %s\n", path,
		        ferror(f) ? strerror(errno) : "unexpected end of file");
		goto fail;
	}
	if (!host_is_little_endian())
		for (size_t i = 0; i < (size_t)*nrows * n; i++)
			x[i] = swap_f64(x[i]);
	fclose(f);
	*out = x;
	return 0;
fail:
	free(x);
	fclose(f);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Measurements                                                             */

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Resets the peak-RSS high-water mark to the current RSS (Linux ≥ 4.0).
 * Returns 1 when done, 0 when the peak stays process-wide. */
static int reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int ok;

	if (f == NULL)
		return 0;
	ok = fputs("5", f) >= 0;
	ok = (fclose(f) == 0) && ok;
	return ok;
}

/* CPU seconds (user + system) of every thread of the process so far. */
static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static uint64_t peak_rss_bytes(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024u; /* KiB on Linux */
}

/* Bytes currently allocated by malloc, or -1 when unknown (no mallinfo2,
 * or a replaced allocator such as AddressSanitizer's, which reports 0). */
static double heap_in_use(void)
{
#ifdef HAVE_MALLINFO2
	struct mallinfo2 mi = mallinfo2();
	double used = (double)mi.uordblks + (double)mi.hblkhd;

	return used > 0 ? used : -1.0;
#else
	return -1.0;
#endif
}

/* Exact SVD of x (nrows × n, row-major; destroyed, centred first when
 * center).  sigma receives min(nrows, n) values; vt the top kk right
 * singular vectors as rows (kk × n, row-major).  Returns 0 or -1. */
static int exact_svd(double *x, size_t nrows, size_t n, int center, size_t kk, double *sigma,
                     double *vt)
{
	size_t mn = nrows < n ? nrows : n;
	double *u = NULL, *w = NULL;
	lapack_int info;
	int ret = -1;

	if (center) {
		double *mean = calloc(n, sizeof *mean);
		if (mean == NULL)
			goto nomem;
		for (size_t i = 0; i < nrows; i++)
			for (size_t j = 0; j < n; j++)
				mean[j] += x[i * n + j];
		for (size_t j = 0; j < n; j++)
			mean[j] /= (double)nrows;
		for (size_t i = 0; i < nrows; i++)
			for (size_t j = 0; j < n; j++)
				x[i * n + j] -= mean[j];
		free(mean);
	}
	/* Row-major A (nrows×n) is column-major Aᵀ (n×nrows): Aᵀ = V Σ Uᵀ, so the
	 * left singular vectors of Aᵀ are A's V.  jobz 'O' writes them over x
	 * when n ≥ nrows, else into u (n×n); the other factor (A's U) goes to w
	 * or is written over x.  Either way no nrows×n factor is allocated. */
	if (n < nrows) {
		u = malloc(n * n * sizeof *u);
		w = malloc(sizeof *w);
	} else {
		u = malloc(sizeof *u);
		w = malloc(mn * mn * sizeof *w);
	}
	if (u == NULL || w == NULL)
		goto nomem;
	info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'O', (lapack_int)n, (lapack_int)nrows, x,
	                      (lapack_int)n, sigma, u, n < nrows ? (lapack_int)n : 1, w,
	                      n < nrows ? 1 : (lapack_int)mn);
	if (info != 0) {
		fprintf(stderr, "isvd-bench: exact SVD failed (dgesdd info %d)\n", (int)info);
		goto out;
	}
	memcpy(vt, n < nrows ? u : x, kk * n * sizeof *vt);
	ret = 0;
	goto out;
nomem:
	fprintf(stderr, "isvd-bench: out of memory for the exact SVD (%zu × %zu)\n", nrows, n);
out:
	free(w);
	free(u);
	return ret;
}

/* Sine of the largest principal angle between the row spaces of a and b
 * (both kk × n with orthonormal rows): ‖b − (b aᵀ) a‖₂.  -1 on failure. */
static double subspace_sine(const double *a, const double *b, size_t kk, size_t n)
{
	double *g = malloc(kk * kk * sizeof *g);
	double *r = malloc(kk * n * sizeof *r);
	double *s = malloc(kk * sizeof *s);
	double res = -1.0;
	lapack_int info;

	if (g == NULL || r == NULL || s == NULL)
		goto out;
	/* g = b aᵀ (kk×kk); r = b − g a. */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)kk, (int)kk, (int)n, 1.0, b,
	            (int)n, a, (int)n, 0.0, g, (int)kk);
	memcpy(r, b, kk * n * sizeof *r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)kk, (int)n, (int)kk, -1.0, g,
	            (int)kk, a, (int)n, 1.0, r, (int)n);
	/* Row-major kk×n is column-major n×kk: same singular values, no copy. */
	info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)kk, r,
	                      (lapack_int)n, s, NULL, 1, NULL, 1);
	if (info == 0)
		res = s[0];
out:
	free(s);
	free(r);
	free(g);
	return res;
}

/* ------------------------------------------------------------------------ */
/* One configuration                                                        */

struct bench_result {
	size_t n, k, extra, block, rank_reported;
	size_t threads;                 /* the engine's, resolved */
	double gaps;                    /* fraction of values made gaps (< 0: off) */
	int mode;                       /* resolved: ISVD_MODE_EXACT or _TRUNCATED */
	uint64_t rows;
	double seconds, cpu_seconds, exact_seconds;
	uint64_t peak_rss;
	int peak_rss_per_config;
	double data_bytes, model_heap, model_heap_growth, state_bytes;
	double orth_err, explained;
	double sigma_err, subspace_err; /* < 0: not computed */
};

/* Writes count doubles as little-endian; returns 1 when all were written. */
static int write_f64_le(FILE *f, const double *v, size_t count)
{
	if (host_is_little_endian())
		return fwrite(v, sizeof *v, count, f) == count;
	for (size_t i = 0; i < count; i++) {
		const double w = swap_f64(v[i]);
		if (fwrite(&w, sizeof w, 1, f) != 1)
			return 0;
	}
	return 1;
}

/* Writes kk σ values then kk rows of n (row-major) as raw little-endian
 * float64; components the model does not report are zeros. */
static int write_factors(const char *path, const double *sigma, const double *vt, size_t kk,
                         size_t n)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL) {
		fprintf(stderr, "isvd-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	ok = write_f64_le(f, sigma, kk) && write_f64_le(f, vt, kk * n);
	ok = (fclose(f) == 0) && ok;
	if (!ok) {
		fprintf(stderr, "isvd-bench: %s: write failed: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Runs one (n, k) configuration into *res.  Returns 0, or 1 when the exact
 * reference failed (res holds everything but accuracy), or -1 on an error
 * that leaves nothing to print.  Errors are printed where they happen. */
static int run_config(const struct bench_opts *o, size_t n, size_t k, uint64_t nrows,
                      struct bench_result *res)
{
	struct isvd_options mo, resolved;
	struct isvd_model *m = NULL;
	size_t block = 0;
	struct isvd_info info;
	double *x = NULL, *xg = NULL, *sig_m = NULL, *vt_m = NULL, *sig_x = NULL, *vt_x = NULL;
	double heap0 = -1, heap1 = -1, heap2, t0;
	size_t kk, r = 0, mn;
	int err, ret = -1;

	memset(res, 0, sizeof *res);
	res->sigma_err = res->subspace_err = -1.0;
	res->n = n;
	res->k = k;

	/* 1. Rows, all in memory before the clock starts. */
	if (o->input != NULL) {
		if (read_rows(o->input, n, &nrows, &x) != 0)
			return -1;
	} else {
		if (nrows > SIZE_MAX / sizeof(double) / n) {
			fprintf(stderr, "isvd-bench: %llu rows of %zu do not fit in memory\n",
			        (unsigned long long)nrows, n);
			return -1;
		}
		x = malloc((size_t)nrows * n * sizeof *x);
		if (x == NULL) {
			fprintf(stderr, "isvd-bench: out of memory for %llu rows of %zu (%.0f MiB)\n",
			        (unsigned long long)nrows, n, (double)nrows * (double)n * 8 / 1048576);
			return -1;
		}
		if (generate_rows(n, o->signal_rank ? o->signal_rank : k, (size_t)nrows, o->noise,
		                  o->seed, x) != 0)
			goto out;
	}
	res->rows = nrows;
	res->data_bytes = (double)nrows * (double)n * sizeof(double);
	res->gaps = o->run_gaps;
	const double *stream = x;   /* what the model is fed: x, or x with gaps */
	if (o->run_gaps >= 0) {
		xg = malloc((size_t)nrows * n * sizeof *xg);
		if (xg == NULL) {
			fprintf(stderr, "isvd-bench: out of memory for the rows with gaps\n");
			goto out;
		}
		struct rng g = { o->seed ^ 0x9e3779b97f4a7c15ull, 0, 0.0 };
		for (size_t i = 0; i < (size_t)nrows * n; i++)
			xg[i] = rng_uniform(&g) <= o->run_gaps ? NAN : x[i];
		for (size_t i = 0; i < (size_t)nrows; i++)   /* no row may be all gaps */
			if (isvd_row_observed(xg + i * n, n) == 0)
				xg[i * n] = x[i * n];
		stream = xg;
	}

	/* 2. The model, timed on the update calls only. */
	isvd_options_default(&mo);
	mo.dim = n;
	mo.rank = k;
	if (o->extra != SIZE_MAX)
		mo.extra = o->extra;
	mo.max_block = o->block;
	mo.center = o->center;
	mo.mode = o->run_mode;
	mo.threads = o->threads;
	mo.missing = o->run_gaps >= 0 ? ISVD_MISSING_IMPUTE : ISVD_MISSING_REJECT;
	res->extra = mo.extra;
	res->peak_rss_per_config = reset_peak_rss();
	for (unsigned rep = 0; rep < o->repeat; rep++) {
		double seconds, c0;

		isvd_model_destroy(m); /* the previous repetition's */
		m = NULL;
		heap0 = heap_in_use();
		err = isvd_model_create(&mo, &m);
		if (err != ISVD_OK) {
			fprintf(stderr, "isvd-bench: isvd_model_create(n=%zu, k=%zu, extra=%zu, "
			        "block=%zu): %s\n", n, k, mo.extra, mo.max_block, isvd_strerror(err));
			goto out;
		}
		/* Rows per call: the block the model resolved (max_block 0 = auto). */
		err = isvd_model_options(m, &resolved);
		if (err != ISVD_OK || resolved.max_block == 0) {
			fprintf(stderr, "isvd-bench: isvd_model_options: %s\n",
			        err ? isvd_strerror(err) : "max_block resolved to 0");
			goto out;
		}
		block = resolved.max_block;
		res->block = block;
		res->mode = resolved.mode;
		res->extra = resolved.extra;
		res->threads = resolved.threads;
		heap1 = heap_in_use();
		c0 = cpu_seconds();
		t0 = now_seconds();
		for (uint64_t i = 0; i < nrows; i += block) {
			size_t b = (size_t)(nrows - i < block ? nrows - i : block);
			err = isvd_model_update(m, stream + (size_t)i * n, b, n);
			if (err != ISVD_OK) {
				fprintf(stderr, "isvd-bench: isvd_model_update at row %llu: %s\n",
				        (unsigned long long)i, isvd_strerror(err));
				goto out;
			}
		}
		(void)isvd_model_rank(m);   /* exact mode: the SVD of R a reader pays for */
		seconds = now_seconds() - t0;
		c0 = cpu_seconds() - c0;
		if (rep == 0 || seconds < res->seconds)
			res->seconds = seconds;
		if (rep == 0 || c0 < res->cpu_seconds)
			res->cpu_seconds = c0;
	}
	heap2 = heap_in_use();
	res->peak_rss = peak_rss_bytes();
	res->model_heap = heap0 >= 0 && heap2 >= 0 ? heap2 - heap0 : -1.0;
	res->model_heap_growth = heap1 >= 0 && heap2 >= 0 ? heap2 - heap1 : -1.0;
	res->state_bytes = (double)isvd_model_saved_size(m);

	err = isvd_model_info(m, &info);
	if (err != ISVD_OK) {
		fprintf(stderr, "isvd-bench: isvd_model_info: %s\n", isvd_strerror(err));
		goto out;
	}
	res->orth_err = info.orthogonality_error;
	res->explained = info.explained_energy_ratio;

	/* 3. Factors, then the exact reference (which destroys x). */
	kk = k < n ? k : n;
	sig_m = calloc(kk, sizeof *sig_m);
	vt_m = calloc(kk * n, sizeof *vt_m);
	if (sig_m == NULL || vt_m == NULL) {
		fprintf(stderr, "isvd-bench: out of memory for the factors\n");
		goto out;
	}
	err = isvd_model_factors(m, sig_m, vt_m, NULL, &r);
	if (err != ISVD_OK) {
		fprintf(stderr, "isvd-bench: isvd_model_factors: %s\n", isvd_strerror(err));
		goto out;
	}
	res->rank_reported = r;
	if (o->save_factors != NULL && write_factors(o->save_factors, sig_m, vt_m, kk, n) != 0)
		goto out;
	isvd_model_destroy(m);
	m = NULL;

	if (!o->no_exact) {
		mn = (size_t)nrows < n ? (size_t)nrows : n;
		if (kk > mn)
			kk = mn; /* fewer rows than k: compare what exists */
		sig_x = malloc(mn * sizeof *sig_x);
		vt_x = malloc(kk * n * sizeof *vt_x);
		if (sig_x == NULL || vt_x == NULL) {
			fprintf(stderr, "isvd-bench: out of memory for the exact SVD\n");
			goto out;
		}
		t0 = now_seconds();
		if (exact_svd(x, (size_t)nrows, n, o->center, kk, sig_x, vt_x) != 0) {
			ret = 1; /* the throughput and memory figures still stand */
			goto out;
		}
		res->exact_seconds = now_seconds() - t0;
		res->sigma_err = 0.0;
		for (size_t i = 0; i < kk; i++) {
			double d = fabs(sig_x[i] - (i < r ? sig_m[i] : 0.0));
			if (d > res->sigma_err)
				res->sigma_err = d;
		}
		if (sig_x[0] > 0)
			res->sigma_err /= sig_x[0];
		/* A model reporting fewer than kk components misses a direction. */
		res->subspace_err = r < kk ? 1.0 : subspace_sine(vt_x, vt_m, kk, n);
		if (res->subspace_err < 0) {
			fprintf(stderr, "isvd-bench: principal-angle SVD failed\n");
			res->sigma_err = -1.0;
			ret = 1;
			goto out;
		}
	}
	ret = 0;
out:
	isvd_model_destroy(m);
	free(vt_x);
	free(sig_x);
	free(vt_m);
	free(sig_m);
	free(xg);
	free(x);
	return ret;
}

/* --merge P: the rows in P contiguous parts, a model each (streamed
 * untimed), then the merge of the P timed (the fastest of o->repeat) and
 * its errors against the exact SVD of all rows.  0, or 1 (printed). */
static int run_merge(const struct bench_opts *o, size_t n, size_t k, uint64_t nrows)
{
	const size_t P = o->merge, r_sig = o->signal_rank ? o->signal_rank : k;
	struct isvd_options mo;
	struct isvd_model **parts = calloc(P, sizeof *parts), *merged = NULL;
	double *x = malloc((size_t)nrows * n * sizeof *x), best = -1;
	double *sig_m = NULL, *vt_m = NULL, *sig_x = NULL, *vt_x = NULL;
	double sig_err = -1, sub_err = -1;
	size_t r = 0, kk = k < n ? k : n;
	int err, ret = 1;

	if (!parts || !x) {
		fprintf(stderr, "isvd-bench: out of memory for %llu rows of %zu\n",
		        (unsigned long long)nrows, n);
		goto out;
	}
	if (generate_rows(n, r_sig, (size_t)nrows, o->noise, o->seed, x) != 0)
		goto out;
	isvd_options_default(&mo);
	mo.dim = n;
	mo.rank = k;
	if (o->extra != SIZE_MAX)
		mo.extra = o->extra;
	mo.max_block = o->block;
	mo.center = o->center;
	mo.mode = o->run_mode;
	mo.threads = o->threads;
	for (size_t p = 0; p < P; p++) {
		const size_t lo = (size_t)(nrows * p / P), hi = (size_t)(nrows * (p + 1) / P);
		if ((err = isvd_model_create(&mo, &parts[p])) ||
		    (err = isvd_model_update(parts[p], x + lo * n, hi - lo, n))) {
			fprintf(stderr, "isvd-bench: part %zu: %s\n", p, isvd_strerror(err));
			goto out;
		}
	}
	for (unsigned rep = 0; rep < o->repeat; rep++) {
		isvd_model_destroy(merged);
		merged = NULL;
		const double t0 = now_seconds();
		err = isvd_model_merge((const struct isvd_model *const *)parts, P, &merged);
		const double t = now_seconds() - t0;
		if (err) {
			fprintf(stderr, "isvd-bench: isvd_model_merge: %s\n", isvd_strerror(err));
			goto out;
		}
		best = best < 0 || t < best ? t : best;
	}
	sig_m = calloc(kk, sizeof *sig_m);
	vt_m = calloc(kk * n, sizeof *vt_m);
	if (!sig_m || !vt_m || (err = isvd_model_factors(merged, sig_m, vt_m, NULL, &r))) {
		fprintf(stderr, "isvd-bench: the merged factors: %s\n",
		        sig_m && vt_m ? isvd_strerror(err) : "out of memory");
		goto out;
	}
	if (!o->no_exact) {
		const size_t mn = (size_t)nrows < n ? (size_t)nrows : n;
		kk = kk < mn ? kk : mn;
		sig_x = malloc(mn * sizeof *sig_x);
		vt_x = malloc(kk * n * sizeof *vt_x);
		if (!sig_x || !vt_x || exact_svd(x, (size_t)nrows, n, o->center, kk, sig_x, vt_x))
			goto out;
		sig_err = 0;
		for (size_t i = 0; i < kk; i++)
			sig_err = fmax(sig_err, fabs(sig_x[i] - (i < r ? sig_m[i] : 0.0)) / sig_x[0]);
		sub_err = r < kk ? 1.0 : subspace_sine(vt_x, vt_m, kk, n);
	}
	isvd_model_options(merged, &mo);
	if (o->json) {
		printf("{\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"extra\":%zu,\"parts\":%zu,"
		       "\"rows\":%llu,\"merge_seconds\":%.9g,\"sigma_rel_err\":%.6g,"
		       "\"subspace_sin\":%.6g}\n", n, k, isvd_mode_name(mo.mode), mo.extra, P,
		       (unsigned long long)nrows, best, sig_err, sub_err);
	} else {
		char se[32] = "-", ss[32] = "-";
		if (sig_err >= 0) {
			snprintf(se, sizeof se, "%.2e", sig_err);
			snprintf(ss, sizeof ss, "%.2e", sub_err);
		}
		printf("%6zu %4zu %-9s %3zu %5zu %9llu %12.6f %10s %10s\n", n, k,
		       isvd_mode_name(mo.mode), mo.extra, P, (unsigned long long)nrows, best, se, ss);
	}
	fflush(stdout);
	ret = 0;
out:
	for (size_t p = 0; parts && p < P; p++)
		isvd_model_destroy(parts[p]);
	free(parts);
	isvd_model_destroy(merged);
	free(x);
	free(sig_m);
	free(vt_m);
	free(sig_x);
	free(vt_x);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_number(const char *key, double v)
{
	if (v < 0 || !isfinite(v))
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%.6g", key, v);
}

static void print_json(const struct bench_opts *o, const struct bench_result *r)
{
	printf("{\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"extra\":%zu,\"block\":%zu,\"center\":%s,",
	       r->n, r->k, isvd_mode_name(r->mode), r->extra, r->block, o->center ? "true" : "false");
	printf("\"threads\":%zu,", r->threads);
	if (r->gaps >= 0)
		printf("\"missing_fraction\":%.6g,", r->gaps);
	printf("\"blas_core\":");
	json_string(bench_blas_core());
	printf(",\"blas_threads\":%d,", bench_blas_threads());
	if (o->input != NULL) {
		printf("\"source\":\"file\",\"input\":");
		json_string(o->input);
	} else {
		printf("\"source\":\"synthetic\",\"seed\":%llu,\"noise\":%.6g,\"signal_rank\":%zu",
		       (unsigned long long)o->seed, o->noise,
		       o->signal_rank ? o->signal_rank : r->k);
	}
	printf(",\"rows\":%llu,\"repeat\":%u,\"rank_reported\":%zu", (unsigned long long)r->rows,
	       o->repeat, r->rank_reported);
	json_number("seconds", r->seconds);
	json_number("rows_per_s", r->seconds > 0 ? (double)r->rows / r->seconds : -1.0);
	json_number("cpu_seconds", r->cpu_seconds);
	printf(",\"peak_rss_bytes\":%llu,\"peak_rss_scope\":\"%s\"",
	       (unsigned long long)r->peak_rss, r->peak_rss_per_config ? "config" : "process");
	json_number("data_bytes", r->data_bytes);
	json_number("model_heap_bytes", r->model_heap);
	json_number("model_heap_growth_bytes", r->model_heap_growth);
	json_number("model_state_bytes", r->state_bytes);
	json_number("orthogonality_error", r->orth_err);
	json_number("explained_energy_ratio", r->explained);
	json_number("sigma_rel_err", r->sigma_err);
	json_number("subspace_sin", r->subspace_err);
	json_number("exact_seconds", o->no_exact ? -1.0 : r->exact_seconds);
	printf("}\n");
	fflush(stdout);
}

static void print_header(const struct bench_opts *o)
{
	printf("isvd-bench: %s, block %s, extra p %s, centring %s\n",
	       o->input ? "rows from file" : "synthetic rank-k signal + noise",
	       o->block ? "from --block" : "engine's choice",
	       o->extra == SIZE_MAX ? "engine default" : "from --extra", o->center ? "on" : "off");
	if (o->input == NULL)
		printf("  seed %llu, noise %.3g, spectrum s_j = 10^(-j/r), r = %s\n",
		       (unsigned long long)o->seed, o->noise,
		       o->signal_rank ? "--signal-rank" : "k");
	if (o->repeat > 1)
		printf("  rows/s: the fastest of %u streams of the same rows\n", o->repeat);
	printf("  BLAS: %s kernel, %d thread(s); engine threads: %s (column thr)\n",
	       bench_blas_core(), bench_blas_threads(), o->threads ? "from --threads" : "its choice");
	printf("  rows/s: engine time only; peak RSS includes the rows held in memory (data);\n"
	       "  model: malloc heap held by the model; errors vs LAPACK dgesdd of all rows\n\n");
	printf("%6s %4s %-9s %3s %5s %3s %5s %7s %11s %9s %9s %9s %9s %10s %10s %9s\n", "n", "k",
	       "mode", "p", "block", "thr", "gaps", "rows", "rows/s", "engine s", "peakRSS", "data",
	       "model", "sigma err", "subsp sin", "orth err");
	printf("%6s %4s %-9s %3s %5s %3s %5s %7s %11s %9s %9s %9s %9s %10s %10s %9s\n", "", "", "",
	       "", "", "", "%", "", "", "", "MiB", "MiB", "MiB", "", "", "");
	fflush(stdout);
}

static void print_row(const struct bench_result *r)
{
	char se[32], ss[32], mh[32];

	if (r->sigma_err >= 0) {
		snprintf(se, sizeof se, "%.2e", r->sigma_err);
		snprintf(ss, sizeof ss, "%.2e", r->subspace_err);
	} else {
		snprintf(se, sizeof se, "-");
		snprintf(ss, sizeof ss, "-");
	}
	if (r->model_heap >= 0)
		snprintf(mh, sizeof mh, "%.2f", r->model_heap / 1048576.0);
	else
		snprintf(mh, sizeof mh, "-");
	char gp[16];
	if (r->gaps >= 0)
		snprintf(gp, sizeof gp, "%.0f", 100 * r->gaps);
	else
		snprintf(gp, sizeof gp, "-");
	printf("%6zu %4zu %-9s %3zu %5zu %3zu %5s %7llu %11.0f %9.3f %9.1f %9.1f %9s %10s %10s "
	       "%9.1e\n", r->n, r->k, isvd_mode_name(r->mode), r->extra, r->block, r->threads, gp,
	       (unsigned long long)r->rows,
	       r->seconds > 0 ? (double)r->rows / r->seconds : 0.0, r->seconds,
	       (double)r->peak_rss / 1048576.0, r->data_bytes / 1048576.0, mh, se, ss,
	       r->orth_err);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_result res;
	int failed = 0;

	if (parse_opts(argc, argv, &o) != 0)
		return 2;
	bench_blas_single_thread();
	if (!o.json && o.merge) {
		printf("isvd-bench --merge %zu: the rows split into %zu contiguous parts, a model "
		       "each; time of isvd_model_merge() (the fastest of %u); errors of the merged "
		       "model vs LAPACK dgesdd of all rows\n", o.merge, o.merge, o.repeat);
		printf("  seed %llu, noise %.3g, centring %s; BLAS: %s kernel, %d thread(s)\n\n",
		       (unsigned long long)o.seed, o.noise, o.center ? "on" : "off",
		       bench_blas_core(), bench_blas_threads());
		printf("%6s %4s %-9s %3s %5s %9s %12s %10s %10s\n", "n", "k", "mode", "p", "parts",
		       "rows", "merge s", "sigma err", "subsp sin");
	} else if (!o.json) {
		print_header(&o);
	}
	size_t nconfigs = o.dim != 0 ? 1 : N_DEFAULT_CONFIGS;

	for (size_t i = 0; i < nconfigs; i++) {
		size_t n, k;
		uint64_t rows;

		if (o.dim != 0) {
			n = o.dim;
			k = o.rank;
			rows = 5000;
			for (size_t j = 0; j < N_DEFAULT_CONFIGS; j++)
				if (default_configs[j].n == n)
					rows = default_configs[j].rows;
			if (o.input != NULL)
				rows = 0; /* the whole file */
		} else {
			n = default_configs[i].n;
			k = o.rank ? o.rank : default_configs[i].k;
			rows = default_configs[i].rows;
		}
		if (o.rows != 0)
			rows = o.rows;
		static const int both[] = { ISVD_MODE_TRUNCATED, ISVD_MODE_EXACT };
		for (size_t mi = 0; mi < (o.mode < 0 ? 2u : 1u); mi++) {
			o.run_mode = o.mode < 0 ? both[mi] : o.mode;
			if (o.mode < 0 && o.run_mode == ISVD_MODE_EXACT && n > BOTH_EXACT_MAX_DIM) {
				if (!o.json)
					printf("%6zu %4zu %-9s (skipped: n > %d; --mode exact runs it)\n", n, k,
					       "exact", BOTH_EXACT_MAX_DIM);
				continue;
			}
			if (o.merge) {
				failed |= run_merge(&o, n, k, rows) != 0;
				continue;
			}
			for (size_t gi = 0; gi < (o.ngaps ? o.ngaps : 1); gi++) {
				o.run_gaps = o.ngaps ? o.gaps[gi] : -1.0;
				int rc = run_config(&o, n, k, rows, &res);

				if (rc != 0)
					failed = 1;
				if (rc >= 0) {
					if (o.json)
						print_json(&o, &res);
					else
						print_row(&res);
				}
			}
		}
	}
	return failed;
}
