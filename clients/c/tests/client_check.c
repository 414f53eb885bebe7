/*
 * client_check.c — isvd-client-check, a C program that exercises libisvd
 * against a real isvdd; tests/integration/test_c_client.py starts the daemon
 * and drives it.  Every mode prints one JSON summary line on stdout and
 * exits 0 only when its own checks held; failures are explained on stderr.
 *
 *   api       every call once: ping, info, push (f64, f32, explicit batch,
 *             errors), project (scores, u), reconstruct, factors,
 *             checkpoint, subscribe, error names; checks values itself
 *   pipeline  --batches N pushes of --rows R rows, --in-flight K at a time,
 *             acks read with push_recv (or --callback); every ack counted;
 *             --pause-after M as for push (after flushing the first M)
 *   push      N synchronous pushes; with --pause-after M it prints "paused"
 *             after M pushes and waits for a line on standard input, so a
 *             test can stall or restart the daemon before the next push
 *
 * Rows are deterministic: value j of the g-th row overall (g from 1) is
 * sin(0.37·g·(j+1) + j), so a test can recompute what was sent.
 */
#include "isvd/client.h"

#include "check.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
	struct isvd_client_options o;
	const char *mode;
	size_t batches, rows, dim, pause_after;
	unsigned in_flight;
	bool callback;
};

static void fill(double *rows, uint64_t first, size_t n, size_t dim)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < dim; j++)
			rows[i * dim + j] = value(first + i, j);
}

static void print_stats(struct isvd_client *c, const char *extra)
{
	struct isvd_client_stats st;
	isvd_client_get_stats(c, &st);
	printf("{\"requests\":%" PRIu64 ",\"resends\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"acks\":%" PRIu64
	       ",\"duplicates\":%" PRIu64 ",\"failures\":%d%s}\n",
	       st.requests, st.resends, st.reconnects, st.acks, st.duplicates, failures, extra);
	fflush(stdout);
}

/* ---------------------------------------------------------------------- api */

static int on_snap(const struct isvd_client_snapshot *s, void *user)
{
	int *n = user;
	(*n)++;
	CHECK(s->seq > 0, "snapshot seq %" PRIu64, s->seq);
	return 0;
}

