/*
 * isvd/client.h — libisvd, the C client of the isvd daemon (isvdd).  It
 * speaks wire protocol v1 (protocol/PROTOCOL.md) over ZeroMQ: pushes rows to
 * the ingest socket, asks the query socket (ping, info, project, reconstruct,
 * factors, checkpoint) and receives the snapshots of the publish socket.
 *
 * DESIGN
 *   One handle holds one ZeroMQ context and up to three sockets: a DEALER
 *   on ingest, a DEALER on query (both connected at create time; ZeroMQ
 *   connects in the background, so create succeeds while the daemon is
 *   down) and, after isvd_client_subscribe(), a SUB on publish.
 *
 *   Every request carries an `id` (a per-handle counter) so replies are
 *   matched to requests and stale replies are dropped.
 *
 *   With CURVE (options.server_key_file and client_key_file) every socket
 *   encrypts and authenticates.  A daemon that refuses the key (unknown,
 *   or not admitted on that socket) never answers: the call ends in
 *   TIMEOUT, and the message then names the keys as a possible cause.
 *   With CURVE the ingest and query sockets are connected on first use
 *   rather than at create, so a key admitted on one socket only is never
 *   presented to the other.
 *
 *   Retries follow the "Lazy Pirate" pattern: when no reply arrives within
 *   timeout_ms, the socket is closed (unsent messages dropped), a fresh one
 *   connected, and the request sent again, at most `retries` times; then the
 *   call fails with ISVD_CLIENT_TIMEOUT.  A push is resent with the same
 *   (client, batch), which the daemon applies at most once, so a push that
 *   reaches the daemon twice (the first reply lost in a stall or a restart)
 *   is answered `duplicate` with its original seq and no row is doubled.
 *
 *   Pushes are numbered by the library: every push of a handle gets the next
 *   batch number under the handle's client id.  Batch numbers start at
 *   options.first_batch, by default the current Unix time in microseconds,
 *   so that a process restarted under the same client id continues above
 *   the batches it sent before (the daemon answers a batch older than the
 *   8 it remembers per client as a duplicate, never applying it).  The default client id is random
 *   ("isvd-c-" and 16 hex digits) and so unique per handle.
 *
 *   Pipelined pushes (isvd_client_push_send) keep up to max_in_flight pushes
 *   outstanding on the ingest DEALER.  The pipeline stalls as a whole: when
 *   no ack has arrived for timeout_ms, the socket is reconnected and every
 *   outstanding push resent in order; after `retries` such resends in a row
 *   without an ack in between, every outstanding push completes with
 *   ISVD_CLIENT_TIMEOUT.  Acks go to the callback when one is set, else to a
 *   queue read with isvd_client_push_recv().
 *
 *   A push the daemon refuses RATE_LIMITED (its pusher's rate limit; nothing
 *   of it was applied) is resent by the library after the retry_after_ms the
 *   daemon gave, with the same client id and batch number, up to `retries`
 *   times per push; only then does it complete with ISVD_CLIENT_RATE_LIMITED.
 *   Meanwhile later pushes wait behind it (kept in order, the window still
 *   bounding them), and the waiting pushes go out one at a time, so that a
 *   full window does not spend its retries refused together.
 *
 * ERRORS
 *   Every function returns an isvd_client_err (ISVD_CLIENT_OK = 0).  Codes 1
 *   to 10 are the wire codes of PROTOCOL.md, in its order; the rest are
 *   local, but for ISVD_CLIENT_RATE_LIMITED, PROTOCOL.md's later wire code
 *   (numbered last, so that the earlier codes keep their values).  After a failure, isvd_client_errmsg() gives the daemon's message
 *   (for a wire code) or a local description.
 *
 * OWNERSHIP AND THREADS
 *   A handle belongs to one thread at a time: use one handle per thread (or
 *   lock around every call).  Distinct handles are independent.  Callbacks
 *   run on the calling thread, inside the libisvd call that received the
 *   ack; they must not call into the same handle.
 *   Result structures (info, projection, matrix, factors, snapshot) are
 *   filled by the library and own malloc'd buffers; the caller releases them
 *   with the matching *_fini(), after success and after failure alike.
 *   fini of a zeroed structure is a no-op, and a failed call leaves its
 *   result zeroed.  Input buffers are only read during the call.
 *
 * This header does not expose the protocol codec (isvd_proto.h); the names
 * here are prefixed isvd_client_ so that they never collide with the
 * engine's isvd_ names.
 */
#ifndef ISVD_CLIENT_H
#define ISVD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ISVD_CLIENT_VERSION "0.1.0"

