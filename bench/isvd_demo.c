/*
 * isvd_demo.c — `isvd-demo`: watch the engine learn a spectrum.
 *
 * Streams seeded synthetic rows (a rank-r signal with a decaying spectrum
 * plus white noise) through the engine in small pushes, as a sensor feed
 * would, and every --every rows prints the rows seen, throughput, the
 * leading singular values as a bar chart, the explained energy, the
 * condition number and the orthogonality error.  At the end it checks the
 * factors against LAPACK's SVD of every row streamed (when they fit).
 * This is what `scripts/run` starts until the daemon exists.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lapacke.h>

#include "isvd_model.h"
#include "bench_util.h"

#define PROG "isvd-demo"

struct demo_opts {
	size_t dim, rank, signal, rows, push, every;
	int center;
	double forget, noise;
	uint64_t seed;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: isvd-demo [options]\n"
	        "Streams synthetic rows through the incremental SVD engine and prints\n"
	        "the spectrum as it is learned.\n\n"
	        "  --dim N       row length (default 64)\n"
	        "  --rank K      components reported (default 8)\n"
	        "  --signal R    rank of the synthetic signal (default 6)\n"
	        "  --rows N      rows to stream (default 200000)\n"
	        "  --push N      rows per update call (default 100)\n"
	        "  --every N     print a report every N rows (default 50000)\n"
	        "  --noise X     noise standard deviation (default 0.05)\n"
	        "  --center      subtract the running mean (PCA)\n"
	        "  --forget L    forgetting factor in (0,1] (default 1)\n"
	        "  --seed S      random seed (default 1)\n"
	        "  --help        this text\n");
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || end == s || !(v >= lo && v <= hi)) {
		fprintf(stderr, "isvd-demo: %s must be a number in [%g, %g], got '%s'\n", name,
		        lo, hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct demo_opts *o)
{
	static const struct option longopts[] = {
		{"dim", required_argument, 0, 'n'},   {"rank", required_argument, 0, 'k'},
		{"signal", required_argument, 0, 's'}, {"rows", required_argument, 0, 'r'},
		{"push", required_argument, 0, 'p'},  {"every", required_argument, 0, 'e'},
		{"noise", required_argument, 0, 'z'}, {"center", no_argument, 0, 'c'},
		{"forget", required_argument, 0, 'f'}, {"seed", required_argument, 0, 'S'},
		{"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
	int c;

	*o = (struct demo_opts){64, 8, 6, 200000, 100, 50000, 0, 1.0, 0.05, 1};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'n': bad = parse_size(PROG, "--dim", optarg, 1, ISVD_MAX_DIM, &o->dim); break;
		case 'k': bad = parse_size(PROG, "--rank", optarg, 1, ISVD_MAX_RANK, &o->rank); break;
		case 's': bad = parse_size(PROG, "--signal", optarg, 1, ISVD_MAX_DIM, &o->signal); break;
		case 'r': bad = parse_size(PROG, "--rows", optarg, 1, 1000000000000ull, &o->rows); break;
		case 'p': bad = parse_size(PROG, "--push", optarg, 1, 1000000000ull, &o->push); break;
		case 'e': bad = parse_size(PROG, "--every", optarg, 1, 1000000000000ull, &o->every); break;
		case 'z': bad = parse_double("--noise", optarg, 0, 1e6, &o->noise); break;
		case 'c': o->center = 1; break;
		case 'f': bad = parse_double("--forget", optarg, 1e-12, 1, &o->forget); break;
		case 'S': bad = parse_u64(PROG, "--seed", optarg, 0, UINT64_MAX, &o->seed); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (bad)
			return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "isvd-demo: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void report(const struct isvd_model *m, double rate)
{
	struct isvd_info info;
	double sigma[16];
	size_t show;

	if (isvd_model_info(m, &info) != ISVD_OK)
		return;
	show = info.rank < 16 ? info.rank : 16;
	if (show > 0) {
		double *s = malloc(info.rank * sizeof *s);
		if (!s)
			return;
		isvd_model_factors(m, s, NULL, NULL, NULL);
		memcpy(sigma, s, show * sizeof *s);
		free(s);
	}
	printf("rows %llu  (%.0f rows/s)  rank %zu  explained %.2f%%  cond %.3g  "
	       "orthogonality %.1e\n",
	       (unsigned long long)info.rows_seen, rate, info.rank,
	       100 * info.explained_energy_ratio, info.condition_number,
	       info.orthogonality_error);
	for (size_t i = 0; i < show; i++) {
		const int bar = (int)lround(40 * sigma[i] / sigma[0]);
		printf("  σ%-2zu %12.5g  %.*s\n", i + 1, sigma[i], bar,
		       "########################################");
	}
	fflush(stdout);
}

/* Largest |σ_i − σ̂_i| / σ_1 against LAPACK's SVD of the (centred) rows. */
static void check_exact(const struct isvd_model *m, const double *all, size_t rows, size_t n,
                        int center)
{
	size_t kr, mn = rows < n ? rows : n;
	double *a = malloc(rows * n * sizeof *a), *s = malloc(mn * sizeof *s);
	double *mine = malloc(n * sizeof *mine), *mean = calloc(n, sizeof *mean);

	if (!a || !s || !mine || !mean)
		goto out;
	if (center) {
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < n; j++)
				mean[j] += all[i * n + j] / (double)rows;
	}
	for (size_t i = 0; i < rows * n; i++)
		a[i] = all[i] - mean[i % n];
	/* Row-major rows × n is column-major n × rows: same singular values. */
	if (LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n, (lapack_int)rows, a,
	                   (lapack_int)n, s, NULL, 1, NULL, 1) != 0) {
		printf("exact check: LAPACK dgesdd failed\n");
		goto out;
	}
	isvd_model_factors(m, mine, NULL, NULL, &kr);
	double err = 0;
	for (size_t i = 0; i < kr; i++)
		err = fmax(err, fabs(mine[i] - s[i]) / s[0]);
	printf("against LAPACK's SVD of all %zu rows: max |σ_i − σ̂_i|/σ_1 = %.2e over the top %zu\n",
	       rows, err, kr);