static int mode_api(struct isvd_client *c, const struct opts *op)
{
	const size_t n = op->dim, r = 6;
	double rows[6 * 64];
	float rowsf[2 * 64];
	char version[64];
	uint64_t proto = 0, seq = 0;
	struct isvd_client_ack ack;
	int err;

	if (n > 64 || n < 4)
		return fprintf(stderr, "api: --dim must be in 4..64\n"), 2;

	/* names and texts */
	CHECK(!strcmp(isvd_client_err_name(ISVD_CLIENT_DIM_MISMATCH), "DIM_MISMATCH"), "name");
	CHECK(!strcmp(isvd_client_err_name(ISVD_CLIENT_TIMEOUT), "TIMEOUT"), "name");
	CHECK(!strcmp(isvd_client_err_name(999), "UNKNOWN"), "name");
	CHECK(*isvd_client_strerror(ISVD_CLIENT_NOMEM), "text");
	isvd_client_destroy(NULL);
	CHECK(isvd_client_endpoint(c, "query") != NULL && isvd_client_endpoint(c, "nope") == NULL, "endpoint");

	err = isvd_client_ping(c, version, sizeof version, &proto);
	CHECK(!err && proto == 1 && strchr(version, '.'), "ping: %s %s", isvd_client_err_name(err),
	      isvd_client_errmsg(c));

	struct isvd_client_info in;
	err = isvd_client_info(c, &in);
	CHECK(!err && in.rows_seen == 0 && in.nsigma == 0, "empty info: %s", isvd_client_err_name(err));
	isvd_client_info_fini(&in);

	struct isvd_client_factors fa;
	err = isvd_client_factors(c, &fa);
	CHECK(err == ISVD_CLIENT_NOT_READY && *isvd_client_errmsg(c), "factors before rows: %s",
	      isvd_client_err_name(err));
	CHECK(fa.sigma == NULL && fa.vt.data == NULL, "failed call leaves the result zeroed");
	isvd_client_factors_fini(&fa);

	/* rank-3 rows: combinations of three fixed directions */
	for (size_t i = 0; i < r; i++)
		for (size_t j = 0; j < n; j++)
			rows[i * n + j] = (double)(i + 1) * value(1, j) + cos((double)i) * value(2, j) +
			                  (double)(i % 2) * value(3, j);
	err = isvd_client_push(c, rows, r, n, &ack);
	CHECK(!err && ack.accepted == r && ack.seq == r && !ack.duplicate, "push f64: %s %s",
	      isvd_client_err_name(err), isvd_client_errmsg(c));
	uint64_t b1 = ack.batch;

	for (size_t i = 0; i < 2; i++)
		for (size_t j = 0; j < n; j++)
			rowsf[i * n + j] = (float)rows[i * n + j];
	err = isvd_client_push_f32(c, rowsf, 2, n, &ack);
	CHECK(!err && ack.accepted == 2 && ack.seq == r + 2 && ack.batch == b1 + 1, "push f32: %s",
	      isvd_client_err_name(err));

	/* an explicit (client, batch) sent twice: applied once */
	struct isvd_client_batch b = { .rows = rows, .nrows = 1, .dim = n, .client = "api-explicit",
	                               .has_batch = true, .batch = 42 };
	err = isvd_client_push_batch(c, &b, &ack);
	CHECK(!err && !ack.duplicate && ack.seq == r + 3 && ack.batch == 42, "explicit batch");
	err = isvd_client_push_batch(c, &b, &ack);
	CHECK(!err && ack.duplicate && ack.accepted == 0 && ack.seq == r + 3, "resent batch is a duplicate");

	/* wrong dimension: the daemon's code and message */
	err = isvd_client_push(c, rows, 1, n - 1, &ack);
	CHECK(err == ISVD_CLIENT_DIM_MISMATCH && ack.err == err && strlen(ack.message) > 0 &&
	      !strcmp(isvd_client_errmsg(c), ack.message),
	      "dim mismatch: %s '%s'", isvd_client_err_name(err), isvd_client_errmsg(c));
	err = isvd_client_push(c, rows, 0, n, NULL);
	CHECK(err == ISVD_CLIENT_INVALID, "empty push is INVALID locally");
	rows[0] = INFINITY;
	err = isvd_client_push(c, rows, 1, n, NULL);
	CHECK(err == ISVD_CLIENT_NON_FINITE, "inf: %s", isvd_client_err_name(err));
	rows[0] = value(1, 0) + cos(0.0) * value(2, 0);

	err = isvd_client_info(c, &in);
	CHECK(!err && in.rows_seen == r + 3 && in.dim == n && in.nsigma == in.rank && in.rank >= 3,
	      "info: %s rows_seen %" PRIu64, isvd_client_err_name(err), in.rows_seen);
	isvd_client_info_fini(&in);

	/* the model is exact (rank >= 3): reconstruct gives the rows back,
	 * residuals vanish, u = scores / sigma */
	struct isvd_client_matrix rec;
	err = isvd_client_reconstruct(c, rows, r, n, &rec, &seq);
	CHECK(!err && rec.rows == r && rec.cols == n && seq == r + 3, "reconstruct: %s", isvd_client_err_name(err));
	for (size_t i = 0; !err && i < r * n; i++)
		CHECK(fabs(rec.data[i] - rows[i]) < 1e-8, "reconstruct value %zu: %g vs %g", i, rec.data[i], rows[i]);
	isvd_client_matrix_fini(&rec);

	struct isvd_client_projection ps, pu;
	err = isvd_client_project(c, rows, r, n, ISVD_CLIENT_SCORES, &ps);
	CHECK(!err && ps.coords.rows == r && ps.nresidual == r, "project scores: %s", isvd_client_err_name(err));
	int err2 = isvd_client_project(c, rows, r, n, ISVD_CLIENT_U, &pu);
	CHECK(!err2 && pu.coords.rows == r, "project u: %s", isvd_client_err_name(err2));
	err = err || err2 ? 1 : isvd_client_factors(c, &fa);
	CHECK(!err && fa.k == ps.coords.cols && fa.dim == n && fa.vt.rows == fa.k && fa.vt.cols == n &&
	      fa.mean == NULL, "factors: %s", isvd_client_err_name(err));
	for (size_t i = 0; !err && i < r; i++) {
		CHECK(ps.residual[i] < 1e-8, "residual %zu = %g", i, ps.residual[i]);
		for (size_t j = 0; j < fa.k; j++)
			if (fa.sigma[j] > 1e-8 * fa.sigma[0])
				CHECK(fabs(pu.coords.data[i * fa.k + j] - ps.coords.data[i * fa.k + j] / fa.sigma[j]) <
				      1e-8 * (1 + fabs(pu.coords.data[i * fa.k + j])),
				      "u = scores / sigma at %zu,%zu", i, j);
	}
	isvd_client_projection_fini(&ps);
	isvd_client_projection_fini(&pu);
	isvd_client_factors_fini(&fa);

	err = isvd_client_checkpoint(c, &seq);
	printf("{\"checkpoint\":\"%s\",\"checkpoint_seq\":%" PRIu64 "}\n", isvd_client_err_name(err), err ? 0 : seq);
	/* the daemon has storage: the checkpoint must succeed and cover every row */
	CHECK(!err && seq == r + 3, "checkpoint: %s (%s), seq %" PRIu64, isvd_client_err_name(err),
	      err ? isvd_client_errmsg(c) : "", err ? 0 : seq);

	/* pipeline API misuse */
	CHECK(isvd_client_push_recv(c, &ack, 10) == ISVD_CLIENT_INVALID, "push_recv with nothing in flight");
	CHECK(isvd_client_push_flush(c) == ISVD_CLIENT_OK, "flush of nothing");

	/* snapshots: push until one arrives */
	struct isvd_client_snapshot s;
	CHECK(isvd_client_snapshot_recv(c, &s, 10) == ISVD_CLIENT_INVALID, "recv before subscribe");
	CHECK(isvd_client_subscribe(c, 0) == ISVD_CLIENT_INVALID, "no topic");
	err = isvd_client_subscribe(c, ISVD_CLIENT_TOPIC_SPECTRUM | ISVD_CLIENT_TOPIC_FACTORS);
	CHECK(!err, "subscribe");
	int got_spec = 0, got_fac = 0;
	for (int round = 0; round < 200 && (!got_spec || !got_fac); round++) {
		isvd_client_push(c, rows, r, n, NULL);
		while (isvd_client_snapshot_recv(c, &s, 50) == ISVD_CLIENT_OK) {
			if (s.topic == ISVD_CLIENT_TOPIC_SPECTRUM) {
				got_spec++;
				CHECK(s.k > 0 && s.sigma && s.rows_seen == s.seq && s.t > 1e9, "spectrum snapshot");
			} else {
				got_fac++;
				CHECK(s.k > 0 && s.vt.rows == s.k && s.vt.cols == n && s.dim == n, "factors snapshot");
			}
			isvd_client_snapshot_fini(&s);
		}
	}
	CHECK(got_spec && got_fac, "snapshots: %d spectrum, %d factors", got_spec, got_fac);
	int counted = 0;
	for (int round = 0; round < 100 && counted < 2; round++) {
		isvd_client_push(c, rows, r, n, NULL);
		isvd_client_snapshot_loop(c, 2, 100, on_snap, &counted);
	}
	CHECK(counted >= 2, "snapshot_loop saw %d", counted);
	print_stats(c, "");
	return failures ? 1 : 0;
}

