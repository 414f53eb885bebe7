/*
 * server.c — isvdd's event loop: ingest, batching, storage, snapshots.
 *
 * DESIGN
 *   One model, updated on one thread: the engine thread (worker.c), which
 *   applies the block the event loop hands it while the loop gathers,
 *   decodes and logs the next one.  The loop (loop.c) polls four
 *   registered pollables: the ZAP socket, the engine thread's "block
 *   applied" descriptor, the ingest ROUTER and the query thread's control
 *   pair (checkpoint requests); the PUB socket is only written.  Its timers
 *   are one table: the batching delay (on_flush_timer), storage's fsync
 *   interval, retry and due checkpoints (on_storage_timer), the two
 *   snapshots and the refusal summary.  Queries are answered by the query thread
 *   (reader.c) from a snapshot the engine thread takes after every block.
 *   A push travels:
 *
 *     ingest ROUTER ──srv_recv_frames()──► handle_push(): decode, refuse bad input
 *        whole (missing/huge values, wrong dim, duplicates), append its rows
 *        and its ack to the fill batch
 *     fill batch ──flush()──► log_batch(): one log record for the block,
 *        durable per storage.fsync (storage.c) ──wrk_submit()──► engine
 *        thread, apply_batch(): one isvd_model_update() for every row of
 *        the block, seq per push, the query thread's next view
 *        ──engine_finish()──► finish_batch() (loop): view published,
 *        duplicate table, acks sent
 *
 *   Two batches alternate: srv->fill gathers while srv->fly is in the
 *   engine.  flush() logs the fill batch first, then waits for the block
 *   in flight (engine_finish()), then submits: so the log write and the
 *   next block's receiving and decoding overlap the engine's arithmetic,
 *   and exactly one block is in the engine at a time.  Whatever reads or
 *   writes the model on the loop (snapshots on the publish socket,
 *   checkpoints, shutdown) first waits for it (engine_finish(), drain()).
 *
 *   flush() runs when the fill batch reaches batching.max_rows (a push
 *   that would overflow the batch first flushes what is pending; a push is
 *   never split, so one larger than max_rows is a block of its own), when
 *   the batch has been gathering for batching.max_delay_ms, when no more
 *   pushes are waiting on the socket (so pushes that arrived together
 *   share one fsync: group commit), before a checkpoint and at shutdown.
 *   Between two blocks of a long ingest burst the loop also serves
 *   checkpoint requests and handshakes, and does the interval fsync, due
 *   checkpoints and snapshots (a loop_turn() without waiting, from
 *   on_ingest(), the ingest socket left out), so that none waits for
 *   more than one block.  A push is acknowledged only after its rows are
 *   logged and in the model and the query thread's view includes them, so
 *   a query that arrives after an ack always sees them; `seq` in replies is
 *   the number of rows in the view that answered.
 *
 *   Block boundaries depend on timing (how many pushes were waiting), and
 *   the engine's result depends on them once the data's rank exceeds
 *   k + extra.  So the log record is the block: hook_apply() rebuilds the
 *   same batch from a record and runs the same apply_batch(), which
 *   reproduces the live run exactly.  Checkpoints (do_checkpoint())
 *   hold the engine image and the duplicate table and are taken between
 *   blocks only.
 *
 *   All or nothing per push: the engine refuses a whole update call on one
 *   bad value, so handle_push() checks each push for what the engine would
 *   refuse (missing values, |x| > 1e150) before it joins a batch; should the
 *   engine still refuse a batch (energy overflow), apply_batch() retries
 *   push by push and refuses only the offending ones.
 *
 *   Duplicates (dedup.c): a resend of a batch the table remembers gets its
 *   original seq and `duplicate: true`; a batch number older than every
 *   remembered one (of a full ring) gets `duplicate: true` and seq 0
 *   (unknown); see dup_seen().  A resend of a push still in the engine
 *   waits for it.  Pushes without both `client` and `batch` are never
 *   duplicates.
 *
 *   Hostile peers (security.c has CURVE and the ZAP handler, which this
 *   loop also serves): every socket bounds message size (ZMQ_MAXMSGSIZE),
 *   queues (high-water marks) and handshake time (limits.handshake_ms);
 *   requests are bounded by the decoder's limits; and the fill batch never
 *   holds more than limits.max_pending_pushes pushes — one more first
 *   flushes it (a smaller group commit, never a refusal).  Refusals are
 *   counted and summed up in the log by report_limits().
 *
 * INVARIANTS
 *   srv->seq == isvd_model_rows_seen(srv->model) whenever srv->fly is NULL
 *   (no block in the engine); while one is, the model and *srv->fly are the
 *   engine thread's.  srv->logged >= srv->seq: rows logged since the last
 *   checkpoint's seq (the next record's first_seq - 1).  A batch's rows
 *   hold nrows × dim values, the rows of its acks with rows > 0, in ack
 *   order.  The ack queue holds at most limits.max_pending_pushes pushes
 *   gathering plus the block in the engine.
 */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "isvd_model.h"
#include "dedup.h"
#include "isvd_proto.h"
#include "loop.h"
#include "security.h"
#include "reader.h"
#include "reply.h"
#include "storage.h"
#include "wal.h"
#include "worker.h"

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

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
	size_t rows;                 /* rows this push put in its batch (0: a duplicate) */
	bool duplicate;
	long dup_of;                 /* duplicate of the queued ack at this index, or -1 */
	uint64_t seq;                /* result; for a known duplicate its original seq */
	int err;                     /* set by flush() when the push is refused */
	char *errmsg;                /* owned */
};

