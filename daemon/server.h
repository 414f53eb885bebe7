/*
 * server.h — the isvdd server: one model, three sockets, one event loop.
 *
 * struct isvdd is the whole state of a running daemon; it is passed
 * explicitly and never global.  srv_create() builds the model (unless
 * model.dim is 0) and binds every endpoint, srv_run() serves until *stop is
 * set, srv_destroy() releases everything.
 */
#ifndef ISVDD_SERVER_H
#define ISVDD_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "log.h"

struct isvdd;

/* Creates the server for cfg (which must outlive it) logging to log:
 * recovers the model from storage.dir (repair: drop a corrupt log tail
 * instead of refusing), seeds it from the image file `seed` when not NULL
 * (refused, exit code 1, unless recovery found no rows: rec_seed()), then binds ingest (ROUTER), query (ROUTER) and
 * publish (PUB).  Returns 0 and sets *out, or the exit code for main() after
 * logging why: 1 (an endpoint cannot be bound, the stored model does not
 * match the configuration, …), STO_EXIT_CORRUPT, STO_EXIT_UNUSABLE. */
int srv_create(const struct cfg *cfg, struct log_sink *log, bool repair, const char *seed,
               struct isvdd **out);

/* Serves until *stop becomes non-zero; reopens the log whenever *hup is set
 * (and clears it).  On stop, pending rows are folded and their pushes
 * answered before returning.  Returns 0, or -1 on a fatal error (logged). */
int srv_run(struct isvdd *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup);

/* Closes the sockets and frees everything.  srv_destroy(NULL) is a no-op. */
void srv_destroy(struct isvdd *srv);

#endif /* ISVDD_SERVER_H */
