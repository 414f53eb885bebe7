/*
 * loop.c — the event loop (interface and invariants in loop.h).
 *
 * DESIGN
 *   Two fixed tables, scanned linearly: isvdd registers four pollables and
 *   about five timers, so a scan is cheaper than any ordered structure and
 *   allocation-free.  The zmq_pollitem_t array is rebuilt every turn from
 *   the pollables in use and not running, so ids never shift and a nested
 *   turn cannot report the running pollable again.  A timer fires at most
 *   once per loop_run_timers() call (marked with the call's pass number),
 *   so a callback that re-arms its own timer in the past cannot spin.
 */
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include <zmq.h>

struct loop_io {
	bool used, busy;             /* busy: its callback is running */
	void *socket;
	int fd;
	loop_io_fn *fn;
	void *ctx;
};

struct loop_timer {
	bool used, armed;
	uint64_t when, period;       /* period 0: one-shot */
	uint64_t pass;               /* the loop_run_timers() call that last fired it */
	loop_timer_fn *fn;
	void *ctx;
};

struct loop {
	uint64_t max_wait;
	uint64_t pass;               /* loop_run_timers() calls so far */
	struct loop_io io[LOOP_MAX_IO];
	struct loop_timer timer[LOOP_MAX_TIMERS];
};

uint64_t loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double loop_unix_time(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int loop_create(uint64_t max_wait_ms, struct loop **out)
{
	struct loop *l = calloc(1, sizeof *l);

	if (!l)
		return -1;
	l->max_wait = max_wait_ms;
	*out = l;
	return 0;
}

void loop_destroy(struct loop *l)
{
	free(l);
}

int loop_add_io(struct loop *l, void *socket, int fd, loop_io_fn *fn, void *ctx)
{
	assert(fn);
	for (int i = 0; i < LOOP_MAX_IO; i++)
		if (!l->io[i].used) {
			l->io[i] = (struct loop_io){ true, false, socket, fd, fn, ctx };
			return i;
		}
	return -1;
}

void loop_del_io(struct loop *l, int id)
{
	assert(id >= 0 && id < LOOP_MAX_IO && l->io[id].used);
	l->io[id].used = false;
}

int loop_add_timer(struct loop *l, uint64_t period_ms, loop_timer_fn *fn, void *ctx)
{
	assert(fn);
	for (int i = 0; i < LOOP_MAX_TIMERS; i++)
		if (!l->timer[i].used) {
			l->timer[i] = (struct loop_timer){ .used = true, .period = period_ms, .fn = fn, .ctx = ctx };
			return i;
		}
	return -1;
}

static struct loop_timer *timer_of(const struct loop *l, int id)
{
	assert(id >= 0 && id < LOOP_MAX_TIMERS && l->timer[id].used);
	return (struct loop_timer *)&l->timer[id];
}

void loop_del_timer(struct loop *l, int id)
{
	timer_of(l, id)->used = false;
	l->timer[id].armed = false;
}

void loop_timer_at(struct loop *l, int id, uint64_t when_ms)
{
	struct loop_timer *t = timer_of(l, id);

	t->when = when_ms;
	t->armed = true;
}

void loop_timer_stop(struct loop *l, int id)
{
	timer_of(l, id)->armed = false;
}

bool loop_timer_armed(const struct loop *l, int id)
{
	return timer_of(l, id)->armed;
}

long loop_timeout(const struct loop *l, uint64_t now_ms)
{
	uint64_t t = l->max_wait;

	for (int i = 0; i < LOOP_MAX_TIMERS; i++) {
		const struct loop_timer *x = &l->timer[i];
		assert(!x->armed || (x->used && x->fn));
		if (x->armed) {
			const uint64_t d = x->when > now_ms ? x->when - now_ms : 0;
			t = d < t ? d : t;
		}
	}
	return (long)t;
}

/* The earliest armed timer due at now and not yet fired in this pass, or -1. */
static int next_due(const struct loop *l, uint64_t now_ms, uint64_t pass)
{
	int best = -1;

	for (int i = 0; i < LOOP_MAX_TIMERS; i++) {
		const struct loop_timer *x = &l->timer[i];
		if (x->armed && x->when <= now_ms && x->pass != pass &&
		    (best < 0 || x->when < l->timer[best].when))
			best = i;
	}
	return best;
}

void loop_run_timers(struct loop *l, uint64_t now_ms)
{
	const uint64_t pass = ++l->pass;
	int i;

	while ((i = next_due(l, now_ms, pass)) >= 0) {
		struct loop_timer *x = &l->timer[i];
		assert(x->used && x->fn);
		x->pass = pass;
		if (x->period)
			x->when = now_ms + x->period;
		else
			x->armed = false;
		x->fn(x->ctx, now_ms);   /* may change the tables, or run a nested pass */
	}
}

int loop_turn(struct loop *l, long wait_ms)
{
	zmq_pollitem_t items[LOOP_MAX_IO];
	int ids[LOOP_MAX_IO], n = 0;

	if (wait_ms < 0)
		wait_ms = loop_timeout(l, loop_now_ms());
	for (int i = 0; i < LOOP_MAX_IO; i++) {
		const struct loop_io *x = &l->io[i];
		if (!x->used || x->busy)
			continue;
		items[n] = (zmq_pollitem_t){ x->socket, x->socket ? 0 : x->fd, ZMQ_POLLIN, 0 };
		ids[n++] = i;
	}
	if (zmq_poll(items, n, wait_ms) < 0) {
		if (errno == EINTR)
			return 0;
		return -1;
	}
	for (int j = 0; j < n; j++) {
		struct loop_io *x = &l->io[ids[j]];
		if (!(items[j].revents & ZMQ_POLLIN) || !x->used || x->busy)
			continue;   /* deleted or started by an earlier callback */
		x->busy = true;
		x->fn(x->ctx);
		x->busy = false;
	}
	loop_run_timers(l, loop_now_ms());
	return 0;
}
