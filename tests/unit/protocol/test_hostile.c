/*
 * test_hostile.c — the decoder against hostile and malformed frames: header
 * counts far beyond the frame (array, map, bin, str, ext), depth bombs,
 * truncation at every length, trailing bytes, wrong types, ragged rows,
 * NaN/Inf, empty matrices, shape/data mismatches, shapes whose product
 * overflows, limits, and allocation failure at every allocation.
 * Every decode goes through helpers.h, which asserts the memory bound
 * (9 × frame + 1 KiB) and that *_fini() leaves nothing allocated.
 */
#include <math.h>

#include "helpers.h"

/* {op: "push", rows: <hex>} — the matrix given as raw bytes. */
static void push_with_rows_hex(struct frame *f, const char *rows_hex)
{
	fr_init(f);
	msgpack_pack_map(&f->pk, 2);
	fr_str(f, "op");
	fr_str(f, "push");
	fr_str(f, "rows");
	fr_hex(f, rows_hex);
}

static void expect_rows_fail(const char *rows_hex, int code, const char *needle)
{
	struct frame f;
	push_with_rows_hex(&f, rows_hex);
	expect_req_fail(fr_data(&f), f.sb.size, NULL, code, needle);
	fr_fini(&f);
}

static void expect_hex_fail(const char *hex, int code, const char *needle)
{
	struct frame f;
	fr_init(&f);
	fr_hex(&f, hex);
	expect_req_fail(fr_data(&f), f.sb.size, NULL, code, needle);
	fr_fini(&f);
}

/* Headers announcing far more than the frame holds: refused before any allocation. */
static void test_oversized_counts(void **state)
{
	(void)state;
	/* as the body itself */
	expect_hex_fail("dd 10 00 00 00 01", ISVD_PROTO_BAD_REQUEST, "announces 268435456 elements");
	expect_hex_fail("df 10 00 00 00 a2 6f 70", ISVD_PROTO_BAD_REQUEST, "announces 268435456 entries");
	expect_hex_fail("df ff ff ff ff", ISVD_PROTO_BAD_REQUEST, "only 0 bytes remain");
	expect_hex_fail("de ff ff", ISVD_PROTO_BAD_REQUEST, "announces 65535 entries");
	/* as the rows */
	expect_rows_fail("dd 10 00 00 00 01 02", ISVD_PROTO_BAD_REQUEST, "announces 268435456 elements");
	expect_rows_fail("91 dd ff ff ff ff 01", ISVD_PROTO_BAD_REQUEST, "announces 4294967295 elements");
	expect_rows_fail("df 10 00 00 00", ISVD_PROTO_BAD_REQUEST, "announces 268435456 entries");
	expect_rows_fail("c6 10 00 00 00 00", ISVD_PROTO_BAD_REQUEST, "a bin at byte 14 announces 268435456 bytes");
	expect_rows_fail("c5 ff ff 00", ISVD_PROTO_BAD_REQUEST, "announces 65535 bytes");
	expect_rows_fail("db 10 00 00 00 61", ISVD_PROTO_BAD_REQUEST, "a string at byte 14 announces");
	expect_rows_fail("da 01 00 61", ISVD_PROTO_BAD_REQUEST, "announces 256 bytes");
	expect_rows_fail("c9 10 00 00 00 01", ISVD_PROTO_BAD_REQUEST, "an ext at byte 14 announces");
	/* inside a shaped matrix: the bin count is checked before the shape is trusted */
	expect_rows_fail("83 a5 73 68 61 70 65 92 cd 40 00 cd 40 00 a5 64 74 79 70 65 a3 66 36 34 "
	                 "a4 64 61 74 61 c6 80 00 00 00", ISVD_PROTO_BAD_REQUEST, "announces 2147483648 bytes");
	/* as the id, and as a key */
	expect_hex_fail("82 a2 6f 70 a4 70 69 6e 67 a2 69 64 dd 7f ff ff ff", ISVD_PROTO_BAD_REQUEST,
	                "announces 2147483647 elements");
	expect_hex_fail("81 db ff ff ff ff", ISVD_PROTO_BAD_REQUEST, "announces 4294967295 bytes");
}

