/*
 * ingest.c — pushes: request validation, the duplicate check, the gathering
 * batch, and its flush to the engine thread (state in isvdd.h).
 *
 * DESIGN
 *   One model, updated on one thread: the engine thread (worker.c), which
 *   applies the block the loop hands it while the loop gathers, decodes
 *   and logs the next one.  A push travels:
 *
 *     ingest ROUTER ──ing_on_readable()──► handle_push(): validate() →
 *        dedup() → rate_limit() → enqueue(): refuse bad input whole
 *        (missing/huge values, wrong dim), spot resends, refuse a push over
 *        its pusher's limits.push_rows_per_s (RATE_LIMITED, nothing of it
 *        queued or logged), append its rows and its ack to the fill batch
 *     fill batch ──flush()──► log_batch(): one log record for the block,
 *        durable per storage.fsync (storage.c) ──wrk_submit()──► engine
 *        thread, apply_batch(): one isvd_model_update() for every row of
 *        the block, seq per push, the query thread's next view
 *        ──ing_engine_finish()──► finish_batch() (loop): view published,
 *        duplicate table, acks sent
 *
 *   Two batches alternate: srv->fill gathers while srv->fly is in the
 *   engine.  flush() logs the fill batch first, then waits for the block
 *   in flight (ing_engine_finish()), then submits: so the log write and
 *   the next block's receiving and decoding overlap the engine's
 *   arithmetic, and exactly one block is in the engine at a time.
 *   Whatever reads or writes the model on the loop (snapshots, checkpoints,
 *   shutdown) first waits for it (ing_engine_finish(), ing_drain()).
 *
 *   flush() runs when the fill batch reaches batching.max_rows (a push
 *   that would overflow the batch first flushes what is pending; a push is
 *   never split, so one larger than max_rows is a block of its own), when
 *   the batch has been gathering for batching.max_delay_ms (a timer), when
 *   no more pushes are waiting on the socket (so pushes that arrived
 *   together share one fsync: group commit), before a checkpoint and at
 *   shutdown.  Between two blocks of a long ingest burst the loop gets a
 *   turn without waiting (the ingest socket left out), so that checkpoint
 *   requests, handshakes, storage and snapshots wait for at most one
 *   block.  A push is acknowledged only after its rows are logged and in
 *   the model and the query thread's view includes them, so a query that
 *   arrives after an ack always sees them; `seq` in replies is the number
 *   of rows in the view that answered.
 *
 *   Block boundaries depend on timing (how many pushes were waiting), and
 *   the engine's result depends on them once the data's rank exceeds
 *   k + extra.  So the log record is the block: ing_replay_block()
 *   rebuilds the same batch from a record and runs the same apply_batch(),
 *   which reproduces the live run exactly.
 *
 *   All or nothing per push: the engine refuses a whole update call on one
 *   bad value, so validate() checks each push for what the engine would
 *   refuse (missing values, magnitudes above 1e150) before it
 *   joins a batch; should the engine still refuse a batch (energy
 *   overflow), apply_batch() retries push by push and refuses only the
 *   offending ones.
 *
 *   Duplicates (dedup.c): a resend of a batch the table remembers gets its
 *   original seq and `duplicate: true`; a batch number older than every
 *   remembered one (of a full ring) gets `duplicate: true` and seq 0
 *   (unknown); see dup_seen().  A resend of a push still queued is
 *   answered as the original is; one still in the engine waits for it.
 *   Pushes without both `client` and `batch` are never duplicates.
 *
 *   Hostile peers: requests are bounded by the decoder's limits, and the
 *   fill batch never holds more than limits.max_pending_pushes pushes — one
 *   more first flushes it (a smaller group commit, never a refusal).
 */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isvdd.h"
#include "loop.h"
#include "metrics.h"
#include "query.h"
#include "ratelimit.h"
#include "worker.h"

#define ING_BURST 1024   /* pushes read in one turn of the loop */

/* Resizes b's rows to cap rows (of dim values), and with scores their
 * spe and t2.  false when out of memory (b's cap unchanged). */
