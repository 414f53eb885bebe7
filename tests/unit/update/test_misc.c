/*
 * test_misc.c — error texts and the CRC32C.
 *
 *   isvd_strerror: a text of its own for every code (not the fallback,
 *     all distinct), and the fallback "unknown error" for codes outside
 *     the enum;
 *   isvd_crc32c: the standard check value of "123456789" (0xE3069283),
 *     agreement with a bitwise reference on random buffers of every length
 *     up to 300 and every alignment, and pieces giving the same result as
 *     the whole (as the header promises).
 */
#include "internal.h"
#include "isvd_bytes.h"
#include "ref.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void test_strerror(void **state)
{
	(void)state;
	for (int e = 0; e < ISVD_ERR_COUNT_; e++) {
		const char *t = isvd_strerror(e);
		assert_non_null(t);
		assert_true(strlen(t) > 0);
		/* a code without a row in the table would fall back to this */
		if (strcmp(t, "unknown error") == 0)
			fail_msg("code %d has no text of its own", e);
		for (int f = 0; f < e; f++)
			if (strcmp(t, isvd_strerror(f)) == 0)
				fail_msg("codes %d and %d share the text \"%s\"", f, e, t);
	}
	assert_string_equal(isvd_strerror(ISVD_OK), "success");
	assert_string_equal(isvd_strerror(ISVD_ERR_NOMEM), "out of memory");
	const int bad[] = { -1, ISVD_ERR_COUNT_, ISVD_ERR_COUNT_ + 1, 1000, INT_MAX, INT_MIN };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_string_equal(isvd_strerror(bad[i]), "unknown error");
}

/* Bit-at-a-time CRC32C (reflected polynomial 0x82F63B78). */
static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(isvd_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_bitwise(0, (const unsigned char *)"123456789", 9), 0xE3069283u);
	assert_int_equal(isvd_crc32c(0, "", 0), 0);
	/* 32 zero bytes: the iSCSI test vector of RFC 3720. */
	unsigned char z[32] = { 0 };
	assert_int_equal(isvd_crc32c(0, z, 32), 0x8A9136AAu);

	struct ref_rng g;
	ref_rng_seed(&g, 77);
	unsigned char buf[320];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)ref_rng_u64(&g);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 300; len++) {
			assert_int_equal(isvd_crc32c(0, buf + off, len),
			                 crc32c_bitwise(0, buf + off, len));
			assert_int_equal(upd_crc32c_portable(0, buf + off, len),
			                 crc32c_bitwise(0, buf + off, len));
		}
	print_message("isvd_crc32c uses %s\n", upd_crc32c_accelerated() ? "the SSE4.2 instruction"
	                                                                : "the table");
	assert_int_equal(upd_crc32c_portable(0, "123456789", 9), 0xE3069283u);
	/* Pieces: every split point of a 300-byte buffer, and three pieces. */
	uint32_t whole = isvd_crc32c(0, buf, 300);
	for (size_t cut = 0; cut <= 300; cut++) {
		uint32_t c = isvd_crc32c(0, buf, cut);
		assert_int_equal(isvd_crc32c(c, buf + cut, 300 - cut), whole);
	}
	for (size_t a = 0; a <= 300; a += 7)
		for (size_t b = a; b <= 300; b += 13) {
			uint32_t c = isvd_crc32c(0, buf, a);
			c = isvd_crc32c(c, buf + a, b - a);
			assert_int_equal(isvd_crc32c(c, buf + b, 300 - b), whole);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_crc32c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