/* Defaults of struct isvd_client_options. */
#define ISVD_CLIENT_DEFAULT_TIMEOUT_MS 5000
#define ISVD_CLIENT_DEFAULT_RETRIES    3
#define ISVD_CLIENT_DEFAULT_IN_FLIGHT  16

/* The one error enum of libisvd; isvd_client_strerror() gives its text and
 * isvd_client_err_name() a short upper-case name. */
typedef enum isvd_client_err {
	ISVD_CLIENT_OK = 0,
	/* wire codes, as the daemon sends them */
	ISVD_CLIENT_BAD_REQUEST,     /* the daemon could not read the request */
	ISVD_CLIENT_UNKNOWN_OP,      /* the daemon does not know the operation */
	ISVD_CLIENT_BAD_MATRIX,      /* a matrix is malformed */
	ISVD_CLIENT_DIM_MISMATCH,    /* rows are not the model's dimension */
	ISVD_CLIENT_NON_FINITE,      /* ±Inf, or a missing value the operation cannot use */
	ISVD_CLIENT_TOO_LARGE,       /* a frame or matrix exceeds the daemon's limits */
	ISVD_CLIENT_NOT_READY,       /* the model has seen no rows yet */
	ISVD_CLIENT_UNAVAILABLE,     /* the daemon cannot serve now (e.g. storage) */
	ISVD_CLIENT_UNAUTHORIZED,    /* not allowed */
	ISVD_CLIENT_INTERNAL,        /* the daemon failed, or sent a code unknown here */
	/* local */
	ISVD_CLIENT_TIMEOUT,         /* no reply after every retry */
	ISVD_CLIENT_IO,              /* a ZeroMQ call failed (bad endpoint, ...) */
	ISVD_CLIENT_NOMEM,           /* allocation failed */
	ISVD_CLIENT_INVALID,         /* a bad argument, or a call out of order */
	ISVD_CLIENT_PROTOCOL,        /* the reply could not be decoded */
	ISVD_CLIENT_RATE_LIMITED,    /* over the pusher's rate limit through every retry */
	ISVD_CLIENT_ERR_COUNT_       /* number of codes; not an error */
} isvd_client_err;

/* Text for a code ("unknown error" when out of range).  Never NULL. */
const char *isvd_client_strerror(int err);
/* "OK", "BAD_REQUEST" … "INTERNAL", "TIMEOUT", "IO", "NOMEM", "INVALID",
 * "PROTOCOL"; "UNKNOWN" out of range.  Never NULL. */
const char *isvd_client_err_name(int err);

struct isvd_client;

struct isvd_client_options {
	/* Endpoints.  NULL: the environment (ISVD_INGEST, ISVD_QUERY,
	 * ISVD_PUBLISH) when set and non-empty, else tcp://127.0.0.1:5570,
	 * :5571, :5572.  Copied at create. */
	const char *ingest, *query, *publish;
	int timeout_ms;          /* per attempt; <= 0: ISVD_CLIENT_DEFAULT_TIMEOUT_MS */
	int retries;             /* resends after a timeout; < 0 means 0 */
	const char *client_id;   /* 1..255 bytes; NULL: random "isvd-c-<16 hex>"; copied */
	uint64_t first_batch;    /* first batch number; 0: Unix time in µs */
	unsigned max_in_flight;  /* pipelined pushes outstanding; 0: ISVD_CLIENT_DEFAULT_IN_FLIGHT */
	/* CurveZMQ (the daemon's security.curve; README, Security).  Key
	 * files as `isvd keygen` writes them: server_key_file holds the
	 * daemon's PUBLIC key, client_key_file this client's SECRET key (its
	 * public key is derived from it).  NULL: the environment
	 * (ISVD_SERVER_KEY, ISVD_CLIENT_KEY) when set and non-empty.  Both
	 * unset: no CURVE.  One without the other, or a file that does not
	 * read as a key, fails create with INVALID.  Read at create. */
	const char *server_key_file, *client_key_file;
};

/* Fills *o with the defaults (NULL endpoints, default timeout, retries and
 * window, random client id). */
void isvd_client_options_init(struct isvd_client_options *o);

/* Reads a key file written by isvd_client_keygen(): one Z85 key line,
 * '#' comment lines.  secret: whether a secret key is expected (a secret
 * file given where a public key belongs is refused).  Fills z85 (40
 * characters and a NUL).  Returns OK, or IO (cannot read) / INVALID (not a
 * key) with a reason in why (may be NULL). */
int isvd_client_key_read(const char *path, bool secret, char z85[41], char *why, size_t why_size);