/* Pushes gathered into one engine block.  The loop fills one batch
 * (srv->fill) while the engine thread applies the other (srv->fly). */
struct srv_batch {
	double *rows;                /* the rows of the acks with rows > 0, in ack order; ld = dim */
	size_t nrows, cap;           /* cap in rows */
	struct srv_ack *acks;
	size_t nacks, acks_cap;
	/* written by apply_batch() (the engine thread), read after wrk_wait() */
	uint64_t seq_after;          /* rows in the model after the block */
	struct rdr_view *view;       /* the query thread's next view, or NULL */
	int view_err;                /* why view is NULL when one was wanted (an isvd_err) */
};

struct isvdd {
	const struct cfg *cfg;
	struct srv_log *log;
	void *zctx, *ingest, *query, *publish;
	struct isvd_proto_limits lim;
	struct loop *loop;           /* the loop thread's pollables and timers (loop.c) */
	int t_flush, t_spectrum, t_factors, t_storage, t_report;   /* timer ids; -1: none */

	struct isvd_model *model;    /* NULL until the dimension is known */
	size_t dim, kmax;            /* kmax = min(rank, dim) */
	uint64_t seq;                /* rows in the model when no block is in flight */
	uint64_t logged;             /* rows in the log records since the last checkpoint's seq */

	struct srv_batch batch[2];
	struct srv_batch *fill;      /* gathering pushes: batch[0] or batch[1] */
	struct srv_batch *fly;       /* the other while the engine applies it, else NULL */
	struct wrk *engine;          /* the engine thread (NULL during recovery) */

	struct dup_table dup;         /* (client, batch) pushes applied (dedup.c) */

	uint64_t spectrum_seq, factors_seq;  /* seq of the last published snapshot */
	bool spectrum_sent, factors_sent;

	uint64_t start_ms;
	uint64_t rate_ms[2], rate_seq[2];    /* [0] older mark, [1] newer mark */

	struct sto *sto;             /* storage.dir; NULL only inside srv_create() */
	uint64_t blocks;             /* flush() calls that answered pushes, ever */
	struct rdr *rdr;             /* the query thread; NULL until srv_create() starts it */
	struct wal_push *wal_push;   /* log_batch()'s scratch, wal_push_cap entries */
	size_t wal_push_cap;

	struct sec *sec;             /* CURVE keys and the ZAP handler (security.c) */
	uint64_t early_flushes;      /* flushes forced by limits.max_pending_pushes */
	uint64_t reported[3];        /* refused requests, CURVE refusals, early flushes at the last one */
};

/* ------------------------------------------------------------ messaging */

/* ------------------------------------------------------------ the model */

/* Resizes b's rows to cap rows (of dim values).  false when out of memory
 * (b unchanged). */
static bool grow_rows(struct srv_batch *b, size_t cap, size_t dim)
{
	double *p = realloc(b->rows, cap * dim * sizeof *p);

	if (!p)
		return false;
	b->rows = p;
	b->cap = cap;
	return true;
}

/* Reserves both batches' rows at batching.max_rows, pre-faulted, once the
 * dimension is known (the batches are empty then): the daemon's largest
 * buffers, 2 × max_rows × dim doubles, are in place from the start, and its
 * memory does not creep up as blocks first reach full size.  A push larger
 * than max_rows still grows a batch (reserve_rows()).  Failure is not
 * fatal: the batches then grow on demand, and a push they cannot hold is
 * refused. */
static void reserve_batches(struct isvdd *srv)
{
	const size_t rows = srv->cfg->batching.max_rows;

	for (int j = 0; j < 2; j++) {
		struct srv_batch *b = &srv->batch[j];
		const size_t had = b->cap;
		if (had >= rows)
			continue;
		if (!grow_rows(b, rows, srv->dim)) {
			srv_logf(srv->log, CFG_LOG_WARN, "cannot reserve %zu MiB for the batches of "
			         "batching.max_rows %zu rows: %s; they will grow on demand",
			         2 * rows * srv->dim * sizeof(double) >> 20, rows, strerror(errno));
			return;
		}
		memset(b->rows + had * srv->dim, 0, (rows - had) * srv->dim * sizeof(double));
	}
}

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
	o.mode = srv->cfg->model.mode;
	rc = isvd_model_create(&o, &srv->model);
	if (rc) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot create a model of dimension %zu: %s", dim,
		         isvd_strerror(rc));
		return rc;
	}
	srv->dim = dim;
	srv->kmax = o.rank < dim ? o.rank : dim;
	reserve_batches(srv);
	return 0;
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
		return srv_err_from_engine(rc);
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

static void engine_finish(struct isvdd *srv);

/* Timers: the periodic snapshots, each published only when the model
 * moved since the last one (waiting for the block in the engine, if any:
 * snapshots read the model). */
static void on_spectrum_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;

	engine_finish(srv);
	if (!srv->spectrum_sent || srv->seq != srv->spectrum_seq)
		publish_spectrum(srv);
}

static void on_factors_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;

	engine_finish(srv);
	if (!srv->factors_sent || srv->seq != srv->factors_seq)
		publish_factors(srv);
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

/* Rows per second over the last 10 to 20 s (two marks, moved every 10 s). */
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

/* Folds a batch's rows into the model: one engine call for the whole block
 * (push by push if the block as a whole would overflow), then seq per push,
 * then (when the query thread runs) the snapshot of its next view.  A pure
 * function of the model and the block, which is what makes a replay of the
 * log reproduce the live run exactly.  It runs on the engine thread, which
 * owns the model and b meanwhile, and touches nothing else of srv's but
 * what never changes while a block is in flight (model, dim, rdr, log);
 * recovery (hook_apply()) calls it directly. */
