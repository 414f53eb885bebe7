/*
 * server.c — isvdd's event loop: ingest, batching, queries and snapshots.
 *
 * DESIGN
 *   One thread, one model, one zmq_poll() over the ingest ROUTER and the
 *   query ROUTER (the PUB socket is only written).  A push travels:
 *
 *     ingest ROUTER ──recv_msg()──► handle_push(): decode, refuse bad input
 *        whole (missing/huge values, wrong dim, duplicates), append its rows
 *        to the pending buffer and queue its ack
 *     pending ──flush()──► isvd_model_update() once for every pending row,
 *        then seq assigned per push, duplicate table updated, acks sent
 *
 *   flush() runs when the pending rows reach batching.max_rows (a push that
 *   would overflow the batch first flushes what is pending; a push is never
 *   split, so one larger than max_rows is a block of its own), when the
 *   batch has been gathering for batching.max_delay_ms, when no more pushes
 *   are waiting on the socket, before every query, and at shutdown.  A push
 *   is acknowledged only after its rows are in the model, so a query that
 *   arrives after an ack always sees that push's rows; `seq` in replies is
 *   the number of rows in the model when the answer was computed.
 *
 *   Block boundaries depend on timing (how many pushes were waiting).  The
 *   engine's result depends on them: its update is exact at every block size
 *   only while the data's rank fits in k + extra; beyond that, truncation
 *   after each block makes the factors depend on the grouping.  They are
 *   logged at debug level; recording them for replay belongs to the
 *   write-ahead log of issue 5.
 *
 *   All or nothing per push: the engine refuses a whole update call on one
 *   bad value, so handle_push() checks each push for what the engine would
 *   refuse (missing values, |x| > 1e150) before it joins a batch; should the
 *   engine still refuse a batch (energy overflow), flush() retries push by
 *   push and refuses only the offending ones.
 *
 *   Duplicates: a per-client ring of the last SRV_DUP_RING (batch, seq)
 *   pairs, for at most limits.max_clients clients (least recently used
 *   forgotten), in memory only.  A resend of one of those batches gets its
 *   original seq and `duplicate: true`; a batch number at or below the
 *   client's latest that is no longer remembered gets `duplicate: true` and
 *   seq 0 (unknown).  Pushes without both `client` and `batch` are never
 *   duplicates.
 *
 * INVARIANTS
 *   srv->seq == isvd_model_rows_seen(srv->model) outside flush().
 *   pend holds pend_rows × dim values, the rows of the queued acks with
 *   rows > 0, in ack order.
 */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "isvd_model.h"
#include "isvd_proto.h"

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

#define SRV_MAX_FRAMES   8      /* frames in one request message, body included */
#define SRV_DUP_RING     8      /* batches remembered per client */
#define SRV_BURST        1024   /* messages read from one socket per loop turn */
#define SRV_POLL_MAX_MS  250    /* longest poll, so a signal is seen promptly */
#define SRV_HUGE         1e150  /* larger magnitudes are refused (see isvd_model_update) */

struct srv_ack {                 /* a push answered after the next flush() */
	zmq_msg_t env[SRV_MAX_FRAMES];
	size_t nenv;
	uint8_t *id;                 /* owned */
	size_t id_len;
	char *client;                /* owned; NULL when the push had none */
	bool has_batch;
	uint64_t batch;
	size_t rows;                 /* rows this push put in pend (0: a duplicate) */
	bool duplicate;
	long dup_of;                 /* duplicate of the queued ack at this index, or -1 */
	uint64_t seq;                /* result; for a known duplicate its original seq */
	int err;                     /* set by flush() when the push is refused */
	char *errmsg;                /* owned */
};

struct srv_client {              /* one entry of the duplicate table */
	char *name;                  /* owned */
	uint64_t last_used;          /* srv->tick when last pushed */
	uint64_t top;                /* largest batch applied */
	size_t n, head;              /* ring of (batch, seq); head = next slot */
	uint64_t batch[SRV_DUP_RING], seq[SRV_DUP_RING];
};

struct isvdd {
	const struct cfg *cfg;
	struct srv_log *log;
	void *zctx, *ingest, *query, *publish;
	struct isvd_proto_limits lim;

	struct isvd_model *model;    /* NULL until the dimension is known */
	size_t dim, kmax;            /* kmax = min(rank, dim) */
	uint64_t seq;                /* rows in the model */

	double *pend;                /* pending rows, row-major, ld = dim */
	size_t pend_rows, pend_cap;  /* cap in rows */
	struct srv_ack *acks;
	size_t nacks, acks_cap;
	uint64_t batch_since_ms;     /* when the first pending push arrived */

	struct srv_client *clients;
	size_t nclients;
	uint64_t tick;

	uint64_t next_spectrum_ms, next_factors_ms;
	uint64_t spectrum_seq, factors_seq;  /* seq of the last published snapshot */
	bool spectrum_sent, factors_sent;

	uint64_t start_ms;
	uint64_t rate_ms[2], rate_seq[2];    /* [0] older mark, [1] newer mark */
};

/* ------------------------------------------------------------ messaging */

