/*
 * main.c — isvdd's command line, signals and start-up.
 *
 *   isvdd --config FILE [--repair] [--seed IMAGE]  recover from storage.dir
 *                                   (or seed an empty one) and run; with a
 *                                   kafka section, a shard or a merger
 *   isvdd --check --config FILE     validate FILE, print every problem, exit 0/1
 *   isvdd --help | --version
 *
 * Exit codes: 0 clean stop (SIGTERM/SIGINT, final checkpoint written) or a
 * valid --check; 1 a configuration with problems (with security.curve: a
 * missing or too readable key file, a libzmq without CURVE), or a start-up or
 * shutdown failure (e.g. an endpoint that cannot be bound, a stored model
 * that does not match the configuration, a final checkpoint that failed);
 * 2 bad command-line usage; 3 (STO_EXIT_CORRUPT) corruption in the middle
 * of the log or no usable checkpoint, refused without --repair;
 * 4 (STO_EXIT_UNUSABLE) storage.dir cannot be created, read or locked.
 *
 * The two signal flags below are the daemon's only globals: a handler can
 * reach nothing else.  zmq_poll() returns EINTR on a signal, and the loop
 * never waits more than 250 ms, so a flag is seen promptly.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "isvd_proto.h"
#include "kafka.h"
#include "log.h"
#include "security.h"
#include "server.h"
#include "storage.h"

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

static volatile sig_atomic_t got_stop, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
}

/* OpenBLAS, when that is the BLAS linked, runs single-threaded: the engine's
 * matrices are small and threads only add overhead.  The environment
 * variable covers BLAS libraries that read it lazily; OpenBLAS reads it at
 * load time, so it is also told directly when its symbol is present. */
extern void openblas_set_num_threads(int n) __attribute__((weak));

static void blas_single_thread(void)
{
	setenv("OPENBLAS_NUM_THREADS", "1", 0);
	if (openblas_set_num_threads)
		openblas_set_num_threads(1);
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: isvdd --config FILE [--repair] [--seed IMAGE]\n"
	        "                                          recover from storage.dir and serve\n"
	        "       isvdd --check --config FILE        validate FILE and print every problem\n"
	        "       isvdd --help | --version\n\n"
	        "isvdd keeps a truncated SVD of the rows pushed to it over ZeroMQ (wire\n"
	        "protocol v1, protocol/PROTOCOL.md).  Every acknowledged push is in its\n"
	        "write-ahead log under storage.dir; at start it loads the newest valid\n"
	        "checkpoint there and replays the log after it.  SIGTERM/SIGINT stop it\n"
	        "cleanly (with a final checkpoint), SIGHUP reopens its log file and\n"
	        "re-reads the CURVE client keys.  Under systemd (NOTIFY_SOCKET set) it\n"
	        "reports READY, RELOADING, STOPPING, STATUS and WATCHDOG (sd_notify).\n"
	        "With a kafka section it is instead a shard or a merger of a Kafka topic\n"
	        "of rows: no ingest socket, no storage.dir (README, \"Scale-out with Kafka\").\n\n"
	        "  --repair  when the log is corrupt in the middle, drop the bad record and\n"
	        "            everything after it (copies kept as *.corrupt) instead of\n"
	        "            refusing to start\n"
	        "  --seed IMAGE  start from the model in IMAGE (an engine image such as\n"
	        "            `isvd merge` writes, or a checkpoint file, whose duplicate table\n"
	        "            is not kept) when storage.dir holds no model yet; it is written\n"
	        "            as the first checkpoint before anything is served.  Refused,\n"
	        "            with the reason, when storage.dir already holds rows or the\n"
	        "            image's model.* settings differ from the configuration\n\n"
	        "exit codes: 0 clean stop; 1 configuration or start-up failure; 2 usage;\n"
	        "            3 corrupt storage (see --repair); 4 storage.dir unusable or locked\n\n");
}

