/*
 * client.c — libisvd: handles, sockets, request/reply with Lazy Pirate
 * retries, the push pipeline and snapshots.  The public contract is
 * include/isvd/client.h; bodies are encoded and decoded by the shared codec
 * (protocol/isvd_proto.h), never by hand, except the request `id`, which is
 * the fixed 9-byte msgpack uint64 this file writes and reads back.
 *
 * DESIGN
 *   Query calls are synchronous: send, poll up to timeout_ms, on expiry
 *   reconnect and resend (query_call).  Replies whose id is not the one
 *   awaited are stale and dropped.
 *
 *   The ingest side is a window of outstanding pushes (struct flight, oldest
 *   first), each keeping its encoded frame for resending.  ingest_pump() is
 *   the one loop that receives acks and handles stalls:
 *
 *     send ──► flight[] ──ack──► deliver(): sync waiter │ callback │ queue
 *                 │
 *                 └─ no ack for timeout_ms ─► reconnect, resend all (stall++)
 *                    stall > retries ─► every flight completes with TIMEOUT
 *                 └─ RATE_LIMITED ─► deferred (due = now + retry_after_ms,
 *                    hold = the latest due) ─send_due()─► resent, one
 *                    deferred flight out at a time; limited > retries ─►
 *                    completes with RATE_LIMITED
 *
 *   A deferred flight is off the wire: the stall clock and resend_all()
 *   concern the flights on it only.  While a flight is deferred or the
 *   hold runs, a new push joins the deferred ones instead of going out, so
 *   pushes keep their order and a rate-limited pipeline does not hammer.
 *
 *   INVARIANTS: nfl ≤ max_in_flight; flights are in send order; an ack
 *   received resets `stalls` to 0 and `progress` to now; at most one
 *   deferred flight is out again at a time (probing).
 */
#include "isvd/client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "isvd_keyfile.h"
#include "isvd_proto.h"

_Static_assert((int)ISVD_CLIENT_INTERNAL == (int)ISVD_PROTO_INTERNAL,
               "client codes 1..10 are the protocol's wire codes");

/* ------------------------------------------------------------------ errors */

static const struct {
	const char *name, *text;
} err_table[ISVD_CLIENT_ERR_COUNT_] = {
	[ISVD_CLIENT_OK] = { "OK", "success" },
	[ISVD_CLIENT_BAD_REQUEST] = { "BAD_REQUEST", "the daemon could not read the request" },
	[ISVD_CLIENT_UNKNOWN_OP] = { "UNKNOWN_OP", "unknown operation" },
	[ISVD_CLIENT_BAD_MATRIX] = { "BAD_MATRIX", "malformed matrix" },
	[ISVD_CLIENT_DIM_MISMATCH] = { "DIM_MISMATCH", "rows are not the model's dimension" },
	[ISVD_CLIENT_NON_FINITE] = { "NON_FINITE", "infinite or missing value" },
	[ISVD_CLIENT_TOO_LARGE] = { "TOO_LARGE", "request exceeds the daemon's limits" },
	[ISVD_CLIENT_NOT_READY] = { "NOT_READY", "the model has seen no rows yet" },
	[ISVD_CLIENT_UNAVAILABLE] = { "UNAVAILABLE", "the daemon cannot serve now" },
	[ISVD_CLIENT_UNAUTHORIZED] = { "UNAUTHORIZED", "not allowed" },
	[ISVD_CLIENT_INTERNAL] = { "INTERNAL", "internal error in the daemon" },
	[ISVD_CLIENT_TIMEOUT] = { "TIMEOUT", "no reply from the daemon" },
	[ISVD_CLIENT_IO] = { "IO", "socket error" },
	[ISVD_CLIENT_NOMEM] = { "NOMEM", "out of memory" },
	[ISVD_CLIENT_INVALID] = { "INVALID", "invalid argument" },
	[ISVD_CLIENT_PROTOCOL] = { "PROTOCOL", "undecodable reply" },
	[ISVD_CLIENT_RATE_LIMITED] = { "RATE_LIMITED", "over the pusher's rate limit" },
};

const char *isvd_client_strerror(int err)
{
	if (err < 0 || err >= ISVD_CLIENT_ERR_COUNT_)
		return "unknown error";
	return err_table[err].text;
}

const char *isvd_client_err_name(int err)
{
	if (err < 0 || err >= ISVD_CLIENT_ERR_COUNT_)
		return "UNKNOWN";
	return err_table[err].name;
}

/* ------------------------------------------------------------------ handle */

struct flight {                      /* one outstanding push */
	uint64_t id;
	uint64_t batch;
	void *user;
	uint8_t *frame;                  /* owned: the encoded request */
	size_t len;
	int64_t due_ms;                  /* deferred (RATE_LIMITED) until then; 0: on the wire */
	int limited;                     /* RATE_LIMITED replies so far */
};

struct isvd_client {
	void *ctx;
	void *ingest, *query, *sub;
	char *ep_ingest, *ep_query, *ep_publish;
	int timeout_ms, retries;
	char client_id[ISVD_PROTO_MAX_CLIENT + 1];
	uint64_t next_batch;
	uint64_t next_id;

	struct flight *fl;               /* max_in_flight slots, oldest first */
	size_t nfl, max_fl;
	unsigned stalls;
	int64_t progress_ms;
	int64_t hold_ms;                 /* no deferred flight goes out before then */
	bool probing;                    /* a deferred flight is out again: probe_id */
	uint64_t probe_id;

	struct isvd_client_ack *q;       /* ack queue: ring */
	size_t qhead, qlen, qcap;
	isvd_client_ack_fn cb;
	void *cb_user;

	uint64_t want_id;                /* sync push awaiting this id (0: none) */
	bool want_done;
	struct isvd_client_ack want_ack;

	struct isvd_client_stats st;
	char errmsg[512];

	bool curve;                      /* CURVE keys below are set */
	char server_pub[41], client_pub[41], client_sec[41];
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records err with a formatted message on c and returns err. */
static int fail(struct isvd_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
	va_end(ap);
	return err;
}

static int ok(struct isvd_client *c)
{
	c->errmsg[0] = '\0';
	return ISVD_CLIENT_OK;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static const char *pick_endpoint(const char *given, const char *env, const char *def)
{
	if (given)
		return given;
	const char *e = getenv(env);
	return e && *e ? e : def;
}

static uint64_t random_u64(void)
{
	uint64_t v = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, &v, sizeof v);
		close(fd);
		if (n == (ssize_t)sizeof v)
			return v;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^
	       (uint64_t)(uintptr_t)&v;
}

void isvd_client_options_init(struct isvd_client_options *o)
{
	memset(o, 0, sizeof *o);
	o->timeout_ms = ISVD_CLIENT_DEFAULT_TIMEOUT_MS;
	o->retries = ISVD_CLIENT_DEFAULT_RETRIES;
	o->max_in_flight = ISVD_CLIENT_DEFAULT_IN_FLIGHT;
}

/* ----------------------------------------------------------------- keys */

#define CURVE_HINT " (with CURVE also: is this client's key admitted on that socket, the server key right?)"

int isvd_client_key_read(const char *path, bool secret, char z85[41], char *why, size_t why_size)
{
	char dummy[256];
	uint8_t bin[32];
	int rc;

	if (!why) {
		why = dummy;
		why_size = sizeof dummy;
	}
	if (!path) {
		snprintf(why, why_size, "(null): %s", strerror(EINVAL));
		return ISVD_CLIENT_IO;
	}
	/* the format is the daemon's (protocol/isvd_keyfile.h); a client's own
	 * secret key is not held to the daemon's file-mode rule */
	rc = isvd_key_file_read(path, secret, false, z85, why, why_size);
	if (rc == ISVD_KEY_IO)
		return ISVD_CLIENT_IO;
	if (rc != ISVD_KEY_OK)
		return ISVD_CLIENT_INVALID;
	if (!zmq_z85_decode(bin, z85)) {
		snprintf(why, why_size, "%s: not a valid Z85 key", path);
		return ISVD_CLIENT_INVALID;
	}
	return ISVD_CLIENT_OK;
}

/* Writes text to path, created exclusively with mode; 0 or -1 (errno). */
static int write_new(const char *path, mode_t mode, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	size_t len = strlen(text), off = 0;

	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) || close(fd)) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:;
	int e = errno ? errno : EIO;
	if (fd >= 0)
		close(fd);
	unlink(path);
	errno = e;
	return -1;
}

