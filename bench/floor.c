/*
 * floor.c — isvd-floor: the least arithmetic any streaming rank-k update
 * must do per row, timed on this machine.
 *
 * Whatever the method (Brand's update, IncrementalPCA, a sketch), folding a
 * row x into a rank-k basis V (n × k, orthonormal columns) needs at least
 * its coordinates c = Vᵀx and its residual r = x − Vc: two passes over V,
 * 4·n·k flops.  This program times exactly that, with CBLAS dgemm on blocks
 * of rows (the fastest way to do it), and prints µs per row and GFlop/s, so
 * that a throughput target can be checked against what is possible before
 * anything else (orthonormalising the residual, the core decomposition, the
 * rotation) is counted.  It prints numbers and asserts nothing.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: isvd-floor [--dim N] [--rank K] [--rows R]\n\n"
	        "Times the coordinates Vᵀx and residual x − VVᵀx of rows against an n × k\n"
	        "basis (CBLAS dgemm, blocks of 64, 256 and 1024 rows): the least work a\n"
	        "streaming rank-k update does per row.  Prints µs per row and GFlop/s\n"
	        "(4·n·k flops a row).  OPENBLAS_NUM_THREADS sets BLAS's threads.\n\n"
	        "  --dim N    row length n (default 1000)\n"
	        "  --rank K   basis size k (default 50)\n"
	        "  --rows R   rows timed per block size (default 200000)\n"
	        "  --help     this text\n");
}

static int parse(const char *opt, const char *val, long *out)
{
	char *end;
	long v;

	if (!val) {
		fprintf(stderr, "isvd-floor: %s needs a value\n", opt);
		return -1;
	}
	v = strtol(val, &end, 10);
	if (*end || v < 1 || v > 100000000) {
		fprintf(stderr, "isvd-floor: %s must be a positive integer, got '%s'\n", opt, val);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	long n = 1000, k = 50, rows = 200000;
	static const int blocks[] = { 64, 256, 1024 };

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		long *dst = !strcmp(argv[i], "--dim") ? &n : !strcmp(argv[i], "--rank") ? &k
		          : !strcmp(argv[i], "--rows") ? &rows : NULL;
		if (!dst) {
			fprintf(stderr, "isvd-floor: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
		if (parse(argv[i], i + 1 < argc ? argv[i + 1] : NULL, dst))
			return 2;
		i++;
	}
	if (k > n) {
		fprintf(stderr, "isvd-floor: --rank %ld exceeds --dim %ld\n", k, n);
		return 2;
	}
	printf("isvd-floor: coordinates and residual of rows against an n x k basis (4nk flops a row)\n");
	printf("     n     k  block   us/row   GFlop/s\n");
	for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
		const long b = blocks[bi];
		double *X = malloc(sizeof(double) * (size_t)(b * n)), *V = malloc(sizeof(double) * (size_t)(n * k));
		double *C = malloc(sizeof(double) * (size_t)(b * k)), *R = malloc(sizeof(double) * (size_t)(b * n));
		if (!X || !V || !C || !R) {
			fprintf(stderr, "isvd-floor: out of memory\n");
			return 1;
		}
		unsigned s = 1;
		for (long i = 0; i < b * n; i++)
			X[i] = (double)(s = s * 1103515245u + 12345u) / 4294967296.0 - 0.5;
		for (long i = 0; i < n * k; i++)
			V[i] = (double)(s = s * 1103515245u + 12345u) / 4294967296.0 - 0.5;
		const long reps = rows / b > 0 ? rows / b : 1;
		const double t0 = now_s();
		for (long r = 0; r < reps; r++) {
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)k, (int)n, 1.0, X,
			            (int)n, V, (int)k, 0.0, C, (int)k);                     /* C = X V */
			memcpy(R, X, sizeof(double) * (size_t)(b * n));
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)n, (int)k, -1.0, C,
			            (int)k, V, (int)k, 1.0, R, (int)n);                     /* R = X − C Vᵀ */
		}
		const double per_row = (now_s() - t0) / ((double)reps * (double)b);
		printf("%6ld %5ld %6ld %8.2f %9.1f\n", n, k, b, per_row * 1e6, 4.0 * (double)n * (double)k / per_row / 1e9);
		free(X);
		free(V);
		free(C);
		free(R);
	}
	return 0;
}
