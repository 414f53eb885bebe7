/*
 * proto_internal.h — internals of the protocol codec, shared by its files
 * and reachable by its unit tests (which link the internal static library).
 *
 * proto_rd is a cursor over untrusted bytes.  proto_rd_obj() reads one
 * msgpack header and, for str/bin/ext, its payload; it checks every count
 * against the bytes that remain before returning it, so a caller that
 * allocates from a count never allocates more than the frame can fill.
 * proto_rd_skip() validates a whole value, bounded in depth, allocating
 * nothing.
 *
 * The field tables (encode.c: proto_request_fields, proto_reply_fields,
 * proto_spectrum_fields) describe every body: key, type and where the value
 * lives in the C structure.  Encoder (encode.c) and decoder (decode.c) walk
 * the same table.
 */
#ifndef PROTO_INTERNAL_H
#define PROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "isvd_proto.h"

#if defined(__GNUC__)
#define PROTO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PROTO_PRINTF(f, a)
#endif

enum proto_type {
	PT_NIL, PT_BOOL, PT_UINT, PT_INT, PT_F32, PT_F64,
	PT_STR, PT_BIN, PT_EXT, PT_ARRAY, PT_MAP
};

/* One msgpack header.  u/i/f/b hold scalars (PT_INT is always negative);
 * ptr/len the payload of str, bin and ext; len the count of array and map
 * (entries, not keys + values). */
struct proto_obj {
	enum proto_type type;
	bool b;
	uint64_t u;
	int64_t i;
	double f;
	const uint8_t *ptr;
	uint32_t len;
};

/* Cursor: base is the frame start (for offsets in messages), p the next
 * byte, end one past the last. */
struct proto_rd {
	const uint8_t *base, *p, *end;
	unsigned max_depth;
};

void proto_rd_init(struct proto_rd *rd, const void *buf, size_t len, unsigned max_depth);
size_t proto_rd_left(const struct proto_rd *rd);
size_t proto_rd_offset(const struct proto_rd *rd);
/* Reads one header.  BAD_REQUEST (with err filled) when truncated, when a
 * count exceeds the remaining bytes, or on the unused byte 0xc1. */
int proto_rd_obj(struct proto_rd *rd, struct proto_obj *o, struct isvd_proto_error *err);
/* Validates and skips one whole value; depth is the depth of that value
 * (the body map is 1).  BAD_REQUEST when deeper than rd->max_depth. */
int proto_rd_skip(struct proto_rd *rd, unsigned depth, struct isvd_proto_error *err);

/* Type name for messages: "a string", "an array", … */
const char *proto_type_name(enum proto_type t);
/* True when o is a number; *out gets its value as a double. */
bool proto_obj_number(const struct proto_obj *o, double *out);

/* Sets err (may be NULL) and returns code. */
int proto_fail(struct isvd_proto_error *err, int code, const char *fmt, ...) PROTO_PRINTF(3, 4);

/* Allocation goes through these two so that tests can make it fail and can
 * measure peak use (built with -DISVD_PROTO_TESTING only). */
void *proto_malloc(size_t n);
void proto_free(void *p);
#ifdef ISVD_PROTO_TESTING
extern long proto_test_fail_after;   /* < 0: never; n: the n+1-th call fails */
extern size_t proto_test_live, proto_test_peak;
#endif

/* Resolved limits (defaults filled in). */
void proto_limits(const struct isvd_proto_limits *in, struct isvd_proto_limits *out);

/* ------------------------------------------------------------ field tables */

enum proto_ftype {
	FT_U64,       /* uint64_t */
	FT_F64,       /* double; any msgpack number */
	FT_BOOL,      /* bool */
	FT_STR,       /* char *, NUL-terminated copy */
	FT_VEC,       /* struct isvd_proto_vec: array of numbers */
	FT_VEC_NIL,   /* struct isvd_proto_vec, or nil (presence in flag) */
	FT_MAT,       /* struct isvd_proto_matrix: either form; encoded as form (b) */
	FT_SPACE,     /* enum isvd_proto_space: "scores" | "u" */
	FT_UVEC,      /* struct isvd_proto_uvec: array of unsigned integers */
	FT_PUSHERS,   /* struct isvd_proto_pushers: array of {key, pushes, rows, limited_pushes,
	                 limited_rows} maps */
	FT_I64,       /* int64_t; any msgpack integer */
	FT_RAW        /* struct isvd_proto_raw: one msgpack value, its bytes as they are */
};

struct proto_field {
	const char *key;
	enum proto_ftype type;
	size_t off;         /* offset of the value in its structure */
	size_t flag_off;    /* offset of a bool set when present (and not nil); NO_FLAG for none */
	bool required;
	size_t max_len;     /* FT_STR: longest accepted string */
};
#define PROTO_NO_FLAG ((size_t)-1)

/* Field tables: requests by op (keys besides op and id), replies by op (keys
 * besides ok and id), the spectrum snapshot.  Each ends with key == NULL. */
extern const struct proto_field *const proto_request_fields[ISVD_OP_COUNT_];
extern const struct proto_field *const proto_reply_fields[ISVD_OP_COUNT_];
extern const struct proto_field proto_spectrum_fields[];
extern const struct proto_field proto_anomaly_fields[];
extern const struct proto_field proto_drift_fields[];
extern const struct proto_field proto_kafka_fields[];
extern const struct proto_field proto_kafka_partition_fields[];

/* Packs a matrix in form (b), f64, little-endian; a vector as array of
 * float64.  0 or msgpack-c's -1. */
int proto_pack_matrix(msgpack_packer *pk, const struct isvd_proto_matrix *m);
int proto_pack_vec(msgpack_packer *pk, const struct isvd_proto_vec *v);
int proto_pack_str(msgpack_packer *pk, const char *s);
/* Packs every field of table from the structure at base. */
int proto_pack_fields(msgpack_packer *pk, const struct proto_field *table, const void *base);
/* Number of keys proto_pack_fields() will write. */
size_t proto_count_fields(const struct proto_field *table, const void *base);

/* Decodes one matrix value (either form) at rd for key.  allow_empty: 0 rows
 * or 0 columns are accepted (replies).  On failure *m is untouched. */
int proto_decode_matrix(struct proto_rd *rd, const char *key, const struct isvd_proto_limits *lim,
                        bool allow_empty, struct isvd_proto_matrix *m,
                        struct isvd_proto_error *err);

#endif /* PROTO_INTERNAL_H */