int isvd_client_keygen(const char *secret_path, const char *public_path, char public_z85[41])
{
	char pub[41], sec[41], text[256];

	if (!secret_path || !public_path || !zmq_has("curve"))
		return ISVD_CLIENT_INVALID;
	if (zmq_curve_keypair(pub, sec))
		return ISVD_CLIENT_INVALID;
	snprintf(text, sizeof text, "# isvd CURVE secret key: keep it private (mode 0600)\n"
	         "# public key: %s\n%s\n", pub, sec);
	memset(sec, 0, sizeof sec);
	if (write_new(secret_path, 0600, text)) {
		memset(text, 0, sizeof text);
		return ISVD_CLIENT_IO;
	}
	memset(text, 0, sizeof text);
	snprintf(text, sizeof text, "# isvd CURVE public key\n%s\n", pub);
	if (write_new(public_path, 0644, text)) {
		int e = errno;
		unlink(secret_path);
		errno = e;
		return ISVD_CLIENT_IO;
	}
	if (public_z85)
		memcpy(public_z85, pub, 41);
	return ISVD_CLIENT_OK;
}

/* Reads the keys of o (or the environment) into c.  OK, or INVALID / IO. */
static int load_keys(struct isvd_client *c, const struct isvd_client_options *o)
{
	const char *sk = pick_endpoint(o->server_key_file, "ISVD_SERVER_KEY", NULL);
	const char *ck = pick_endpoint(o->client_key_file, "ISVD_CLIENT_KEY", NULL);
	int err;

	if (!sk && !ck)
		return ISVD_CLIENT_OK;
	if (!sk || !ck) {
		snprintf(c->errmsg, sizeof c->errmsg, "CURVE needs both the server key and the client key");
		return ISVD_CLIENT_INVALID;
	}
	if (!zmq_has("curve")) {
		snprintf(c->errmsg, sizeof c->errmsg, "this libzmq has no CURVE support");
		return ISVD_CLIENT_INVALID;
	}
	if ((err = isvd_client_key_read(sk, false, c->server_pub, c->errmsg, sizeof c->errmsg)) ||
	    (err = isvd_client_key_read(ck, true, c->client_sec, c->errmsg, sizeof c->errmsg)))
		return err;
	if (zmq_curve_public(c->client_pub, c->client_sec)) {
		snprintf(c->errmsg, sizeof c->errmsg, "%s: cannot derive the public key", ck);
		return ISVD_CLIENT_INVALID;
	}
	c->curve = true;
	return ISVD_CLIENT_OK;
}

/* Sets the CURVE client options on s when c has keys; 0 or -1. */
static int apply_keys(const struct isvd_client *c, void *s)
{
	if (!c->curve)
		return 0;
	return zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_pub, 40) ||
	       zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->client_pub, 40) ||
	       zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->client_sec, 40) ? -1 : 0;
}

/* A fresh DEALER or SUB connected to ep, or NULL (errno set by zmq). */
static void *open_socket(struct isvd_client *c, int type, const char *ep)
{
	void *s = zmq_socket(c->ctx, type);
	if (!s)
		return NULL;
	int linger = 0;
	int tmo = c->timeout_ms;
	if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) || apply_keys(c, s) ||
	    zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof tmo) || zmq_connect(s, ep)) {
		int e = errno;
		zmq_close(s);
		errno = e;
		return NULL;
	}
	return s;
}

int isvd_client_create(struct isvd_client **out, const struct isvd_client_options *opts)
{
	struct isvd_client_options def;
	struct isvd_client *c;
	int err;

	if (!out)
		return ISVD_CLIENT_INVALID;
	*out = NULL;
	if (!opts) {
		isvd_client_options_init(&def);
		opts = &def;
	}
	if (opts->client_id && (!*opts->client_id || strlen(opts->client_id) > ISVD_PROTO_MAX_CLIENT))
		return ISVD_CLIENT_INVALID;
	c = calloc(1, sizeof *c);
	if (!c)
		return ISVD_CLIENT_NOMEM;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : ISVD_CLIENT_DEFAULT_TIMEOUT_MS;
	c->retries = opts->retries > 0 ? opts->retries : 0;
	c->max_fl = opts->max_in_flight ? opts->max_in_flight : ISVD_CLIENT_DEFAULT_IN_FLIGHT;
	if (opts->client_id)
		snprintf(c->client_id, sizeof c->client_id, "%s", opts->client_id);
	else
		snprintf(c->client_id, sizeof c->client_id, "isvd-c-%016" PRIx64, random_u64());
	if (opts->first_batch) {
		c->next_batch = opts->first_batch;
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		c->next_batch = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	}
	c->next_id = 1;
	if ((err = load_keys(c, opts)) != ISVD_CLIENT_OK) {
		memset(c->client_sec, 0, sizeof c->client_sec);
		free(c);
		return err;
	}

	err = ISVD_CLIENT_NOMEM;
	c->ep_ingest = xstrdup(pick_endpoint(opts->ingest, "ISVD_INGEST", ISVD_PROTO_INGEST_ENDPOINT));
	c->ep_query = xstrdup(pick_endpoint(opts->query, "ISVD_QUERY", ISVD_PROTO_QUERY_ENDPOINT));
	c->ep_publish = xstrdup(pick_endpoint(opts->publish, "ISVD_PUBLISH", ISVD_PROTO_PUBLISH_ENDPOINT));
	c->fl = calloc(c->max_fl, sizeof *c->fl);
	if (!c->ep_ingest || !c->ep_query || !c->ep_publish || !c->fl)
		goto fail_alloc;
	err = ISVD_CLIENT_IO;
	c->ctx = zmq_ctx_new();
	if (!c->ctx)
		goto fail_alloc;
	if (c->curve) {   /* opened on first use: see ensure_socket() */
		*out = c;
		return ok(c);
	}
	c->ingest = open_socket(c, ZMQ_DEALER, c->ep_ingest);
	if (!c->ingest)
		goto fail_ctx;
	c->query = open_socket(c, ZMQ_DEALER, c->ep_query);
	if (!c->query)
		goto fail_ingest;
	*out = c;
	return ok(c);

fail_ingest:
	zmq_close(c->ingest);
fail_ctx:
	zmq_ctx_term(c->ctx);
fail_alloc:
	free(c->fl);
	free(c->ep_ingest);
	free(c->ep_query);
	free(c->ep_publish);
	free(c);
	return err;
}

