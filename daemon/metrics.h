/*
 * metrics.h — isvdd's counters, gauges and histograms, updated where the
 * events happen and read by the HTTP thread (http.c), which renders them in
 * Prometheus's text format (met_render()) and draws the status page from
 * them (status.c).
 *
 * Every figure is a C11 atomic updated with relaxed order: the writers
 * (the loop thread, the engine thread, the query thread) never take a lock
 * and never wait for a reader, and a reader sees each figure whole but not
 * all of them at one instant (a scrape between a push's rows and its ack
 * counts may see one and not yet the other).  A struct met is owned by the
 * server (struct isvdd) and lent to the units that count; every updating
 * function accepts NULL (nothing counted), so units and their tests need
 * no registry.
 *
 * What is not counted here is read at render time: the model's figures
 * (σ, explained energy, …) from the query thread's summary of its view
 * (qry_summary()), and the storage state through the gauges storage.c
 * sets.
 *
 * INVARIANTS
 *   Counters only grow.  A histogram's buckets are cumulative only when
 *   rendered: each holds the observations at or below its bound and above
 *   the previous one; count is their sum plus those above the last bound.
 */
#ifndef ISVDD_METRICS_H
#define ISVDD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct met;
struct qry_summary;

/* The server's phase, for /healthz and the status page. */
enum met_phase { MET_RECOVERING, MET_SERVING, MET_STOPPING };

/* Which socket a refusal was sent on. */
enum met_socket { MET_INGEST, MET_QUERY, MET_SOCKETS_ };

/* The ingest-rate ring: rows acknowledged per MET_RATE_SLOT_MS, the last
 * MET_RATE_SLOTS of them (an hour). */
#define MET_RATE_SLOT_MS 10000u
#define MET_RATE_SLOTS   360u

/* A registry with every figure at zero, in phase MET_RECOVERING.  NULL when
 * out of memory.  met_destroy(NULL) is a no-op. */
struct met *met_create(void);
void met_destroy(struct met *m);

/* The server's phase (start: recovering; then serving; stopping). */
void met_set_phase(struct met *m, enum met_phase phase);
enum met_phase met_phase(const struct met *m);

/* --- ingest (the loop thread; the fold on the engine thread) */
/* One request on the ingest socket, answered or refused. */
void met_push(struct met *m);
/* A refusal with wire code code (an isvd_proto_err) on socket s. */
void met_refusal(struct met *m, enum met_socket s, int code);
/* A push acknowledged: rows applied (0 for a duplicate), at now_ms (the
 * loop's clock) for the rate ring. */
void met_acked(struct met *m, uint64_t rows, bool duplicate, uint64_t now_ms);
/* A block handed to the engine, and how long its fold took. */
void met_block(struct met *m, uint64_t rows);
void met_fold(struct met *m, uint64_t ns);

/* --- queries (the query thread) */
/* One query of op (an isvd_proto_op) answered or refused in ns. */
void met_query(struct met *m, int op, uint64_t ns);

/* --- storage (the loop thread, storage.c) */
void met_fsync(struct met *m, uint64_t ns);
/* Storage entered the failed state (why is copied), or left it. */
void met_storage_failed(struct met *m, const char *why);
void met_storage_healthy(struct met *m);
/* Whether storage is failed, with the reason copied into why. */
bool met_storage_state(struct met *m, char *why, size_t cap);
/* A checkpoint covering seq rows became durable at now_ms (loop clock);
 * also called at start with the checkpoint recovery loaded. */
void met_checkpoint(struct met *m, uint64_t seq, uint64_t now_ms);
/* The write-ahead log's size on disk: bytes in segments, segments. */
void met_log_size(struct met *m, uint64_t bytes, uint64_t segments);

/* --- the rest (the loop thread) */
/* A snapshot sent on the PUB socket; topic 0 = spectrum, 1 = factors. */
void met_snapshot(struct met *m, int topic);
/* A CURVE client admitted or refused on socket role (enum sec_role). */
void met_curve(struct met *m, int role, bool admitted);
/* Connections open on the three sockets now, and handshakes refused since
 * start by limits.max_connections_per_address and limits.max_connections
 * (conncap.c). */
void met_connections(struct met *m, uint64_t open, uint64_t refused_per_address,
                     uint64_t refused_total);
/* The per-pusher table (ratelimit.c) met_render() reads its counters from;
 * set once, before the HTTP thread renders (NULL: none). */
struct rl;
void met_set_pushers(struct met *m, struct rl *rl);
/* The monitor's figures (monitor.c), as they stand: rows flagged, anomaly
 * messages sent and dropped, the drift angles in degrees (NaN: none). */
void met_monitor(struct met *m, uint64_t flagged, uint64_t sent, uint64_t dropped,
                 double drift_prev_deg, double drift_baseline_deg);

/* --- readers (the HTTP thread) */
/* Rows acknowledged per second in each of the last n < MET_RATE_SLOTS
 * whole slots before the one now_ms is in, oldest first; a slot nobody
 * wrote is 0. */
void met_rate(const struct met *m, uint64_t now_ms, double *rows_per_s, size_t n);
/* Totals for the status page. */
struct met_totals {
	uint64_t rows, pushes, duplicates, refusals, queries, blocks, storage_failures;
	uint64_t log_bytes, log_segments, checkpoint_seq, checkpoint_ms, snapshots;
	bool have_checkpoint;
	bool monitored;              /* met_monitor() was called: monitoring is on */
	uint64_t rows_flagged;
	double drift_prev_deg, drift_baseline_deg;
};
void met_totals(const struct met *m, struct met_totals *t);

/* What met_render() shows besides the registry. */
struct met_info {
	const char *version;         /* build */
	int protocol;
	const char *mode;            /* the model's update strategy ("auto" before it exists) */
	uint64_t now_ms;             /* the loop's clock, now */
	uint64_t start_ms;           /* when the server started */
	const struct qry_summary *model;   /* NULL while recovering */
};

/* v in the fewest significant digits (15 to 17) that read back as v, in
 * buf (32 bytes suffice); returns buf. */
const char *met_shortest(double v, char *buf, size_t cap);

/* Writes every metric in the Prometheus text exposition format 0.0.4 (HELP
 * and TYPE lines, then the samples) to out. */
void met_render(struct met *m, const struct met_info *in, FILE *out);

#endif /* ISVDD_METRICS_H */
