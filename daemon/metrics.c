/*
 * metrics.c — the registry of isvdd's figures and its Prometheus rendering
 * (interface and invariants in metrics.h).
 *
 * DESIGN
 *   One struct of C11 atomics, fixed at compile time: no registration, no
 *   allocation after met_create(), no lock on any writer's path.  A
 *   histogram is an array of per-bucket counters plus a sum, in integer
 *   units (nanoseconds, rows) so that adding is one atomic instruction;
 *   rendering turns the buckets cumulative and the units into base units
 *   (seconds).  The ingest-rate ring has one writer, the loop thread: a
 *   slot holds the rows acknowledged in one MET_RATE_SLOT_MS period and the
 *   period's number, and is reset by the first ack of a new period, so a
 *   reader tells a stale slot (an older period) from a current one.  The
 *   storage failure's reason, a string, is the one thing behind a mutex;
 *   it changes only when storage fails or heals.  The per-pusher counters
 *   are not here but in the rate limiter's table (ratelimit.c), which the
 *   rendering copies out under that table's own mutex.
 *
 *   Names follow Prometheus's conventions: the isvd_ prefix, base units in
 *   the name (_seconds, _bytes, _rows), _total on counters, labels for
 *   dimensions (socket, code, op, topic, component).  Every family is
 *   always rendered with its HELP and TYPE lines; a family whose figure is
 *   not known yet (the model's, before the first row) has no samples.
 */
#include "metrics.h"

#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "isvd_model.h"
#include "isvd_proto.h"
#include "query.h"
#include "ratelimit.h"

#define MET_MAX_BOUNDS 20

typedef _Atomic uint64_t met_u64;

/* Bucket bounds, in the histogram's integer unit. */
static const uint64_t rows_bounds[] = { 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536 };
/* 10 µs .. 10 s, in ns */
static const uint64_t ns_bounds[] = {
	10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
	25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000u,
	5000000000u, 10000000000u,
};
#define N_ROWS_BOUNDS (sizeof rows_bounds / sizeof rows_bounds[0])
#define N_NS_BOUNDS   (sizeof ns_bounds / sizeof ns_bounds[0])
_Static_assert(N_NS_BOUNDS <= MET_MAX_BOUNDS && N_ROWS_BOUNDS <= MET_MAX_BOUNDS, "bounds");

struct met_hist {
	met_u64 bucket[MET_MAX_BOUNDS + 1];   /* [nb]: above the last bound */
	met_u64 sum;
};

struct met_slot {
	met_u64 period;              /* now_ms / MET_RATE_SLOT_MS + 1; 0: never written */
	met_u64 rows;
};

struct met {
	_Atomic int phase;

	met_u64 pushes, rows, duplicates, blocks;
	met_u64 refusals[MET_SOCKETS_][ISVD_PROTO_ERR_COUNT_];
	struct met_hist block_rows, fold_ns;

	met_u64 queries[ISVD_OP_COUNT_];
	struct met_hist query_ns[ISVD_OP_COUNT_];

	struct met_hist fsync_ns;
	met_u64 storage_failures;
	_Atomic bool failed;
	pthread_mutex_t why_mu;
	char why[600];               /* under why_mu: the failure's reason */
	met_u64 log_bytes, log_segments;
	met_u64 checkpoint_seq, checkpoint_ms;
	_Atomic bool have_checkpoint;

	met_u64 snapshots[2];        /* spectrum, factors */
	met_u64 curve[3][2];         /* [role][admitted] */
	met_u64 conn_open, conn_refused[2];   /* [0] per address, [1] in total */
	struct rl *_Atomic pushers;  /* met_set_pushers(); NULL: none */
	_Atomic bool monitored;      /* the monitor's figures below are set */
	met_u64 flagged, anomaly_sent, anomaly_dropped;
	met_u64 drift_prev, drift_base;   /* doubles' bits */

