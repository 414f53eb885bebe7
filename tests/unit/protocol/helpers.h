/*
 * helpers.h — shared by the protocol unit tests: a msgpack frame builder for
 * hand-made (often hostile) frames, and decode wrappers that check the
 * codec's memory promises on every call: peak allocation at most
 * 9 × frame + 1 KiB, and nothing left allocated after *_fini().
 *
 * The tests link the protocol sources built with -DISVD_PROTO_TESTING, whose
 * allocator counts live bytes (proto_test_live/peak) and can be made to fail
 * (proto_test_fail_after).
 */
#ifndef PROTO_TEST_HELPERS_H
#define PROTO_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <msgpack.h>

#include "proto_internal.h"

/* A frame under construction. */
struct frame {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static inline void fr_init(struct frame *f)
{
	msgpack_sbuffer_init(&f->sb);
	msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
}

static inline void fr_fini(struct frame *f)
{
	msgpack_sbuffer_destroy(&f->sb);
}

static inline void fr_str(struct frame *f, const char *s)
{
	assert_int_equal(msgpack_pack_str_with_body(&f->pk, s, strlen(s)), 0);
}

static inline void fr_raw(struct frame *f, const void *p, size_t n)
{
	assert_int_equal(msgpack_sbuffer_write(&f->sb, p, n), 0);
}

/* Appends bytes given as a hex string ("dc 00 10"); spaces ignored. */
static inline void fr_hex(struct frame *f, const char *hex)
{
	while (*hex) {
		if (*hex == ' ') { hex++; continue; }
		unsigned v;
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		uint8_t b = (uint8_t)v;
		fr_raw(f, &b, 1);
		hex += 2;
	}
}

static inline const uint8_t *fr_data(const struct frame *f)
{
	return (const uint8_t *)f->sb.data;
}

/* A copy of n bytes in a buffer of exactly n bytes, so that AddressSanitizer
 * sees any read past the frame.  The caller frees it. */
static inline void *exact_copy(const void *b, size_t n)
{
	void *c = malloc(n ? n : 1);
	assert_non_null(c);
	if (n)
		memcpy(c, b, n);
	return c;
}

/* Decodes a request, checks the memory bound and the error invariants. */
static inline int dec_req(const void *b, size_t n, const struct isvd_proto_limits *lim,
                          struct isvd_proto_request *req, struct isvd_proto_error *e)
{
	assert_int_equal(proto_test_live, 0);
	proto_test_peak = 0;
	void *copy = exact_copy(b, n);
	int rc = isvd_proto_request_decode(copy, n, lim, req, e);
	free(copy);
	assert_true(proto_test_peak <= 9 * n + 1024);
	assert_int_equal(rc, e->code);
	if (rc)
		assert_true(e->message[0] != '\0');
	return rc;
}

static inline void req_done(struct isvd_proto_request *req)
{
	isvd_proto_request_fini(req);
	assert_int_equal(proto_test_live, 0);
}

/* Decodes a request that must fail with code and a message containing needle. */
static inline void expect_req_fail(const void *b, size_t n, const struct isvd_proto_limits *lim,
                                   int code, const char *needle)
{
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	int rc = dec_req(b, n, lim, &req, &e);
	if (rc != code || (needle && !strstr(e.message, needle)))
		fail_msg("expected %s containing \"%s\"; got %s: %s", isvd_proto_err_name(code),
		         needle ? needle : "", isvd_proto_err_name(rc), e.message);
	req_done(&req);
}

static inline int dec_rep(const void *b, size_t n, enum isvd_proto_op op,
                          struct isvd_proto_reply *rep, struct isvd_proto_error *e)
{
	assert_int_equal(proto_test_live, 0);
	proto_test_peak = 0;
	void *copy = exact_copy(b, n);
	int rc = isvd_proto_reply_decode(copy, n, op, NULL, rep, e);
	free(copy);
	assert_true(proto_test_peak <= 9 * n + 1024);
	assert_int_equal(rc, e->code);
	return rc;
}

static inline void rep_done(struct isvd_proto_reply *rep)
{
	isvd_proto_reply_fini(rep);
	assert_int_equal(proto_test_live, 0);
}

/* Lower-case hex of a buffer, bytes separated by spaces; caller frees. */
static inline char *hexdump(const uint8_t *p, size_t n)
{
	char *s = malloc(3 * n + 1);
	assert_non_null(s);
	s[0] = '\0';
	for (size_t k = 0; k < n; k++)
		sprintf(s + 3 * k, k + 1 < n ? "%02x " : "%02x", p[k]);
	return s;
}

#endif /* PROTO_TEST_HELPERS_H */
