/*
 * query.c — the query thread (see query.h for the shape).
 *
 * DESIGN
 *   One thread polls the query ROUTER and its end of the control PAIR.  A
 *   query takes a reference on the current view under the mutex, computes
 *   its answer from the view's snapshot without any lock, and drops the
 *   reference; qry_publish_view() swaps the view under the same mutex.  So
 *   the engine's update (on the engine thread, ingest.c) and a query never
 *   touch the same memory, and a query costs its own arithmetic only: at (1000, 50) a
 *   one-row `project` is ~0.1 ms whatever the ingest load.
 *
 *   The HTTP thread (http.c) never reads a snapshot itself: a snapshot's
 *   readers must be serialised (an exact-mode snapshot computes its SVD on
 *   first read), so qry_summary() asks this thread, through an eventfd it
 *   polls, for the figures of the current view (summarize()) and waits for
 *   them on sum_cv; a summary is computed only when asked for and the view
 *   changed, so an unwatched daemon pays nothing.  Every query is counted
 *   (metrics.c) before its answer is sent, so a client that saw an answer
 *   sees it counted.
 *
 *   Control pair frames: thread → loop: the request's envelope frames and
 *   body (a `checkpoint`); loop → thread: "R", the envelope frames and the
 *   reply body, or "S" (stop).
 *
 * INVARIANTS
 *   r->view is never NULL after qry_start(); view->refs counts r->view's own
 *   reference plus every query in progress; a view is freed by whoever
 *   drops its last reference.
 */
#include "query.h"
#include "ratelimit.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "isvd_proto.h"
#include "limits.h"
#include "loop.h"
#include "metrics.h"
#include "reply.h"

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

#define QRY_CTL_ENDPOINT "inproc://isvdd-query-ctl"
/* Loop → thread replies carry "R" before a query's envelope and body. */
#define QRY_CTL_FRAMES   (RPL_MAX_FRAMES + 1)
#define QRY_POLL_MS      250

struct qry_view {
	int refs;                    /* under qry.mu */
	struct isvd_model *snap;     /* NULL until the model exists */
	uint64_t seq;
	double ingest_rows_per_s;
};

struct qry {
	const struct cfg *cfg;
	struct log_sink *log;
	void *zctx;
	void *query;                 /* owned by the thread once started */
	void *ctl_loop;              /* the loop's end of the PAIR */
	struct qry_hooks hooks;
	struct isvd_proto_limits lim;
	uint64_t start_ms;
	uint64_t gap_rows0, gap_values0;   /* the model's gap counters at start */

	pthread_mutex_t mu;
	struct qry_view *view;
	uint64_t last_checkpoint_seq;   /* under mu; may move without a new view */
	struct qry_monitor mon;         /* under mu */
	struct isvd_proto_raw kafka;    /* under mu: info's `kafka` map (n 0: none) */

	pthread_t thread;
	bool started;
	int start_rc;                /* the thread's set-up result, under mu */
	pthread_cond_t started_cv;
	bool start_done;

	/* the HTTP thread's summaries (qry_summary()): asked for through
	 * sum_fd, computed by the thread from its view, handed over under mu */
	uint64_t view_gen;           /* under mu: views published, the first one 1 */
	int sum_fd;                  /* eventfd, polled by the thread */
	bool sum_want;               /* under mu */
	pthread_cond_t sum_cv;       /* a summary was published */
	struct qry_summary *sum;     /* under mu: the latest (gen 0: none) */
	struct qry_summary *sum_work;   /* the thread's, being computed */
};

/* ----------------------------------------------------------------- views */

void qry_view_free(struct qry_view *v)
{
	if (!v)
		return;
	isvd_model_destroy(v->snap);
	free(v);
}

struct qry_view *qry_view_make(const struct isvd_model *model, uint64_t seq, int *err)
{
	struct qry_view *v = calloc(1, sizeof *v);

	*err = ISVD_OK;
	if (!v) {
		*err = ISVD_ERR_NOMEM;
		return NULL;
	}
	v->refs = 1;
	v->seq = seq;
	if (model && (*err = isvd_model_snapshot(model, &v->snap))) {
		free(v);
		return NULL;
	}
	return v;
}

static struct qry_view *view_get(struct qry *r)
{
	struct qry_view *v;