void isvd_client_destroy(struct isvd_client *c)
{
	if (!c)
		return;
	if (c->ingest)
		zmq_close(c->ingest);
	if (c->query)
		zmq_close(c->query);
	if (c->sub)
		zmq_close(c->sub);
	zmq_ctx_term(c->ctx);
	for (size_t i = 0; i < c->nfl; i++)
		free(c->fl[i].frame);
	free(c->fl);
	free(c->q);
	free(c->ep_ingest);
	free(c->ep_query);
	free(c->ep_publish);
	memset(c->client_sec, 0, sizeof c->client_sec);
	free(c);
}

const char *isvd_client_errmsg(const struct isvd_client *c)
{
	return c ? c->errmsg : "";
}

const char *isvd_client_id(const struct isvd_client *c)
{
	return c->client_id;
}

const char *isvd_client_endpoint(const struct isvd_client *c, const char *which)
{
	if (!which)
		return NULL;
	if (!strcmp(which, "ingest"))
		return c->ep_ingest;
	if (!strcmp(which, "query"))
		return c->ep_query;
	if (!strcmp(which, "publish"))
		return c->ep_publish;
	return NULL;
}

void isvd_client_get_stats(const struct isvd_client *c, struct isvd_client_stats *st)
{
	*st = c->st;
}

/* ------------------------------------------------------------- wire helpers */

/* The request id as msgpack: uint64 (0xcf + 8 bytes big-endian). */
static void id_encode(uint64_t id, uint8_t out[9])
{
	out[0] = 0xcf;
	for (int i = 0; i < 8; i++)
		out[1 + i] = (uint8_t)(id >> (56 - 8 * i));
}

/* Reads back an id the daemon echoed; false when it is not a uint. */
static bool id_decode(const uint8_t *b, size_t n, uint64_t *id)
{
	size_t w;
	if (!b || n == 0)
		return false;
	if (b[0] <= 0x7f && n == 1) {
		*id = b[0];
		return true;
	}
	switch (b[0]) {
	case 0xcc: w = 1; break;
	case 0xcd: w = 2; break;
	case 0xce: w = 4; break;
	case 0xcf: w = 8; break;
	default: return false;
	}
	if (n != 1 + w)
		return false;
	*id = 0;
	for (size_t i = 0; i < w; i++)
		*id = *id << 8 | b[1 + i];
	return true;
}

/* Receives one whole message from s (non-blocking: the caller polled).  The
 * body (last frame) is returned in *body, which the caller closes. */
