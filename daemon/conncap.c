/*
 * conncap.c — open connections per peer address, from the sockets'
 * monitors, and the caps the ZAP handler applies (rule in conncap.h).
 *
 * DESIGN
 *   zmq_socket_monitor() on each of the three sockets, before its bind,
 *   publishes ACCEPTED (a new connection's file descriptor) and
 *   DISCONNECTED (the descriptor of one that closed, for whatever reason:
 *   the peer left, the handshake failed or timed out, ZAP refused it) on
 *   an inproc PAIR that the loop reads (cc_drain(); also a pollable of its
 *   own, so that closes are counted while nobody connects):
 *
 *     libzmq I/O thread ──ACCEPTED fd──► monitor PAIR ──cc_drain()──►
 *        getpeername(fd) → the open table {fd, address}
 *     ... ──DISCONNECTED fd──► ... ──► the entry of fd removed
 *
 *   A descriptor is unique among open connections, so the table is keyed
 *   by it; an ACCEPTED for a descriptor still in the table (its
 *   DISCONNECTED lost) replaces the entry, so the table heals rather than
 *   leaks.  Events must not be lost: the PAIR's receive high-water mark is
 *   0 (unbounded), which bounds its queue by the connections the kernel
 *   lets libzmq accept.  Lookups are linear: the table holds at most the
 *   daemon's open descriptors.
 *
 *   Addresses are written as libzmq writes the ZAP request's (getnameinfo
 *   NI_NUMERICHOST: "127.0.0.1", "::1"), so that the two compare equal.
 */
#include "conncap.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <zmq.h>

#include "config.h"
#include "metrics.h"

struct cc_conn {
	int fd;
	char addr[CC_ADDR_MAX];      /* "" when not an IP connection */
};

struct cc {
	uint64_t per_address, total;
	void *zctx;
	struct log_sink *log;
	struct met *met;
	void *mon[CC_SOCKETS];       /* PAIR sockets, or NULL */
	struct cc_conn *conn;        /* n open connections */
	size_t n, cap;
	uint64_t refused_per_address, refused_total;
};

int cc_create(uint64_t per_address, uint64_t total, void *zctx, struct log_sink *log,
              struct cc **out)
{
	struct cc *c = calloc(1, sizeof *c);

	if (!c) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the connection table: %s", strerror(errno));
		return -1;
	}
	c->per_address = per_address;
	c->total = total;
	c->zctx = zctx;
	c->log = log;
	*out = c;
	return 0;
}

void cc_destroy(struct cc *c)
{
	if (!c)
		return;
	for (int i = 0; i < CC_SOCKETS; i++)
		if (c->mon[i])
			zmq_close(c->mon[i]);
	free(c->conn);
	free(c);
}

void cc_set_metrics(struct cc *c, struct met *met)
{
	c->met = met;
}

int cc_watch(struct cc *c, void *sock, int i, const char *name)
{
	char ep[64];
	const int zero = 0, linger = 0;

	snprintf(ep, sizeof ep, "inproc://isvdd-monitor-%s", name);
	if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0 ||
	    !(c->mon[i] = zmq_socket(c->zctx, ZMQ_PAIR)) ||
	    zmq_setsockopt(c->mon[i], ZMQ_RCVHWM, &zero, sizeof zero) < 0 ||
	    zmq_setsockopt(c->mon[i], ZMQ_LINGER, &linger, sizeof linger) < 0 ||
	    zmq_connect(c->mon[i], ep) < 0) {
		log_msg(c->log, CFG_LOG_ERROR, "%s socket: cannot monitor its connections (%s): %s", name,
		        ep, zmq_strerror(errno));
		return -1;
	}
	return 0;
}

void *cc_monitor_socket(const struct cc *c, int i)
{
	return c && i >= 0 && i < CC_SOCKETS ? c->mon[i] : NULL;
}

static long find_fd(const struct cc *c, int fd)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->conn[i].fd == fd)
			return (long)i;
	return -1;
}

