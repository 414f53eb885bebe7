/*
 * producer.c — libisvd's producer: rows copied into batches by the caller's
 * threads, sent and resent by one thread of the producer's own over the
 * client's pipelined pushes (isvd_client_push_send / push_recv).  The
 * public contract, with the state diagram, is include/isvd/producer.h.
 *
 * DESIGN
 *   A batch (struct pbatch) lives on exactly one of four lists, all under
 *   the one mutex mu:
 *
 *     open ──seal()──► ready ──send_one()──► flight ──on_ack()──► resolved
 *                                 ▲             │                 (pool)
 *                                 └── retry ◄───┘ TIMEOUT or RATE_LIMITED
 *                                                 (the client's retries
 *                                                 spent), before the
 *                                                 delivery deadline
 *
 *   The thread (run()) is the only one that touches the client; it sends
 *   and receives with mu released.  A batch being sent is already on
 *   `flight`, so flush() sees it pending.  Reports go to the callback with
 *   mu released.
 *
 *   INVARIANTS (mu held): rows_in = rows_accepted + rows_duplicate +
 *   rows_failed + pending rows (the rows of open, ready, retry and flight);
 *   retry is in increasing batch number; every numbered unresolved batch
 *   (flight ∪ retry) has a number > last_batch − window, so that the
 *   daemon's duplicate window (ISVD_PRODUCER_MAX_IN_FLIGHT batches per
 *   client) still covers it when it is resent.
 */
#include "isvd/producer.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 4   /* batch buffers kept for reuse */

struct pbatch {
	struct pbatch *next;
	double *rows;                    /* owned: cap doubles */
	size_t cap, nrows, dim;
	uint64_t first;                  /* the row number of its first row */
	uint64_t batch;                  /* valid when numbered */
	bool numbered;
	int64_t first_send_ms;
	unsigned sends;
};

struct plist {
	struct pbatch *head, *tail;
	size_t n;
};

struct isvd_producer {
	struct isvd_client *c;
	int linger_ms, delivery_ms;
	size_t max_rows, max_batches;
	unsigned window;
	isvd_producer_report_fn on_report;
	void *user;

	pthread_mutex_t mu;
	pthread_cond_t wake;             /* the thread: work, flush or close */
	pthread_cond_t changed;          /* pushers and flushers: a batch resolved
	                                    (both on CLOCK_MONOTONIC) */
	pthread_t thread;

	struct pbatch *open;             /* NULL or holding ≥ 1 row */
	int64_t open_since_ms;
	struct plist ready, retry, flight;
	struct pbatch *pool;
	size_t npool;
	uint64_t last_batch;             /* the last number a first send got */
	bool any_numbered;
	unsigned flushers;
	unsigned reporting;              /* callbacks running (on the thread) */
	bool closing;
	int flush_err;                   /* the first failure since flush returned */

	struct isvd_producer_report *errs;   /* failed batches, without on_report */
	size_t nerrs, errs_head, errs_cap;

	struct isvd_producer_stats st;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ lists */

static void list_push(struct plist *l, struct pbatch *b)
{
	b->next = NULL;
	if (l->tail)
		l->tail->next = b;
	else
		l->head = b;
	l->tail = b;
	l->n++;
}

static struct pbatch *list_pop(struct plist *l)
{
	struct pbatch *b = l->head;
	if (b) {
		l->head = b->next;
		if (!l->head)
			l->tail = NULL;
		l->n--;
		b->next = NULL;
	}
	return b;
}

static void list_remove(struct plist *l, struct pbatch *b)
{
	struct pbatch **pp = &l->head, *prev = NULL;
	while (*pp && *pp != b) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	assert(*pp == b);
	*pp = b->next;
	if (l->tail == b)
		l->tail = prev;
	l->n--;
	b->next = NULL;
}

/* Inserts an unsent or numbered batch: numbered ones in number order, ahead
 * of unnumbered ones (which keep their order). */
static void list_insert_sorted(struct plist *l, struct pbatch *b)
{
	struct pbatch **pp = &l->head;
	while (*pp && (*pp)->numbered && (!b->numbered || (*pp)->batch < b->batch))
		pp = &(*pp)->next;
	b->next = *pp;
	*pp = b;
	if (!b->next)
		l->tail = b;
	l->n++;
}

static void list_free(struct plist *l)
{
	struct pbatch *b;
	while ((b = list_pop(l))) {
		free(b->rows);
		free(b);
	}
}

/* ---------------------------------------------------------------- batches */

/* A batch for dim-wide rows, from the pool when one is big enough. */
static struct pbatch *batch_new(struct isvd_producer *p, size_t dim)
{
	size_t need = p->max_rows * dim;
	struct pbatch *b = NULL;