/* Nesting beyond max_depth fails in the first walk, on the stack, quickly. */
static void test_depth_bombs(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct frame f;
	fr_init(&f);
	fr_hex(&f, "82 a2 6f 70 a4 70 69 6e 67 a2 69 64");
	for (int k = 0; k < N; k++)
		fr_hex(&f, "91");
	fr_hex(&f, "c0");
	expect_req_fail(fr_data(&f), f.sb.size, NULL, ISVD_PROTO_BAD_REQUEST, "nests deeper than 16 levels");
	fr_fini(&f);

	/* maps of maps, as an unknown key's value */
	fr_init(&f);
	fr_hex(&f, "82 a2 6f 70 a4 69 6e 66 6f a1 78");
	for (int k = 0; k < N; k++)
		fr_hex(&f, "81 a1 6b");
	fr_hex(&f, "c0");
	expect_req_fail(fr_data(&f), f.sb.size, NULL, ISVD_PROTO_BAD_REQUEST, "nests deeper");
	fr_fini(&f);

	/* exactly at the limit is fine: body (1) + 15 nested arrays in the id */
	fr_init(&f);
	fr_hex(&f, "82 a2 6f 70 a4 70 69 6e 67 a2 69 64");
	for (int k = 0; k < 15; k++)
		fr_hex(&f, "91");
	fr_hex(&f, "c0");
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.id_len, 16);
	req_done(&req);
	/* one more level is not */
	fr_fini(&f);
	fr_init(&f);
	fr_hex(&f, "82 a2 6f 70 a4 70 69 6e 67 a2 69 64");
	for (int k = 0; k < 16; k++)
		fr_hex(&f, "91");
	fr_hex(&f, "c0");
	expect_req_fail(fr_data(&f), f.sb.size, NULL, ISVD_PROTO_BAD_REQUEST, "nests deeper");
	/* and a configured limit applies */
	struct isvd_proto_limits lim = { .max_depth = 40 };
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, &lim, &req, &e), ISVD_PROTO_OK);
	req_done(&req);
	fr_fini(&f);
}

/* Every proper prefix of a valid frame fails cleanly; the whole frame decodes. */
static void truncate_everywhere(const uint8_t *buf, size_t len)
{
	for (size_t n = 0; n < len; n++) {
		struct isvd_proto_request req;
		struct isvd_proto_error e;
		int rc = dec_req(buf, n, NULL, &req, &e);
		if (rc != ISVD_PROTO_BAD_REQUEST)
			fail_msg("prefix of %zu/%zu bytes: %s: %s", n, len, isvd_proto_err_name(rc), e.message);
		req_done(&req);
	}
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	assert_int_equal(dec_req(buf, len, NULL, &req, &e), ISVD_PROTO_OK);
	req_done(&req);
}

static void test_truncation(void **state)
{
	(void)state;
	double v[6] = { 1, 2, 3, 4, 5, 6 };
	uint8_t id[] = { 0x82, 0xa1, 'a', 0xc3, 0xa1, 'b', 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0 };
	struct isvd_proto_request in = { .op = ISVD_OP_PUSH, .id = id, .id_len = sizeof id,
	                                 .rows = { v, 2, 3, 0 }, .client = "cli", .has_batch = true,
	                                 .batch = 1ull << 40 };
	uint8_t *buf;
	size_t len;
	assert_int_equal(isvd_proto_request_encode(&in, &buf, &len), ISVD_PROTO_OK);
	truncate_everywhere(buf, len);
	free(buf);

	/* form (a) with every scalar width */
	struct frame f;
	push_with_rows_hex(&f, "92 95 01 cc ff cd ff ff ce ff ff ff ff cf 00 00 00 01 00 00 00 00 "
	                       "95 ff d0 80 d1 80 00 ca 3f c0 00 00 cb 3f f8 00 00 00 00 00 00");
	truncate_everywhere(fr_data(&f), f.sb.size);
	fr_fini(&f);
}