/* Sends the envelope frames (consuming them) and then body. */
static void send_reply(struct isvdd *srv, void *sock, zmq_msg_t *env, size_t nenv,
                       const uint8_t *body, size_t len)
{
	for (size_t i = 0; i < nenv; i++) {
		if (zmq_msg_send(&env[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
			srv_logf(srv->log, CFG_LOG_DEBUG, "reply dropped: %s", zmq_strerror(errno));
			for (size_t j = i; j < nenv; j++)
				zmq_msg_close(&env[j]);
			return;
		}
	}
	if (zmq_send(sock, body, len, ZMQ_DONTWAIT) < 0)
		srv_logf(srv->log, CFG_LOG_DEBUG, "reply dropped: %s", zmq_strerror(errno));
}

static void send_error(struct isvdd *srv, void *sock, zmq_msg_t *env, size_t nenv,
                       const uint8_t *id, size_t id_len, int code, const char *message)
{
	uint8_t *out = NULL;
	size_t len = 0;

	if (isvd_proto_error_encode(id, id_len, code, message, &out, &len)) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot encode an error reply");
		for (size_t i = 0; i < nenv; i++)
			zmq_msg_close(&env[i]);
		return;
	}
	send_reply(srv, sock, env, nenv, out, len);
	free(out);
}

static void send_ok(struct isvdd *srv, void *sock, zmq_msg_t *env, size_t nenv,
                    const struct isvd_proto_reply *rep)
{
	uint8_t *out = NULL;
	size_t len = 0;
	int rc = isvd_proto_reply_encode(rep, &out, &len);

	if (rc) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot encode a %s reply: %s",
		         isvd_proto_op_name(rep->op), isvd_proto_strerror(rc));
		send_error(srv, sock, env, nenv, rep->id, rep->id_len, ISVD_PROTO_INTERNAL,
		           "the reply could not be encoded");
		return;
	}
	send_reply(srv, sock, env, nenv, out, len);
	free(out);
}

/* Receives one whole message without waiting: envelope frames into env,
 * the last frame into *body.  Returns 1 with a message, 0 when none is
 * waiting, -1 for a message dropped (too many frames) or a socket error. */
static int recv_msg(struct isvdd *srv, void *sock, zmq_msg_t *env, size_t *nenv, zmq_msg_t *body)
{
	size_t n = 0;
	int more;
	size_t more_len = sizeof more;

	zmq_msg_init(body);
	if (zmq_msg_recv(body, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(body);
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		srv_logf(srv->log, CFG_LOG_ERROR, "zmq_msg_recv: %s", zmq_strerror(errno));
		return -1;
	}
	for (;;) {
		if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) < 0 || !more)
			break;
		if (n == SRV_MAX_FRAMES - 1) {   /* drain and drop */
			zmq_msg_close(body);
			zmq_msg_init(body);
			while (zmq_msg_recv(body, sock, 0) >= 0 && zmq_msg_more(body))
				;
			zmq_msg_close(body);
			for (size_t i = 0; i < n; i++)
				zmq_msg_close(&env[i]);
			srv_log_refused(srv->log, "dropped a message of more than %d frames", SRV_MAX_FRAMES);
			return -1;
		}
		zmq_msg_init(&env[n]);
		zmq_msg_move(&env[n++], body);   /* body is left empty */
		if (zmq_msg_recv(body, sock, 0) < 0) {
			zmq_msg_close(body);
			for (size_t i = 0; i < n; i++)
				zmq_msg_close(&env[i]);
			return -1;
		}
	}
	*nenv = n;
	return 1;
}

static int err_from_engine(int e)
{
	switch (e) {
	case ISVD_ERR_DIM: return ISVD_PROTO_DIM_MISMATCH;
	case ISVD_ERR_NONFINITE: return ISVD_PROTO_NON_FINITE;
	case ISVD_ERR_NOT_READY: return ISVD_PROTO_NOT_READY;
	case ISVD_ERR_TOO_LARGE: return ISVD_PROTO_TOO_LARGE;
	default: return ISVD_PROTO_INTERNAL;
	}
}

/* ------------------------------------------------------------ the model */

static int make_model(struct isvdd *srv, size_t dim)
{
	struct isvd_options o;
	int rc;

	isvd_options_default(&o);
	o.dim = dim;
	o.rank = srv->cfg->model.rank;
	o.extra = srv->cfg->model.extra;
	o.center = srv->cfg->model.center;
	o.forget = srv->cfg->model.forget;
	o.reorth_every = srv->cfg->model.reorth_every;
	rc = isvd_model_create(&o, &srv->model);
	if (rc) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot create a model of dimension %zu: %s", dim,
		         isvd_strerror(rc));
		return rc;
	}
	srv->dim = dim;
	srv->kmax = o.rank < dim ? o.rank : dim;
	return 0;
}

/* -------------------------------------------------- duplicates (clients) */

static struct srv_client *client_find(struct isvdd *srv, const char *name)
{
	for (size_t i = 0; i < srv->nclients; i++)
		if (!strcmp(srv->clients[i].name, name))
			return &srv->clients[i];
	return NULL;
}

/* Is (client, batch) already applied?  Sets *seq (0 = not remembered). */
static bool client_seen(struct isvdd *srv, const char *name, uint64_t batch, uint64_t *seq)
{
	struct srv_client *c = client_find(srv, name);

	if (!c || batch > c->top)
		return false;
	*seq = 0;
	for (size_t i = 0; i < c->n; i++)
		if (c->batch[i] == batch)
			*seq = c->seq[i];
	return true;
}