	pthread_mutex_lock(&r->mu);
	v = r->view;
	v->refs++;
	pthread_mutex_unlock(&r->mu);
	return v;
}

static void view_put(struct qry *r, struct qry_view *v)
{
	bool last;

	pthread_mutex_lock(&r->mu);
	last = --v->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (last)
		qry_view_free(v);
}

void qry_publish_view(struct qry *r, struct qry_view *v, uint64_t last_checkpoint_seq,
                      double ingest_rows_per_s)
{
	struct qry_view *old;

	v->ingest_rows_per_s = ingest_rows_per_s;
	pthread_mutex_lock(&r->mu);
	old = r->view;
	r->view = v;
	r->view_gen++;
	r->last_checkpoint_seq = last_checkpoint_seq;
	pthread_mutex_unlock(&r->mu);
	if (old)
		view_put(r, old);
}

void qry_set_monitor(struct qry *r, const struct qry_monitor *m)
{
	pthread_mutex_lock(&r->mu);
	r->mon = *m;
	pthread_mutex_unlock(&r->mu);
}

void qry_set_kafka(struct qry *r, uint8_t *map, size_t len)
{
	pthread_mutex_lock(&r->mu);
	uint8_t *old = r->kafka.p;
	r->kafka.p = map;
	r->kafka.n = map ? len : 0;
	pthread_mutex_unlock(&r->mu);
	free(old);
}

void qry_set_checkpoint(struct qry *r, uint64_t last_checkpoint_seq)
{
	pthread_mutex_lock(&r->mu);
	r->last_checkpoint_seq = last_checkpoint_seq;
	pthread_mutex_unlock(&r->mu);
}

/* --------------------------------------------------------------- queries */

/* A query op's handler: fills rep (buffers malloc'd into it, freed by the
 * caller whatever the result) from view v.  ISVD_PROTO_OK, or the wire code
 * with a message in msg (left empty: the code's own text). */
typedef int query_fn(struct qry *r, const struct qry_view *v, const struct isvd_proto_request *req,
                     struct isvd_proto_reply *rep, char *msg, size_t cap);

static int do_ping(struct qry *r, const struct qry_view *v, const struct isvd_proto_request *req,
                   struct isvd_proto_reply *rep, char *msg, size_t cap)
{
	rep->version = (char *)ISVD_VERSION;   /* static; the encoder only reads it */
	rep->protocol = ISVD_PROTO_VERSION;
	return ISVD_PROTO_OK;
}

/* info's monitor keys: the limits of the view's model now, the loop's
 * counts and angles, each component's gap and stability. */
static int info_monitor(struct qry *r, const struct qry_view *v, struct isvd_proto_reply *rep)
{
	struct mon_limits lim;

	pthread_mutex_lock(&r->mu);
	const struct qry_monitor m = r->mon;
	pthread_mutex_unlock(&r->mu);
	rep->has_monitor = true;
	rep->rows_flagged = m.rows_flagged;
	rep->anomaly_messages = m.messages;
	rep->anomaly_messages_dropped = m.messages_dropped;
	rep->drift_prev_deg = m.drift_prev_deg;
	rep->drift_baseline_deg = m.drift_baseline_deg;
	rep->baseline_seq = m.baseline_seq;
	mon_model_limits(r->cfg, v->snap, &lim);   /* those a push now is held to */
	rep->spe_limit = lim.spe;
	rep->t2_limit = lim.t2;
	return rpl_stability_vecs(v->snap, &rep->gap, &rep->stable);
}

static int do_info(struct qry *r, const struct qry_view *v, const struct isvd_proto_request *req,
                   struct isvd_proto_reply *rep, char *msg, size_t cap)
{
	struct isvd_info info;
	int rc;

