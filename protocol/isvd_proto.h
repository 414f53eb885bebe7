/*
 * isvd_proto.h — wire protocol v1: msgpack codec for requests, replies and
 * published snapshots.  protocol/PROTOCOL.md is the normative description;
 * this header is its C binding, shared by the daemon and the C client.
 *
 * The codec knows nothing of sockets or of the model.  Matrices cross this
 * API as row-major double arrays with explicit rows and cols; a missing value
 * (msgpack nil, or NaN on the wire) is NaN.
 *
 * DESIGN
 *   Encoding uses msgpack-c's packer.  Decoding never hands untrusted bytes to
 *   msgpack-c: a small bounds-checked reader (proto_rd, reader.c) walks the
 *   frame twice.  The first walk checks that the frame is exactly one
 *   well-formed value, that every array/map/str/bin/ext count fits in the
 *   bytes that remain, and that nesting stays under limits->max_depth; it
 *   allocates nothing.  The second walk decodes against a per-op schema (one
 *   field table, shared with the encoder so key order cannot drift) and
 *   allocates only after a matrix has been fully validated.  Every decoded
 *   value costs at most 8 bytes per wire byte, so a decode holds at most
 *   9 × the frame length + a few hundred bytes, whatever the headers claim.
 *
 * ERRORS AND OWNERSHIP
 *   Every function returns an isvd_proto_err (ISVD_PROTO_OK = 0).  Decoders
 *   also fill a struct isvd_proto_error whose message names the key, row and
 *   column at fault; it is the text to send back in an error reply.
 *   Structures filled by a decoder own their buffers; release them with the
 *   matching *_fini(), after success and after failure alike (fini of a
 *   zeroed structure is a no-op).  Structures the caller fills for an encoder
 *   only lend their pointers: never pass those to *_fini().
 *   Encoders return a malloc'd buffer in *out; the caller frees it with free().
 *   Nothing here keeps global state; distinct structures may be used from
 *   distinct threads.
 */
#ifndef ISVD_PROTO_H
#define ISVD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ISVD_PROTO_VERSION 1

/* Default endpoints and publish topics (PROTOCOL.md, "Sockets"). */
#define ISVD_PROTO_INGEST_ENDPOINT  "tcp://127.0.0.1:5570"
#define ISVD_PROTO_QUERY_ENDPOINT   "tcp://127.0.0.1:5571"
#define ISVD_PROTO_PUBLISH_ENDPOINT "tcp://127.0.0.1:5572"
#define ISVD_PROTO_TOPIC_SPECTRUM   "spectrum"
#define ISVD_PROTO_TOPIC_FACTORS    "factors"
#define ISVD_PROTO_TOPIC_ANOMALY    "anomaly"
#define ISVD_PROTO_TOPIC_DRIFT      "drift"

/* Schema bounds that are not configurable. */
#define ISVD_PROTO_MAX_CLIENT  255   /* bytes in a push's `client` */
#define ISVD_PROTO_MAX_STRING  4096  /* bytes in an error message (a version: 64) */

/* The protocol module's one error enum; isvd_proto_strerror() gives its text
 * and isvd_proto_err_name() its wire code.  Codes 1..11 are the wire codes of
 * PROTOCOL.md in that order (RATE_LIMITED came last, after INTERNAL, so the
 * first ten keep their values); the last two are local and travel as
 * INTERNAL. */
