/*
 * server.c — isvdd's wiring: the sockets, the threads and the event loop,
 * created in srv_create(), served by srv_run(), torn down by srv_destroy().
 *
 * DESIGN
 *   Three threads, and a fourth with CURVE or a connection cap.  The loop
 *   thread runs srv_run(): one event loop (loop.c) whose registrations are
 *   the daemon's work, each owned by a unit (isvdd.h lists them):
 *
 *     pollables, served in this order     timers, one table
 *       engine fd    ing_engine_finish()    batching delay  ing_on_flush_timer()
 *       ingest       ing_on_readable()      storage         rec_on_storage_timer()
 *       control PAIR qry_serve_ctl()        spectrum        pub_on_spectrum_timer()
 *                                           factors         pub_on_factors_timer()
 *                                           refusal summary report_limits()
 *                                           status, watchdog (notify.c)
 *
 *   The gate thread (gate.c) serves the ZAP handler (security.c), which
 *   applies the connection caps (conncap.c) from the socket monitors it
 *   also reads: handshakes wait for nothing the loop does (a hung disk).
 *   The pushers' rate limits (ratelimit.c) are asked by ingest.c and read,
 *   under their own mutex, by the query thread (info) and the HTTP thread
 *   (/metrics).  The engine thread (worker.c) applies
 *   one block at a time (ingest.c); the query thread (query.c) owns the
 *   query socket and answers from the view the engine thread snapshots
 *   after every block, forwarding `checkpoint` over the control PAIR.  The
 *   PUB socket is only written (publish.c).
 *
 *   Start-up order: the model (model.dim), recovery from storage.dir
 *   before anything is bound (nobody is served a model still being
 *   rebuilt), the engine thread, the ZAP handler before the sockets that
 *   need it, the sockets, the gate thread, the query thread, the loop's
 *   registrations.  Teardown runs the other way: the gate thread first
 *   (the key sets and the connection table are this thread's again), the
 *   engine thread (it may be applying a block), then the query thread (it
 *   closes its socket).
 *
 *   With a kafka section the daemon is a shard or a merger (kafka.h): no
 *   storage and no ingest socket; kfk_start(), after the query thread,
 *   registers the role's wake-up pipe and timers in place of ingest and
 *   storage, and srv_run() ends with kfk_stop() instead of a checkpoint.
 *
 *   With http.listen set, a fourth thread (libmicrohttpd's, http.c) serves
 *   /metrics, /status and /healthz from the registry (metrics.c, which
 *   every unit updates where its events happen) and the query thread's
 *   summaries; it starts before recovery (/healthz: "recovering") and
 *   stops first.
 *
 *   Hostile peers: every socket bounds message size (ZMQ_MAXMSGSIZE),
 *   queues (high-water marks), handshake time (limits.handshake_ms) and
 *   connections (limits.max_connections_per_address, max_connections);
 *   pushers are held to limits.push_rows_per_s; refusals are counted and
 *   summed up in the log once a minute and at stop (report_limits()).
 *
 * INVARIANTS
 *   See isvdd.h for the state's; here: after srv_create() returns 0 every
 *   registration is in place and srv->query is the query thread's (NULL).
 */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zmq.h>

#include "conncap.h"
#include "gate.h"
#include "http.h"
#include "isvdd.h"
#include "kafka.h"
#include "loop.h"
#include "metrics.h"
#include "query.h"
#include "ratelimit.h"
#include "security.h"
#include "storage.h"
#include "worker.h"

static void on_engine_done(void *ctx)
{
	ing_engine_finish(ctx);
}

static void on_checkpoint_request(void *ctx)
{
	struct isvdd *srv = ctx;

	qry_serve_ctl(srv->qry);
}

/* Logs what was refused or limited since start, when anything changed
 * since the last report or at stop (final). */
