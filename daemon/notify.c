/*
 * notify.c — the sd_notify protocol (interface in notify.h) and isvdd's
 * uses of it: what READY, STATUS, RELOADING, STOPPING and the watchdog
 * say and when the event loop sends them (declared in isvdd.h).
 *
 * DESIGN
 *   The protocol half (ntf_parse_*, ntf_init, ntf_send) knows nothing of
 *   the daemon and is unit-tested alone (tests/unit/daemon/test_notify.c).
 *   The daemon half reads struct isvdd on the loop thread only: the
 *   watchdog and status timers are rows of the loop's one timer table
 *   (loop.c), so the pings stop exactly when the loop stops turning — a
 *   fold or a checkpoint that never returns, a callback that spins — and
 *   WatchdogSec= in the unit then restarts the daemon.  The engine and
 *   query threads cannot keep a stuck loop looking alive.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "isvdd.h"
#include "loop.h"

#define NTF_STATUS_EVERY_MS   1000     /* STATUS= re-sent at most this often, when it changed */
#define NTF_PROGRESS_EVERY_MS 1000     /* recovery progress at most this often */
#define NTF_EXTEND_USEC       60000000 /* each sign of progress buys a replay this long */

/* ------------------------------------------------------------- protocol */

int ntf_parse_address(const char *s, struct sockaddr_un *addr, socklen_t *len)
{
	size_t n;

	if (!s || (s[0] != '/' && s[0] != '@'))
		return -1;
	n = strlen(s);
	if (n < 2 || n > sizeof addr->sun_path - (s[0] == '/'))   /* a path keeps its NUL */
		return -1;
	memset(addr, 0, sizeof *addr);
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, s, n);
	if (s[0] == '@') {
		addr->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

/* A positive decimal integer with nothing after it, or 0. */
static unsigned long long positive(const char *s)
{
	char *end;
	unsigned long long x;

	if (!s || s[0] < '0' || s[0] > '9')
		return 0;
	errno = 0;
	x = strtoull(s, &end, 10);
	return *end || errno ? 0 : x;
}

uint64_t ntf_parse_watchdog(const char *usec, const char *pid_text, long pid)
{
	const unsigned long long u = positive(usec);

	if (!u)
		return 0;
	if (pid_text && positive(pid_text) != (unsigned long long)pid)
		return 0;   /* meant for another process (or unparsable: not ours either) */
	return u;
}

void ntf_init(struct ntf *n, struct log_sink *log)
{
	const char *sock = getenv("NOTIFY_SOCKET");

	memset(n, 0, sizeof *n);
	n->fd = -1;
	n->log = log;
	if (!sock || !*sock)
		return;
	if (ntf_parse_address(sock, &n->addr, &n->addr_len)) {
		log_msg(log, CFG_LOG_WARN, "NOTIFY_SOCKET '%s' is not an absolute path or @abstract name; "
		        "not notifying the service manager", sock);
		return;
	}
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		log_msg(log, CFG_LOG_WARN, "cannot create the NOTIFY_SOCKET socket: %s; not notifying the "
		        "service manager", strerror(errno));
		return;
	}
	n->watchdog_usec = ntf_parse_watchdog(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"),
	                                      (long)getpid());
	log_msg(log, CFG_LOG_DEBUG, "notifying the service manager at %s%s", sock,
	        n->watchdog_usec ? " (watchdog on)" : "");
}