typedef enum isvd_proto_err {
	ISVD_PROTO_OK = 0,
	ISVD_PROTO_BAD_REQUEST,   /* not msgpack, not a map, trailing bytes, missing/ill-typed/unknown key */
	ISVD_PROTO_UNKNOWN_OP,    /* `op` names no operation */
	ISVD_PROTO_BAD_MATRIX,    /* a matrix is malformed: wrong types, ragged rows, shape/data mismatch */
	ISVD_PROTO_DIM_MISMATCH,  /* rows do not have the model's dimension (daemon) */
	ISVD_PROTO_NON_FINITE,    /* a value is ±Inf, or NaN where missing values are not allowed */
	ISVD_PROTO_TOO_LARGE,     /* a frame or matrix exceeds the configured limits */
	ISVD_PROTO_NOT_READY,     /* the model has no rows yet (daemon) */
	ISVD_PROTO_UNAVAILABLE,   /* e.g. storage failing (daemon) */
	ISVD_PROTO_UNAUTHORIZED,  /* (daemon) */
	ISVD_PROTO_INTERNAL,      /* a bug or an unexpected failure */
	ISVD_PROTO_RATE_LIMITED,  /* the pusher's rate limit: resend after retry_after_ms (daemon) */
	ISVD_PROTO_NOMEM,         /* local: allocation failed; sent as INTERNAL */
	ISVD_PROTO_INVALID,       /* local: a caller passed a bad argument to the codec */
	ISVD_PROTO_ERR_COUNT_     /* number of codes; not an error */
} isvd_proto_err;

/* Human text for a code ("unknown error" when out of range). */
const char *isvd_proto_strerror(int err);
/* Wire code for a code: "BAD_REQUEST" … "INTERNAL"; local codes give
 * "INTERNAL"; ISVD_PROTO_OK gives "OK".  Never NULL. */
const char *isvd_proto_err_name(int err);
/* The code for a wire code of len bytes; ISVD_PROTO_INTERNAL when unknown
 * (a newer daemon may add codes). */
int isvd_proto_err_from_name(const char *name, size_t len);

/* What a decoder reports on failure: code plus a message that says what was
 * wrong and where, e.g. "rows: row 3 has 63 values; row 0 has 64". */
struct isvd_proto_error {
	int code;
	char message[256];
};

enum isvd_proto_op {
	ISVD_OP_NONE = 0,
	ISVD_OP_PUSH,         /* ingest socket */
	ISVD_OP_PING,         /* query socket from here on */
	ISVD_OP_INFO,
	ISVD_OP_PROJECT,
	ISVD_OP_RECONSTRUCT,
	ISVD_OP_FACTORS,
	ISVD_OP_CHECKPOINT,
	ISVD_OP_BASELINE,   /* the monitor's drift baseline := the model now */
	ISVD_OP_COUNT_
};

/* "push", "ping", …; NULL for ISVD_OP_NONE or out of range. */
const char *isvd_proto_op_name(enum isvd_proto_op op);

enum isvd_proto_space {
	ISVD_PROTO_SPACE_SCORES = 0,  /* Vₖᵀ(x − μ) */
	ISVD_PROTO_SPACE_U = 1        /* Σₖ⁺Vₖᵀ(x − μ) */
};

/* Decoder limits.  Zero in any field means its default; a NULL limits
 * pointer means all defaults. */
struct isvd_proto_limits {
	size_t max_frame;     /* bytes in a frame; default 256 MiB → TOO_LARGE */
	size_t max_rows;      /* rows in one matrix; default 1 << 24 */
	size_t max_cols;      /* columns in one matrix; default 1 << 24 */
	size_t max_values;    /* rows × cols in one matrix; default 1 << 25 */
	unsigned max_depth;   /* nesting of arrays/maps, the body map is 1; default 16, kept in [3, 64] */
};

/* Row-major rows × cols matrix: value (i, j) is data[i * cols + j].
 * Missing values are NaN; n_missing counts them (decoder only). */
struct isvd_proto_matrix {
	double *data;
	size_t rows, cols;
	size_t n_missing;
};

/* A vector of float64. */
struct isvd_proto_vec {
	double *v;
	size_t n;
};

/* An array of unsigned integers (row sequence numbers). */
struct isvd_proto_uvec {
	uint64_t *v;
	size_t n;
};

/* One pusher's counters in `info` (PROTOCOL.md): who (the Z85 public key
 * under CURVE, else the client id; "-" for pushes without one; "*" for the
 * shared bucket of pushers beyond the daemon's table) and since when the
 * daemon started, its pushes and rows let through and refused RATE_LIMITED.
 * Decoded entries own key. */
struct isvd_proto_pusher {
	char *key;
	uint64_t pushes, rows, limited_pushes, limited_rows;
};
struct isvd_proto_pushers {
	struct isvd_proto_pusher *v;
	size_t n;
};

