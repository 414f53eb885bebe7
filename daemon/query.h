/*
 * query.h — isvdd's query thread: it owns the query socket and answers
 * ping, info, project, reconstruct and factors from a snapshot of the
 * model, so that a query never waits for an engine update in progress.
 *
 * After every block the engine thread snapshots the model
 * (qry_view_make(): a read-only isvd_model_snapshot plus seq) and the event
 * loop (ingest.c) publishes it with the ingest rate (qry_publish_view())
 * before that block's pushes are acknowledged, so a query that follows an
 * ack always sees its rows; a checkpoint only moves last_checkpoint_seq
 * (qry_set_checkpoint()).  The `checkpoint` op needs the loop (it flushes
 * and writes storage): the query thread forwards it over an inproc PAIR
 * (qry_ctl_socket()), the loop answers through qry_serve_ctl(), and the
 * thread relays the reply.
 *
 *   query ROUTER ──► query thread ──view (mutex)◄── qry_publish_view() ◄── loop ◄── engine
 *                         └──checkpoint──► PAIR ──► qry_serve_ctl() ─┘
 *
 * Ownership: after qry_start() the query socket belongs to the thread,
 * which closes it when qry_stop() has stopped it.  Views are reference
 * counted; the last holder frees the snapshot.
 */
#ifndef ISVDD_QUERY_H
#define ISVDD_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "isvd_model.h"
#include "log.h"

struct met;
struct qry;
struct rl;

/* What the loop lends the thread for the ops it answers: checkpoint()
 * flushes, checkpoints and returns 0 with *seq, or -1 with a reason in
 * why; baseline() makes the model now the monitor's drift baseline. */
struct qry_hooks {
	void *ctx;
	int (*checkpoint)(void *ctx, uint64_t *seq, char *why, size_t cap);
	int (*baseline)(void *ctx, uint64_t *seq, char *why, size_t cap);
	struct met *met;             /* queries and refusals are counted here (may be NULL) */
	struct rl *rl;               /* info's pushers are read from here (may be NULL) */
};

/* The monitor's figures the loop keeps (monitor.c), as info reports them. */
struct qry_monitor {
	uint64_t rows_flagged, messages, messages_dropped, baseline_seq;
	double drift_prev_deg, drift_baseline_deg;
};
/* Hands the thread the monitor's latest figures (after a block or a
 * spectrum snapshot). */
void qry_set_monitor(struct qry *r, const struct qry_monitor *m);

/* Hands the thread info's `kafka` map (isvd_proto_kafka_encode()'s bytes;
 * ownership moves) of a shard or a merger, which every `info` then
 * carries.  NULL clears it. */
void qry_set_kafka(struct qry *r, uint8_t *map, size_t len);

/* Starts the thread on query_sock (already bound; ownership moves to the
 * thread) in context zctx.  The first view is model (may be NULL) at seq.
 * Returns 0, or -1 after logging why (query_sock is then still the
 * caller's). */
int qry_start(const struct cfg *cfg, struct log_sink *log, void *zctx, void *query_sock,
              const struct qry_hooks *hooks, const struct isvd_model *model, uint64_t seq,
              uint64_t last_checkpoint_seq, struct qry **out);

/* A new view in two steps, so that the engine thread can take the
 * snapshot right after its update and the loop publish it later:
 * qry_view_make() snapshots model (may be NULL) at seq on any thread that
 * owns the model at that moment; NULL with *err (an isvd_err) when it
 * cannot.  qry_publish_view() makes v the current view (ownership moves).
 * qry_view_free() frees a view never published; NULL is a no-op. */
struct qry_view;

/* Tells the thread that a checkpoint covering last_checkpoint_seq rows is
 * durable (info's last_checkpoint_seq), without a new view. */
void qry_set_checkpoint(struct qry *r, uint64_t last_checkpoint_seq);

struct qry_view *qry_view_make(const struct isvd_model *model, uint64_t seq, int *err);
void qry_publish_view(struct qry *r, struct qry_view *v, uint64_t last_checkpoint_seq,
                      double ingest_rows_per_s);
void qry_view_free(struct qry_view *v);

/* The loop's end of the control pair, to poll for ZMQ_POLLIN. */
void *qry_ctl_socket(struct qry *r);

/* Serves the forwarded requests waiting on the control pair (the loop's
 * thread only). */
void qry_serve_ctl(struct qry *r);

/* What the HTTP thread (http.c) shows of the model: figures the query
 * thread computes from its current view on request, so that the view's
 * snapshot keeps one reader (a snapshot's readers must be serialised:
 * update/isvd_model.h) and ingest is never involved. */
struct qry_summary {
	uint64_t gen;                /* the view it describes (views count from 1); 0: none */
	uint64_t seq;                /* rows in that view */
	bool have_model;             /* false until the dimension is known */
	struct isvd_info info;       /* when have_model */
	size_t nsigma;               /* σ reported, non-increasing */
	double sigma[ISVD_MAX_RANK];
};

/* Copies the summary of the current view into *out, first asking the query
 * thread for a fresh one when the view changed since the last, and waiting
 * for it at most wait_ms (a query thread busy with a long query leaves the
 * older summary).  Any thread; returns 0, or -1 when no summary exists yet
 * (*out then has gen 0). */
int qry_summary(struct qry *r, struct qry_summary *out, int wait_ms);

/* From now on the thread answers the query socket (requests that came
 * since qry_start() waited in it): called when the daemon is wholly up,
 * so that nobody — a ping's "ready" included — is answered by a daemon
 * whose roles (a Kafka shard's or merger's) are not in place yet. */
void qry_serve(struct qry *r);

/* Stops and joins the thread, frees everything.  qry_stop(NULL) is a no-op. */
void qry_stop(struct qry *r);

#endif /* ISVDD_QUERY_H */