static void client_record(struct isvdd *srv, const char *name, uint64_t batch, uint64_t seq)
{
	struct srv_client *c = client_find(srv, name);

	if (!c) {
		if (srv->nclients == srv->cfg->limits.max_clients) {   /* forget the least recent */
			size_t lru = 0;
			for (size_t i = 1; i < srv->nclients; i++)
				if (srv->clients[i].last_used < srv->clients[lru].last_used)
					lru = i;
			free(srv->clients[lru].name);
			srv->clients[lru] = srv->clients[--srv->nclients];
		}
		char *copy = strdup(name);
		if (!copy) {
			srv_logf(srv->log, CFG_LOG_ERROR, "duplicate table: %s", strerror(errno));
			return;
		}
		c = &srv->clients[srv->nclients++];
		memset(c, 0, sizeof *c);
		c->name = copy;
	}
	c->last_used = ++srv->tick;
	if (batch > c->top || c->n == 0)
		c->top = batch;
	c->batch[c->head] = batch;
	c->seq[c->head] = seq;
	c->head = (c->head + 1) % SRV_DUP_RING;
	if (c->n < SRV_DUP_RING)
		c->n++;
}

/* ------------------------------------------------------------- snapshots */

static void publish_msg(struct isvdd *srv, const char *topic, const uint8_t *body, size_t len)
{
	if (zmq_send(srv->publish, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->publish, body, len, ZMQ_DONTWAIT) < 0)
		srv_logf(srv->log, CFG_LOG_DEBUG, "%s snapshot not sent: %s", topic, zmq_strerror(errno));
}

static void publish_spectrum(struct isvdd *srv)
{
	struct isvd_info info;
	struct isvd_proto_spectrum s;
	double sigma[ISVD_MAX_RANK];
	size_t r = 0;
	uint8_t *out = NULL;
	size_t len = 0;

	if (!srv->model || srv->seq == 0)
		return;
	if (isvd_model_info(srv->model, &info) || isvd_model_factors(srv->model, sigma, NULL, NULL, &r))
		return;
	memset(&s, 0, sizeof s);
	s.seq = srv->seq;
	s.rows_seen = info.rows_seen;
	s.sigma.v = sigma;
	s.sigma.n = r;
	s.explained_energy_ratio = info.explained_energy_ratio;
	s.t = srv_unix_time();
	if (isvd_proto_spectrum_encode(&s, &out, &len) == 0)
		publish_msg(srv, ISVD_PROTO_TOPIC_SPECTRUM, out, len);
	free(out);
	srv->spectrum_seq = srv->seq;
	srv->spectrum_sent = true;
}

/* Fills rep with the factors (buffers malloc'd: free rep->sigma.v,
 * rep->vt.data, rep->mean.v).  Returns an isvd_proto_err. */
static int get_factors(struct isvdd *srv, struct isvd_proto_reply *rep)
{
	size_t r = 0;
	int rc;

	rep->op = ISVD_OP_FACTORS;
	rep->ok = true;
	rep->sigma.v = malloc(srv->kmax * sizeof(double));
	rep->vt.data = malloc(srv->kmax * srv->dim * sizeof(double));
	rep->mean.v = malloc(srv->dim * sizeof(double));
	if (!rep->sigma.v || !rep->vt.data || !rep->mean.v) {
		srv_logf(srv->log, CFG_LOG_ERROR, "factors: %s", strerror(errno));
		return ISVD_PROTO_NOMEM;
	}
	rc = isvd_model_factors(srv->model, rep->sigma.v, rep->vt.data, rep->mean.v, &r);
	if (rc)
		return err_from_engine(rc);
	rep->sigma.n = r;
	rep->vt.rows = r;
	rep->vt.cols = srv->dim;
	rep->has_mean = srv->cfg->model.center;
	rep->mean.n = rep->has_mean ? srv->dim : 0;
	rep->seq = srv->seq;
	return ISVD_PROTO_OK;
}

static void free_factors(struct isvd_proto_reply *rep)
{
	free(rep->sigma.v);
	free(rep->vt.data);
	free(rep->mean.v);
}

static void publish_factors(struct isvdd *srv)
{
	struct isvd_proto_reply rep;
	uint8_t *out = NULL;
	size_t len = 0;

	if (!srv->model || srv->seq == 0)
		return;
	memset(&rep, 0, sizeof rep);
	if (get_factors(srv, &rep) == ISVD_PROTO_OK && isvd_proto_reply_encode(&rep, &out, &len) == 0)
		publish_msg(srv, ISVD_PROTO_TOPIC_FACTORS, out, len);
	free(out);
	free_factors(&rep);
	srv->factors_seq = srv->seq;
	srv->factors_sent = true;
}

/* Publishes what is due at now. */
static void publish_due(struct isvdd *srv, uint64_t now)
{
	const struct cfg *c = srv->cfg;

	if (c->publish.spectrum_every_ms && now >= srv->next_spectrum_ms) {
		if (!srv->spectrum_sent || srv->seq != srv->spectrum_seq)
			publish_spectrum(srv);
		srv->next_spectrum_ms = now + c->publish.spectrum_every_ms;
	}
	if (c->publish.factors_every_ms && now >= srv->next_factors_ms) {
		if (!srv->factors_sent || srv->seq != srv->factors_seq)
			publish_factors(srv);
		srv->next_factors_ms = now + c->publish.factors_every_ms;
	}
}