	rep->dim = v->snap ? isvd_model_dim(v->snap) : r->cfg->model.dim;
	rep->seq = v->seq;
	rep->rows_seen = v->seq;
	rep->center = r->cfg->model.center;
	rep->forget = r->cfg->model.forget;
	pthread_mutex_lock(&r->mu);
	rep->last_checkpoint_seq = r->last_checkpoint_seq;
	const bool kafka = r->kafka.n != 0;   /* a shard's or a merger's */
	if (kafka && (rep->kafka.p = malloc(r->kafka.n))) {
		memcpy(rep->kafka.p, r->kafka.p, r->kafka.n);
		rep->kafka.n = r->kafka.n;
		rep->has_kafka = true;
	}
	pthread_mutex_unlock(&r->mu);
	if (kafka && !rep->has_kafka)
		return ISVD_PROTO_NOMEM;
	rep->uptime_s = (double)(loop_now_ms() - r->start_ms) / 1000.0;
	rep->ingest_rows_per_s = v->ingest_rows_per_s;
	rep->missing = (char *)(r->cfg->model.missing == CFG_MISSING_IMPUTE ? "impute" : "reject");
	rep->has_gaps = true;   /* 0 and 0 until the model exists */
	if (r->hooks.rl) {      /* the pushers' counters, as the loop left them */
		if (rl_snapshot(r->hooks.rl, &rep->pushers.v, &rep->pushers.n))
			return ISVD_PROTO_NOMEM;
		rep->has_pushers = true;
	}
	if (!v->snap)
		return ISVD_PROTO_OK;
	if ((rc = isvd_model_info(v->snap, &info)))
		return rpl_err_from_engine(rc);
	rep->rank = info.rank;
	rep->rank_max = info.rank_max;
	rep->mode = (char *)isvd_mode_name(info.mode);   /* static; the encoder only reads it */
	rep->rows_seen = info.rows_seen;
	rep->explained_energy_ratio = info.explained_energy_ratio;
	rep->condition_number = info.condition_number;
	rep->orthogonality_error = info.orthogonality_error;
	rep->center = info.center;
	rep->forget = info.forget;
	rep->rows_with_gaps = info.rows_with_gaps - r->gap_rows0;
	rep->values_imputed = info.values_imputed - r->gap_values0;
	rep->sigma.v = malloc((info.rank_max ? info.rank_max : 1) * sizeof(double));
	if (!rep->sigma.v)
		return ISVD_PROTO_NOMEM;
	if ((rc = isvd_model_factors(v->snap, rep->sigma.v, NULL, NULL, &rep->sigma.n)))
		return rpl_err_from_engine(rc);
	return r->cfg->monitor.enabled ? info_monitor(r, v, rep) : ISVD_PROTO_OK;
}

/* The model must have seen rows; for rows (may be NULL), of its dimension
 * and admissible.  Queries take gaps (NaN) whatever model.missing says:
 * answering one teaches the model nothing. */
static int check_ready(const struct qry_view *v, const struct isvd_proto_matrix *m, char *msg,
                       size_t cap)
{
	if (!v->snap || v->seq == 0) {
		snprintf(msg, cap, "the model has seen no rows yet");
		return ISVD_PROTO_NOT_READY;
	}
	if (!m)
		return ISVD_PROTO_OK;
	if (m->cols != isvd_model_dim(v->snap)) {
		snprintf(msg, cap, "rows: rows have %zu values; the model's dimension is %zu", m->cols,
		         isvd_model_dim(v->snap));
		return ISVD_PROTO_DIM_MISMATCH;
	}
	return rpl_check_values(m, true, msg, cap);
}

/* spe and t2 of a project reply, from its coords and residual: SPE is the
 * residual squared, T² Σ c_i²/(σ_i²/W) over the scores (W·Σ u_i² in U
 * space), as isvd_model_scores() defines them. */
static int project_scores(const struct qry_view *v, const struct isvd_proto_request *req,
                          struct isvd_proto_reply *rep)
{
	const size_t n = rep->residual.n, k = rep->coords.cols;
	double sigma[ISVD_MAX_RANK + 1], weight = 0;
	size_t kept = 0;

	if (k > ISVD_MAX_RANK || isvd_model_kept(v->snap, NULL, &kept, &weight, NULL) ||
	    isvd_model_factors(v->snap, sigma, NULL, NULL, &kept))
		return ISVD_PROTO_INTERNAL;
	rep->spe.v = malloc((n ? n : 1) * sizeof(double));
	rep->t2.v = malloc((n ? n : 1) * sizeof(double));
	if (!rep->spe.v || !rep->t2.v)
		return ISVD_PROTO_NOMEM;
	for (size_t i = 0; i < n; i++) {
		double t2 = 0;
		for (size_t j = 0; j < k; j++) {
			const double c = rep->coords.data[i * k + j];
			if (req->space == ISVD_PROTO_SPACE_U)
				t2 += sigma[j] > 0 ? weight * c * c : 0;
			else if (sigma[j] > 0)
				t2 += c * c * weight / (sigma[j] * sigma[j]);
		}
		rep->spe.v[i] = rep->residual.v[i] * rep->residual.v[i];
		rep->t2.v[i] = t2;
	}
	rep->spe.n = rep->t2.n = n;
	rep->has_scores = true;
	return ISVD_PROTO_OK;
}