static void test_trailing_bytes(void **state)
{
	(void)state;
	expect_hex_fail("81 a2 6f 70 a4 70 69 6e 67 00", ISVD_PROTO_BAD_REQUEST,
	                "1 trailing bytes after the body, which ends at byte 9");
	expect_hex_fail("81 a2 6f 70 a4 70 69 6e 67 81 a2 6f 70 a4 70 69 6e 67", ISVD_PROTO_BAD_REQUEST,
	                "9 trailing bytes");
}

static void test_not_msgpack_or_not_map(void **state)
{
	(void)state;
	expect_req_fail("", 0, NULL, ISVD_PROTO_BAD_REQUEST, "empty");
	expect_hex_fail("c1", ISVD_PROTO_BAD_REQUEST, "byte 0xc1 at byte 0 is not valid msgpack");
	expect_hex_fail("81 a2 6f 70 c1", ISVD_PROTO_BAD_REQUEST, "0xc1 at byte 4");
	expect_hex_fail("92 01 02", ISVD_PROTO_BAD_REQUEST, "the body is an array; it must be a map");
	expect_hex_fail("a4 70 69 6e 67", ISVD_PROTO_BAD_REQUEST, "the body is a string");
	expect_hex_fail("2a", ISVD_PROTO_BAD_REQUEST, "the body is an integer");
}

static void test_keys_and_types(void **state)
{
	(void)state;
	/* {} */
	expect_hex_fail("80", ISVD_PROTO_BAD_REQUEST, "lacks key 'op'");
	/* {1: "ping"} */
	expect_hex_fail("81 01 a4 70 69 6e 67", ISVD_PROTO_BAD_REQUEST, "a key of the body map is an integer");
	/* {op: 1} */
	expect_hex_fail("81 a2 6f 70 01", ISVD_PROTO_BAD_REQUEST, "key 'op' is an integer");
	/* {op: "pong"} */
	expect_hex_fail("81 a2 6f 70 a4 70 6f 6e 67", ISVD_PROTO_UNKNOWN_OP, "unknown op 'pong'");
	/* {op: "pin\x01"} — non-printable bytes are not echoed */
	expect_hex_fail("81 a2 6f 70 a4 70 69 6e 01", ISVD_PROTO_UNKNOWN_OP, "unknown op 'pin?'");
	/* {op: "ping", op: "ping"} */
	expect_hex_fail("82 a2 6f 70 a4 70 69 6e 67 a2 6f 70 a4 70 69 6e 67", ISVD_PROTO_BAD_REQUEST,
	                "key 'op' appears twice");
	/* {op: "ping", id: 1, id: 2} */
	expect_hex_fail("83 a2 6f 70 a4 70 69 6e 67 a2 69 64 01 a2 69 64 02", ISVD_PROTO_BAD_REQUEST,
	                "key 'id' appears twice");
	/* {op: "ping", rows: [1]} — rows is not an argument of ping */
	expect_hex_fail("82 a2 6f 70 a4 70 69 6e 67 a4 72 6f 77 73 91 01", ISVD_PROTO_BAD_REQUEST,
	                "unknown key 'rows' for op 'ping'");
	/* {op: "push"} */
	expect_hex_fail("81 a2 6f 70 a4 70 75 73 68", ISVD_PROTO_BAD_REQUEST, "op 'push' requires key 'rows'");
	/* {op: "push", rows: [1], rows: [2]} */
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a4 72 6f 77 73 91 02",
	                ISVD_PROTO_BAD_REQUEST, "key 'rows' appears twice");
	/* batch: -1, batch: "3", client: 7, client: "", space: "v" */
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a5 62 61 74 63 68 ff",
	                ISVD_PROTO_BAD_REQUEST, "key 'batch' is negative");
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a5 62 61 74 63 68 a1 33",
	                ISVD_PROTO_BAD_REQUEST, "key 'batch' is a string");
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a6 63 6c 69 65 6e 74 07",
	                ISVD_PROTO_BAD_REQUEST, "key 'client' is an integer");
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a6 63 6c 69 65 6e 74 a0",
	                ISVD_PROTO_BAD_REQUEST, "key 'client' must be a string of 1 to 255 bytes");
	expect_hex_fail("83 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 91 01 a6 63 6c 69 65 6e 74 a2 61 00",
	                ISVD_PROTO_BAD_REQUEST, "without NUL");
	expect_hex_fail("83 a2 6f 70 a7 70 72 6f 6a 65 63 74 a4 72 6f 77 73 91 01 a5 73 70 61 63 65 a1 76",
	                ISVD_PROTO_BAD_REQUEST, "key 'space' must be \"scores\" or \"u\"");
	/* the id may be any value, ext included, and is kept on failure for the error reply */
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	fr_init(&f);
	fr_hex(&f, "82 a2 69 64 d6 ff 00 00 00 01 a2 6f 70 a4 70 6f 6e 67");
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_UNKNOWN_OP);
	assert_int_equal(req.id_len, 6);
	assert_memory_equal(req.id, fr_data(&f) + 4, 6);
	req_done(&req);
	fr_fini(&f);
}

