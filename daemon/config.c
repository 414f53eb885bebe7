/*
 * config.c — the option table and the YAML loader of isvdd.
 *
 * DESIGN
 *   cfg_options[] below is the only place an option is declared: its name
 *   ("section.key"), type, default (written as it would be in YAML), range or
 *   choices, and help text.  cfg_init_defaults() parses every default through
 *   the same converter as the file, cfg_load() looks keys up in the table, and
 *   cfg_print_help() prints it: parser, validation and documentation cannot
 *   drift apart.  Cross-field rules (forget vs half_life, distinct endpoints,
 *   security.curve needing a secret key file and a keys directory) sit in
 *   check_together(), after the table pass; what the files named hold is
 *   checked by security.c (sec_check()), which `--check` also runs.
 *
 *   The file is read whole (at most CFG_MAX_FILE_BYTES) and walked with
 *   libyaml's event parser, which keeps the line and column of every node:
 *
 *     stream → one document → mapping of sections → mapping of scalar values
 *
 *   Anything else is refused with file:line:col and the key it concerns:
 *   unknown sections or keys, repeated keys, sequences, nested mappings
 *   (but a map option's value: a mapping of scalars, load_map()), aliases,
 *   anchors and explicit tags, a second document.  A kafka section makes
 *   the daemon a shard or a merger even when empty: its presence is
 *   recorded (cfg.kafka.on) and check_kafka() holds it to what those roles
 *   need.  The loader keeps
 *   going after a problem (skipping the offending node) so that `--check`
 *   reports every problem at once; only a YAML syntax error ends the walk.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <yaml.h>

#include "isvd_model.h"

/* ------------------------------------------------------------- the table */

enum cfg_type { CFG_UINT, CFG_REAL, CFG_BOOL, CFG_STRING, CFG_ENUM, CFG_ENDPOINT, CFG_LISTEN, CFG_MAP };

#define CFG_MIN_EXCLUSIVE 1u   /* REAL: the value must be > min, not >= */
#define CFG_NONEMPTY      2u   /* STRING: "" is refused */
#define CFG_MAX_STRING    4096 /* bytes in a string value */
#define CFG_MAX_MAP_KEY   255  /* bytes in a map option's key */
#define CFG_MAX_MAP       256  /* entries in a map option */

struct cfg_option {
	const char *name;            /* "section.key" */
	enum cfg_type type;
	size_t offset;               /* of the field in struct cfg */
	const char *def;             /* default, as YAML text */
	double min, max;             /* UINT and REAL */
	unsigned flags;
	const char *const *choices;  /* ENUM: NULL-terminated; the field is an int index */
	const char *help;
};

static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const formats[] = { "text", "json", NULL };
static const char *const fsyncs[] = { "always", "interval", "none", NULL };
static const char *const missings[] = { "reject", "impute", NULL };
/* in the order of enum isvd_mode, so the index is the engine's value */
static const char *const modes[] = { "auto", "exact", "truncated", NULL };
/* in the order of enum cfg_kafka_role and enum cfg_kafka_format */
static const char *const kafka_roles[] = { "shard", "merge", NULL };
static const char *const kafka_formats[] = { "msgpack", "json", "csv", "f64", NULL };

#define OFF(f) offsetof(struct cfg, f)
#define U64MAXD 1e15