/* ---------------------------------------------------------------- flush */

static void ack_fini(struct srv_ack *a)
{
	for (size_t i = 0; i < a->nenv; i++)
		zmq_msg_close(&a->env[i]);
	free(a->id);
	free(a->client);
	free(a->errmsg);
	memset(a, 0, sizeof *a);
}

static void ack_refuse(struct srv_ack *a, int code, const char *msg)
{
	a->err = code;
	free(a->errmsg);
	a->errmsg = strdup(msg);
}

/* Folds the pending rows into the model and answers every queued push. */
static void flush(struct isvdd *srv)
{
	const uint64_t before = srv->seq;
	uint64_t at;
	int rc = ISVD_OK;

	if (srv->nacks == 0)
		return;
	if (srv->pend_rows > 0) {
		rc = isvd_model_update(srv->model, srv->pend, srv->pend_rows, srv->dim);
		if (rc == ISVD_ERR_NONFINITE) {
			/* the batch as a whole would overflow: retry push by push */
			size_t off = 0;
			rc = ISVD_OK;
			for (size_t i = 0; i < srv->nacks; i++) {
				struct srv_ack *a = &srv->acks[i];
				if (a->rows == 0)
					continue;
				int r1 = isvd_model_update(srv->model, srv->pend + off * srv->dim, a->rows, srv->dim);
				if (r1 == ISVD_ERR_NONFINITE) {
					ack_refuse(a, ISVD_PROTO_NON_FINITE,
					           "rows: values too large for the model's energy to stay finite");
				} else if (r1) {   /* a real failure: the prefix rule below applies */
					srv_logf(srv->log, CFG_LOG_ERROR, "engine update of %zu rows failed: %s",
					         a->rows, isvd_strerror(r1));
					rc = r1;
					break;
				}
				off += a->rows;
			}
		} else if (rc) {
			srv_logf(srv->log, CFG_LOG_ERROR, "engine update of %zu rows failed: %s",
			         srv->pend_rows, isvd_strerror(rc));
		}
	}
	srv->seq = srv->model ? isvd_model_rows_seen(srv->model) : 0;
	if (srv->seq > before)   /* the block boundary, for whoever replays the stream */
		srv_logf(srv->log, CFG_LOG_DEBUG, "block: rows %llu..%llu (%llu) from %zu request%s",
		         (unsigned long long)before + 1, (unsigned long long)srv->seq,
		         (unsigned long long)(srv->seq - before), srv->nacks, srv->nacks == 1 ? "" : "s");

	/* seq per push; when the engine failed part-way only whole pushes
	 * inside the applied prefix count as accepted */
	at = before;
	for (size_t i = 0; i < srv->nacks; i++) {
		struct srv_ack *a = &srv->acks[i];
		if (a->rows == 0 || a->err)
			continue;
		if (rc && at + a->rows > srv->seq) {
			ack_refuse(a, ISVD_PROTO_INTERNAL, "the engine update failed; this push was not applied whole");
			at += a->rows;
			continue;
		}
		at += a->rows;
		a->seq = at;
		if (a->client && a->has_batch)
			client_record(srv, a->client, a->batch, a->seq);
	}
	for (size_t i = 0; i < srv->nacks; i++) {
		struct srv_ack *a = &srv->acks[i];
		if (a->dup_of >= 0) {   /* a resend of a push in this batch */
			const struct srv_ack *orig = &srv->acks[a->dup_of];
			a->seq = orig->seq;
			if (orig->err)
				ack_refuse(a, orig->err, orig->errmsg ? orig->errmsg : "refused");
		}
	}
	for (size_t i = 0; i < srv->nacks; i++) {
		struct srv_ack *a = &srv->acks[i];
		struct isvd_proto_reply rep;

		if (a->err) {
			send_error(srv, srv->ingest, a->env, a->nenv, a->id, a->id_len, a->err, a->errmsg);
			a->nenv = 0;
			ack_fini(a);
			continue;
		}
		memset(&rep, 0, sizeof rep);
		rep.op = ISVD_OP_PUSH;
		rep.ok = true;
		rep.id = a->id;
		rep.id_len = a->id_len;
		rep.accepted = a->duplicate ? 0 : a->rows;
		rep.seq = a->seq;
		rep.duplicate = a->duplicate;
		send_ok(srv, srv->ingest, a->env, a->nenv, &rep);
		a->nenv = 0;
		ack_fini(a);
	}
	srv->nacks = 0;
	srv->pend_rows = 0;
	if (srv->cfg->publish.spectrum_every_rows &&
	    srv->seq - srv->spectrum_seq >= srv->cfg->publish.spectrum_every_rows)
		publish_spectrum(srv);
}

/* ----------------------------------------------------------------- push */