	for (struct pbatch **pp = &p->pool; *pp; pp = &(*pp)->next) {
		if ((*pp)->cap >= need) {
			b = *pp;
			*pp = b->next;
			p->npool--;
			break;
		}
	}
	if (!b) {
		if (p->max_rows > SIZE_MAX / sizeof(double) / dim)
			return NULL;
		b = calloc(1, sizeof *b);
		if (!b)
			return NULL;
		b->rows = malloc(need * sizeof *b->rows);
		if (!b->rows) {
			free(b);
			return NULL;
		}
		b->cap = need;
	}
	double *rows = b->rows;
	size_t cap = b->cap;
	memset(b, 0, sizeof *b);
	b->rows = rows;
	b->cap = cap;
	b->dim = dim;
	return b;
}

static void batch_release(struct isvd_producer *p, struct pbatch *b)
{
	if (p->npool < POOL_MAX) {
		b->next = p->pool;
		p->pool = b;
		p->npool++;
		return;
	}
	free(b->rows);
	free(b);
}

static size_t held(const struct isvd_producer *p)
{
	return p->ready.n + p->retry.n + p->flight.n;
}

/* Moves the open batch to ready (mu held). */
static void seal(struct isvd_producer *p)
{
	if (!p->open)
		return;
	list_push(&p->ready, p->open);
	p->open = NULL;
	pthread_cond_signal(&p->wake);
}

/* The row number of the oldest pending row; UINT64_MAX when none (mu held). */
static uint64_t oldest_pending(const struct isvd_producer *p)
{
	uint64_t m = p->open ? p->open->first : UINT64_MAX;
	const struct plist *ls[] = { &p->ready, &p->retry, &p->flight };
	for (size_t i = 0; i < 3; i++)
		for (const struct pbatch *b = ls[i]->head; b; b = b->next)
			if (b->first < m)
				m = b->first;
	return m;
}

/* The smallest number of a numbered unresolved batch; false when none. */
static bool oldest_unresolved(const struct isvd_producer *p, uint64_t *num)
{
	bool any = false;
	const struct plist *ls[] = { &p->retry, &p->flight };
	for (size_t i = 0; i < 2; i++)
		for (const struct pbatch *b = ls[i]->head; b; b = b->next)
			if (b->numbered && (!any || b->batch < *num)) {
				*num = b->batch;
				any = true;
			}
	return any;
}

/* Whether the thread may send the next batch now (mu held): a resend always
 * fits the window; a first send gets number last_batch + 1, which must stay
 * within window numbers of the oldest unresolved batch. */
static bool can_send(const struct isvd_producer *p)
{
	const struct pbatch *next = p->retry.n ? p->retry.head : p->ready.head;
	uint64_t oldest;

	if (!next)
		return false;
	if (next->numbered)
		return true;
	if (p->flight.n + p->retry.n >= p->window)
		return false;
	if (!p->any_numbered || !oldest_unresolved(p, &oldest))
		return true;
	return p->last_batch + 1 - oldest < p->window;
}

/* ---------------------------------------------------------------- pushing */

void isvd_producer_options_init(struct isvd_producer_options *o)
{
	memset(o, 0, sizeof *o);
	o->linger_ms = ISVD_PRODUCER_DEFAULT_LINGER_MS;
	o->max_rows = ISVD_PRODUCER_DEFAULT_MAX_ROWS;
	o->max_in_flight = ISVD_PRODUCER_MAX_IN_FLIGHT;
	o->max_batches = ISVD_PRODUCER_DEFAULT_BATCHES;
	o->delivery_timeout_ms = ISVD_PRODUCER_DEFAULT_DELIVERY_MS;
}

int isvd_producer_push_rows(struct isvd_producer *p, const double *rows, size_t nrows, size_t dim)
{
	int err = ISVD_CLIENT_OK;

	if (!p || !rows || !nrows || !dim)
		return ISVD_CLIENT_INVALID;
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < nrows; i++) {
		if (p->open && p->open->dim != dim)
			seal(p);             /* the daemon judges each dimension's batch */
		if (!p->open) {
			while (held(p) >= p->max_batches)
				pthread_cond_wait(&p->changed, &p->mu);
			if (!(p->open = batch_new(p, dim))) {
				err = ISVD_CLIENT_NOMEM;
				break;
			}
			p->open->first = p->st.rows_in;
			p->open_since_ms = now_ms();
			pthread_cond_signal(&p->wake);   /* the linger clock starts */
		}
		struct pbatch *b = p->open;
		size_t n = p->max_rows - b->nrows;
		if (n > nrows - i)
			n = nrows - i;
		memcpy(b->rows + b->nrows * dim, rows + i * dim, n * dim * sizeof *rows);
		b->nrows += n;
		p->st.rows_in += n;
		i += n - 1;
		if (b->nrows == p->max_rows)
			seal(p);
	}
	if (p->linger_ms == 0)
		seal(p);
	pthread_mutex_unlock(&p->mu);
	return err;
}

