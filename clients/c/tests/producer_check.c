/*
 * producer_check.c — isvd-producer-check, a C program that exercises
 * libisvd's producer (include/isvd/producer.h) against a real isvdd;
 * tests/integration/test_producer.py starts the daemon and drives it.
 * Every mode prints one JSON summary line on stdout (the producer's counts
 * and `failures`) and exits 0 only when its own checks held; failures are
 * explained on stderr.
 *
 *   stream   --rows N single-row pushes (push_row), then flush; with
 *            --pause-at M it prints "paused" once M rows are pushed and
 *            more than M/2 acknowledged, and waits for a line on standard
 *            input, so a test can kill and restart the daemon mid-stream
 *   errors   a row of another dimension and a row with +Inf among good
 *            rows: each refused batch is reported with its rows' range,
 *            the others applied; flush returns the first failure once
 *   flush    batches by size and by flush (linger 10 min): full batches
 *            go out, the open one waits until flush(), after which the
 *            daemon holds every row; flush(0) with a row pending times out
 *   linger   one row and nothing else: it is sent once linger_ms passed
 *   threads  4 threads pushing at once; the counts add up
 *
 * Rows are deterministic: value j of the g-th row overall (g from 1) is
 * sin(0.37·g·(j+1) + j), as in isvd-client-check.
 */
#include "isvd/producer.h"

#include "check.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
	struct isvd_client_options o;
	const char *mode;
	size_t rows, dim, pause_at;
	int linger_ms;
};

