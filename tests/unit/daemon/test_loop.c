/*
 * test_loop.c — the event loop (daemon/loop.c): timers fire in order of
 * their due time, one-shot vs periodic, callbacks that delete or re-arm
 * timers (their own included), the poll timeout follows the nearest timer,
 * and pollables (a pipe's descriptor) call back when readable, never
 * re-entering a running callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

struct rec {
	struct loop *l;
	int log[64];
	uint64_t at[64];
	int n;
	int self_id;                 /* for callbacks that act on their own timer */
};

struct tag {
	struct rec *r;
	int v;
};

static void note(void *ctx, uint64_t now)
{
	struct tag *t = ctx;
	assert_true(t->r->n < 64);
	t->r->at[t->r->n] = now;
	t->r->log[t->r->n++] = t->v;
}

static void test_order_and_oneshot(void **state)
{
	struct loop *l;
	struct rec r = { 0 };
	struct tag a = { &r, 1 }, b = { &r, 2 }, c = { &r, 3 };

	(void)state;
	assert_int_equal(loop_create(250, &l), 0);
	int ta = loop_add_timer(l, 0, note, &a);
	int tb = loop_add_timer(l, 0, note, &b);
	int tc = loop_add_timer(l, 0, note, &c);
	assert_true(ta >= 0 && tb >= 0 && tc >= 0);
	assert_false(loop_timer_armed(l, ta));   /* created stopped */
	loop_timer_at(l, ta, 1030);
	loop_timer_at(l, tb, 1010);
	loop_timer_at(l, tc, 1020);
	loop_run_timers(l, 1005);                 /* nothing due */
	assert_int_equal(r.n, 0);
	loop_run_timers(l, 1100);                 /* all due: earliest first */
	assert_int_equal(r.n, 3);
	assert_int_equal(r.log[0], 2);
	assert_int_equal(r.log[1], 3);
	assert_int_equal(r.log[2], 1);
	assert_false(loop_timer_armed(l, ta));    /* one-shot: stopped after firing */
	loop_run_timers(l, 5000);
	assert_int_equal(r.n, 3);
	/* ties: the lower id first */
	loop_timer_at(l, tc, 6000);
	loop_timer_at(l, ta, 6000);
	loop_run_timers(l, 6000);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.log[3], 1);
	assert_int_equal(r.log[4], 3);
	/* a stopped timer does not fire */
	loop_timer_at(l, tb, 7000);
	loop_timer_stop(l, tb);
	loop_run_timers(l, 8000);
	assert_int_equal(r.n, 5);
	loop_destroy(l);
	loop_destroy(NULL);
}

static void test_periodic(void **state)
{
	struct loop *l;
	struct rec r = { 0 };
	struct tag a = { &r, 1 };

	(void)state;
	assert_int_equal(loop_create(250, &l), 0);
	int ta = loop_add_timer(l, 100, note, &a);
	loop_timer_at(l, ta, 100);
	loop_run_timers(l, 100);
	assert_true(loop_timer_armed(l, ta));     /* re-armed at now + period */
	assert_int_equal(loop_timeout(l, 100), 100);
	loop_run_timers(l, 150);
	assert_int_equal(r.n, 1);
	/* late: fires once, then counts its period from now */
	loop_run_timers(l, 450);
	assert_int_equal(r.n, 2);
	assert_int_equal(loop_timeout(l, 450), 100);
	loop_run_timers(l, 549);
	assert_int_equal(r.n, 2);
	loop_run_timers(l, 550);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.at[2], 550);
	loop_destroy(l);
}

static void delete_self(void *ctx, uint64_t now)
{
	struct rec *r = ctx;
	(void)now;
	r->log[r->n++] = 9;
	loop_del_timer(r->l, r->self_id);
}

static void rearm_self_in_the_past(void *ctx, uint64_t now)
{
	struct rec *r = ctx;
	r->log[r->n++] = 8;
	loop_timer_at(r->l, r->self_id, now - 1);   /* due again: not in this pass */
}

