/*
 * gate.c — the gatekeeper thread (see gate.h for why it exists).
 *
 * DESIGN
 *   One zmq_poll() over, in this order: the control PAIR (commands from
 *   the loop thread), the ZAP REP socket (sec_zap_serve()), the three
 *   socket monitors (cc_drain()).  Every turn serves what is ready under
 *   the gate's mutex, which gate_counts() takes too, so the loop's
 *   once-a-minute summary reads counts no handshake is changing.
 *
 *     loop thread ──"reload"/"stop"──► control PAIR ──► gate thread
 *                 ◄───────"ok"──────────────────────┘
 *
 *   Commands are answered, so gate_reload() returns once the new key sets
 *   are in force and gate_stop() once the thread will touch nothing more.
 *   The thread blocks every signal: they are the loop thread's to see
 *   (zmq_poll returns EINTR there).
 */
#include "gate.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#define GATE_CTL_ENDPOINT "inproc://isvdd-gate"
#define GATE_ASK_MS 10000   /* a command's answer, at most (a thread that broke gives none) */

struct gate {
	struct sec *sec;
	struct cc *cc;
	struct log_sink *log;
	void *ctl_loop;       /* the loop thread's end of the control PAIR */
	void *ctl_gate;       /* the gate thread's end */
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;   /* held while a turn serves, and by gate_counts() */
};

/* One command from the loop: "reload" or "stop"; answered "ok".  Returns
 * false on "stop". */
static bool command(struct gate *g)
{
	char cmd[16] = "";
	int n = zmq_recv(g->ctl_gate, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);

	if (n < 0)
		return true;
	cmd[n < (int)sizeof cmd - 1 ? n : (int)sizeof cmd - 1] = '\0';
	bool go_on = strcmp(cmd, "stop") != 0;
	if (!strcmp(cmd, "reload")) {
		pthread_mutex_lock(&g->mu);
		sec_reload(g->sec);
		pthread_mutex_unlock(&g->mu);
	}
	zmq_send(g->ctl_gate, "ok", 2, 0);
	return go_on;
}

static void *run(void *arg)
{
	struct gate *g = arg;
	zmq_pollitem_t items[2 + CC_SOCKETS];
	int n = 0;

	items[n++] = (zmq_pollitem_t){ g->ctl_gate, 0, ZMQ_POLLIN, 0 };
	items[n++] = (zmq_pollitem_t){ sec_zap_socket(g->sec), 0, ZMQ_POLLIN, 0 };
	for (int i = 0; i < CC_SOCKETS; i++)
		if (cc_monitor_socket(g->cc, i))
			items[n++] = (zmq_pollitem_t){ cc_monitor_socket(g->cc, i), 0, ZMQ_POLLIN, 0 };
	for (;;) {
		if (zmq_poll(items, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_msg(g->log, CFG_LOG_ERROR, "the gate thread's zmq_poll: %s; handshakes "
			        "are no longer answered", zmq_strerror(errno));
			break;
		}
		pthread_mutex_lock(&g->mu);
		if (items[1].revents & ZMQ_POLLIN)
			sec_zap_serve(g->sec);
		for (int i = 2; i < n; i++)
			if (items[i].revents & ZMQ_POLLIN) {
				cc_drain(g->cc);   /* drains every monitor */
				break;
			}
		pthread_mutex_unlock(&g->mu);
		if ((items[0].revents & ZMQ_POLLIN) && !command(g))
			return NULL;
	}
	for (;;) {   /* broken: still answer the loop's commands, so that stop returns */
		if (zmq_poll(items, 1, -1) < 0 && errno != EINTR)
			return NULL;   /* ask() then gives up after GATE_ASK_MS */
		if ((items[0].revents & ZMQ_POLLIN) && !command(g))
			return NULL;
	}
}

int gate_start(void *zctx, struct sec *sec, struct cc *cc, struct log_sink *log,
               struct gate **out)
{
	struct gate *g = calloc(1, sizeof *g);
	sigset_t all, old;
	int err;

	if (!g) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the gate thread's state: %s", strerror(errno));
		return -1;
	}
	g->sec = sec;
	g->cc = cc;
	g->log = log;
	pthread_mutex_init(&g->mu, NULL);
	g->ctl_loop = zmq_socket(zctx, ZMQ_PAIR);
	g->ctl_gate = zmq_socket(zctx, ZMQ_PAIR);
	if (!g->ctl_loop || !g->ctl_gate || zmq_bind(g->ctl_gate, GATE_CTL_ENDPOINT) < 0 ||
	    zmq_connect(g->ctl_loop, GATE_CTL_ENDPOINT) < 0) {
		log_msg(log, CFG_LOG_ERROR, "cannot set up the gate thread's control pair: %s",
		        zmq_strerror(errno));
		gate_stop(g);
		return -1;
	}
	const int ask_ms = GATE_ASK_MS;
	zmq_setsockopt(g->ctl_loop, ZMQ_RCVTIMEO, &ask_ms, sizeof ask_ms);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);   /* inherited by the thread */
	err = pthread_create(&g->thread, NULL, run, g);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_msg(log, CFG_LOG_ERROR, "cannot start the gate thread: %s", strerror(err));
		gate_stop(g);
		return -1;
	}
	g->started = true;
	*out = g;
	return 0;
}

/* Sends cmd and waits for the thread's "ok". */
static void ask(struct gate *g, const char *cmd)
{
	char ok[4];

	if (zmq_send(g->ctl_loop, cmd, strlen(cmd), 0) < 0)
		return;
	while (zmq_recv(g->ctl_loop, ok, sizeof ok, 0) < 0 && errno == EINTR)
		;
}

void gate_reload(struct gate *g)
{
	ask(g, "reload");
}

void gate_counts(struct gate *g, struct sec_counts *sc, struct cc_counts *cn)
{
	pthread_mutex_lock(&g->mu);
	sec_get_counts(g->sec, sc);
	cc_get_counts(g->cc, cn);
	pthread_mutex_unlock(&g->mu);
}

void gate_stop(struct gate *g)
{
	if (!g)
		return;
	if (g->started) {
		ask(g, "stop");
		pthread_join(g->thread, NULL);
	}
	if (g->ctl_loop)
		zmq_close(g->ctl_loop);
	if (g->ctl_gate)
		zmq_close(g->ctl_gate);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