/* Things that are not numbers where numbers belong: BAD_MATRIX with the position. */
static void test_matrix_wrong_types(void **state)
{
	(void)state;
	expect_rows_fail("92 92 01 02 92 03 a1 78", ISVD_PROTO_BAD_MATRIX,
	                 "rows: row 1, column 1 is a string; a number or nil was expected");
	expect_rows_fail("92 92 01 02 92 80 01", ISVD_PROTO_BAD_MATRIX, "rows: row 1, column 0 is a map");
	expect_rows_fail("91 92 c4 01 00 01", ISVD_PROTO_BAD_MATRIX, "rows: row 0, column 0 is a bin");
	expect_rows_fail("93 01 02 d4 01 00", ISVD_PROTO_BAD_MATRIX, "rows: row 0, column 2 is an ext");
	expect_rows_fail("92 01 92 01 02", ISVD_PROTO_BAD_MATRIX, "rows: row 0, column 1 is an array");
	expect_rows_fail("93 c3 01 02", ISVD_PROTO_BAD_MATRIX, "column 0 is a boolean");
	expect_rows_fail("92 91 01 01", ISVD_PROTO_BAD_MATRIX, "rows: row 1 is an integer; row 0 is an array");
	expect_rows_fail("a3 61 62 63", ISVD_PROTO_BAD_MATRIX, "a matrix is an array of rows or a {shape, dtype, data} map; got a string");
	expect_rows_fail("c0", ISVD_PROTO_BAD_MATRIX, "got nil");
}

static void test_ragged_rows(void **state)
{
	(void)state;
	/* 4 rows: 64, 64, 64, 63 values */
	struct frame f;
	fr_init(&f);
	msgpack_pack_map(&f.pk, 2);
	fr_str(&f, "op");
	fr_str(&f, "push");
	fr_str(&f, "rows");
	msgpack_pack_array(&f.pk, 4);
	for (int i = 0; i < 4; i++) {
		int n = i == 3 ? 63 : 64;
		msgpack_pack_array(&f.pk, (size_t)n);
		for (int j = 0; j < n; j++)
			msgpack_pack_double(&f.pk, i + j / 64.0);
	}
	expect_req_fail(fr_data(&f), f.sb.size, NULL, ISVD_PROTO_BAD_MATRIX,
	                "rows: row 3 has 63 values; row 0 has 64");
	fr_fini(&f);
	expect_rows_fail("92 92 01 02 93 01 02 03", ISVD_PROTO_BAD_MATRIX, "row 1 has 3 values; row 0 has 2");
}