static int do_project(struct qry *r, const struct qry_view *v, const struct isvd_proto_request *req,
                      struct isvd_proto_reply *rep, char *msg, size_t cap)
{
	int code, rc;

	if ((code = check_ready(v, &req->rows, msg, cap)))
		return code;
	rep->coords.rows = req->rows.rows;
	rep->coords.cols = isvd_model_rank(v->snap);
	rep->coords.data = malloc((rep->coords.rows * rep->coords.cols + 1) * sizeof(double));
	rep->residual.v = malloc(req->rows.rows * sizeof(double));
	rep->residual.n = req->rows.rows;
	if (!rep->coords.data || !rep->residual.v)
		return ISVD_PROTO_NOMEM;
	rc = isvd_model_project(v->snap, req->rows.data, req->rows.rows, req->rows.cols,
	                        req->space == ISVD_PROTO_SPACE_U ? ISVD_SPACE_U : ISVD_SPACE_SCORES,
	                        rep->coords.data, rep->residual.v);
	if (rc)
		return rpl_err_from_engine(rc);
	if ((code = project_scores(v, req, rep)))
		return code;
	if (req->rows.n_missing) {   /* rows with gaps: how many values each residual covers */
		rep->observed.v = malloc(req->rows.rows * sizeof(double));
		if (!rep->observed.v)
			return ISVD_PROTO_NOMEM;
		rep->observed.n = req->rows.rows;
		rep->has_observed = true;
		for (size_t i = 0; i < req->rows.rows; i++)
			rep->observed.v[i] = (double)isvd_row_observed(req->rows.data + i * req->rows.cols,
			                                               req->rows.cols);
	}
	return ISVD_PROTO_OK;
}

static int do_reconstruct(struct qry *r, const struct qry_view *v,
                          const struct isvd_proto_request *req, struct isvd_proto_reply *rep,
                          char *msg, size_t cap)
{
	int code, rc;

	if ((code = check_ready(v, &req->rows, msg, cap)))
		return code;
	rep->rows.rows = req->rows.rows;
	rep->rows.cols = req->rows.cols;
	rep->rows.data = malloc(req->rows.rows * req->rows.cols * sizeof(double));
	if (!rep->rows.data)
		return ISVD_PROTO_NOMEM;
	if (req->fill)   /* gap filling: observed values kept, gaps from the estimator */
		rc = isvd_model_impute(v->snap, req->rows.data, req->rows.rows, req->rows.cols,
		                       rep->rows.data);
	else
		rc = isvd_model_reconstruct(v->snap, req->rows.data, req->rows.rows, req->rows.cols,
		                            rep->rows.data);
	return rc ? rpl_err_from_engine(rc) : ISVD_PROTO_OK;
}

static int do_factors(struct qry *r, const struct qry_view *v, const struct isvd_proto_request *req,
                      struct isvd_proto_reply *rep, char *msg, size_t cap)
{
	int code;

	if ((code = check_ready(v, NULL, msg, cap)))
		return code;
	if ((code = rpl_factors(v->snap, r->cfg->model.center, rep)))
		return code;
	return r->cfg->monitor.enabled ? rpl_stability(v->snap, rep) : ISVD_PROTO_OK;
}

/* The ops the query thread answers itself; `checkpoint` is forwarded to
 * the loop (handle_query()) and `push` belongs on the ingest socket. */
static const struct {
	enum isvd_proto_op op;
	query_fn *fn;
} query_ops[] = {
	{ ISVD_OP_PING, do_ping },
	{ ISVD_OP_INFO, do_info },
	{ ISVD_OP_PROJECT, do_project },
	{ ISVD_OP_RECONSTRUCT, do_reconstruct },
	{ ISVD_OP_FACTORS, do_factors },
};

