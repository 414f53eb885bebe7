/*
 * reply.h — receiving a request (all its frames) and sending a reply on a
 * ROUTER socket: the envelope frames of the request, then the encoded body;
 * the wire code for an engine error; the checks and payloads both threads
 * share.  Used by the event loop (ingest.c, the ingest socket) and the
 * query thread (query.c), each on its own socket.
 *
 * Every function consumes the envelope frames (env[0..nenv) are closed or
 * sent) whatever happens; a reply that cannot be sent (the peer is gone, a
 * full pipe) is dropped and logged at debug level.
 */
#ifndef ISVDD_REPLY_H
#define ISVDD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "isvd_proto.h"
#include "log.h"

/* Frames in one request message, body included; more is dropped. */
#define RPL_MAX_FRAMES 8

/* Receives one whole message without waiting into frames[0..*n), the last
 * frame being the body; frames must hold max entries.  Returns 1 with a
 * message (the caller closes or sends every frame), 0 when none is waiting,
 * -1 when a message of more than max frames was drained and dropped (logged
 * as a refusal) or the socket failed (logged); nothing is left open then. */
int rpl_recv_frames(struct log_sink *log, void *sock, zmq_msg_t *frames, size_t max, size_t *n);

/* Sends env then body (len bytes). */
void rpl_send_frames(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                     const void *body, size_t len);
/* An error reply echoing id (raw msgpack, may be NULL). */
void rpl_send_error(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                    const uint8_t *id, size_t id_len, int code, const char *message);
/* The same with retry_after_ms (sent with RATE_LIMITED only). */
void rpl_send_error_retry(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                          const uint8_t *id, size_t id_len, int code, const char *message,
                          uint64_t retry_after_ms);
/* A success reply; INTERNAL if rep cannot be encoded. */
void rpl_send_ok(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                 const struct isvd_proto_reply *rep);

/* The wire code for an engine error (isvd_err): DIM → DIM_MISMATCH,
 * NONFINITE → NON_FINITE, GAPS → BAD_MATRIX, NOT_READY, TOO_LARGE, NOMEM;
 * the rest INTERNAL. */
int rpl_err_from_engine(int e);

/* Refuses rows the engine would refuse, with a message naming row and
 * column in buf: magnitudes the engine's admissibility rule refuses
 * (isvd_first_inadmissible(): ±Inf, |x| > 1e150) as NON_FINITE; missing
 * values (NaN) as NON_FINITE unless gaps_ok; with gaps_ok, a row with no
 * observed value as BAD_MATRIX.  ISVD_PROTO_OK when fine.  Pushes
 * (ingest.c, gaps_ok when model.missing is impute) and queries (query.c,
 * always gaps_ok) alike. */
int rpl_check_values(const struct isvd_proto_matrix *m, bool gaps_ok, char *buf, size_t cap);

/* The `factors` reply's payload from model m (the loop's model or a query
 * view's snapshot): sigma, Vᵀ and, when center, the mean.  The buffers are
 * malloc'd into rep, also on failure: release them with rpl_factors_free().
 * Returns an isvd_proto_err (NOMEM, or an engine error's wire code). */
struct isvd_model;
int rpl_factors(const struct isvd_model *m, bool center, struct isvd_proto_reply *rep);
void rpl_factors_free(struct isvd_proto_reply *rep);
/* The monitor's `stable` flags of m's components into rep (malloc'd;
 * rpl_factors_free() releases them too).  An isvd_proto_err. */
int rpl_stability(const struct isvd_model *m, struct isvd_proto_reply *rep);
/* Each of m's reported components' stability flag (1 stable, 0 not) into
 * stable and, when gap is not NULL, its relative spectral gap into gap
 * (isvd_model_stability()); both malloc'd, the caller frees them, also
 * on failure.  An isvd_proto_err. */
int rpl_stability_vecs(const struct isvd_model *m, struct isvd_proto_vec *gap,
                       struct isvd_proto_vec *stable);

#endif /* ISVDD_REPLY_H */
