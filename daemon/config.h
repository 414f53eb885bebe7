/*
 * config.h — isvdd's configuration: the values, and the loader that fills
 * them from a YAML file.
 *
 * Every option is one row of the table in config.c (name, type, default,
 * range or choices, help).  That table alone drives the parser, the
 * validation, `isvdd --help` and the defaults, so none of them can drift
 * from the others.  configs/default.yaml lists the same keys; an
 * integration test checks that it does.
 *
 * A struct cfg owns its strings; release it with cfg_fini().
 */
#ifndef ISVDD_CONFIG_H
#define ISVDD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* Largest configuration file read, in bytes. */
#define CFG_MAX_FILE_BYTES (1u << 20)

enum cfg_log_level { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR };
enum cfg_log_format { CFG_LOG_TEXT, CFG_LOG_JSON };
enum cfg_fsync { CFG_FSYNC_ALWAYS, CFG_FSYNC_INTERVAL, CFG_FSYNC_NONE };
enum cfg_missing { CFG_MISSING_REJECT, CFG_MISSING_IMPUTE };
enum cfg_kafka_role { CFG_KAFKA_SHARD, CFG_KAFKA_MERGE };
/* how a Kafka message holds rows (daemon/kafka_format.c) */
enum cfg_kafka_format { CFG_KAFKA_MSGPACK, CFG_KAFKA_JSON, CFG_KAFKA_CSV, CFG_KAFKA_F64 };

/* One entry of a map option (kafka.properties): both strings owned, and
 * where the key stands in the file (1-based; 0 for none), so that a later
 * check (kafka.c's kfk_check()) can name the place. */
struct cfg_kv {
	char *key, *value;
	size_t line, col;
};
struct cfg_map {
	struct cfg_kv *kv;
	size_t n;
};

struct cfg {
	char *path;                       /* the file loaded, or NULL for defaults only */
	struct {
		uint64_t dim;             /* 0: from the first push */
		uint64_t rank, extra, reorth_every;
		uint64_t threads;         /* the engine's (isvd_options.threads); 0 = auto */
		bool center;
		double forget;            /* λ; derived from half_life when that is set */
		double half_life;         /* rows; 0 = not set */
		int missing;              /* enum cfg_missing */
		int mode;                 /* enum isvd_mode (update/isvd_model.h) */
	} model;
	struct {
		char *ingest, *query, *publish;
	} endpoints;
	struct {
		uint64_t max_rows, max_delay_ms;
	} batching;
	struct {
		uint64_t spectrum_every_ms, spectrum_every_rows, factors_every_ms;
	} publish;
	struct {                          /* monitor.c, ingest.c, publish.c */
		bool enabled;
		double confidence;        /* of the control limits */
		double spe_limit, t2_limit;   /* fixed limits; 0 = from confidence */
		uint64_t anomaly_max_per_s;   /* `anomaly` messages per second */
		uint64_t warmup_rows;     /* nothing flagged before; 0 = 10·rank */
		uint64_t baseline_rows;   /* the drift baseline is taken here; 0 = warmup */
		double drift_degrees;     /* a `drift` message beyond this angle */
	} monitor;
	struct {                          /* storage.c */
		char *dir;
		int fsync;                /* enum cfg_fsync */
		uint64_t fsync_interval_ms;
		uint64_t checkpoint_every_rows, checkpoint_every_s;
		uint64_t segment_bytes;
	} storage;
	struct {
		uint64_t max_message_bytes, max_rows_per_push, max_clients;
		uint64_t recv_hwm, send_hwm, publish_hwm;
		uint64_t max_pending_pushes;  /* queued pushes before an early flush (ingest.c) */
		uint64_t handshake_ms;        /* ZMQ_HANDSHAKE_IVL of every socket; 0 = none */
		uint64_t push_rows_per_s, push_burst_rows, max_pushers;   /* ratelimit.c */
		uint64_t max_connections_per_address, max_connections;   /* conncap.c */
	} limits;
	struct {                          /* security.c */
		bool curve;               /* CurveZMQ + the ZAP handler on all three sockets */
		char *secret_key_file;    /* the server's secret key (Z85), mode 0600 */
		char *client_keys_dir;    /* public keys admitted on every socket */
		char *ingest_keys_dir;    /* public keys admitted on ingest only */
		char *query_keys_dir;     /* public keys admitted on query and publish only */
	} security;
	struct {                          /* http.c: /metrics, /status, /healthz */
		char *listen;             /* "HOST:PORT" (cfg_parse_listen()); "" = off */
		bool allow_insecure;      /* serve a non-loopback address with security.curve on */
	} http;
	struct {                          /* kafka*.c: README, "Scale-out with Kafka" */
		bool on;                  /* the file has a kafka section: a shard or a merger */
		size_t line;              /* of the section's name (1-based), when on */
		int role;                 /* enum cfg_kafka_role */
		char *brokers, *topic, *group;
		int format;               /* enum cfg_kafka_format */
		char *changelog_topic;    /* "" = <topic>.isvd-models */
		char *dead_letter_topic;  /* "" = none */
		uint64_t image_every_ms, merge_every_ms;
		struct cfg_map properties;   /* passed to librdkafka as they are */
	} kafka;
	struct {
		int level;                /* enum cfg_log_level */
		int format;               /* enum cfg_log_format */
		char *file;               /* "" = stderr */
		uint64_t warn_every_ms;
	} log;
};