static bool grow_rows(struct ing_batch *b, size_t cap, size_t dim, bool scores)
{
	double *p = realloc(b->rows, cap * dim * sizeof *p);

	if (!p)
		return false;
	b->rows = p;
	if (scores) {
		double *s = realloc(b->spe, cap * sizeof *s);
		if (s)
			b->spe = s;
		double *t = s ? realloc(b->t2, cap * sizeof *t) : NULL;
		if (t)
			b->t2 = t;
		if (!s || !t)
			return false;
	}
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
		struct ing_batch *b = &srv->batch[j];
		const size_t had = b->cap;
		if (had >= rows)
			continue;
		if (!grow_rows(b, rows, srv->dim, srv->cfg->monitor.enabled)) {
			log_msg(srv->log, CFG_LOG_WARN, "cannot reserve %zu MiB for the batches of "
			        "batching.max_rows %zu rows: %s; they will grow on demand",
			        2 * rows * srv->dim * sizeof(double) >> 20, rows, strerror(errno));
			return;
		}
		memset(b->rows + had * srv->dim, 0, (rows - had) * srv->dim * sizeof(double));
	}
}

/* model.missing as the engine's enum isvd_missing. */
static int engine_missing(const struct cfg *cfg)
{
	return cfg->model.missing == CFG_MISSING_IMPUTE ? ISVD_MISSING_IMPUTE : ISVD_MISSING_REJECT;
}

int ing_new_model(const struct cfg *cfg, struct log_sink *log, size_t dim, struct isvd_model **out)
{
	struct isvd_options o;
	int rc;

	isvd_options_default(&o);
	o.dim = dim;
	o.rank = cfg->model.rank;
	o.extra = cfg->model.extra;
	o.center = cfg->model.center;
	o.forget = cfg->model.forget;
	o.reorth_every = cfg->model.reorth_every;
	o.mode = cfg->model.mode;
	o.threads = (size_t)cfg->model.threads;
	o.missing = engine_missing(cfg);
	if ((rc = isvd_model_create(&o, out)))
		log_msg(log, CFG_LOG_ERROR, "cannot create a model of dimension %zu: %s", dim,
		        isvd_strerror(rc));
	return rc;
}

void ing_model_settings(const struct cfg *cfg, struct log_sink *log, struct isvd_model *m)
{
	int rc;

	/* a loaded model starts with the engine's default threads */
	if ((rc = isvd_model_set_threads(m, (size_t)cfg->model.threads)))
		log_msg(log, CFG_LOG_WARN, "model.threads %llu not applied: %s",
		        (unsigned long long)cfg->model.threads, isvd_strerror(rc));
	/* and with imputation off: model.missing is the daemon's setting */
	const int miss = engine_missing(cfg);
	if (miss != ISVD_MISSING_REJECT && (rc = isvd_model_set_missing(m, miss)))
		log_msg(log, CFG_LOG_WARN, "model.missing impute not applied: %s; rows with gaps will be "
		        "refused", isvd_strerror(rc));
}

int ing_make_model(struct isvdd *srv, size_t dim)
{
	int rc;

	if ((rc = ing_new_model(srv->cfg, srv->log, dim, &srv->model)))
		return rc;
	srv->dim = dim;
	srv->kmax = srv->cfg->model.rank < dim ? srv->cfg->model.rank : dim;
	if (srv->cfg->monitor.enabled && (rc = isvd_model_set_scoring(srv->model, 1))) {
		log_msg(srv->log, CFG_LOG_ERROR, "cannot allocate the monitor's workspace: %s",
		        isvd_strerror(rc));
		return rc;
	}
	reserve_batches(srv);
	return 0;
}

void ing_adopt_model(struct isvdd *srv, struct isvd_model *m)
{
	isvd_model_destroy(srv->model);
	srv->model = m;
	if (m) {
		struct isvd_options o;
		int rc2;
		ing_model_settings(srv->cfg, srv->log, m);
		if (srv->cfg->monitor.enabled && (rc2 = isvd_model_set_scoring(m, 1)))
			log_msg(srv->log, CFG_LOG_WARN, "the monitor's workspace: %s; the engine allocates "
			        "it on the first block", isvd_strerror(rc2));
		isvd_model_options(m, &o);
		srv->dim = o.dim;
		srv->kmax = o.rank < o.dim ? o.rank : o.dim;
		if (!srv->cfg->kafka.on)   /* a shard or a merger gathers no pushes */
			reserve_batches(srv);
	}
}