	struct met_slot rate[MET_RATE_SLOTS];
};

static void add(met_u64 *x, uint64_t n)
{
	atomic_fetch_add_explicit(x, n, memory_order_relaxed);
}

static uint64_t get(const met_u64 *x)
{
	return atomic_load_explicit((met_u64 *)x, memory_order_relaxed);
}

static void observe(struct met_hist *h, const uint64_t *bounds, size_t nb, uint64_t v)
{
	size_t i = 0;

	while (i < nb && v > bounds[i])
		i++;
	add(&h->bucket[i], 1);
	add(&h->sum, v);
}

struct met *met_create(void)
{
	struct met *m = calloc(1, sizeof *m);

	if (!m)
		return NULL;
	pthread_mutex_init(&m->why_mu, NULL);
	atomic_store(&m->phase, MET_RECOVERING);
	return m;
}

void met_destroy(struct met *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->why_mu);
	free(m);
}

void met_set_phase(struct met *m, enum met_phase phase)
{
	if (m)
		atomic_store(&m->phase, (int)phase);
}

enum met_phase met_phase(const struct met *m)
{
	return (enum met_phase)atomic_load((_Atomic int *)&m->phase);
}

/* ---------------------------------------------------------------- writers */

void met_push(struct met *m)
{
	if (m)
		add(&m->pushes, 1);
}

/* The wire code's index: local codes travel as INTERNAL. */
static int wire_code(int code)
{
	if (code == ISVD_PROTO_NOMEM || code == ISVD_PROTO_INVALID || code <= 0 ||
	    code >= ISVD_PROTO_ERR_COUNT_)
		return ISVD_PROTO_INTERNAL;
	return code;
}

void met_refusal(struct met *m, enum met_socket s, int code)
{
	if (m)
		add(&m->refusals[s][wire_code(code)], 1);
}

void met_acked(struct met *m, uint64_t rows, bool duplicate, uint64_t now_ms)
{
	if (!m)
		return;
	if (duplicate) {
		add(&m->duplicates, 1);
		return;
	}
	add(&m->rows, rows);
	/* the ring: one writer, so the reset and the add need not be one step */
	const uint64_t period = now_ms / MET_RATE_SLOT_MS + 1;
	struct met_slot *s = &m->rate[period % MET_RATE_SLOTS];
	if (get(&s->period) != period) {
		atomic_store_explicit(&s->rows, 0, memory_order_relaxed);
		atomic_store_explicit(&s->period, period, memory_order_release);
	}
	add(&s->rows, rows);
}

void met_block(struct met *m, uint64_t rows)
{
	if (!m)
		return;
	add(&m->blocks, 1);
	observe(&m->block_rows, rows_bounds, N_ROWS_BOUNDS, rows);
}

void met_fold(struct met *m, uint64_t ns)
{
	if (m)
		observe(&m->fold_ns, ns_bounds, N_NS_BOUNDS, ns);
}

void met_query(struct met *m, int op, uint64_t ns)
{
	if (!m)
		return;
	if (op < 0 || op >= ISVD_OP_COUNT_)
		op = ISVD_OP_NONE;
	add(&m->queries[op], 1);
	observe(&m->query_ns[op], ns_bounds, N_NS_BOUNDS, ns);
}

void met_fsync(struct met *m, uint64_t ns)
{
	if (m)
		observe(&m->fsync_ns, ns_bounds, N_NS_BOUNDS, ns);
}

void met_storage_failed(struct met *m, const char *why)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->why_mu);
	snprintf(m->why, sizeof m->why, "%s", why);
	pthread_mutex_unlock(&m->why_mu);
	if (!atomic_exchange(&m->failed, true))
		add(&m->storage_failures, 1);
}

void met_storage_healthy(struct met *m)
{
	if (m)
		atomic_store(&m->failed, false);
}

