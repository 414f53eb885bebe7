/*
 * bench_util.h — what the bench programs (isvd-bench, isvd-demo) share:
 * a seeded normal generator, so their synthetic rows are reproducible, and
 * strict parsing of integer options with messages that name the program
 * and the option.
 */
#ifndef ISVD_BENCH_UTIL_H
#define ISVD_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 state plus the spare value of the last Box–Muller pair.
 * Initialise as {seed, 0, 0.0}. */
struct rng {
	uint64_t state;
	int has_spare;
	double spare;
};

/* Uniform in (0, 1]. */
double rng_uniform(struct rng *r);
/* Standard normal by Box–Muller; the second value of each pair is kept. */
double rng_normal(struct rng *r);

/* Parses s as a decimal integer in [min, max] into *out.  On failure prints
 * "PROG: OPT ..." to stderr and returns -1; *out is then untouched. */
int parse_u64(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
              uint64_t *out);
int parse_size(const char *prog, const char *opt, const char *s, uint64_t min, uint64_t max,
               size_t *out);

#endif