static void fill(double *row, uint64_t g, size_t dim)
{
	for (size_t j = 0; j < dim; j++)
		row[j] = value(g, j);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static struct isvd_producer_stats stats(struct isvd_producer *p)
{
	struct isvd_producer_stats s;
	isvd_producer_get_stats(p, &s);
	return s;
}

/* Waits (bounded: 60 s) until the producer has acknowledged at least n rows. */
static bool wait_accepted(struct isvd_producer *p, uint64_t n)
{
	for (int i = 0; i < 6000; i++) {
		struct isvd_producer_stats s = stats(p);
		if (s.rows_accepted + s.rows_duplicate >= n)
			return true;
		sleep_ms(10);
	}
	return false;
}

static void check_sums(const struct isvd_producer_stats *s)
{
	CHECK(s->rows_in == s->rows_accepted + s->rows_duplicate + s->rows_failed + s->rows_pending,
	      "rows_in %" PRIu64 " != %" PRIu64 " + %" PRIu64 " + %" PRIu64 " + %" PRIu64, s->rows_in,
	      s->rows_accepted, s->rows_duplicate, s->rows_failed, s->rows_pending);
}

static void print_stats(struct isvd_producer *p, const char *extra)
{
	struct isvd_producer_stats s = stats(p);
	check_sums(&s);
	printf("{\"rows_in\":%" PRIu64 ",\"rows_accepted\":%" PRIu64 ",\"rows_duplicate\":%" PRIu64
	       ",\"rows_failed\":%" PRIu64 ",\"rows_pending\":%" PRIu64 ",\"batches\":%" PRIu64
	       ",\"batches_duplicate\":%" PRIu64 ",\"batches_failed\":%" PRIu64 ",\"batches_sent\":%" PRIu64
	       ",\"resends\":%" PRIu64 ",\"last_seq\":%" PRIu64 ",\"failures\":%d%s}\n",
	       s.rows_in, s.rows_accepted, s.rows_duplicate, s.rows_failed, s.rows_pending, s.batches,
	       s.batches_duplicate, s.batches_failed, s.batches_sent, s.resends, s.last_seq, failures,
	       extra ? extra : "");
	fflush(stdout);
}

/* The daemon's rows_seen, through a second client (the producer owns the first). */
static uint64_t daemon_rows(const struct opts *op)
{
	struct isvd_client *q;
	struct isvd_client_info in;
	uint64_t n = UINT64_MAX;

	if (isvd_client_create(&q, &op->o))
		return n;
	if (!isvd_client_info(q, &in))
		n = in.rows_seen;
	isvd_client_info_fini(&in);
	isvd_client_destroy(q);
	return n;
}

/* ------------------------------------------------------------------ stream */

static int mode_stream(struct isvd_client *c, const struct opts *op)
{
	struct isvd_producer_options po;
	struct isvd_producer *p;
	double row[256];
	char line[64];
	int err;

	if (op->dim > 256)
		return fprintf(stderr, "stream: --dim must be <= 256\n"), 2;
	isvd_producer_options_init(&po);
	po.linger_ms = op->linger_ms;
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	for (size_t i = 0; i < op->rows; i++) {
		if (op->pause_at && i == op->pause_at) {
			CHECK(wait_accepted(p, op->pause_at / 2), "rows acknowledged before the pause");
			printf("paused\n");
			fflush(stdout);
			if (!fgets(line, sizeof line, stdin))
				return fprintf(stderr, "stream: standard input closed\n"), 2;
		}
		fill(row, 1 + i, op->dim);
		err = isvd_producer_push_row(p, row, op->dim);
		CHECK(!err, "push_row %zu: %s", i, isvd_client_err_name(err));
	}
	err = isvd_producer_flush(p, -1);
	CHECK(!err, "flush: %s", isvd_client_err_name(err));
	struct isvd_producer_stats s = stats(p);
	CHECK(s.rows_in == op->rows && s.rows_pending == 0 && s.rows_failed == 0,
	      "in %" PRIu64 " pending %" PRIu64 " failed %" PRIu64, s.rows_in, s.rows_pending, s.rows_failed);
	CHECK(s.rows_accepted + s.rows_duplicate == op->rows, "delivered %" PRIu64,
	      s.rows_accepted + s.rows_duplicate);
	CHECK(s.batches == s.batches_sent, "batches %" PRIu64 " sent %" PRIu64, s.batches, s.batches_sent);
	print_stats(p, NULL);
	isvd_producer_destroy(p);
	return failures ? 1 : 0;
}

/* ------------------------------------------------------------------ errors */

struct seen {
	pthread_mutex_t mu;
	struct isvd_producer_report r[16];
	size_t n, ok;
};

static void on_report(const struct isvd_producer_report *r, void *user)
{
	struct seen *s = user;
	pthread_mutex_lock(&s->mu);
	if (r->err == ISVD_CLIENT_OK)
		s->ok++;
	else if (s->n < 16)
		s->r[s->n++] = *r;
	pthread_mutex_unlock(&s->mu);
}

static int mode_errors(struct isvd_client *c, const struct opts *op)
{
	struct seen seen = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct isvd_producer_options po;
	struct isvd_producer *p;
	struct isvd_producer_report r;
	double row[8];
	int err;

	isvd_producer_options_init(&po);
	po.linger_ms = 600000;
	po.max_rows = 10;
	po.on_report = on_report;
	po.user = &seen;
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	/* rows 0..9 | 10 (7 values) | 11..20 (17 holds +Inf) | 21..24 */
	for (uint64_t i = 0; i < 25; i++) {
		fill(row, 1 + i, 8);
		if (i == 17)
			row[3] = INFINITY;
		err = isvd_producer_push_row(p, row, i == 10 ? 7 : 8);
		CHECK(!err, "push_row %" PRIu64 ": %s", i, isvd_client_err_name(err));
	}
	err = isvd_producer_flush(p, -1);
	CHECK(err == ISVD_CLIENT_DIM_MISMATCH, "flush: %s (the first failure)", isvd_client_err_name(err));
	err = isvd_producer_flush(p, -1);
	CHECK(err == ISVD_CLIENT_OK, "a second flush: %s", isvd_client_err_name(err));
	pthread_mutex_lock(&seen.mu);
	CHECK(seen.n == 2 && seen.ok == 2, "%zu failed and %zu delivered reports", seen.n, seen.ok);
	if (seen.n == 2) {
		CHECK(seen.r[0].err == ISVD_CLIENT_DIM_MISMATCH && seen.r[0].first == 10 && seen.r[0].last == 10,
		      "first report: %s rows %" PRIu64 "..%" PRIu64, isvd_client_err_name(seen.r[0].err),
		      seen.r[0].first, seen.r[0].last);
		CHECK(seen.r[1].err == ISVD_CLIENT_NON_FINITE && seen.r[1].first == 11 && seen.r[1].last == 20,
		      "second report: %s rows %" PRIu64 "..%" PRIu64, isvd_client_err_name(seen.r[1].err),
		      seen.r[1].first, seen.r[1].last);
		CHECK(strstr(seen.r[1].message, "rows 11..20") != NULL, "message: %s", seen.r[1].message);
		fprintf(stderr, "reported: %s\n", seen.r[1].message);
	}
	pthread_mutex_unlock(&seen.mu);
	CHECK(isvd_producer_next_error(p, &r) == ISVD_CLIENT_INVALID, "reports went to the callback");
	struct isvd_producer_stats s = stats(p);
	CHECK(s.rows_accepted == 14 && s.rows_failed == 11 && s.batches_failed == 2 && s.batches == 2,
	      "accepted %" PRIu64 " failed %" PRIu64, s.rows_accepted, s.rows_failed);
	uint64_t seen_rows = daemon_rows(op);
	CHECK(seen_rows == 14, "the daemon holds %" PRIu64 " rows", seen_rows);
	print_stats(p, NULL);
	isvd_producer_destroy(p);

	/* without a callback, failures queue for next_error */
	isvd_producer_options_init(&po);
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	fill(row, 1, 8);
	isvd_producer_push_row(p, row, 7);
	err = isvd_producer_flush(p, -1);
	CHECK(err == ISVD_CLIENT_DIM_MISMATCH, "flush: %s", isvd_client_err_name(err));
	err = isvd_producer_next_error(p, &r);
	CHECK(!err && r.err == ISVD_CLIENT_DIM_MISMATCH && r.first == 0 && r.last == 0 && r.batch != 0,
	      "next_error: %s %s", isvd_client_err_name(err), isvd_client_err_name(r.err));
	CHECK(isvd_producer_next_error(p, &r) == ISVD_CLIENT_INVALID, "one report only");
	isvd_producer_destroy(p);
	return failures ? 1 : 0;
}

/* ------------------------------------------------------------------- flush */

static int mode_flush(struct isvd_client *c, const struct opts *op)
{
	struct isvd_producer_options po;
	struct isvd_producer *p;
	double row[5];
	int err;

	isvd_producer_options_init(&po);
	po.linger_ms = 600000;
	po.max_rows = 1000;
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	CHECK(isvd_producer_flush(p, 0) == ISVD_CLIENT_OK, "flush with nothing pushed");
	for (uint64_t i = 0; i < 2500; i++) {
		fill(row, 1 + i, 5);
		isvd_producer_push_row(p, row, 5);
	}
	CHECK(wait_accepted(p, 2000), "two full batches delivered");
	sleep_ms(200);
	struct isvd_producer_stats s = stats(p);
	CHECK(s.batches == 2 && s.rows_accepted == 2000 && s.rows_pending == 500,
	      "batches %" PRIu64 " accepted %" PRIu64 " pending %" PRIu64 " (the third lingers)",
	      s.batches, s.rows_accepted, s.rows_pending);
	err = isvd_producer_flush(p, 0);
	CHECK(err == ISVD_CLIENT_TIMEOUT, "flush(0) with rows pending: %s", isvd_client_err_name(err));
	err = isvd_producer_flush(p, 30000);
	CHECK(err == ISVD_CLIENT_OK, "flush: %s", isvd_client_err_name(err));
	s = stats(p);
	CHECK(s.batches == 3 && s.rows_accepted == 2500 && s.rows_pending == 0,
	      "after flush: batches %" PRIu64 " accepted %" PRIu64, s.batches, s.rows_accepted);
	uint64_t n = daemon_rows(op);
	CHECK(n == 2500, "after flush the daemon holds %" PRIu64 " rows", n);
	print_stats(p, NULL);
	isvd_producer_destroy(p);
	return failures ? 1 : 0;
}

/* ------------------------------------------------------------------ linger */

static int mode_linger(struct isvd_client *c, const struct opts *op)
{
	struct isvd_producer_options po;
	struct isvd_producer *p;
	double row[5];
	int err;

	isvd_producer_destroy(NULL);
	isvd_producer_options_init(&po);
	CHECK(po.linger_ms == 5 && po.max_rows == 1024 && po.max_in_flight == 8 &&
	      po.delivery_timeout_ms == 120000, "defaults");
	po.max_in_flight = ISVD_PRODUCER_MAX_IN_FLIGHT + 1;
	CHECK(isvd_producer_create(&p, c, &po) == ISVD_CLIENT_INVALID && !p, "a window over 8");
	isvd_producer_options_init(&po);
	po.linger_ms = -1;
	CHECK(isvd_producer_create(&p, c, &po) == ISVD_CLIENT_INVALID && !p, "a negative linger");

	isvd_producer_options_init(&po);
	po.linger_ms = op->linger_ms;
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	CHECK(isvd_producer_push_row(p, NULL, 5) == ISVD_CLIENT_INVALID, "NULL row");
	CHECK(isvd_producer_push_rows(p, row, 1, 0) == ISVD_CLIENT_INVALID, "dim 0");
	fill(row, 1, 5);
	err = isvd_producer_push_row(p, row, 5);
	CHECK(!err, "push_row: %s", isvd_client_err_name(err));
	/* no further call but get_stats: the thread sends it after linger_ms */
	CHECK(wait_accepted(p, 1), "a lone row delivered after its linger");
	uint64_t n = daemon_rows(op);
	CHECK(n == 1, "the daemon holds %" PRIu64 " rows", n);
	print_stats(p, NULL);
	isvd_producer_destroy(p);
	return failures ? 1 : 0;
}

/* ----------------------------------------------------------------- threads */

struct feeder {
	struct isvd_producer *p;
	uint64_t first, n;
	size_t dim;
	int errors;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	double rows[3 * 16];
	for (uint64_t i = 0; i < f->n; i++) {
		fill(rows, f->first + i, f->dim);
		if (isvd_producer_push_row(f->p, rows, f->dim))
			f->errors++;
	}
	/* and a few rows at once */
	for (size_t k = 0; k < 3; k++)
		fill(rows + k * f->dim, f->first + f->n + k, f->dim);
	if (isvd_producer_push_rows(f->p, rows, 3, f->dim))
		f->errors++;
	return NULL;
}

static int mode_threads(struct isvd_client *c, const struct opts *op)
{
	struct isvd_producer_options po;
	struct isvd_producer *p;
	struct feeder f[4];
	pthread_t t[4];
	int err;

	if (op->dim > 16)
		return fprintf(stderr, "threads: --dim must be <= 16\n"), 2;
	isvd_producer_options_init(&po);
	po.linger_ms = 2;
	po.max_rows = 256;
	if ((err = isvd_producer_create(&p, c, &po)))
		return fprintf(stderr, "producer: %s\n", isvd_client_strerror(err)), 2;
	uint64_t per = op->rows / 4;
	for (int i = 0; i < 4; i++) {
		f[i] = (struct feeder){ .p = p, .first = 1 + (uint64_t)i * (per + 3), .n = per, .dim = op->dim };
		pthread_create(&t[i], NULL, feed, &f[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(f[i].errors == 0, "thread %d: %d pushes failed", i, f[i].errors);
	}
	err = isvd_producer_flush(p, -1);
	CHECK(!err, "flush: %s", isvd_client_err_name(err));
	struct isvd_producer_stats s = stats(p);
	CHECK(s.rows_in == 4 * (per + 3) && s.rows_accepted == s.rows_in && s.rows_pending == 0,
	      "in %" PRIu64 " accepted %" PRIu64, s.rows_in, s.rows_accepted);
	print_stats(p, NULL);
	isvd_producer_destroy(p);
	return failures ? 1 : 0;
}

/* -------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	struct opts op = { .rows = 100000, .dim = 8, .linger_ms = 5 };
	struct isvd_client *c;
	int rc;

	isvd_client_options_init(&op.o);
	if (argc < 2 || !strcmp(argv[1], "--help")) {
		fprintf(argc < 2 ? stderr : stdout,
		        "usage: isvd-producer-check stream|errors|flush|linger|threads [--ingest EP] "
		        "[--query EP] [--publish EP] [--timeout-ms N] [--retries N] [--rows N] [--dim N] "
		        "[--linger-ms N] [--pause-at N]\n");
		return argc < 2 ? 2 : 0;
	}
	op.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return fprintf(stderr, "%s wants a value\n", a), 2;
		i++;
		if (client_option(&op.o, a, v))
			continue;
		if (!strcmp(a, "--rows")) op.rows = num(v);
		else if (!strcmp(a, "--dim")) op.dim = num(v);
		else if (!strcmp(a, "--linger-ms")) op.linger_ms = (int)num(v);
		else if (!strcmp(a, "--pause-at")) op.pause_at = num(v);
		else return fprintf(stderr, "unknown option %s\n", a), 2;
	}
	if (op.rows == 0 || op.dim == 0)
		return fprintf(stderr, "--rows and --dim must be positive\n"), 2;
	if ((rc = isvd_client_create(&c, &op.o))) {
		fprintf(stderr, "create: %s\n", isvd_client_strerror(rc));
		return 2;
	}
	if (!strcmp(op.mode, "stream"))
		rc = mode_stream(c, &op);
	else if (!strcmp(op.mode, "errors"))
		rc = mode_errors(c, &op);
	else if (!strcmp(op.mode, "flush"))
		rc = mode_flush(c, &op);
	else if (!strcmp(op.mode, "linger"))
		rc = mode_linger(c, &op);
	else if (!strcmp(op.mode, "threads"))
		rc = mode_threads(c, &op);
	else {
		fprintf(stderr, "unknown mode %s\n", op.mode);
		rc = 2;
	}
	isvd_client_destroy(c);
	return rc;
}
