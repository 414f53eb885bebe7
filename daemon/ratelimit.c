/*
 * ratelimit.c — per-pusher token buckets and counters (interface, the
 * bucket's rule and the table's bound in ratelimit.h).
 *
 * DESIGN
 *   One flat array of max_keys slots plus the shared RL_OVERFLOW slot,
 *   looked up linearly (as the duplicate table is: a few hundred pushers
 *   at most in practice, and a push is far dearer than a scan), behind one
 *   mutex: the loop thread takes tokens, the query thread (`info`) and the
 *   HTTP thread (/metrics) copy the counters out.  Nothing is allocated
 *   after rl_create() but the copies.
 *
 *   Why a newcomer shares a bucket rather than evicting an indebted
 *   pusher: eviction would hand the evicted name a full bucket on its
 *   return, so cycling through more names than there are slots would
 *   escape the limit; sharing one bucket caps what any number of new names
 *   gets at one pusher's rate.  A full bucket is evicted freely: a new one
 *   for the same name would be full too.
 */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_EPS 1e-9   /* tokens that count as there (floating-point refills) */

struct rl_slot {
	char key[RL_KEY_MAX + 1];
	bool used;
	uint64_t seen_ms;            /* last push (least recently seen goes first) */
	struct rl_bucket b;
	uint64_t pushes, rows, limited_pushes, limited_rows;
};

struct rl {
	pthread_mutex_t mu;
	double rate, burst;          /* rate 0: counters only */
	size_t cap;
	struct rl_slot *slot;        /* cap slots */
	struct rl_slot over;         /* RL_OVERFLOW */
	uint64_t limited_pushes, limited_rows;
};

/* ------------------------------------------------------------ the bucket */

static void refill(struct rl_bucket *b, double rate, double burst, uint64_t now_ms)
{
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at_ms = now_ms;
	}
}

void rl_bucket_init(struct rl_bucket *b, double burst, uint64_t now_ms)
{
	b->tokens = burst;
	b->at_ms = now_ms;
}

bool rl_bucket_take(struct rl_bucket *b, double rate, double burst, uint64_t rows, uint64_t now_ms,
                    uint64_t *retry_after_ms)
{
	const double need = (double)rows < burst ? (double)rows : burst;

	refill(b, rate, burst, now_ms);
	if (b->tokens + RL_EPS >= need) {
		b->tokens -= (double)rows;
		return true;
	}
	const double ms = ceil((need - b->tokens) * 1000.0 / rate);
	*retry_after_ms = ms < 1 ? 1 : (uint64_t)ms;
	return false;
}

bool rl_bucket_full(const struct rl_bucket *b, double rate, double burst, uint64_t now_ms)
{
	struct rl_bucket c = *b;

	refill(&c, rate, burst, now_ms);
	return c.tokens + RL_EPS >= burst;
}

/* ------------------------------------------------------------- the table */

int rl_create(uint64_t rows_per_s, uint64_t burst_rows, size_t max_keys, struct rl **out)
{
	struct rl *r = calloc(1, sizeof *r);

	if (!r || !(r->slot = calloc(max_keys ? max_keys : 1, sizeof *r->slot))) {
		free(r);
		return -1;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->rate = (double)rows_per_s;
	r->burst = (double)(burst_rows ? burst_rows : rows_per_s);
	r->cap = max_keys;
	snprintf(r->over.key, sizeof r->over.key, "%s", RL_OVERFLOW);
	*out = r;
	return 0;
}

void rl_destroy(struct rl *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->slot);
	free(r);
}

static bool same(const struct rl_slot *s, const char *key, size_t len)
{
	return s->used && s->key[0] == key[0] && !strncmp(s->key, key, len) && s->key[len] == '\0';
}

/* The slot for key, claiming one as ratelimit.h says (under r->mu). */
static struct rl_slot *find(struct rl *r, const char *key, uint64_t now_ms)
{
	const size_t len = strnlen(key, RL_KEY_MAX);
	struct rl_slot *free_slot = NULL, *lru = NULL;

	for (size_t i = 0; i < r->cap; i++) {
		struct rl_slot *s = &r->slot[i];
		if (same(s, key, len))
			return s;
		if (!s->used) {
			if (!free_slot)
				free_slot = s;
		} else if (r->rate == 0 || rl_bucket_full(&s->b, r->rate, r->burst, now_ms)) {
			if (!lru || s->seen_ms < lru->seen_ms)
				lru = s;
		}
	}
	struct rl_slot *s = free_slot ? free_slot : lru;
	if (!s) {
		if (!r->over.used) {
			r->over.used = true;
			rl_bucket_init(&r->over.b, r->burst, now_ms);
		}
		return &r->over;
	}
	memset(s, 0, sizeof *s);
	memcpy(s->key, key, len);
	s->key[len] = '\0';
	s->used = true;
	rl_bucket_init(&s->b, r->burst, now_ms);
	return s;
}

bool rl_take(struct rl *r, const char *key, uint64_t rows, uint64_t now_ms, uint64_t *retry_after_ms)
{
	bool ok = true;

	pthread_mutex_lock(&r->mu);
	struct rl_slot *s = find(r, key && *key ? key : RL_NO_CLIENT, now_ms);
	s->seen_ms = now_ms;
	if (r->rate > 0)
		ok = rl_bucket_take(&s->b, r->rate, r->burst, rows, now_ms, retry_after_ms);
	if (ok) {
		s->pushes++;
		s->rows += rows;
	} else {
		s->limited_pushes++;
		s->limited_rows += rows;
		r->limited_pushes++;
		r->limited_rows += rows;
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

void rl_totals(struct rl *r, uint64_t *limited_pushes, uint64_t *limited_rows)
{
	pthread_mutex_lock(&r->mu);
	*limited_pushes = r->limited_pushes;
	*limited_rows = r->limited_rows;
	pthread_mutex_unlock(&r->mu);
}

static int by_rows(const void *a, const void *b)
{
	const struct isvd_proto_pusher *x = a, *y = b;

	if (x->rows != y->rows)
		return x->rows < y->rows ? 1 : -1;
	return strcmp(x->key, y->key);
}

int rl_snapshot(struct rl *r, struct isvd_proto_pusher **out, size_t *n)
{
	struct isvd_proto_pusher *v;
	size_t k = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&r->mu);
	if (!(v = calloc(r->cap + 1, sizeof *v))) {
		pthread_mutex_unlock(&r->mu);
		return -1;
	}
	for (size_t i = 0; i <= r->cap; i++) {
		const struct rl_slot *s = i < r->cap ? &r->slot[i] : &r->over;
		if (!s->used)
			continue;
		if (!(v[k].key = strdup(s->key))) {
			pthread_mutex_unlock(&r->mu);
			rl_snapshot_free(v, k);
			return -1;
		}
		v[k].pushes = s->pushes;
		v[k].rows = s->rows;
		v[k].limited_pushes = s->limited_pushes;
		v[k].limited_rows = s->limited_rows;
		k++;
	}
	pthread_mutex_unlock(&r->mu);
	qsort(v, k, sizeof *v, by_rows);
	*out = v;
	*n = k;
	return 0;
}

void rl_snapshot_free(struct isvd_proto_pusher *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].key);
	free(v);
}
