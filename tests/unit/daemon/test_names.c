/*
 * test_names.c — storage.dir's file names (daemon/wal.c, daemon/ckpt.c):
 * what the writers name round-trips through the one parser, and every
 * malformed name is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ckpt.h"
#include "wal.h"

static void test_round_trip(void **state)
{
	static const uint64_t vals[] = { 0, 1, 42, 1000000007ull, UINT64_MAX - 1, UINT64_MAX };
	char name[64];
	uint64_t a, b;

	(void)state;
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		wal_segment_name(name, vals[i]);
		assert_int_equal(strlen(name), strlen(WAL_NAME_PREFIX) + WAL_NAME_DIGITS + strlen(WAL_NAME_SUFFIX));
		assert_true(wal_parse_name(name, &a));
		assert_int_equal(a, vals[i]);
		assert_false(ckpt_parse_name(name, &a, &b));
		for (size_t j = 0; j < sizeof vals / sizeof vals[0]; j++) {
			ckpt_name(name, vals[i], vals[j]);
			assert_true(ckpt_parse_name(name, &a, &b));
			assert_int_equal(a, vals[i]);
			assert_int_equal(b, vals[j]);
			assert_false(wal_parse_name(name, &a));
		}
	}
	wal_segment_name(name, 7);
	assert_string_equal(name, "wal-00000000000000000007.log");
	ckpt_name(name, 12, 3);
	assert_string_equal(name, "checkpoint-00000000000000000012-00000000000000000003.isvdc");
}

static void test_malformed_segments(void **state)
{
	static const char *const bad[] = {
		"", "wal-", "wal-.log", ".log", "wal", "LOCK", "checkpoint.tmp",
		"wal-0000000000000000001.log",        /* 19 digits */
		"wal-000000000000000000001.log",      /* 21 digits */
		"wal-0000000000000000000a.log",       /* not a digit */
		"wal-000000000000000000-1.log",
		"wal-+0000000000000000001.log",
		"wal- 0000000000000000001.log",
		"wal-00000000000000000001.lo",
		"wal-00000000000000000001.logx",
		"wal-00000000000000000001.LOG",
		"WAL-00000000000000000001.log",
		"xal-00000000000000000001.log",
		"wal_00000000000000000001.log",
		"wal-00000000000000000001.log.corrupt",
		"wal-00000000000000000001_log",
		"wal-18446744073709551616.log",       /* UINT64_MAX + 1 */
		"wal-99999999999999999999.log",
	};
	uint64_t v = 123;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (wal_parse_name(bad[i], &v))
			fail_msg("accepted '%s'", bad[i]);
	}
	assert_true(wal_parse_name("wal-18446744073709551615.log", &v));
	assert_int_equal(v, UINT64_MAX);
}

static void test_malformed_checkpoints(void **state)
{
	static const char *const bad[] = {
		"", "checkpoint-", "checkpoint-.isvdc", "checkpoint.tmp",
		"checkpoint-00000000000000000001.isvdc",                         /* one number */
		"checkpoint-00000000000000000001-0000000000000000001.isvdc",     /* 19 digits */
		"checkpoint-0000000000000000001-00000000000000000001.isvdc",
		"checkpoint-00000000000000000001-000000000000000000001.isvdc",   /* 21 digits */
		"checkpoint-00000000000000000001_00000000000000000001.isvdc",    /* separator */
		"checkpoint-00000000000000000001000000000000000000001.isvdc",
		"checkpoint-0000000000000000000x-00000000000000000001.isvdc",
		"checkpoint-00000000000000000001-0000000000000000000x.isvdc",
		"checkpoint-00000000000000000001-00000000000000000001.isvd",
		"checkpoint-00000000000000000001-00000000000000000001.isvdcc",
		"checkpoint-00000000000000000001-00000000000000000001.isvdc.corrupt",
		"Checkpoint-00000000000000000001-00000000000000000001.isvdc",
		"checkpoint_00000000000000000001-00000000000000000001.isvdc",
		"checkpoint-18446744073709551616-00000000000000000001.isvdc",    /* overflow */
		"checkpoint-00000000000000000001-99999999999999999999.isvdc",
		"checkpoint-00000000000000000001-00000000000000000001-00000000000000000001.isvdc",
		"wal-00000000000000000001.log",
	};
	uint64_t a = 1, b = 2;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (ckpt_parse_name(bad[i], &a, &b))
			fail_msg("accepted '%s'", bad[i]);
	}
	/* the generic parser: no fields is refused */
	assert_false(wal_parse_numbered_name("wal-.log", WAL_NAME_PREFIX, WAL_NAME_SUFFIX, 0, &a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_malformed_segments),
		cmocka_unit_test(test_malformed_checkpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