static const struct cfg_option cfg_options[] = {
	{ "model.dim", CFG_UINT, OFF(model.dim), "0", 0, (double)ISVD_MAX_DIM, 0, NULL,
	  "row length n; 0 takes it from the first accepted push" },
	{ "model.rank", CFG_UINT, OFF(model.rank), "8", 1, ISVD_MAX_RANK, 0, NULL,
	  "components reported (k)" },
	{ "model.extra", CFG_UINT, OFF(model.extra), "10", 0, ISVD_MAX_RANK, 0, NULL,
	  "components kept beyond k to keep the top k accurate" },
	{ "model.center", CFG_BOOL, OFF(model.center), "false", 0, 0, 0, NULL,
	  "subtract the running mean (PCA) before factoring" },
	{ "model.forget", CFG_REAL, OFF(model.forget), "1", 0, 1, CFG_MIN_EXCLUSIVE, NULL,
	  "forgetting factor lambda in (0, 1]; 1 = no forgetting; excludes half_life" },
	{ "model.half_life", CFG_REAL, OFF(model.half_life), "0", 0, 1e12, 0, NULL,
	  "rows after which a row's weight halves (lambda = 2^(-1/h)); 0 = off; excludes forget" },
	{ "model.reorth_every", CFG_UINT, OFF(model.reorth_every), "100000", 0, U64MAXD, 0, NULL,
	  "re-orthogonalise V every this many rows; 0 = never" },
	{ "model.mode", CFG_ENUM, OFF(model.mode), "auto", 0, 0, 0, modes,
	  "update strategy: exact (the stream's n×n triangular factor; exact for every k, O(n²) per row "
	  "and memory), truncated (Brand's update, O(n·(k+extra)) memory), or auto (exact where "
	  "cheaper: up to n ≈ 290 at rank 8, 490 at rank 50, 780 at rank 100)" },
	{ "model.threads", CFG_UINT, OFF(model.threads), "1", 0, ISVD_MAX_THREADS, 0, NULL,
	  "threads the engine splits a fold's n-sized products over (0 = auto: up to 2 cores); "
	  "1 leaves the other core to the loop thread, which measured as fast or faster" },
	{ "model.missing", CFG_ENUM, OFF(model.missing), "reject", 0, 0, 0, missings,
	  "what a push with missing values (nil in the array form, NaN in the binary form) gets: "
	  "reject = NON_FINITE, nothing applied; impute = each gap filled from the model as it "
	  "stands (PPCA's posterior mean), then folded; a row needs 1 observed value" },

	{ "endpoints.ingest", CFG_ENDPOINT, OFF(endpoints.ingest), "tcp://127.0.0.1:5570", 0, 0, 0, NULL,
	  "ROUTER socket for push (tcp://, ipc:// or inproc://)" },
	{ "endpoints.query", CFG_ENDPOINT, OFF(endpoints.query), "tcp://127.0.0.1:5571", 0, 0, 0, NULL,
	  "ROUTER socket for ping, info, project, reconstruct, factors, checkpoint" },
	{ "endpoints.publish", CFG_ENDPOINT, OFF(endpoints.publish), "tcp://127.0.0.1:5572", 0, 0, 0, NULL,
	  "PUB socket for the spectrum and factors snapshots" },

	{ "batching.max_rows", CFG_UINT, OFF(batching.max_rows), "1024", 1, ISVD_MAX_BLOCK, 0, NULL,
	  "rows gathered from pushes before they are folded as one engine update; two blocks of this size "
	  "(one gathering, one in the engine) are reserved: 16 × max_rows × dim bytes" },
	{ "batching.max_delay_ms", CFG_UINT, OFF(batching.max_delay_ms), "5", 0, 60000, 0, NULL,
	  "longest time rows wait while more pushes are read; a batch is also folded as soon as no more pushes are waiting" },

	{ "publish.spectrum_every_ms", CFG_UINT, OFF(publish.spectrum_every_ms), "1000", 0, 86400000, 0, NULL,
	  "publish `spectrum` at this interval when the model changed; 0 = off" },
	{ "publish.spectrum_every_rows", CFG_UINT, OFF(publish.spectrum_every_rows), "0", 0, U64MAXD, 0, NULL,
	  "also publish `spectrum` once this many rows arrived since the last one; 0 = off" },
	{ "publish.factors_every_ms", CFG_UINT, OFF(publish.factors_every_ms), "10000", 0, 86400000, 0, NULL,
	  "publish `factors` at this interval when the model changed; 0 = off" },

	{ "monitor.enabled", CFG_BOOL, OFF(monitor.enabled), "false", 0, 0, 0, NULL,
	  "score every pushed row against the model before it (SPE, Hotelling's T²), flag rows over "
	  "the control limits on the `anomaly` topic, and follow drift and component stability; "
	  "with model.threads 1 a block's scores run on a second thread while it is folded" },
	{ "monitor.confidence", CFG_REAL, OFF(monitor.confidence), "0.99", 0.5, 0.999999, 0, NULL,
	  "confidence of the control limits: a row the model describes exceeds each with "
	  "probability 1 - confidence" },
	{ "monitor.spe_limit", CFG_REAL, OFF(monitor.spe_limit), "0", 0, 1e300, 0, NULL,
	  "a fixed SPE limit instead of the one from confidence; 0 = from confidence" },
	{ "monitor.t2_limit", CFG_REAL, OFF(monitor.t2_limit), "0", 0, 1e300, 0, NULL,
	  "a fixed T² limit instead of the one from confidence; 0 = from confidence" },
	{ "monitor.anomaly_max_per_s", CFG_UINT, OFF(monitor.anomaly_max_per_s), "10", 1, 1000000, 0, NULL,
	  "`anomaly` messages published per second at most (one per block with flagged rows); "
	  "the rest are counted as dropped" },
	{ "monitor.warmup_rows", CFG_UINT, OFF(monitor.warmup_rows), "0", 0, U64MAXD, 0, NULL,
	  "rows before anything is flagged; 0 = 10 × model.rank" },
	{ "monitor.baseline_rows", CFG_UINT, OFF(monitor.baseline_rows), "0", 0, U64MAXD, 0, NULL,
	  "rows after which the drift baseline is taken (or the `baseline` op sets it); 0 = warmup_rows" },
	{ "monitor.drift_degrees", CFG_REAL, OFF(monitor.drift_degrees), "10", 0, 90, CFG_MIN_EXCLUSIVE, NULL,
	  "largest principal angle to the baseline beyond which a `drift` message is published "
	  "(and again when it falls back below)" },

	{ "storage.dir", CFG_STRING, OFF(storage.dir), "./data", 0, 0, CFG_NONEMPTY, NULL,
	  "directory for the write-ahead log and checkpoints (created if missing; one daemon per directory)" },
	{ "storage.fsync", CFG_ENUM, OFF(storage.fsync), "always", 0, 0, 0, fsyncs,
	  "always: fsync the log before every ack (pushes waiting together share one fsync); "
	  "interval: fsync at most every fsync_interval_ms (a power loss may lose that window, a crash "
	  "of the process nothing); none: the OS decides" },
	{ "storage.fsync_interval_ms", CFG_UINT, OFF(storage.fsync_interval_ms), "1000", 1, 3600000, 0, NULL,
	  "with fsync: interval, the longest time an acknowledged push stays unsynced" },
	{ "storage.checkpoint_every_rows", CFG_UINT, OFF(storage.checkpoint_every_rows), "1000000", 0, U64MAXD, 0, NULL,
	  "write a checkpoint after this many rows; 0 = off (then only the interval, the `checkpoint` "
	  "op and SIGTERM write one, and the log grows until they do)" },
	{ "storage.checkpoint_every_s", CFG_UINT, OFF(storage.checkpoint_every_s), "300", 0, 31536000, 0, NULL,
	  "write a checkpoint at this interval when rows arrived since the last; 0 = off" },
	{ "storage.segment_bytes", CFG_UINT, OFF(storage.segment_bytes), "67108864", 65536, (double)(1ull << 40), 0, NULL,
	  "start a new log segment when the current one exceeds this size" },

	{ "limits.max_message_bytes", CFG_UINT, OFF(limits.max_message_bytes), "67108864", 1024, (double)(1u << 30), 0, NULL,
	  "largest request body; larger ones get TOO_LARGE (far larger ones are dropped by zmq)" },
	{ "limits.max_rows_per_push", CFG_UINT, OFF(limits.max_rows_per_push), "65536", 1, (double)(1u << 24), 0, NULL,
	  "most rows in one request matrix; more is TOO_LARGE" },
	{ "limits.max_clients", CFG_UINT, OFF(limits.max_clients), "1024", 1, 65536, 0, NULL,
	  "clients whose last batches are remembered for duplicate detection (least recent forgotten; looked up linearly)" },
	{ "limits.recv_hwm", CFG_UINT, OFF(limits.recv_hwm), "1000", 0, 10000000, 0, NULL,
	  "zmq receive high-water mark of the ingest and query sockets (messages; 0 = none)" },
	{ "limits.send_hwm", CFG_UINT, OFF(limits.send_hwm), "1000", 0, 10000000, 0, NULL,
	  "zmq send high-water mark of the ingest and query sockets (messages; 0 = none)" },
	{ "limits.publish_hwm", CFG_UINT, OFF(limits.publish_hwm), "100", 0, 10000000, 0, NULL,
	  "zmq send high-water mark of the publish socket; a slow subscriber loses snapshots beyond it" },
	{ "limits.max_pending_pushes", CFG_UINT, OFF(limits.max_pending_pushes), "1024", 1, 65536, 0, NULL,
	  "pushes queued awaiting their flush; one more first flushes the queue early (a smaller group commit, "
	  "never a refusal), so memory per batch stays bounded whatever the peers send" },
	{ "limits.handshake_ms", CFG_UINT, OFF(limits.handshake_ms), "10000", 0, 3600000, 0, NULL,
	  "a connection that has not completed the ZMTP (and CURVE) handshake within this time is dropped "
	  "(ZMQ_HANDSHAKE_IVL, every socket); 0 = never" },
	{ "limits.push_rows_per_s", CFG_UINT, OFF(limits.push_rows_per_s), "0", 0, 1e9, 0, NULL,
	  "rows per second each pusher (its CURVE key; without CURVE its client id) may push, as a token "
	  "bucket; a push over it is refused whole with RATE_LIMITED and retry_after_ms; 0 = no limit" },
	{ "limits.push_burst_rows", CFG_UINT, OFF(limits.push_burst_rows), "0", 0, 1e12, 0, NULL,
	  "rows a pusher may push at once above push_rows_per_s (the bucket's size); a larger push passes "
	  "when the bucket is full and is then waited off; 0 = push_rows_per_s (one second's rows)" },
	{ "limits.max_pushers", CFG_UINT, OFF(limits.max_pushers), "1024", 1, 65536, 0, NULL,
	  "pushers whose bucket and counters are kept (least recently seen with a full bucket forgotten "
	  "first); beyond them new pushers share one bucket, \"*\"" },
	{ "limits.max_connections_per_address", CFG_UINT, OFF(limits.max_connections_per_address), "64",
	  0, 1000000, 0, NULL,
	  "handshakes from an IP address are refused while more than this many connections from it are "
	  "open on the three sockets (counted by the socket monitors; the ZAP handler refuses); 0 = no cap" },
	{ "limits.max_connections", CFG_UINT, OFF(limits.max_connections), "4096", 0, 1000000, 0, NULL,
	  "handshakes are refused while more than this many connections are open on the three sockets "
	  "in all; keep it below the open-files limit (ulimit -n); 0 = no cap" },

	{ "security.curve", CFG_BOOL, OFF(security.curve), "false", 0, 0, 0, NULL,
	  "CurveZMQ encryption and authentication on all three sockets; only clients whose public key is in "
	  "a keys directory below get in (README, Security); false = anyone who can connect is served" },
	{ "security.secret_key_file", CFG_STRING, OFF(security.secret_key_file), "", 0, 0, 0, NULL,
	  "with curve: the server's secret key file (Z85, from `isvd keygen`); must exist and not be "
	  "accessible by group or others (chmod 600), or isvdd refuses to start" },
	{ "security.client_keys_dir", CFG_STRING, OFF(security.client_keys_dir), "", 0, 0, 0, NULL,
	  "with curve: directory of client public key files (one Z85 key per file) admitted on every "
	  "socket; re-read on SIGHUP; empty = none" },
	{ "security.ingest_keys_dir", CFG_STRING, OFF(security.ingest_keys_dir), "", 0, 0, 0, NULL,
	  "with curve: directory of public keys admitted on the ingest socket only (push, no reading); "
	  "empty = none" },
	{ "security.query_keys_dir", CFG_STRING, OFF(security.query_keys_dir), "", 0, 0, 0, NULL,
	  "with curve: directory of public keys admitted on the query and publish sockets only (read, no "
	  "push); empty = none" },

	{ "http.listen", CFG_LISTEN, OFF(http.listen), "", 0, 0, 0, NULL,
	  "HOST:PORT of the HTTP endpoint serving /metrics (Prometheus), /status (a page) and /healthz "
	  "(HOST an IPv4 address, [IPv6] or localhost; port 0 = any free one, logged); empty = off; "
	  "no authentication: keep it on loopback" },
	{ "http.allow_insecure", CFG_BOOL, OFF(http.allow_insecure), "false", 0, 0, 0, NULL,
	  "with security.curve: serve http.listen on a non-loopback address anyway (the page and the "
	  "metrics reveal the model, unencrypted and to anyone); false = refuse to start" },

	{ "log.level", CFG_ENUM, OFF(log.level), "info", 0, 0, 0, levels,
	  "least severe level written" },
	{ "log.format", CFG_ENUM, OFF(log.format), "text", 0, 0, 0, formats,
	  "text lines, or one JSON object per line" },
	{ "log.file", CFG_STRING, OFF(log.file), "", 0, 0, 0, NULL,
	  "log file, appended to and reopened on SIGHUP; empty = standard error" },
	{ "log.warn_every_ms", CFG_UINT, OFF(log.warn_every_ms), "1000", 0, 3600000, 0, NULL,
	  "at most one warning about refused requests per this interval; the rest are counted" },

	/* A kafka section makes isvdd a shard or a merger (README, "Scale-out
	 * with Kafka"); check_together() requires brokers, topic and
	 * model.dim then, and kfk_check() the properties. */
	{ "kafka.role", CFG_ENUM, OFF(kafka.role), "shard", 0, 0, 0, kafka_roles,
	  "with a kafka section: shard (fold the rows of the partitions of kafka.topic the group assigns, "
	  "one model per partition, and publish their images on the changelog topic) or merge (serve "
	  "the merge of the newest image of every partition)" },
	{ "kafka.brokers", CFG_STRING, OFF(kafka.brokers), "", 0, 0, 0, NULL,
	  "bootstrap brokers, HOST:PORT[,HOST:PORT...]; required with a kafka section" },
	{ "kafka.topic", CFG_STRING, OFF(kafka.topic), "", 0, 0, 0, NULL,
	  "the topic of rows; required with a kafka section" },
	{ "kafka.group", CFG_STRING, OFF(kafka.group), "isvdd", 0, 0, CFG_NONEMPTY, NULL,
	  "consumer group of the shards (the group assigns partitions to shards)" },
	{ "kafka.format", CFG_ENUM, OFF(kafka.format), "msgpack", 0, 0, 0, kafka_formats,
	  "how a message holds rows: msgpack (a matrix in either protocol form), json (an array or "
	  "an array of arrays, null a gap), csv (one line per row, an empty field a gap), f64 (raw "
	  "little-endian doubles, a multiple of model.dim)" },
	{ "kafka.changelog_topic", CFG_STRING, OFF(kafka.changelog_topic), "", 0, 0, 0, NULL,
	  "topic of the partition models' images (make it compacted); empty = <topic>.isvd-models" },
	{ "kafka.dead_letter_topic", CFG_STRING, OFF(kafka.dead_letter_topic), "", 0, 0, 0, NULL,
	  "messages that cannot be decoded are produced here, the reason in the header isvd-reason; "
	  "empty = only counted and logged" },
	{ "kafka.image_every_ms", CFG_UINT, OFF(kafka.image_every_ms), "1000", 1, 86400000, 0, NULL,
	  "a shard publishes the image of every partition that changed at this interval (and on "
	  "revocation and at stop)" },
	{ "kafka.merge_every_ms", CFG_UINT, OFF(kafka.merge_every_ms), "1000", 1, 86400000, 0, NULL,
	  "the models are merged for queries and snapshots at this interval when any changed (a "
	  "shard: its partitions; a merger: every partition's newest image)" },
	{ "kafka.properties", CFG_MAP, OFF(kafka.properties), "{}", 0, 0, 0, NULL,
	  "librdkafka properties as they are (security.protocol, sasl.*, ssl.*, session.timeout.ms, "
	  "...), a mapping of names to values; those isvdd sets itself are refused" },
};

