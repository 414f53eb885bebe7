/*
 * storage.h — isvdd's durable storage under storage.dir: recovery at start,
 * the write-ahead log on the ingest path, checkpoints, pruning, and the
 * fail-stop state after an I/O error.
 *
 * The state machine of an accepted push, and the function behind each step:
 *
 *     pending rows ──sto_log_block()──► log record (fsync per storage.fsync)
 *        ──(ingest.c) engine update──► model ──(ingest.c) ack──► client
 *     model ──sto_checkpoint()──► checkpoint file ──► older files pruned
 *     start ──sto_open()──► newest valid checkpoint ──► log replayed after it
 *
 * storage.c owns the files; the daemon owns the model and the duplicate
 * table and lends them through struct sto_hooks (recover.c).  A storage
 * error (a failed write, fsync, rename, or segment creation) puts storage
 * in the failed state: it refuses to log (so the daemon refuses pushes
 * with UNAVAILABLE and the reason) until a checkpoint of the whole model
 * succeeds, which the daemon retries every second (sto_checkpoint_due()).
 * Nothing is ever retried as if a failed fsync had succeeded.
 */
#ifndef ISVDD_STORAGE_H
#define ISVDD_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"
#include "config.h"
#include "log.h"
#include "wal.h"

/* isvdd's exit codes for storage problems at start (see `isvdd --help`). */
#define STO_EXIT_CORRUPT  3   /* a corrupt record or file that needs --repair or a person */
#define STO_EXIT_UNUSABLE 4   /* storage.dir cannot be created, opened or locked */

/* What the server lends to recovery.  Each returns 0, or -1 with a reason
 * in why: load -1 means "this checkpoint is unusable, try an older one";
 * load -2 means the checkpoint is fine but does not match the configuration
 * (fatal).  On failure neither may have changed the server's state. */
struct sto_hooks {
	void *ctx;
	int (*load)(void *ctx, const struct ckpt *c, char *why, size_t cap);
	int (*apply)(void *ctx, const struct wal_block *b, char *why, size_t cap);
	struct met *met;   /* where storage counts fsyncs, failures, the log's size (may be NULL) */
};

struct met;
struct sto;

/* Creates storage.dir if needed, locks it, and recovers: loads the newest
 * valid checkpoint through h->load and replays the log after it through
 * h->apply.  repair: drop a corrupt record and everything after it (kept
 * aside as *.corrupt files) instead of refusing.  Returns 0 and *out, or an
 * exit code for main() (1: e.g. the stored model does not match the
 * configuration; STO_EXIT_*), having logged why. */
int sto_open(const struct cfg *cfg, struct log_sink *log, bool repair, const struct sto_hooks *h,
             struct sto **out);

/* Appends one block (b->lsn is assigned here) and makes it as durable as
 * storage.fsync promises before returning 0.  -1: not logged, storage is
 * now failed (sto_failed() says why); the caller must not apply the block. */
int sto_log_block(struct sto *s, struct wal_block *b);

/* Whether storage is failed; *why (may be NULL) receives the reason. */
bool sto_failed(const struct sto *s, const char **why);

/* Whether a checkpoint should be written now: rows or seconds since the
 * last one reached their setting, or storage is failed and a retry is due. */
bool sto_checkpoint_due(const struct sto *s, uint64_t seq, uint64_t now_ms);

/* Writes a checkpoint of the model (image of model_len bytes, NULL when
 * there is no model yet) at seq, with the serialized duplicate table, then
 * starts a new log segment and prunes what the checkpoint makes
 * unnecessary.  Returns 0 (storage healthy again if it was failed) or -1
 * (failed; logged).  A checkpoint at the seq and lsn of the last one is a
 * no-op. */
int sto_checkpoint(struct sto *s, uint64_t seq, const uint8_t *model, size_t model_len,
                   const uint8_t *clients, size_t clients_len);

/* Seq of the last durable checkpoint (0: none). */
uint64_t sto_last_checkpoint_seq(const struct sto *s);

/* Milliseconds until sto_tick() has work (interval fsync); -1 for none. */
long sto_timeout_ms(const struct sto *s, uint64_t now_ms);
/* Does the interval fsync when due. */
void sto_tick(struct sto *s, uint64_t now_ms);

/* Syncs the log (whatever the policy) and releases everything, the lock
 * included.  sto_close(NULL) is a no-op. */
void sto_close(struct sto *s);

#endif /* ISVDD_STORAGE_H */
