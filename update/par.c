/*
 * par.c — the engine's fork–join pool: the n-sized products of a fold,
 * split by rows over a fixed number of threads.
 *
 * Why the engine runs its own threads: the BLAS is called single-threaded
 * (model.c turns OpenBLAS's own threads off), because its threads slow the
 * small calls of a fold (a 125×125 dgesdd takes twice as long on two
 * OpenBLAS threads as on one) while gaining little on the thin n×(r+b)
 * products.  Those products are separable by rows of V and Y: each part
 * computes its rows' share (a partial VᵀY or YᵀY, or its rows of Y − VC
 * and of the rotated basis) and the caller adds the partial sums in part
 * order, so the result is bit-identical for a given thread count.
 *
 * DESIGN
 * - upd_pool_run(p, fn, arg) runs fn(arg, part) for part = 0 … size−1,
 *   part 0 on the calling thread, the others on the pool's workers, and
 *   returns when all have finished.  One job at a time; the caller is the
 *   model's one updating thread (a model is not thread-safe anyway).
 * - A job is published by bumping `generation`, and finished parts count
 *   down `pending`.  Waiting threads spin on those for up to SPIN_NS (or
 *   the pool's own spin time), then sleep on condition variables: a
 *   fold's jobs come close together, and a sleeping thread took ~20 µs to
 *   wake (a VM's idle CPU).  The scoring pool (monitor.c), whose job comes
 *   once a block, spins briefly: its worker's spin would take the core
 *   the daemon's other threads run on.
 * - No allocation after creation; a pool of size 1 has no workers and runs
 *   fn inline.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "par.h"

/* How long a thread spins on a flag before it sleeps on the condition
 * variable: the jobs of one fold come a few hundred microseconds apart,
 * and waking a sleeping thread cost ~20 µs of the ~100 µs a part takes at
 * (1000, 50) on the reference machine (a virtual one, where an idle CPU
 * wakes slowly).  Between folds the workers sleep. */
#define SPIN_NS 200000

struct upd_pool {
	size_t size;              /* parts per job, workers = size − 1 */
	long long spin_ns;        /* how long a waiting thread spins first */
	pthread_t *workers;
	size_t started;           /* workers actually running (for teardown) */
	pthread_mutex_t mu;
	pthread_cond_t go;        /* a new generation or stop */
	pthread_cond_t done;      /* pending reached 0 */
	/* INVARIANT: pending ≤ size − 1, > 0 only while upd_pool_run waits;
	 * fn and arg are written before generation is bumped (release) and
	 * read after it was seen to change (acquire); stop only in destroy.
	 * Sleepers wait under mu, so every bump and the last decrement of
	 * pending happen with mu held as well. */
	atomic_ulong generation;
	atomic_size_t pending;
	atomic_int stop;
	void (*fn)(void *arg, size_t part);
	void *arg;
};

struct worker_arg {
	struct upd_pool *pool;
	size_t part;
};

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Spins until *flag differs from `from` (1), or gives up after spin_ns (0). */
static int spin_ulong(atomic_ulong *flag, unsigned long from, atomic_int *stop, long long spin_ns)
{
	const long long until = now_ns() + spin_ns;
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(flag, memory_order_acquire) != from ||
		    atomic_load_explicit(stop, memory_order_relaxed))
			return 1;
		if ((i & 255) == 0 && now_ns() > until)
			return 0;
	}
}

static int spin_zero(atomic_size_t *count, long long spin_ns)
{
	const long long until = now_ns() + spin_ns;
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(count, memory_order_acquire) == 0)
			return 1;
		if ((i & 255) == 0 && now_ns() > until)
			return 0;
	}
}

static void *worker_main(void *p_)
{
	struct worker_arg *wa = p_;
	struct upd_pool *p = wa->pool;
	const size_t part = wa->part;
	unsigned long seen = 0;

	free(wa);
	for (;;) {
		if (!spin_ulong(&p->generation, seen, &p->stop, p->spin_ns)) {
			pthread_mutex_lock(&p->mu);
			while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen)
				pthread_cond_wait(&p->go, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load_explicit(&p->generation, memory_order_acquire);
		p->fn(p->arg, part);
		if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->mu);
		}
	}
	return NULL;
}

int upd_pool_create(size_t size, long long spin_ns, struct upd_pool **out)
{
	struct upd_pool *p;

	if (size < 1)
		size = 1;
	p = calloc(1, sizeof *p);
	if (!p)
		return -1;
	p->size = size;
	p->spin_ns = spin_ns < 0 ? SPIN_NS : spin_ns;
	if (size == 1) {
		*out = p;
		return 0;
	}
	p->workers = calloc(size - 1, sizeof *p->workers);
	if (!p->workers) {
		free(p);
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	atomic_init(&p->generation, 0);
	atomic_init(&p->pending, 0);
	atomic_init(&p->stop, 0);
	for (size_t i = 0; i + 1 < size; i++) {
		struct worker_arg *wa = malloc(sizeof *wa);
		if (wa) {
			wa->pool = p;
			wa->part = i + 1;
		}
		if (!wa || pthread_create(&p->workers[i], NULL, worker_main, wa) != 0) {
			free(wa);
			upd_pool_destroy(p);
			return -1;
		}
		p->started++;
	}
	*out = p;
	return 0;
}

void upd_pool_destroy(struct upd_pool *p)
{
	if (!p)
		return;
	if (p->size > 1) {
		pthread_mutex_lock(&p->mu);
		atomic_store(&p->stop, 1);
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
		for (size_t i = 0; i < p->started; i++)
			pthread_join(p->workers[i], NULL);
		pthread_cond_destroy(&p->go);
		pthread_cond_destroy(&p->done);
		pthread_mutex_destroy(&p->mu);
	}
	free(p->workers);
	free(p);
}

size_t upd_pool_size(const struct upd_pool *p)
{
	return p ? p->size : 1;
}

void upd_pool_run(struct upd_pool *p, void (*fn)(void *arg, size_t part), void *arg)
{
	if (!p || p->size == 1) {
		fn(arg, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	atomic_store_explicit(&p->pending, p->size - 1, memory_order_relaxed);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	fn(arg, 0);
	if (!spin_zero(&p->pending, p->spin_ns)) {
		pthread_mutex_lock(&p->mu);
		while (atomic_load(&p->pending) > 0)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

void upd_pool_range(size_t n, size_t parts, size_t part, size_t *lo, size_t *hi)
{
	/* Boundaries on multiples of 8 rows (one 64-byte line of doubles). */
	size_t a = n * part / parts, b = n * (part + 1) / parts;

	a = part == 0 ? 0 : (a + 7) / 8 * 8;
	b = part + 1 == parts ? n : (b + 7) / 8 * 8;
	*lo = a < n ? a : n;
	*hi = b < n ? b : n;
	if (*hi < *lo)
		*hi = *lo;
}