#define N_OPTIONS (sizeof cfg_options / sizeof cfg_options[0])

const char *cfg_log_level_name(int level)
{
	return level >= 0 && level <= CFG_LOG_ERROR ? levels[level] : "?";
}

const char *cfg_fsync_name(int fsync)
{
	return fsync >= 0 && fsync <= CFG_FSYNC_NONE ? fsyncs[fsync] : "?";
}

const char *cfg_kafka_role_name(int role)
{
	return role >= 0 && role <= CFG_KAFKA_MERGE ? kafka_roles[role] : "?";
}

const char *cfg_kafka_format_name(int format)
{
	return format >= 0 && format <= CFG_KAFKA_F64 ? kafka_formats[format] : "?";
}

const char *cfg_kafka_changelog(const struct cfg *c, char *buf, size_t cap)
{
	if (c->kafka.changelog_topic && c->kafka.changelog_topic[0])
		snprintf(buf, cap, "%s", c->kafka.changelog_topic);
	else
		snprintf(buf, cap, "%s.isvd-models", c->kafka.topic ? c->kafka.topic : "");
	return buf;
}

/* ---------------------------------------------------------------- loader */

struct loader {
	const char *path;
	FILE *errs;
	int problems;
	struct cfg *c;
	yaml_parser_t parser;
	bool set[N_OPTIONS];
	yaml_mark_t where[N_OPTIONS];   /* of the key, when set[] */
	yaml_mark_t kafka_at;           /* of the kafka section's name, when c->kafka.on */
};