bool met_storage_state(struct met *m, char *why, size_t cap)
{
	const bool failed = atomic_load(&m->failed);

	pthread_mutex_lock(&m->why_mu);
	snprintf(why, cap, "%s", failed ? m->why : "");
	pthread_mutex_unlock(&m->why_mu);
	return failed;
}

void met_checkpoint(struct met *m, uint64_t seq, uint64_t now_ms)
{
	if (!m)
		return;
	atomic_store_explicit(&m->checkpoint_seq, seq, memory_order_relaxed);
	atomic_store_explicit(&m->checkpoint_ms, now_ms, memory_order_relaxed);
	atomic_store(&m->have_checkpoint, true);
}

void met_log_size(struct met *m, uint64_t bytes, uint64_t segments)
{
	if (!m)
		return;
	atomic_store_explicit(&m->log_bytes, bytes, memory_order_relaxed);
	atomic_store_explicit(&m->log_segments, segments, memory_order_relaxed);
}

void met_snapshot(struct met *m, int topic)
{
	if (m && topic >= 0 && topic < 2)
		add(&m->snapshots[topic], 1);
}

void met_curve(struct met *m, int role, bool admitted)
{
	if (m && role >= 0 && role < 3)
		add(&m->curve[role][admitted ? 1 : 0], 1);
}

void met_connections(struct met *m, uint64_t open, uint64_t refused_per_address,
                     uint64_t refused_total)
{
	if (!m)
		return;
	atomic_store(&m->conn_open, open);
	atomic_store(&m->conn_refused[0], refused_per_address);
	atomic_store(&m->conn_refused[1], refused_total);
}

void met_set_pushers(struct met *m, struct rl *rl)
{
	if (m)
		atomic_store(&m->pushers, rl);
}

/* ---------------------------------------------------------------- readers */

void met_rate(const struct met *m, uint64_t now_ms, double *rows_per_s, size_t n)
{
	const uint64_t last = now_ms / MET_RATE_SLOT_MS;   /* the period before the current one */

	if (n > MET_RATE_SLOTS - 1)
		n = MET_RATE_SLOTS - 1;   /* the ring's other slot is the current period's */
	for (size_t i = 0; i < n; i++) {
		const uint64_t period = last - (n - 1 - i);
		const struct met_slot *s = &m->rate[period % MET_RATE_SLOTS];
		double rows = 0;
		if (period > 0 &&
		    atomic_load_explicit((met_u64 *)&s->period, memory_order_acquire) == period)
			rows = (double)get(&s->rows);
		rows_per_s[i] = rows * 1000.0 / MET_RATE_SLOT_MS;
	}
}

static uint64_t bits_of(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof u);
	return u;
}

static double double_of(uint64_t u)
{
	double v;
	memcpy(&v, &u, sizeof v);
	return v;
}

void met_monitor(struct met *m, uint64_t flagged, uint64_t sent, uint64_t dropped,
                 double drift_prev_deg, double drift_baseline_deg)
{
	if (!m)
		return;
	atomic_store_explicit(&m->flagged, flagged, memory_order_relaxed);
	atomic_store_explicit(&m->anomaly_sent, sent, memory_order_relaxed);
	atomic_store_explicit(&m->anomaly_dropped, dropped, memory_order_relaxed);
	atomic_store_explicit(&m->drift_prev, bits_of(drift_prev_deg), memory_order_relaxed);
	atomic_store_explicit(&m->drift_base, bits_of(drift_baseline_deg), memory_order_relaxed);
	atomic_store(&m->monitored, true);
}

