/*
 * http.c — the HTTP endpoint: libmicrohttpd's daemon, the routing of the
 * three paths and the bounds on what a client may send (see http.h).
 *
 * DESIGN
 *   libmicrohttpd runs one internal polling thread
 *   (MHD_USE_INTERNAL_POLLING_THREAD) that accepts, reads and answers every
 *   connection; on_request() runs there.  Each answer is built whole in
 *   memory (open_memstream()) and handed to libmicrohttpd, which frees it:
 *
 *     GET /metrics ──► met_render(registry, qry_summary()) ──► text 0.0.4
 *     GET /status  ──► status_render(registry, qry_summary(), rate ring) ──► HTML
 *     GET /healthz ──► phase + storage state ──► 200 "ok" | 503 reason
 *
 *   libmicrohttpd calls on_request() at least twice per request: first
 *   with the headers only (*con_cls NULL), then with the body, if any, and
 *   once more at its end.  A method other than GET/HEAD is answered 405 at
 *   the first call and a declared body 413, so no body is ever read;
 *   anything that still arrives as upload data is answered 413 too.  HEAD
 *   gets the GET's headers (libmicrohttpd drops the body).
 *
 *   The model's figures come from the query thread's summary of its view
 *   (qry_summary()), attached once the query thread runs; before that
 *   (recovery) the pages show what the registry knows.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "isvd_model.h"
#include "isvd_proto.h"
#include "loop.h"
#include "metrics.h"
#include "query.h"
#include "status.h"

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define STATUS_CSP   "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; " \
                     "form-action 'none'; frame-ancestors 'none'"

struct http {
	const struct cfg *cfg;
	struct log_sink *log;
	struct met *met;
	uint64_t start_ms;
	_Atomic(struct qry *) qry;   /* NULL until http_attach() */
	struct MHD_Daemon *d;
};

/* The first call's marker in *con_cls: the headers have been seen. */
static int seen_headers;

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
	struct http *h = cls;
	char msg[512];

	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_msg(h->log, CFG_LOG_WARN, "http: %s", msg);
}

/* Queues a response of len bytes at body (malloc'd; ownership moves, also
 * on failure) with status and content type. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body,
                             size_t len, const char *csp)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (csp)
		MHD_add_response_header(r, "Content-Security-Policy", csp);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	char *body = strdup(text);

	if (!body)
		return MHD_NO;
	return reply(c, status, "text/plain; charset=utf-8", body, strlen(body), NULL);
}

/* The query thread's summary (malloc'd, freed by the caller), or NULL
 * before the query thread runs or when none could be had. */
static struct qry_summary *summary(struct http *h)
{
	struct qry *q = atomic_load(&h->qry);
	struct qry_summary *s;

	if (!q || !(s = malloc(sizeof *s)))
		return NULL;
	if (qry_summary(q, s, HTTP_SUMMARY_WAIT_MS)) {
		free(s);
		return NULL;
	}
	return s;
}

static const char *mode_name(const struct http *h, const struct qry_summary *s)
{
	return isvd_mode_name(s && s->have_model ? s->info.mode : h->cfg->model.mode);
}

static enum MHD_Result serve_metrics(struct http *h, struct MHD_Connection *c)
{
	struct qry_summary *s = summary(h);
	char *body = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&body, &len);
	const struct met_info in = { ISVD_VERSION, ISVD_PROTO_VERSION, mode_name(h, s), loop_now_ms(),
	                             h->start_ms, s };

	if (!out) {
		free(s);
		return MHD_NO;
	}
	met_render(h->met, &in, out);
	fclose(out);
	free(s);
	return reply(c, MHD_HTTP_OK, METRICS_TYPE, body, len, NULL);
}