static void peer_of(int fd, char addr[CC_ADDR_MAX])
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	addr[0] = '\0';
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		snprintf(addr, CC_ADDR_MAX, "?");   /* closed already: its DISCONNECTED follows */
	else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
		getnameinfo((struct sockaddr *)&ss, len, addr, CC_ADDR_MAX, NULL, 0, NI_NUMERICHOST);
}

static void on_accepted(struct cc *c, int fd)
{
	long i = find_fd(c, fd);

	if (i < 0) {
		if (c->n == c->cap) {
			size_t nc = c->cap ? 2 * c->cap : 64;
			struct cc_conn *p = realloc(c->conn, nc * sizeof *p);
			if (!p) {   /* not counted: the caps are then lenient, never wrong the other way */
				log_msg(c->log, CFG_LOG_ERROR, "connection table: %s", strerror(errno));
				return;
			}
			c->conn = p;
			c->cap = nc;
		}
		i = (long)c->n++;
	}
	c->conn[i].fd = fd;
	peer_of(fd, c->conn[i].addr);
}

static void on_disconnected(struct cc *c, int fd)
{
	long i = find_fd(c, fd);

	if (i >= 0)
		c->conn[i] = c->conn[--c->n];
}

void cc_drain(struct cc *c)
{
	if (!c)
		return;
	for (int s = 0; s < CC_SOCKETS; s++) {
		if (!c->mon[s])
			continue;
		for (;;) {
			zmq_msg_t ev, ep;
			zmq_msg_init(&ev);
			if (zmq_msg_recv(&ev, c->mon[s], ZMQ_DONTWAIT) < 0) {
				zmq_msg_close(&ev);
				break;
			}
			/* frame 1: uint16 event, uint32 value (the fd); frame 2: the endpoint */
			if (zmq_msg_more(&ev)) {
				zmq_msg_init(&ep);
				zmq_msg_recv(&ep, c->mon[s], 0);
				zmq_msg_close(&ep);
			}
			if (zmq_msg_size(&ev) == 6) {
				const uint8_t *d = zmq_msg_data(&ev);
				uint16_t event;
				uint32_t value;
				memcpy(&event, d, 2);
				memcpy(&value, d + 2, 4);
				if (event == ZMQ_EVENT_ACCEPTED)
					on_accepted(c, (int)value);
				else if (event == ZMQ_EVENT_DISCONNECTED)
					on_disconnected(c, (int)value);
			}
			zmq_msg_close(&ev);
		}
	}
	met_connections(c->met, c->n, c->refused_per_address, c->refused_total);
}

enum cc_verdict cc_admit(struct cc *c, const char *addr, size_t len)
{
	if (!c)
		return CC_ADMIT;
	cc_drain(c);
	enum cc_verdict v = CC_ADMIT;
	if (c->total && c->n > c->total) {
		v = CC_TOTAL;
	} else if (c->per_address && len > 0 && addr[0] != ':' &&
	           !(len >= 9 && !memcmp(addr, "localhost", 9))) {   /* ipc: "localhost:uid:gid:pid" */
		uint64_t same = 0;
		for (size_t i = 0; i < c->n; i++)
			if (strlen(c->conn[i].addr) == len && !memcmp(c->conn[i].addr, addr, len))
				same++;
		if (same > c->per_address)
			v = CC_PER_ADDRESS;
	}
	if (v == CC_PER_ADDRESS)
		c->refused_per_address++;
	else if (v == CC_TOTAL)
		c->refused_total++;
	if (v != CC_ADMIT)
		met_connections(c->met, c->n, c->refused_per_address, c->refused_total);
	return v;
}

void cc_get_counts(const struct cc *c, struct cc_counts *out)
{
	memset(out, 0, sizeof *out);
	if (!c)
		return;
	out->open = c->n;
	out->refused_per_address = c->refused_per_address;
	out->refused_total = c->refused_total;
}