static void problem(struct loader *L, yaml_mark_t m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct loader *L, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;

	L->problems++;
	if (!L->errs)
		return;
	fprintf(L->errs, "%s:%zu:%zu: ", L->path, m.line + 1, m.column + 1);
	va_start(ap, fmt);
	vfprintf(L->errs, fmt, ap);
	va_end(ap);
	fputc('\n', L->errs);
}

static void *field(struct cfg *c, const struct cfg_option *o)
{
	return (char *)c + o->offset;
}

static bool is_null_scalar(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL");
}

static void range_text(const struct cfg_option *o, char *buf, size_t cap)
{
	if (o->type == CFG_UINT)
		snprintf(buf, cap, "between %.0f and %.0f", o->min, o->max);
	else
		snprintf(buf, cap, "in %c%.17g, %.17g]", (o->flags & CFG_MIN_EXCLUSIVE) ? '(' : '[',
		         o->min, o->max);
}

/* ------------------------------------------------- one setter per type */

/* A scalar to set an option from: its text (from the file, or a default)
 * of len bytes, whether it was unquoted (numbers and booleans must be), and
 * where it is in the file. */
struct cfg_scalar {
	const char *text;
	size_t len;
	bool plain;
	yaml_mark_t m;
};

/* A type's setter converts v into the option's field.  Returns true on
 * success; on failure reports a problem at v->m and leaves the field as
 * it was. */
typedef bool cfg_setter(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v);

static bool set_uint(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	char rng[96], *end;
	unsigned long long x;

	range_text(o, rng, sizeof rng);
	errno = 0;
	x = strtoull(v->text, &end, 10);
	if (!v->plain || v->len == 0 || v->text[0] < '0' || v->text[0] > '9' || *end || errno) {
		problem(L, v->m, "%s must be an integer %s, got '%.40s'", o->name, rng, v->text);
		return false;
	}
	if ((double)x < o->min || (double)x > o->max) {
		problem(L, v->m, "%s must be %s, got %llu", o->name, rng, x);
		return false;
	}
	*(uint64_t *)field(L->c, o) = x;
	return true;
}

static bool set_real(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	char rng[96], *end;
	double x;

	range_text(o, rng, sizeof rng);
	errno = 0;
	x = strtod(v->text, &end);
	if (!v->plain || v->len == 0 || *end || errno || !isfinite(x)) {
		problem(L, v->m, "%s must be a number %s, got '%.40s'", o->name, rng, v->text);
		return false;
	}
	if (x < o->min || x > o->max || ((o->flags & CFG_MIN_EXCLUSIVE) && x <= o->min)) {
		problem(L, v->m, "%s must be %s, got %.17g", o->name, rng, x);
		return false;
	}
	*(double *)field(L->c, o) = x;
	return true;
}

static bool set_bool(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	if (v->plain && (!strcmp(v->text, "true") || !strcmp(v->text, "false"))) {
		*(bool *)field(L->c, o) = v->text[0] == 't';
		return true;
	}
	problem(L, v->m, "%s must be true or false, got '%.40s'", o->name, v->text);
	return false;
}

static bool set_enum(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	char list[128] = "";

	for (int i = 0; o->choices[i]; i++)
		if (!strcmp(v->text, o->choices[i])) {
			*(int *)field(L->c, o) = i;
			return true;
		}
	for (int i = 0; o->choices[i]; i++) {
		if (i)
			strncat(list, ", ", sizeof list - strlen(list) - 1);
		strncat(list, o->choices[i], sizeof list - strlen(list) - 1);
	}
	problem(L, v->m, "%s must be one of %s, got '%.40s'", o->name, list, v->text);
	return false;
}

/* Stores a copy of v->text (checked by the caller) in the option's field. */
static bool store_string(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	char *copy = strdup(v->text);

	if (!copy) {
		problem(L, v->m, "out of memory: %s", strerror(errno));
		return false;
	}
	free(*(char **)field(L->c, o));
	*(char **)field(L->c, o) = copy;
	return true;
}

/* What every string-valued option refuses: a NUL byte, too many bytes. */
static bool string_ok(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	if (strlen(v->text) != v->len) {
		problem(L, v->m, "%s must not contain a NUL byte", o->name);
		return false;
	}
	if (v->len > CFG_MAX_STRING) {
		problem(L, v->m, "%s is %zu bytes long; the limit is %d", o->name, v->len, CFG_MAX_STRING);
		return false;
	}
	return true;
}

static bool set_string(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	if (!string_ok(L, o, v))
		return false;
	if ((o->flags & CFG_NONEMPTY) && v->len == 0) {
		problem(L, v->m, "%s must not be empty", o->name);
		return false;
	}
	return store_string(L, o, v);
}