static void test_non_finite(void **state)
{
	(void)state;
	/* +inf as float64 and -inf as float32 in form (a) */
	expect_rows_fail("92 92 01 02 92 03 cb 7f f0 00 00 00 00 00 00", ISVD_PROTO_NON_FINITE,
	                 "rows: row 1, column 1 is +inf");
	expect_rows_fail("93 01 ca ff 80 00 00 02", ISVD_PROTO_NON_FINITE, "rows: row 0, column 1 is -inf");
	/* -inf in form (b) f64 at (1, 0) of a 2x2 */
	expect_rows_fail("83 a5 73 68 61 70 65 92 02 02 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 20 "
	                 "00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 f0 3f "
	                 "00 00 00 00 00 00 f0 ff 00 00 00 00 00 00 f0 3f",
	                 ISVD_PROTO_NON_FINITE, "rows: row 1, column 0 is -inf");
	/* NaN (form b) and nil (form a) are missing values, not errors */
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	push_with_rows_hex(&f, "83 a5 73 68 61 70 65 92 01 02 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 10 "
	                       "00 00 00 00 00 00 f8 7f 00 00 00 00 00 00 f0 3f");
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.rows.n_missing, 1);
	assert_true(isnan(req.rows.data[0]) && req.rows.data[1] == 1.0);
	req_done(&req);
	fr_fini(&f);
}

static void test_empty_matrices(void **state)
{
	(void)state;
	expect_rows_fail("90", ISVD_PROTO_BAD_MATRIX, "rows: the matrix is empty (0 rows of 0 values)");
	expect_rows_fail("92 90 90", ISVD_PROTO_BAD_MATRIX, "the matrix is empty (2 rows of 0 values)");
	expect_rows_fail("83 a5 73 68 61 70 65 92 00 04 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 00",
	                 ISVD_PROTO_BAD_MATRIX, "the matrix is empty (shape [0, 4])");
	/* in a reply an empty matrix is a valid value */
	struct frame f;
	struct isvd_proto_reply rep;
	struct isvd_proto_error e;
	fr_init(&f);
	fr_hex(&f, "83 a2 6f 6b c3 a3 73 65 71 01 a4 72 6f 77 73 "
	           "83 a5 73 68 61 70 65 92 00 04 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 00");
	assert_int_equal(dec_rep(fr_data(&f), f.sb.size, ISVD_OP_RECONSTRUCT, &rep, &e), ISVD_PROTO_OK);
	assert_int_equal(rep.rows.rows, 0);
	assert_int_equal(rep.rows.cols, 4);
	rep_done(&rep);
	fr_fini(&f);
}

