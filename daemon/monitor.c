/*
 * monitor.c — isvdd's monitoring of the stream (monitor.enabled): rows
 * over the control limits published on `anomaly`, and the drift of the
 * subspace published on `drift` (state in isvdd.h, struct mon_state).
 *
 * DESIGN
 *   The engine thread scores each block's rows against the model before
 *   it (isvd_model_update_monitored in ingest.c's apply_batch), which
 *   also gives the tail figures of that same model; from them the control
 *   limits go into the batch (mon_block_limits; limits.c has the
 *   formulas): a row is judged by the model it arrived to.  Nothing is flagged before monitor.warmup_rows.
 *   The loop, finishing the block, counts the rows over a limit and sends
 *   one `anomaly` message with all of them (mon_after_block), at most
 *   monitor.anomaly_max_per_s messages a second (a token bucket refilled
 *   by the loop's clock); what does not fit is counted, not queued.
 *
 *   Drift is measured at each `spectrum` snapshot (mon_on_spectrum): the
 *   largest principal angle between the top-k subspace now and at the
 *   previous snapshot, and to a baseline — taken when the model first has
 *   monitor.baseline_rows rows, or set by the `baseline` op.  A `drift`
 *   message goes out when the angle to the baseline first exceeds
 *   monitor.drift_degrees, and again when it falls back below.
 *   Replayed blocks are not scored (ingest.c): they were judged when they
 *   arrived.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isvdd.h"
#include "limits.h"
#include "loop.h"
#include "metrics.h"
#include "query.h"

/* The query thread's copy of the figures info reports. */
static void tell_query(struct isvdd *srv)
{
	const struct mon_state *s = &srv->mon;
	const struct qry_monitor m = { s->rows_flagged, s->messages, s->messages_dropped,
	                               s->base_k ? s->base_seq : 0, s->drift_prev_deg,
	                               s->drift_base_deg };
	if (srv->qry)
		qry_set_monitor(srv->qry, &m);
	met_monitor(srv->met, s->rows_flagged, s->messages, s->messages_dropped, s->drift_prev_deg,
	            s->drift_base_deg);
}

void mon_block_limits(const struct cfg *cfg, uint64_t rows_before, const struct isvd_tail *t,
                      struct ing_batch *b)
{
	struct mon_limits lim;

	mon_tail_limits(cfg, rows_before, t, &lim);
	b->spe_limit = lim.spe;
	b->t2_limit = lim.t2;
}