void met_totals(const struct met *m, struct met_totals *t)
{
	memset(t, 0, sizeof *t);
	t->rows = get(&m->rows);
	t->pushes = get(&m->pushes);
	t->duplicates = get(&m->duplicates);
	t->blocks = get(&m->blocks);
	for (int s = 0; s < MET_SOCKETS_; s++)
		for (int c = 0; c < ISVD_PROTO_ERR_COUNT_; c++)
			t->refusals += get(&m->refusals[s][c]);
	for (int op = 0; op < ISVD_OP_COUNT_; op++)
		t->queries += get(&m->queries[op]);
	t->storage_failures = get(&m->storage_failures);
	t->log_bytes = get(&m->log_bytes);
	t->log_segments = get(&m->log_segments);
	t->checkpoint_seq = get(&m->checkpoint_seq);
	t->checkpoint_ms = get(&m->checkpoint_ms);
	t->have_checkpoint = atomic_load((_Atomic bool *)&m->have_checkpoint);
	t->snapshots = get(&m->snapshots[0]) + get(&m->snapshots[1]);
	t->monitored = atomic_load((_Atomic bool *)&m->monitored);
	t->rows_flagged = get(&m->flagged);
	t->drift_prev_deg = double_of(get(&m->drift_prev));
	t->drift_baseline_deg = double_of(get(&m->drift_base));
}

/* ------------------------------------------------------------- rendering */

static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