static bool set_endpoint(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	static const char *const schemes[] = { "tcp://", "ipc://", "inproc://" };
	bool ok = false;

	if (!string_ok(L, o, v))
		return false;
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		const size_t sl = strlen(schemes[i]);
		if (!strncmp(v->text, schemes[i], sl) && v->len > sl)
			ok = true;
	}
	if (!ok) {
		problem(L, v->m, "%s must be a zmq endpoint (tcp://HOST:PORT, ipc://PATH or inproc://NAME), got '%.60s'",
		        o->name, v->text);
		return false;
	}
	if (v->len > 255) {
		problem(L, v->m, "%s is longer than 255 bytes", o->name);
		return false;
	}
	return store_string(L, o, v);
}

int cfg_parse_listen(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                     bool *loopback, char *why, size_t cap)
{
	const char *colon = strrchr(text, ':');
	char host[64], *end;
	unsigned long port;
	size_t hl;

	memset(addr, 0, sizeof *addr);
	if (!colon || colon == text) {
		snprintf(why, cap, "must be HOST:PORT (e.g. 127.0.0.1:5573), got '%.60s'", text);
		return -1;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535 || colon[1] < '0' || colon[1] > '9') {
		snprintf(why, cap, "port must be a number from 0 to 65535, got '%.20s'", colon + 1);
		return -1;
	}
	hl = (size_t)(colon - text);
	if (text[0] == '[') {                         /* [IPv6]:PORT */
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
		if (hl < 3 || text[hl - 1] != ']' || hl - 2 >= sizeof host) {
			snprintf(why, cap, "an IPv6 address goes in brackets, e.g. [::1]:5573; got '%.60s'", text);
			return -1;
		}
		memcpy(host, text + 1, hl - 2);
		host[hl - 2] = '\0';
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
			snprintf(why, cap, "'%.60s' is not an IPv6 address", host);
			return -1;
		}
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof *a6;
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
		return 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
	if (hl >= sizeof host) {
		snprintf(why, cap, "host '%.60s' is too long", text);
		return -1;
	}
	memcpy(host, text, hl);
	host[hl] = '\0';
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
		snprintf(why, cap, "host must be an IPv4 address, [IPv6] or localhost (names are not "
		         "resolved), got '%.60s'", host);
		return -1;
	}
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	*len = sizeof *a4;
	*loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
	return 0;
}

/* http.listen: "" (off) or what cfg_parse_listen() accepts. */
static bool set_listen(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	struct sockaddr_storage a;
	socklen_t len;
	bool loop;
	char why[160];

	if (!string_ok(L, o, v))
		return false;
	if (v->len && cfg_parse_listen(v->text, &a, &len, &loop, why, sizeof why)) {
		problem(L, v->m, "%s %s", o->name, why);
		return false;
	}
	return store_string(L, o, v);
}

static void map_clear(struct cfg_map *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->kv[i].key);
		free(m->kv[i].value);
	}
	free(m->kv);
	m->kv = NULL;
	m->n = 0;
}

/* A map option from a scalar: only its default, "{}" (no entries), is one;
 * a file gives a map as a YAML mapping (load_map()). */
static bool set_map(struct loader *L, const struct cfg_option *o, const struct cfg_scalar *v)
{
	if (v->plain && !strcmp(v->text, "{}")) {
		map_clear(field(L->c, o));
		return true;
	}
	problem(L, v->m, "%s must be a mapping of names to values, got '%.40s'", o->name, v->text);
	return false;
}

/* The per-type interface (as Redis's config.c has one per type): every
 * option of a type is parsed, checked and documented the same way. */
static const struct {
	cfg_setter *set;
	const char *name;            /* in `isvdd --help` */
} cfg_types[] = {
	[CFG_UINT] = { set_uint, "integer" },
	[CFG_REAL] = { set_real, "number" },
	[CFG_BOOL] = { set_bool, "bool" },
	[CFG_STRING] = { set_string, "string" },
	[CFG_ENUM] = { set_enum, "choice" },
	[CFG_ENDPOINT] = { set_endpoint, "endpoint" },
	[CFG_LISTEN] = { set_listen, "listen" },
	[CFG_MAP] = { set_map, "map" },
};

/* Converts text (plain: unquoted) into the option's field; a problem at m
 * when it does not fit the option. */
static bool set_value(struct loader *L, const struct cfg_option *o, const char *text, size_t len,
                      bool plain, yaml_mark_t m)
{
	const struct cfg_scalar v = { text, len, plain, m };

	return cfg_types[o->type].set(L, o, &v);
}

static const char *type_name(const struct cfg_option *o)
{
	return cfg_types[o->type].name;
}

bool cfg_option_info(size_t i, struct cfg_option_info *out)
{
	const struct cfg_option *o;

	if (i >= N_OPTIONS)
		return false;
	o = &cfg_options[i];
	out->name = o->name;
	out->type = type_name(o);
	out->min = o->min;
	out->max = o->max;
	out->min_exclusive = (o->flags & CFG_MIN_EXCLUSIVE) != 0;
	out->nonempty = (o->flags & CFG_NONEMPTY) != 0;
	out->choices = o->choices;
	return true;
}

int cfg_init_defaults(struct cfg *c)
{
	struct loader L;
	yaml_mark_t none = { 0, 0, 0 };

	memset(c, 0, sizeof *c);
	memset(&L, 0, sizeof L);
	L.path = "(default)";
	L.errs = stderr;
	L.c = c;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];
		if (!set_value(&L, o, o->def, strlen(o->def), true, none))
			return -1;
	}
	return 0;
}

void cfg_fini(struct cfg *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];
		if (o->type == CFG_STRING || o->type == CFG_ENDPOINT || o->type == CFG_LISTEN)
			free(*(char **)field(c, o));
		else if (o->type == CFG_MAP)
			map_clear(field(c, o));
	}
	free(c->path);
	memset(c, 0, sizeof *c);
}

/* Next event into *ev (the caller deletes it).  Returns false on a YAML
 * syntax error, which has been reported. */
static bool next_event(struct loader *L, yaml_event_t *ev)
{
	if (yaml_parser_parse(&L->parser, ev))
		return true;
	problem(L, L->parser.problem_mark, "YAML syntax error: %s%s%s",
	        L->parser.problem ? L->parser.problem : "unknown",
	        L->parser.context ? " " : "", L->parser.context ? L->parser.context : "");
	return false;
}

/* Reports aliases, anchors and tags on ev (what names the place: what).
 * Returns true when ev is free of them. */