static void test_shaped_malformed(void **state)
{
	(void)state;
	/* 2x2 f64 needs 32 bytes; 16 given */
	expect_rows_fail("83 a5 73 68 61 70 65 92 02 02 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 10 "
	                 "00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 f0 3f",
	                 ISVD_PROTO_BAD_MATRIX, "rows: shape [2, 2] of f64 needs 32 bytes of data; data has 16");
	/* 2x2 f32 needs 16 bytes; 32 given */
	expect_rows_fail("83 a5 73 68 61 70 65 92 02 02 a5 64 74 79 70 65 a3 66 33 32 a4 64 61 74 61 c4 20 "
	                 "00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 f0 3f "
	                 "00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 f0 3f",
	                 ISVD_PROTO_BAD_MATRIX, "of f32 needs 16 bytes of data; data has 32");
	expect_rows_fail("83 a5 73 68 61 70 65 92 01 01 a5 64 74 79 70 65 a3 69 33 32 a4 64 61 74 61 c4 04 00 00 00 00",
	                 ISVD_PROTO_BAD_MATRIX, "dtype must be \"f64\" or \"f32\"");
	expect_rows_fail("83 a5 73 68 61 70 65 93 01 01 01 a5 64 74 79 70 65 a3 66 33 32 a4 64 61 74 61 c4 04 00 00 00 00",
	                 ISVD_PROTO_BAD_MATRIX, "shape must be [rows, cols]");
	expect_rows_fail("83 a5 73 68 61 70 65 92 ff 01 a5 64 74 79 70 65 a3 66 33 32 a4 64 61 74 61 c4 04 00 00 00 00",
	                 ISVD_PROTO_BAD_MATRIX, "shape must be [rows, cols]");
	expect_rows_fail("83 a5 73 68 61 70 65 92 01 01 a5 64 74 79 70 65 a3 66 33 32 a4 64 61 74 61 a4 00 00 00 00",
	                 ISVD_PROTO_BAD_MATRIX, "rows: data is a string; it must be a bin");
	expect_rows_fail("82 a5 73 68 61 70 65 92 01 01 a4 64 61 74 61 c4 08 00 00 00 00 00 00 00 00",
	                 ISVD_PROTO_BAD_MATRIX, "the matrix map lacks 'dtype'");
	expect_rows_fail("84 a5 73 68 61 70 65 92 01 01 a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 08 "
	                 "00 00 00 00 00 00 00 00 a5 6f 72 64 65 72 a1 43",
	                 ISVD_PROTO_BAD_MATRIX, "unknown key 'order' in the matrix map");
	expect_rows_fail("83 a5 73 68 61 70 65 92 01 01 a5 73 68 61 70 65 92 01 01 a4 64 61 74 61 c4 08 "
	                 "00 00 00 00 00 00 00 00", ISVD_PROTO_BAD_MATRIX, "key 'shape' appears twice");
	expect_rows_fail("81 01 02", ISVD_PROTO_BAD_MATRIX, "a key of the matrix map is an integer");
}

/* Shapes whose product overflows 64 bits, or exceeds the limits, are TOO_LARGE
 * before anything is allocated. */
static void test_huge_shapes(void **state)
{
	(void)state;
	/* [2^63, 2^63]: the product wraps to 0 in 64 bits */
	expect_rows_fail("83 a5 73 68 61 70 65 92 cf 80 00 00 00 00 00 00 00 cf 80 00 00 00 00 00 00 00 "
	                 "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 00",
	                 ISVD_PROTO_TOO_LARGE, "exceeds the limits");
	/* [2^32, 2^32]: each under 2^64, the product 2^64 wraps to 0 */
	struct isvd_proto_limits big = { .max_rows = SIZE_MAX, .max_cols = SIZE_MAX, .max_values = SIZE_MAX };
	struct frame f;
	push_with_rows_hex(&f, "83 a5 73 68 61 70 65 92 cf 00 00 00 01 00 00 00 00 cf 00 00 00 01 00 00 00 00 "
	                       "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 00");
	expect_req_fail(fr_data(&f), f.sb.size, &big, ISVD_PROTO_TOO_LARGE, "has more than");
	fr_fini(&f);
	/* [2^61, 4] f64: 2^63 values x 8 bytes wraps to 0 bytes */
	push_with_rows_hex(&f, "83 a5 73 68 61 70 65 92 cf 20 00 00 00 00 00 00 00 04 "
	                       "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 00");
	expect_req_fail(fr_data(&f), f.sb.size, &big, ISVD_PROTO_TOO_LARGE, "has more than");
	fr_fini(&f);
	/* configured limits, both forms */
	struct isvd_proto_limits small = { .max_rows = 2, .max_cols = 3, .max_values = 5 };
	push_with_rows_hex(&f, "93 91 01 91 01 91 01");
	expect_req_fail(fr_data(&f), f.sb.size, &small, ISVD_PROTO_TOO_LARGE, "rows: 3 rows exceed the limit of 2");
	fr_fini(&f);
	push_with_rows_hex(&f, "94 01 02 03 04");
	expect_req_fail(fr_data(&f), f.sb.size, &small, ISVD_PROTO_TOO_LARGE, "4 columns exceed the limit of 3");
	fr_fini(&f);
	push_with_rows_hex(&f, "92 93 01 02 03 93 01 02 03");
	expect_req_fail(fr_data(&f), f.sb.size, &small, ISVD_PROTO_TOO_LARGE, "2 x 3 values exceed the limit of 5");
	fr_fini(&f);
	struct isvd_proto_limits tiny = { .max_frame = 8 };
	push_with_rows_hex(&f, "91 01");
	expect_req_fail(fr_data(&f), f.sb.size, &tiny, ISVD_PROTO_TOO_LARGE, "the frame has 16 bytes; the limit is 8");
	fr_fini(&f);
}

