/*
 * isvdd.h — the state of a running daemon (struct isvdd), shared by the
 * units of its loop thread, and what each of them offers the others:
 *
 *   server.c   wiring: sockets, threads, the loop and its registrations
 *   ingest.c   pushes: validate → dedup → enqueue, batches, flush to the engine
 *   publish.c  the `spectrum` and `factors` snapshots on the PUB socket
 *   monitor.c  monitoring: rows flagged on `anomaly`, drift to a baseline
 *   recover.c  start-up recovery (storage's hooks) and checkpoints
 *   notify.c   what the service manager is told (sd_notify), and when
 *   kafka*.c   with a kafka section, a shard or a merger instead of ingest (kafka.h)
 *
 * Nothing here is for main.c or the query thread (server.h, query.h).
 *
 * INVARIANTS
 *   srv->seq == isvd_model_rows_seen(srv->model) whenever srv->fly is NULL
 *   (no block in the engine); while one is, the model and *srv->fly are the
 *   engine thread's.  srv->logged >= srv->seq: rows logged since the last
 *   checkpoint's seq (the next record's first_seq - 1).  A batch's rows
 *   hold nrows × dim values, the rows of its acks with rows > 0, in ack
 *   order.  The fill batch holds at most limits.max_pending_pushes acks
 *   (one more first flushes it), so the ack queue holds at most that many
 *   gathering plus the block in the engine.  kmax = min(model.rank, dim).
 */
#ifndef ISVDD_ISVDD_H
#define ISVDD_ISVDD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "config.h"
#include "dedup.h"
#include "isvd_model.h"
#include "isvd_proto.h"
#include "log.h"
#include "notify.h"
#include "reply.h"
#include "storage.h"
#include "wal.h"

#define SRV_POLL_MAX_MS  250    /* longest poll, so a signal is seen promptly */

struct ing_ack {                 /* a push answered after the next flush */
	zmq_msg_t env[RPL_MAX_FRAMES];
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
	size_t row0;                 /* its first row's index in the batch's rows */
	bool scores;                 /* the push asked for spe and t2 in its ack */
	int err;                     /* set by the flush when the push is refused */
	char *errmsg;                /* owned */
};

/* Pushes gathered into one engine block.  The loop fills one batch
 * (srv->fill) while the engine thread applies the other (srv->fly). */
struct ing_batch {
	double *rows;                /* the rows of the acks with rows > 0, in ack order; ld = dim */
	size_t nrows, cap;           /* cap in rows */
	struct ing_ack *acks;
	size_t nacks, acks_cap;
	/* written by the engine thread, read after wrk_wait() */
	uint64_t seq_after;          /* rows in the model after the block */
	struct qry_view *view;       /* the query thread's next view, or NULL */
	int view_err;                /* why view is NULL when one was wanted (an isvd_err) */
	/* monitoring (monitor.enabled; NULL otherwise): per row of rows, its
	 * SPE and T² against the model before the block, and the limits then
	 * (INFINITY during warm-up: nothing is flagged) */
	double *spe, *t2;            /* cap values each */
	double spe_limit, t2_limit;
	bool scored;                 /* spe and t2 hold this block's scores */
};

/* Monitoring's state (monitor.c), the loop thread's. */
struct mon_state {
	double tokens;               /* `anomaly` messages that may go now (≤ max_per_s) */
	uint64_t tokens_ms;          /* when tokens was last refilled */
	uint64_t rows_flagged, messages, messages_dropped, rows_dropped;
	double *base_vt, *prev_vt;   /* kmax × dim: the drift baseline and last spectrum's */
	size_t base_k, prev_k;       /* their rows (0: none yet) */
	uint64_t base_seq;
	double drift_prev_deg, drift_base_deg;   /* NAN until measured */
	bool drifting;               /* the angle to the baseline is over drift_degrees */
};

struct isvdd {
	const struct cfg *cfg;
	struct log_sink *log;
	void *zctx, *ingest, *query, *publish;
	struct isvd_proto_limits lim;
	struct loop *loop;           /* the loop thread's pollables and timers (loop.c) */
	int t_flush, t_spectrum, t_factors, t_storage, t_report;   /* timer ids; -1: none */

	struct isvd_model *model;    /* NULL until the dimension is known */
	size_t dim, kmax;            /* kmax = min(rank, dim) */
	uint64_t seq;                /* rows in the model when no block is in flight */
	uint64_t logged;             /* rows in the log records since the last checkpoint's seq */