/* One msgpack value kept as its bytes (info's `kafka` map, which
 * isvd_proto_kafka_encode() writes). */
struct isvd_proto_raw {
	uint8_t *p;
	size_t n;
};

/* Decodes buf, exactly one msgpack value holding a non-empty matrix in
 * either form (PROTOCOL.md, "Matrices"), into *m: the messages of a Kafka
 * topic of rows (isvdd, kafka.format msgpack).  The checks and limits are a
 * request matrix's; err names the row and column at fault.  Release *m
 * with isvd_proto_matrix_fini() whatever this returns. */
int isvd_proto_matrix_decode(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                             struct isvd_proto_matrix *m, struct isvd_proto_error *err);
void isvd_proto_matrix_fini(struct isvd_proto_matrix *m);

/* ---------------------------------------------------------------- requests */

/* A decoded request, or a request to encode.  `id` is the raw msgpack
 * encoding of the request's id value (NULL when absent); a reply echoes those
 * bytes verbatim. */
struct isvd_proto_request {
	enum isvd_proto_op op;
	uint8_t *id;
	size_t id_len;
	struct isvd_proto_matrix rows;   /* push, project, reconstruct */
	char *client;                    /* push: NULL when absent; 1..255 bytes, no NUL */
	bool has_batch;                  /* push: `batch` was given */
	uint64_t batch;
	enum isvd_proto_space space;     /* project: SCORES when absent */
	bool has_scores;                 /* push: `scores` was given (encode: write it) */
	bool scores;                     /* push: true = the ack carries spe and t2 */
	bool has_fill;                   /* reconstruct: `fill` was given (encode: write it) */
	bool fill;                       /* reconstruct: true = fill only the gaps */
};

/* Decodes one request frame.  On success *req holds the request; request
 * matrices are non-empty and hold no ±Inf (NaN/nil are missing values,
 * counted in rows.n_missing; the daemon decides whether it accepts them).
 * On failure err says why, and req->id still holds the id if the frame got
 * far enough to read it, so the error reply can echo it.  Either way the
 * caller releases *req with isvd_proto_request_fini().  err may be NULL. */
int isvd_proto_request_decode(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                              struct isvd_proto_request *req, struct isvd_proto_error *err);
/* Frees what a decoder stored in *req and zeroes it.  fini(NULL) is a no-op. */
void isvd_proto_request_fini(struct isvd_proto_request *req);
/* Encodes *req (matrices in form (b), f64; NaN stays NaN).  `client`,
 * `batch`, `space` and `id` are written only when set (space only when U).
 * The caller frees *out with free(). */
int isvd_proto_request_encode(const struct isvd_proto_request *req, uint8_t **out, size_t *out_len);

/* ----------------------------------------------------------------- replies */

/* A reply to op.  ok = false: error_code and error_message are set (a
 * conforming peer sends no results with them).  ok = true: the fields of op
 * are set (PROTOCOL.md lists them); the others stay zero.  Fields are grouped
 * by the ops that use them.  For encoding, error_message may be NULL (the
 * code's isvd_proto_strerror() text is sent). */
struct isvd_proto_reply {
	enum isvd_proto_op op;
	bool ok;
	uint8_t *id;                     /* raw msgpack of the request's id; NULL = none */
	size_t id_len;
	int error_code;                  /* !ok: an isvd_proto_err wire code */
	char *error_message;             /* !ok */
	uint64_t retry_after_ms;         /* !ok, RATE_LIMITED: wait this long before resending */