/* ----------------------------------------------------------------- pipeline */

struct pipe_state {
	size_t acks, errors, duplicates;
	uint64_t rows, max_seq;
};

static void on_ack(const struct isvd_client_ack *a, void *user)
{
	struct pipe_state *st = user;
	st->acks++;
	if (a->err) {
		st->errors++;
		fprintf(stderr, "ack batch %" PRIu64 ": %s %s\n", a->batch, isvd_client_err_name(a->err), a->message);
		return;
	}
	st->rows += a->accepted;
	st->duplicates += a->duplicate;
	if (a->seq > st->max_seq)
		st->max_seq = a->seq;
}

static int mode_pipeline(struct isvd_client *c, const struct opts *op)
{
	struct pipe_state st = { 0 };
	double *rows = malloc(op->rows * op->dim * sizeof *rows);
	size_t max_in_flight = 0;
	char extra[256];

	if (!rows)
		return 2;
	if (op->callback)
		isvd_client_set_ack_callback(c, on_ack, &st);
	for (size_t b = 0; b < op->batches; b++) {
		if (op->pause_after && b == op->pause_after) {
			char line[64];
			CHECK(isvd_client_push_flush(c) == ISVD_CLIENT_OK, "flush before the pause");
			printf("paused\n");
			fflush(stdout);
			if (!fgets(line, sizeof line, stdin))
				return fprintf(stderr, "pipeline: standard input closed\n"), 2;
		}
		fill(rows, 1 + (uint64_t)b * op->rows, op->rows, op->dim);
		struct isvd_client_batch bt = { .rows = rows, .nrows = op->rows, .dim = op->dim };
		int err = isvd_client_push_send(c, &bt, NULL);
		CHECK(!err, "push_send %zu: %s %s", b, isvd_client_err_name(err), isvd_client_errmsg(c));
		if (isvd_client_in_flight(c) > max_in_flight)
			max_in_flight = isvd_client_in_flight(c);
		struct isvd_client_ack a;
		while (!op->callback && isvd_client_acks_queued(c) && isvd_client_push_recv(c, &a, 0) == 0)
			on_ack(&a, &st);
	}
	if (op->callback) {
		CHECK(isvd_client_push_flush(c) == ISVD_CLIENT_OK, "flush");
	} else {
		struct isvd_client_ack a;
		while (isvd_client_push_recv(c, &a, -1) == ISVD_CLIENT_OK)
			on_ack(&a, &st);
	}
	CHECK(isvd_client_in_flight(c) == 0, "nothing left in flight");
	CHECK(max_in_flight <= (op->in_flight ? op->in_flight : ISVD_CLIENT_DEFAULT_IN_FLIGHT), "window respected");
	CHECK(st.acks == op->batches && st.errors == 0, "acks %zu of %zu, %zu errors", st.acks, op->batches, st.errors);
	struct isvd_client_info in;
	int err = isvd_client_info(c, &in);
	CHECK(!err, "info: %s", isvd_client_err_name(err));
	snprintf(extra, sizeof extra,
	         ",\"batches\":%zu,\"ack_count\":%zu,\"errors\":%zu,\"rows_acked\":%" PRIu64 ",\"max_seq\":%" PRIu64
	         ",\"rows_seen\":%" PRIu64 ",\"max_in_flight\":%zu",
	         op->batches, st.acks, st.errors, st.rows, st.max_seq, in.rows_seen, max_in_flight);
	isvd_client_info_fini(&in);
	free(rows);
	print_stats(c, extra);
	return failures ? 1 : 0;
}