static void report_limits(struct isvdd *srv, bool final)
{
	struct sec_counts sc;
	struct cc_counts cn;
	uint64_t cur[5], limited_rows = 0;

	if (srv->gate) {
		gate_counts(srv->gate, &sc, &cn);
	} else {
		sec_get_counts(srv->sec, &sc);
		cc_get_counts(srv->cc, &cn);
	}
	cur[0] = log_refused_count(srv->log);
	cur[1] = sc.refused[SEC_INGEST] + sc.refused[SEC_QUERY] + sc.refused[SEC_PUBLISH];
	cur[2] = srv->early_flushes;
	cur[3] = 0;
	if (srv->rl)
		rl_totals(srv->rl, &cur[3], &limited_rows);
	cur[4] = sc.capped;
	if (!memcmp(cur, srv->reported, sizeof cur) && !final)
		return;
	memcpy(srv->reported, cur, sizeof cur);
	log_msg(srv->log, CFG_LOG_INFO, "refusals since start: %llu requests and clients refused; CURVE "
	        "clients admitted %llu/%llu/%llu, refused %llu/%llu/%llu (ingest/query/publish); "
	        "%llu early flushes at limits.max_pending_pushes; %llu pushes (%llu rows) refused "
	        "RATE_LIMITED; %llu handshakes refused by the connection caps (%llu per address, "
	        "%llu in total), %llu connections open",
	        (unsigned long long)cur[0], (unsigned long long)sc.admitted[SEC_INGEST],
	        (unsigned long long)sc.admitted[SEC_QUERY], (unsigned long long)sc.admitted[SEC_PUBLISH],
	        (unsigned long long)sc.refused[SEC_INGEST], (unsigned long long)sc.refused[SEC_QUERY],
	        (unsigned long long)sc.refused[SEC_PUBLISH], (unsigned long long)cur[2],
	        (unsigned long long)cur[3], (unsigned long long)limited_rows, (unsigned long long)cur[4],
	        (unsigned long long)cn.refused_per_address, (unsigned long long)cn.refused_total,
	        (unsigned long long)cn.open);
}

/* Timer: the refusal summary, once a minute. */
static void on_report_timer(void *ctx, uint64_t now)
{
	report_limits(ctx, false);
}

int srv_run(struct isvdd *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup)
{
	int ret = 0;

	ntf_ready(srv);   /* recovered, bound, every thread running */
	while (!*stop && !srv->failed) {
		if (*hup) {
			*hup = 0;
			ntf_reloading(srv);
			log_reopen(srv->log);
			if (srv->gate)
				gate_reload(srv->gate);   /* the key sets are the gate thread's */
			else
				sec_reload(srv->sec);
			ntf_ready(srv);
		}
		if (loop_turn(srv->loop, -1) < 0) {
			log_msg(srv->log, CFG_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
			ret = -1;
			break;
		}
	}
	met_set_phase(srv->met, MET_STOPPING);
	ntf_stopping(srv);
	if (srv->failed)
		ret = -1;
	if (srv->kafka) {   /* Kafka keeps the rows, the changelog the models */
		kfk_stop(srv->kafka);
		report_limits(srv, true);
		return ret;
	}
	ing_drain(srv);
	log_msg(srv->log, CFG_LOG_INFO, "stopping: %llu rows in the model; writing a checkpoint",
	        (unsigned long long)srv->seq);
	if (rec_checkpoint(srv))
		ret = -1;
	report_limits(srv, true);
	return ret;
}

static void *open_socket(struct isvdd *srv, int type, enum sec_role role, const char *endpoint,
                         int sndhwm, int rcvhwm)
{
	static const char *const names[SEC_ROLES_] = { "ingest", "query", "publish" };
	const char *what = names[role];
	const int linger = 1000;
	const int64_t maxmsg = (int64_t)srv->cfg->limits.max_message_bytes + 65536;
	void *s = zmq_socket(srv->zctx, type);

	if (!s) {
		log_msg(srv->log, CFG_LOG_ERROR, "cannot create the %s socket: %s", what, zmq_strerror(errno));
		return NULL;
	}
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
	zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
	zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
	/* a PUB reads subscriptions: they are bounded too */
	zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
	if (sec_apply(srv->sec, s, role) < 0 ||
	    (sec_zap_socket(srv->sec) && cc_watch(srv->cc, s, (int)role, what) < 0)) {
		zmq_close(s);
		return NULL;
	}
	if (zmq_bind(s, endpoint) < 0) {
		log_msg(srv->log, CFG_LOG_ERROR, "cannot bind the %s endpoint %s: %s", what, endpoint,
		        zmq_strerror(errno));
		zmq_socket_monitor(s, NULL, 0);
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

	ok = loop_add_io(l, NULL, wrk_fd(srv->engine), on_engine_done, srv) >= 0;
	if (srv->ingest)   /* not with a kafka section: kfk_start() registers the role's */
		ok = ok && loop_add_io(l, srv->ingest, 0, ing_on_readable, srv) >= 0 &&
		     (srv->t_storage = loop_add_timer(l, 0, rec_on_storage_timer, srv)) >= 0;
	ok = ok && loop_add_io(l, qry_ctl_socket(srv->qry), 0, on_checkpoint_request, srv) >= 0 &&
	     (srv->t_report = loop_add_timer(l, 60000, on_report_timer, srv)) >= 0 &&
	     ntf_add_timers(srv, now) == 0;
	if (ok && c->publish.spectrum_every_ms)
		ok = (srv->t_spectrum = loop_add_timer(l, c->publish.spectrum_every_ms, pub_on_spectrum_timer,
		                                       srv)) >= 0;
	if (ok && c->publish.factors_every_ms)
		ok = (srv->t_factors = loop_add_timer(l, c->publish.factors_every_ms, pub_on_factors_timer,
		                                      srv)) >= 0;
	if (!ok) {
		log_msg(srv->log, CFG_LOG_ERROR, "the event loop's tables are full");
		return -1;
	}
	if (srv->t_storage >= 0)
		loop_timer_at(l, srv->t_storage, now);
	loop_timer_at(l, srv->t_report, now + 60000);
	if (srv->t_spectrum >= 0)
		loop_timer_at(l, srv->t_spectrum, now + c->publish.spectrum_every_ms);
	if (srv->t_factors >= 0)
		loop_timer_at(l, srv->t_factors, now + c->publish.factors_every_ms);
	return 0;
}

/* limits.max_connections above the open-files limit cannot protect the
 * daemon from running out of descriptors (accept fails first): say so. */
static void warn_open_files(const struct cfg *cfg, struct log_sink *log)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (!cfg->limits.max_connections || cfg->limits.max_connections + 64 > rl.rlim_cur))
		log_msg(log, CFG_LOG_WARN, "limits.max_connections %llu is not below the open-files "
		        "limit %llu less 64 for the daemon's own files: raise the limit (ulimit -n, "
		        "LimitNOFILE=) or lower limits.max_connections",
		        (unsigned long long)cfg->limits.max_connections, (unsigned long long)rl.rlim_cur);
}