static void test_callback_changes_its_timer(void **state)
{
	struct loop *l;
	struct rec r = { 0 };

	(void)state;
	assert_int_equal(loop_create(250, &l), 0);
	r.l = l;
	r.self_id = loop_add_timer(l, 10, delete_self, &r);   /* periodic, deletes itself */
	loop_timer_at(l, r.self_id, 0);
	loop_run_timers(l, 5);
	assert_int_equal(r.n, 1);
	loop_run_timers(l, 100);
	assert_int_equal(r.n, 1);
	assert_int_equal(loop_timeout(l, 100), 250);          /* no timer left */
	/* its slot is free again */
	assert_int_equal(loop_add_timer(l, 0, rearm_self_in_the_past, &r), r.self_id);
	loop_timer_at(l, r.self_id, 200);
	loop_run_timers(l, 200);
	assert_int_equal(r.n, 2);                             /* once per call */
	assert_true(loop_timer_armed(l, r.self_id));
	loop_run_timers(l, 201);
	assert_int_equal(r.n, 3);
	loop_destroy(l);
}

static void test_timeout_follows_nearest(void **state)
{
	struct loop *l;
	struct rec r = { 0 };
	struct tag a = { &r, 1 };

	(void)state;
	assert_int_equal(loop_create(250, &l), 0);
	assert_int_equal(loop_timeout(l, 1000), 250);         /* nothing armed: the cap */
	int t1 = loop_add_timer(l, 0, note, &a), t2 = loop_add_timer(l, 0, note, &a);
	loop_timer_at(l, t1, 1400);
	assert_int_equal(loop_timeout(l, 1000), 250);         /* beyond the cap */
	loop_timer_at(l, t2, 1040);
	assert_int_equal(loop_timeout(l, 1000), 40);
	assert_int_equal(loop_timeout(l, 1100), 0);           /* overdue */
	loop_timer_stop(l, t2);
	assert_int_equal(loop_timeout(l, 1300), 100);
	loop_del_timer(l, t1);
	loop_del_timer(l, t2);
	assert_int_equal(loop_timeout(l, 1300), 250);
	/* the table's size is bounded */
	int ids = 0;
	while (loop_add_timer(l, 0, note, &a) >= 0)
		ids++;
	assert_int_equal(ids, LOOP_MAX_TIMERS);
	loop_destroy(l);
}

struct pipe_ctx {
	struct loop *l;
	int fd, wfd;                 /* the pipe's read and write ends */
	int calls, nested;
};

static void on_readable(void *ctx)
{
	struct pipe_ctx *p = ctx;
	char c;

	p->calls++;
	assert_int_equal(read(p->fd, &c, 1), 1);
	if (c == 'n') {   /* a nested turn must not call us again */
		assert_int_equal(write(p->wfd, "x", 1), 1);
		p->nested++;
		assert_int_equal(loop_turn(p->l, 0), 0);
	}
}

static void test_io(void **state)
{
	struct loop *l;
	struct rec r = { 0 };
	struct tag a = { &r, 1 };
	int fds[2];
	struct pipe_ctx p = { 0 };

	(void)state;
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(loop_create(50, &l), 0);
	p.l = l;
	p.fd = fds[0];
	p.wfd = fds[1];
	int id = loop_add_io(l, NULL, fds[0], on_readable, &p);
	assert_true(id >= 0);
	assert_int_equal(loop_turn(l, 0), 0);                  /* nothing readable */
	assert_int_equal(p.calls, 0);
	assert_int_equal(write(fds[1], "a", 1), 1);
	assert_int_equal(loop_turn(l, -1), 0);
	assert_int_equal(p.calls, 1);
	/* a timer due during the turn runs after the pollables */
	int t = loop_add_timer(l, 0, note, &a);
	loop_timer_at(l, t, loop_now_ms());
	assert_int_equal(loop_turn(l, -1), 0);                 /* no wait: the timer is due */
	assert_int_equal(r.n, 1);
	/* re-entry: the nested turn leaves the running pollable out */
	assert_int_equal(write(fds[1], "n", 1), 1);
	assert_int_equal(loop_turn(l, 0), 0);
	assert_int_equal(p.calls, 2);
	assert_int_equal(p.nested, 1);
	assert_int_equal(loop_turn(l, 0), 0);                  /* the 'x' left behind */
	assert_int_equal(p.calls, 3);
	loop_del_io(l, id);
	assert_int_equal(write(fds[1], "b", 1), 1);
	assert_int_equal(loop_turn(l, 0), 0);
	assert_int_equal(p.calls, 3);
	loop_destroy(l);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_oneshot),
		cmocka_unit_test(test_periodic),
		cmocka_unit_test(test_callback_changes_its_timer),
		cmocka_unit_test(test_timeout_follows_nearest),
		cmocka_unit_test(test_io),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