/* Writes a new CURVE key pair: the secret key to secret_path (created with
 * mode 0600, never overwriting an existing file) and the public key to
 * public_path (mode 0644).  public_z85 (may be NULL) receives the public
 * key.  Returns OK, INVALID (no CURVE in this libzmq) or IO (errno set;
 * EEXIST when a file exists; nothing is left behind on failure). */
int isvd_client_keygen(const char *secret_path, const char *public_path, char public_z85[41]);

/* Creates a handle and connects its ingest and query sockets.  opts NULL
 * means isvd_client_options_init()'s defaults.  On success the caller owns
 * *out and releases it with isvd_client_destroy().  Fails with INVALID for a
 * bad option, IO when ZeroMQ refuses an endpoint. */
int isvd_client_create(struct isvd_client **out, const struct isvd_client_options *opts);
/* Closes the sockets without waiting: pushes still in flight are abandoned
 * (call isvd_client_push_flush() first).  destroy(NULL) is a no-op. */
void isvd_client_destroy(struct isvd_client *c);

/* The message of the last failed call on c: the daemon's message for a wire
 * code, a local description otherwise; "" after success.  Owned by c, valid
 * until the next call on c. */
const char *isvd_client_errmsg(const struct isvd_client *c);
/* The client id pushes are sent under (owned by c). */
const char *isvd_client_id(const struct isvd_client *c);
/* The endpoint in use for "ingest", "query" or "publish" (owned by c), NULL
 * for any other name. */
const char *isvd_client_endpoint(const struct isvd_client *c, const char *which);

struct isvd_client_stats {
	uint64_t requests;       /* requests sent, first attempts only */
	uint64_t resends;        /* requests sent again after a timeout */
	uint64_t reconnects;     /* sockets closed and connected again */
	uint64_t acks;           /* push replies received */
	uint64_t duplicates;     /* push replies saying `duplicate` */
	/* added in 0.2 (the struct grew): */
	uint64_t rate_limited;   /* push replies saying RATE_LIMITED (each resent or failed) */
};
void isvd_client_get_stats(const struct isvd_client *c, struct isvd_client_stats *st);

/* ------------------------------------------------------------------ push */

enum isvd_client_dtype {
	ISVD_CLIENT_F64 = 0,     /* rows point to double */
	ISVD_CLIENT_F32 = 1      /* rows point to float */
};

/* One push: nrows × dim values, row-major.  NaN is a missing value (which
 * the daemon may refuse).  client NULL: the handle's id.  has_batch false:
 * the handle's next batch number. */
struct isvd_client_batch {
	const void *rows;
	size_t nrows, dim;
	enum isvd_client_dtype dtype;
	const char *client;
	bool has_batch;
	uint64_t batch;
	void *user;              /* handed back in the ack */
};

/* The outcome of one push. */
struct isvd_client_ack {
	int err;                 /* ISVD_CLIENT_OK, or why this push failed */
	uint64_t batch;          /* the batch number it was sent with */
	uint64_t accepted;       /* rows applied by it (0 for a duplicate) */
	uint64_t seq;            /* seq of its last row (0: a duplicate too old to be known) */
	bool duplicate;          /* the daemon had applied this (client, batch) before */
	void *user;              /* from the batch */
	char message[256];       /* the daemon's message when err is a wire code */
};

typedef void (*isvd_client_ack_fn)(const struct isvd_client_ack *ack, void *user);

/* Pushes and waits for its ack, retrying as the DESIGN says.  Returns the
 * push's outcome (ack->err); ack may be NULL.  Acks of pipelined pushes that
 * arrive meanwhile go to the callback or the queue as usual. */
int isvd_client_push(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                     struct isvd_client_ack *ack);
int isvd_client_push_f32(struct isvd_client *c, const float *rows, size_t nrows, size_t dim,
                         struct isvd_client_ack *ack);
int isvd_client_push_batch(struct isvd_client *c, const struct isvd_client_batch *b,
                           struct isvd_client_ack *ack);

/* Pipelined push: encodes and sends b, first waiting (and handling acks)
 * while max_in_flight pushes are outstanding.  *batch_out (may be NULL)
 * receives the batch number used.  Returns OK once sent; the push's outcome
 * comes later as an ack.  Fails with TIMEOUT when the window stayed full
 * through every retry (the outstanding pushes then complete with TIMEOUT). */
int isvd_client_push_send(struct isvd_client *c, const struct isvd_client_batch *b,
                          uint64_t *batch_out);
/* Sets (or, with fn NULL, clears) the ack callback.  Acks already queued
 * stay in the queue. */
