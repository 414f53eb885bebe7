/*
 * reader.c — a bounds-checked msgpack reader over untrusted bytes.
 *
 * This replaces msgpack-c's unpacker on every decode path: that unpacker
 * reserves memory from the counts in array/map/bin headers before it has
 * seen the elements, so a 5-byte header can cost gigabytes.  Here a count is
 * returned only after it has been checked against the bytes that remain
 * (every array element and every map key or value takes at least one byte;
 * a str/bin/ext payload takes exactly its length), and nothing is allocated.
 *
 * Multi-byte numbers are big-endian on the wire (msgpack spec); they are
 * assembled byte by byte, so the host's byte order and alignment never matter.
 */
#include <string.h>

#include "proto_internal.h"

void proto_rd_init(struct proto_rd *rd, const void *buf, size_t len, unsigned max_depth)
{
	rd->base = buf;
	rd->p = buf;
	rd->end = rd->p + len;
	rd->max_depth = max_depth;
}

size_t proto_rd_left(const struct proto_rd *rd)
{
	return (size_t)(rd->end - rd->p);
}

size_t proto_rd_offset(const struct proto_rd *rd)
{
	return (size_t)(rd->p - rd->base);
}

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < n; k++)
		v = (v << 8) | p[k];
	return v;
}

const char *proto_type_name(enum proto_type t)
{
	switch (t) {
	case PT_NIL:   return "nil";
	case PT_BOOL:  return "a boolean";
	case PT_UINT:
	case PT_INT:   return "an integer";
	case PT_F32:
	case PT_F64:   return "a float";
	case PT_STR:   return "a string";
	case PT_BIN:   return "a bin";
	case PT_EXT:   return "an ext";
	case PT_ARRAY: return "an array";
	case PT_MAP:   return "a map";
	}
	return "?";
}

bool proto_obj_number(const struct proto_obj *o, double *out)
{
	switch (o->type) {
	case PT_UINT: *out = (double)o->u; return true;
	case PT_INT:  *out = (double)o->i; return true;
	case PT_F32:
	case PT_F64:  *out = o->f; return true;
	default:      return false;
	}
}

/* The first bytes outside the fix ranges, 0xc0..0xdf: the type, and how
 * many bytes of value or length follow (fixext: 0, the size is in the
 * byte itself).  0xc1 is never used by msgpack. */
struct header {
	bool valid;
	uint8_t type;                /* enum proto_type */
	uint8_t n;
};

static const struct header headers[0x20] = {
	[0x00] = { true, PT_NIL, 0 },
	[0x02] = { true, PT_BOOL, 0 }, [0x03] = { true, PT_BOOL, 0 },
	[0x04] = { true, PT_BIN, 1 }, [0x05] = { true, PT_BIN, 2 }, [0x06] = { true, PT_BIN, 4 },
	[0x07] = { true, PT_EXT, 1 }, [0x08] = { true, PT_EXT, 2 }, [0x09] = { true, PT_EXT, 4 },
	[0x0a] = { true, PT_F32, 4 }, [0x0b] = { true, PT_F64, 8 },
	[0x0c] = { true, PT_UINT, 1 }, [0x0d] = { true, PT_UINT, 2 },
	[0x0e] = { true, PT_UINT, 4 }, [0x0f] = { true, PT_UINT, 8 },
	[0x10] = { true, PT_INT, 1 }, [0x11] = { true, PT_INT, 2 },
	[0x12] = { true, PT_INT, 4 }, [0x13] = { true, PT_INT, 8 },
	[0x14] = { true, PT_EXT, 0 }, [0x15] = { true, PT_EXT, 0 }, [0x16] = { true, PT_EXT, 0 },
	[0x17] = { true, PT_EXT, 0 }, [0x18] = { true, PT_EXT, 0 },   /* fixext 1/2/4/8/16 */
	[0x19] = { true, PT_STR, 1 }, [0x1a] = { true, PT_STR, 2 }, [0x1b] = { true, PT_STR, 4 },
	[0x1c] = { true, PT_ARRAY, 2 }, [0x1d] = { true, PT_ARRAY, 4 },
	[0x1e] = { true, PT_MAP, 2 }, [0x1f] = { true, PT_MAP, 4 },
};

/* Reads the msgpack header at the cursor into *o (and, for str, bin and
 * ext, checks that its payload is there).  The fix ranges (fixint,
 * fixmap, fixarray, fixstr) are tested first; every other first byte is
 * looked up in headers[] above, which gives its type and how many bytes of
 * value or length follow it. */