/* A small frame can never make the decoder hold much memory: the worst case
 * is one nil per value (1 wire byte -> 8 bytes).  helpers.h checks the bound. */
static void test_memory_bound(void **state)
{
	(void)state;
	enum { R = 2000, C = 50 };
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	fr_init(&f);
	msgpack_pack_map(&f.pk, 2);
	fr_str(&f, "op");
	fr_str(&f, "push");
	fr_str(&f, "rows");
	msgpack_pack_array(&f.pk, R);
	for (int i = 0; i < R; i++) {
		msgpack_pack_array(&f.pk, C);
		for (int j = 0; j < C; j++)
			msgpack_pack_nil(&f.pk);
	}
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.rows.n_missing, R * C);
	assert_true(proto_test_peak <= 8 * f.sb.size + 64);
	req_done(&req);
	fr_fini(&f);
}

/* Allocation failing at each allocation in turn: NOMEM, nothing leaked;
 * then the same frame decodes. */
static void test_out_of_memory(void **state)
{
	(void)state;
	double v[4] = { 1, 2, 3, 4 };
	uint8_t id[] = { 0x01 };
	struct isvd_proto_request in = { .op = ISVD_OP_PUSH, .id = id, .id_len = 1,
	                                 .rows = { v, 2, 2, 0 }, .client = "c" };
	uint8_t *buf;
	size_t len;
	assert_int_equal(isvd_proto_request_encode(&in, &buf, &len), ISVD_PROTO_OK);
	int failures = 0;
	for (long k = 0; ; k++) {
		struct isvd_proto_request req;
		struct isvd_proto_error e;
		proto_test_fail_after = k;
		int rc = dec_req(buf, len, NULL, &req, &e);
		proto_test_fail_after = -1;
		req_done(&req);
		if (rc == ISVD_PROTO_OK)
			break;
		assert_int_equal(rc, ISVD_PROTO_NOMEM);
		failures++;
	}
	assert_int_equal(failures, 3);   /* id, rows, client */
	free(buf);

	/* the same for a form (a) request and a factors reply */
	struct frame f;
	push_with_rows_hex(&f, "92 92 01 02 92 03 04");
	proto_test_fail_after = 0;
	expect_req_fail(fr_data(&f), f.sb.size, NULL, ISVD_PROTO_NOMEM, "out of memory");
	proto_test_fail_after = -1;
	fr_fini(&f);

	double sig[1] = { 1 }, vt[2] = { 1, 0 }, mean[2] = { 0, 0 };
	struct isvd_proto_reply r = { .op = ISVD_OP_FACTORS, .ok = true, .sigma = { sig, 1 },
	                              .vt = { vt, 1, 2, 0 }, .has_mean = true, .mean = { mean, 2 } };
	assert_int_equal(isvd_proto_reply_encode(&r, &buf, &len), ISVD_PROTO_OK);
	for (long k = 0; k < 3; k++) {
		struct isvd_proto_reply rep;
		struct isvd_proto_error e;
		proto_test_fail_after = k;
		assert_int_equal(dec_rep(buf, len, ISVD_OP_FACTORS, &rep, &e), ISVD_PROTO_NOMEM);
		proto_test_fail_after = -1;
		rep_done(&rep);
	}
	free(buf);
}