int isvd_producer_push_row(struct isvd_producer *p, const double *row, size_t dim)
{
	return isvd_producer_push_rows(p, row, 1, dim);
}

/* ------------------------------------------------------------- the thread */

/* Records b's outcome (mu held) and fills *r for the callback; b goes back
 * to the pool. */
static void resolve(struct isvd_producer *p, struct pbatch *b, const struct isvd_client_ack *a,
                    int err, const char *why, struct isvd_producer_report *r)
{
	memset(r, 0, sizeof *r);
	r->err = err;
	r->first = b->first;
	r->last = b->first + b->nrows - 1;
	r->batch = b->numbered ? b->batch : 0;
	r->sends = b->sends;
	if (err == ISVD_CLIENT_OK) {
		r->accepted = a->accepted;
		r->seq = a->seq;
		r->duplicate = a->duplicate;
		p->st.batches++;
		if (a->duplicate) {
			p->st.batches_duplicate++;
			p->st.rows_duplicate += b->nrows;
		} else {
			p->st.rows_accepted += b->nrows;
		}
		if (a->seq > p->st.last_seq)
			p->st.last_seq = a->seq;
	} else {
		snprintf(r->message, sizeof r->message, "rows %llu..%llu (batch %llu): %s",
		         (unsigned long long)r->first, (unsigned long long)r->last,
		         (unsigned long long)r->batch, why && *why ? why : isvd_client_strerror(err));
		p->st.batches_failed++;
		p->st.rows_failed += b->nrows;
		if (!p->flush_err)
			p->flush_err = err;
		if (!p->on_report) {
			if (p->nerrs == p->errs_cap) {
				size_t cap = p->errs_cap ? 2 * p->errs_cap : 16;
				struct isvd_producer_report *v = malloc(cap * sizeof *v);
				if (v) {
					for (size_t i = 0; i < p->nerrs; i++)
						v[i] = p->errs[(p->errs_head + i) % p->errs_cap];
					free(p->errs);
					p->errs = v;
					p->errs_cap = cap;
					p->errs_head = 0;
				}
			}
			if (p->nerrs < p->errs_cap)      /* else out of memory: counted only */
				p->errs[(p->errs_head + p->nerrs++) % p->errs_cap] = *r;
		}
	}
	assert(p->st.rows_accepted + p->st.rows_duplicate + p->st.rows_failed <= p->st.rows_in);
	batch_release(p, b);
	pthread_cond_broadcast(&p->changed);
}

/* Hands a report to the callback, mu released around it; flush() waits
 * for reports under way too, so that a flush that returns has seen every
 * callback of the batches it waited for. */
static void report(struct isvd_producer *p, const struct isvd_producer_report *r)
{
	if (!p->on_report)
		return;
	p->reporting++;
	pthread_mutex_unlock(&p->mu);
	p->on_report(r, p->user);
	pthread_mutex_lock(&p->mu);
	p->reporting--;
	pthread_cond_broadcast(&p->changed);
}

/* A batch the client gave up on (code: TIMEOUT, or RATE_LIMITED, when the
 * client then holds its next sends back for the wait the daemon asked):
 * resent later, or failed with code when its delivery deadline has passed
 * (mu held; b is off every list). */
static void retry_or_fail(struct isvd_producer *p, struct pbatch *b, const struct isvd_client_ack *a,
                          int code, const char *why)
{
	/* a batch that never left (unnumbered) goes first among the unsent */
	if (!b->numbered || now_ms() - b->first_send_ms < p->delivery_ms) {
		list_insert_sorted(&p->retry, b);
		return;
	}
	struct isvd_producer_report r;
	char msg[320];
	snprintf(msg, sizeof msg, "not delivered within %d ms of its first send: %s", p->delivery_ms, why);
	resolve(p, b, a, code, msg, &r);
	report(p, &r);
}