static bool plain_node(struct loader *L, const yaml_event_t *ev, const char *what)
{
	const yaml_char_t *anchor = NULL, *tag = NULL;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		problem(L, ev->start_mark, "%s: YAML aliases are not allowed (*%s)", what,
		        (const char *)ev->data.alias.anchor);
		return false;
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		break;
	default:
		return true;
	}
	if (anchor) {
		problem(L, ev->start_mark, "%s: YAML anchors are not allowed (&%s)", what, (const char *)anchor);
		return false;
	}
	if (tag) {
		problem(L, ev->start_mark, "%s: YAML tags are not allowed (%s)", what, (const char *)tag);
		return false;
	}
	return true;
}

/* Consumes the rest of the node that first opened (a scalar or alias is
 * already whole).  Returns false on a syntax error. */
static bool skip_node(struct loader *L, const yaml_event_t *first)
{
	int depth;

	if (first->type != YAML_MAPPING_START_EVENT && first->type != YAML_SEQUENCE_START_EVENT)
		return true;
	depth = 1;
	while (depth > 0) {
		yaml_event_t ev;
		if (!next_event(L, &ev))
			return false;
		if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
			depth++;
		else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
			depth--;
		yaml_event_delete(&ev);
	}
	return true;
}

static const struct cfg_option *find_option(const char *section, const char *key)
{
	size_t sl = strlen(section);

	for (size_t i = 0; i < N_OPTIONS; i++)
		if (!strncmp(cfg_options[i].name, section, sl) && cfg_options[i].name[sl] == '.' &&
		    !strcmp(cfg_options[i].name + sl + 1, key))
			return &cfg_options[i];
	return NULL;
}

static bool section_exists(const char *section)
{
	size_t sl = strlen(section);

	for (size_t i = 0; i < N_OPTIONS; i++)
		if (!strncmp(cfg_options[i].name, section, sl) && cfg_options[i].name[sl] == '.')
			return true;
	return false;
}

/* The entries of map option o (its MAPPING_START consumed) up to and
 * including its MAPPING_END: scalar names to scalar values, each name
 * once, every value kept as the text it is (quoted or not).  Returns false
 * on a syntax error. */
static bool load_map(struct loader *L, const struct cfg_option *o)
{
	struct cfg_map *m = field(L->c, o);

	map_clear(m);
	for (;;) {
		yaml_event_t kev, vev;
		char what[CFG_MAX_MAP_KEY + 64];
		bool ok;

		if (!next_event(L, &kev))
			return false;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			return true;
		}
		bool key_ok = false;
		if (kev.type == YAML_SCALAR_EVENT || kev.type == YAML_ALIAS_EVENT)
			key_ok = plain_node(L, &kev, o->name);   /* an alias is reported there */
		else
			problem(L, kev.start_mark, "%s: names must be plain scalars", o->name);
		ok = skip_node(L, &kev) && next_event(L, &vev);
		if (!ok) {
			yaml_event_delete(&kev);
			return false;
		}
		const char *key = key_ok ? (const char *)kev.data.scalar.value : "";
		const size_t klen = key_ok ? kev.data.scalar.length : 0;
		snprintf(what, sizeof what, "%s.%.*s", o->name, CFG_MAX_MAP_KEY, key);
		if (!key_ok) {
			/* reported */
		} else if (klen == 0 || klen > CFG_MAX_MAP_KEY || strlen(key) != klen) {
			problem(L, kev.start_mark, "%s: a name must be 1 to %d bytes without NUL", o->name,
			        CFG_MAX_MAP_KEY);
		} else if (!plain_node(L, &vev, what)) {
			/* reported */
		} else if (vev.type != YAML_SCALAR_EVENT) {
			problem(L, vev.start_mark, "%s must be a single value, not a %s", what,
			        vev.type == YAML_MAPPING_START_EVENT ? "mapping" : "list");
		} else if (is_null_scalar(&vev)) {
			problem(L, kev.start_mark, "%s needs a value", what);
		} else if (strlen((const char *)vev.data.scalar.value) != vev.data.scalar.length ||
		           vev.data.scalar.length > CFG_MAX_STRING) {
			problem(L, vev.start_mark, "%s must be at most %d bytes without NUL", what,
			        CFG_MAX_STRING);
		} else {
			size_t i;
			for (i = 0; i < m->n && strcmp(m->kv[i].key, key); i++)
				;
			struct cfg_kv *kv = NULL;
			if (i < m->n)
				problem(L, kev.start_mark, "%s appears twice (first at line %zu)", what, m->kv[i].line);
			else if (m->n >= CFG_MAX_MAP)
				problem(L, kev.start_mark, "%s: more than %d entries", o->name, CFG_MAX_MAP);
			else if (!(kv = realloc(m->kv, (m->n + 1) * sizeof *kv)))
				problem(L, kev.start_mark, "out of memory: %s", strerror(errno));
			if (kv) {
				m->kv = kv;
				kv += m->n;
				kv->key = strdup(key);
				kv->value = strdup((const char *)vev.data.scalar.value);
				kv->line = kev.start_mark.line + 1;
				kv->col = kev.start_mark.column + 1;
				m->n++;
				if (!kv->key || !kv->value)
					problem(L, kev.start_mark, "out of memory: %s", strerror(errno));
			}
		}
		ok = skip_node(L, &vev);
		yaml_event_delete(&kev);
		yaml_event_delete(&vev);
		if (!ok)
			return false;
	}
}

/* Reads the body of section (its MAPPING_START has been consumed) up to and
 * including its MAPPING_END.  Returns false on a syntax error. */
static bool load_section(struct loader *L, const char *section)
{
	for (;;) {
		yaml_event_t kev, vev;
		char what[160];
		bool ok = true;

		if (!next_event(L, &kev))
			return false;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			return true;
		}
		if (kev.type != YAML_SCALAR_EVENT || !plain_node(L, &kev, section)) {
			if (kev.type != YAML_ALIAS_EVENT && kev.type != YAML_SCALAR_EVENT)
				problem(L, kev.start_mark, "%s: keys must be plain names", section);
			ok = skip_node(L, &kev) && next_event(L, &vev);
			yaml_event_delete(&kev);
			if (!ok)
				return false;
			ok = skip_node(L, &vev);
			yaml_event_delete(&vev);
			if (!ok)
				return false;
			continue;
		}
		const char *key = (const char *)kev.data.scalar.value;
		const struct cfg_option *o = find_option(section, key);
		snprintf(what, sizeof what, "%s.%.100s", section, key);

		if (!next_event(L, &vev)) {
			yaml_event_delete(&kev);
			return false;
		}
		bool consumed = false;   /* the value's node was read whole (a map) */
		if (!o) {
			problem(L, kev.start_mark, "unknown key '%s'", what);
		} else if (!plain_node(L, &vev, what)) {
			/* reported */
		} else if (o->type == CFG_MAP && vev.type == YAML_MAPPING_START_EVENT) {
			size_t i = (size_t)(o - cfg_options);
			if (L->set[i]) {
				problem(L, kev.start_mark, "%s appears twice (first at line %zu)", what,
				        L->where[i].line + 1);
			} else {
				consumed = true;
				ok = load_map(L, o);
				L->set[i] = true;
				L->where[i] = kev.start_mark;
			}
		} else if (vev.type != YAML_SCALAR_EVENT) {
			problem(L, vev.start_mark, "%s must be a single %s value, not a %s", what, type_name(o),
			        vev.type == YAML_MAPPING_START_EVENT ? "mapping" : "list");
		} else {
			size_t i = (size_t)(o - cfg_options);
			if (L->set[i]) {
				problem(L, kev.start_mark, "%s appears twice (first at line %zu)", what,
				        L->where[i].line + 1);
			} else if (is_null_scalar(&vev)) {
				problem(L, kev.start_mark, "%s needs a value", what);
			} else if (set_value(L, o, (const char *)vev.data.scalar.value, vev.data.scalar.length,
			                     vev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE, kev.start_mark)) {
				L->set[i] = true;
				L->where[i] = kev.start_mark;
			}
		}
		if (!consumed)
			ok = skip_node(L, &vev);
		yaml_event_delete(&kev);
		yaml_event_delete(&vev);
		if (!ok)
			return false;
	}
}

