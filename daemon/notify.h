/*
 * notify.h — isvdd's messages to its service manager, in systemd's
 * sd_notify protocol (sd_notify(3)): one datagram of newline-separated
 * KEY=VALUE lines, sent on an AF_UNIX SOCK_DGRAM socket to the address in
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 *
 * The datagram is written here rather than by libsystemd's sd_notify():
 * the protocol is a documented, stable interface that systemd invites
 * services to implement themselves, it takes one sendmsg(), and isvdd then
 * needs no libsystemd at build or run time (nor on systems without
 * systemd, where NOTIFY_SOCKET is simply unset and every call here is a
 * no-op).
 *
 * What isvdd sends, and when (server.c, recover.c):
 *
 *   srv_create()   STATUS=recovering ...  (and EXTEND_TIMEOUT_USEC while a
 *                  long log replays, so a replay that progresses is not
 *                  killed by TimeoutStartSec, but a stuck one still is)
 *   srv_run()      READY=1 + STATUS=serving ...   once recovered and bound
 *   SIGHUP         RELOADING=1 + MONOTONIC_USEC, then READY=1 + STATUS
 *   stop           STOPPING=1 + STATUS=stopping ...
 *   a timer        WATCHDOG=1 every WATCHDOG_USEC/2, from the event loop's
 *                  timer table, so a stuck loop stops the pings and
 *                  systemd restarts the daemon (WatchdogSec= in the unit)
 *   a timer        STATUS=serving ... again whenever it changed
 *
 * Sending is best effort and never blocks: a failure (a manager that went
 * away, or whose socket queue is full) is logged once and never stops or
 * stalls the daemon — the model matters more than one status line.
 */
#ifndef ISVDD_NOTIFY_H
#define ISVDD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"

struct ntf {
	int fd;                      /* -1: not supervised, every send is a no-op */
	struct sockaddr_un addr;
	socklen_t addr_len;
	uint64_t watchdog_usec;      /* 0: no watchdog wanted */
	struct log_sink *log;        /* where a failure is reported (once) */
	bool warned;
	char status[256];            /* the last STATUS= sent (ntf_status_changed()) */
};

/* Parses a NOTIFY_SOCKET value into *addr and *len: an absolute path, or
 * "@name" (abstract namespace: a leading NUL, no terminator counted).
 * Returns 0, or -1 when s is empty, relative, too long for sun_path, or
 * of another family (e.g. "vsock:..."). */
int ntf_parse_address(const char *s, struct sockaddr_un *addr, socklen_t *len);

/* Parses WATCHDOG_USEC and WATCHDOG_PID (either may be NULL) for process
 * pid: the watchdog interval in microseconds, or 0 when there is none —
 * unset, not a positive integer, or WATCHDOG_PID naming another process
 * (sd_watchdog_enabled()'s rules). */
uint64_t ntf_parse_watchdog(const char *usec, const char *pid_text, long pid);

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment
 * and opens the socket.  Without NOTIFY_SOCKET, n is inert.  A value that
 * cannot be used is logged to log and leaves n inert; never fails.  Release
 * with ntf_fini(). */
void ntf_init(struct ntf *n, struct log_sink *log);
/* Closes the socket.  A zeroed or inert n is fine. */
void ntf_fini(struct ntf *n);

/* Whether a service manager listens (NOTIFY_SOCKET was usable). */
bool ntf_enabled(const struct ntf *n);
/* The period to send WATCHDOG=1 at, in ms (half of WATCHDOG_USEC, at least
 * 1), or 0 when no watchdog is wanted or nobody listens. */
uint64_t ntf_watchdog_period_ms(const struct ntf *n);

/* Sends one datagram: the formatted text, e.g. "READY=1\nSTATUS=serving".
 * Returns 0, or -1 when it could not be sent (logged the first time) or
 * is longer than NTF_MAX_MESSAGE bytes.  A no-op returning 0 when inert. */
#define NTF_MAX_MESSAGE 1024
int ntf_send(struct ntf *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether status differs from the last STATUS= recorded, recording it if
 * so (ntf_send() does not look at what it sends). */
bool ntf_status_changed(struct ntf *n, const char *status);

/* CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC= (systemd >= 253
 * pairs it with RELOADING=1; older versions ignore the field). */
uint64_t ntf_monotonic_usec(void);

#endif /* ISVDD_NOTIFY_H */