const char *met_shortest(double v, char *buf, size_t cap)
{
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, cap, "%.*g", digits, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

/* A float as the format writes one. */
static void value(FILE *out, double v)
{
	char buf[32];

	if (isnan(v))
		fputs("NaN", out);
	else if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", out);
	else
		fputs(met_shortest(v, buf, sizeof buf), out);
}

/* The samples of one histogram; labels ("op=\"info\"" or "") go before le.
 * Dividing by unit converts the integer unit to the base unit (a division,
 * so that 10000 ns is the 1e-05 s a reader expects, not 1.0000000000000001e-05). */
static void histogram(FILE *out, const char *name, const char *labels, const struct met_hist *h,
                      const uint64_t *bounds, size_t nb, double unit)
{
	const char *sep = labels[0] ? "," : "";
	uint64_t cum = 0;

	for (size_t i = 0; i < nb; i++) {
		cum += get(&h->bucket[i]);
		fprintf(out, "%s_bucket{%s%sle=\"", name, labels, sep);
		value(out, (double)bounds[i] / unit);
		fprintf(out, "\"} %llu\n", (unsigned long long)cum);
	}
	cum += get(&h->bucket[nb]);
	fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
	fprintf(out, "%s_sum%s%s%s ", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "");
	value(out, (double)get(&h->sum) / unit);
	fprintf(out, "\n%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
	        (unsigned long long)cum);
}

static void scalar(FILE *out, const char *name, const char *type, const char *help, double v)
{
	family(out, name, type, help);
	fprintf(out, "%s ", name);
	value(out, v);
	fputc('\n', out);
}

static const char *const socket_names[MET_SOCKETS_] = { "ingest", "query" };
static const char *const role_names[3] = { "ingest", "query", "publish" };
static const char *const topic_names[2] = { ISVD_PROTO_TOPIC_SPECTRUM, ISVD_PROTO_TOPIC_FACTORS };

/* An op's label: its name; "invalid" for a request that named none. */
static const char *op_label(int op)
{
	const char *name = isvd_proto_op_name((enum isvd_proto_op)op);

	return name ? name : "invalid";
}

static void render_ingest(struct met *m, FILE *out)
{
	scalar(out, "isvd_rows_ingested_total", "counter",
	       "Rows acknowledged to pushers and applied to the model.", (double)get(&m->rows));
	scalar(out, "isvd_pushes_total", "counter",
	       "Requests received on the ingest socket, whatever their outcome.", (double)get(&m->pushes));
	scalar(out, "isvd_push_duplicates_total", "counter",
	       "Pushes acknowledged as duplicates of an applied (client, batch); their rows were not applied again.",
	       (double)get(&m->duplicates));
	family(out, "isvd_refusals_total", "counter",
	       "Requests refused with an error code, by socket and wire code.");
	for (int s = 0; s < MET_SOCKETS_; s++)
		for (int c = 1; c < ISVD_PROTO_ERR_COUNT_; c++) {
			if (wire_code(c) != c)
				continue;   /* local codes are counted as INTERNAL */
			fprintf(out, "isvd_refusals_total{socket=\"%s\",code=\"%s\"} %llu\n", socket_names[s],
			        isvd_proto_err_name(c), (unsigned long long)get(&m->refusals[s][c]));
		}
	family(out, "isvd_block_rows", "histogram",
	       "Rows per block handed to the engine (pushes gathered into one update).");
	histogram(out, "isvd_block_rows", "", &m->block_rows, rows_bounds, N_ROWS_BOUNDS, 1.0);
	family(out, "isvd_fold_duration_seconds", "histogram",
	       "Time the engine thread took to fold one block into the model.");
	histogram(out, "isvd_fold_duration_seconds", "", &m->fold_ns, ns_bounds, N_NS_BOUNDS, 1e9);
}

static void render_queries(struct met *m, FILE *out)
{
	char labels[64];

	family(out, "isvd_queries_total", "counter",
	       "Requests answered on the query socket, refusals included, by op.");
	for (int op = 0; op < ISVD_OP_COUNT_; op++)
		if (op != ISVD_OP_PUSH)
			fprintf(out, "isvd_queries_total{op=\"%s\"} %llu\n", op_label(op),
			        (unsigned long long)get(&m->queries[op]));
	family(out, "isvd_query_duration_seconds", "histogram",
	       "Time from receiving a query to sending its reply, by op.");
	for (int op = 0; op < ISVD_OP_COUNT_; op++)
		if (op != ISVD_OP_PUSH) {
			snprintf(labels, sizeof labels, "op=\"%s\"", op_label(op));
			histogram(out, "isvd_query_duration_seconds", labels, &m->query_ns[op], ns_bounds,
			          N_NS_BOUNDS, 1e9);
		}
}

static void render_model(const struct qry_summary *s, FILE *out)
{
	const bool have = s && s->have_model;

	family(out, "isvd_model_rows", "gauge", "Rows in the model the queries are answered from.");
	if (s)
		fprintf(out, "isvd_model_rows %llu\n", (unsigned long long)s->seq);
	family(out, "isvd_model_dimension", "gauge", "Row length n of the model (0: not known yet).");
	if (s)
		fprintf(out, "isvd_model_dimension %zu\n", have ? s->info.dim : (size_t)0);
	family(out, "isvd_model_components", "gauge", "Components reported (the rank, at most k).");
	if (have)
		fprintf(out, "isvd_model_components %zu\n", s->nsigma);
	family(out, "isvd_sigma", "gauge", "Singular value of each reported component (1 = largest).");
	if (have)
		for (size_t i = 0; i < s->nsigma; i++) {
			fprintf(out, "isvd_sigma{component=\"%zu\"} ", i + 1);
			value(out, s->sigma[i]);
			fputc('\n', out);
		}
	family(out, "isvd_explained_energy_ratio", "gauge",
	       "Share of the (weighted, centred) stream's energy the reported components capture.");
	if (have) {
		fputs("isvd_explained_energy_ratio ", out);
		value(out, s->info.explained_energy_ratio);
		fputc('\n', out);
	}
	family(out, "isvd_condition_number", "gauge", "sigma_1 / sigma_rank of the reported components.");
	if (have) {
		fputs("isvd_condition_number ", out);
		value(out, s->info.condition_number);
		fputc('\n', out);
	}
	family(out, "isvd_orthogonality_error", "gauge",
	       "Frobenius norm of V'V - I over the kept components.");
	if (have) {
		fputs("isvd_orthogonality_error ", out);
		value(out, s->info.orthogonality_error);
		fputc('\n', out);
	}
	family(out, "isvd_reorthogonalizations_total", "counter",
	       "Re-orthogonalisations of V the engine has done (0 in exact mode).");
	if (have)
		fprintf(out, "isvd_reorthogonalizations_total %llu\n",
		        (unsigned long long)s->info.reorth_count);
}

static void render_storage(struct met *m, const struct met_info *in, FILE *out)
{
	const bool have = atomic_load(&m->have_checkpoint);
	const uint64_t at = get(&m->checkpoint_ms);

	scalar(out, "isvd_log_bytes", "gauge", "Bytes of write-ahead log segments in storage.dir.",
	       (double)get(&m->log_bytes));
	scalar(out, "isvd_log_segments", "gauge", "Write-ahead log segments in storage.dir.",
	       (double)get(&m->log_segments));
	family(out, "isvd_checkpoint_age_seconds", "gauge",
	       "Seconds since the last durable checkpoint was written (or loaded at start).");
	if (have)
		fprintf(out, "isvd_checkpoint_age_seconds %.3f\n",
		        in->now_ms > at ? (double)(in->now_ms - at) / 1000.0 : 0.0);
	family(out, "isvd_checkpoint_rows", "gauge", "Rows the last durable checkpoint covers.");
	if (have)
		fprintf(out, "isvd_checkpoint_rows %llu\n", (unsigned long long)get(&m->checkpoint_seq));
	family(out, "isvd_fsync_duration_seconds", "histogram", "Time one fsync of the write-ahead log took.");
	histogram(out, "isvd_fsync_duration_seconds", "", &m->fsync_ns, ns_bounds, N_NS_BOUNDS, 1e9);
	scalar(out, "isvd_storage_failures_total", "counter",
	       "Times storage entered the failed state (a log write, fsync or checkpoint failed).",
	       (double)get(&m->storage_failures));
	scalar(out, "isvd_storage_failed", "gauge",
	       "1 while storage is failed: pushes are refused (fail-stop) until a checkpoint succeeds.",
	       atomic_load(&m->failed) ? 1 : 0);
}

/* A pusher's name as a label value: the exposition format escapes \\, \" and
 * newlines; anything else outside printable ASCII (a client id is any
 * bytes) becomes '?'. */
static void label_value(FILE *out, const char *s)
{
	for (; *s; s++) {
		const unsigned char ch = (unsigned char)*s;
		if (ch == '\\' || ch == '"')
			fprintf(out, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", out);
		else
			fputc(ch >= 0x20 && ch < 0x7f ? ch : '?', out);
	}
}

/* limits.push_rows_per_s's figures per pusher, and the connection caps'. */
static void render_limits(struct met *m, FILE *out)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fam[] = {
		{ "isvd_pusher_pushes_total", "Pushes let through by the rate limit, by pusher (key or client id).",
		  offsetof(struct isvd_proto_pusher, pushes) },
		{ "isvd_pusher_rows_total", "Rows of the pushes let through by the rate limit, by pusher.",
		  offsetof(struct isvd_proto_pusher, rows) },
		{ "isvd_pusher_limited_pushes_total", "Pushes refused RATE_LIMITED, by pusher.",
		  offsetof(struct isvd_proto_pusher, limited_pushes) },
		{ "isvd_pusher_limited_rows_total", "Rows of the pushes refused RATE_LIMITED, by pusher.",
		  offsetof(struct isvd_proto_pusher, limited_rows) },
	};
	struct rl *rl = atomic_load(&m->pushers);
	struct isvd_proto_pusher *v = NULL;
	size_t n = 0;

	if (rl && rl_snapshot(rl, &v, &n))
		n = 0;
	for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
		family(out, fam[f].name, "counter", fam[f].help);
		for (size_t i = 0; i < n; i++) {
			fprintf(out, "%s{pusher=\"", fam[f].name);
			label_value(out, v[i].key);
			fprintf(out, "\"} %llu\n",
			        (unsigned long long)*(const uint64_t *)((const char *)&v[i] + fam[f].off));
		}
	}
	rl_snapshot_free(v, n);
	scalar(out, "isvd_connections_open", "gauge",
	       "TCP and IPC connections open on the ingest, query and publish sockets.",
	       (double)get(&m->conn_open));
	family(out, "isvd_connections_refused_total", "counter",
	       "Handshakes the ZAP handler refused by limits.max_connections_per_address (per_address) "
	       "and limits.max_connections (total).");
	fprintf(out, "isvd_connections_refused_total{cap=\"per_address\"} %llu\n",
	        (unsigned long long)get(&m->conn_refused[0]));
	fprintf(out, "isvd_connections_refused_total{cap=\"total\"} %llu\n",
	        (unsigned long long)get(&m->conn_refused[1]));
}