/* The top-level mapping (its MAPPING_START consumed) through its end. */
static bool load_sections(struct loader *L)
{
	char seen[16][32];
	yaml_mark_t seen_at[16];
	size_t nseen = 0;

	for (;;) {
		yaml_event_t kev, vev;
		bool ok = true;

		if (!next_event(L, &kev))
			return false;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			return true;
		}
		const bool good_key = kev.type == YAML_SCALAR_EVENT && plain_node(L, &kev, "section");
		if (!good_key && kev.type != YAML_SCALAR_EVENT && kev.type != YAML_ALIAS_EVENT)
			problem(L, kev.start_mark, "section names must be plain names");
		if (!skip_node(L, &kev) || !next_event(L, &vev)) {
			yaml_event_delete(&kev);
			return false;
		}
		const char *name = good_key ? (const char *)kev.data.scalar.value : NULL;
		if (name && !strcmp(name, "kafka") && !L->c->kafka.on) {
			/* the section's presence is a setting of its own: a shard or
			 * a merger, even when every key is left at its default */
			L->c->kafka.on = true;
			L->c->kafka.line = kev.start_mark.line + 1;
			L->kafka_at = kev.start_mark;
		}
		if (!name) {
			/* reported above */
		} else if (!section_exists(name)) {
			problem(L, kev.start_mark, "unknown section '%.60s' (sections: model, endpoints, batching, "
			        "publish, monitor, storage, limits, security, http, log, kafka)", name);
		} else if (!plain_node(L, &vev, name)) {
			/* reported */
		} else if (vev.type != YAML_MAPPING_START_EVENT) {
			if (vev.type == YAML_SCALAR_EVENT && is_null_scalar(&vev))
				; /* an empty section: all defaults */
			else
				problem(L, vev.start_mark, "%s must be a mapping of keys to values", name);
		} else {
			size_t i;
			for (i = 0; i < nseen; i++)
				if (!strcmp(seen[i], name))
					break;
			if (i < nseen) {
				problem(L, kev.start_mark, "section %s appears twice (first at line %zu)", name,
				        seen_at[i].line + 1);
			} else if (nseen < 16) {
				snprintf(seen[nseen], sizeof seen[nseen], "%s", name);
				seen_at[nseen++] = kev.start_mark;
			}
			ok = load_section(L, name);
			yaml_event_delete(&kev);
			yaml_event_delete(&vev);
			if (!ok)
				return false;
			continue;
		}
		ok = skip_node(L, &vev);
		yaml_event_delete(&kev);
		yaml_event_delete(&vev);
		if (!ok)
			return false;
	}
}

static size_t opt_index(const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (!strcmp(cfg_options[i].name, name))
			return i;
	return N_OPTIONS;   /* not reached for names in the table */
}

/* Where to report a rule about option name: its key when set, else at. */
static yaml_mark_t mark_of(const struct loader *L, const char *name, yaml_mark_t at)
{
	const size_t i = opt_index(name);

	return L->set[i] ? L->where[i] : at;
}

/* A kafka section's rules: what a shard or a merger cannot start without,
 * what it cannot do, and topics that must differ. */
static void check_kafka(struct loader *L)
{
	const struct cfg *c = L->c;
	char changelog[CFG_CHANGELOG_MAX];

	if (!c->kafka.brokers[0])
		problem(L, mark_of(L, "kafka.brokers", L->kafka_at), "kafka.brokers must be set "
		        "(HOST:PORT[,HOST:PORT...]): a kafka section makes isvdd a shard or a merger");
	if (!c->kafka.topic[0])
		problem(L, mark_of(L, "kafka.topic", L->kafka_at), "kafka.topic must be set: the topic "
		        "of rows (a merger reads <topic>.isvd-models unless kafka.changelog_topic says)");
	if (!c->model.dim)
		problem(L, mark_of(L, "model.dim", L->kafka_at), "model.dim must be set with a kafka "
		        "section: a shard holds every message to it, and partition models must agree");
	if (c->monitor.enabled)
		problem(L, mark_of(L, "monitor.enabled", L->kafka_at), "monitor.enabled is not supported "
		        "with a kafka section: rows come from Kafka, not through the ingest path that "
		        "scores them");
	cfg_kafka_changelog(c, changelog, sizeof changelog);
	if (c->kafka.topic[0] && !strcmp(changelog, c->kafka.topic))
		problem(L, mark_of(L, "kafka.changelog_topic", L->kafka_at),
		        "kafka.changelog_topic and kafka.topic are the same topic '%s'", changelog);
	const char *dl = c->kafka.dead_letter_topic;
	if (dl[0] && (!strcmp(dl, c->kafka.topic) || !strcmp(dl, changelog)))
		problem(L, mark_of(L, "kafka.dead_letter_topic", L->kafka_at), "kafka.dead_letter_topic "
		        "'%s' must differ from the rows and changelog topics", dl);
}