out:
	free(a);
	free(s);
	free(mine);
	free(mean);
}

int main(int argc, char **argv)
{
	struct demo_opts o;
	struct isvd_options mo;
	struct isvd_model *m = NULL;
	double *basis = NULL, *push = NULL, *all = NULL;
	int err, rc = 1;

	if (parse_args(argc, argv, &o))
		return 2;
	bench_blas_single_thread();   /* the engine runs its own threads */
	struct rng g = {o.seed, 0, 0.0};
	isvd_options_default(&mo);
	mo.dim = o.dim;
	mo.rank = o.rank;
	mo.center = o.center;
	mo.forget = o.forget;
	err = isvd_model_create(&mo, &m);
	if (err) {
		fprintf(stderr, "isvd-demo: cannot create the model: %s\n", isvd_strerror(err));
		return 1;
	}
	basis = malloc(o.signal * o.dim * sizeof *basis);
	push = malloc(o.push * o.dim * sizeof *push);
	/* Keep every row for the final exact check only when that is small. */
	if (o.rows * o.dim <= (size_t)20 << 20 && o.forget == 1)
		all = malloc(o.rows * o.dim * sizeof *all);
	if (!basis || !push) {
		fprintf(stderr, "isvd-demo: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < o.signal * o.dim; i++)
		basis[i] = rng_normal(&g) / sqrt((double)o.dim);

	printf("isvd-demo: n=%zu k=%zu signal rank %zu noise %g center %s forget %g\n", o.dim,
	       o.rank, o.signal, o.noise, o.center ? "on" : "off", o.forget);
	double t_engine = 0;
	size_t done = 0, next = o.every;
	while (done < o.rows) {
		const size_t b = o.rows - done < o.push ? o.rows - done : o.push;
		for (size_t i = 0; i < b; i++) {
			double *x = push + i * o.dim;
			for (size_t j = 0; j < o.dim; j++)
				x[j] = 1.0 + o.noise * rng_normal(&g);
			for (size_t t = 0; t < o.signal; t++) {
				const double c = 10.0 * pow(0.6, (double)t) * rng_normal(&g);
				for (size_t j = 0; j < o.dim; j++)
					x[j] += c * basis[t * o.dim + j];
			}
		}
		if (all)
			memcpy(all + done * o.dim, push, b * o.dim * sizeof *push);
		const double t0 = now();
		err = isvd_model_update(m, push, b, o.dim);
		t_engine += now() - t0;
		if (err) {
			fprintf(stderr, "isvd-demo: update failed after %zu rows: %s\n", done,
			        isvd_strerror(err));
			goto out;
		}
		done += b;
		if (done >= next || done == o.rows) {
			report(m, (double)done / t_engine);
			next += o.every;
		}
	}
	if (all)
		check_exact(m, all, o.rows, o.dim, o.center);
	rc = 0;
out:
	free(all);
	free(push);
	free(basis);
	isvd_model_destroy(m);
	return rc;
}