int proto_rd_obj(struct proto_rd *rd, struct proto_obj *o, struct isvd_proto_error *err)
{
	size_t at = proto_rd_offset(rd);
	if (rd->p >= rd->end)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "truncated: a value was expected at byte %zu", at);
	uint8_t b = *rd->p;
	unsigned n = 0;           /* bytes of the following size or scalar */
	memset(o, 0, sizeof *o);

	if (b <= 0x7f) { o->type = PT_UINT; o->u = b; rd->p++; return ISVD_PROTO_OK; }
	if (b >= 0xe0) { o->type = PT_INT; o->i = (int8_t)b; rd->p++; return ISVD_PROTO_OK; }
	if (b >= 0x80 && b <= 0x8f) { o->type = PT_MAP; o->len = b & 0x0f; goto count; }
	if (b >= 0x90 && b <= 0x9f) { o->type = PT_ARRAY; o->len = b & 0x0f; goto count; }
	if (b >= 0xa0 && b <= 0xbf) { o->type = PT_STR; o->len = b & 0x1f; goto payload; }

	const struct header *h = &headers[b - 0xc0];   /* b is in 0xc0..0xdf here */
	if (!h->valid)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "byte 0x%02x at byte %zu is not valid msgpack", b, at);
	o->type = (enum proto_type)h->type;
	n = h->n;
	if (o->type == PT_NIL || o->type == PT_BOOL) {
		o->b = b == 0xc3;
		rd->p++;
		return ISVD_PROTO_OK;
	}
	if (proto_rd_left(rd) - 1 < n)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "truncated: the header at byte %zu needs %u more bytes; %zu remain",
		                  at, n, proto_rd_left(rd) - 1);
	uint64_t v = be(rd->p + 1, n);
	rd->p += 1 + n;

	switch (o->type) {
	case PT_UINT:
		o->u = v;
		return ISVD_PROTO_OK;
	case PT_INT: {
		/* sign-extend an n-byte two's complement value */
		int64_t s = n == 8 ? (int64_t)v
		          : (int64_t)(v ^ (UINT64_C(1) << (8 * n - 1))) - (int64_t)(UINT64_C(1) << (8 * n - 1));
		if (s >= 0) { o->type = PT_UINT; o->u = (uint64_t)s; }
		else o->i = s;
		return ISVD_PROTO_OK;
	}
	case PT_F32: {
		uint32_t w = (uint32_t)v;
		float f;
		memcpy(&f, &w, sizeof f);
		o->f = f;
		return ISVD_PROTO_OK;
	}
	case PT_F64:
		memcpy(&o->f, &v, sizeof o->f);
		return ISVD_PROTO_OK;
	case PT_ARRAY:
	case PT_MAP:
		o->len = (uint32_t)v;
		goto counted;
	case PT_STR:
	case PT_BIN:
		o->len = (uint32_t)v;
		goto payloaded;
	case PT_EXT:
		/* fixext: the payload size is in the first byte; then 1 type byte */
		o->len = n ? (uint32_t)v : (uint32_t)1u << (b - 0xd4);
		if (proto_rd_left(rd) < 1)
			goto short_payload;
		rd->p++;   /* ext type byte */
		goto payloaded;
	default:
		break;
	}
	return ISVD_PROTO_OK;

count:
	rd->p++;
counted: {
	/* each array element, map key and map value takes at least one byte */
	uint64_t need = (uint64_t)o->len * (o->type == PT_MAP ? 2u : 1u);
	if (need > proto_rd_left(rd))
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "%s at byte %zu announces %u %s but only %zu bytes remain",
		                  o->type == PT_MAP ? "a map" : "an array", at, o->len,
		                  o->type == PT_MAP ? "entries" : "elements", proto_rd_left(rd));
	return ISVD_PROTO_OK;
}

payload:
	rd->p++;
payloaded:
	if (o->len > proto_rd_left(rd))
		goto short_payload;
	o->ptr = rd->p;
	rd->p += o->len;
	return ISVD_PROTO_OK;

short_payload:
	return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
	                  "truncated: %s at byte %zu announces %u bytes but only %zu remain",
	                  proto_type_name(o->type), at, o->len, proto_rd_left(rd));
}

int proto_rd_skip(struct proto_rd *rd, unsigned depth, struct isvd_proto_error *err)
{
	struct proto_obj o;
	size_t at = proto_rd_offset(rd);
	int rc = proto_rd_obj(rd, &o, err);
	if (rc)
		return rc;
	if (o.type != PT_ARRAY && o.type != PT_MAP)
		return ISVD_PROTO_OK;
	if (depth > rd->max_depth)
		return proto_fail(err, ISVD_PROTO_BAD_REQUEST,
		                  "%s at byte %zu nests deeper than %u levels",
		                  proto_type_name(o.type), at, rd->max_depth);
	uint64_t n = (uint64_t)o.len * (o.type == PT_MAP ? 2u : 1u);
	for (uint64_t k = 0; k < n; k++)
		if ((rc = proto_rd_skip(rd, depth + 1, err)))
			return rc;
	return ISVD_PROTO_OK;
}