	struct ing_batch batch[2];
	struct ing_batch *fill;      /* gathering pushes: batch[0] or batch[1] */
	struct ing_batch *fly;       /* the other while the engine applies it, else NULL */
	struct wrk *engine;          /* the engine thread (NULL during recovery) */

	struct dup_table dup;        /* (client, batch) pushes applied (dedup.c) */

	uint64_t spectrum_seq, factors_seq;  /* seq of the last published snapshot */
	bool spectrum_sent, factors_sent;

	uint64_t start_ms;
	uint64_t rate_ms[2], rate_seq[2];    /* [0] older mark, [1] newer mark */
	/* the engine's gap counters when serving began (after recovery): info
	 * and spectrum report the counts since start as the difference */
	uint64_t gap_rows0, gap_values0;
	bool warned_gap_replay;      /* recovery: the lifted-imputation warning was logged */

	struct sto *sto;             /* storage.dir; NULL only inside srv_create() */
	uint64_t blocks;             /* flushes that answered pushes, ever */
	struct qry *qry;             /* the query thread; NULL until srv_create() starts it */
	struct wal_push *wal_push;   /* the log record's scratch, wal_push_cap entries */
	size_t wal_push_cap;

	struct mon_state mon;        /* monitor.enabled (monitor.c) */
	struct sec *sec;             /* CURVE keys and the ZAP handler (security.c) */
	struct cc *cc;               /* open connections and their caps (conncap.c) */
	struct gate *gate;           /* the thread serving ZAP and the monitors (gate.c), or NULL */
	struct rl *rl;               /* per-pusher rate limits and counters (ratelimit.c) */
	uint64_t early_flushes;      /* flushes forced by limits.max_pending_pushes */
	uint64_t reported[5];        /* at the last summary: refused requests, CURVE refusals, early
	                                flushes, rate-limited pushes, capped handshakes */

	struct met *met;             /* counters, gauges and histograms (metrics.c) */
	struct http *http;           /* /metrics, /status, /healthz (http.c); NULL when off */
	struct ntf ntf;              /* the service manager (notify.c); inert when not supervised */
	uint64_t ntf_progress_ms;    /* the last recovery progress sent; 0: none yet */

	struct kfk *kafka;           /* a shard or a merger (kafka.h); NULL without a kafka section */
	bool failed;                 /* a fatal error (logged): srv_run() stops, exit code 1 */
};

/* ---------------------------------------------------------- ingest.c */

/* Creates the model of dimension dim and reserves the batches for it.
 * An isvd_err (logged). */
int ing_make_model(struct isvdd *srv, size_t dim);
/* A new empty model of dimension dim with the configuration's model.*
 * (*out, the caller's).  An isvd_err (logged). */
int ing_new_model(const struct cfg *cfg, struct log_sink *log, size_t dim, struct isvd_model **out);
/* Applies to m, a loaded model, the settings a saved image does not carry
 * (model.threads, model.missing); what cannot be applied is logged. */
void ing_model_settings(const struct cfg *cfg, struct log_sink *log, struct isvd_model *m);
/* Rows per second (of srv->seq) over the last 10 to 20 s: two marks,
 * moved every 10 s. */
double ing_rate(struct isvdd *srv, uint64_t now_ms);
/* Adopts m (ownership moves; the old model is destroyed) as the model. */
void ing_adopt_model(struct isvdd *srv, struct isvd_model *m);
/* Pollable: the ingest socket (a burst of pushes, then a flush). */
void ing_on_readable(void *srv);
/* Timer: batching.max_delay_ms after the fill batch's first push. */
void ing_on_flush_timer(void *srv, uint64_t now_ms);
/* worker.h's job: the engine thread's half of a block. */
void ing_engine_job(void *srv, void *batch);
/* Waits for the block in the engine, if any, and finishes it (view,
 * duplicate table, acks); the engine is idle afterwards. */
void ing_engine_finish(struct isvdd *srv);
/* Flushes the fill batch and waits for the engine: everything gathered is
 * applied and answered, and the model may be read or written. */
void ing_drain(struct isvdd *srv);
/* Rebuilds and applies the batch a log record holds, exactly as the engine
 * thread applied it live.  0, or -1 with why. */
