/*
 * test_kafka.c — what a shard makes of a Kafka message (daemon/kafka_format.c)
 * and the changelog's image (daemon/kafka_client.c), without a broker:
 * every format's forms are taken, gaps only under model.missing impute
 * and never a whole row of them, rows of another width, non-finite values
 * and malformed messages are refused with a reason; an image round-trips
 * its partition, offset, count and model, is a checkpoint file to the
 * checkpoint's checks, and a damaged one is refused.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ISVD_KAFKA_INTERNAL
#include "isvd_bytes.h"
#include "isvd_ckpt.h"
#include "kafka.h"

#define DIM 3

static struct cfg cfg_for(int format, int missing)
{
	struct cfg c;

	assert_int_equal(cfg_init_defaults(&c), 0);
	c.model.dim = DIM;
	c.kafka.format = format;
	c.model.missing = missing;
	return c;
}

/* Decodes len bytes of msg; returns the rows (-1: refused), the values in out. */
static long decode(int format, int missing, const void *msg, size_t len, double *out)
{
	struct cfg c = cfg_for(format, missing);
	double *rows = NULL;
	size_t n = 0;
	char why[320] = "";
	const int rc = kfk_decode_rows(&c, msg, len, &rows, &n, why, sizeof why);

	if (rc) {
		assert_null(rows);
		assert_true(why[0] != '\0');   /* a refusal always says why */
	} else if (out) {
		memcpy(out, rows, n * DIM * sizeof *rows);
	}
	free(rows);
	cfg_fini(&c);
	return rc ? -1 : (long)n;
}

static long text(int format, int missing, const char *msg, double *out)
{
	return decode(format, missing, msg, strlen(msg), out);
}

static void test_msgpack(void **state)
{
	/* form (a): [[1, 2, 3], [4, 5, 6]]; with nil; form (b): {shape, dtype, data} */
	static const unsigned char rows[] = { 0x92, 0x93, 1, 2, 3, 0x93, 4, 5, 6 };
	static const unsigned char gap[] = { 0x91, 0x93, 1, 0xc0, 3 };
	static const unsigned char all_gaps[] = { 0x91, 0x93, 0xc0, 0xc0, 0xc0 };
	static const unsigned char narrow[] = { 0x91, 0x92, 1, 2 };
	static const unsigned char trailing[] = { 0x91, 0x93, 1, 2, 3, 0x00 };
	unsigned char shaped[64], *p = shaped;
	double x[6];

	(void)state;
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, rows, sizeof rows, x), 2);
	assert_true(x[0] == 1 && x[5] == 6);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, gap, sizeof gap, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_IMPUTE, gap, sizeof gap, x), 1);
	assert_true(isnan(x[1]) && x[2] == 3);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_IMPUTE, all_gaps, sizeof all_gaps, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, narrow, sizeof narrow, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, trailing, sizeof trailing, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, "\xc1", 1, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, "", 0, NULL), -1);

	/* {"shape": [1, 3], "dtype": "f64", "data": bin 24} */
	*p++ = 0x83;
	*p++ = 0xa5; memcpy(p, "shape", 5); p += 5;
	*p++ = 0x92; *p++ = 1; *p++ = 3;
	*p++ = 0xa5; memcpy(p, "dtype", 5); p += 5;
	*p++ = 0xa3; memcpy(p, "f64", 3); p += 3;
	*p++ = 0xa4; memcpy(p, "data", 4); p += 4;
	*p++ = 0xc4; *p++ = 24;
	const double v[3] = { 0.5, -2, 1e100 };
	memcpy(p, v, sizeof v);   /* little-endian hosts: the wire's byte order */
	p += sizeof v;
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_REJECT, shaped, (size_t)(p - shaped), x), 1);
	assert_true(x[0] == 0.5 && x[1] == -2 && x[2] == 1e100);
	const double inf = INFINITY;
	memcpy(p - 8, &inf, 8);
	assert_int_equal(decode(CFG_KAFKA_MSGPACK, CFG_MISSING_IMPUTE, shaped, (size_t)(p - shaped), NULL), -1);
}