static query_fn *find_op(enum isvd_proto_op op)
{
	for (size_t i = 0; i < sizeof query_ops / sizeof query_ops[0]; i++)
		if (query_ops[i].op == op)
			return query_ops[i].fn;
	return NULL;
}

/* Sends rep, or the error code with msg, and logs a refusal or failure. */
static void answer(struct qry *r, zmq_msg_t *env, size_t nenv, const struct isvd_proto_request *req,
                   const struct isvd_proto_reply *rep, int code, char *msg, size_t cap)
{
	if (!code) {
		rpl_send_ok(r->log, r->query, env, nenv, rep);
		return;
	}
	if (!msg[0])
		snprintf(msg, cap, "%s", isvd_proto_strerror(code));
	if (code == ISVD_PROTO_NOMEM || code == ISVD_PROTO_INTERNAL)
		log_msg(r->log, CFG_LOG_ERROR, "%s failed: %s", isvd_proto_op_name(req->op), msg);
	else
		log_refused(r->log, "%s refused: %s: %s", isvd_proto_op_name(req->op),
		            isvd_proto_err_name(code), msg);
	rpl_send_error(r->log, r->query, env, nenv, req->id, req->id_len, code, msg);
}

/* Hands a `checkpoint` request (all its frames) to the loop over the
 * control pair; the loop answers and the thread relays the reply. */
static void forward_to_loop(struct qry *r, void *ctl, zmq_msg_t *frames, size_t nframes)
{
	for (size_t i = 0; i < nframes; i++)
		if (zmq_msg_send(&frames[i], ctl, i + 1 < nframes ? ZMQ_SNDMORE : 0) < 0) {
			log_msg(r->log, CFG_LOG_ERROR, "cannot forward a checkpoint request: %s",
			        zmq_strerror(errno));
			for (size_t j = i; j < nframes; j++)
				zmq_msg_close(&frames[j]);
			return;
		}
}

/* Answers one query from the current view through query_ops; a
 * `checkpoint` goes to the loop (every frame's ownership moves there). */
static void handle_query(struct qry *r, void *ctl, zmq_msg_t *frames, size_t nframes)
{
	zmq_msg_t *env = frames, *body = &frames[nframes - 1];
	const size_t nenv = nframes - 1;
	struct isvd_proto_request req;
	struct isvd_proto_reply rep;
	struct isvd_proto_error perr;
	struct qry_view *v;
	query_fn *fn;
	char msg[256] = "";
	int code;
	const uint64_t t0 = loop_now_ns();

	code = isvd_proto_request_decode(zmq_msg_data(body), zmq_msg_size(body), &r->lim, &req, &perr);
	if (req.op == ISVD_OP_PUSH) {
		code = ISVD_PROTO_UNKNOWN_OP;
		snprintf(perr.message, sizeof perr.message, "op 'push' belongs on the ingest socket");
	}
	if (code) {
		log_refused(r->log, "query refused: %s: %s", isvd_proto_err_name(code), perr.message);
		met_refusal(r->hooks.met, MET_QUERY, code);   /* counted before the client can see it */
		met_query(r->hooks.met, req.op, loop_now_ns() - t0);
		rpl_send_error(r->log, r->query, env, nenv, req.id, req.id_len, code, perr.message);
		zmq_msg_close(body);
		isvd_proto_request_fini(&req);
		return;
	}
	if (req.op == ISVD_OP_CHECKPOINT || req.op == ISVD_OP_BASELINE) {   /* the loop answers */
		forward_to_loop(r, ctl, frames, nframes);
		isvd_proto_request_fini(&req);
		return;
	}
	v = view_get(r);
	memset(&rep, 0, sizeof rep);
	rep.op = req.op;
	rep.ok = true;
	rep.id = req.id;
	rep.id_len = req.id_len;
	rep.seq = v->seq;
	if ((fn = find_op(req.op)) != NULL) {
		code = fn(r, v, &req, &rep, msg, sizeof msg);
	} else {
		code = ISVD_PROTO_UNKNOWN_OP;
		snprintf(msg, sizeof msg, "unknown op");
	}
	if (code)   /* counted before the client can see the answer */
		met_refusal(r->hooks.met, MET_QUERY, code);
	met_query(r->hooks.met, req.op, loop_now_ns() - t0);
	answer(r, env, nenv, &req, &rep, code, msg, sizeof msg);
	rpl_factors_free(&rep);   /* sigma (info, factors), vt and mean (factors) */
	rl_snapshot_free(rep.pushers.v, rep.pushers.n);   /* info */
	free(rep.coords.data);
	free(rep.residual.v);
	free(rep.observed.v);
	free(rep.spe.v);
	free(rep.t2.v);
	free(rep.gap.v);
	free(rep.rows.data);
	free(rep.kafka.p);
	view_put(r, v);
	zmq_msg_close(body);
	isvd_proto_request_fini(&req);
}