static int recv_body(void *s, zmq_msg_t *body)
{
	zmq_msg_init(body);
	for (;;) {
		if (zmq_msg_recv(body, s, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(body);
			return errno == EAGAIN ? ISVD_CLIENT_TIMEOUT : ISVD_CLIENT_IO;
		}
		if (!zmq_msg_more(body))
			return ISVD_CLIENT_OK;
		zmq_msg_close(body);
		zmq_msg_init(body);
	}
}

static int send_frame(struct isvd_client *c, void *s, const uint8_t *buf, size_t len)
{
	if (zmq_send(s, buf, len, 0) < 0) {
		if (errno == EAGAIN)
			return fail(c, ISVD_CLIENT_TIMEOUT, "send: the socket's queue stayed full for %d ms",
			            c->timeout_ms);
		return fail(c, ISVD_CLIENT_IO, "send: %s", zmq_strerror(errno));
	}
	return ISVD_CLIENT_OK;
}

/* Closes *sp and connects a fresh DEALER to ep (Lazy Pirate). */
static int reconnect(struct isvd_client *c, void **sp, const char *ep)
{
	zmq_close(*sp);
	*sp = open_socket(c, ZMQ_DEALER, ep);
	c->st.reconnects++;
	if (!*sp)
		return fail(c, ISVD_CLIENT_IO, "connect %s: %s", ep, zmq_strerror(errno));
	return ISVD_CLIENT_OK;
}

/* Opens *sp when it is not open yet (with CURVE, sockets are opened on
 * first use: a key admitted on one socket only would otherwise be refused,
 * and logged, on the other all the time the handle lives). */
static int ensure_socket(struct isvd_client *c, void **sp, const char *ep)
{
	if (*sp)
		return ISVD_CLIENT_OK;
	*sp = open_socket(c, ZMQ_DEALER, ep);
	if (!*sp)
		return fail(c, ISVD_CLIENT_IO, "connect %s: %s", ep, zmq_strerror(errno));
	return ISVD_CLIENT_OK;
}

/* Copies a decoded proto matrix into a library matrix (taking its buffer). */
static void take_matrix(struct isvd_client_matrix *dst, struct isvd_proto_matrix *src)
{
	dst->data = src->data;
	dst->rows = src->rows;
	dst->cols = src->cols;
	src->data = NULL;
}

/* A wire code as the library's: 1..10 are the same, RATE_LIMITED is
 * numbered after the local codes, anything else is INTERNAL. */
static int client_code(int wire)
{
	if (wire == ISVD_PROTO_RATE_LIMITED)
		return ISVD_CLIENT_RATE_LIMITED;
	return wire > 0 && wire <= ISVD_CLIENT_INTERNAL ? wire : ISVD_CLIENT_INTERNAL;
}

static int reply_error(struct isvd_client *c, const struct isvd_proto_reply *rep)
{
	int code = client_code(rep->error_code);
	return fail(c, code, "%s", rep->error_message ? rep->error_message : isvd_client_strerror(code));
}

/* ----------------------------------------------------------------- queries */

/* Sends req (an id is added) on the query socket and decodes the reply into
 * *rep, retrying as the header says.  On success rep->ok may still be
 * false: the caller turns that into the wire error.  The caller releases
 * *rep with isvd_proto_reply_fini() in every case. */
static int query_call(struct isvd_client *c, struct isvd_proto_request *req, struct isvd_proto_reply *rep)
{
	uint8_t idb[9], *frame = NULL;
	size_t len = 0;
	uint64_t id = c->next_id++;
	int err;

	id_encode(id, idb);
	req->id = idb;
	req->id_len = sizeof idb;
	err = isvd_proto_request_encode(req, &frame, &len);
	req->id = NULL;
	req->id_len = 0;
	if (err)
		return fail(c, err == ISVD_PROTO_NOMEM ? ISVD_CLIENT_NOMEM : ISVD_CLIENT_INVALID,
		            "encode %s: %s", isvd_proto_op_name(req->op), isvd_proto_strerror(err));
	c->st.requests++;
	if ((err = ensure_socket(c, &c->query, c->ep_query)))
		goto out;
	for (int attempt = 0; attempt <= c->retries; attempt++) {
		if (attempt) {
			c->st.resends++;
			if ((err = reconnect(c, &c->query, c->ep_query)))
				goto out;
		}
		err = send_frame(c, c->query, frame, len);
		if (err == ISVD_CLIENT_TIMEOUT)
			continue;
		if (err)
			goto out;
		int64_t deadline = now_ms() + c->timeout_ms;
		for (;;) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				break;
			zmq_pollitem_t it = { .socket = c->query, .events = ZMQ_POLLIN };
			int n = zmq_poll(&it, 1, (long)left);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				err = fail(c, ISVD_CLIENT_IO, "poll: %s", zmq_strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			zmq_msg_t body;
			if (recv_body(c->query, &body))
				continue;
			struct isvd_proto_error perr = { 0 };
			isvd_proto_reply_fini(rep);
			err = isvd_proto_reply_decode(zmq_msg_data(&body), zmq_msg_size(&body), req->op, NULL,
			                              rep, &perr);
			zmq_msg_close(&body);
			uint64_t got;
			if (!id_decode(rep->id, rep->id_len, &got) || got != id)
				continue;        /* stale (or foreign) reply */
			if (err) {
				err = fail(c, ISVD_CLIENT_PROTOCOL, "%s reply: %s", isvd_proto_op_name(req->op),
				           perr.message);
				goto out;
			}
			err = rep->ok ? ok(c) : reply_error(c, rep);
			goto out;
		}
	}
	err = fail(c, ISVD_CLIENT_TIMEOUT, "%s: no reply from %s in %d attempt%s of %d ms%s",
	           isvd_proto_op_name(req->op), c->ep_query, c->retries + 1, c->retries ? "s" : "",
	           c->timeout_ms, c->curve ? CURVE_HINT : "");
out:
	free(frame);
	return err;
}

int isvd_client_ping(struct isvd_client *c, char *version, size_t version_size, uint64_t *protocol)
{
	struct isvd_proto_request req = { .op = ISVD_OP_PING };
	struct isvd_proto_reply rep = { 0 };
	int err = query_call(c, &req, &rep);
	if (!err) {
		if (version && version_size)
			snprintf(version, version_size, "%s", rep.version ? rep.version : "");
		if (protocol)
			*protocol = rep.protocol;
	}
	isvd_proto_reply_fini(&rep);
	return err;
}

int isvd_client_info(struct isvd_client *c, struct isvd_client_info *info)
{
	struct isvd_proto_request req = { .op = ISVD_OP_INFO };
	struct isvd_proto_reply rep = { 0 };
	int err;

	memset(info, 0, sizeof *info);
	err = query_call(c, &req, &rep);
	if (!err) {
		info->dim = rep.dim;
		info->rank = rep.rank;
		info->rank_max = rep.rank_max;
		info->rows_seen = rep.rows_seen;
		info->seq = rep.seq;
		info->sigma = rep.sigma.v;
		info->nsigma = rep.sigma.n;
		rep.sigma.v = NULL;
		info->explained_energy_ratio = rep.explained_energy_ratio;
		info->condition_number = rep.condition_number;
		info->orthogonality_error = rep.orthogonality_error;
		info->center = rep.center;
		info->forget = rep.forget;
		/* only the modes this library knows, so callers may print it raw */
		if (rep.mode && (!strcmp(rep.mode, "exact") || !strcmp(rep.mode, "truncated")))
			snprintf(info->mode, sizeof info->mode, "%s", rep.mode);
		info->last_checkpoint_seq = rep.last_checkpoint_seq;
		if (rep.has_pushers && rep.pushers.n &&
		    (info->pushers = calloc(rep.pushers.n, sizeof *info->pushers))) {
			for (size_t i = 0; i < rep.pushers.n; i++) {
				const struct isvd_proto_pusher *q = &rep.pushers.v[i];
				struct isvd_client_pusher *o = &info->pushers[i];
				snprintf(o->key, sizeof o->key, "%s", q->key);
				o->pushes = q->pushes;
				o->rows = q->rows;
				o->limited_pushes = q->limited_pushes;
				o->limited_rows = q->limited_rows;
			}
			info->npushers = rep.pushers.n;
		} else if (rep.has_pushers && rep.pushers.n) {
			err = fail(c, ISVD_CLIENT_NOMEM, "info: out of memory");
		}
		info->uptime_s = rep.uptime_s;
		info->ingest_rows_per_s = rep.ingest_rows_per_s;
		if (rep.missing && (!strcmp(rep.missing, "reject") || !strcmp(rep.missing, "impute")))
			snprintf(info->missing, sizeof info->missing, "%s", rep.missing);
		info->has_gaps = rep.has_gaps;
		info->rows_with_gaps = rep.rows_with_gaps;
		info->values_imputed = rep.values_imputed;
		info->has_monitor = rep.has_monitor;
		if (rep.has_monitor) {
			info->spe_limit = rep.spe_limit;
			info->t2_limit = rep.t2_limit;
			info->rows_flagged = rep.rows_flagged;
			info->anomaly_messages = rep.anomaly_messages;
			info->anomaly_messages_dropped = rep.anomaly_messages_dropped;
			info->baseline_seq = rep.baseline_seq;
			info->drift_prev_deg = rep.drift_prev_deg;
			info->drift_baseline_deg = rep.drift_baseline_deg;
			if (rep.gap.n == info->nsigma && rep.stable.n == info->nsigma) {
				info->gap = rep.gap.v;
				info->stable = rep.stable.v;
				rep.gap.v = rep.stable.v = NULL;
			}
		}
	}
	isvd_proto_reply_fini(&rep);
	return err;
}

void isvd_client_info_fini(struct isvd_client_info *info)
{
	if (!info)
		return;
	free(info->sigma);
	free(info->gap);
	free(info->stable);
	free(info->pushers);
	memset(info, 0, sizeof *info);
}

void isvd_client_matrix_fini(struct isvd_client_matrix *m)
{
	if (!m)
		return;
	free(m->data);
	memset(m, 0, sizeof *m);
}

static int check_rows(struct isvd_client *c, const void *rows, size_t nrows, size_t dim)
{
	if (!rows || nrows == 0 || dim == 0)
		return fail(c, ISVD_CLIENT_INVALID, "rows: need at least one row and one column");
	if (nrows > SIZE_MAX / 8 / dim)
		return fail(c, ISVD_CLIENT_INVALID, "rows: %zu × %zu is too large", nrows, dim);
	return ISVD_CLIENT_OK;
}

int isvd_client_project(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                        enum isvd_client_space space, struct isvd_client_projection *out)
{
	struct isvd_proto_request req = { .op = ISVD_OP_PROJECT };
	struct isvd_proto_reply rep = { 0 };
	int err;

	memset(out, 0, sizeof *out);
	if ((err = check_rows(c, rows, nrows, dim)))
		return err;
	req.rows.data = (double *)(uintptr_t)rows;   /* lent to the encoder, which only reads */
	req.rows.rows = nrows;
	req.rows.cols = dim;
	req.space = space == ISVD_CLIENT_U ? ISVD_PROTO_SPACE_U : ISVD_PROTO_SPACE_SCORES;
	err = query_call(c, &req, &rep);
	if (!err) {
		take_matrix(&out->coords, &rep.coords);
		out->residual = rep.residual.v;
		out->nresidual = rep.residual.n;
		rep.residual.v = NULL;
		out->seq = rep.seq;
		if (rep.has_observed && rep.observed.n == nrows) {
			out->observed = malloc(nrows * sizeof *out->observed);
			if (!out->observed) {
				err = fail(c, ISVD_CLIENT_NOMEM, "project: out of memory");
			} else {
				for (size_t i = 0; i < nrows; i++)
					out->observed[i] = (uint64_t)rep.observed.v[i];
			}
		}
	}
	isvd_proto_reply_fini(&rep);
	return err;
}

void isvd_client_projection_fini(struct isvd_client_projection *p)
{
	if (!p)
		return;
	free(p->coords.data);
	free(p->residual);
	free(p->observed);
	memset(p, 0, sizeof *p);
}

static int reconstruct(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                       bool fill, struct isvd_client_matrix *out, uint64_t *seq)
{
	struct isvd_proto_request req = { .op = ISVD_OP_RECONSTRUCT, .has_fill = fill, .fill = fill };
	struct isvd_proto_reply rep = { 0 };
	int err;

	memset(out, 0, sizeof *out);
	if ((err = check_rows(c, rows, nrows, dim)))
		return err;
	req.rows.data = (double *)(uintptr_t)rows;
	req.rows.rows = nrows;
	req.rows.cols = dim;
	err = query_call(c, &req, &rep);
	if (!err) {
		take_matrix(out, &rep.rows);
		if (seq)
			*seq = rep.seq;
	}
	isvd_proto_reply_fini(&rep);
	return err;
}

int isvd_client_reconstruct(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                            struct isvd_client_matrix *out, uint64_t *seq)
{
	return reconstruct(c, rows, nrows, dim, false, out, seq);
}

int isvd_client_reconstruct_fill(struct isvd_client *c, const double *rows, size_t nrows,
                                 size_t dim, struct isvd_client_matrix *out, uint64_t *seq)
{
	return reconstruct(c, rows, nrows, dim, true, out, seq);
}

/* Moves the factors fields of a decoded reply into *f. */
static void take_factors(struct isvd_client_factors *f, struct isvd_proto_reply *rep)
{
	f->sigma = rep->sigma.v;
	f->k = rep->sigma.n;
	rep->sigma.v = NULL;
	take_matrix(&f->vt, &rep->vt);
	f->dim = f->vt.cols;
	if (rep->has_mean) {
		f->mean = rep->mean.v;
		f->dim = rep->mean.n;
		rep->mean.v = NULL;
	}
	f->seq = rep->seq;
}

int isvd_client_factors(struct isvd_client *c, struct isvd_client_factors *f)
{
	struct isvd_proto_request req = { .op = ISVD_OP_FACTORS };
	struct isvd_proto_reply rep = { 0 };
	int err;

	memset(f, 0, sizeof *f);
	err = query_call(c, &req, &rep);
	if (!err)
		take_factors(f, &rep);
	isvd_proto_reply_fini(&rep);
	return err;
}

void isvd_client_factors_fini(struct isvd_client_factors *f)
{
	if (!f)
		return;
	free(f->sigma);
	free(f->vt.data);
	free(f->mean);
	memset(f, 0, sizeof *f);
}

int isvd_client_checkpoint(struct isvd_client *c, uint64_t *seq)
{
	struct isvd_proto_request req = { .op = ISVD_OP_CHECKPOINT };
	struct isvd_proto_reply rep = { 0 };
	int err = query_call(c, &req, &rep);
	if (!err && seq)
		*seq = rep.seq;
	isvd_proto_reply_fini(&rep);
	return err;
}

/* -------------------------------------------------------------------- push */

void isvd_client_set_ack_callback(struct isvd_client *c, isvd_client_ack_fn fn, void *user)
{
	c->cb = fn;
	c->cb_user = user;
}

size_t isvd_client_in_flight(const struct isvd_client *c)
{
	return c->nfl;
}

size_t isvd_client_acks_queued(const struct isvd_client *c)
{
	return c->qlen;
}

static int queue_ack(struct isvd_client *c, const struct isvd_client_ack *a)
{
	if (c->qlen == c->qcap) {
		size_t cap = c->qcap ? 2 * c->qcap : 64;
		struct isvd_client_ack *q = malloc(cap * sizeof *q);
		if (!q)
			return ISVD_CLIENT_NOMEM;
		for (size_t i = 0; i < c->qlen; i++)
			q[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = q;
		c->qcap = cap;
		c->qhead = 0;
	}
	c->q[(c->qhead + c->qlen) % c->qcap] = *a;
	c->qlen++;
	return ISVD_CLIENT_OK;
}

/* Hands a completed push to whoever waits for it; frees flight i. */
static int complete(struct isvd_client *c, size_t i, struct isvd_client_ack *a)
{
	struct flight f = c->fl[i];
	int err = ISVD_CLIENT_OK;

	memmove(&c->fl[i], &c->fl[i + 1], (c->nfl - i - 1) * sizeof *c->fl);
	c->nfl--;
	free(f.frame);
	a->batch = f.batch;
	a->user = f.user;
	if (f.id == c->want_id) {
		c->want_ack = *a;
		c->want_done = true;
	} else if (c->cb) {
		c->cb(a, c->cb_user);
	} else {
		err = queue_ack(c, a);
	}
	return err;
}

/* Handles one ingest reply body. */
static int on_ack(struct isvd_client *c, const void *buf, size_t len)
{
	struct isvd_proto_reply rep = { 0 };
	struct isvd_proto_error perr = { 0 };
	struct isvd_client_ack a = { 0 };
	uint64_t id;
	size_t i;
	int derr = isvd_proto_reply_decode(buf, len, ISVD_OP_PUSH, NULL, &rep, &perr);
	int err = ISVD_CLIENT_OK;

	if (!id_decode(rep.id, rep.id_len, &id))
		goto out;                        /* not ours: ignore */
	for (i = 0; i < c->nfl && c->fl[i].id != id; i++)
		;
	if (i == c->nfl || c->fl[i].due_ms)
		goto out;                        /* stale: answered before, or deferred since */
	c->st.acks++;
	if (c->probing && c->probe_id == id)
		c->probing = false;
	c->stalls = 0;
	c->progress_ms = now_ms();
	if (!derr && !rep.ok && rep.error_code == ISVD_PROTO_RATE_LIMITED) {
		/* nothing of it applied: this pusher's next push waits as asked */
		const int64_t wait = rep.retry_after_ms ? (int64_t)rep.retry_after_ms : 1;
		const int64_t due = c->progress_ms + (wait < 3600000 ? wait : 3600000);
		c->st.rate_limited++;
		if (due > c->hold_ms)
			c->hold_ms = due;
		if (c->fl[i].limited < c->retries) {   /* resend it then, same id and batch */
			c->fl[i].limited++;
			c->fl[i].due_ms = due;
			goto out;
		}
	}
	if (derr) {
		a.err = ISVD_CLIENT_PROTOCOL;
		snprintf(a.message, sizeof a.message, "push reply: %.200s", perr.message);
	} else if (!rep.ok) {
		a.err = client_code(rep.error_code);
		if (a.err == ISVD_CLIENT_RATE_LIMITED)
			snprintf(a.message, sizeof a.message, "%.200s (refused %d time%s)",
			         rep.error_message ? rep.error_message : isvd_client_strerror(a.err),
			         c->fl[i].limited + 1, c->fl[i].limited ? "s" : "");
		else
			snprintf(a.message, sizeof a.message, "%s",
			         rep.error_message ? rep.error_message : isvd_client_strerror(a.err));
	} else {
		a.accepted = rep.accepted;
		a.seq = rep.seq;
		a.duplicate = rep.duplicate;
		if (rep.duplicate)
			c->st.duplicates++;
	}
	err = complete(c, i, &a);
out:
	isvd_proto_reply_fini(&rep);
	return err;
}

/* Every outstanding push completes with TIMEOUT. */
static int give_up(struct isvd_client *c)
{
	int err = ISVD_CLIENT_OK;
	while (c->nfl) {
		struct isvd_client_ack a = { .err = ISVD_CLIENT_TIMEOUT };
		snprintf(a.message, sizeof a.message, "no reply from %s after %d resend%s of %d ms%s",
		         c->ep_ingest, c->retries, c->retries == 1 ? "" : "s", c->timeout_ms,
		         c->curve ? CURVE_HINT : "");
		int e = complete(c, 0, &a);
		if (e && !err)
			err = e;
	}
	c->stalls = 0;
	return err;
}

/* Reconnects the ingest socket and resends every outstanding push. */
static int resend_all(struct isvd_client *c)
{
	int err = reconnect(c, &c->ingest, c->ep_ingest);
	if (err)
		return err;
	for (size_t i = 0; i < c->nfl; i++) {
		if (c->fl[i].due_ms)
			continue;                /* deferred: send_due() sends it */
		c->st.resends++;
		err = send_frame(c, c->ingest, c->fl[i].frame, c->fl[i].len);
		if (err == ISVD_CLIENT_TIMEOUT)
			break;                   /* the next stall round resends again */
		if (err)
			return err;
	}
	c->progress_ms = now_ms();
	return ISVD_CLIENT_OK;
}

/* The first deferred flight, or NULL. */
static struct flight *first_deferred(struct isvd_client *c)
{
	for (size_t i = 0; i < c->nfl; i++)
		if (c->fl[i].due_ms)
			return &c->fl[i];
	return NULL;
}

/* When the next deferred flight may go out (INT64_MAX: none may yet, or
 * none is waiting). */
static int64_t next_due(struct isvd_client *c)
{
	const struct flight *f = c->probing ? NULL : first_deferred(c);

	if (!f)
		return INT64_MAX;
	return f->due_ms > c->hold_ms ? f->due_ms : c->hold_ms;
}

/* Sends the first deferred flight again when it is due and no other is
 * out again (the DESIGN's one at a time). */
static int send_due(struct isvd_client *c)
{
	const int64_t now = now_ms();
	struct flight *f;
	int err;

	if (next_due(c) > now || !(f = first_deferred(c)))
		return ISVD_CLIENT_OK;
	f->due_ms = 0;
	c->probing = true;
	c->probe_id = f->id;
	c->progress_ms = now;
	c->st.resends++;
	err = send_frame(c, c->ingest, f->frame, f->len);
	return err == ISVD_CLIENT_TIMEOUT ? ISVD_CLIENT_OK : err;   /* a stall resends it */
}

/* Flights on the wire (not deferred). */
static size_t on_wire(const struct isvd_client *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nfl; i++)
		n += c->fl[i].due_ms == 0;
	return n;
}

enum pump_until { UNTIL_WANT, UNTIL_ROOM, UNTIL_QUEUED, UNTIL_EMPTY };

static bool pump_done(const struct isvd_client *c, enum pump_until u)
{
	switch (u) {
	case UNTIL_WANT: return c->want_done;
	case UNTIL_ROOM: return c->nfl < c->max_fl;
	case UNTIL_QUEUED: return c->qlen > 0;
	case UNTIL_EMPTY: return c->nfl == 0;
	}
	return true;
}

/* Receives acks and handles stalls until the condition holds.  user_ms
 * bounds the wait (< 0: none); returns TIMEOUT when it ran out, or when the
 * pipeline was given up (the condition may then hold anyway: the caller
 * checks it first). */
static int ingest_pump(struct isvd_client *c, enum pump_until u, int user_ms)
{
	int64_t user_deadline = user_ms < 0 ? INT64_MAX : now_ms() + user_ms;
	bool polled = false;
	int err;

	while (!pump_done(c, u)) {
		int64_t now = now_ms();
		if (c->nfl == 0)
			return fail(c, ISVD_CLIENT_INVALID, "no push in flight");
		if (now >= user_deadline && polled)
			return fail(c, ISVD_CLIENT_TIMEOUT, "no ack within %d ms", user_ms);
		if ((err = send_due(c)))
			return err;
		/* deferred flights are off the wire: no stall while only they wait */
		int64_t stall_at = on_wire(c) ? c->progress_ms + c->timeout_ms : INT64_MAX;
		if (now >= stall_at) {
			if (c->stalls >= (unsigned)c->retries) {
				if ((err = give_up(c)))
					return fail(c, err, "out of memory queueing acks");
				if (pump_done(c, u))
					return ok(c);
				return fail(c, ISVD_CLIENT_TIMEOUT, "no reply from %s after %d resend%s of %d ms%s",
				            c->ep_ingest, c->retries, c->retries == 1 ? "" : "s", c->timeout_ms,
				            c->curve ? CURVE_HINT : "");
			}
			c->stalls++;
			if ((err = resend_all(c)))
				return err;
			continue;
		}
		int64_t wake = stall_at < user_deadline ? stall_at : user_deadline;
		const int64_t due = next_due(c);
		if (due < wake)
			wake = due;
		int64_t wait = wake - now;
		zmq_pollitem_t it = { .socket = c->ingest, .events = ZMQ_POLLIN };
		int n = zmq_poll(&it, 1, (long)(wait > 0 ? wait : 0));
		polled = true;                   /* a zero timeout still looks once */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, ISVD_CLIENT_IO, "poll: %s", zmq_strerror(errno));
		}
		while (n > 0) {              /* drain what is there */
			zmq_msg_t body;
			if (recv_body(c->ingest, &body))
				break;
			err = on_ack(c, zmq_msg_data(&body), zmq_msg_size(&body));
			zmq_msg_close(&body);
			if (err)
				return fail(c, err, "out of memory queueing acks");
			if (pump_done(c, u))
				break;
		}
	}
	return ok(c);
}