static void apply_batch(struct isvdd *srv, struct srv_batch *b)
{
	const uint64_t before = srv->model ? isvd_model_rows_seen(srv->model) : 0;
	uint64_t at;
	int rc = ISVD_OK;

	if (b->nrows > 0) {
		rc = isvd_model_update(srv->model, b->rows, b->nrows, srv->dim);
		if (rc == ISVD_ERR_NONFINITE) {
			/* the batch as a whole would overflow: retry push by push */
			size_t off = 0;
			rc = ISVD_OK;
			for (size_t i = 0; i < b->nacks; i++) {
				struct srv_ack *a = &b->acks[i];
				if (a->rows == 0 || a->err)
					continue;
				int r1 = isvd_model_update(srv->model, b->rows + off * srv->dim, a->rows, srv->dim);
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
			         b->nrows, isvd_strerror(rc));
		}
	}
	b->seq_after = srv->model ? isvd_model_rows_seen(srv->model) : 0;

	/* seq per push; when the engine failed part-way only whole pushes
	 * inside the applied prefix count as accepted */
	at = before;
	for (size_t i = 0; i < b->nacks; i++) {
		struct srv_ack *a = &b->acks[i];
		if (a->rows == 0 || a->err)
			continue;
		if (rc && at + a->rows > b->seq_after) {
			ack_refuse(a, ISVD_PROTO_INTERNAL, "the engine update failed; this push was not applied whole");
			at += a->rows;
			continue;
		}
		at += a->rows;
		a->seq = at;
	}
	b->view = NULL;
	b->view_err = 0;
	if (srv->rdr && b->seq_after != before)
		b->view = rdr_view_make(srv->model, b->seq_after, &b->view_err);
}

/* A resend of a push queued in the same batch is answered as that push
 * was: its seq, or its refusal. */
static void answer_resends_like_originals(struct srv_batch *b)
{
	for (size_t i = 0; i < b->nacks; i++) {
		struct srv_ack *a = &b->acks[i];
		if (a->dup_of >= 0) {
			const struct srv_ack *orig = &b->acks[a->dup_of];
			a->seq = orig->seq;
			if (orig->err)
				ack_refuse(a, orig->err, orig->errmsg ? orig->errmsg : "refused");
		}
	}
}

/* Writes a batch's rows to the log as one block record.  0, or -1 after
 * refusing every push of it with UNAVAILABLE (storage failed).  The
 * record's first_seq counts logged rows (srv->logged), not applied ones:
 * the block before may still be in the engine (see wal.h). */
static int log_batch(struct isvdd *srv, struct srv_batch *bt)
{
	struct wal_block b;
	struct wal_push *p;
	size_t n = 0, off = 0;
	const char *why = NULL;

	if (bt->nrows == 0)
		return 0;
	p = srv->wal_push;
	if (bt->nacks > srv->wal_push_cap) {
		p = realloc(srv->wal_push, bt->nacks * sizeof *p);
		if (!p) {
			srv_logf(srv->log, CFG_LOG_ERROR, "log record: %s", strerror(errno));
			why = "out of memory assembling the log record";
			goto refuse;
		}
		srv->wal_push = p;
		srv->wal_push_cap = bt->nacks;
	}
	for (size_t i = 0; i < bt->nacks; i++) {
		const struct srv_ack *a = &bt->acks[i];
		if (a->rows == 0)
			continue;
		p[n].client = a->client;
		p[n].client_len = a->client ? strlen(a->client) : 0;
		p[n].has_batch = a->has_batch;
		p[n].batch = a->batch;
		p[n].rows = a->rows;
		p[n].data = bt->rows + off * srv->dim;
		off += a->rows;
		n++;
	}
	b.lsn = 0;
	b.first_seq = srv->logged + 1;
	b.dim = srv->dim;
	b.npush = n;
	b.push = p;
	if (sto_log_block(srv->sto, &b) == 0) {
		srv->logged += bt->nrows;
		return 0;
	}
	sto_failed(srv->sto, &why);
refuse:
	{
		char msg[700];
		snprintf(msg, sizeof msg, "storage is failing, pushes are refused until it recovers: %s", why);
		for (size_t i = 0; i < bt->nacks; i++)
			if (bt->acks[i].rows)
				ack_refuse(&bt->acks[i], ISVD_PROTO_UNAVAILABLE, msg);
	}
	return -1;
}