static enum MHD_Result serve_status(struct http *h, struct MHD_Connection *c)
{
	struct qry_summary *s = summary(h);
	double rate[MET_RATE_SLOTS];
	char why[600];
	char *body = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&body, &len);
	struct status_page p = {
		.version = ISVD_VERSION,
		.protocol = ISVD_PROTO_VERSION,
		.cfg = h->cfg,
		.phase = met_phase(h->met),
		.model = s,
		.rate = rate,
		.nrate = MET_RATE_SLOTS - 1,
		.now_ms = loop_now_ms(),
		.start_ms = h->start_ms,
		.http_listen = h->cfg->http.listen,
	};

	if (!out) {
		free(s);
		return MHD_NO;
	}
	p.storage_failed = met_storage_state(h->met, why, sizeof why);
	p.storage_why = why;
	met_totals(h->met, &p.totals);
	met_rate(h->met, p.now_ms, rate, MET_RATE_SLOTS - 1);
	status_render(&p, out);
	fclose(out);
	free(s);
	return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", body, len, STATUS_CSP);
}

/* 200 while serving and acknowledging pushes; 503 with the reason while
 * recovering, stopping, or with storage failed (pushes refused). */
static enum MHD_Result serve_healthz(struct http *h, struct MHD_Connection *c)
{
	char why[600], text[700];

	switch (met_phase(h->met)) {
	case MET_RECOVERING:
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "recovering: replaying storage.dir\n");
	case MET_STOPPING:
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
	case MET_SERVING:
		break;
	}
	if (met_storage_state(h->met, why, sizeof why)) {
		snprintf(text, sizeof text, "storage failed: %s; pushes are refused until a checkpoint "
		         "succeeds\n", why);
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
	}
	return reply_text(c, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	const bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);

	if (!*con_cls) {   /* the headers: refuse before any body is read */
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
		const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		                                             MHD_HTTP_HEADER_TRANSFER_ENCODING);
		*con_cls = &seen_headers;
		if (!get)
			return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served\n");
		if ((cl && strcmp(cl, "0")) || te)
			return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "requests may not have a body\n");
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "requests may not have a body\n");
	}
	if (!strcmp(url, "/metrics"))
		return serve_metrics(h, c);
	if (!strcmp(url, "/status"))
		return serve_status(h, c);
	if (!strcmp(url, "/healthz"))
		return serve_healthz(h, c);
	return reply_text(c, MHD_HTTP_NOT_FOUND, "not found; isvdd serves /metrics, /status and /healthz\n");
}

int http_start(const struct cfg *cfg, struct log_sink *log, struct met *met, uint64_t start_ms,
               struct http **out)
{
	struct sockaddr_storage addr;
	socklen_t alen;
	bool loopback;
	char why[160];
	struct http *h;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;

	*out = NULL;
	if (!cfg->http.listen[0])
		return 0;
	if (cfg_parse_listen(cfg->http.listen, &addr, &alen, &loopback, why, sizeof why)) {
		log_msg(log, CFG_LOG_ERROR, "http.listen %s: %s", cfg->http.listen, why);
		return -1;
	}
	if (!(h = calloc(1, sizeof *h))) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the HTTP server: %s", strerror(errno));
		return -1;
	}
	h->cfg = cfg;
	h->log = log;
	h->met = met;
	h->start_ms = start_ms;
	atomic_init(&h->qry, NULL);
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	errno = 0;
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
	                        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, h,   /* first: see its doc */
	                        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
	                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_MAX_PER_IP,
	                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
	                        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)HTTP_MAX_CONNECTIONS,
	                        MHD_OPTION_END);
	if (!h->d) {
		log_msg(log, CFG_LOG_ERROR, "cannot serve http.listen %s: %s", cfg->http.listen,
		        errno ? strerror(errno) : "libmicrohttpd refused to start");
		free(h);
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	log_msg(log, CFG_LOG_INFO, "http: serving /metrics, /status and /healthz on %s (port %u)",
	        cfg->http.listen, di ? (unsigned)di->port : 0u);
	if (!loopback)
		log_msg(log, CFG_LOG_WARN, "http.listen %s is not a loopback address: anyone who can reach it "
		        "reads the model's figures, without authentication or encryption", cfg->http.listen);
	*out = h;
	return 0;
}

void http_attach(struct http *h, struct qry *q)
{
	if (h)
		atomic_store(&h->qry, q);
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