/* Encodes b (with an id) into a new flight slot and sends it; the caller
 * made room.  *id_out receives its id. */
static int send_push(struct isvd_client *c, const struct isvd_client_batch *b, uint64_t *id_out,
                     uint64_t *batch_out)
{
	struct isvd_proto_request req = { .op = ISVD_OP_PUSH };
	uint8_t idb[9];
	double *conv = NULL;
	int err;

	if (!b)
		return fail(c, ISVD_CLIENT_INVALID, "push: no batch");
	if ((err = check_rows(c, b->rows, b->nrows, b->dim)))
		return err;
	if ((err = ensure_socket(c, &c->ingest, c->ep_ingest)))
		return err;
	if (b->client && (!*b->client || strlen(b->client) > ISVD_PROTO_MAX_CLIENT))
		return fail(c, ISVD_CLIENT_INVALID, "push: client must be 1..%d bytes", ISVD_PROTO_MAX_CLIENT);
	if (b->dtype == ISVD_CLIENT_F32) {
		/* the codec encodes f64 only: widen (exact) */
		size_t n = b->nrows * b->dim;
		const float *src = b->rows;
		conv = malloc(n * sizeof *conv);
		if (!conv)
			return fail(c, ISVD_CLIENT_NOMEM, "push: out of memory");
		for (size_t i = 0; i < n; i++)
			conv[i] = src[i];
		req.rows.data = conv;
	} else if (b->dtype == ISVD_CLIENT_F64) {
		req.rows.data = (double *)(uintptr_t)b->rows;
	} else {
		return fail(c, ISVD_CLIENT_INVALID, "push: unknown dtype %d", (int)b->dtype);
	}
	req.rows.rows = b->nrows;
	req.rows.cols = b->dim;
	req.client = (char *)(uintptr_t)(b->client ? b->client : c->client_id);
	req.has_batch = true;
	req.batch = b->has_batch ? b->batch : c->next_batch;
	uint64_t id = c->next_id++;
	id_encode(id, idb);
	req.id = idb;
	req.id_len = sizeof idb;

	struct flight *f = &c->fl[c->nfl];
	memset(f, 0, sizeof *f);
	err = isvd_proto_request_encode(&req, &f->frame, &f->len);
	free(conv);
	if (err)
		return fail(c, err == ISVD_PROTO_NOMEM ? ISVD_CLIENT_NOMEM : ISVD_CLIENT_INVALID,
		            "encode push: %s", isvd_proto_strerror(err));
	if (!b->has_batch)
		c->next_batch++;
	f->id = id;
	f->batch = req.batch;
	f->user = b->user;
	if (c->nfl == 0) {
		c->progress_ms = now_ms();
		c->stalls = 0;
	}
	/* behind deferred pushes, or while the daemon asked to wait: queue it */
	const bool wait = first_deferred(c) != NULL || c->hold_ms > now_ms();
	c->nfl++;
	c->st.requests++;
	if (id_out)
		*id_out = id;
	if (batch_out)
		*batch_out = req.batch;
	if (wait) {
		f->due_ms = c->hold_ms > 1 ? c->hold_ms : 1;
		return ok(c);
	}
	err = send_frame(c, c->ingest, f->frame, f->len);
	if (err == ISVD_CLIENT_TIMEOUT)
		return ok(c);                /* kept in flight: the stall handling resends it */
	return err ? err : ok(c);
}