void ntf_fini(struct ntf *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

bool ntf_enabled(const struct ntf *n)
{
	return n->fd >= 0;
}

uint64_t ntf_watchdog_period_ms(const struct ntf *n)
{
	const uint64_t ms = n->watchdog_usec / 2000;

	if (!ntf_enabled(n) || !n->watchdog_usec)
		return 0;
	return ms ? ms : 1;
}

int ntf_send(struct ntf *n, const char *fmt, ...)
{
	char buf[NTF_MAX_MESSAGE + 1];
	va_list ap;
	int len;

	if (!ntf_enabled(n))
		return 0;
	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (len < 0 || len > NTF_MAX_MESSAGE) {
		log_msg(n->log, CFG_LOG_WARN, "sd_notify message too long (%d bytes); not sent", len);
		return -1;
	}
	/* MSG_DONTWAIT: a manager that stopped reading must not stall the loop */
	if (sendto(n->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&n->addr,
	           n->addr_len) == len)
		return 0;
	if (!n->warned)   /* once: a watchdog ping would otherwise log twice a period */
		log_msg(n->log, CFG_LOG_WARN, "cannot notify the service manager: %s (said once)",
		        strerror(errno));
	n->warned = true;
	return -1;
}

bool ntf_status_changed(struct ntf *n, const char *status)
{
	if (!strncmp(n->status, status, sizeof n->status - 1))
		return false;
	snprintf(n->status, sizeof n->status, "%s", status);
	return true;
}

uint64_t ntf_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------- the daemon */

/* "serving: rank 8, 12345 rows, dim 16" and, when storage has failed,
 * why pushes are refused (what an operator reading `systemctl status`
 * needs first). */
static void describe(struct isvdd *srv, const char *state, char *buf, size_t cap)
{
	const char *why = NULL;
	int at;

	if (srv->model)
		at = snprintf(buf, cap, "%s: rank %zu, %llu rows, dim %zu", state, srv->kmax,
		              (unsigned long long)srv->seq, srv->dim);
	else
		at = snprintf(buf, cap, "%s: rank %llu, no rows yet (dim from the first push)", state,
		              (unsigned long long)srv->cfg->model.rank);
	if (at >= 0 && (size_t)at < cap && srv->sto && sto_failed(srv->sto, &why))
		snprintf(buf + at, cap - (size_t)at, "; storage failed, pushes refused: %s", why);
	for (char *p = buf; (p = strchr(p, '\n')) != NULL;)
		*p = ' ';   /* one line: a newline would start another KEY= */
}

void ntf_ready(struct isvdd *srv)
{
	char s[sizeof srv->ntf.status];

	describe(srv, "serving", s, sizeof s);
	ntf_status_changed(&srv->ntf, s);
	ntf_send(&srv->ntf, "READY=1\nSTATUS=%s", s);
}

void ntf_reloading(struct isvdd *srv)
{
	ntf_send(&srv->ntf, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading: reopening the log, "
	         "re-reading the client keys", (unsigned long long)ntf_monotonic_usec());
}

void ntf_stopping(struct isvdd *srv)
{
	ntf_send(&srv->ntf, "STOPPING=1\nSTATUS=stopping: %llu rows in the model; writing the final "
	         "checkpoint", (unsigned long long)srv->seq);
}

void ntf_recovering(struct isvdd *srv)
{
	const uint64_t now = loop_now_ms();

	if (!ntf_enabled(&srv->ntf))
		return;
	if (srv->ntf_progress_ms && now - srv->ntf_progress_ms < NTF_PROGRESS_EVERY_MS)
		return;
	if (!srv->ntf_progress_ms) {
		ntf_send(&srv->ntf, "STATUS=recovering from %s", srv->cfg->storage.dir);
	} else {
		ntf_send(&srv->ntf, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=recovering from %s: %llu rows so far",
		         (unsigned long long)NTF_EXTEND_USEC, srv->cfg->storage.dir,
		         (unsigned long long)srv->seq);
	}
	srv->ntf_progress_ms = now;
}

/* Timer: WATCHDOG=1 (periodic, half of WATCHDOG_USEC). */
static void on_watchdog_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;

	ntf_send(&srv->ntf, "WATCHDOG=1");
}

/* Timer: STATUS= when what it says changed (rows came, storage failed or
 * healed). */
static void on_status_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;
	char s[sizeof srv->ntf.status];

	describe(srv, "serving", s, sizeof s);
	if (ntf_status_changed(&srv->ntf, s))
		ntf_send(&srv->ntf, "STATUS=%s", s);
}

int ntf_add_timers(struct isvdd *srv, uint64_t now)
{
	const uint64_t wd = ntf_watchdog_period_ms(&srv->ntf);
	int t;

	if (!ntf_enabled(&srv->ntf))
		return 0;
	if ((t = loop_add_timer(srv->loop, NTF_STATUS_EVERY_MS, on_status_timer, srv)) < 0)
		return -1;
	loop_timer_at(srv->loop, t, now + NTF_STATUS_EVERY_MS);
	if (wd) {
		if ((t = loop_add_timer(srv->loop, wd, on_watchdog_timer, srv)) < 0)
			return -1;
		loop_timer_at(srv->loop, t, now);
	}
	return 0;
}