/* Sends every reply queued in b and empties it. */
static void answer_batch(struct isvdd *srv, struct srv_batch *b)
{
	for (size_t i = 0; i < b->nacks; i++) {
		struct srv_ack *a = &b->acks[i];
		struct isvd_proto_reply rep;

		if (a->nenv == 0) {   /* replayed from the log: nobody to answer */
			ack_fini(a);
			continue;
		}
		if (a->err) {
			srv_send_error(srv->log, srv->ingest, a->env, a->nenv, a->id, a->id_len, a->err, a->errmsg);
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
		srv_send_ok(srv->log, srv->ingest, a->env, a->nenv, &rep);
		a->nenv = 0;
		ack_fini(a);
	}
	b->nacks = 0;
	b->nrows = 0;
}

/* The loop's half of a block, with the engine idle: the model's new seq,
 * the query thread's new view (before the acks: a query that follows an
 * ack sees its rows), the duplicate table, then the replies.  applied:
 * apply_batch() ran on b (false: b held only duplicates and refusals). */
static void finish_batch(struct isvdd *srv, struct srv_batch *b, bool applied)
{
	const uint64_t before = srv->seq;

	if (applied) {
		srv->seq = b->seq_after;
		if (b->view) {
			rdr_publish_view(srv->rdr, b->view, sto_last_checkpoint_seq(srv->sto),
			                 ingest_rate(srv, loop_now_ms()));
			b->view = NULL;
		} else if (b->view_err) {
			srv_logf(srv->log, CFG_LOG_ERROR, "cannot publish the model to the query thread: %s; "
			         "queries answer from the previous view", isvd_strerror(b->view_err));
		}
		for (size_t i = 0; i < b->nacks; i++) {
			const struct srv_ack *a = &b->acks[i];
			if (a->rows && !a->err && a->client && a->has_batch &&
			    dup_record(&srv->dup, a->client, a->batch, a->seq))
				srv_logf(srv->log, CFG_LOG_ERROR, "duplicate table: %s", strerror(errno));
		}
	}
	answer_resends_like_originals(b);
	if (srv->seq > before)
		srv_logf(srv->log, CFG_LOG_DEBUG, "block: rows %llu..%llu (%llu) from %zu request%s",
		         (unsigned long long)before + 1, (unsigned long long)srv->seq,
		         (unsigned long long)(srv->seq - before), b->nacks, b->nacks == 1 ? "" : "s");
	answer_batch(srv, b);
	if (srv->cfg->publish.spectrum_every_rows &&
	    srv->seq - srv->spectrum_seq >= srv->cfg->publish.spectrum_every_rows)
		publish_spectrum(srv);
}

/* worker.h's job: the engine thread's half of a block. */
static void engine_job(void *ctx, void *job)
{
	apply_batch(ctx, job);
}

/* Waits for the block in the engine, if any, and finishes it; the engine
 * is idle afterwards and the model may be read or written. */
static void engine_finish(struct isvdd *srv)
{
	struct srv_batch *b;

	if (!srv->fly)
		return;
	b = wrk_wait(srv->engine);
	srv->fly = NULL;
	finish_batch(srv, b, true);
}

/* The ingest path's one transition: the fill batch → its log record
 * (durable per storage.fsync) → the engine thread, while the loop goes on
 * gathering the next batch; the block before is finished first (one block
 * in the engine at a time).  Rows the log could not take are neither
 * applied nor acknowledged.  Returns with the block in flight: see
 * engine_finish() and drain(). */
static void flush(struct isvdd *srv)
{
	struct srv_batch *b = srv->fill;
	bool logged;

	if (b->nacks == 0)
		return;
	loop_timer_stop(srv->loop, srv->t_flush);
	srv->blocks++;
	logged = log_batch(srv, b) == 0;   /* while the block before is in the engine */
	engine_finish(srv);
	if (logged && b->nrows > 0) {
		srv->fill = b == &srv->batch[0] ? &srv->batch[1] : &srv->batch[0];
		srv->fly = b;
		wrk_submit(srv->engine, b);
	} else {
		finish_batch(srv, b, false);   /* duplicates of applied pushes, refusals */
	}
}

/* flush(), then wait for the engine: everything gathered is applied and
 * answered, and the model may be read or written. */
static void drain(struct isvdd *srv)
{
	flush(srv);
	engine_finish(srv);
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

int srv_check_values(const struct isvd_proto_matrix *m, char *buf, size_t cap)
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

/* The next ack slot of b (not yet counted in b->nacks), or NULL. */
static struct srv_ack *new_ack(struct isvdd *srv, struct srv_batch *b)
{
	if (b->nacks == b->acks_cap) {
		size_t cap = b->acks_cap ? 2 * b->acks_cap : 64;
		struct srv_ack *a = realloc(b->acks, cap * sizeof *a);
		if (!a) {
			srv_logf(srv->log, CFG_LOG_ERROR, "push queue: %s", strerror(errno));
			return NULL;
		}
		b->acks = a;
		b->acks_cap = cap;
	}
	struct srv_ack *a = &b->acks[b->nacks];
	memset(a, 0, sizeof *a);
	a->dup_of = -1;
	return a;
}

static bool reserve_rows(struct isvdd *srv, struct srv_batch *b, size_t rows)
{
	size_t cap;

	if (b->nrows + rows <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < b->nrows + rows)
		cap *= 2;
	if (!grow_rows(b, cap, srv->dim)) {
		srv_logf(srv->log, CFG_LOG_ERROR, "pending rows: %s", strerror(errno));
		return false;
	}
	return true;
}

/* Is (client, batch) among b's pushes with rows?  Returns its index or -1. */
static long find_push(const struct srv_batch *b, const char *client, uint64_t batch)
{
	for (size_t i = 0; i < b->nacks; i++) {
		const struct srv_ack *q = &b->acks[i];
		if (q->rows && q->has_batch && q->client && q->batch == batch && !strcmp(q->client, client))
			return (long)i;
	}
	return -1;
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
	struct srv_batch *b;
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
		srv_send_error(srv->log, srv->ingest, env, nenv, req.id, req.id_len, code, perr.message);
		goto done;
	}
	if ((code = srv_check_values(&req.rows, msg, sizeof msg)) != 0)
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

	/* limits.max_pending_pushes: a full queue is flushed early (before the
	 * duplicate scan below, whose indices point into the queue) */
	if (srv->fill->nacks >= srv->cfg->limits.max_pending_pushes) {
		flush(srv);
		srv->early_flushes++;
	}

	/* a duplicate: of a queued push, of one in the engine (waited for, so
	 * that the duplicate table has it), or of an applied one */
	long dup_of = -1;
	uint64_t dup_seq = 0;
	bool dup = false;
	if (req.client && req.has_batch) {
		dup_of = find_push(srv->fill, req.client, req.batch);
		dup = dup_of >= 0;
		if (!dup && srv->fly && find_push(srv->fly, req.client, req.batch) >= 0) {
			srv_logf(srv->log, CFG_LOG_DEBUG, "push (client %s, batch %llu) resent while the engine "
			         "applies it: waiting for the block", who, (unsigned long long)req.batch);
			engine_finish(srv);
		}
		if (!dup)
			dup = dup_seen(&srv->dup, req.client, req.batch, &dup_seq);
	}
	const char *why;
	if (!dup && sto_failed(srv->sto, &why)) {
		code = ISVD_PROTO_UNAVAILABLE;
		snprintf(msg, sizeof msg, "storage is failing, pushes are refused until it recovers: %s", why);
		goto refuse;
	}
	if (!dup && srv->fill->nrows && srv->fill->nrows + req.rows.rows > srv->cfg->batching.max_rows)
		flush(srv);
	b = srv->fill;   /* after any flush */
	if (!dup && !reserve_rows(srv, b, req.rows.rows)) {
		code = ISVD_PROTO_NOMEM;
		snprintf(msg, sizeof msg, "out of memory");
		goto refuse;
	}
	if (!(a = new_ack(srv, b))) {
		code = ISVD_PROTO_NOMEM;
		snprintf(msg, sizeof msg, "out of memory");
		goto refuse;
	}
	if (b->nacks == 0)   /* the batch's first push: batching.max_delay_ms from now */
		loop_timer_at(srv->loop, srv->t_flush, loop_now_ms() + srv->cfg->batching.max_delay_ms);
	b->nacks++;
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
		memcpy(b->rows + b->nrows * srv->dim, req.rows.data, req.rows.rows * srv->dim * sizeof(double));
		b->nrows += req.rows.rows;
		a->rows = req.rows.rows;
	}
	if (b->nrows >= srv->cfg->batching.max_rows)
		flush(srv);
	goto done;

refuse:
	srv_log_refused(srv->log, "push refused (client %s): %s: %s", who, isvd_proto_err_name(code), msg);
	srv_send_error(srv->log, srv->ingest, env, nenv, req.id, req.id_len, code, msg);
done:
	isvd_proto_request_fini(&req);
}