void isvd_client_set_ack_callback(struct isvd_client *c, isvd_client_ack_fn fn, void *user);
/* The next ack from the queue, waiting at most timeout_ms (< 0: as long as
 * pushes are outstanding).  Returns OK with *ack filled (ack->err is that
 * push's outcome), TIMEOUT when none came in time, INVALID when nothing is
 * queued or outstanding. */
int isvd_client_push_recv(struct isvd_client *c, struct isvd_client_ack *ack, int timeout_ms);
/* Waits until no push is outstanding (acks go to the callback or queue).
 * Returns OK, or TIMEOUT when the pipeline stalled through every retry. */
int isvd_client_push_flush(struct isvd_client *c);
/* Pushes outstanding, and acks waiting in the queue. */
size_t isvd_client_in_flight(const struct isvd_client *c);
size_t isvd_client_acks_queued(const struct isvd_client *c);

/* ---------------------------------------------------------------- queries */

/* Row-major rows × cols; value (i, j) is data[i * cols + j]. */
struct isvd_client_matrix {
	double *data;
	size_t rows, cols;
};
void isvd_client_matrix_fini(struct isvd_client_matrix *m);

/* ping: the daemon's version ("x.y.z", NUL-terminated) and protocol. */
int isvd_client_ping(struct isvd_client *c, char *version, size_t version_size, uint64_t *protocol);

/* One pusher's counters (info): pushes and rows its rate limit let through,
 * and pushes and rows refused RATE_LIMITED. */
struct isvd_client_pusher {
	char key[256];
	uint64_t pushes, rows, limited_pushes, limited_rows;
};

struct isvd_client_info {
	uint64_t dim, rank, rank_max, rows_seen, seq;
	double *sigma;           /* rank values, non-increasing; owned */
	size_t nsigma;
	double explained_energy_ratio, condition_number, orthogonality_error;
	bool center;
	double forget;
	char mode[16];           /* "exact", "truncated", or "" (no model yet, or a value
	                            this library does not know) */
	uint64_t last_checkpoint_seq;
	double uptime_s, ingest_rows_per_s;
	/* added in 0.2 (the struct grew): */
	char missing[8];         /* "reject", "impute", or "" (an older daemon, or a
	                            value this library does not know) */
	bool has_gaps;           /* the daemon reported the two counts below */
	uint64_t rows_with_gaps, values_imputed;   /* since the daemon started */
	/* monitoring daemons (has_monitor): PROTOCOL.md's info keys */
	bool has_monitor;
	double spe_limit, t2_limit;
	uint64_t rows_flagged, anomaly_messages, anomaly_messages_dropped, baseline_seq;
	double drift_prev_deg, drift_baseline_deg;   /* NaN: not measured yet */
	double *gap, *stable;    /* nsigma values each (owned), or NULL */
	/* added in 0.2: per pusher (its CURVE key in Z85, else its client id;
	 * "-" without one, "*" the shared bucket), most rows first, since the
	 * daemon started; NULL and 0 from a daemon that does not send them */
	struct isvd_client_pusher *pushers;   /* owned */
	size_t npushers;
};
int isvd_client_info(struct isvd_client *c, struct isvd_client_info *info);
void isvd_client_info_fini(struct isvd_client_info *info);

enum isvd_client_space {
	ISVD_CLIENT_SCORES = 0,  /* Vₖᵀ(x − μ) */
	ISVD_CLIENT_U = 1        /* Σₖ⁺Vₖᵀ(x − μ) */
};

struct isvd_client_projection {
	struct isvd_client_matrix coords;   /* nrows × k */
	double *residual;                   /* nrows values */
	size_t nresidual;
	uint64_t seq;
	uint64_t *observed;                 /* nrows values: how many values each residual
	                                       covers; NULL when no row had a gap (then all
	                                       dim).  Added in 0.2: the struct grew. */
};
/* Projects nrows × dim rows (row-major doubles).  Missing values (gaps) are
 * NaN, in any query and in pushes to a daemon with model.missing: impute;
 * ±Inf is refused (NON_FINITE).  A row with gaps is first completed by the
 * estimator the daemon imputes with, then projected; its residual covers
 * its observed values only (see observed).  A row whose every value is NaN
 * is refused (BAD_MATRIX). */
int isvd_client_project(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                        enum isvd_client_space space, struct isvd_client_projection *out);
void isvd_client_projection_fini(struct isvd_client_projection *p);

/* Reconstructs nrows × dim rows into *out (nrows × dim); *seq may be NULL.
 * Rows may have gaps (NaN), as for isvd_client_project(). */