int isvd_client_push_send(struct isvd_client *c, const struct isvd_client_batch *b, uint64_t *batch_out)
{
	int err;
	if ((err = send_due(c)))         /* a deferred push due now goes before this one */
		return err;
	if (c->nfl >= c->max_fl) {
		err = ingest_pump(c, UNTIL_ROOM, -1);
		if (err && c->nfl >= c->max_fl)
			return err;
	}
	return send_push(c, b, NULL, batch_out);
}

int isvd_client_push_batch(struct isvd_client *c, const struct isvd_client_batch *b,
                           struct isvd_client_ack *ack)
{
	uint64_t id;
	int err;

	if (ack)
		memset(ack, 0, sizeof *ack);
	if (c->nfl >= c->max_fl) {
		err = ingest_pump(c, UNTIL_ROOM, -1);
		if (err && c->nfl >= c->max_fl)
			return err;
	}
	if ((err = send_push(c, b, &id, NULL)))
		return err;
	c->want_id = id;
	c->want_done = false;
	err = ingest_pump(c, UNTIL_WANT, -1);
	c->want_id = 0;
	if (!c->want_done)
		return err;                  /* unreachable: give_up completes it */
	if (ack)
		*ack = c->want_ack;
	err = c->want_ack.err;
	if (err)
		return fail(c, err, "%s", c->want_ack.message);
	return ok(c);
}

