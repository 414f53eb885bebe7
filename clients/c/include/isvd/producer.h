/*
 * isvd/producer.h — libisvd's producer: one-row (or few-row) pushes batched
 * on the client side, as Kafka's producers batch records (linger.ms,
 * batch.size).  A sensor loop that pushes each reading as it comes pays one
 * request, one log record and one ack per row with isvd_client_push(); a
 * producer copies the row into the open batch and returns at once, and
 * sends batches of up to max_rows rows.
 *
 *     struct isvd_producer *p;
 *     isvd_producer_create(&p, client, NULL);        // linger 5 ms, 1024 rows
 *     for (;;) isvd_producer_push_row(p, reading, dim);
 *     isvd_producer_flush(p, -1);                    // every row acknowledged
 *     isvd_producer_destroy(p);                      // then the client
 *
 * DESIGN
 *   Linger is driven by one background thread per producer, not by a poll
 *   call: a sensor loop that blocks on its device between readings would
 *   otherwise hold its last rows back until its next call.  From create to
 *   destroy the thread is the only user of the client.
 *
 *     push_row ──► open batch ──(max_rows rows │ linger_ms after its first
 *                  row │ flush │ a row of another dim)──► ready queue
 *     thread: ready ──push_send──► in flight ──ack──► delivered │ failed
 *                                      │
 *                                      └─ TIMEOUT or RATE_LIMITED (the
 *                                         client's retries ran out) ─►
 *                                         resent first, same (client,
 *                                         batch), until
 *                                         delivery_timeout_ms after its
 *                                         first send ─► failed
 *
 *   The thread waits for an ack while any batch is in flight (an ack is
 *   what frees the window, and one comes within the daemon's turnaround or
 *   the client's stall timeout), else on a condition variable that
 *   push_row, flush and destroy signal; an open batch's linger deadline
 *   bounds either wait.
 *
 *   At most once, at least once: a batch gets its batch number at its first
 *   send and keeps it through every resend, so the daemon applies it once
 *   however often it restarts or replies are lost (a batch it already holds
 *   is answered `duplicate`, and its rows count as delivered).  The daemon
 *   remembers the last 8 batches per client and takes an older one as
 *   applied; so the producer never sends batch b + 8 while batch b is
 *   unresolved (max_in_flight ≤ ISVD_PRODUCER_MAX_IN_FLIGHT), and a batch
 *   to resend goes out before any newer one.  A resend may thus arrive
 *   after later batches: with model.forget the order of rows within those
 *   few batches is not kept (sums and exact models do not depend on it).
 *
 *   Errors are per batch: a batch the daemon refuses (a row of the wrong
 *   dimension, ±Inf, NaN under missing: reject, ...) fails as a whole and
 *   is reported with its rows' range; the next batch goes on.  Rows are
 *   numbered from 0 in push order over the producer's life.  A push whose
 *   rows have another dimension than the open batch seals it and opens a
 *   new one, so the daemon (which knows the model's dimension) judges each
 *   batch; the producer itself refuses only empty input.
 *
 *   Memory is bounded: when max_batches batches are ready, in flight or
 *   waiting to be resent, push_row blocks until one is delivered or fails
 *   (delivery_timeout_ms bounds that).  This is the only case where a push
 *   does not return at once.
 *
 *   Python's isvd.Producer has the same defaults (linger_ms 5, max_rows
 *   1024, delivery timeout 120 s), the same counts and the same row
 *   numbering; it sends one batch at a time.
 *
 * THREADS
 *   push_row, push_rows, flush, get_stats and next_error may be called from
 *   any number of threads at once.  destroy is called once, when no other
 *   call on the producer is running.  The client given to create belongs
 *   to the producer until destroy returns (ZeroMQ sockets are not
 *   thread-safe): do not use it, nor set its ack callback, meanwhile.  The
 *   report callback runs on the producer's thread and may call
 *   isvd_producer_get_stats() only.
 *
 * Codes are libisvd's (isvd_client_err, isvd/client.h).
 */
#ifndef ISVD_PRODUCER_H
#define ISVD_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isvd/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults of struct isvd_producer_options. */
#define ISVD_PRODUCER_DEFAULT_LINGER_MS   5
#define ISVD_PRODUCER_DEFAULT_MAX_ROWS    1024
#define ISVD_PRODUCER_DEFAULT_BATCHES     64
#define ISVD_PRODUCER_DEFAULT_DELIVERY_MS 120000
/* The daemon's duplicate window (batches remembered per client): the most
 * batches a producer keeps unresolved, and the default window. */
#define ISVD_PRODUCER_MAX_IN_FLIGHT       8

