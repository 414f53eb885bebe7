/*
 * publish.c — the snapshots isvdd sends on its PUB socket: `spectrum`
 * (sigma, rows seen, explained energy) and `factors` (the `factors`
 * reply), each under its topic (protocol/PROTOCOL.md), and their timers.
 *
 * DESIGN
 *   Snapshots read the live model on the loop thread, so each first waits
 *   for the block in the engine (ing_engine_finish()).  A timer fires every
 *   publish.spectrum_every_ms / factors_every_ms and sends only when the
 *   model moved since the last snapshot (or none was sent yet); the
 *   spectrum is also sent after a block once publish.spectrum_every_rows
 *   rows came.  Sends never block: a full PUB queue drops the snapshot
 *   (logged at debug), as PUB would for a slow subscriber anyway.
 *
 * INVARIANTS
 *   spectrum_seq / factors_seq is the seq of the last snapshot sent (when
 *   spectrum_sent / factors_sent); nothing is sent before the first row.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "isvdd.h"
#include "loop.h"
#include "metrics.h"

void pub_send(struct isvdd *srv, const char *topic, const uint8_t *body, size_t len)
{
	if (zmq_send(srv->publish, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(srv->publish, body, len, ZMQ_DONTWAIT) < 0)
		log_msg(srv->log, CFG_LOG_DEBUG, "%s snapshot not sent: %s", topic, zmq_strerror(errno));
	else
		met_snapshot(srv->met, strcmp(topic, ISVD_PROTO_TOPIC_SPECTRUM) ? 1 : 0);
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
	s.t = loop_unix_time();
	s.has_gaps = true;
	s.rows_with_gaps = info.rows_with_gaps - srv->gap_rows0;
	s.values_imputed = info.values_imputed - srv->gap_values0;
	struct isvd_proto_vec stable = { 0 };
	if (srv->cfg->monitor.enabled &&
	    rpl_stability_vecs(srv->model, NULL, &stable) == ISVD_PROTO_OK) {
		mon_on_spectrum(srv);
		s.has_monitor = true;
		s.drift_prev_deg = srv->mon.drift_prev_deg;
		s.drift_baseline_deg = srv->mon.drift_base_deg;
		s.stable = stable;
	}
	if (isvd_proto_spectrum_encode(&s, &out, &len) == 0)
		pub_send(srv, ISVD_PROTO_TOPIC_SPECTRUM, out, len);
	free(out);
	free(stable.v);
	srv->spectrum_seq = srv->seq;
	srv->spectrum_sent = true;
}

static void publish_factors(struct isvdd *srv)
{
	struct isvd_proto_reply rep;
	uint8_t *out = NULL;
	size_t len = 0;
	int code;

	if (!srv->model || srv->seq == 0)
		return;
	memset(&rep, 0, sizeof rep);
	rep.op = ISVD_OP_FACTORS;
	rep.ok = true;
	rep.seq = srv->seq;
	code = rpl_factors(srv->model, srv->cfg->model.center, &rep);
	if (code == ISVD_PROTO_OK && srv->cfg->monitor.enabled)
		code = rpl_stability(srv->model, &rep);
	if (code == ISVD_PROTO_NOMEM)
		log_msg(srv->log, CFG_LOG_ERROR, "factors: %s", strerror(ENOMEM));
	if (code == ISVD_PROTO_OK && isvd_proto_reply_encode(&rep, &out, &len) == 0)
		pub_send(srv, ISVD_PROTO_TOPIC_FACTORS, out, len);
	free(out);
	rpl_factors_free(&rep);
	srv->factors_seq = srv->seq;
	srv->factors_sent = true;
}

void pub_on_spectrum_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;

	ing_engine_finish(srv);
	if (!srv->spectrum_sent || srv->seq != srv->spectrum_seq)
		publish_spectrum(srv);
}

void pub_on_factors_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;

	ing_engine_finish(srv);
	if (!srv->factors_sent || srv->seq != srv->factors_seq)
		publish_factors(srv);
}

void pub_after_block(struct isvdd *srv)
{
	const uint64_t every = srv->cfg->publish.spectrum_every_rows;

	if (every && srv->seq - srv->spectrum_seq >= every)
		publish_spectrum(srv);
}
