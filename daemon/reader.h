/*
 * reader.h — isvdd's query thread: it owns the query socket and answers
 * ping, info, project, reconstruct and factors from a snapshot of the
 * model, so that a query never waits for an engine update in progress.
 *
 * The event loop (server.c) publishes a new view — a read-only snapshot of
 * the model (isvd_model_snapshot) plus seq, the last checkpoint and the
 * ingest rate — after every block and before that block's pushes are
 * acknowledged, so a query that follows an ack always sees its rows.  The
 * `checkpoint` op needs the loop (it flushes and writes storage): the query
 * thread forwards it over an inproc PAIR (rdr_ctl_socket()), the loop
 * answers through rdr_serve_ctl(), and the thread relays the reply.
 *
 *   query ROUTER ──► reader thread ──view (mutex)◄── rdr_publish() ◄── loop
 *                         └──checkpoint──► PAIR ──► rdr_serve_ctl() ─┘
 *
 * Ownership: after rdr_start() the query socket belongs to the thread,
 * which closes it when rdr_stop() has stopped it.  Views are reference
 * counted; the last holder frees the snapshot.
 */
#ifndef ISVDD_READER_H
#define ISVDD_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "isvd_model.h"
#include "log.h"

struct rdr;

/* What the loop lends the thread for the checkpoint op: do() flushes,
 * checkpoints and returns 0 with *seq, or -1 with a reason in why. */
struct rdr_hooks {
	void *ctx;
	int (*checkpoint)(void *ctx, uint64_t *seq, char *why, size_t cap);
};

/* Starts the thread on query_sock (already bound; ownership moves to the
 * thread) in context zctx.  The first view is model (may be NULL) at seq.
 * Returns 0, or -1 after logging why (query_sock is then still the
 * caller's). */
int rdr_start(const struct cfg *cfg, struct srv_log *log, void *zctx, void *query_sock,
              const struct rdr_hooks *hooks, const struct isvd_model *model, uint64_t seq,
              uint64_t last_checkpoint_seq, struct rdr **out);

/* Publishes a new view (snapshot of model, which may be NULL).  Returns 0,
 * or -1 when the snapshot could not be made (logged; the old view stays). */
int rdr_publish(struct rdr *r, const struct isvd_model *model, uint64_t seq,
                uint64_t last_checkpoint_seq, double ingest_rows_per_s);

/* The same in two steps, so that the engine thread can take the snapshot
 * right after its update and the loop publish it later:
 * rdr_view_make() snapshots model (may be NULL) at seq on any thread that
 * owns the model at that moment; NULL with *err (an isvd_err) when it
 * cannot.  rdr_publish_view() makes v the current view (ownership moves).
 * rdr_view_free() frees a view never published; NULL is a no-op. */
struct rdr_view;
struct rdr_view *rdr_view_make(const struct isvd_model *model, uint64_t seq, int *err);
void rdr_publish_view(struct rdr *r, struct rdr_view *v, uint64_t last_checkpoint_seq,
                      double ingest_rows_per_s);
void rdr_view_free(struct rdr_view *v);

/* The loop's end of the control pair, to poll for ZMQ_POLLIN. */
void *rdr_ctl_socket(struct rdr *r);

/* Serves the forwarded requests waiting on the control pair (the loop's
 * thread only). */
void rdr_serve_ctl(struct rdr *r);

/* Stops and joins the thread, frees everything.  rdr_stop(NULL) is a no-op. */
void rdr_stop(struct rdr *r);

#endif /* ISVDD_READER_H */
