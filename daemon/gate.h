/*
 * gate.h — isvdd's gatekeeper thread: the ZAP handler (security.c) and the
 * connection accounting it consults (conncap.c), served apart from the
 * loop thread.
 *
 * Why a thread of its own: a handshake waits for the ZAP handler's answer.
 * On the loop thread it waited for every loop turn, and the loop thread
 * writes the log and checkpoints — while a disk stalls (an fsync or a
 * rename that takes seconds) no new client could connect, not even to
 * query the model held in memory, which the query thread keeps answering.
 * With the caps on by default, that would be every daemon's handshake, not
 * only CURVE's.  On this thread a handshake waits only for other
 * handshakes.
 *
 * Ownership: from gate_start() to gate_stop() the thread owns the ZAP
 * socket, the socket monitors' PAIRs, struct sec's key sets and struct
 * cc's table; others reach them only through the calls below, which take
 * the gate's mutex (held by the thread while it serves a batch).
 */
#ifndef ISVDD_GATE_H
#define ISVDD_GATE_H

#include "conncap.h"
#include "log.h"
#include "security.h"

struct gate;

/* Starts the thread serving sec's ZAP socket and cc's monitors (both must
 * exist: call only when sec_zap_socket(sec) is not NULL).  0 and *out set,
 * or -1 after logging why. */
int gate_start(void *zctx, struct sec *sec, struct cc *cc, struct log_sink *log,
               struct gate **out);

/* SIGHUP: the thread reloads the key sets (sec_reload) and this returns
 * when it has. */
void gate_reload(struct gate *g);

/* The handler's counts, consistent with each other. */
void gate_counts(struct gate *g, struct sec_counts *sc, struct cc_counts *cn);

/* Stops and joins the thread; sec and cc are the caller's again.
 * NULL is a no-op. */
void gate_stop(struct gate *g);

#endif