/* ------------------------------------------------ storage: state and replay */

/* sto_hooks.load: the model and duplicate table from a checkpoint. */
static int hook_load(void *ctx, const struct ckpt *c, char *why, size_t cap)
{
	struct isvdd *srv = ctx;
	const struct cfg *cfg = srv->cfg;
	struct isvd_model *m = NULL;
	struct isvd_options o;
	struct dup_table tab;
	int rc;

	if (c->model) {
		if ((rc = isvd_model_load(c->model, c->model_len, &m))) {
			snprintf(why, cap, "model image: %s", isvd_strerror(rc));
			return -1;
		}
		isvd_model_options(m, &o);
		if (isvd_model_rows_seen(m) != c->seq) {
			snprintf(why, cap, "model image holds %llu rows, the checkpoint says %llu",
			         (unsigned long long)isvd_model_rows_seen(m), (unsigned long long)c->seq);
			isvd_model_destroy(m);
			return -1;
		}
		/* a checkpoint of another model must not be silently continued */
		const char *key = NULL;
		char was[64] = "", now[64] = "";
		if (cfg->model.dim && cfg->model.dim != o.dim) {
			key = "model.dim";
			snprintf(was, sizeof was, "%zu", o.dim);
			snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.dim);
		} else if (cfg->model.rank != o.rank) {
			key = "model.rank";
			snprintf(was, sizeof was, "%zu", o.rank);
			snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.rank);
		} else if (cfg->model.extra != o.extra) {
			key = "model.extra";
			snprintf(was, sizeof was, "%zu", o.extra);
			snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.extra);
		} else if ((cfg->model.center != 0) != (o.center != 0)) {
			key = "model.center";
			snprintf(was, sizeof was, "%s", o.center ? "true" : "false");
			snprintf(now, sizeof now, "%s", cfg->model.center ? "true" : "false");
		} else if (cfg->model.forget != o.forget) {
			key = "model.forget";
			snprintf(was, sizeof was, "%.17g", o.forget);
			snprintf(now, sizeof now, "%.17g", cfg->model.forget);
		} else if (cfg->model.mode != ISVD_MODE_AUTO && cfg->model.mode != o.mode) {
			key = "model.mode";
			snprintf(was, sizeof was, "%s", isvd_mode_name(o.mode));
			snprintf(now, sizeof now, "%s", isvd_mode_name(cfg->model.mode));
		}
		if (key) {
			snprintf(why, cap, "the checkpoint was written with %s %s, the configuration says %s; "
			         "restore the configuration, or move storage.dir away to start a new model",
			         key, was, now);
			isvd_model_destroy(m);
			return -2;
		}
	} else if (c->seq != 0) {
		snprintf(why, cap, "no model image but %llu rows", (unsigned long long)c->seq);
		return -1;
	}
	if (dup_decode(c->clients, c->clients_len, cfg->limits.max_clients, &tab, why, cap)) {
		isvd_model_destroy(m);
		return -1;
	}
	isvd_model_destroy(srv->model);
	srv->model = NULL;
	if (m) {
		srv->model = m;
		srv->dim = o.dim;
		srv->kmax = o.rank < o.dim ? o.rank : o.dim;
		reserve_batches(srv);
	}
	dup_fini(&srv->dup);
	srv->dup = tab;
	srv->seq = srv->logged = c->seq;
	return 0;
}

