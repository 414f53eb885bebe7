/*
 * bench_util.c — the generator and option parsing shared by the bench
 * programs; see bench_util.h.
 */
#include "bench_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double rng_uniform(struct rng *r)
{
	return ((double)(splitmix64(&r->state) >> 11) + 1.0) * 0x1.0p-53;
}

double rng_normal(struct rng *r)
{
	double u1, u2, rad;

	if (r->has_spare) {
		r->has_spare = 0;
		return r->spare;
	}
	u1 = rng_uniform(r);
	u2 = rng_uniform(r);
	rad = sqrt(-2.0 * log(u1));
	r->spare = rad * sin(2.0 * M_PI * u2);
	r->has_spare = 1;
	return rad * cos(2.0 * M_PI * u2);
}

int parse_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
              uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9') {
		fprintf(stderr, "%s: %s needs a non-negative integer, got '%s'\n",
		        prog, opt, s ? s : "");
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0') {
		fprintf(stderr, "%s: %s: '%s' is not an integer in range\n", prog, opt, s);
		return -1;
	}
	if (v < min || v > max) {
		fprintf(stderr, "%s: %s must be in [%llu, %llu], got %llu\n", prog, opt,
		        (unsigned long long)min, (unsigned long long)max, v);
		return -1;
	}
	*out = v;
	return 0;
}

int parse_size(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
               size_t *out)
{
	uint64_t v;

	if (parse_u64(prog, opt, s, min, max, &v) != 0)
		return -1;
	*out = (size_t)v;
	return 0;
}


/* OpenBLAS's extensions, as weak references: NULL with another CBLAS. */
extern void openblas_set_num_threads(int n) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));

void bench_blas_single_thread(void)
{
	if (openblas_set_num_threads)
		openblas_set_num_threads(1);
}

const char *bench_blas_core(void)
{
	const char *c = openblas_get_corename ? openblas_get_corename() : NULL;
	return c ? c : "not OpenBLAS";
}

int bench_blas_threads(void)
{
	return openblas_get_num_threads ? openblas_get_num_threads() : 0;
}