/* Where the first missing (NaN) value of m is, for a message. */
static void first_nan(const struct isvd_proto_matrix *m, size_t *row, size_t *col)
{
	for (size_t i = 0; i < m->rows * m->cols; i++)
		if (isnan(m->data[i])) {
			*row = i / m->cols;
			*col = i % m->cols;
			return;
		}
	*row = *col = 0;
}

/* Refuses rows the engine would refuse (message into buf); 0 when fine. */
static int check_values(const struct isvd_proto_matrix *m, char *buf, size_t cap)
{
	size_t r, c;

	if (m->n_missing) {
		first_nan(m, &r, &c);
		snprintf(buf, cap, "rows: row %zu, column %zu is missing; model.missing is 'reject'", r, c);
		return ISVD_PROTO_NON_FINITE;
	}
	for (size_t i = 0; i < m->rows * m->cols; i++)
		if (!(fabs(m->data[i]) <= SRV_HUGE)) {
			snprintf(buf, cap, "rows: row %zu, column %zu is %g; magnitudes above %g are refused",
			         i / m->cols, i % m->cols, m->data[i], SRV_HUGE);
			return ISVD_PROTO_NON_FINITE;
		}
	return ISVD_PROTO_OK;
}

static struct srv_ack *new_ack(struct isvdd *srv)
{
	if (srv->nacks == srv->acks_cap) {
		size_t cap = srv->acks_cap ? 2 * srv->acks_cap : 64;
		struct srv_ack *a = realloc(srv->acks, cap * sizeof *a);
		if (!a) {
			srv_logf(srv->log, CFG_LOG_ERROR, "push queue: %s", strerror(errno));
			return NULL;
		}
		srv->acks = a;
		srv->acks_cap = cap;
	}
	struct srv_ack *a = &srv->acks[srv->nacks];
	memset(a, 0, sizeof *a);
	a->dup_of = -1;
	return a;
}

static bool reserve_rows(struct isvdd *srv, size_t rows)
{
	size_t cap;
	double *p;

	if (srv->pend_rows + rows <= srv->pend_cap)
		return true;
	cap = srv->pend_cap ? srv->pend_cap : 64;
	while (cap < srv->pend_rows + rows)
		cap *= 2;
	p = realloc(srv->pend, cap * srv->dim * sizeof(double));
	if (!p) {
		srv_logf(srv->log, CFG_LOG_ERROR, "pending rows: %s", strerror(errno));
		return false;
	}
	srv->pend = p;
	srv->pend_cap = cap;
	return true;
}

/* A printable copy of an untrusted client name for the log: at most 40
 * bytes, anything outside printable ASCII as '?'. */