/* sto_hooks.apply: replays one log record exactly as the engine thread
 * applied it.  Its first_seq continues the logged rows, or restarts at the
 * model's rows + 1 where the live run wrote a checkpoint (see wal.h). */
static int hook_apply(void *ctx, const struct wal_block *b, char *why, size_t cap)
{
	struct isvdd *srv = ctx;
	struct srv_batch *bt = srv->fill;

	if (b->first_seq != srv->logged + 1 && b->first_seq != srv->seq + 1) {
		snprintf(why, cap, "it starts at row %llu but the log before it ends at row %llu and the "
		         "model holds %llu rows", (unsigned long long)b->first_seq,
		         (unsigned long long)srv->logged, (unsigned long long)srv->seq);
		return -1;
	}
	if (!srv->model && make_model(srv, b->dim)) {
		snprintf(why, cap, "cannot create a model of dimension %zu", b->dim);
		return -1;
	}
	if (b->dim != srv->dim) {
		snprintf(why, cap, "its rows have %zu values, the model's dimension is %zu", b->dim, srv->dim);
		return -1;
	}
	for (size_t i = 0; i < b->npush; i++) {
		const struct wal_push *q = &b->push[i];
		struct srv_ack *a;
		if (!reserve_rows(srv, bt, q->rows) || !(a = new_ack(srv, bt)))
			goto nomem;
		bt->nacks++;
		if (q->client && !(a->client = strndup(q->client, q->client_len)))
			goto nomem;
		a->has_batch = q->has_batch;
		a->batch = q->batch;
		a->rows = q->rows;
		memcpy(bt->rows + bt->nrows * srv->dim, q->data, q->rows * srv->dim * sizeof(double));
		bt->nrows += q->rows;
	}
	srv->logged = b->first_seq - 1 + bt->nrows;
	apply_batch(srv, bt);
	finish_batch(srv, bt, true);   /* nothing to send: frees the replayed entries */
	return 0;
nomem:
	answer_batch(srv, bt);
	snprintf(why, cap, "out of memory");
	return -1;
}

/* Writes a checkpoint of everything acknowledged so far.  0, or -1 with
 * storage failed (logged by storage.c). */
static int do_checkpoint(struct isvdd *srv)
{
	uint8_t *img = NULL, *tab = NULL;
	size_t img_len = 0, tab_len = 0;
	int rc = -1;

	drain(srv);
	srv->logged = srv->seq;   /* the next record restarts the numbering (see wal.h) */
	if (srv->model) {
		size_t need = isvd_model_saved_size(srv->model);
		if (!(img = malloc(need)) || isvd_model_save(srv->model, img, need, &img_len)) {
			srv_logf(srv->log, CFG_LOG_ERROR, "checkpoint: cannot save the model image (%zu bytes)", need);
			goto out;
		}
	}
	if (dup_encode(&srv->dup, &tab, &tab_len)) {
		srv_logf(srv->log, CFG_LOG_ERROR, "checkpoint: cannot encode the client table: %s", strerror(errno));
		goto out;
	}
	rc = sto_checkpoint(srv->sto, srv->seq, img, img_len, tab, tab_len);
	if (rc == 0 && srv->rdr)
		rdr_set_checkpoint(srv->rdr, sto_last_checkpoint_seq(srv->sto));
out:
	free(img);
	free(tab);
	return rc;
}

/* rdr_hooks.checkpoint: the `checkpoint` op, forwarded by the query thread. */
static int hook_checkpoint(void *ctx, uint64_t *seq, char *why, size_t cap)
{
	struct isvdd *srv = ctx;
	const char *reason;

	if (do_checkpoint(srv)) {
		sto_failed(srv->sto, &reason);
		snprintf(why, cap, "the checkpoint failed: %s", reason);
		return -1;
	}
	*seq = srv->seq;
	return 0;
}


/* ------------------------------------------------------------ the loop */

/* Timer: batching.max_delay_ms after the fill batch's first push. */
static void on_flush_timer(void *ctx, uint64_t now)
{
	flush(ctx);
}

/* Timer, and after every block: the interval fsync, storage's retry and the
 * checkpoints that are due; then re-armed for storage's next deadline (at
 * most SRV_POLL_MAX_MS away, which bounds a checkpoint_every_s lag). */
static void on_storage_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;
	long d;

	sto_tick(srv->sto, now);
	if (sto_checkpoint_due(srv->sto, srv->seq, now))
		do_checkpoint(srv);
	d = sto_timeout_ms(srv->sto, now);
	loop_timer_at(srv->loop, srv->t_storage, now + (d >= 0 && d < SRV_POLL_MAX_MS ? (uint64_t)d
	                                                                           : SRV_POLL_MAX_MS));
}

/* Pollable: the ingest socket.  Reads up to SRV_BURST pushes; between two
 * blocks of a long burst it gives the loop a turn without waiting (the
 * ingest socket left out), so that a burst of many rows (seconds of engine
 * time) starves none of checkpoint requests, handshakes, storage and
 * snapshots; after every push the due timers run (batching.max_delay_ms).
 * When no push is waiting the batch is flushed (group commit). */