/* May one more `anomaly` message go now? */
static bool take_token(struct isvdd *srv, uint64_t now)
{
	struct mon_state *s = &srv->mon;
	const double cap = (double)srv->cfg->monitor.anomaly_max_per_s;

	if (s->tokens_ms == 0) {
		s->tokens = cap;
	} else if (now > s->tokens_ms) {
		s->tokens += cap * (double)(now - s->tokens_ms) / 1000.0;
		if (s->tokens > cap)
			s->tokens = cap;
	}
	s->tokens_ms = now;
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

void mon_after_block(struct isvdd *srv, const struct ing_batch *b)
{
	struct mon_state *s = &srv->mon;
	size_t n = 0;

	for (size_t i = 0; i < b->nacks; i++) {
		const struct ing_ack *a = &b->acks[i];
		if (a->rows == 0 || a->err || a->duplicate)
			continue;
		for (size_t j = 0; j < a->rows; j++)
			n += b->spe[a->row0 + j] > b->spe_limit || b->t2[a->row0 + j] > b->t2_limit;
	}
	if (n == 0)
		return;
	s->rows_flagged += n;
	if (!srv->publish || !take_token(srv, loop_now_ms())) {
		s->messages_dropped++;
		s->rows_dropped += n;
		tell_query(srv);
		return;
	}
	struct isvd_proto_anomaly msg = { 0 };
	msg.seq.v = malloc(n * sizeof *msg.seq.v);
	msg.spe.v = malloc(n * sizeof *msg.spe.v);
	msg.t2.v = malloc(n * sizeof *msg.t2.v);
	uint8_t *out = NULL;
	size_t len = 0;
	if (msg.seq.v && msg.spe.v && msg.t2.v) {
		for (size_t i = 0; i < b->nacks; i++) {
			const struct ing_ack *a = &b->acks[i];
			if (a->rows == 0 || a->err || a->duplicate)
				continue;
			for (size_t j = 0; j < a->rows; j++) {
				const double spe = b->spe[a->row0 + j], t2 = b->t2[a->row0 + j];
				if (!(spe > b->spe_limit || t2 > b->t2_limit))
					continue;
				msg.seq.v[msg.seq.n++] = a->seq - a->rows + 1 + j;
				msg.spe.v[msg.spe.n++] = spe;
				msg.t2.v[msg.t2.n++] = t2;
			}
		}
		msg.spe_limit = b->spe_limit;
		msg.t2_limit = b->t2_limit;
		msg.t = loop_unix_time();
	}
	if (msg.seq.v && msg.spe.v && msg.t2.v && isvd_proto_anomaly_encode(&msg, &out, &len) == 0) {
		pub_send(srv, ISVD_PROTO_TOPIC_ANOMALY, out, len);
		s->messages++;
	} else {
		log_msg(srv->log, CFG_LOG_WARN, "anomaly message for %zu rows not sent: out of memory", n);
		s->messages_dropped++;
		s->rows_dropped += n;
	}
	free(out);
	free(msg.seq.v);
	free(msg.spe.v);
	free(msg.t2.v);
	tell_query(srv);
}

/* The model's top-k Vᵀ into *vt (kmax × dim, allocated on first use);
 * *k its rows.  -1 on failure. */
static int take_vt(struct isvdd *srv, double **vt, size_t *k)
{
	if (!*vt && !(*vt = malloc((srv->kmax ? srv->kmax : 1) * srv->dim * sizeof **vt)))
		return -1;
	return isvd_model_factors(srv->model, NULL, *vt, NULL, k) == ISVD_OK ? 0 : -1;
}

/* Degrees of the largest principal angle between a and b (k rows each);
 * NAN when they differ in rank or the angle cannot be had. */
static double angle_deg(const double *a, size_t ka, const double *b, size_t kb, size_t n)
{
	double s;

	if (ka == 0 || ka != kb || isvd_subspace_sin(a, b, ka, n, &s) != ISVD_OK)
		return NAN;
	return asin(s) * 180.0 / M_PI;
}

int mon_set_baseline(struct isvdd *srv)
{
	struct mon_state *s = &srv->mon;

	if (!srv->model || srv->seq == 0 || take_vt(srv, &s->base_vt, &s->base_k))
		return -1;
	s->base_seq = srv->seq;
	s->drifting = false;
	s->drift_base_deg = 0;
	tell_query(srv);
	return 0;
}

int mon_on_baseline_request(void *ctx, uint64_t *seq, char *why, size_t cap)
{
	struct isvdd *srv = ctx;

	if (!srv->cfg->monitor.enabled) {
		snprintf(why, cap, "monitoring is off (monitor.enabled: false)");
		return -1;
	}
	ing_drain(srv);   /* every acknowledged push is in the baseline */
	if (mon_set_baseline(srv)) {
		snprintf(why, cap, srv->seq ? "out of memory" : "the model has seen no rows yet");
		return -1;
	}
	*seq = srv->seq;
	log_msg(srv->log, CFG_LOG_INFO, "drift baseline set at row %llu by a `baseline` request",
	        (unsigned long long)srv->seq);
	return 0;
}

void mon_on_spectrum(struct isvdd *srv)
{
	struct mon_state *s = &srv->mon;
	const struct cfg *cfg = srv->cfg;
	double *now = NULL;
	size_t k = 0;

	if (!cfg->monitor.enabled || !srv->model || srv->seq == 0)
		return;
	const uint64_t at = cfg->monitor.baseline_rows ? cfg->monitor.baseline_rows : mon_warmup(cfg);
	if (s->base_k == 0 && srv->seq >= at && mon_set_baseline(srv))
		log_msg(srv->log, CFG_LOG_WARN, "the drift baseline could not be taken: out of memory");
	if (take_vt(srv, &now, &k)) {
		free(now);
		return;
	}
	s->drift_prev_deg = s->prev_k ? angle_deg(s->prev_vt, s->prev_k, now, k, srv->dim) : NAN;
	s->drift_base_deg = s->base_k ? angle_deg(s->base_vt, s->base_k, now, k, srv->dim) : NAN;
	free(s->prev_vt);
	s->prev_vt = now;
	s->prev_k = k;
	tell_query(srv);
	if (!isfinite(s->drift_base_deg))
		return;
	const bool over = s->drift_base_deg > cfg->monitor.drift_degrees;
	if (over == s->drifting)
		return;
	s->drifting = over;
	struct isvd_proto_drift d = { srv->seq, s->drift_base_deg, cfg->monitor.drift_degrees,
	                              s->base_seq, over, loop_unix_time() };
	uint8_t *out = NULL;
	size_t len = 0;
	if (srv->publish && isvd_proto_drift_encode(&d, &out, &len) == 0)
		pub_send(srv, ISVD_PROTO_TOPIC_DRIFT, out, len);
	log_msg(srv->log, over ? CFG_LOG_WARN : CFG_LOG_INFO, "drift: %.2f° from the baseline of row "
	        "%llu, %s monitor.drift_degrees %g", s->drift_base_deg,
	        (unsigned long long)s->base_seq, over ? "over" : "back under",
	        cfg->monitor.drift_degrees);
	free(out);
}

void mon_fini(struct mon_state *mon)
{
	free(mon->base_vt);
	free(mon->prev_vt);
	memset(mon, 0, sizeof *mon);
}
