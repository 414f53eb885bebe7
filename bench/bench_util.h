/*
 * bench_util.h — what the bench programs (isvd-bench, isvd-demo) share:
 * a seeded normal generator, so their synthetic rows are reproducible,
 * strict parsing of integer options with messages that name the program
 * and the option, and what they say about the BLAS they ran on.
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

/* Turns the BLAS's own threads off (OpenBLAS: openblas_set_num_threads(1);
 * a no-op for other CBLAS libraries): the engine splits its n-sized
 * products over threads of its own (isvd_options.threads), and OpenBLAS's
 * threads slow the small calls of a fold.  Call before creating models. */
void bench_blas_single_thread(void);
/* The BLAS kernel that runs ("Haswell", "SkylakeX", … from OpenBLAS's
 * openblas_get_corename(); "not OpenBLAS" otherwise) and its thread count
 * (0 when unknown).  Static text; never NULL. */
const char *bench_blas_core(void);
int bench_blas_threads(void);

#endif