static void on_ingest(void *ctx)
{
	struct isvdd *srv = ctx;

	for (int n = 0; n < SRV_BURST; n++) {
		zmq_msg_t frames[SRV_MAX_FRAMES];
		size_t nf = 0;
		const uint64_t blocks = srv->blocks;
		int rc = srv_recv_frames(srv->log, srv->ingest, frames, SRV_MAX_FRAMES, &nf);
		if (rc == 0)
			break;               /* no more waiting */
		if (rc < 0)
			continue;
		handle_push(srv, frames, nf - 1, &frames[nf - 1]);
		zmq_msg_close(&frames[nf - 1]);
		if (srv->blocks != blocks) {
			on_storage_timer(srv, loop_now_ms());
			loop_turn(srv->loop, 0);
		} else {
			loop_run_timers(srv->loop, loop_now_ms());
		}
	}
	flush(srv);
	on_storage_timer(srv, loop_now_ms());
}

static void on_engine_done(void *ctx)
{
	engine_finish(ctx);
}

static void on_checkpoint_request(void *ctx)
{
	struct isvdd *srv = ctx;

	rdr_serve_ctl(srv->rdr);
}

static void on_zap(void *ctx)
{
	struct isvdd *srv = ctx;

	sec_zap_serve(srv->sec);
}

/* Logs what was refused or limited since start, when anything changed
 * since the last report or at stop (final). */
static void report_limits(struct isvdd *srv, bool final)
{
	struct sec_counts sc;
	uint64_t cur[3];

	sec_get_counts(srv->sec, &sc);
	cur[0] = srv_log_refused_count(srv->log);
	cur[1] = sc.refused[SEC_INGEST] + sc.refused[SEC_QUERY] + sc.refused[SEC_PUBLISH];
	cur[2] = srv->early_flushes;
	if (!memcmp(cur, srv->reported, sizeof cur) && !final)
		return;
	memcpy(srv->reported, cur, sizeof cur);
	srv_logf(srv->log, CFG_LOG_INFO, "refusals since start: %llu requests and clients refused; CURVE "
	         "clients admitted %llu/%llu/%llu, refused %llu/%llu/%llu (ingest/query/publish); "
	         "%llu early flushes at limits.max_pending_pushes",
	         (unsigned long long)cur[0], (unsigned long long)sc.admitted[SEC_INGEST],
	         (unsigned long long)sc.admitted[SEC_QUERY], (unsigned long long)sc.admitted[SEC_PUBLISH],
	         (unsigned long long)sc.refused[SEC_INGEST], (unsigned long long)sc.refused[SEC_QUERY],
	         (unsigned long long)sc.refused[SEC_PUBLISH], (unsigned long long)cur[2]);
}

/* Timer: the refusal summary, once a minute. */
static void on_report_timer(void *ctx, uint64_t now)
{
	report_limits(ctx, false);
}

