/*
 * ratelimit.h — per-pusher token buckets (limits.push_rows_per_s,
 * limits.push_burst_rows) and the per-pusher counters that `info` and
 * /metrics show.
 *
 * A pusher is its authenticated key under CURVE (the Z85 public key the
 * ZAP handler reported), else the `client` id the push names (RL_NO_CLIENT
 * when it names none).  The loop thread asks rl_take() before a push joins a
 * batch; the query and HTTP threads read the counters with rl_snapshot().
 *
 * The bucket (struct rl_bucket) is a pure function of its arguments, so
 * that the unit test can drive it with any clock:
 *   tokens grow at rate rows per second up to burst; a push of r rows
 *   passes when tokens ≥ min(r, burst) and then takes r (tokens may go
 *   negative: a push larger than the burst passes once the bucket is full,
 *   and the pusher then waits its rows off); otherwise it is refused whole
 *   and told when min(r, burst) tokens will be there.
 *   INVARIANT: tokens ≤ burst; over any interval T the rows passed are at
 *   most burst + rate·T + (the last push's rows beyond the burst).
 */
#ifndef ISVDD_RATELIMIT_H
#define ISVDD_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isvd_proto.h"

#define RL_KEY_MAX   ISVD_PROTO_MAX_CLIENT   /* bytes of a pusher's name */
#define RL_OVERFLOW  "*"                     /* the shared bucket beyond the table */
#define RL_NO_CLIENT "-"                     /* pushes without CURVE and without a client id */

struct rl_bucket {
	double tokens;               /* rows that may pass now; ≤ burst */
	uint64_t at_ms;              /* when tokens was last brought up to date */
};

/* A full bucket as of now_ms. */
void rl_bucket_init(struct rl_bucket *b, double burst, uint64_t now_ms);
/* Refills b to now_ms (a clock going backwards adds nothing), then takes
 * rows if they pass: true.  Else false with *retry_after_ms (≥ 1), the
 * wait until they would. */
bool rl_bucket_take(struct rl_bucket *b, double rate, double burst, uint64_t rows, uint64_t now_ms,
                    uint64_t *retry_after_ms);
/* Whether b, refilled to now_ms, is full (forgetting it loses nothing). */
bool rl_bucket_full(const struct rl_bucket *b, double rate, double burst, uint64_t now_ms);

struct rl;

/* A table of at most max_keys pushers (plus the shared bucket RL_OVERFLOW),
 * limiting each to rows_per_s (0: no limit, counters only) with a burst of
 * burst_rows (0: one second's rows).  0 and *out, or -1 (out of memory). */
int rl_create(uint64_t rows_per_s, uint64_t burst_rows, size_t max_keys, struct rl **out);
/* rl_destroy(NULL) is a no-op. */
void rl_destroy(struct rl *r);

/* A push of rows from pusher key (NUL-terminated; longer than RL_KEY_MAX
 * is cut) at now_ms: true when it may go on (its rows counted), false when
 * it is over the limit (counted as limited; *retry_after_ms set).
 *
 * The table: a pusher not in it takes a free slot, else the slot of the
 * least recently seen pusher whose bucket is full (its counters are
 * forgotten with it); when every slot holds a pusher in debt, the newcomer
 * shares the RL_OVERFLOW bucket with every other such newcomer.  So memory
 * is max_keys slots whatever names the peers send, and new names never buy
 * more than one more pusher's rate.  Any thread (a mutex). */
bool rl_take(struct rl *r, const char *key, uint64_t rows, uint64_t now_ms, uint64_t *retry_after_ms);

/* Totals over every pusher: limited pushes and rows since start. */
void rl_totals(struct rl *r, uint64_t *limited_pushes, uint64_t *limited_rows);

/* The counters of every pusher in the table (and RL_OVERFLOW once used),
 * most rows first, into *out (n entries; the caller frees it with
 * rl_snapshot_free()).  0, or -1 (out of memory).  Any thread. */
int rl_snapshot(struct rl *r, struct isvd_proto_pusher **out, size_t *n);
void rl_snapshot_free(struct isvd_proto_pusher *v, size_t n);

#endif /* ISVDD_RATELIMIT_H */