/* --------------------------------------------------------------------- push */

static int mode_push(struct isvd_client *c, const struct opts *op)
{
	double *rows = malloc(op->rows * op->dim * sizeof *rows);
	uint64_t last_seq = 0, rows_acked = 0;
	size_t dups = 0, errors = 0;
	char extra[256], line[64];

	if (!rows)
		return 2;
	for (size_t b = 0; b < op->batches; b++) {
		if (op->pause_after && b == op->pause_after) {
			printf("paused\n");
			fflush(stdout);
			if (!fgets(line, sizeof line, stdin))
				return fprintf(stderr, "push: standard input closed\n"), 2;
		}
		fill(rows, 1 + (uint64_t)b * op->rows, op->rows, op->dim);
		struct isvd_client_ack a;
		int err = isvd_client_push(c, rows, op->rows, op->dim, &a);
		if (err) {
			errors++;
			fprintf(stderr, "push %zu: %s %s\n", b, isvd_client_err_name(err), isvd_client_errmsg(c));
			continue;
		}
		dups += a.duplicate;
		rows_acked += a.accepted;
		if (a.seq)
			last_seq = a.seq;
	}
	CHECK(errors == 0, "%zu pushes failed", errors);
	snprintf(extra, sizeof extra, ",\"batches\":%zu,\"errors\":%zu,\"rows_acked\":%" PRIu64
	         ",\"last_seq\":%" PRIu64 ",\"dup_acks\":%zu",
	         op->batches, errors, rows_acked, last_seq, dups);
	free(rows);
	print_stats(c, extra);
	return failures ? 1 : 0;
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	struct opts op = { .batches = 10, .rows = 10, .dim = 8 };
	struct isvd_client *c;
	int rc;

	isvd_client_options_init(&op.o);
	if (argc < 2) {
		fprintf(stderr, "usage: isvd-client-check api|pipeline|push [--ingest EP] [--query EP] "
		                "[--publish EP] [--timeout-ms N] [--retries N] [--client ID] [--first-batch N] "
		                "[--batches N] [--rows N] [--dim N] [--in-flight N] [--callback] [--pause-after N]\n");
		return 2;
	}
	op.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--callback")) {
			op.callback = true;
			continue;
		}
		if (!v)
			return fprintf(stderr, "%s wants a value\n", a), 2;
		i++;
		if (client_option(&op.o, a, v))
			continue;
		if (!strcmp(a, "--client")) op.o.client_id = v;
		else if (!strcmp(a, "--first-batch")) op.o.first_batch = num(v);
		else if (!strcmp(a, "--batches")) op.batches = num(v);
		else if (!strcmp(a, "--rows")) op.rows = num(v);
		else if (!strcmp(a, "--dim")) op.dim = num(v);
		else if (!strcmp(a, "--in-flight")) op.in_flight = op.o.max_in_flight = (unsigned)num(v);
		else if (!strcmp(a, "--pause-after")) op.pause_after = num(v);
		else return fprintf(stderr, "unknown option %s\n", a), 2;
	}
	if (op.rows == 0 || op.dim == 0)
		return fprintf(stderr, "--rows and --dim must be positive\n"), 2;
	if ((rc = isvd_client_create(&c, &op.o))) {
		fprintf(stderr, "create: %s\n", isvd_client_strerror(rc));
		return 2;
	}
	if (!strcmp(op.mode, "api"))
		rc = mode_api(c, &op);
	else if (!strcmp(op.mode, "pipeline"))
		rc = mode_pipeline(c, &op);
	else if (!strcmp(op.mode, "push"))
		rc = mode_push(c, &op);
	else {
		fprintf(stderr, "unknown mode %s\n", op.mode);
		rc = 2;
	}
	isvd_client_destroy(c);
	return rc;
}
