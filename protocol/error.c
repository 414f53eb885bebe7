/*
 * error.c — the protocol's error codes: text, wire name, and the helpers
 * every decoder uses to report a failure.
 *
 * One row per isvd_proto_err code, in enum order.  The wire names are the
 * error codes of PROTOCOL.md; local codes (NOMEM, INVALID) travel as
 * INTERNAL because a peer cannot act on them differently.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

static const struct {
	const char *name;   /* wire code */
	const char *text;   /* what a log line or a user sees */
} err_table[ISVD_PROTO_ERR_COUNT_] = {
	[ISVD_PROTO_OK]           = { "OK",           "success" },
	[ISVD_PROTO_BAD_REQUEST]  = { "BAD_REQUEST",  "malformed message" },
	[ISVD_PROTO_UNKNOWN_OP]   = { "UNKNOWN_OP",   "unknown operation" },
	[ISVD_PROTO_BAD_MATRIX]   = { "BAD_MATRIX",   "malformed matrix" },
	[ISVD_PROTO_DIM_MISMATCH] = { "DIM_MISMATCH", "rows do not match the model's dimension" },
	[ISVD_PROTO_NON_FINITE]   = { "NON_FINITE",   "a value is not finite" },
	[ISVD_PROTO_TOO_LARGE]    = { "TOO_LARGE",    "message or matrix exceeds the limits" },
	[ISVD_PROTO_NOT_READY]    = { "NOT_READY",    "the model has seen no rows yet" },
	[ISVD_PROTO_UNAVAILABLE]  = { "UNAVAILABLE",  "service unavailable" },
	[ISVD_PROTO_UNAUTHORIZED] = { "UNAUTHORIZED", "not authorized" },
	[ISVD_PROTO_INTERNAL]     = { "INTERNAL",     "internal error" },
	[ISVD_PROTO_RATE_LIMITED] = { "RATE_LIMITED", "over the pusher's rate limit; resend later" },
	[ISVD_PROTO_NOMEM]        = { "INTERNAL",     "out of memory" },
	[ISVD_PROTO_INVALID]      = { "INTERNAL",     "invalid argument" },
};

const char *isvd_proto_strerror(int err)
{
	if (err < 0 || err >= ISVD_PROTO_ERR_COUNT_)
		return "unknown error";
	return err_table[err].text;
}

const char *isvd_proto_err_name(int err)
{
	if (err < 0 || err >= ISVD_PROTO_ERR_COUNT_)
		return "INTERNAL";
	return err_table[err].name;
}

int isvd_proto_err_from_name(const char *name, size_t len)
{
	if (name)
		for (int c = ISVD_PROTO_BAD_REQUEST; c <= ISVD_PROTO_RATE_LIMITED; c++)
			if (strlen(err_table[c].name) == len && memcmp(err_table[c].name, name, len) == 0)
				return c;
	return ISVD_PROTO_INTERNAL;
}

int proto_fail(struct isvd_proto_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* ------------------------------------------------------------- allocation */

#ifdef ISVD_PROTO_TESTING
long proto_test_fail_after = -1;
size_t proto_test_live, proto_test_peak;

/* Test build: a 16-byte header remembers the size for the live counter. */
void *proto_malloc(size_t n)
{
	if (proto_test_fail_after == 0)
		return NULL;
	if (proto_test_fail_after > 0)
		proto_test_fail_after--;
	if (n > SIZE_MAX - 16)
		return NULL;
	unsigned char *p = malloc(n + 16);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof n);
	proto_test_live += n;
	if (proto_test_live > proto_test_peak)
		proto_test_peak = proto_test_live;
	return p + 16;
}

void proto_free(void *p)
{
	if (!p)
		return;
	unsigned char *h = (unsigned char *)p - 16;
	size_t n;
	memcpy(&n, h, sizeof n);
	proto_test_live -= n;
	free(h);
}
#else
void *proto_malloc(size_t n)
{
	return malloc(n ? n : 1);
}

void proto_free(void *p)
{
	free(p);
}
#endif