int srv_run(struct isvdd *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup)
{
	int ret = 0;

	while (!*stop) {
		if (*hup) {
			*hup = 0;
			srv_log_reopen(srv->log);
			sec_reload(srv->sec);
		}
		if (loop_turn(srv->loop, -1) < 0) {
			srv_logf(srv->log, CFG_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
			ret = -1;
			break;
		}
	}
	drain(srv);
	srv_logf(srv->log, CFG_LOG_INFO, "stopping: %llu rows in the model; writing a checkpoint",
	         (unsigned long long)srv->seq);
	if (do_checkpoint(srv))
		ret = -1;
	report_limits(srv, true);
	return ret;
}

/* --------------------------------------------------------- create/destroy */

static void *open_socket(struct isvdd *srv, int type, enum sec_role role, const char *endpoint,
                         int sndhwm, int rcvhwm)
{
	static const char *const names[SEC_ROLES_] = { "ingest", "query", "publish" };
	const char *what = names[role];
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
	/* a PUB reads subscriptions: they are bounded too */
	zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
	if (sec_apply(srv->sec, s, role) < 0) {
		zmq_close(s);
		return NULL;
	}
	if (zmq_bind(s, endpoint) < 0) {
		srv_logf(srv->log, CFG_LOG_ERROR, "cannot bind the %s endpoint %s: %s", what, endpoint,
		         zmq_strerror(errno));
		zmq_close(s);
		return NULL;
	}
	return s;
}

/* The loop thread's work as registrations, in the order a turn serves
 * them: the ZAP handler first (handshakes are not starved by a busy ingest
 * socket), the engine's "block applied", ingest, checkpoint requests; then
 * the timers.  0, or -1 after logging. */
static int register_loop(struct isvdd *srv)
{
	const struct cfg *c = srv->cfg;
	struct loop *l = srv->loop;
	const uint64_t now = srv->start_ms;
	bool ok = true;

	if (sec_zap_socket(srv->sec))
		ok = loop_add_io(l, sec_zap_socket(srv->sec), 0, on_zap, srv) >= 0;
	ok = ok && loop_add_io(l, NULL, wrk_fd(srv->engine), on_engine_done, srv) >= 0 &&
	     loop_add_io(l, srv->ingest, 0, on_ingest, srv) >= 0 &&
	     loop_add_io(l, rdr_ctl_socket(srv->rdr), 0, on_checkpoint_request, srv) >= 0 &&
	     (srv->t_storage = loop_add_timer(l, 0, on_storage_timer, srv)) >= 0 &&
	     (srv->t_report = loop_add_timer(l, 60000, on_report_timer, srv)) >= 0;
	if (ok && c->publish.spectrum_every_ms)
		ok = (srv->t_spectrum = loop_add_timer(l, c->publish.spectrum_every_ms, on_spectrum_timer,
		                                       srv)) >= 0;
	if (ok && c->publish.factors_every_ms)
		ok = (srv->t_factors = loop_add_timer(l, c->publish.factors_every_ms, on_factors_timer,
		                                      srv)) >= 0;
	if (!ok) {
		srv_logf(srv->log, CFG_LOG_ERROR, "the event loop's tables are full");
		return -1;
	}
	loop_timer_at(l, srv->t_storage, now);
	loop_timer_at(l, srv->t_report, now + 60000);
	if (srv->t_spectrum >= 0)
		loop_timer_at(l, srv->t_spectrum, now + c->publish.spectrum_every_ms);
	if (srv->t_factors >= 0)
		loop_timer_at(l, srv->t_factors, now + c->publish.factors_every_ms);
	return 0;
}

int srv_create(const struct cfg *cfg, struct srv_log *log, bool repair, struct isvdd **out)
{
	struct isvdd *srv = calloc(1, sizeof *srv);
	const int hs = (int)cfg->limits.send_hwm, hr = (int)cfg->limits.recv_hwm;
	const struct sto_hooks hooks = { srv, hook_load, hook_apply };
	int ret = 1, err;

	if (!srv) {
		srv_logf(log, CFG_LOG_ERROR, "cannot allocate the server: %s", strerror(errno));
		return 1;
	}
	srv->cfg = cfg;
	srv->log = log;
	srv->t_flush = srv->t_spectrum = srv->t_factors = srv->t_storage = srv->t_report = -1;
	srv->lim.max_frame = cfg->limits.max_message_bytes;
	srv->lim.max_rows = cfg->limits.max_rows_per_push;
	srv->lim.max_cols = ISVD_MAX_DIM;
	srv->fill = &srv->batch[0];
	if (loop_create(SRV_POLL_MAX_MS, &srv->loop) ||
	    (srv->t_flush = loop_add_timer(srv->loop, 0, on_flush_timer, srv)) < 0) {
		srv_logf(log, CFG_LOG_ERROR, "cannot allocate the event loop: %s", strerror(ENOMEM));
		goto fail;
	}
	if (dup_init(&srv->dup, cfg->limits.max_clients)) {
		srv_logf(log, CFG_LOG_ERROR, "cannot allocate the duplicate table: %s", strerror(errno));
		goto fail;
	}
	if (cfg->model.dim && make_model(srv, cfg->model.dim))
		goto fail;
	/* recover before binding: nobody is served a model still being rebuilt */
	if ((ret = sto_open(cfg, log, repair, &hooks, &srv->sto)))
		goto fail;
	ret = 1;
	srv->logged = srv->seq;
	if ((err = wrk_create(engine_job, srv, &srv->engine))) {
		srv_logf(log, CFG_LOG_ERROR, "cannot start the engine thread: %s", strerror(err));
		goto fail;
	}
	srv->zctx = zmq_ctx_new();
	if (!srv->zctx) {
		srv_logf(log, CFG_LOG_ERROR, "zmq_ctx_new: %s", zmq_strerror(errno));
		goto fail;
	}
	/* the ZAP handler is bound before the sockets that need it */
	if (sec_create(cfg, log, srv->zctx, &srv->sec))
		goto fail;
	if (!(srv->ingest = open_socket(srv, ZMQ_ROUTER, SEC_INGEST, cfg->endpoints.ingest, hs, hr)))
		goto fail;
	if (!(srv->query = open_socket(srv, ZMQ_ROUTER, SEC_QUERY, cfg->endpoints.query, hs, hr)))
		goto fail;
	if (!(srv->publish = open_socket(srv, ZMQ_PUB, SEC_PUBLISH, cfg->endpoints.publish,
	                                 (int)cfg->limits.publish_hwm, hr)))
		goto fail;
	srv->start_ms = loop_now_ms();
	srv->rate_ms[0] = srv->rate_ms[1] = srv->start_ms;
	const struct rdr_hooks rh = { srv, hook_checkpoint };
	if (rdr_start(cfg, log, srv->zctx, srv->query, &rh, srv->model, srv->seq,
	              sto_last_checkpoint_seq(srv->sto), &srv->rdr))
		goto fail;
	srv->query = NULL;   /* the query thread's now */
	if (register_loop(srv))
		goto fail;
	*out = srv;
	return 0;
fail:
	srv_destroy(srv);
	return ret;
}

void srv_destroy(struct isvdd *srv)
{
	if (!srv)
		return;
	wrk_destroy(srv->engine);   /* first: it may be applying a block */
	rdr_stop(srv->rdr);         /* then the query thread: it closes the query socket */
	for (int j = 0; j < 2; j++) {
		struct srv_batch *b = &srv->batch[j];
		for (size_t i = 0; i < b->nacks; i++)
			ack_fini(&b->acks[i]);
		free(b->acks);
		free(b->rows);
		rdr_view_free(b->view);
	}
	free(srv->wal_push);
	sto_close(srv->sto);
	dup_fini(&srv->dup);
	if (srv->ingest)
		zmq_close(srv->ingest);
	if (srv->query)
		zmq_close(srv->query);
	if (srv->publish)
		zmq_close(srv->publish);
	sec_destroy(srv->sec);   /* the ZAP socket, before the context ends */
	if (srv->zctx)
		zmq_ctx_term(srv->zctx);
	isvd_model_destroy(srv->model);
	loop_destroy(srv->loop);
	free(srv);
}