/* The model served from the start: recovered from storage.dir (then
 * seeded, when asked and the directory held none), before anything is
 * bound, so that nobody is served a model still being rebuilt.  A shard's
 * or a merger's is the merge of partition models that come from Kafka
 * (kfk_start()): nothing to recover, no file to seed from.  0, or the exit
 * code for main() after logging why. */
static int initial_model(struct isvdd *srv, bool repair, const char *seed)
{
	const struct cfg *cfg = srv->cfg;
	int ret;

	if (cfg->kafka.on) {
		if (seed) {
			log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: a shard or a merger (kafka section) "
			        "starts from the images on its changelog topic, not from a file", seed);
			return 1;
		}
		srv->dim = cfg->model.dim;
		srv->kmax = cfg->model.rank < srv->dim ? cfg->model.rank : srv->dim;
		return 0;
	}
	if (cfg->model.dim && ing_make_model(srv, cfg->model.dim))
		return 1;
	const struct sto_hooks hooks = rec_hooks(srv);
	if ((ret = sto_open(cfg, srv->log, repair, &hooks, &srv->sto)))
		return ret;
	srv->logged = srv->seq;
	if (seed && rec_seed(srv, seed))   /* after recovery: only an empty directory is seeded */
		return 1;
	struct isvd_info gi;
	if (srv->model && isvd_model_info(srv->model, &gi) == ISVD_OK) {
		srv->gap_rows0 = gi.rows_with_gaps;
		srv->gap_values0 = gi.values_imputed;
	}
	return 0;
}

int srv_create(const struct cfg *cfg, struct log_sink *log, bool repair, const char *seed,
               struct isvdd **out)
{
	struct isvdd *srv = calloc(1, sizeof *srv);
	const int hs = (int)cfg->limits.send_hwm, hr = (int)cfg->limits.recv_hwm;
	int ret = 1, err;