	uint64_t seq;                    /* push, info, project, reconstruct, factors, checkpoint */
	uint64_t accepted;               /* push */
	bool duplicate;                  /* push */
	char *version;                   /* ping: "x.y.z" */
	uint64_t protocol;               /* ping: 1 */
	uint64_t dim, rank, rank_max, rows_seen, last_checkpoint_seq;   /* info */
	double explained_energy_ratio, condition_number, orthogonality_error,
	       forget, uptime_s, ingest_rows_per_s;                    /* info */
	bool center;                     /* info */
	char *mode;                      /* info: "exact" | "truncated" (optional on the wire) */
	char *missing;                   /* info: "reject" | "impute" (optional on the wire) */
	bool has_gaps;                   /* info: rows_with_gaps and values_imputed present */
	uint64_t rows_with_gaps, values_imputed;   /* info: since the daemon started */
	bool has_monitor;                /* info, factors: the monitor's keys present */
	double spe_limit, t2_limit;      /* info: the control limits now; push (scores):
	                                    those its rows were held to (inf: none yet) */
	uint64_t rows_flagged, anomaly_messages, anomaly_messages_dropped;   /* info */
	double drift_prev_deg, drift_baseline_deg;   /* info (NaN: not measured yet) */
	uint64_t baseline_seq;           /* info: rows when the baseline was taken (0: none) */
	struct isvd_proto_vec gap;       /* info: each component's relative spectral gap */
	struct isvd_proto_vec stable;    /* info, factors: 1 stable, 0 not, per component */
	bool has_kafka;                  /* info: a shard's or a merger's `kafka` map present */
	struct isvd_proto_raw kafka;     /* info: that map (isvd_proto_kafka_encode()) */
	struct isvd_proto_vec sigma;     /* info, factors */
	struct isvd_proto_matrix coords; /* project: r × k */
	struct isvd_proto_vec residual;  /* project: r */
	bool has_observed;               /* project: observed present (some row had a gap) */
	struct isvd_proto_vec observed;  /* project: r observed-value counts */
	bool has_scores;                 /* push (scores: true), project: spe and t2 present */
	struct isvd_proto_vec spe, t2;   /* per row: the anomaly statistics */
	struct isvd_proto_matrix rows;   /* reconstruct: r × n */
	struct isvd_proto_matrix vt;     /* factors: k × n */
	bool has_mean;                   /* factors: false encodes `mean: nil` */
	struct isvd_proto_vec mean;      /* factors: n */
	bool has_pushers;                /* info: pushers present */
	struct isvd_proto_pushers pushers;   /* info: per-pusher counters */
};

/* Encodes a reply; the `factors` publish body is the encoding of a factors
 * reply without id.  Key order is fixed (PROTOCOL.md), so equal replies give
 * equal bytes.  The caller frees *out with free(). */
int isvd_proto_reply_encode(const struct isvd_proto_reply *rep, uint8_t **out, size_t *out_len);
/* Encodes an error reply {ok: false, id?, error: {code, message}}.  id/id_len
 * are the raw id bytes from the request (NULL for none); code is any
 * isvd_proto_err except OK.  The caller frees *out with free(). */
int isvd_proto_error_encode(const uint8_t *id, size_t id_len, int code, const char *message,
                            uint8_t **out, size_t *out_len);
/* The same with retry_after_ms, which the error map carries (third key)
 * when code is ISVD_PROTO_RATE_LIMITED and ignores otherwise. */
int isvd_proto_error_encode_retry(const uint8_t *id, size_t id_len, int code, const char *message,
                                  uint64_t retry_after_ms, uint8_t **out, size_t *out_len);
/* Decodes a reply to op (the client knows what it asked).  Unknown keys are
 * skipped, so a newer daemon may add result fields.  The caller releases
 * *rep with isvd_proto_reply_fini() whatever this returns. */
int isvd_proto_reply_decode(const void *buf, size_t len, enum isvd_proto_op op,
                            const struct isvd_proto_limits *lim, struct isvd_proto_reply *rep,
                            struct isvd_proto_error *err);
void isvd_proto_reply_fini(struct isvd_proto_reply *rep);

/* -------------------------------------------------------------- kafka info */

/* info's `kafka` map on a daemon that is a shard or a merger (README,
 * "Scale-out with Kafka"): the role, and per partition of the rows topic
 * what the shard holds or the merger merges.  Offsets are the rows topic's;
 * -1 stands for none. */