static void test_json(void **state)
{
	double x[6];

	(void)state;
	assert_int_equal(text(CFG_KAFKA_JSON, CFG_MISSING_REJECT, "[1, 2.5, -3e2]", x), 1);
	assert_true(x[0] == 1 && x[1] == 2.5 && x[2] == -300);
	assert_int_equal(text(CFG_KAFKA_JSON, CFG_MISSING_REJECT, " [[1,2,3],\n [4,5,6]] ", x), 2);
	assert_true(x[3] == 4);
	assert_int_equal(text(CFG_KAFKA_JSON, CFG_MISSING_REJECT, "[1, null, 3]", NULL), -1);
	assert_int_equal(text(CFG_KAFKA_JSON, CFG_MISSING_IMPUTE, "[[1, null, 3]]", x), 1);
	assert_true(isnan(x[1]));
	assert_int_equal(text(CFG_KAFKA_JSON, CFG_MISSING_IMPUTE, "[null, null, null]", NULL), -1);
	static const char *const bad[] = {
		"[1, 2]", "[[1, 2, 3], [1, 2]]", "[[1, 2, 3], 4]", "[]", "{}", "{\"a\": 1}", "3",
		"[1, \"2\", 3]", "[1, 2, 3", "[1e400, 1, 1]", "[NaN, 1, 1]", "[Infinity, 1, 1]",
		"[1, true, 3]", "[1, 2, 3] [4, 5, 6]", "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (text(CFG_KAFKA_JSON, CFG_MISSING_IMPUTE, bad[i], NULL) != -1)
			fail_msg("json '%s' accepted", bad[i]);
}

static void test_csv(void **state)
{
	double x[6];

	(void)state;
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_REJECT, "1,2,3\n4,5,6\n", x), 2);
	assert_true(x[2] == 3 && x[3] == 4);
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_REJECT, " 1 , 2.5 ,-3e2\r\n\n", x), 1);
	assert_true(x[0] == 1 && x[1] == 2.5 && x[2] == -300);
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_REJECT, "\n1,2,3", NULL), 1);   /* no final newline */
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_REJECT, "1,,3\n", NULL), -1);
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_IMPUTE, "1,,3\n", x), 1);
	assert_true(isnan(x[1]));
	assert_int_equal(text(CFG_KAFKA_CSV, CFG_MISSING_IMPUTE, ",,\n", NULL), -1);
	static const char *const bad[] = {
		"1,2\n", "1,2,3,4\n", "a,b,c\n", "1,2,3\n1,2\n", "", "\n \n", "inf,1,2\n", "1e999,1,2\n",
		"1,2,3x\n", "1;2;3\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (text(CFG_KAFKA_CSV, CFG_MISSING_IMPUTE, bad[i], NULL) != -1)
			fail_msg("csv '%s' accepted", bad[i]);
	assert_int_equal(decode(CFG_KAFKA_CSV, CFG_MISSING_REJECT, "1,2,3\0", 6, NULL), -1);
}

static void test_f64(void **state)
{
	double v[6] = { 1, 2, 3, 4, 5, 6 }, x[6];

	(void)state;
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_REJECT, v, sizeof v, x), 2);
	assert_memory_equal(x, v, sizeof v);
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_REJECT, v, 3 * sizeof(double) + 1, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_REJECT, v, 2 * sizeof(double), NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_REJECT, v, 0, NULL), -1);
	v[4] = NAN;
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_REJECT, v, sizeof v, NULL), -1);
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_IMPUTE, v, sizeof v, NULL), 2);
	v[4] = -INFINITY;
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_IMPUTE, v, sizeof v, NULL), -1);
	v[4] = 1e151;   /* beyond the engine's admissible magnitude */
	assert_int_equal(decode(CFG_KAFKA_F64, CFG_MISSING_IMPUTE, v, sizeof v, NULL), -1);
}

