/*
 * fuzz_request.c — libFuzzer target over the protocol's request decoder
 * (and, on the same bytes, the reply and snapshot decoders).
 *
 * Built by run-fuzz.sh with clang -fsanitize=fuzzer,address,undefined and
 * -DISVD_PROTO_TESTING, so besides crashes, leaks and UB it checks the
 * codec's promises and aborts when one breaks:
 *   - a decode never holds more than 9 × frame + 1 KiB (proto_test_peak);
 *   - after *_fini() nothing is left allocated (proto_test_live);
 *   - a failed decode has a code and a message;
 *   - a decoded request re-encodes and decodes again to the same request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_request: %s:%d: %s\n", \
                 __FILE__, __LINE__, #c); abort(); } } while (0)

static void check_memory(size_t size)
{
	CHECK(proto_test_peak <= 9 * size + 1024);
	CHECK(proto_test_live == 0);
}

static void check_error(int rc, const struct isvd_proto_error *e)
{
	CHECK(rc == e->code);
	CHECK(rc == ISVD_PROTO_OK || e->message[0] != '\0');
	CHECK(rc >= 0 && rc < ISVD_PROTO_ERR_COUNT_);
}

/* Decoded request → encode → decode: the same request again. */
static void check_roundtrip(const struct isvd_proto_request *a)
{
	uint8_t *buf;
	size_t len;
	struct isvd_proto_request b;
	struct isvd_proto_error e;
	CHECK(isvd_proto_request_encode(a, &buf, &len) == ISVD_PROTO_OK);
	int rc = isvd_proto_request_decode(buf, len, NULL, &b, &e);
	if (rc != ISVD_PROTO_OK) {
		fprintf(stderr, "re-decode failed: %s\n", e.message);
		abort();
	}
	CHECK(a->op == b.op && a->id_len == b.id_len);
	CHECK(!a->id_len || memcmp(a->id, b.id, a->id_len) == 0);
	CHECK(a->rows.rows == b.rows.rows && a->rows.cols == b.rows.cols);
	CHECK(a->rows.n_missing == b.rows.n_missing);
	CHECK(!a->rows.data || memcmp(a->rows.data, b.rows.data,
	                              a->rows.rows * a->rows.cols * sizeof(double)) == 0);
	CHECK((a->client == NULL) == (b.client == NULL));
	CHECK(!a->client || strcmp(a->client, b.client) == 0);
	CHECK(a->has_batch == b.has_batch && a->batch == b.batch && a->space == b.space);
	isvd_proto_request_fini(&b);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct isvd_proto_error e;
	int rc;

	struct isvd_proto_request req;
	proto_test_peak = 0;
	rc = isvd_proto_request_decode(data, size, NULL, &req, &e);
	check_error(rc, &e);
	CHECK(proto_test_peak <= 9 * size + 1024);
	if (rc == ISVD_PROTO_OK)
		check_roundtrip(&req);
	isvd_proto_request_fini(&req);
	check_memory(size);

	/* the same bytes as a reply to some op (chosen by the length) and as a snapshot */
	struct isvd_proto_reply rep;
	enum isvd_proto_op op = (enum isvd_proto_op)(1 + size % (ISVD_OP_COUNT_ - 1));
	proto_test_peak = 0;
	rc = isvd_proto_reply_decode(data, size, op, NULL, &rep, &e);
	check_error(rc, &e);
	if (rc == ISVD_PROTO_OK) {
		uint8_t *buf;
		size_t len;
		if (!rep.ok && rep.error_code == ISVD_PROTO_OK)
			rep.error_code = ISVD_PROTO_INTERNAL;
		int erc = isvd_proto_reply_encode(&rep, &buf, &len);
		CHECK(erc == ISVD_PROTO_OK || erc == ISVD_PROTO_INVALID);
		if (erc == ISVD_PROTO_OK)
			free(buf);
	}
	isvd_proto_reply_fini(&rep);
	check_memory(size);

	struct isvd_proto_spectrum s;
	proto_test_peak = 0;
	rc = isvd_proto_spectrum_decode(data, size, NULL, &s, &e);
	check_error(rc, &e);
	isvd_proto_spectrum_fini(&s);
	check_memory(size);
	return 0;
}