	if (!srv) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the server: %s", strerror(errno));
		return 1;
	}
	srv->cfg = cfg;
	srv->log = log;
	ntf_init(&srv->ntf, log);   /* first: srv_destroy() closes it */
	ntf_recovering(srv);
	srv->t_flush = srv->t_spectrum = srv->t_factors = srv->t_storage = srv->t_report = -1;
	srv->lim.max_frame = cfg->limits.max_message_bytes;
	srv->lim.max_rows = cfg->limits.max_rows_per_push;
	srv->lim.max_cols = ISVD_MAX_DIM;
	srv->fill = &srv->batch[0];
	srv->mon.drift_prev_deg = srv->mon.drift_base_deg = NAN;
	/* the HTTP endpoint answers from the start: /healthz says "recovering" */
	if (!(srv->met = met_create())) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the metrics: %s", strerror(ENOMEM));
		goto fail;
	}
	if (cfg->monitor.enabled)   /* /metrics has the monitor's figures from the start */
		met_monitor(srv->met, 0, 0, 0, NAN, NAN);
	if (http_start(cfg, log, srv->met, loop_now_ms(), &srv->http))
		goto fail;
	if (loop_create(SRV_POLL_MAX_MS, &srv->loop) ||
	    (srv->t_flush = loop_add_timer(srv->loop, 0, ing_on_flush_timer, srv)) < 0) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the event loop: %s", strerror(ENOMEM));
		goto fail;
	}
	if (rl_create(cfg->limits.push_rows_per_s, cfg->limits.push_burst_rows, cfg->limits.max_pushers,
	              &srv->rl)) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the pushers' table: %s", strerror(ENOMEM));
		goto fail;
	}
	met_set_pushers(srv->met, srv->rl);
	if (dup_init(&srv->dup, cfg->limits.max_clients)) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the duplicate table: %s", strerror(errno));
		goto fail;
	}
	if ((ret = initial_model(srv, repair, seed)))
		goto fail;
	ret = 1;
	if ((err = wrk_create(ing_engine_job, srv, &srv->engine))) {
		log_msg(log, CFG_LOG_ERROR, "cannot start the engine thread: %s", strerror(err));
		goto fail;
	}
	srv->zctx = zmq_ctx_new();
	if (!srv->zctx) {
		log_msg(log, CFG_LOG_ERROR, "zmq_ctx_new: %s", zmq_strerror(errno));
		goto fail;
	}
	/* the ZAP handler is bound before the sockets that need it */
	if (sec_create(cfg, log, srv->zctx, &srv->sec))
		goto fail;
	sec_set_metrics(srv->sec, srv->met);
	if (cc_create(cfg->limits.max_connections_per_address, cfg->limits.max_connections, srv->zctx,
	              log, &srv->cc))
		goto fail;
	cc_set_metrics(srv->cc, srv->met);
	sec_set_conncap(srv->sec, srv->cc);
	warn_open_files(cfg, log);
	if (cfg->kafka.on) {
		char note[KFK_NOTE_MAX];
		log_msg(log, CFG_LOG_INFO, "%s", kfk_ingest_note(cfg, note, sizeof note));
	} else if (!(srv->ingest = open_socket(srv, ZMQ_ROUTER, SEC_INGEST, cfg->endpoints.ingest, hs, hr)))
		goto fail;
	if (!(srv->query = open_socket(srv, ZMQ_ROUTER, SEC_QUERY, cfg->endpoints.query, hs, hr)))
		goto fail;
	if (!(srv->publish = open_socket(srv, ZMQ_PUB, SEC_PUBLISH, cfg->endpoints.publish,
	                                 (int)cfg->limits.publish_hwm, hr)))
		goto fail;
	/* handshakes are answered from here on, by the gate thread (gate.h) */
	if (sec_zap_socket(srv->sec) && gate_start(srv->zctx, srv->sec, srv->cc, log, &srv->gate))
		goto fail;
	srv->start_ms = loop_now_ms();
	srv->rate_ms[0] = srv->rate_ms[1] = srv->start_ms;
	const struct qry_hooks rh = { srv, cfg->kafka.on ? kfk_on_checkpoint_request
	                                                 : rec_on_checkpoint_request,
	                              mon_on_baseline_request, srv->met, srv->rl };
	if (qry_start(cfg, log, srv->zctx, srv->query, &rh, srv->model, srv->seq,
	              srv->sto ? sto_last_checkpoint_seq(srv->sto) : 0, &srv->qry))
		goto fail;
	srv->query = NULL;   /* the query thread's now */
	if (register_loop(srv))
		goto fail;
	if (cfg->kafka.on && kfk_start(srv, &srv->kafka))
		goto fail;
	http_attach(srv->http, srv->qry);
	met_set_phase(srv->met, MET_SERVING);
	qry_serve(srv->qry);   /* everything is in place: answer */
	*out = srv;
	return 0;
fail:
	ntf_send(&srv->ntf, "STATUS=not starting (exit code %d); the log says why", ret);
	srv_destroy(srv);
	return ret;
}

void srv_destroy(struct isvdd *srv)
{
	if (!srv)
		return;
	http_stop(srv->http);       /* it reads the query thread's summaries */
	gate_stop(srv->gate);       /* sec and cc are this thread's again */
	kfk_destroy(srv->kafka);    /* its librdkafka threads log */
	wrk_destroy(srv->engine);   /* then the engine: it may be applying a block */
	qry_stop(srv->qry);         /* then the query thread: it closes the query socket */
	ing_fini(srv);
	sto_close(srv->sto);
	dup_fini(&srv->dup);
	/* their monitors stopped first (conncap.h), then the sockets */
	void *socks[3] = { srv->ingest, srv->query, srv->publish };
	for (int i = 0; i < 3; i++)
		if (socks[i]) {
			zmq_socket_monitor(socks[i], NULL, 0);
			zmq_close(socks[i]);
		}
	cc_destroy(srv->cc);     /* the monitor sockets, before the context ends */
	sec_destroy(srv->sec);   /* the ZAP socket, before the context ends */
	if (srv->zctx)
		zmq_ctx_term(srv->zctx);
	isvd_model_destroy(srv->model);
	mon_fini(&srv->mon);
	loop_destroy(srv->loop);
	met_destroy(srv->met);
	rl_destroy(srv->rl);     /* after the HTTP and query threads, which read it */
	ntf_fini(&srv->ntf);
	free(srv);
}