int isvd_client_push(struct isvd_client *c, const double *rows, size_t nrows, size_t dim,
                     struct isvd_client_ack *ack)
{
	struct isvd_client_batch b = { .rows = rows, .nrows = nrows, .dim = dim, .dtype = ISVD_CLIENT_F64 };
	return isvd_client_push_batch(c, &b, ack);
}

int isvd_client_push_f32(struct isvd_client *c, const float *rows, size_t nrows, size_t dim,
                         struct isvd_client_ack *ack)
{
	struct isvd_client_batch b = { .rows = rows, .nrows = nrows, .dim = dim, .dtype = ISVD_CLIENT_F32 };
	return isvd_client_push_batch(c, &b, ack);
}

int isvd_client_push_recv(struct isvd_client *c, struct isvd_client_ack *ack, int timeout_ms)
{
	if (c->cb)
		return fail(c, ISVD_CLIENT_INVALID, "push_recv: acks go to the callback");
	if (!c->qlen) {
		int err = ingest_pump(c, UNTIL_QUEUED, timeout_ms);
		if (!c->qlen)
			return err;
	}
	*ack = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
	return ok(c);
}

int isvd_client_push_flush(struct isvd_client *c)
{
	if (!c->nfl)
		return ok(c);
	int err = ingest_pump(c, UNTIL_EMPTY, -1);
	/* a give-up empties the window but is still a TIMEOUT */
	return err;
}

/* --------------------------------------------------------------- snapshots */

void isvd_client_snapshot_fini(struct isvd_client_snapshot *s)
{
	if (!s)
		return;
	free(s->sigma);
	free(s->vt.data);
	free(s->mean);
	free(s->stable);
	free(s->flagged_seq);
	free(s->spe);
	free(s->t2);
	memset(s, 0, sizeof *s);
}

int isvd_client_subscribe(struct isvd_client *c, unsigned topics)
{
	if (!topics || (topics & ~15u))
		return fail(c, ISVD_CLIENT_INVALID, "subscribe: no known topic in mask %#x", topics);
	if (!c->sub) {
		c->sub = zmq_socket(c->ctx, ZMQ_SUB);
		int linger = 0;
		if (!c->sub || zmq_setsockopt(c->sub, ZMQ_LINGER, &linger, sizeof linger) ||
		    apply_keys(c, c->sub) || zmq_connect(c->sub, c->ep_publish)) {
			int e = errno;
			if (c->sub)
				zmq_close(c->sub);
			c->sub = NULL;
			return fail(c, ISVD_CLIENT_IO, "connect %s: %s", c->ep_publish, zmq_strerror(e));
		}
	}
	if (topics & ISVD_CLIENT_TOPIC_SPECTRUM)
		zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, ISVD_PROTO_TOPIC_SPECTRUM, strlen(ISVD_PROTO_TOPIC_SPECTRUM));
	if (topics & ISVD_CLIENT_TOPIC_FACTORS)
		zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, ISVD_PROTO_TOPIC_FACTORS, strlen(ISVD_PROTO_TOPIC_FACTORS));
	if (topics & ISVD_CLIENT_TOPIC_ANOMALY)
		zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, ISVD_PROTO_TOPIC_ANOMALY, strlen(ISVD_PROTO_TOPIC_ANOMALY));
	if (topics & ISVD_CLIENT_TOPIC_DRIFT)
		zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, ISVD_PROTO_TOPIC_DRIFT, strlen(ISVD_PROTO_TOPIC_DRIFT));
	return ok(c);
}