/* Malformed replies and snapshots. */
static void test_reply_hostile(void **state)
{
	(void)state;
	struct frame f;
	struct isvd_proto_reply rep;
	struct isvd_proto_error e;
	static const struct { const char *hex; const char *needle; } cases[] = {
		{ "81 a3 73 65 71 01", "lacks key 'ok'" },
		{ "81 a2 6f 6b 01", "key 'ok' is an integer" },
		{ "81 a2 6f 6b c2", "a failed reply lacks key 'error'" },
		{ "82 a2 6f 6b c2 a5 65 72 72 6f 72 80", "the error map lacks 'code'" },
		{ "82 a2 6f 6b c2 a5 65 72 72 6f 72 01", "key 'error' is an integer" },
		{ "82 a2 6f 6b c3 a3 73 65 71 a1 31", "key 'seq' is a string" },
		{ "83 a2 6f 6b c3 a2 6f 6b c3 a3 73 65 71 01", "key 'ok' appears twice" },
		{ "82 a2 6f 6b c3 a3 73 65 71 dd ff ff ff ff", "announces 4294967295 elements" },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		fr_init(&f);
		fr_hex(&f, cases[k].hex);
		assert_int_equal(dec_rep(fr_data(&f), f.sb.size, ISVD_OP_CHECKPOINT, &rep, &e),
		                 ISVD_PROTO_BAD_REQUEST);
		if (!strstr(e.message, cases[k].needle))
			fail_msg("case %zu: %s", k, e.message);
		rep_done(&rep);
		fr_fini(&f);
	}
	/* a vector element that is not a number */
	fr_init(&f);
	fr_hex(&f, "85 a2 6f 6b c3 a5 73 69 67 6d 61 92 01 a1 78 a2 76 74 90 a4 6d 65 61 6e c0 a3 73 65 71 01");
	assert_int_equal(dec_rep(fr_data(&f), f.sb.size, ISVD_OP_FACTORS, &rep, &e), ISVD_PROTO_BAD_REQUEST);
	assert_non_null(strstr(e.message, "key 'sigma': element 1 is a string"));
	rep_done(&rep);
	fr_fini(&f);
	/* unknown op for a reply is a caller error */
	assert_int_equal(isvd_proto_reply_decode("\x80", 1, ISVD_OP_NONE, NULL, &rep, &e), ISVD_PROTO_INVALID);
	rep_done(&rep);
	/* a spectrum with a missing key */
	struct isvd_proto_spectrum s;
	assert_int_equal(isvd_proto_spectrum_decode("\x81\xa1t\x01", 4, NULL, &s, &e), ISVD_PROTO_BAD_REQUEST);
	assert_non_null(strstr(e.message, "snapshot 'spectrum' requires key 'seq'"));
	isvd_proto_spectrum_fini(&s);
	assert_int_equal(proto_test_live, 0);
	/* NULL arguments */
	assert_int_equal(isvd_proto_request_decode("\x80", 1, NULL, NULL, &e), ISVD_PROTO_INVALID);
	isvd_proto_request_fini(NULL);
	isvd_proto_reply_fini(NULL);
	isvd_proto_spectrum_fini(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oversized_counts),
		cmocka_unit_test(test_depth_bombs),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_not_msgpack_or_not_map),
		cmocka_unit_test(test_keys_and_types),
		cmocka_unit_test(test_matrix_wrong_types),
		cmocka_unit_test(test_ragged_rows),
		cmocka_unit_test(test_non_finite),
		cmocka_unit_test(test_empty_matrices),
		cmocka_unit_test(test_shaped_malformed),
		cmocka_unit_test(test_huge_shapes),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_reply_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