/* Sends the next batch (mu held on entry and exit, released while sending). */
static void send_one(struct isvd_producer *p)
{
	struct pbatch *b = p->retry.n ? list_pop(&p->retry) : list_pop(&p->ready);
	struct isvd_client_batch cb = {
		.rows = b->rows, .nrows = b->nrows, .dim = b->dim, .dtype = ISVD_CLIENT_F64,
		.has_batch = b->numbered, .batch = b->batch, .user = b,
	};
	uint64_t num = 0;
	char why[256];

	list_push(&p->flight, b);
	pthread_mutex_unlock(&p->mu);
	int err = isvd_client_push_send(p->c, &cb, &num);
	if (err)
		snprintf(why, sizeof why, "%s", isvd_client_errmsg(p->c));
	pthread_mutex_lock(&p->mu);
	if (err == ISVD_CLIENT_OK) {
		if (b->sends++ == 0) {
			b->first_send_ms = now_ms();
			p->st.batches_sent++;
		} else {
			p->st.resends++;
		}
		if (!b->numbered) {
			b->batch = num;
			b->numbered = true;
			p->last_batch = num;
			p->any_numbered = true;
		}
		return;
	}
	list_remove(&p->flight, b);
	if (err == ISVD_CLIENT_TIMEOUT) {   /* the window stayed full: its acks are queued */
		retry_or_fail(p, b, NULL, err, why);
		return;
	}
	struct isvd_producer_report r;
	resolve(p, b, NULL, err, why, &r);
	report(p, &r);
}

/* Handles one ack (mu held). */
static void on_ack(struct isvd_producer *p, const struct isvd_client_ack *a)
{
	struct pbatch *b = a->user;
	struct isvd_producer_report r;

	list_remove(&p->flight, b);
	if (a->err == ISVD_CLIENT_TIMEOUT || a->err == ISVD_CLIENT_RATE_LIMITED) {
		retry_or_fail(p, b, a, a->err, a->message);
		pthread_cond_broadcast(&p->changed);
		return;
	}
	resolve(p, b, a, a->err, a->message, &r);
	report(p, &r);
}

/* How long to wait for an ack with batches in flight (mu held): until an
 * ack when the window blocks the next send, else until the open batch's
 * linger deadline (a row that opens a batch meanwhile is due no sooner
 * than linger_ms from now). */
static int ack_wait_ms(const struct isvd_producer *p, int64_t now)
{
	if (p->ready.n || p->retry.n)
		return -1;
	if (p->open) {
		int64_t left = p->open_since_ms + p->linger_ms - now;
		return left > 0 ? (int)left : 0;
	}
	return p->linger_ms > 0 ? p->linger_ms : 1;
}

static bool linger_over(const struct isvd_producer *p, int64_t now)
{
	return p->closing || p->flushers || now - p->open_since_ms >= p->linger_ms;
}

/* Waits on cv (a CLOCK_MONOTONIC condition) until deadline_ms at most. */
static void wait_until(struct isvd_producer *p, pthread_cond_t *cv, int64_t deadline_ms)
{
	struct timespec ts = { .tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000 };
	pthread_cond_timedwait(cv, &p->mu, &ts);
}