/* --------------------------------------------------------- summaries */

/* The thread's answer to qry_summary(): the figures of the current view,
 * computed outside the lock (the thread is the snapshot's only reader),
 * then published under it. */
static void summarize(struct qry *r)
{
	struct qry_summary *s = r->sum_work;
	struct qry_view *v;
	uint64_t u64;

	while (read(r->sum_fd, &u64, sizeof u64) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&r->mu);
	r->sum_want = false;
	v = r->view;
	v->refs++;
	s->gen = r->view_gen;
	pthread_mutex_unlock(&r->mu);
	s->seq = v->seq;
	s->nsigma = 0;
	s->have_model = v->snap && isvd_model_info(v->snap, &s->info) == ISVD_OK;
	if (s->have_model && s->info.rows_seen &&
	    isvd_model_factors(v->snap, s->sigma, NULL, NULL, &s->nsigma) != ISVD_OK)
		s->nsigma = 0;
	view_put(r, v);
	pthread_mutex_lock(&r->mu);
	r->sum_work = r->sum;
	r->sum = s;
	pthread_cond_broadcast(&r->sum_cv);
	pthread_mutex_unlock(&r->mu);
}

/* Copies what a summary holds (σ up to nsigma only). */
static void summary_copy(struct qry_summary *to, const struct qry_summary *from)
{
	memcpy(to, from, offsetof(struct qry_summary, sigma));
	memcpy(to->sigma, from->sigma, from->nsigma * sizeof from->sigma[0]);
}

int qry_summary(struct qry *r, struct qry_summary *out, int wait_ms)
{
	struct timespec until;
	const uint64_t one = 1;
	uint64_t want_gen;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	want_gen = r->view_gen;
	if (r->sum->gen != want_gen) {
		if (!r->sum_want) {
			r->sum_want = true;
			while (write(r->sum_fd, &one, sizeof one) < 0 && errno == EINTR)
				;
		}
		while (r->sum->gen < want_gen &&
		       pthread_cond_timedwait(&r->sum_cv, &r->mu, &until) != ETIMEDOUT)
			;
	}
	summary_copy(out, r->sum);
	pthread_mutex_unlock(&r->mu);
	return out->gen ? 0 : -1;
}

/* ------------------------------------------------------------ the thread */