/* A message of more rows than limits.max_rows_per_push is refused. */
static void test_row_limit(void **state)
{
	struct cfg c = cfg_for(CFG_KAFKA_CSV, CFG_MISSING_REJECT);
	double *rows = NULL;
	size_t n = 0;
	char why[320];

	(void)state;
	c.limits.max_rows_per_push = 2;
	assert_int_equal(kfk_decode_rows(&c, "1,2,3\n1,2,3\n", 12, &rows, &n, why, sizeof why), 0);
	free(rows);
	assert_int_equal(kfk_decode_rows(&c, "1,2,3\n1,2,3\n1,2,3\n", 18, &rows, &n, why, sizeof why), -1);
	assert_non_null(strstr(why, "max_rows_per_push"));
	cfg_fini(&c);
}

static void test_image(void **state)
{
	struct isvd_options o;
	struct isvd_model *m, *back;
	struct kfk_image img;
	struct isvd_ckpt_view v;
	const char *why = NULL;
	uint8_t *buf;
	size_t len;
	const double rows[6] = { 1, 2, 3, 4, 5, 7 };

	(void)state;
	isvd_options_default(&o);
	o.dim = DIM;
	o.rank = 2;
	assert_int_equal(isvd_model_create(&o, &m), ISVD_OK);
	assert_int_equal(isvd_model_update(m, rows, 2, DIM), ISVD_OK);
	assert_int_equal(kfk_image_encode(m, 7, 123456789012LL, 5, &buf, &len), ISVD_OK);
	assert_int_equal(kfk_image_parse(buf, len, &img, &why), ISVD_OK);
	assert_int_equal(img.partition, 7);
	assert_true(img.folded == 123456789012LL);
	assert_int_equal(img.undecodable, 5);
	assert_int_equal(img.rows, 2);
	assert_non_null(img.model);
	assert_int_equal(isvd_model_load(img.model, img.model_len, &back), ISVD_OK);
	assert_int_equal(isvd_model_rows_seen(back), 2);
	isvd_model_destroy(back);
	/* a checkpoint file: what `isvd inspect`, `isvd merge` and --seed read */
	assert_int_equal(isvd_ckpt_parse(buf, len, &v, &why), ISVD_OK);
	assert_int_equal(v.seq, 2);
	/* every flipped byte is caught */
	for (size_t i = 0; i < len; i += 7) {
		buf[i] ^= 0x40;
		assert_int_not_equal(kfk_image_parse(buf, len, &img, &why), ISVD_OK);
		assert_non_null(why);
		buf[i] ^= 0x40;
	}
	assert_int_not_equal(kfk_image_parse(buf, len - 1, &img, &why), ISVD_OK);
	free(buf);

	/* nothing folded yet: no model, offset -1 */
	assert_int_equal(kfk_image_encode(NULL, 0, -1, 2, &buf, &len), ISVD_OK);
	assert_int_equal(kfk_image_parse(buf, len, &img, &why), ISVD_OK);
	assert_null(img.model);
	assert_true(img.folded == -1 && img.rows == 0 && img.undecodable == 2);
	free(buf);

	/* a daemon's checkpoint (its client table where the section goes) is not an image */
	uint8_t ck[ISVD_CKPT_OVERHEAD + 32];
	memset(ck, 0, sizeof ck);
	isvd_ckpt_put_header(ck, 0, 0, 0, 32);
	const uint32_t crc = isvd_crc32c(0, ck, sizeof ck - 4);
	for (int i = 0; i < 4; i++)
		ck[sizeof ck - 4 + i] = (uint8_t)(crc >> (8 * i));
	assert_int_equal(kfk_image_parse(ck, sizeof ck, &img, &why), ISVD_ERR_FORMAT);
	isvd_model_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_msgpack),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_f64),
		cmocka_unit_test(test_row_limit),
		cmocka_unit_test(test_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