struct isvd_proto_kafka_partition {
	uint64_t partition;
	uint64_t rows;                   /* rows in its model */
	int64_t folded_offset;           /* the last offset folded into its model */
	uint64_t undecodable;            /* messages skipped (in its image's lineage) */
	bool has_shard;                  /* the shard's keys below present */
	int64_t image_offset;            /* shard: folded_offset of its last published image */
	int64_t lag;                     /* shard: messages after folded_offset (-1: unknown) */
	bool has_merge;                  /* the merger's key below present */
	double image_age_s;              /* merger: age of the image it merges (its timestamp) */
};
struct isvd_proto_kafka {
	char *role;                      /* "shard" | "merge" */
	char *topic, *changelog_topic;
	char *group;                     /* shard only (NULL: absent) */
	char *ingest;                    /* why the ingest socket is not bound */
	uint64_t partitions;             /* entries of part */
	uint64_t rows;                   /* Σ rows */
	uint64_t images;                 /* shard: published (acknowledged); merger: read */
	uint64_t images_failed;          /* shard: not published; merger: refused (damaged, other settings) */
	bool has_shard;                  /* the shard's key below present */
	uint64_t dead_lettered;          /* shard: messages it produced to the dead-letter topic */
	bool has_merge;                  /* the merger's key below present */
	double oldest_image_age_s;       /* merger: the oldest image merged (0: none) */
	struct isvd_proto_kafka_partition *part;
};
/* Encodes *k as one msgpack map for isvd_proto_reply.kafka.  The caller
 * frees *out with free(). */
int isvd_proto_kafka_encode(const struct isvd_proto_kafka *k, uint8_t **out, size_t *out_len);

/* --------------------------------------------------------------- snapshots */

/* Body of the `spectrum` topic. */
struct isvd_proto_spectrum {
	uint64_t seq;
	uint64_t rows_seen;
	struct isvd_proto_vec sigma;
	double explained_energy_ratio;
	double t;                        /* Unix time, seconds */
	bool has_gaps;                   /* rows_with_gaps and values_imputed present */
	uint64_t rows_with_gaps, values_imputed;   /* since the daemon started */
	bool has_monitor;                /* the monitor's keys below present */
	double drift_prev_deg;           /* largest principal angle to the last snapshot's subspace */
	double drift_baseline_deg;       /* … to the baseline's (NaN: none yet) */
	struct isvd_proto_vec stable;    /* per reported component: 1 stable, 0 not */
};

int isvd_proto_spectrum_encode(const struct isvd_proto_spectrum *s, uint8_t **out, size_t *out_len);

/* Body of the `anomaly` topic: the rows of one block over a control limit,
 * with their statistics and the limits they were held to. */
struct isvd_proto_anomaly {
	struct isvd_proto_uvec seq;      /* each row's position in the stream */
	struct isvd_proto_vec spe, t2;   /* as many as seq */
	double spe_limit, t2_limit;
	double t;                        /* Unix time, seconds */
};
int isvd_proto_anomaly_encode(const struct isvd_proto_anomaly *a, uint8_t **out, size_t *out_len);
/* Unknown keys are skipped.  Release with isvd_proto_anomaly_fini(). */
int isvd_proto_anomaly_decode(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                              struct isvd_proto_anomaly *a, struct isvd_proto_error *err);
void isvd_proto_anomaly_fini(struct isvd_proto_anomaly *a);

/* Body of the `drift` topic: the angle to the baseline crossed the
 * threshold (exceeded: true), or fell back below it (false). */
struct isvd_proto_drift {
	uint64_t seq;                    /* rows when measured */
	double angle_deg, threshold_deg;
	uint64_t baseline_seq;           /* rows when the baseline was taken */
	bool exceeded;
	double t;
};
int isvd_proto_drift_encode(const struct isvd_proto_drift *d, uint8_t **out, size_t *out_len);
int isvd_proto_drift_decode(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                            struct isvd_proto_drift *d, struct isvd_proto_error *err);
/* Unknown keys are skipped.  Release with isvd_proto_spectrum_fini(). */
int isvd_proto_spectrum_decode(const void *buf, size_t len, const struct isvd_proto_limits *lim,
                               struct isvd_proto_spectrum *s, struct isvd_proto_error *err);
void isvd_proto_spectrum_fini(struct isvd_proto_spectrum *s);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_PROTO_H */
