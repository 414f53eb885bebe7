/*
 * http.h — isvdd's HTTP endpoint (http.listen): GET /metrics (Prometheus
 * text format 0.0.4, metrics.c), GET /status (one self-contained HTML page,
 * status.c) and GET /healthz, served by libmicrohttpd on a thread of its
 * own.
 *
 * The thread reads only what is made to be read from anywhere: the
 * registry's atomics (metrics.c) and the query thread's summary of its view
 * (qry_summary()), so a scrape never waits for the event loop and never
 * blocks ingest.  It is started before recovery, so that /healthz can say
 * "recovering", and stopped before the query thread.
 *
 * Bounds: at most HTTP_MAX_CONNECTIONS connections (HTTP_MAX_PER_IP from
 * one address), HTTP_MEMORY_LIMIT bytes of request (line and headers) per
 * connection, no request bodies, HTTP_TIMEOUT_S of idleness.  Anything but
 * the three paths is 404; methods other than GET and HEAD are 405.
 */
#ifndef ISVDD_HTTP_H
#define ISVDD_HTTP_H

#include <stdint.h>

#include "config.h"
#include "log.h"

#define HTTP_MAX_CONNECTIONS 32
#define HTTP_MAX_PER_IP      16
#define HTTP_MEMORY_LIMIT    16384   /* bytes per connection: the request and its headers */
#define HTTP_TIMEOUT_S       10
#define HTTP_SUMMARY_WAIT_MS 1000    /* longest wait for the query thread's summary */

struct http;
struct met;
struct qry;

/* Starts serving cfg->http.listen (which must outlive it) with the figures
 * of met, the server's clock started at start_ms (loop_now_ms()).  With
 * http.listen empty nothing starts: 0 and *out = NULL.  Returns 0, or -1
 * after logging why (the address cannot be bound, ...). */
int http_start(const struct cfg *cfg, struct log_sink *log, struct met *met, uint64_t start_ms,
               struct http **out);

/* From now on the model's figures come from q's summaries.  Once, before
 * the query thread may stop; h may be NULL (a no-op). */
void http_attach(struct http *h, struct qry *q);

/* Stops the thread (requests in progress end first) and frees everything.
 * http_stop(NULL) is a no-op. */
void http_stop(struct http *h);

#endif /* ISVDD_HTTP_H */