static int install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;   /* no SA_RESTART: zmq_poll must return EINTR */
	if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL) || sigaction(SIGHUP, &sa, NULL))
		return -1;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static void log_start(struct log_sink *log, const struct cfg *c)
{
	log_msg(log, CFG_LOG_INFO,
	        "isvdd %s (protocol %d) starting: config %s; ingest %s, query %s, publish %s; "
	        "dim %llu%s, rank %llu, extra %llu, center %s, forget %.17g; batching %llu rows / %llu ms; "
	        "storage dir %s, fsync %s (interval %llu ms), checkpoint every %llu rows / %llu s",
	        ISVD_VERSION, ISVD_PROTO_VERSION, c->path, c->endpoints.ingest, c->endpoints.query,
	        c->endpoints.publish, (unsigned long long)c->model.dim,
	        c->model.dim ? "" : " (from the first push)", (unsigned long long)c->model.rank,
	        (unsigned long long)c->model.extra, c->model.center ? "yes" : "no", c->model.forget,
	        (unsigned long long)c->batching.max_rows, (unsigned long long)c->batching.max_delay_ms,
	        c->storage.dir, cfg_fsync_name(c->storage.fsync),
	        (unsigned long long)c->storage.fsync_interval_ms,
	        (unsigned long long)c->storage.checkpoint_every_rows,
	        (unsigned long long)c->storage.checkpoint_every_s);
	if (c->kafka.on)
		log_msg(log, CFG_LOG_INFO, "kafka: role %s, brokers %s, topic %s, group %s, format %s; "
		        "storage.dir is not used (Kafka keeps the rows, the changelog the models)",
		        cfg_kafka_role_name(c->kafka.role), c->kafka.brokers, c->kafka.topic,
		        c->kafka.group, cfg_kafka_format_name(c->kafka.format));
}

int main(int argc, char **argv)
{
	const char *path = NULL, *seed = NULL;
	int check = 0, repair = 0, ret = 1, problems;
	struct cfg cfg;
	struct log_sink log;
	struct isvdd *srv = NULL;

	blas_single_thread();
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			cfg_print_help(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
			const char *kafka = kfk_version();
			printf("isvdd %s (protocol %d)%s%s\n", ISVD_VERSION, ISVD_PROTO_VERSION,
			       kafka ? " kafka: " : "", kafka ? kafka : "");
			return 0;
		} else if (!strcmp(argv[i], "--check")) {
			check = 1;
		} else if (!strcmp(argv[i], "--repair")) {
			repair = 1;
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			seed = argv[++i];
		} else if (!strncmp(argv[i], "--seed=", 7)) {
			seed = argv[i] + 7;
		} else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			path = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			path = argv[i] + 9;
		} else {
			fprintf(stderr, "isvdd: unknown or incomplete argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "isvdd: --config FILE is required\n");
		usage(stderr);
		return 2;
	}

	if (cfg_init_defaults(&cfg))
		goto out_cfg;
	problems = cfg_load(&cfg, path, stderr);
	if (!problems)   /* key files and directories, CURVE in libzmq; librdkafka's properties */
		problems = sec_check(&cfg, stderr) + kfk_check(&cfg, stderr);
	if (problems) {
		fprintf(stderr, "%s: %d problem%s; %s\n", path, problems, problems == 1 ? "" : "s",
		        check ? "the configuration is not valid" : "not starting");
		goto out_cfg;
	}
	if (check) {
		printf("%s: ok\n", path);
		ret = 0;
		goto out_cfg;
	}

	if (log_open(&log, cfg.log.file, cfg.log.level, cfg.log.format == CFG_LOG_JSON,
	             cfg.log.warn_every_ms))
		goto out_cfg;
	if (install_signals()) {
		log_msg(&log, CFG_LOG_ERROR, "cannot install signal handlers");
		goto out_log;
	}
	log_start(&log, &cfg);
	if ((ret = srv_create(&cfg, &log, repair, seed, &srv)) != 0) {
		log_msg(&log, CFG_LOG_ERROR, "not starting (exit code %d)", ret);
		if (log.path)   /* the reason is in the file; say where */
			fprintf(stderr, "isvdd: not starting; see %s\n", log.path);
		goto out_log;
	}
	log_msg(&log, CFG_LOG_INFO, "ready");
	ret = srv_run(srv, &got_stop, &got_hup) ? 1 : 0;
	srv_destroy(srv);
	log_msg(&log, CFG_LOG_INFO, "stopped");
out_log:
	log_close(&log);
out_cfg:
	cfg_fini(&cfg);
	return ret;
}