static const char *printable(const char *s, char buf[48])
{
	size_t i = 0;

	if (!s)
		return "-";
	for (; s[i] && i < 40; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

static void handle_push(struct isvdd *srv, zmq_msg_t *env, size_t nenv, zmq_msg_t *body)
{
	char whobuf[48];
	struct isvd_proto_request req;
	struct isvd_proto_error perr;
	struct srv_ack *a;
	char msg[256];
	int code;
	const char *who;

	code = isvd_proto_request_decode(zmq_msg_data(body), zmq_msg_size(body), &srv->lim, &req, &perr);
	if (code == ISVD_PROTO_OK || req.op != ISVD_OP_NONE) {
		if (req.op != ISVD_OP_PUSH && req.op != ISVD_OP_NONE) {
			code = ISVD_PROTO_UNKNOWN_OP;
			snprintf(perr.message, sizeof perr.message,
			         "op '%s' belongs on the query socket; the ingest socket takes 'push'",
			         isvd_proto_op_name(req.op));
		}
	}
	who = printable(req.client, whobuf);
	if (code) {
		srv_log_refused(srv->log, "push refused (client %s): %s: %s", who,
		                isvd_proto_err_name(code), perr.message);
		send_error(srv, srv->ingest, env, nenv, req.id, req.id_len, code, perr.message);
		goto done;
	}
	if ((code = check_values(&req.rows, msg, sizeof msg)) != 0)
		goto refuse;
	if (!srv->model && make_model(srv, req.rows.cols)) {
		code = req.rows.cols > ISVD_MAX_DIM ? ISVD_PROTO_TOO_LARGE : ISVD_PROTO_INTERNAL;
		snprintf(msg, sizeof msg, "cannot create a model of dimension %zu", req.rows.cols);
		goto refuse;
	}
	if (req.rows.cols != srv->dim) {
		code = ISVD_PROTO_DIM_MISMATCH;
		snprintf(msg, sizeof msg, "rows: rows have %zu values; the model's dimension is %zu",
		         req.rows.cols, srv->dim);
		goto refuse;
	}

	/* a duplicate: of a queued push, or of an applied one */
	long dup_of = -1;
	uint64_t dup_seq = 0;
	bool dup = false;
	if (req.client && req.has_batch) {
		for (size_t i = 0; i < srv->nacks; i++) {
			const struct srv_ack *q = &srv->acks[i];
			if (q->rows && q->has_batch && q->client && q->batch == req.batch &&
			    !strcmp(q->client, req.client)) {
				dup_of = (long)i;
				dup = true;
			}
		}
		if (!dup)
			dup = client_seen(srv, req.client, req.batch, &dup_seq);
	}
	if (!dup && srv->pend_rows && srv->pend_rows + req.rows.rows > srv->cfg->batching.max_rows)
		flush(srv);
	if (!dup && !reserve_rows(srv, req.rows.rows)) {
		code = ISVD_PROTO_NOMEM;
		snprintf(msg, sizeof msg, "out of memory");
		goto refuse;
	}
	if (!(a = new_ack(srv))) {
		code = ISVD_PROTO_NOMEM;
		snprintf(msg, sizeof msg, "out of memory");
		goto refuse;
	}
	if (srv->nacks == 0)
		srv->batch_since_ms = srv_now_ms();
	srv->nacks++;
	for (size_t i = 0; i < nenv; i++) {   /* ownership moves to the ack */
		zmq_msg_init(&a->env[i]);
		zmq_msg_move(&a->env[i], &env[i]);
	}
	a->nenv = nenv;
	a->id = req.id;
	a->id_len = req.id_len;
	a->client = req.client;
	a->has_batch = req.has_batch;
	a->batch = req.batch;
	req.id = NULL;
	req.client = NULL;
	a->duplicate = dup;
	a->dup_of = dup_of;
	a->seq = dup_seq;
	if (!dup) {
		memcpy(srv->pend + srv->pend_rows * srv->dim, req.rows.data,
		       req.rows.rows * srv->dim * sizeof(double));
		srv->pend_rows += req.rows.rows;
		a->rows = req.rows.rows;
	}
	if (srv->pend_rows >= srv->cfg->batching.max_rows)
		flush(srv);
	goto done;

refuse:
	srv_log_refused(srv->log, "push refused (client %s): %s: %s", who, isvd_proto_err_name(code), msg);
	send_error(srv, srv->ingest, env, nenv, req.id, req.id_len, code, msg);
done:
	isvd_proto_request_fini(&req);
}

/* ---------------------------------------------------------------- queries */

static double ingest_rate(struct isvdd *srv, uint64_t now)
{
	if (now - srv->rate_ms[1] >= 10000) {
		srv->rate_ms[0] = srv->rate_ms[1];
		srv->rate_seq[0] = srv->rate_seq[1];
		srv->rate_ms[1] = now;
		srv->rate_seq[1] = srv->seq;
	}
	if (now <= srv->rate_ms[0])
		return 0;
	return (double)(srv->seq - srv->rate_seq[0]) * 1000.0 / (double)(now - srv->rate_ms[0]);
}

/* Fills rep for op `info`; sigma is malloc'd into rep->sigma.v. */
static int do_info(struct isvdd *srv, struct isvd_proto_reply *rep)
{
	const uint64_t now = srv_now_ms();
	struct isvd_info info;
	int rc;

	rep->dim = srv->model ? srv->dim : srv->cfg->model.dim;
	rep->seq = srv->seq;
	rep->rows_seen = srv->seq;
	rep->center = srv->cfg->model.center;
	rep->forget = srv->cfg->model.forget;
	rep->last_checkpoint_seq = 0;
	rep->uptime_s = (double)(now - srv->start_ms) / 1000.0;
	rep->ingest_rows_per_s = ingest_rate(srv, now);
	if (!srv->model)
		return ISVD_PROTO_OK;
	if ((rc = isvd_model_info(srv->model, &info)))
		return err_from_engine(rc);
	rep->rank = info.rank;
	rep->rank_max = info.rank_max;
	rep->rows_seen = info.rows_seen;
	rep->explained_energy_ratio = info.explained_energy_ratio;
	rep->condition_number = info.condition_number;
	rep->orthogonality_error = info.orthogonality_error;
	rep->center = info.center;
	rep->forget = info.forget;
	rep->sigma.v = malloc((srv->kmax ? srv->kmax : 1) * sizeof(double));
	if (!rep->sigma.v)
		return ISVD_PROTO_NOMEM;
	if ((rc = isvd_model_factors(srv->model, rep->sigma.v, NULL, NULL, &rep->sigma.n)))
		return err_from_engine(rc);
	return ISVD_PROTO_OK;
}

/* Checks query rows against the model; 0 or a code with msg filled. */
static int check_query_rows(struct isvdd *srv, const struct isvd_proto_matrix *m, char *msg, size_t cap)
{
	if (!srv->model || srv->seq == 0) {
		snprintf(msg, cap, "the model has seen no rows yet");
		return ISVD_PROTO_NOT_READY;
	}
	if (m->cols != srv->dim) {
		snprintf(msg, cap, "rows: rows have %zu values; the model's dimension is %zu", m->cols, srv->dim);
		return ISVD_PROTO_DIM_MISMATCH;
	}
	return check_values(m, msg, cap);
}

static void handle_query(struct isvdd *srv, zmq_msg_t *env, size_t nenv, zmq_msg_t *body)
{
	struct isvd_proto_request req;
	struct isvd_proto_reply rep;
	struct isvd_proto_error perr;
	char msg[256] = "";
	int code, rc;

	memset(&rep, 0, sizeof rep);
	code = isvd_proto_request_decode(zmq_msg_data(body), zmq_msg_size(body), &srv->lim, &req, &perr);
	if (req.op == ISVD_OP_PUSH) {
		code = ISVD_PROTO_UNKNOWN_OP;
		snprintf(perr.message, sizeof perr.message,
		         "op 'push' belongs on the ingest socket");
	}
	if (code) {
		srv_log_refused(srv->log, "query refused: %s: %s", isvd_proto_err_name(code), perr.message);
		send_error(srv, srv->query, env, nenv, req.id, req.id_len, code, perr.message);
		isvd_proto_request_fini(&req);
		return;
	}
	flush(srv);   /* every acknowledged row is in the model before we answer */
	rep.op = req.op;
	rep.ok = true;
	rep.id = req.id;
	rep.id_len = req.id_len;
	switch (req.op) {
	case ISVD_OP_PING:
		rep.version = (char *)ISVD_VERSION;
		rep.protocol = ISVD_PROTO_VERSION;
		break;
	case ISVD_OP_INFO:
		code = do_info(srv, &rep);
		break;
	case ISVD_OP_PROJECT:
		if ((code = check_query_rows(srv, &req.rows, msg, sizeof msg)))
			break;
		rep.coords.rows = req.rows.rows;
		rep.coords.cols = isvd_model_rank(srv->model);
		rep.coords.data = malloc((rep.coords.rows * rep.coords.cols + 1) * sizeof(double));
		rep.residual.v = malloc(req.rows.rows * sizeof(double));
		rep.residual.n = req.rows.rows;
		if (!rep.coords.data || !rep.residual.v) {
			code = ISVD_PROTO_NOMEM;
			break;
		}
		rc = isvd_model_project(srv->model, req.rows.data, req.rows.rows, srv->dim,
		                        req.space == ISVD_PROTO_SPACE_U ? ISVD_SPACE_U : ISVD_SPACE_SCORES,
		                        rep.coords.data, rep.residual.v);
		if (rc)
			code = err_from_engine(rc);
		rep.seq = srv->seq;
		break;
	case ISVD_OP_RECONSTRUCT:
		if ((code = check_query_rows(srv, &req.rows, msg, sizeof msg)))
			break;
		rep.rows.rows = req.rows.rows;
		rep.rows.cols = srv->dim;
		rep.rows.data = malloc(req.rows.rows * srv->dim * sizeof(double));
		if (!rep.rows.data) {
			code = ISVD_PROTO_NOMEM;
			break;
		}
		if ((rc = isvd_model_reconstruct(srv->model, req.rows.data, req.rows.rows, srv->dim,
		                                 rep.rows.data)))
			code = err_from_engine(rc);
		rep.seq = srv->seq;
		break;
	case ISVD_OP_FACTORS:
		if (!srv->model || srv->seq == 0) {
			code = ISVD_PROTO_NOT_READY;
			snprintf(msg, sizeof msg, "the model has seen no rows yet");
			break;
		}
		code = get_factors(srv, &rep);
		break;
	case ISVD_OP_CHECKPOINT:
		code = ISVD_PROTO_UNAVAILABLE;
		snprintf(msg, sizeof msg, "checkpoints are not implemented yet: this daemon keeps the model in memory only");
		break;
	default:
		code = ISVD_PROTO_UNKNOWN_OP;
		snprintf(msg, sizeof msg, "unknown op");
		break;
	}
	if (code) {
		if (!msg[0])
			snprintf(msg, sizeof msg, "%s", isvd_proto_strerror(code));
		if (code == ISVD_PROTO_NOMEM || code == ISVD_PROTO_INTERNAL)
			srv_logf(srv->log, CFG_LOG_ERROR, "%s failed: %s", isvd_proto_op_name(req.op), msg);
		else
			srv_log_refused(srv->log, "%s refused: %s: %s", isvd_proto_op_name(req.op),
			                isvd_proto_err_name(code), msg);
		send_error(srv, srv->query, env, nenv, req.id, req.id_len, code, msg);
	} else {
		send_ok(srv, srv->query, env, nenv, &rep);
	}
	free(rep.sigma.v);
	free(rep.vt.data);
	free(rep.mean.v);
	free(rep.coords.data);
	free(rep.residual.v);
	free(rep.rows.data);
	isvd_proto_request_fini(&req);
}

/* ------------------------------------------------------------ the loop */

static int drain_ingest(struct isvdd *srv)
{
	const uint64_t max_delay = srv->cfg->batching.max_delay_ms;

	for (int n = 0; n < SRV_BURST; n++) {
		zmq_msg_t env[SRV_MAX_FRAMES], body;
		size_t nenv = 0;
		int rc = recv_msg(srv, srv->ingest, env, &nenv, &body);
		if (rc == 0)
			break;               /* no more waiting */
		if (rc < 0)
			continue;
		handle_push(srv, env, nenv, &body);
		zmq_msg_close(&body);
		if (srv->nacks && srv_now_ms() - srv->batch_since_ms >= max_delay)
			flush(srv);
	}
	flush(srv);
	return 0;
}

static void drain_query(struct isvdd *srv)
{
	for (int n = 0; n < SRV_BURST; n++) {
		zmq_msg_t env[SRV_MAX_FRAMES], body;
		size_t nenv = 0;
		int rc = recv_msg(srv, srv->query, env, &nenv, &body);
		if (rc == 0)
			break;
		if (rc < 0)
			continue;
		handle_query(srv, env, nenv, &body);
		zmq_msg_close(&body);
	}
}

static long poll_timeout(struct isvdd *srv, uint64_t now)
{
	long t = SRV_POLL_MAX_MS;
	const struct cfg *c = srv->cfg;

	if (c->publish.spectrum_every_ms) {
		long d = srv->next_spectrum_ms > now ? (long)(srv->next_spectrum_ms - now) : 0;
		t = d < t ? d : t;
	}
	if (c->publish.factors_every_ms) {
		long d = srv->next_factors_ms > now ? (long)(srv->next_factors_ms - now) : 0;
		t = d < t ? d : t;
	}
	return t;
}

int srv_run(struct isvdd *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup)
{
	zmq_pollitem_t items[2] = {
		{ srv->ingest, 0, ZMQ_POLLIN, 0 },
		{ srv->query, 0, ZMQ_POLLIN, 0 },
	};
	int ret = 0;

	while (!*stop) {
		if (*hup) {
			*hup = 0;
			srv_log_reopen(srv->log);
		}
		if (zmq_poll(items, 2, poll_timeout(srv, srv_now_ms())) < 0) {
			if (errno == EINTR)
				continue;
			srv_logf(srv->log, CFG_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
			ret = -1;
			break;
		}
		if (items[0].revents & ZMQ_POLLIN)
			drain_ingest(srv);
		if (items[1].revents & ZMQ_POLLIN)
			drain_query(srv);
		publish_due(srv, srv_now_ms());
	}
	flush(srv);
	srv_logf(srv->log, CFG_LOG_INFO, "stopping: %llu rows in the model (seq %llu)",
	         (unsigned long long)srv->seq, (unsigned long long)srv->seq);
	return ret;
}

/* --------------------------------------------------------- create/destroy */

static void *open_socket(struct isvdd *srv, int type, const char *what, const char *endpoint,
                         int sndhwm, int rcvhwm)
{
	const int linger = 1000;
	const int64_t maxmsg = (int64_t)srv->cfg->limits.max_message_bytes + 65536;
	void *s = zmq_socket(srv->zctx, type);

	if (!s) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot create the %s socket: %s", what, zmq_strerror(errno));
		return NULL;
	}
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
	zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
	zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
	if (type != ZMQ_PUB)
		zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
	if (zmq_bind(s, endpoint) < 0) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot bind the %s endpoint %s: %s", what, endpoint,
		         zmq_strerror(errno));
		zmq_close(s);
		return NULL;
	}
	return s;
}