static void render_rest(struct met *m, const struct met_info *in, FILE *out)
{
	render_limits(m, out);
	if (atomic_load(&m->monitored)) {
		scalar(out, "isvd_monitor_rows_flagged_total", "counter",
		       "Pushed rows whose SPE or T² exceeded its control limit (monitor.enabled).",
		       (double)get(&m->flagged));
		family(out, "isvd_monitor_anomaly_messages_total", "counter",
		       "Messages on the anomaly topic, sent or dropped by monitor.anomaly_max_per_s.");
		fprintf(out, "isvd_monitor_anomaly_messages_total{result=\"sent\"} %llu\n",
		        (unsigned long long)get(&m->anomaly_sent));
		fprintf(out, "isvd_monitor_anomaly_messages_total{result=\"dropped\"} %llu\n",
		        (unsigned long long)get(&m->anomaly_dropped));
		scalar(out, "isvd_monitor_drift_baseline_degrees", "gauge",
		       "Largest principal angle between the top-k subspace and the baseline's (NaN: no baseline).",
		       double_of(get(&m->drift_base)));
		scalar(out, "isvd_monitor_drift_previous_degrees", "gauge",
		       "Largest principal angle between the top-k subspace at the last two spectrum snapshots.",
		       double_of(get(&m->drift_prev)));
	}
	family(out, "isvd_snapshots_published_total", "counter", "Snapshots sent on the publish socket, by topic.");
	for (int t = 0; t < 2; t++)
		fprintf(out, "isvd_snapshots_published_total{topic=\"%s\"} %llu\n", topic_names[t],
		        (unsigned long long)get(&m->snapshots[t]));
	family(out, "isvd_curve_admitted_total", "counter", "CURVE clients the ZAP handler admitted, by socket.");
	for (int r = 0; r < 3; r++)
		fprintf(out, "isvd_curve_admitted_total{socket=\"%s\"} %llu\n", role_names[r],
		        (unsigned long long)get(&m->curve[r][1]));
	family(out, "isvd_curve_refused_total", "counter", "CURVE clients the ZAP handler refused, by socket.");
	for (int r = 0; r < 3; r++)
		fprintf(out, "isvd_curve_refused_total{socket=\"%s\"} %llu\n", role_names[r],
		        (unsigned long long)get(&m->curve[r][0]));
	scalar(out, "isvd_recovering", "gauge", "1 while isvdd recovers from storage.dir at start.",
	       met_phase(m) == MET_RECOVERING ? 1 : 0);
	scalar(out, "isvd_uptime_seconds", "gauge", "Seconds since isvdd started.",
	       in->now_ms > in->start_ms ? (double)(in->now_ms - in->start_ms) / 1000.0 : 0.0);
	family(out, "isvd_build_info", "gauge", "Always 1; the labels say what runs.");
	fprintf(out, "isvd_build_info{version=\"%s\",protocol=\"%d\",mode=\"%s\"} 1\n", in->version,
	        in->protocol, in->mode);
}

void met_render(struct met *m, const struct met_info *in, FILE *out)
{
	render_ingest(m, out);
	render_queries(m, out);
	render_model(in->model, out);
	render_storage(m, in, out);
	render_rest(m, in, out);
}
