/*
 * test_dedup.c — the duplicate table (daemon/dedup.c): the ring and its
 * wrap-around, least-recently-used eviction at max_clients, the "older
 * than everything remembered" rule, and the checkpoint encoding's round
 * trip and its refusal of truncated or corrupt bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dedup.h"

static void test_empty_and_unknown(void **state)
{
	struct dup_table t;
	uint64_t seq = 7;

	(void)state;
	assert_int_equal(dup_init(&t, 4), 0);
	assert_false(dup_seen(&t, "a", 1, &seq));
	assert_int_equal(dup_record(&t, "a", 5, 50), 0);
	assert_true(dup_seen(&t, "a", 5, &seq));
	assert_int_equal(seq, 50);
	assert_false(dup_seen(&t, "a", 6, &seq));      /* above the largest: new */
	assert_false(dup_seen(&t, "b", 5, &seq));      /* another client */
	assert_false(dup_seen(&t, "a", 4, &seq));      /* ring not full: may be resent */
	dup_fini(&t);
	dup_fini(&t);                                  /* a zeroed table is a no-op */
}

static void test_ring_wraps(void **state)
{
	struct dup_table t;
	uint64_t seq = 0;

	(void)state;
	assert_int_equal(dup_init(&t, 2), 0);
	for (uint64_t b = 1; b <= 3 * DUP_RING + 1; b++)
		assert_int_equal(dup_record(&t, "c", b, 10 * b), 0);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.v[0].n, DUP_RING);
	assert_int_equal(t.v[0].head, (3 * DUP_RING + 1) % DUP_RING);
	/* the last DUP_RING batches are remembered with their seq */
	for (uint64_t b = 2 * DUP_RING + 2; b <= 3 * DUP_RING + 1; b++) {
		assert_true(dup_seen(&t, "c", b, &seq));
		assert_int_equal(seq, 10 * b);
	}
	/* older than everything remembered, ring full: applied, seq unknown */
	seq = 99;
	assert_true(dup_seen(&t, "c", 2 * DUP_RING + 1, &seq));
	assert_int_equal(seq, 0);
	assert_true(dup_seen(&t, "c", 1, &seq));
	assert_int_equal(seq, 0);
	dup_fini(&t);
}

static void test_gap_is_not_a_duplicate(void **state)
{
	struct dup_table t;
	uint64_t seq = 0;

	(void)state;
	assert_int_equal(dup_init(&t, 2), 0);
	for (uint64_t b = 1; b <= 2 * DUP_RING; b += 2)   /* odd batches only: a full ring */
		assert_int_equal(dup_record(&t, "c", b, b), 0);
	assert_int_equal(t.v[0].n, DUP_RING);
	/* 4 lies between remembered batches: it was refused or lost, so new */
	assert_false(dup_seen(&t, "c", 4, &seq));
	assert_true(dup_seen(&t, "c", 5, &seq));
	assert_int_equal(seq, 5);
	dup_fini(&t);
}

static void test_lru_eviction(void **state)
{
	struct dup_table t;
	uint64_t seq = 0;

	(void)state;
	assert_int_equal(dup_init(&t, 3), 0);
	assert_int_equal(dup_record(&t, "a", 1, 1), 0);
	assert_int_equal(dup_record(&t, "b", 1, 2), 0);
	assert_int_equal(dup_record(&t, "c", 1, 3), 0);
	assert_int_equal(dup_record(&t, "a", 2, 4), 0);   /* a is now the most recent */
	assert_int_equal(dup_record(&t, "d", 1, 5), 0);   /* b, the least recent, goes */
	assert_int_equal(t.n, 3);
	assert_false(dup_seen(&t, "b", 1, &seq));
	assert_true(dup_seen(&t, "a", 2, &seq));
	assert_true(dup_seen(&t, "c", 1, &seq));
	assert_true(dup_seen(&t, "d", 1, &seq));
	assert_int_equal(dup_record(&t, "e", 1, 6), 0);   /* then c */
	assert_false(dup_seen(&t, "c", 1, &seq));
	assert_true(dup_seen(&t, "a", 1, &seq));
	dup_fini(&t);
}