static void *run(void *arg)
{
	struct qry *r = arg;
	void *ctl = zmq_socket(r->zctx, ZMQ_PAIR);
	int rc = ctl && zmq_connect(ctl, QRY_CTL_ENDPOINT) == 0 ? 0 : -1;

	if (rc)
		log_msg(r->log, CFG_LOG_ERROR, "query thread: cannot connect its control pair: %s",
		        zmq_strerror(errno));
	pthread_mutex_lock(&r->mu);
	r->start_rc = rc;
	r->start_done = true;
	pthread_cond_signal(&r->started_cv);
	pthread_mutex_unlock(&r->mu);
	if (rc) {
		if (ctl)
			zmq_close(ctl);
		return NULL;
	}
	/* the query socket is read from qry_serve()'s 'G' on (until then its
	 * requests wait in the socket) */
	zmq_pollitem_t items[3] = {
		{ r->query, 0, 0, 0 },
		{ ctl, 0, ZMQ_POLLIN, 0 },
		{ NULL, r->sum_fd, ZMQ_POLLIN, 0 },   /* qry_summary() asks */
	};
	for (;;) {
		zmq_msg_t frames[QRY_CTL_FRAMES];
		size_t n = 0;

		if (zmq_poll(items, 3, QRY_POLL_MS) < 0) {
			if (errno == EINTR)
				continue;
			log_msg(r->log, CFG_LOG_ERROR, "query thread: zmq_poll: %s", zmq_strerror(errno));
			break;
		}
		if (items[1].revents & ZMQ_POLLIN) {   /* from the loop: a reply or stop */
			int got = rpl_recv_frames(r->log, ctl, frames, QRY_CTL_FRAMES, &n);
			if (got == 1) {
				const bool tag = zmq_msg_size(&frames[0]) == 1;
				const char t = tag ? *(const char *)zmq_msg_data(&frames[0]) : 0;
				const bool stop = t == 'S';
				if (t == 'G')
					items[0].events = ZMQ_POLLIN;
				zmq_msg_close(&frames[0]);
				if (stop) {
					for (size_t i = 1; i < n; i++)
						zmq_msg_close(&frames[i]);
					break;
				}
				if (n >= 2) {
					rpl_send_frames(r->log, r->query, frames + 1, n - 2, zmq_msg_data(&frames[n - 1]),
					            zmq_msg_size(&frames[n - 1]));
					zmq_msg_close(&frames[n - 1]);
				} else {
					for (size_t i = 1; i < n; i++)
						zmq_msg_close(&frames[i]);
				}
			}
		}
		if (items[0].revents & ZMQ_POLLIN)
			for (int burst = 0; burst < 1024; burst++) {
				int got = rpl_recv_frames(r->log, r->query, frames, RPL_MAX_FRAMES, &n);
				if (got == 0)
					break;
				if (got == 1)
					handle_query(r, ctl, frames, n);
			}
		if (items[2].revents & ZMQ_POLLIN)
			summarize(r);
	}
	zmq_close(ctl);
	zmq_socket_monitor(r->query, NULL, 0);   /* conncap.h: no event after its reader closes */
	zmq_close(r->query);
	r->query = NULL;
	return NULL;
}

/* The summary slots, the eventfd and the condition variable (on the
 * monotonic clock qry_summary() waits by).  0, or -1 with errno. */