/* Rules that involve more than one option; reported at the later key. */
static void check_together(struct loader *L)
{
	struct cfg *c = L->c;
	const size_t fi = opt_index("model.forget"), hi = opt_index("model.half_life");

	if (L->set[fi] && L->set[hi]) {
		yaml_mark_t m = L->where[fi].index > L->where[hi].index ? L->where[fi] : L->where[hi];
		problem(L, m, "model.forget and model.half_life both set; give one of them");
	}
	if (c->model.half_life > 0)
		c->model.forget = pow(2.0, -1.0 / c->model.half_life);
	if (!(c->model.forget > 0))
		problem(L, L->where[hi], "model.half_life %g gives a forgetting factor of 0", c->model.half_life);

	const char *names[3] = { "endpoints.ingest", "endpoints.query", "endpoints.publish" };
	const char *vals[3] = { c->endpoints.ingest, c->endpoints.query, c->endpoints.publish };
	for (int a = 0; a < 3; a++)
		for (int b = a + 1; b < 3; b++)
			if (vals[a] && vals[b] && !strcmp(vals[a], vals[b])) {
				const size_t ia = opt_index(names[a]), ib = opt_index(names[b]);
				yaml_mark_t m = L->set[ib] ? L->where[ib] : L->where[ia];
				problem(L, m, "%s and %s are the same endpoint '%s'", names[a], names[b], vals[a]);
			}

	const size_t ci = opt_index("security.curve");
	if (c->security.curve && !c->security.secret_key_file[0])
		problem(L, L->where[ci], "security.curve is true but security.secret_key_file is not set "
		        "(create one with `isvd keygen`)");
	if (c->security.curve && !c->security.client_keys_dir[0] && !c->security.ingest_keys_dir[0] &&
	    !c->security.query_keys_dir[0])
		problem(L, L->where[ci], "security.curve is true but no keys directory is set (client_keys_dir, "
		        "ingest_keys_dir or query_keys_dir): nobody could connect");

	/* the page and the metrics reveal the model: with CURVE protecting the
	 * sockets, an open HTTP port would undo it unless asked for */
	struct sockaddr_storage a;
	socklen_t alen;
	bool loopback = true;
	char why[160];
	const size_t li = opt_index("http.listen");
	if (c->security.curve && c->http.listen[0] && !c->http.allow_insecure &&
	    !cfg_parse_listen(c->http.listen, &a, &alen, &loopback, why, sizeof why) && !loopback)
		problem(L, L->set[li] ? L->where[li] : L->where[ci],
		        "http.listen %s is not a loopback address and security.curve is true: /status and "
		        "/metrics would reveal the model to anyone, without authentication or encryption; "
		        "bind 127.0.0.1 (and reach it through a tunnel or a proxy), or set "
		        "http.allow_insecure: true", c->http.listen);
	if (c->kafka.on)
		check_kafka(L);
}

static char *read_file(struct loader *L, const char *path, size_t *len)
{
	yaml_mark_t top = { 0, 0, 0 };
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = fopen(path, "rb");

	if (!f) {
		problem(L, top, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		problem(L, top, "not a regular file");
		goto fail;
	}
	buf = malloc(CFG_MAX_FILE_BYTES + 1);
	if (!buf) {
		problem(L, top, "out of memory: %s", strerror(errno));
		goto fail;
	}
	n = fread(buf, 1, CFG_MAX_FILE_BYTES + 1, f);
	if (ferror(f)) {
		problem(L, top, "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (n > CFG_MAX_FILE_BYTES) {
		problem(L, top, "the file is larger than the limit of %u bytes", CFG_MAX_FILE_BYTES);
		goto fail;
	}
	fclose(f);
	*len = n;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

int cfg_load(struct cfg *c, const char *path, FILE *errs)
{
	struct loader L;
	yaml_event_t ev;
	size_t len = 0;
	char *text;
	bool ok;

	memset(&L, 0, sizeof L);
	L.path = path;
	L.errs = errs;
	L.c = c;
	free(c->path);
	c->path = strdup(path);
	if (!c->path) {
		fprintf(errs, "%s: out of memory\n", path);
		return 1;
	}
	text = read_file(&L, path, &len);
	if (!text)
		return L.problems;
	if (!yaml_parser_initialize(&L.parser)) {
		fprintf(errs, "%s: cannot initialise the YAML parser\n", path);
		free(text);
		return 1;
	}
	yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);

	/* stream start, then at most one document holding one mapping */
	ok = next_event(&L, &ev);
	if (ok)
		yaml_event_delete(&ev);   /* STREAM_START */
	if (ok && (ok = next_event(&L, &ev))) {
		if (ev.type == YAML_DOCUMENT_START_EVENT) {
			yaml_event_delete(&ev);
			ok = next_event(&L, &ev);
			if (ok && ev.type == YAML_MAPPING_START_EVENT && plain_node(&L, &ev, "top level")) {
				yaml_event_delete(&ev);
				ok = load_sections(&L);
			} else if (ok) {
				if (ev.type == YAML_SCALAR_EVENT && is_null_scalar(&ev))
					; /* an empty document: all defaults */
				else if (ev.type != YAML_MAPPING_START_EVENT)
					problem(&L, ev.start_mark, "the top level must be a mapping of sections");
				ok = skip_node(&L, &ev);
				yaml_event_delete(&ev);
			}
			if (ok && (ok = next_event(&L, &ev))) {
				yaml_event_delete(&ev);   /* DOCUMENT_END */
				if ((ok = next_event(&L, &ev))) {
					if (ev.type != YAML_STREAM_END_EVENT)
						problem(&L, ev.start_mark, "only one YAML document is allowed");
					yaml_event_delete(&ev);
				}
			}
		} else {
			yaml_event_delete(&ev);   /* STREAM_END: an empty file */
		}
	}
	yaml_parser_delete(&L.parser);
	free(text);
	if (ok)
		check_together(&L);
	return L.problems;
}

void cfg_print_help(FILE *out)
{
	char section[32] = "";

	fprintf(out, "Configuration keys (YAML, section: {key: value}); defaults in brackets:\n");
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct cfg_option *o = &cfg_options[i];
		const char *dot = strchr(o->name, '.');
		char rng[128] = "";

		if (strlen(section) != (size_t)(dot - o->name) ||
		    strncmp(section, o->name, (size_t)(dot - o->name))) {
			snprintf(section, sizeof section, "%.*s", (int)(dot - o->name), o->name);
			fprintf(out, "\n%s:\n", section);
		}
		if (o->type == CFG_UINT || o->type == CFG_REAL) {
			char r[96];
			range_text(o, r, sizeof r);
			snprintf(rng, sizeof rng, ", %s", r);
		} else if (o->type == CFG_ENUM) {
			size_t at = (size_t)snprintf(rng, sizeof rng, ", one of");
			for (int j = 0; o->choices[j] && at < sizeof rng; j++)
				at += (size_t)snprintf(rng + at, sizeof rng - at, " %s", o->choices[j]);
		}
		fprintf(out, "  %-32s %s [%s]%s\n      %s\n", o->name, type_name(o),
		        o->def[0] ? o->def : "\"\"", rng, o->help);
	}
}