static void fill(struct dup_table *t)
{
	char name[16];

	assert_int_equal(dup_init(t, 8), 0);
	for (int c = 0; c < 5; c++)
		for (uint64_t b = 1; b <= (uint64_t)(3 + 2 * c); b++) {
			snprintf(name, sizeof name, "client-%d", c);
			assert_int_equal(dup_record(t, name, b, 100 * (uint64_t)c + b), 0);
		}
}

static void assert_same(const struct dup_table *a, const struct dup_table *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->tick, b->tick);
	for (size_t i = 0; i < a->n; i++) {
		const struct dup_client *x = &a->v[i], *y = &b->v[i];
		assert_string_equal(x->name, y->name);
		assert_int_equal(x->last_used, y->last_used);
		assert_int_equal(x->top, y->top);
		assert_int_equal(x->n, y->n);
		assert_int_equal(x->head, y->head);
		assert_memory_equal(x->batch, y->batch, sizeof x->batch);
		assert_memory_equal(x->seq, y->seq, sizeof x->seq);
	}
}

static void test_round_trip(void **state)
{
	struct dup_table t, u;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t len = 0, len2 = 0;
	char why[128];

	(void)state;
	fill(&t);
	assert_int_equal(dup_encode(&t, &buf, &len), 0);
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), 0);
	assert_same(&t, &u);
	assert_int_equal(dup_encode(&u, &buf2, &len2), 0);   /* byte-exact */
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	dup_fini(&u);
	free(buf2);

	/* max_clients shrank: the most recently used are kept */
	assert_int_equal(dup_decode(buf, len, 2, &u, why, sizeof why), 0);
	assert_int_equal(u.n, 2);
	for (size_t i = 0; i < u.n; i++)
		assert_true(!strcmp(u.v[i].name, "client-3") || !strcmp(u.v[i].name, "client-4"));
	dup_fini(&u);

	/* an empty table */
	dup_fini(&t);
	assert_int_equal(dup_init(&t, 1), 0);
	free(buf);
	assert_int_equal(dup_encode(&t, &buf, &len), 0);
	assert_int_equal(len, 16);
	assert_int_equal(dup_decode(buf, len, 1, &u, why, sizeof why), 0);
	assert_int_equal(u.n, 0);
	dup_fini(&u);
	dup_fini(&t);
	free(buf);
}

static void test_truncated_and_corrupt(void **state)
{
	struct dup_table t, u;
	uint8_t *buf = NULL;
	size_t len = 0;
	char why[128];

	(void)state;
	fill(&t);
	assert_int_equal(dup_encode(&t, &buf, &len), 0);
	/* every strict prefix is refused, and leaves *out alone */
	for (size_t cut = 0; cut < len; cut++) {
		memset(&u, 0xa5, sizeof u);
		assert_int_equal(dup_decode(buf, cut, 8, &u, why, sizeof why), -1);
		assert_true(strlen(why) > 0);
		assert_int_equal(u.n, (size_t)0xa5a5a5a5a5a5a5a5ull);
	}
	/* trailing bytes */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, buf, len);
	longer[len] = 0;
	assert_int_equal(dup_decode(longer, len + 1, 8, &u, why, sizeof why), -1);
	free(longer);

	const size_t entry = 16;                 /* the first entry's name length */
	uint8_t save[2] = { buf[entry], buf[entry + 1] };
	buf[entry] = buf[entry + 1] = 0;         /* an empty name */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	buf[entry + 1] = 1;                      /* 256 bytes: longer than a client may be */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	buf[entry] = save[0];
	buf[entry + 1] = save[1];

	const size_t nl = buf[entry], fixed = entry + 2 + nl;
	buf[fixed + 16] = DUP_RING + 1;          /* n beyond the ring */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	buf[fixed + 16] = 1;
	buf[fixed + 20] = DUP_RING;              /* head beyond the ring */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	buf[fixed + 20] = 0;

	buf[0] = 200;                            /* more entries than the bytes hold */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	buf[0] = 4;                              /* fewer: trailing bytes */
	assert_int_equal(dup_decode(buf, len, 8, &u, why, sizeof why), -1);
	free(buf);
	dup_fini(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_unknown),
		cmocka_unit_test(test_ring_wraps),
		cmocka_unit_test(test_gap_is_not_a_duplicate),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_corrupt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
