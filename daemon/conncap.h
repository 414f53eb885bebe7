/*
 * conncap.h — connection accounting for limits.max_connections_per_address
 * and limits.max_connections: which TCP connections are open on isvdd's
 * sockets and from where, as their socket monitors report them, and the
 * admission rule the ZAP handler (security.c) applies to every handshake.
 *
 * The rule: a handshake from address A is refused while more than
 * max_connections_per_address connections from A are open, or more than
 * max_connections in all — the connection being admitted counted, whether
 * or not the others finished their handshakes.  Counting open connections
 * (accepted minus disconnected) rather than admitted ones keeps the count
 * exact: a ZAP request names the peer's address but not its connection,
 * so the handler could not tell which admitted connection later closed.
 * A refused connection is closed by libzmq at once and stops counting.
 * Connections without an IP address (ipc://) count towards
 * max_connections only.
 *
 * The ZAP handler's thread only (gate.c), and the server's before that
 * thread starts and after it stops.  struct cc is owned by the server.
 */
#ifndef ISVDD_CONNCAP_H
#define ISVDD_CONNCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CC_ADDR_MAX 64   /* bytes of a peer address, as the ZAP request writes it */
#define CC_SOCKETS  3    /* ingest, query, publish */

struct cc;
struct met;

/* Why cc_admit() refused. */
enum cc_verdict { CC_ADMIT, CC_PER_ADDRESS, CC_TOTAL };

/* Accounting with caps per_address and total (0: no cap) in zctx.
 * 0 and *out, or -1 after logging. */
int cc_create(uint64_t per_address, uint64_t total, void *zctx, struct log_sink *log,
              struct cc **out);
/* cc_destroy(NULL) is a no-op; the monitor sockets are closed.  The
 * watched sockets' monitors must be stopped before (zmq_socket_monitor(s,
 * NULL, 0), then zmq_close(s)): libzmq leaks an event it cannot deliver to
 * a reader that is gone, and a closing socket's last events come late,
 * from libzmq's reaper thread. */
void cc_destroy(struct cc *c);

/* Starts monitoring sock (before it is bound: no connection missed) as
 * the i-th socket (< CC_SOCKETS).  0, or -1 after logging. */
int cc_watch(struct cc *c, void *sock, int i, const char *name);
/* The monitor socket of the i-th socket for zmq_poll (ZMQ_POLLIN), or NULL. */
void *cc_monitor_socket(const struct cc *c, int i);

/* Reads every event the monitors hold: accepted and disconnected
 * connections.  The ZAP handler calls it before it decides, so that the
 * connection asking is counted (libzmq reports the accept before the
 * handshake can reach ZAP). */
void cc_drain(struct cc *c);

/* The rule above for a handshake from addr (the ZAP request's address). */
enum cc_verdict cc_admit(struct cc *c, const char *addr, size_t len);

/* Also reports open connections and refusals to met (metrics.c). */
void cc_set_metrics(struct cc *c, struct met *met);

/* Open connections now, and handshakes refused since start by cause. */
struct cc_counts {
	uint64_t open, refused_per_address, refused_total;
};
void cc_get_counts(const struct cc *c, struct cc_counts *out);

#endif /* ISVDD_CONNCAP_H */