static void ack_fini(struct ing_ack *a)
{
	for (size_t i = 0; i < a->nenv; i++)
		zmq_msg_close(&a->env[i]);
	free(a->id);
	free(a->client);
	free(a->errmsg);
	memset(a, 0, sizeof *a);
}

static void ack_refuse(struct ing_ack *a, int code, const char *msg)
{
	a->err = code;
	free(a->errmsg);
	a->errmsg = strdup(msg);
}

double ing_rate(struct isvdd *srv, uint64_t now)
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
 * what never changes while a block is in flight (model, dim, qry, log);
 * recovery (hook_apply()) calls it directly. */
static void apply_batch(struct isvdd *srv, struct ing_batch *b)
{
	const uint64_t before = srv->model ? isvd_model_rows_seen(srv->model) : 0;
	/* not during recovery (no engine thread yet): replayed rows were
	 * flagged, or not, when they arrived */
	const bool mon = srv->cfg->monitor.enabled && b->spe && b->t2 && srv->engine;
	uint64_t at;
	int rc = ISVD_OK;

	/* the tail figures of the model before the batch, found with its
	 * first block's scores: the limits its rows are held to */
	struct isvd_tail tail = { 0, { NAN, NAN, NAN }, 0, 0 };

	b->scored = false;
	b->spe_limit = b->t2_limit = INFINITY;
	if (b->nrows > 0) {
		rc = mon ? isvd_model_update_monitored(srv->model, b->rows, b->nrows, srv->dim, b->spe,
		                                       b->t2, &tail)
		         : isvd_model_update(srv->model, b->rows, b->nrows, srv->dim);
		b->scored = mon && rc == ISVD_OK;
		if (rc == ISVD_ERR_NONFINITE) {
			/* the batch as a whole would overflow: retry push by push */
			size_t off = 0;
			rc = ISVD_OK;
			for (size_t i = 0; i < b->nacks; i++) {
				struct ing_ack *a = &b->acks[i];
				if (a->rows == 0 || a->err)
					continue;
				int r1 = mon ? isvd_model_update_monitored(srv->model, b->rows + off * srv->dim,
				                                           a->rows, srv->dim, b->spe + off,
				                                           b->t2 + off, off == 0 ? &tail : NULL)
				             : isvd_model_update(srv->model, b->rows + off * srv->dim, a->rows, srv->dim);
				if (r1 == ISVD_ERR_NONFINITE) {
					ack_refuse(a, ISVD_PROTO_NON_FINITE,
					           "rows: values too large for the model's energy to stay finite");
				} else if (r1) {   /* a real failure: the prefix rule below applies */
					log_msg(srv->log, CFG_LOG_ERROR, "engine update of %zu rows failed: %s",
					        a->rows, isvd_strerror(r1));
					rc = r1;
					break;
				}
				off += a->rows;
			}
			b->scored = mon && rc == ISVD_OK;
		} else if (rc) {
			log_msg(srv->log, CFG_LOG_ERROR, "engine update of %zu rows failed: %s",
			        b->nrows, isvd_strerror(rc));
		}
	}
	b->seq_after = srv->model ? isvd_model_rows_seen(srv->model) : 0;
	if (b->scored)
		mon_block_limits(srv->cfg, before, &tail, b);

	/* seq per push; when the engine failed part-way only whole pushes
	 * inside the applied prefix count as accepted */
	at = before;
	for (size_t i = 0; i < b->nacks; i++) {
		struct ing_ack *a = &b->acks[i];
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
	if (srv->qry && b->seq_after != before)
		b->view = qry_view_make(srv->model, b->seq_after, &b->view_err);
}

/* A resend of a push queued in the same batch is answered as that push
 * was: its seq, or its refusal. */
static void answer_resends_like_originals(struct ing_batch *b)
{
	for (size_t i = 0; i < b->nacks; i++) {
		struct ing_ack *a = &b->acks[i];
		if (a->dup_of >= 0) {
			const struct ing_ack *orig = &b->acks[a->dup_of];
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
static int log_batch(struct isvdd *srv, struct ing_batch *bt)
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
			log_msg(srv->log, CFG_LOG_ERROR, "log record: %s", strerror(errno));
			why = "out of memory assembling the log record";
			goto refuse;
		}
		srv->wal_push = p;
		srv->wal_push_cap = bt->nacks;
	}
	for (size_t i = 0; i < bt->nacks; i++) {
		const struct ing_ack *a = &bt->acks[i];
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
static void answer_batch(struct isvdd *srv, struct ing_batch *b)
{
	for (size_t i = 0; i < b->nacks; i++) {
		struct ing_ack *a = &b->acks[i];
		struct isvd_proto_reply rep;

		if (a->nenv == 0) {   /* replayed from the log: nobody to answer */
			ack_fini(a);
			continue;
		}
		if (a->err) {
			met_refusal(srv->met, MET_INGEST, a->err);
			rpl_send_error(srv->log, srv->ingest, a->env, a->nenv, a->id, a->id_len, a->err, a->errmsg);
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
		if (a->scores && !a->duplicate && b->scored) {   /* this push's rows' statistics */
			rep.has_scores = true;
			rep.spe = (struct isvd_proto_vec){ b->spe + a->row0, a->rows };
			rep.t2 = (struct isvd_proto_vec){ b->t2 + a->row0, a->rows };
			rep.spe_limit = b->spe_limit;
			rep.t2_limit = b->t2_limit;
		}
		met_acked(srv->met, rep.accepted, a->duplicate, loop_now_ms());
		rpl_send_ok(srv->log, srv->ingest, a->env, a->nenv, &rep);
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
static void finish_batch(struct isvdd *srv, struct ing_batch *b, bool applied)
{
	const uint64_t before = srv->seq;

	assert(!srv->fly);   /* the engine is idle: the model is the loop's */
	if (applied) {
		srv->seq = b->seq_after;
		assert(!srv->model || srv->seq == isvd_model_rows_seen(srv->model));
		assert(srv->logged >= srv->seq);
		if (b->view) {
			qry_publish_view(srv->qry, b->view, sto_last_checkpoint_seq(srv->sto),
			                 ing_rate(srv, loop_now_ms()));
			b->view = NULL;
		} else if (b->view_err) {
			log_msg(srv->log, CFG_LOG_ERROR, "cannot publish the model to the query thread: %s; "
			        "queries answer from the previous view", isvd_strerror(b->view_err));
		}
		for (size_t i = 0; i < b->nacks; i++) {
			const struct ing_ack *a = &b->acks[i];
			if (a->rows && !a->err && a->client && a->has_batch &&
			    dup_record(&srv->dup, a->client, a->batch, a->seq))
				log_msg(srv->log, CFG_LOG_ERROR, "duplicate table: %s", strerror(errno));
		}
	}
	answer_resends_like_originals(b);
	if (srv->seq > before)
		log_msg(srv->log, CFG_LOG_DEBUG, "block: rows %llu..%llu (%llu) from %zu request%s",
		        (unsigned long long)before + 1, (unsigned long long)srv->seq,
		        (unsigned long long)(srv->seq - before), b->nacks, b->nacks == 1 ? "" : "s");
	if (applied && b->scored)
		mon_after_block(srv, b);
	answer_batch(srv, b);
	pub_after_block(srv);
}

void ing_engine_job(void *ctx, void *job)
{
	struct isvdd *srv = ctx;
	const uint64_t t0 = loop_now_ns();

	apply_batch(srv, job);
	met_fold(srv->met, loop_now_ns() - t0);
}

void ing_engine_finish(struct isvdd *srv)
{
	struct ing_batch *b;

	if (!srv->fly)
		return;
	b = wrk_wait(srv->engine);
	assert(b == srv->fly);
	srv->fly = NULL;
	finish_batch(srv, b, true);
}

/* The ingest path's one transition: the fill batch → its log record
 * (durable per storage.fsync) → the engine thread, while the loop goes on
 * gathering the next batch; the block before is finished first (one block
 * in the engine at a time).  Rows the log could not take are neither
 * applied nor acknowledged.  Returns with the block in flight: see
 * ing_engine_finish() and ing_drain(). */
static void flush(struct isvdd *srv)
{
	struct ing_batch *b = srv->fill;
	bool logged;

	if (b->nacks == 0)
		return;
	loop_timer_stop(srv->loop, srv->t_flush);
	srv->blocks++;
	logged = log_batch(srv, b) == 0;   /* while the block before is in the engine */
	ing_engine_finish(srv);
	if (logged && b->nrows > 0) {
		srv->fill = b == &srv->batch[0] ? &srv->batch[1] : &srv->batch[0];
		assert(!srv->fly);   /* one block in the engine at a time */
		srv->fly = b;
		met_block(srv->met, b->nrows);
		wrk_submit(srv->engine, b);
	} else {
		finish_batch(srv, b, false);   /* duplicates of applied pushes, refusals */
	}
}

void ing_drain(struct isvdd *srv)
{
	flush(srv);
	ing_engine_finish(srv);
}

/* The next ack slot of b (not yet counted in b->nacks), or NULL. */
static struct ing_ack *new_ack(struct isvdd *srv, struct ing_batch *b)
{
	if (b->nacks == b->acks_cap) {
		size_t cap = b->acks_cap ? 2 * b->acks_cap : 64;
		struct ing_ack *a = realloc(b->acks, cap * sizeof *a);
		if (!a) {
			log_msg(srv->log, CFG_LOG_ERROR, "push queue: %s", strerror(errno));
			return NULL;
		}
		b->acks = a;
		b->acks_cap = cap;
	}
	struct ing_ack *a = &b->acks[b->nacks];
	memset(a, 0, sizeof *a);
	a->dup_of = -1;
	return a;
}

static bool reserve_rows(struct isvdd *srv, struct ing_batch *b, size_t rows)
{
	size_t cap;

	if (b->nrows + rows <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < b->nrows + rows)
		cap *= 2;
	if (!grow_rows(b, cap, srv->dim, srv->cfg->monitor.enabled)) {
		log_msg(srv->log, CFG_LOG_ERROR, "pending rows: %s", strerror(errno));
		return false;
	}
	return true;
}

/* Is (client, batch) among b's pushes with rows?  Returns its index or -1. */
static long find_push(const struct ing_batch *b, const char *client, uint64_t batch)
{
	for (size_t i = 0; i < b->nacks; i++) {
		const struct ing_ack *q = &b->acks[i];
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

/* Step 1, validate: decodes body into *req and refuses what the engine
 * would refuse whole (an op for the query socket, missing or huge values,
 * a dimension other than the model's), creating the model on the first
 * push when model.dim is 0.  ISVD_PROTO_OK, or the wire code with the
 * message in msg.  *req must be released either way. */
static int validate(struct isvdd *srv, const zmq_msg_t *body, struct isvd_proto_request *req,
                    char *msg, size_t cap)
{
	struct isvd_proto_error perr;
	int code;

	code = isvd_proto_request_decode(zmq_msg_data((zmq_msg_t *)body), zmq_msg_size((zmq_msg_t *)body),
	                                 &srv->lim, req, &perr);
	if ((code == ISVD_PROTO_OK || req->op != ISVD_OP_NONE) &&
	    req->op != ISVD_OP_PUSH && req->op != ISVD_OP_NONE) {
		code = ISVD_PROTO_UNKNOWN_OP;
		snprintf(perr.message, sizeof perr.message,
		         "op '%s' belongs on the query socket; the ingest socket takes 'push'",
		         isvd_proto_op_name(req->op));
	}
	if (code) {
		snprintf(msg, cap, "%s", perr.message);
		return code;
	}
	if ((code = rpl_check_values(&req->rows, srv->cfg->model.missing == CFG_MISSING_IMPUTE,
	                             msg, cap)) != 0)
		return code;
	if (!srv->model && ing_make_model(srv, req->rows.cols)) {
		snprintf(msg, cap, "cannot create a model of dimension %zu", req->rows.cols);
		return req->rows.cols > ISVD_MAX_DIM ? ISVD_PROTO_TOO_LARGE : ISVD_PROTO_INTERNAL;
	}
	if (req->rows.cols != srv->dim) {
		snprintf(msg, cap, "rows: rows have %zu values; the model's dimension is %zu",
		         req->rows.cols, srv->dim);
		return ISVD_PROTO_DIM_MISMATCH;
	}
	return ISVD_PROTO_OK;
}

/* What step 2 found: a duplicate of a push queued in the fill batch (of),
 * or of an applied one (seq: its seq, 0 when unknown), or neither. */
struct verdict {
	bool dup;
	long of;                     /* index in the fill batch, or -1 */
	uint64_t seq;
};

/* Step 2, dedup: is req a resend?  A resend of a push still in the engine
 * waits for its block, so that the duplicate table has it. */
static struct verdict dedup(struct isvdd *srv, const struct isvd_proto_request *req, const char *who)
{
	struct verdict v = { false, -1, 0 };

	if (!req->client || !req->has_batch)
		return v;
	v.of = find_push(srv->fill, req->client, req->batch);
	v.dup = v.of >= 0;
	if (!v.dup && srv->fly && find_push(srv->fly, req->client, req->batch) >= 0) {
		log_msg(srv->log, CFG_LOG_DEBUG, "push (client %s, batch %llu) resent while the engine "
		        "applies it: waiting for the block", who, (unsigned long long)req->batch);
		ing_engine_finish(srv);
	}
	if (!v.dup)
		v.dup = dup_seen(&srv->dup, req->client, req->batch, &v.seq);
	return v;
}

/* Step 4, enqueue: appends req's ack (taking env, the id and the client)
 * and, unless it is a duplicate, its rows to the fill batch, flushing
 * first when they would overflow batching.max_rows and after when the
 * batch is full.  ISVD_PROTO_OK, or the wire code with msg (storage
 * failing, out of memory); env is then still the caller's. */
static int enqueue(struct isvdd *srv, zmq_msg_t *env, size_t nenv, struct isvd_proto_request *req,
                   const struct verdict *v, char *msg, size_t cap)
{
	const size_t rows = req->rows.rows;
	struct ing_batch *b;
	struct ing_ack *a;
	const char *why;

	if (!v->dup && sto_failed(srv->sto, &why)) {
		snprintf(msg, cap, "storage is failing, pushes are refused until it recovers: %s", why);
		return ISVD_PROTO_UNAVAILABLE;
	}
	if (!v->dup && srv->fill->nrows && srv->fill->nrows + rows > srv->cfg->batching.max_rows)
		flush(srv);
	b = srv->fill;   /* after any flush */
	if ((!v->dup && !reserve_rows(srv, b, rows)) || !(a = new_ack(srv, b))) {
		snprintf(msg, cap, "out of memory");
		return ISVD_PROTO_NOMEM;
	}
	if (b->nacks == 0)   /* the batch's first push: batching.max_delay_ms from now */
		loop_timer_at(srv->loop, srv->t_flush, loop_now_ms() + srv->cfg->batching.max_delay_ms);
	b->nacks++;
	assert(b->nacks <= srv->cfg->limits.max_pending_pushes);
	for (size_t i = 0; i < nenv; i++) {   /* ownership moves to the ack */
		zmq_msg_init(&a->env[i]);
		zmq_msg_move(&a->env[i], &env[i]);
	}
	a->nenv = nenv;
	a->id = req->id;
	a->id_len = req->id_len;
	a->client = req->client;
	a->has_batch = req->has_batch;
	a->batch = req->batch;
	req->id = NULL;
	req->client = NULL;
	a->duplicate = v->dup;
	a->dup_of = v->of;
	a->seq = v->seq;
	if (!v->dup) {
		assert(b->nrows + rows <= b->cap);
		memcpy(b->rows + b->nrows * srv->dim, req->rows.data, rows * srv->dim * sizeof(double));
		a->row0 = b->nrows;
		b->nrows += rows;
		a->rows = rows;
		a->scores = req->has_scores && req->scores;
	}
	if (b->nrows >= srv->cfg->batching.max_rows)
		flush(srv);
	return ISVD_PROTO_OK;
}

/* With CURVE, a client id is the pusher's only within its key: the name
 * the duplicate table, the fill batch and the log know a push by becomes
 * "<key>/<client>", the key as the ZAP handler reported it (Z85, the
 * message's User-Id).  So one admitted key cannot make another key's next
 * pushes look like duplicates, and a replay finds the same names.  Without
 * CURVE (no User-Id) names stay as sent.  ISVD_PROTO_OK, or NOMEM. */
static int scope_client(const struct isvdd *srv, const zmq_msg_t *body,
                        struct isvd_proto_request *req)
{
	if (!srv->cfg->security.curve || !req->client)
		return ISVD_PROTO_OK;
	const char *key = zmq_msg_gets((zmq_msg_t *)body, "User-Id");
	if (!key || !*key)
		return ISVD_PROTO_OK;   /* cannot happen under CURVE: ZAP admitted it */
	const size_t kl = strlen(key), cl = strlen(req->client);
	char *s = malloc(kl + 1 + cl + 1);
	if (!s)
		return ISVD_PROTO_NOMEM;
	memcpy(s, key, kl);
	s[kl] = '/';
	memcpy(s + kl + 1, req->client, cl + 1);
	free(req->client);
	req->client = s;
	return ISVD_PROTO_OK;
}

/* Step 3, the pusher's rate limit (ratelimit.c): a push that is no resend
 * takes its rows from its pusher's bucket — the CURVE key the ZAP handler
 * reported, else the client id as sent ("-" without one) — or is refused
 * whole, before anything of it is queued or logged, with the wait after
 * which its resend would pass.  A resend of an applied push costs nothing:
 * it is answered from the duplicate table. */
static int rate_limit(struct isvdd *srv, const zmq_msg_t *body, const struct isvd_proto_request *req,
                      const struct verdict *v, uint64_t *retry_after_ms, char *msg, size_t cap)
{
	const char *key = NULL;

	if (v->dup)
		return ISVD_PROTO_OK;
	if (srv->cfg->security.curve)
		key = zmq_msg_gets((zmq_msg_t *)body, "User-Id");
	if (!key)
		key = req->client ? req->client : RL_NO_CLIENT;
	if (rl_take(srv->rl, key, req->rows.rows, loop_now_ms(), retry_after_ms))
		return ISVD_PROTO_OK;
	snprintf(msg, cap, "over limits.push_rows_per_s (%llu rows/s, burst %llu): this push of %zu rows "
	         "was not applied; resend it after %llu ms",
	         (unsigned long long)srv->cfg->limits.push_rows_per_s,
	         (unsigned long long)(srv->cfg->limits.push_burst_rows ? srv->cfg->limits.push_burst_rows
	                                                               : srv->cfg->limits.push_rows_per_s),
	         req->rows.rows, (unsigned long long)*retry_after_ms);
	return ISVD_PROTO_RATE_LIMITED;
}

/* One push: validate → dedup → rate limit → enqueue; a refusal at any step
 * is logged (rate-limited) and answered at once. */
static void handle_push(struct isvdd *srv, zmq_msg_t *env, size_t nenv, const zmq_msg_t *body)
{
	char whobuf[48], msg[sizeof ((struct isvd_proto_error *)0)->message];
	struct isvd_proto_request req;
	const char *who;
	uint64_t retry_after_ms = 0;
	int code;

	code = validate(srv, body, &req, msg, sizeof msg);
	who = printable(req.client, whobuf);
	if (code == ISVD_PROTO_OK && (code = scope_client(srv, body, &req)))
		snprintf(msg, sizeof msg, "out of memory");
	if (code == ISVD_PROTO_OK) {
		/* limits.max_pending_pushes: a full queue is flushed early (before
		 * dedup, whose indices point into the queue) */
		if (srv->fill->nacks >= srv->cfg->limits.max_pending_pushes) {
			flush(srv);
			srv->early_flushes++;
		}
		const struct verdict v = dedup(srv, &req, who);
		code = rate_limit(srv, body, &req, &v, &retry_after_ms, msg, sizeof msg);
		if (code == ISVD_PROTO_OK)
			code = enqueue(srv, env, nenv, &req, &v, msg, sizeof msg);
	}
	met_push(srv->met);
	if (code) {
		met_refusal(srv->met, MET_INGEST, code);
		log_refused(srv->log, "push refused (client %s): %s: %s", who,
		            isvd_proto_err_name(code), msg);
		rpl_send_error_retry(srv->log, srv->ingest, env, nenv, req.id, req.id_len, code, msg,
		                     retry_after_ms);
	}
	isvd_proto_request_fini(&req);
}

void ing_on_flush_timer(void *ctx, uint64_t now)
{
	flush(ctx);
}

/* Pollable: the ingest socket.  Reads up to ING_BURST pushes; between two
 * blocks of a long burst it gives the loop a turn without waiting (the
 * ingest socket left out), so that a burst of many rows (seconds of engine
 * time) starves none of checkpoint requests, handshakes, storage and
 * snapshots; after every push the due timers run (batching.max_delay_ms).
 * When no push is waiting the batch is flushed (group commit). */
void ing_on_readable(void *ctx)
{
	struct isvdd *srv = ctx;

	for (int n = 0; n < ING_BURST; n++) {
		zmq_msg_t frames[RPL_MAX_FRAMES];
		size_t nf = 0;
		const uint64_t blocks = srv->blocks;
		int rc = rpl_recv_frames(srv->log, srv->ingest, frames, RPL_MAX_FRAMES, &nf);
		if (rc == 0)
			break;               /* no more waiting */
		if (rc < 0)
			continue;
		handle_push(srv, frames, nf - 1, &frames[nf - 1]);
		zmq_msg_close(&frames[nf - 1]);
		if (srv->blocks != blocks) {
			rec_on_storage_timer(srv, loop_now_ms());
			loop_turn(srv->loop, 0);
		} else {
			loop_run_timers(srv->loop, loop_now_ms());
		}
	}
	flush(srv);
	rec_on_storage_timer(srv, loop_now_ms());
}

/* Whether any of b's rows has a gap (NaN). */
static bool block_has_gaps(const struct ing_batch *b, size_t dim)
{
	for (size_t i = 0; i < b->nrows * dim; i++)
		if (isnan(b->rows[i]))
			return true;
	return false;
}

int ing_replay_block(struct isvdd *srv, const struct wal_block *b, char *why, size_t cap)
{
	struct ing_batch *bt = srv->fill;

	if (!srv->model && ing_make_model(srv, b->dim)) {
		snprintf(why, cap, "cannot create a model of dimension %zu", b->dim);
		return -1;
	}
	if (b->dim != srv->dim) {
		snprintf(why, cap, "its rows have %zu values, the model's dimension is %zu", b->dim, srv->dim);
		return -1;
	}
	for (size_t i = 0; i < b->npush; i++) {
		const struct wal_push *q = &b->push[i];
		struct ing_ack *a;
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
	/* Rows with gaps in the log were accepted under model.missing: impute
	 * and must be applied as they were, whatever the setting is now. */
	struct isvd_options o;
	isvd_model_options(srv->model, &o);
	const bool lift = o.missing == ISVD_MISSING_REJECT && block_has_gaps(bt, srv->dim);
	if (lift) {
		int rc = isvd_model_set_missing(srv->model, ISVD_MISSING_IMPUTE);
		if (rc) {
			snprintf(why, cap, "its rows have gaps and imputation cannot start: %s",
			         isvd_strerror(rc));
			answer_batch(srv, bt);
			return -1;
		}
		if (!srv->warned_gap_replay)
			log_msg(srv->log, CFG_LOG_WARN, "the log holds rows with gaps, accepted while "
			        "model.missing was impute; they are replayed with imputation, and new "
			        "pushes with gaps are refused (model.missing is reject)");
		srv->warned_gap_replay = true;
	}
	apply_batch(srv, bt);
	if (lift)
		isvd_model_set_missing(srv->model, ISVD_MISSING_REJECT);   /* cannot fail */
	finish_batch(srv, bt, true);   /* nothing to send: frees the replayed entries */
	return 0;
nomem:
	answer_batch(srv, bt);
	snprintf(why, cap, "out of memory");
	return -1;
}

void ing_fini(struct isvdd *srv)
{
	for (int j = 0; j < 2; j++) {
		struct ing_batch *b = &srv->batch[j];
		for (size_t i = 0; i < b->nacks; i++)
			ack_fini(&b->acks[i]);
		free(b->acks);
		free(b->rows);
		free(b->spe);
		free(b->t2);
		qry_view_free(b->view);
	}
	free(srv->wal_push);
}