static void *run(void *arg)
{
	struct isvd_producer *p = arg;
	struct isvd_client_ack a;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		int64_t now = now_ms();
		if (p->open && linger_over(p, now))
			seal(p);
		while (can_send(p))
			send_one(p);
		if (p->flight.n == 0) {
			if (p->ready.n || p->retry.n)
				continue;            /* can_send holds again */
			if (p->closing && !p->open)
				break;
			if (p->open)
				wait_until(p, &p->wake, p->open_since_ms + p->linger_ms);
			else if (!p->closing)
				pthread_cond_wait(&p->wake, &p->mu);
			continue;
		}
		int wait = ack_wait_ms(p, now);
		pthread_mutex_unlock(&p->mu);
		int err = isvd_client_push_recv(p->c, &a, wait);
		pthread_mutex_lock(&p->mu);
		while (err == ISVD_CLIENT_OK) {
			on_ack(p, &a);
			if (!isvd_client_acks_queued(p->c))
				break;
			pthread_mutex_unlock(&p->mu);
			err = isvd_client_push_recv(p->c, &a, 0);
			pthread_mutex_lock(&p->mu);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* ---------------------------------------------------------------- control */

int isvd_producer_create(struct isvd_producer **out, struct isvd_client *client,
                         const struct isvd_producer_options *opts)
{
	struct isvd_producer_options def;
	struct isvd_producer *p;
	pthread_condattr_t ca;

	if (!out)
		return ISVD_CLIENT_INVALID;
	*out = NULL;
	if (!opts) {
		isvd_producer_options_init(&def);
		opts = &def;
	}
	if (!client || opts->linger_ms < 0 || opts->max_in_flight > ISVD_PRODUCER_MAX_IN_FLIGHT ||
	    isvd_client_in_flight(client) || isvd_client_acks_queued(client))
		return ISVD_CLIENT_INVALID;
	if (!(p = calloc(1, sizeof *p)))
		return ISVD_CLIENT_NOMEM;
	p->c = client;
	p->linger_ms = opts->linger_ms;
	p->max_rows = opts->max_rows ? opts->max_rows : ISVD_PRODUCER_DEFAULT_MAX_ROWS;
	p->window = opts->max_in_flight ? opts->max_in_flight : ISVD_PRODUCER_MAX_IN_FLIGHT;
	p->max_batches = opts->max_batches ? opts->max_batches : ISVD_PRODUCER_DEFAULT_BATCHES;
	p->delivery_ms = opts->delivery_timeout_ms > 0 ? opts->delivery_timeout_ms
	                                               : ISVD_PRODUCER_DEFAULT_DELIVERY_MS;
	p->on_report = opts->on_report;
	p->user = opts->user;
	isvd_client_set_ack_callback(client, NULL, NULL);   /* acks come to run() */

	if (pthread_mutex_init(&p->mu, NULL))
		goto fail_free;
	if (pthread_condattr_init(&ca))
		goto fail_mu;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int e1 = pthread_cond_init(&p->wake, &ca);
	int e2 = e1 ? 0 : pthread_cond_init(&p->changed, &ca);
	pthread_condattr_destroy(&ca);
	if (e1)
		goto fail_mu;
	if (e2)
		goto fail_wake;
	if (pthread_create(&p->thread, NULL, run, p))
		goto fail_changed;
	*out = p;
	return ISVD_CLIENT_OK;

fail_changed:
	pthread_cond_destroy(&p->changed);
fail_wake:
	pthread_cond_destroy(&p->wake);
fail_mu:
	pthread_mutex_destroy(&p->mu);
fail_free:
	free(p);
	return ISVD_CLIENT_NOMEM;
}

void isvd_producer_destroy(struct isvd_producer *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	assert(!p->open && !p->ready.n && !p->retry.n && !p->flight.n);
	list_free(&p->ready);
	list_free(&p->retry);
	list_free(&p->flight);
	while (p->pool) {
		struct pbatch *b = p->pool;
		p->pool = b->next;
		free(b->rows);
		free(b);
	}
	free(p->errs);
	pthread_cond_destroy(&p->changed);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int isvd_producer_flush(struct isvd_producer *p, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
	int err = ISVD_CLIENT_OK;

	if (!p)
		return ISVD_CLIENT_INVALID;
	pthread_mutex_lock(&p->mu);
	uint64_t target = p->st.rows_in;
	p->flushers++;
	pthread_cond_signal(&p->wake);
	while (oldest_pending(p) < target || p->reporting) {
		if (deadline == INT64_MAX) {
			pthread_cond_wait(&p->changed, &p->mu);
			continue;
		}
		if (now_ms() >= deadline) {
			err = ISVD_CLIENT_TIMEOUT;
			break;
		}
		wait_until(p, &p->changed, deadline);
	}
	p->flushers--;
	if (!err) {
		err = p->flush_err;
		p->flush_err = ISVD_CLIENT_OK;
	}
	pthread_mutex_unlock(&p->mu);
	return err;
}

void isvd_producer_get_stats(struct isvd_producer *p, struct isvd_producer_stats *st)
{
	pthread_mutex_lock(&p->mu);
	*st = p->st;
	st->rows_pending = st->rows_in - st->rows_accepted - st->rows_duplicate - st->rows_failed;
	pthread_mutex_unlock(&p->mu);
}

int isvd_producer_next_error(struct isvd_producer *p, struct isvd_producer_report *r)
{
	int err = ISVD_CLIENT_INVALID;

	pthread_mutex_lock(&p->mu);
	if (p->nerrs) {
		*r = p->errs[p->errs_head];
		p->errs_head = (p->errs_head + 1) % p->errs_cap;
		p->nerrs--;
		err = ISVD_CLIENT_OK;
	}
	pthread_mutex_unlock(&p->mu);
	return err;
}
