/*
 * reply.h — sending a reply on a ROUTER socket: the envelope frames of the
 * request, then the encoded body; and the wire code for an engine error.  Shared by the event loop (server.c, the
 * ingest socket) and the query thread (reader.c), each on its own socket.
 *
 * Every function consumes the envelope frames (env[0..nenv) are closed or
 * sent) whatever happens; a reply that cannot be sent (the peer is gone, a
 * full pipe) is dropped and logged at debug level.
 */
#ifndef ISVDD_REPLY_H
#define ISVDD_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "isvd_proto.h"
#include "log.h"

/* Sends env then body (len bytes). */
void srv_send_frames(struct srv_log *log, void *sock, zmq_msg_t *env, size_t nenv,
                     const void *body, size_t len);
/* An error reply echoing id (raw msgpack, may be NULL). */
void srv_send_error(struct srv_log *log, void *sock, zmq_msg_t *env, size_t nenv,
                    const uint8_t *id, size_t id_len, int code, const char *message);
/* A success reply; INTERNAL if rep cannot be encoded. */
void srv_send_ok(struct srv_log *log, void *sock, zmq_msg_t *env, size_t nenv,
                 const struct isvd_proto_reply *rep);

/* The wire code for an engine error (isvd_err): DIM → DIM_MISMATCH,
 * NONFINITE → NON_FINITE, NOT_READY, TOO_LARGE, NOMEM; the rest INTERNAL. */
int srv_err_from_engine(int e);

#endif /* ISVDD_REPLY_H */
