/*
 * loop.h — a small event loop over zmq_poll(): pollables (ZeroMQ sockets
 * and file descriptors) and timers, each with a callback.  isvdd's loop
 * thread (server.c) is one of these; Redis's ae.c has the same shape.
 *
 *   loop_turn(): wait in zmq_poll() until a pollable is readable or the
 *   nearest timer is due (at most max_wait_ms) ──► readable pollables' callbacks,
 *   in registration order ──► due timers' callbacks, earliest first
 *
 * There is one table of timers: the poll timeout is computed from it
 * (loop_timeout()), so what is due and how long the loop sleeps cannot
 * disagree.  A timer is periodic (re-armed at now + period when it fires)
 * or one-shot (period 0: stopped when it fires), and is created stopped.
 *
 * Callbacks may register, arm, stop or delete pollables and timers, their
 * own included, and may call loop_turn() again (e.g. a long ingest burst
 * serves everything else between two blocks): a pollable whose callback is
 * running is left out of the nested turn, so callbacks never re-enter
 * themselves.  Single-threaded.
 *
 * INVARIANTS
 *   An id is an index into its table and stays valid until deleted; an armed
 *   timer is in use and has a callback; a running pollable (busy) is in use.
 */
#ifndef ISVDD_LOOP_H
#define ISVDD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define LOOP_MAX_IO     8
#define LOOP_MAX_TIMERS 16

struct loop;

typedef void loop_io_fn(void *ctx);
typedef void loop_timer_fn(void *ctx, uint64_t now_ms);

/* A loop whose zmq_poll() never waits longer than max_wait_ms (so that a
 * signal flag is seen promptly).  0 and *out, or -1 when out of memory. */
int loop_create(uint64_t max_wait_ms, struct loop **out);
/* Frees the loop (not what was registered).  loop_destroy(NULL) is a no-op. */
void loop_destroy(struct loop *l);

/* Calls fn(ctx) whenever socket (a ZeroMQ socket), or fd when socket is
 * NULL, polls readable.  Returns the pollable's id, or -1 when the table
 * (LOOP_MAX_IO) is full. */
int loop_add_io(struct loop *l, void *socket, int fd, loop_io_fn *fn, void *ctx);
void loop_del_io(struct loop *l, int id);

/* A stopped timer that calls fn(ctx, now) when due; periodic when
 * period_ms > 0.  Returns its id, or -1 when the table is full. */
int loop_add_timer(struct loop *l, uint64_t period_ms, loop_timer_fn *fn, void *ctx);
void loop_del_timer(struct loop *l, int id);
/* Arms (or re-arms) timer id to fire at when_ms. */
void loop_timer_at(struct loop *l, int id, uint64_t when_ms);
/* Disarms timer id; it stays registered. */
void loop_timer_stop(struct loop *l, int id);
bool loop_timer_armed(const struct loop *l, int id);

/* Milliseconds until the nearest armed timer is due at now_ms (0 when one
 * is overdue), at most max_wait_ms. */
long loop_timeout(const struct loop *l, uint64_t now_ms);

/* Fires every timer due at now_ms, earliest first (ties: lowest id), each
 * at most once per call. */
void loop_run_timers(struct loop *l, uint64_t now_ms);

/* One turn: polls for at most wait_ms (< 0: loop_timeout() of now), calls
 * the callbacks of the readable pollables, then runs the due timers.
 * Returns 0 (a signal interrupting the poll included), or -1 when
 * zmq_poll() fails otherwise (errno set). */
int loop_turn(struct loop *l, long wait_ms);

/* Monotonic milliseconds: the loop's clock, which every timer uses (and the
 * daemon's other intervals: the log's rate limit, uptime). */
uint64_t loop_now_ms(void);
/* The same clock in nanoseconds (durations for the metrics). */
uint64_t loop_now_ns(void);
/* Unix time in seconds (log lines, snapshot timestamps). */
double loop_unix_time(void);

#endif /* ISVDD_LOOP_H */