int srv_create(const struct cfg *cfg, struct srv_log *log, struct isvdd **out)
{
	struct isvdd *srv = calloc(1, sizeof *srv);
	const int hs = (int)cfg->limits.send_hwm, hr = (int)cfg->limits.recv_hwm;

	if (!srv) {
		srv_logf(log, CFG_LOG_ERROR, "cannot allocate the server: %s", strerror(errno));
		return -1;
	}
	srv->cfg = cfg;
	srv->log = log;
	srv->lim.max_frame = cfg->limits.max_message_bytes;
	srv->lim.max_rows = cfg->limits.max_rows_per_push;
	srv->lim.max_cols = ISVD_MAX_DIM;
	srv->clients = calloc(cfg->limits.max_clients, sizeof *srv->clients);
	if (!srv->clients) {
		srv_logf(log, CFG_LOG_ERROR, "cannot allocate the duplicate table: %s", strerror(errno));
		goto fail;
	}
	if (cfg->model.dim && make_model(srv, cfg->model.dim))
		goto fail;
	srv->zctx = zmq_ctx_new();
	if (!srv->zctx) {
		srv_logf(log, CFG_LOG_ERROR, "zmq_ctx_new: %s", zmq_strerror(errno));
		goto fail;
	}
	if (!(srv->ingest = open_socket(srv, ZMQ_ROUTER, "ingest", cfg->endpoints.ingest, hs, hr)))
		goto fail;
	if (!(srv->query = open_socket(srv, ZMQ_ROUTER, "query", cfg->endpoints.query, hs, hr)))
		goto fail;
	if (!(srv->publish = open_socket(srv, ZMQ_PUB, "publish", cfg->endpoints.publish,
	                                 (int)cfg->limits.publish_hwm, hr)))
		goto fail;
	srv->start_ms = srv_now_ms();
	srv->rate_ms[0] = srv->rate_ms[1] = srv->start_ms;
	srv->next_spectrum_ms = srv->start_ms + cfg->publish.spectrum_every_ms;
	srv->next_factors_ms = srv->start_ms + cfg->publish.factors_every_ms;
	*out = srv;
	return 0;
fail:
	srv_destroy(srv);
	return -1;
}

void srv_destroy(struct isvdd *srv)
{
	if (!srv)
		return;
	for (size_t i = 0; i < srv->nacks; i++)
		ack_fini(&srv->acks[i]);
	free(srv->acks);
	free(srv->pend);
	for (size_t i = 0; i < srv->nclients; i++)
		free(srv->clients[i].name);
	free(srv->clients);
	if (srv->ingest)
		zmq_close(srv->ingest);
	if (srv->query)
		zmq_close(srv->query);
	if (srv->publish)
		zmq_close(srv->publish);
	if (srv->zctx)
		zmq_ctx_term(srv->zctx);
	isvd_model_destroy(srv->model);
	free(srv);
}