static int summary_init(struct qry *r)
{
	pthread_condattr_t ca;

	r->sum = calloc(1, sizeof *r->sum);
	r->sum_work = calloc(1, sizeof *r->sum_work);
	r->sum_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!r->sum || !r->sum_work || r->sum_fd < 0) {
		const int e = r->sum_fd < 0 && r->sum && r->sum_work ? errno : ENOMEM;
		free(r->sum);
		free(r->sum_work);
		if (r->sum_fd >= 0)
			close(r->sum_fd);
		errno = e;
		return -1;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->sum_cv, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

static void summary_fini(struct qry *r)
{
	pthread_cond_destroy(&r->sum_cv);
	close(r->sum_fd);
	free(r->sum);
	free(r->sum_work);
}

int qry_start(const struct cfg *cfg, struct log_sink *log, void *zctx, void *query_sock,
              const struct qry_hooks *hooks, const struct isvd_model *model, uint64_t seq,
              uint64_t last_checkpoint_seq, struct qry **out)
{
	struct qry *r = calloc(1, sizeof *r);
	int err;

	if (!r) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the query thread: %s", strerror(errno));
		return -1;
	}
	r->cfg = cfg;
	r->log = log;
	r->zctx = zctx;
	r->hooks = *hooks;
	r->start_ms = loop_now_ms();
	r->lim.max_frame = cfg->limits.max_message_bytes;
	r->lim.max_rows = cfg->limits.max_rows_per_push;
	r->lim.max_cols = ISVD_MAX_DIM;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->started_cv, NULL);
	struct isvd_info gi;
	if (model && isvd_model_info(model, &gi) == ISVD_OK) {
		r->gap_rows0 = gi.rows_with_gaps;
		r->gap_values0 = gi.values_imputed;
	}
	if (summary_init(r)) {
		log_msg(log, CFG_LOG_ERROR, "cannot set up the query thread's summaries: %s", strerror(errno));
		pthread_cond_destroy(&r->started_cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return -1;
	}
	r->view = qry_view_make(model, seq, &err);
	r->view_gen = 1;
	r->last_checkpoint_seq = last_checkpoint_seq;
	if (!r->view) {
		log_msg(log, CFG_LOG_ERROR, "cannot snapshot the model for the query thread: %s",
		        isvd_strerror(err));
		goto fail;
	}
	r->ctl_loop = zmq_socket(zctx, ZMQ_PAIR);
	if (!r->ctl_loop || zmq_bind(r->ctl_loop, QRY_CTL_ENDPOINT) < 0) {
		log_msg(log, CFG_LOG_ERROR, "cannot bind the query thread's control pair: %s",
		        zmq_strerror(errno));
		goto fail;
	}
	r->query = query_sock;
	if ((err = pthread_create(&r->thread, NULL, run, r))) {
		log_msg(log, CFG_LOG_ERROR, "cannot start the query thread: %s", strerror(err));
		r->query = NULL;
		goto fail;
	}
	r->started = true;
	pthread_mutex_lock(&r->mu);
	while (!r->start_done)
		pthread_cond_wait(&r->started_cv, &r->mu);
	err = r->start_rc;
	pthread_mutex_unlock(&r->mu);
	if (err) {   /* the thread has returned without touching query_sock */
		pthread_join(r->thread, NULL);
		r->started = false;
		r->query = NULL;
		goto fail;
	}
	*out = r;
	return 0;
fail:
	if (r->ctl_loop)
		zmq_close(r->ctl_loop);
	qry_view_free(r->view);
	summary_fini(r);
	pthread_cond_destroy(&r->started_cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
	return -1;
}

void *qry_ctl_socket(struct qry *r)
{
	return r->ctl_loop;
}

void qry_serve_ctl(struct qry *r)
{
	for (int burst = 0; burst < 64; burst++) {
		zmq_msg_t frames[QRY_CTL_FRAMES];
		size_t n = 0;
		struct isvd_proto_request req;
		struct isvd_proto_reply rep;
		struct isvd_proto_error perr;
		uint8_t *out = NULL;
		size_t len = 0;
		char why[600] = "";
		uint64_t seq = 0;
		const uint64_t t0 = loop_now_ns();

		if (rpl_recv_frames(r->log, r->ctl_loop, frames, RPL_MAX_FRAMES, &n) != 1)
			return;
		zmq_msg_t *body = &frames[n - 1];
		isvd_proto_request_decode(zmq_msg_data(body), zmq_msg_size(body), &r->lim, &req, &perr);
		memset(&rep, 0, sizeof rep);
		rep.op = req.op == ISVD_OP_BASELINE ? ISVD_OP_BASELINE : ISVD_OP_CHECKPOINT;
		rep.id = req.id;
		rep.id_len = req.id_len;
		int (*hook)(void *, uint64_t *, char *, size_t) =
			req.op == ISVD_OP_BASELINE ? r->hooks.baseline : r->hooks.checkpoint;
		if (hook(r->hooks.ctx, &seq, why, sizeof why) == 0) {
			rep.ok = true;
			rep.seq = seq;
			isvd_proto_reply_encode(&rep, &out, &len);
		} else {
			isvd_proto_error_encode(req.id, req.id_len, ISVD_PROTO_UNAVAILABLE, why, &out, &len);
			met_refusal(r->hooks.met, MET_QUERY, ISVD_PROTO_UNAVAILABLE);
		}
		met_query(r->hooks.met, ISVD_OP_CHECKPOINT, loop_now_ns() - t0);
		isvd_proto_request_fini(&req);
		zmq_msg_close(body);
		/* "R", the envelope, the reply */
		if (zmq_send(r->ctl_loop, "R", 1, ZMQ_SNDMORE) < 0) {
			for (size_t i = 0; i + 1 < n; i++)
				zmq_msg_close(&frames[i]);
			free(out);
			continue;
		}
		for (size_t i = 0; i + 1 < n; i++)
			zmq_msg_send(&frames[i], r->ctl_loop, ZMQ_SNDMORE);
		zmq_send(r->ctl_loop, out ? (const void *)out : "", out ? len : 0, 0);
		free(out);
	}
}

void qry_serve(struct qry *r)
{
	zmq_send(r->ctl_loop, "G", 1, 0);
}

void qry_stop(struct qry *r)
{
	if (!r)
		return;
	if (r->started) {
		zmq_send(r->ctl_loop, "S", 1, 0);
		pthread_join(r->thread, NULL);
	}
	zmq_close(r->ctl_loop);
	qry_view_free(r->view);
	free(r->kafka.p);
	summary_fini(r);
	pthread_cond_destroy(&r->started_cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
