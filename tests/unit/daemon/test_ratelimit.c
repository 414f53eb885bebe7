/*
 * test_ratelimit.c — the token bucket and the pushers' table
 * (daemon/ratelimit.c), on a clock the test moves: the rate over a long
 * run, the burst, retry_after_ms being exactly the wait that makes the
 * resend pass, a push larger than the burst, a clock going backwards; the
 * table's bound (a full bucket is forgotten, an indebted one is not, and
 * newcomers then share "*"), the counters, and counters-only mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit.h"

static void test_bucket_rate_and_burst(void **state)
{
	struct rl_bucket b;
	uint64_t wait = 0, passed = 0;

	(void)state;
	rl_bucket_init(&b, 100, 1000);
	/* the burst passes at once, the next row does not */
	assert_true(rl_bucket_take(&b, 1000, 100, 100, 1000, &wait));
	assert_false(rl_bucket_take(&b, 1000, 100, 10, 1000, &wait));
	assert_int_equal(wait, 10);                      /* 10 rows at 1000 rows/s */
	assert_false(rl_bucket_take(&b, 1000, 100, 10, 1009, &wait));
	assert_int_equal(wait, 1);
	assert_true(rl_bucket_take(&b, 1000, 100, 10, 1010, &wait));
	/* pushing 7 rows every ms for 10 s: 1000 rows/s pass, within one push */
	for (uint64_t t = 1010; t < 11010; t++)
		if (rl_bucket_take(&b, 1000, 100, 7, t, &wait))
			passed += 7;
	assert_true(passed >= 10000 - 7 && passed <= 10000 + 7);
	/* a clock going backwards adds nothing */
	rl_bucket_init(&b, 10, 5000);
	assert_true(rl_bucket_take(&b, 1000, 10, 10, 5000, &wait));
	assert_false(rl_bucket_take(&b, 1000, 10, 1, 4000, &wait));
	assert_false(rl_bucket_full(&b, 1000, 10, 5000));
	assert_true(rl_bucket_full(&b, 1000, 10, 5010));
}

static void test_bucket_push_larger_than_burst(void **state)
{
	struct rl_bucket b;
	uint64_t wait = 0;

	(void)state;
	rl_bucket_init(&b, 10, 0);
	assert_true(rl_bucket_take(&b, 100, 10, 50, 0, &wait));   /* a full bucket lets it through */
	assert_false(rl_bucket_take(&b, 100, 10, 1, 0, &wait));
	assert_int_equal(wait, 410);       /* -40 → +1: 41 rows at 100 rows/s */
	assert_false(rl_bucket_take(&b, 100, 10, 50, 400, &wait));
	assert_int_equal(wait, 100);       /* then a full burst (10 rows) is needed: 0 → 10 */
	assert_true(rl_bucket_take(&b, 100, 10, 50, 500, &wait));
}

static void test_table_bound_and_counters(void **state)
{
	struct rl *r;
	struct isvd_proto_pusher *v;
	size_t n;
	uint64_t wait = 0, lp, lr;

	(void)state;
	assert_int_equal(rl_create(10, 10, 2, &r), 0);
	assert_true(rl_take(r, "a", 10, 0, &wait));
	assert_true(rl_take(r, "b", 10, 0, &wait));
	assert_false(rl_take(r, "a", 5, 0, &wait));       /* both in debt now */
	/* a third pusher finds no slot to take: it shares "*" */
	assert_true(rl_take(r, "c", 10, 0, &wait));
	assert_false(rl_take(r, "d", 1, 0, &wait));       /* "*" is c's, spent */
	assert_int_equal(wait, 100);
	assert_int_equal(rl_snapshot(r, &v, &n), 0);
	assert_int_equal(n, 3);
	/* most rows first, ties by name: "*", "a", "b" (10 rows each) */
	assert_string_equal(v[0].key, RL_OVERFLOW);
	assert_string_equal(v[1].key, "a");
	assert_string_equal(v[2].key, "b");
	assert_int_equal(v[1].pushes, 1);
	assert_int_equal(v[1].rows, 10);
	assert_int_equal(v[1].limited_pushes, 1);
	assert_int_equal(v[1].limited_rows, 5);
	assert_int_equal(v[0].rows, 10);
	assert_int_equal(v[0].limited_rows, 1);
	rl_snapshot_free(v, n);
	rl_totals(r, &lp, &lr);
	assert_int_equal(lp, 2);
	assert_int_equal(lr, 6);
	/* after a second both buckets are full again: "e" takes the least recently seen (b) */
	assert_true(rl_take(r, "a", 1, 900, &wait));
	assert_true(rl_take(r, "e", 10, 2000, &wait));
	assert_int_equal(rl_snapshot(r, &v, &n), 0);
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(v[i].key, "b");
	rl_snapshot_free(v, n);
	/* a name is cut at RL_KEY_MAX bytes; "" is RL_NO_CLIENT */
	rl_destroy(r);
	assert_int_equal(rl_create(0, 0, 4, &r), 0);     /* counters only */
	char longname[400];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	for (int i = 0; i < 100; i++)
		assert_true(rl_take(r, longname, 1000, 0, &wait));
	assert_true(rl_take(r, "", 1, 0, &wait));
	assert_int_equal(rl_snapshot(r, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(strlen(v[0].key), RL_KEY_MAX);
	assert_int_equal(v[0].rows, 100000);
	assert_string_equal(v[1].key, RL_NO_CLIENT);
	rl_snapshot_free(v, n);
	rl_destroy(r);
	rl_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_rate_and_burst),
		cmocka_unit_test(test_bucket_push_larger_than_burst),
		cmocka_unit_test(test_table_bound_and_counters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
