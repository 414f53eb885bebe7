/*
 * par.h — the engine's fork–join pool (par.c): runs one function on a fixed
 * number of parts, part 0 on the caller.  Internal to update/.
 */
#ifndef ISVD_UPDATE_PAR_H
#define ISVD_UPDATE_PAR_H

#include <stddef.h>

struct upd_pool;

/* Creates a pool that runs `size` parts per job (size − 1 worker threads;
 * size 0 is taken as 1); a waiting thread spins spin_ns before it sleeps
 * (negative: the fold's default, par.c's SPIN_NS).  Returns 0, or −1 when memory or a thread could
 * not be had (nothing is left running then).  The caller owns *out. */
int upd_pool_create(size_t size, long long spin_ns, struct upd_pool **out);
/* Stops and joins the workers and frees the pool; destroy(NULL) is a no-op. */
void upd_pool_destroy(struct upd_pool *p);
/* Parts per job (1 for NULL). */
size_t upd_pool_size(const struct upd_pool *p);
/* Runs fn(arg, part) for every part, concurrently, and returns when all
 * have returned.  Allocates nothing.  Not re-entrant: one caller at a time. */
void upd_pool_run(struct upd_pool *p, void (*fn)(void *arg, size_t part), void *arg);
/* The rows [*lo, *hi) of n that part `part` of `parts` owns: contiguous,
 * in order, covering 0 … n, inner boundaries on multiples of 8. */
void upd_pool_range(size_t n, size_t parts, size_t part, size_t *lo, size_t *hi);

#endif