int ing_replay_block(struct isvdd *srv, const struct wal_block *b, char *why, size_t cap);
/* Frees both batches (their unanswered acks dropped). */
void ing_fini(struct isvdd *srv);

/* --------------------------------------------------------- monitor.c */

/* Engine thread, after a block was scored: the control limits of the
 * model it was scored against (its tail figures, which the engine found
 * with its scores, and the rows it had seen), into b (INFINITY while
 * fewer than the warm-up rows were seen). */
void mon_block_limits(const struct cfg *cfg, uint64_t rows_before, const struct isvd_tail *t,
                      struct ing_batch *b);
/* Loop, after a block's seq are known: counts its rows over a limit and
 * publishes them on `anomaly` (rate-limited). */
void mon_after_block(struct isvdd *srv, const struct ing_batch *b);
/* Loop, with a spectrum snapshot: the angles to the previous snapshot's
 * subspace and to the baseline (taken at monitor.baseline_rows if not set),
 * and a `drift` message when the latter crosses monitor.drift_degrees. */
void mon_on_spectrum(struct isvdd *srv);
/* The `baseline` op: the current subspace becomes the baseline.  0, or -1
 * (out of memory, no model). */
int mon_set_baseline(struct isvdd *srv);
/* query.h's baseline hook: drains the engine, then mon_set_baseline(). */
int mon_on_baseline_request(void *srv, uint64_t *seq, char *why, size_t cap);
void mon_fini(struct mon_state *mon);

/* --------------------------------------------------------- publish.c */

/* Sends one message (topic, body) on the PUB socket, never blocking. */
void pub_send(struct isvdd *srv, const char *topic, const uint8_t *body, size_t len);
/* Timers: the periodic snapshots, each sent only when the model moved. */
void pub_on_spectrum_timer(void *srv, uint64_t now_ms);
void pub_on_factors_timer(void *srv, uint64_t now_ms);
/* After a block: the spectrum when publish.spectrum_every_rows rows came. */
void pub_after_block(struct isvdd *srv);

/* --------------------------------------------------------- recover.c */

/* Whether the model (options o) of a checkpoint, a --seed image or a
 * Kafka changelog image (source) is another model than the configuration
 * describes; if so why says which key and how to proceed. */
enum { REC_CHECKPOINT, REC_SEED, REC_CHANGELOG };
bool rec_model_differs(const struct cfg *cfg, const struct isvd_options *o, int source,
                       char *why, size_t cap);
/* Storage's hooks for sto_open(): load a checkpoint, replay a record. */
struct sto_hooks rec_hooks(struct isvdd *srv);
/* Writes a checkpoint of everything acknowledged so far (draining first).
 * 0, or -1 with storage failed (logged by storage.c). */
int rec_checkpoint(struct isvdd *srv);
/* isvdd --seed: when recovery found no rows in storage.dir, makes the model
 * in path (an engine image, or a checkpoint's image) the model and writes
 * it as a checkpoint.  0, or -1 (logged): the directory holds a model, the
 * file is unreadable or damaged, or its model is not the configuration's. */
int rec_seed(struct isvdd *srv, const char *path);
/* The query thread's `checkpoint` op (qry_hooks.checkpoint). */
int rec_on_checkpoint_request(void *srv, uint64_t *seq, char *why, size_t cap);
/* Timer, and after every burst: the interval fsync, storage's retry and
 * due checkpoints; re-arms itself for storage's next deadline. */
void rec_on_storage_timer(void *srv, uint64_t now_ms);

/* ---------------------------------------------------------- notify.c */

/* The status and watchdog timers (at now), when a service manager listens.
 * 0, or -1 when the timer table is full. */
int ntf_add_timers(struct isvdd *srv, uint64_t now_ms);
/* READY=1 with STATUS=serving: rank, rows, dim (and a storage failure). */
void ntf_ready(struct isvdd *srv);
/* RELOADING=1 with MONOTONIC_USEC, before SIGHUP's work; ntf_ready() after. */
void ntf_reloading(struct isvdd *srv);
/* STOPPING=1, before the final drain and checkpoint. */
void ntf_stopping(struct isvdd *srv);
/* During recovery, at most once a second: STATUS=recovering and the rows
 * so far, with EXTEND_TIMEOUT_USEC so a replay that progresses outlives
 * TimeoutStartSec and a stuck one does not. */
void ntf_recovering(struct isvdd *srv);

#endif /* ISVDD_ISVDD_H */