/* Decodes one published message (topic frame, body frame) into *s. */
static int decode_snapshot(struct isvd_client *c, const char *topic, size_t tlen, const void *body,
                           size_t blen, struct isvd_client_snapshot *s)
{
	struct isvd_proto_error perr = { 0 };
	int err;

	if (tlen == strlen(ISVD_PROTO_TOPIC_SPECTRUM) && !memcmp(topic, ISVD_PROTO_TOPIC_SPECTRUM, tlen)) {
		struct isvd_proto_spectrum sp = { 0 };
		err = isvd_proto_spectrum_decode(body, blen, NULL, &sp, &perr);
		if (!err) {
			s->topic = ISVD_CLIENT_TOPIC_SPECTRUM;
			s->seq = sp.seq;
			s->rows_seen = sp.rows_seen;
			s->sigma = sp.sigma.v;
			s->k = sp.sigma.n;
			sp.sigma.v = NULL;
			s->explained_energy_ratio = sp.explained_energy_ratio;
			s->t = sp.t;
			s->has_gaps = sp.has_gaps;
			s->rows_with_gaps = sp.rows_with_gaps;
			s->values_imputed = sp.values_imputed;
			s->has_monitor = sp.has_monitor && sp.stable.n == s->k;
			if (s->has_monitor) {
				s->stable = sp.stable.v;
				sp.stable.v = NULL;
				s->drift_prev_deg = sp.drift_prev_deg;
				s->drift_baseline_deg = sp.drift_baseline_deg;
			}
		}
		isvd_proto_spectrum_fini(&sp);
	} else if (tlen == strlen(ISVD_PROTO_TOPIC_FACTORS) && !memcmp(topic, ISVD_PROTO_TOPIC_FACTORS, tlen)) {
		struct isvd_proto_reply rep = { 0 };
		err = isvd_proto_reply_decode(body, blen, ISVD_OP_FACTORS, NULL, &rep, &perr);
		if (!err && !rep.ok) {
			err = ISVD_PROTO_BAD_REQUEST;
			snprintf(perr.message, sizeof perr.message, "a factors snapshot with ok: false");
		}
		if (!err) {
			struct isvd_client_factors f = { 0 };
			take_factors(&f, &rep);
			s->topic = ISVD_CLIENT_TOPIC_FACTORS;
			s->seq = f.seq;
			s->sigma = f.sigma;
			s->k = f.k;
			s->vt = f.vt;
			s->mean = f.mean;
			s->dim = f.dim;
			s->has_monitor = rep.has_monitor && rep.stable.n == s->k;
			if (s->has_monitor) {
				s->stable = rep.stable.v;
				rep.stable.v = NULL;
			}
		}
		isvd_proto_reply_fini(&rep);
	} else if (tlen == strlen(ISVD_PROTO_TOPIC_ANOMALY) && !memcmp(topic, ISVD_PROTO_TOPIC_ANOMALY, tlen)) {
		struct isvd_proto_anomaly an = { 0 };
		err = isvd_proto_anomaly_decode(body, blen, NULL, &an, &perr);
		if (!err) {
			s->topic = ISVD_CLIENT_TOPIC_ANOMALY;
			s->flagged_seq = an.seq.v;
			s->spe = an.spe.v;
			s->t2 = an.t2.v;
			s->nflagged = an.seq.n;
			an.seq.v = NULL;
			an.spe.v = an.t2.v = NULL;
			s->spe_limit = an.spe_limit;
			s->t2_limit = an.t2_limit;
			s->t = an.t;
			s->seq = s->nflagged ? s->flagged_seq[s->nflagged - 1] : 0;
		}
		isvd_proto_anomaly_fini(&an);
	} else if (tlen == strlen(ISVD_PROTO_TOPIC_DRIFT) && !memcmp(topic, ISVD_PROTO_TOPIC_DRIFT, tlen)) {
		struct isvd_proto_drift d = { 0 };
		err = isvd_proto_drift_decode(body, blen, NULL, &d, &perr);
		if (!err) {
			s->topic = ISVD_CLIENT_TOPIC_DRIFT;
			s->seq = d.seq;
			s->angle_deg = d.angle_deg;
			s->threshold_deg = d.threshold_deg;
			s->baseline_seq = d.baseline_seq;
			s->exceeded = d.exceeded;
			s->t = d.t;
		}
	} else {
		return fail(c, ISVD_CLIENT_PROTOCOL, "snapshot with unknown topic '%.*s'", (int)(tlen > 32 ? 32 : tlen),
		            topic);
	}
	if (err)
		return fail(c, ISVD_CLIENT_PROTOCOL, "%.*s snapshot: %s", (int)tlen, topic, perr.message);
	return ok(c);
}

int isvd_client_snapshot_recv(struct isvd_client *c, struct isvd_client_snapshot *s, int timeout_ms)
{
	zmq_msg_t topic, body;
	int err;

	memset(s, 0, sizeof *s);
	if (!c->sub)
		return fail(c, ISVD_CLIENT_INVALID, "snapshot_recv before subscribe");
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline == INT64_MAX ? -1 : deadline - now_ms();
		if (deadline != INT64_MAX && left < 0)
			left = 0;
		zmq_pollitem_t it = { .socket = c->sub, .events = ZMQ_POLLIN };
		int n = zmq_poll(&it, 1, (long)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, ISVD_CLIENT_IO, "poll: %s", zmq_strerror(errno));
		if (n == 0)
			return fail(c, ISVD_CLIENT_TIMEOUT, "no snapshot within %d ms", timeout_ms);
		zmq_msg_init(&topic);
		if (zmq_msg_recv(&topic, c->sub, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&topic);
			continue;
		}
		if (!zmq_msg_more(&topic)) {
			zmq_msg_close(&topic);
			continue;                /* not a two-frame message: skip */
		}
		if ((err = recv_body(c->sub, &body))) {
			zmq_msg_close(&topic);
			continue;
		}
		err = decode_snapshot(c, zmq_msg_data(&topic), zmq_msg_size(&topic), zmq_msg_data(&body),
		                      zmq_msg_size(&body), s);
		zmq_msg_close(&topic);
		zmq_msg_close(&body);
		return err;
	}
}

int isvd_client_snapshot_loop(struct isvd_client *c, size_t count, int timeout_ms,
                              isvd_client_snapshot_fn fn, void *user)
{
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
	size_t seen = 0;

	if (!fn)
		return fail(c, ISVD_CLIENT_INVALID, "snapshot_loop: no callback");
	while (count == 0 || seen < count) {
		struct isvd_client_snapshot s;
		int left = deadline == INT64_MAX ? -1 : (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0);
		int err = isvd_client_snapshot_recv(c, &s, left);
		if (err == ISVD_CLIENT_PROTOCOL)
			continue;
		if (err)
			return err;
		seen++;
		int stop = fn(&s, user);
		isvd_client_snapshot_fini(&s);
		if (stop)
			break;
	}
	return ok(c);
}