/* The outcome of one batch. */
struct isvd_producer_report {
	int err;                 /* ISVD_CLIENT_OK: delivered; else why it was not */
	uint64_t first, last;    /* its rows, inclusive, numbered from 0 in push order */
	uint64_t batch;          /* its batch number (0: never sent) */
	uint64_t accepted;       /* rows the daemon applied (0 for a duplicate) */
	uint64_t seq;            /* seq of its last row (0: unknown) */
	bool duplicate;          /* the daemon already held it (sent before an outage) */
	unsigned sends;          /* 1 + the producer's resends of it */
	char message[256];       /* why, when err != OK */
};

typedef void (*isvd_producer_report_fn)(const struct isvd_producer_report *r, void *user);

struct isvd_producer_options {
	int linger_ms;           /* the longest a row waits for its batch to fill; 0: a
	                            batch per push call; < 0 is INVALID */
	size_t max_rows;         /* rows per batch; 0: ISVD_PRODUCER_DEFAULT_MAX_ROWS */
	unsigned max_in_flight;  /* batches sent and not resolved; 0: ISVD_PRODUCER_MAX_IN_FLIGHT,
	                            more than that is INVALID (see DESIGN) */
	size_t max_batches;      /* batches held before push blocks; 0: ISVD_PRODUCER_DEFAULT_BATCHES */
	int delivery_timeout_ms; /* a batch is resent until this long after its first send;
	                            <= 0: ISVD_PRODUCER_DEFAULT_DELIVERY_MS.  Each attempt
	                            lasts the client's timeout_ms × (retries + 1). */
	isvd_producer_report_fn on_report;   /* every finished batch, on the producer's
	                                        thread; NULL: failed batches are queued
	                                        for isvd_producer_next_error() */
	void *user;              /* handed to on_report */
};

/* The producer's counts.  rows_in = rows_accepted + rows_duplicate +
 * rows_failed + rows_pending at every instant. */
struct isvd_producer_stats {
	uint64_t rows_in;            /* rows pushed */
	uint64_t rows_accepted;      /* rows the daemon applied */
	uint64_t rows_duplicate;     /* rows of batches the daemon already held: delivered once */
	uint64_t rows_failed;        /* rows of failed batches */
	uint64_t rows_pending;       /* not yet resolved */
	uint64_t batches;            /* batches delivered (duplicates included) */
	uint64_t batches_duplicate;  /* of which the daemon already held */
	uint64_t batches_failed;
	uint64_t batches_sent;       /* first sends */
	uint64_t resends;            /* batches sent again after the client's retries ran out */
	uint64_t last_seq;           /* the largest seq acknowledged */
};

/* Fills *o with the defaults. */
void isvd_producer_options_init(struct isvd_producer_options *o);

struct isvd_producer;

/* Creates a producer over client (which stays the caller's, to destroy
 * after the producer) and starts its thread.  opts NULL: the defaults.
 * The client's ack callback is cleared.  Returns OK, INVALID (a bad option,
 * or a client with pushes in flight) or NOMEM (also when the thread cannot
 * start). */
int isvd_producer_create(struct isvd_producer **out, struct isvd_client *client,
                         const struct isvd_producer_options *opts);

/* Sends what is left and waits for every batch to be resolved (bounded by
 * delivery_timeout_ms), stops the thread and frees the producer.  Reports
 * of batches resolved meanwhile go to on_report; read failures first with
 * flush / next_error to see them otherwise.  destroy(NULL) is a no-op. */
void isvd_producer_destroy(struct isvd_producer *p);

/* Copies one row of dim doubles (NaN: a missing value) into the open batch
 * and returns (blocking only when max_batches batches are held).  OK,
 * INVALID (row NULL, dim 0), NOMEM. */
int isvd_producer_push_row(struct isvd_producer *p, const double *row, size_t dim);
/* The same for nrows × dim row-major rows, sealing batches as they fill. */
int isvd_producer_push_rows(struct isvd_producer *p, const double *rows, size_t nrows, size_t dim);

/* Sends the open batch now and waits until every row pushed before the
 * call is resolved, at most timeout_ms (< 0: no limit).  Returns OK when
 * no batch failed since the previous flush returned, else the code of the
 * first that did (its report says which rows), or TIMEOUT when rows were
 * still pending at the deadline. */
int isvd_producer_flush(struct isvd_producer *p, int timeout_ms);

void isvd_producer_get_stats(struct isvd_producer *p, struct isvd_producer_stats *st);

/* Takes the oldest unread report of a failed batch (kept only when there is
 * no on_report callback).  OK with *r filled, or INVALID when none. */
int isvd_producer_next_error(struct isvd_producer *p, struct isvd_producer_report *r);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_PRODUCER_H */