int isvd_client_reconstruct(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                            struct isvd_client_matrix *out, uint64_t *seq);
/* Gap filling: *out (nrows × dim) is rows with every observed value kept
 * bit for bit and each gap (NaN) filled by the estimator the daemon imputes
 * with at ingest (`reconstruct` with `fill: true`); *seq may be NULL. */
int isvd_client_reconstruct_fill(struct isvd_client *c, const double *rows, size_t nrows,
                                 size_t dim, struct isvd_client_matrix *out, uint64_t *seq);

struct isvd_client_factors {
	double *sigma;                      /* k values */
	size_t k;
	struct isvd_client_matrix vt;       /* k × dim */
	double *mean;                       /* dim values; NULL when the model does not centre */
	size_t dim;
	uint64_t seq;
};
int isvd_client_factors(struct isvd_client *c, struct isvd_client_factors *f);
void isvd_client_factors_fini(struct isvd_client_factors *f);

/* Asks for a durable checkpoint; *seq (may be NULL) is the row it covers. */
int isvd_client_checkpoint(struct isvd_client *c, uint64_t *seq);

/* -------------------------------------------------------------- snapshots */

enum isvd_client_topic {
	ISVD_CLIENT_TOPIC_SPECTRUM = 1,
	ISVD_CLIENT_TOPIC_FACTORS = 2,
	ISVD_CLIENT_TOPIC_ANOMALY = 4,   /* monitoring daemons: rows over a control limit */
	ISVD_CLIENT_TOPIC_DRIFT = 8      /* monitoring daemons: the subspace left the baseline */
};

/* A published snapshot.  spectrum: seq, rows_seen, sigma,
 * explained_energy_ratio, t.  factors: seq, sigma, vt, mean (NULL when not
 * centring), dim.  anomaly: flagged_seq, spe, t2, nflagged, the limits, t
 * (seq: the last flagged row).  drift: seq, angle_deg, threshold_deg,
 * baseline_seq, exceeded, t.  Fields marked "added in 0.2" below. */
struct isvd_client_snapshot {
	enum isvd_client_topic topic;
	uint64_t seq, rows_seen;
	double *sigma;
	size_t k;
	double explained_energy_ratio;
	double t;                           /* Unix time, seconds */
	struct isvd_client_matrix vt;
	double *mean;
	size_t dim;
	/* added in 0.2 (the struct grew): spectrum, when the daemon sent them */
	bool has_gaps;
	uint64_t rows_with_gaps, values_imputed;   /* since the daemon started */
	/* spectrum and factors from monitoring daemons (has_monitor): per
	 * component 1 stable, 0 not (k values, owned); spectrum: the drift
	 * angles in degrees (NaN: not measured yet) */
	bool has_monitor;
	double *stable;
	double drift_prev_deg, drift_baseline_deg;
	/* anomaly: the flagged rows' positions, SPE and T² (nflagged each,
	 * owned), and the limits; t as above */
	uint64_t *flagged_seq;
	double *spe, *t2;
	size_t nflagged;
	double spe_limit, t2_limit;
	/* drift: seq, the angle, the threshold, the baseline's seq, and whether
	 * the angle went over (true) or back under (false) */
	double angle_deg, threshold_deg;
	uint64_t baseline_seq;
	bool exceeded;
};
void isvd_client_snapshot_fini(struct isvd_client_snapshot *s);

/* Subscribes to topics (a mask of isvd_client_topic), connecting the SUB
 * socket on first use.  Calling it again adds topics.  Snapshots published
 * before the subscription reaches the daemon are not seen (ZeroMQ's "slow
 * joiner"). */
int isvd_client_subscribe(struct isvd_client *c, unsigned topics);
/* The next snapshot, waiting at most timeout_ms (< 0: forever).  Returns OK,
 * TIMEOUT, INVALID before isvd_client_subscribe(), PROTOCOL for a body that
 * cannot be decoded (skip it and call again). */
int isvd_client_snapshot_recv(struct isvd_client *c, struct isvd_client_snapshot *s, int timeout_ms);

typedef int (*isvd_client_snapshot_fn)(const struct isvd_client_snapshot *s, void *user);
/* Calls fn for each snapshot until fn returns non-zero, count snapshots were
 * seen (0: no limit) or timeout_ms passed in all (< 0: no limit).  Returns
 * OK when fn stopped it or count was reached, TIMEOUT otherwise. */
int isvd_client_snapshot_loop(struct isvd_client *c, size_t count, int timeout_ms,
                              isvd_client_snapshot_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_CLIENT_H */