/* Fills *c with every option's default.  Returns 0, or -1 when out of memory
 * (a message has been printed to stderr).  *c must be released with
 * cfg_fini() either way. */
int cfg_init_defaults(struct cfg *c);

/* Loads path over the defaults.  Every problem found is printed to errs as
 * "path:line:col: message" (1-based); returns the number of problems (0 =
 * the configuration is valid).  *c is filled either way and must be
 * released with cfg_fini(). */
int cfg_load(struct cfg *c, const char *path, FILE *errs);

/* Frees the strings of *c and zeroes it.  cfg_fini(NULL) is a no-op. */
void cfg_fini(struct cfg *c);

/* Writes the documentation of every option (from the table) to out. */
void cfg_print_help(FILE *out);

/* The option table, read-only (for tests and tools): the i-th option's
 * name, its type's name ("integer", "number", "bool", "string", "choice",
 * "endpoint", "listen", "map"), its range (integer, number), whether "" is refused
 * (string), and its NULL-terminated choices (choice).  false past the end. */
struct cfg_option_info {
	const char *name, *type;
	double min, max;
	bool min_exclusive, nonempty;
	const char *const *choices;
};
bool cfg_option_info(size_t i, struct cfg_option_info *out);

/* Parses an http.listen value "HOST:PORT": HOST is an IPv4 address, an
 * IPv6 address in brackets ("[::1]:5573") or "localhost" (127.0.0.1);
 * PORT is 0..65535, 0 taking any free port.  Names other than localhost
 * are refused, so that whether the page is reachable from the network
 * never depends on a resolver.  Returns 0 with *addr (*len bytes) and
 * *loopback (127.0.0.0/8 or ::1), or -1 with why.  The parser of the
 * option and http.c's bind share it. */
int cfg_parse_listen(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                     bool *loopback, char *why, size_t cap);

/* Names for enum values, for logs. */
const char *cfg_log_level_name(int level);
const char *cfg_fsync_name(int fsync);
const char *cfg_kafka_role_name(int role);
const char *cfg_kafka_format_name(int format);

/* kafka.changelog_topic, or <kafka.topic>.isvd-models when that is "",
 * into buf (CFG_CHANGELOG_MAX bytes hold any).  Returns buf. */
#define CFG_CHANGELOG_MAX (4096 + 16)
const char *cfg_kafka_changelog(const struct cfg *c, char *buf, size_t cap);

#endif /* ISVDD_CONFIG_H */
