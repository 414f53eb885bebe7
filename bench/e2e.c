/*
 * e2e.c — end-to-end benchmark of isvdd through libisvd: what the network,
 * the protocol and the storage cost on top of the engine.
 *
 * `isvd-e2e` starts the daemon itself (a generated config in a temporary
 * directory, tcp://127.0.0.1 on free ports), drives it with libisvd and
 * prints numbers; it asserts nothing about time.  Six sections:
 *
 *   ingest    rows/s acknowledged, p50/p99 ack latency (push_send → its ack)
 *             and the daemon's CPU share, for pushes of 1, 16 and 256 rows
 *             with pipelining, per fsync policy, next to the engine's own
 *             rows/s on the same rows in blocks of batching.max_rows; then 8
 *             concurrent pushers with fsync always vs interval (group commit)
 *   query     single-row `project` latency (p50, p99, p99.9) while a pusher
 *             drives ingestion at full speed
 *   memory    the daemon's VmRSS / VmHWM and the storage directory's size at
 *             10^5 rows, halfway and at the end of a long stream
 *   recovery  kill -9 after streaming with checkpoints off, restart, and the
 *             replay rate from the daemon's "recovery: replayed" log line
 *   monitor   what monitor.enabled costs (SPE and T² of every pushed row
 *             against the model before its block): rows/s with it off and
 *             on, in rounds that alternate off and on (the best of each
 *             kept, since the host drifts), for the engine in process
 *             (isvd_model_update vs isvd_model_update_monitored) and through
 *             the daemon (one pusher, pushes of 256 rows, fsync interval)
 *   producer  one row per call through libisvd's producer (isvd/producer.h,
 *             its defaults: linger 5 ms, 1024 rows a batch) against pushes of
 *             256 rows, fsync always, and the ratio (issue 21's target: the
 *             producer at >= 50%)
 *
 * DESIGN
 *   Rows come from the seeded generator of isvd-bench (rank-k signal with
 *   s_j = 10^(-j/k) along a random orthonormal basis, noise 1e-3): one pool
 *   per size (at least 1024 rows, at most 64 MiB or 65536 rows) that the
 *   pushers and the engine run cycle through, so they see the same rows.
 *
 *   A pusher is one thread with its own libisvd handle.  It calls
 *   isvd_client_push_send() (which blocks while the window of pushes in
 *   flight is full) until its deadline or row budget, then
 *   isvd_client_push_flush().  Acks arrive in a callback on the same
 *   thread, which records each push's latency from the send time kept in a
 *   ring indexed by the push's number (passed as batch.user).  rows/s is
 *   the rows acknowledged over the time from the first send to the last
 *   ack.  The window is --in-flight pushes, fewer when the pushes are big
 *   (at most 48 MiB in flight in all, at least 2 pushes a pusher).
 *
 *   The daemon's CPU share is the growth of utime + stime in
 *   /proc/PID/stat over the same interval, in % of one core (the daemon
 *   runs a loop thread, a query thread and the engine's threads; BLAS
 *   single-threaded).
 *
 *   The engine's figure links update/ directly: same options as the
 *   daemon's model (mode auto, no centring, extra 10, one engine thread as
 *   model.threads' default), one BLAS thread,
 *   isvd_model_update() on blocks of 1024 rows (batching.max_rows), timed
 *   for the same --seconds.
 *
 *   Cleanup: every daemon is started with PR_SET_PDEATHSIG = SIGKILL, so it
 *   dies with this process however that ends; SIGINT/SIGTERM kill the
 *   daemons at once and stop the measurements, and the normal path then
 *   removes the temporary directory (a second signal exits at once).
 */
#define _XOPEN_SOURCE 700          /* nftw() */
#include "isvd_model.h"
#include "bench_util.h"
#include <isvd/client.h>
#include <isvd/producer.h>

#include <cblas.h>
#include <lapacke.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define PROG "isvd-e2e"

#define E2E_MAX_ROWS      1024      /* batching.max_rows of the generated config */
#define E2E_RING          4096      /* send times remembered per pusher (> window) */
#define E2E_INFLIGHT_MAX  (48u << 20) /* bytes in flight, all pushers together */
#define E2E_POOL_BYTES    (64u << 20)
#define E2E_POOL_MAXROWS  65536
#define E2E_MAX_SIZES     8
#define E2E_ACK_TIMEOUT   60000     /* ms: a bench waits, it does not resend */
#define E2E_START_TIMEOUT 600.0     /* s until ping answers (a long replay) */

enum { SEC_INGEST = 1, SEC_QUERY = 2, SEC_MEMORY = 4, SEC_RECOVERY = 8, SEC_MONITOR = 16,
       SEC_PRODUCER = 32, SEC_ALL = 63, SEC_LAST = SEC_PRODUCER };
#define E2E_MONITOR_ROUNDS 5     /* off/on pairs in the monitor section */

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

struct e2e_size {
	size_t n, k;
};

struct e2e_opts {
	struct e2e_size sizes[E2E_MAX_SIZES];
	size_t nsizes;
	unsigned only;           /* mask of SEC_* */
	double seconds;          /* per measurement */
	double rows_scale;       /* memory and recovery row counts */
	double time_cap;         /* longest stream in memory / recovery, s */
	unsigned pushers;        /* ingest section */
	unsigned in_flight;
	uint64_t seed;
	int quick, json, keep;
	const char *isvdd;
	const char *tmp;         /* parent of the temporary directory */
};

static void usage(FILE *f)
{
	fprintf(f,
	"usage: isvd-e2e [options]\n"
	"\n"
	"Starts isvdd (a generated config in a temporary directory, tcp on\n"
	"127.0.0.1, free ports) and measures it through libisvd: ingest rows/s, ack\n"
	"latency and daemon CPU per push size and fsync policy next to the engine's\n"
	"in-process rows/s; project latency under ingest load; the daemon's memory\n"
	"and storage over a long stream; replay rate after kill -9; the cost of\n"
	"monitor.enabled (anomaly scores at ingest); one-row pushes through\n"
	"libisvd's producer against pushes of 256.  Prints numbers;\n"
	"asserts nothing.\n"
	"\n"
	"  --only LIST      sections to run: ingest, query, memory, recovery, monitor,\n"
	"                   producer (comma list or repeated; default all)\n"
	"  --sizes LIST     NxK configurations (default 64x8,1000x50,10000x100)\n"
	"  --seconds S      length of each timed measurement (default 3; --quick 1)\n"
	"  --rows-scale F   scale the memory stream (10^7 rows at 64x8, 10^6 at\n"
	"                   1000x50, 10^5 otherwise) and the recovery log (10^6 rows\n"
	"                   at 64x8, 10^5 at 1000x50, 10^4 otherwise) (default 1;\n"
	"                   --quick 0.1)\n"
	"  --time-cap S     longest stream in memory/recovery, then it stops and\n"
	"                   reports what it has (default 300)\n"
	"  --pushers P      concurrent pushers in the ingest table (default 1; the\n"
	"                   group-commit rows always use 8)\n"
	"  --in-flight W    pipelined pushes per pusher (default 16; fewer for big\n"
	"                   pushes: 48 MiB in flight at most, 2 pushes at least)\n"
	"  --quick          --seconds 1 --rows-scale 0.1 (a run of about 2 minutes)\n"
	"  --isvdd PATH     the daemon (default build/daemon/isvdd, else the isvdd\n"
	"                   next to this program's build directory)\n"
	"  --tmp DIR        where the temporary directory goes (default $TMPDIR or /tmp)\n"
	"  --seed S         data seed (default 1)\n"
	"  --json           one JSON object a line instead of the tables\n"
	"  --keep           keep each run's temporary directory (config, daemon log,\n"
	"                   storage) and print its path\n"
	"  --help           this text\n");
}

static int parse_double(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, PROG ": %s needs a number in [%g, %g], got '%s'\n", opt, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_only(const char *s, unsigned *mask)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof buf) {
		fprintf(stderr, PROG ": --only: list too long\n");
		return -1;
	}
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "ingest"))
			*mask |= SEC_INGEST;
		else if (!strcmp(tok, "query"))
			*mask |= SEC_QUERY;
		else if (!strcmp(tok, "memory"))
			*mask |= SEC_MEMORY;
		else if (!strcmp(tok, "recovery"))
			*mask |= SEC_RECOVERY;
		else if (!strcmp(tok, "monitor"))
			*mask |= SEC_MONITOR;
		else if (!strcmp(tok, "producer"))
			*mask |= SEC_PRODUCER;
		else {
			fprintf(stderr, PROG ": --only: unknown section '%s' (ingest, query, memory, "
			        "recovery, monitor, producer)\n", tok);
			return -1;
		}
	}
	return 0;
}

static int parse_sizes(const char *s, struct e2e_opts *o)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof buf) {
		fprintf(stderr, PROG ": --sizes: list too long\n");
		return -1;
	}
	strcpy(buf, s);
	o->nsizes = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long n, k;
		char x, extra;

		if (sscanf(tok, "%lu%c%lu%c", &n, &x, &k, &extra) != 3 || (x != 'x' && x != 'X') ||
		    n < 1 || n > 100000 || k < 1 || k > n || k > ISVD_MAX_RANK) {
			fprintf(stderr, PROG ": --sizes: bad size '%s' (NxK with 1 <= K <= N <= 100000)\n",
			        tok);
			return -1;
		}
		if (o->nsizes == E2E_MAX_SIZES) {
			fprintf(stderr, PROG ": --sizes: at most %d sizes\n", E2E_MAX_SIZES);
			return -1;
		}
		o->sizes[o->nsizes].n = n;
		o->sizes[o->nsizes].k = k;
		o->nsizes++;
	}
	if (o->nsizes == 0) {
		fprintf(stderr, PROG ": --sizes is empty\n");
		return -1;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct e2e_opts *o)
{
	enum { O_ONLY = 256, O_SIZES, O_SECONDS, O_SCALE, O_CAP, O_PUSHERS, O_INFLIGHT, O_QUICK,
	       O_ISVDD, O_TMP, O_SEED, O_JSON, O_KEEP, O_HELP };
	static const struct option longopts[] = {
		{"only", required_argument, NULL, O_ONLY},
		{"sizes", required_argument, NULL, O_SIZES},
		{"seconds", required_argument, NULL, O_SECONDS},
		{"rows-scale", required_argument, NULL, O_SCALE},
		{"time-cap", required_argument, NULL, O_CAP},
		{"pushers", required_argument, NULL, O_PUSHERS},
		{"in-flight", required_argument, NULL, O_INFLIGHT},
		{"quick", no_argument, NULL, O_QUICK},
		{"isvdd", required_argument, NULL, O_ISVDD},
		{"tmp", required_argument, NULL, O_TMP},
		{"seed", required_argument, NULL, O_SEED},
		{"json", no_argument, NULL, O_JSON},
		{"keep", no_argument, NULL, O_KEEP},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	double seconds = -1, scale = -1;
	int c;

	memset(o, 0, sizeof *o);
	o->time_cap = 300;
	o->pushers = 1;
	o->in_flight = 16;
	o->seed = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		const char *name = argv[optind - 1];
		int rc = 0;
		size_t v;

		switch (c) {
		case O_ONLY: rc = parse_only(optarg, &o->only); break;
		case O_SIZES: rc = parse_sizes(optarg, o); break;
		case O_SECONDS: rc = parse_double("--seconds", optarg, 0.1, 3600, &seconds); break;
		case O_SCALE: rc = parse_double("--rows-scale", optarg, 1e-4, 100, &scale); break;
		case O_CAP: rc = parse_double("--time-cap", optarg, 1, 86400, &o->time_cap); break;
		case O_PUSHERS:
			rc = parse_size(PROG, "--pushers", optarg, 1, 64, &v);
			o->pushers = (unsigned)v;
			break;
		case O_INFLIGHT:
			rc = parse_size(PROG, "--in-flight", optarg, 1, 1024, &v);
			o->in_flight = (unsigned)v;
			break;
		case O_QUICK: o->quick = 1; break;
		case O_ISVDD: o->isvdd = optarg; break;
		case O_TMP: o->tmp = optarg; break;
		case O_SEED: rc = parse_u64(PROG, "--seed", optarg, 0, UINT64_MAX, &o->seed); break;
		case O_JSON: o->json = 1; break;
		case O_KEEP: o->keep = 1; break;
		case 'h':
		case O_HELP: usage(stdout); exit(0);
		case ':':
			fprintf(stderr, PROG ": option %s needs a value\n", name);
			rc = -1;
			break;
		default:
			fprintf(stderr, PROG ": unknown option %s\n", name);
			rc = -1;
			break;
		}
		if (rc != 0) {
			fprintf(stderr, "Try 'isvd-e2e --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\nTry 'isvd-e2e --help'.\n",
		        argv[optind]);
		return -1;
	}
	if (o->only == 0)
		o->only = SEC_ALL;
	if (o->nsizes == 0) {
		static const struct e2e_size def[] = { {64, 8}, {1000, 50}, {10000, 100} };
		memcpy(o->sizes, def, sizeof def);
		o->nsizes = 3;
	}
	o->seconds = seconds > 0 ? seconds : o->quick ? 1.0 : 3.0;
	o->rows_scale = scale > 0 ? scale : o->quick ? 0.1 : 1.0;
	if (o->tmp == NULL)
		o->tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Time, /proc, files                                                       */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

/* utime + stime of pid in seconds, -1 when unreadable. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t len;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	len = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[len] = '\0';
	p = strrchr(buf, ')');           /* the command may hold spaces */
	if (p == NULL)
		return -1;
	/* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime(14) stime(15) */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS and VmHWM of pid in bytes (0 when unreadable). */
static void proc_mem(pid_t pid, uint64_t *rss, uint64_t *hwm)
{
	char path[64], line[256];
	unsigned long long v;
	FILE *f;

	*rss = *hwm = 0;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
			*rss = v * 1024;
		else if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
			*hwm = v * 1024;
	}
	fclose(f);
}

static uint64_t g_dir_bytes;

static int add_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F)
		g_dir_bytes += (uint64_t)st->st_size;
	return 0;
}

/* Bytes in the regular files under dir (apparent sizes). */
static uint64_t dir_bytes(const char *dir)
{
	g_dir_bytes = 0;
	nftw(dir, add_size, 16, FTW_PHYS);
	return g_dir_bytes;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static int g_keep;

/* Removes dir and everything under it (unless --keep: then says where). */
static void rm_tree(const char *dir)
{
	if (dir[0] == '\0')
		return;
	if (g_keep) {
		fprintf(stderr, PROG ": kept %s\n", dir);
		return;
	}
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static double pct(double a, double b)
{
	return b > 0 ? 100.0 * a / b : -1.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of v[0..n), sorting v; -1 when n = 0. */
static double quantile(double *v, size_t n, double q, int sorted)
{
	size_t i;

	if (n == 0)
		return -1;
	if (!sorted)
		qsort(v, n, sizeof *v, cmp_double);
	i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	return v[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------------ */
/* Signals and the daemons                                                  */

#define E2E_MAX_CHILDREN 4
static volatile sig_atomic_t g_stop;
static volatile pid_t g_children[E2E_MAX_CHILDREN];

static void kill_children(void)
{
	for (int i = 0; i < E2E_MAX_CHILDREN; i++)
		if (g_children[i] > 0)
			kill(g_children[i], SIGKILL);
}

static void on_signal(int sig)
{
	static const char msg[] = PROG ": interrupted; daemons killed, cleaning up\n";

	kill_children();
	if (g_stop)
		_exit(128 + sig);
	g_stop = 1;
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing to do */
	}
}

static void child_add(pid_t pid)
{
	for (int i = 0; i < E2E_MAX_CHILDREN; i++)
		if (g_children[i] == 0) {
			g_children[i] = pid;
			return;
		}
}

static void child_del(pid_t pid)
{
	for (int i = 0; i < E2E_MAX_CHILDREN; i++)
		if (g_children[i] == pid)
			g_children[i] = 0;
}

struct daemon {
	pid_t pid;
	size_t n, k;
	char root[PATH_MAX];     /* the run's temporary directory */
	char data[PATH_MAX + 16];
	char cfg[PATH_MAX + 32];
	char log[PATH_MAX + 32];
	char ingest[64], query[64], publish[64];
	double ready_s;          /* start to first ping answered */
	int monitor;             /* monitor.enabled in the config */
};

/* Three distinct free loopback ports (bound to :0 together, then closed). */
static int free_ports(int port[3])
{
	int fd[3] = {-1, -1, -1}, rc = -1;

	for (int i = 0; i < 3; i++) {
		struct sockaddr_in a;
		socklen_t len = sizeof a;

		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a.sin_port = 0;
		fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fd[i] < 0 || bind(fd[i], (struct sockaddr *)&a, sizeof a) != 0 ||
		    getsockname(fd[i], (struct sockaddr *)&a, &len) != 0) {
			fprintf(stderr, PROG ": cannot find a free port: %s\n", strerror(errno));
			goto out;
		}
		port[i] = ntohs(a.sin_port);
	}
	rc = 0;
out:
	for (int i = 0; i < 3; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return rc;
}

/* Writes the config for d (endpoints already chosen) with the given storage
 * settings and log file name.  Returns 0 or -1. */
static int daemon_config(struct daemon *d, const char *fsync, uint64_t ckpt_rows,
                         unsigned ckpt_s, const char *logname)
{
	FILE *f;

	snprintf(d->log, sizeof d->log, "%s/%s", d->root, logname);
	f = fopen(d->cfg, "w");
	if (f == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", d->cfg, strerror(errno));
		return -1;
	}
	fprintf(f,
	        "# generated by isvd-e2e\n"
	        "model:\n  dim: %zu\n  rank: %zu\n  mode: auto\n  center: false\n"
	        "endpoints:\n  ingest: %s\n  query: %s\n  publish: %s\n"
	        "batching:\n  max_rows: %d\n"
	        "storage:\n  dir: %s\n  fsync: %s\n  checkpoint_every_rows: %" PRIu64 "\n"
	        "  checkpoint_every_s: %u\n"
	        "log:\n  file: %s\n  level: info\n"
	        "monitor:\n  enabled: %s\n",
	        d->n, d->k, d->ingest, d->query, d->publish, E2E_MAX_ROWS, d->data, fsync, ckpt_rows,
	        ckpt_s, d->log, d->monitor ? "true" : "false");
	if (fclose(f) != 0) {
		fprintf(stderr, PROG ": %s: %s\n", d->cfg, strerror(errno));
		return -1;
	}
	return 0;
}

/* Prepares d in a new directory under tmp: ports, paths.  Returns 0 or -1. */
static int daemon_init(struct daemon *d, const char *tmp, size_t n, size_t k)
{
	int port[3];

	memset(d, 0, sizeof *d);
	d->n = n;
	d->k = k;
	snprintf(d->root, sizeof d->root, "%s/isvd-e2e-XXXXXX", tmp);
	if (mkdtemp(d->root) == NULL) {
		fprintf(stderr, PROG ": mkdtemp in %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	snprintf(d->data, sizeof d->data, "%s/data", d->root);
	snprintf(d->cfg, sizeof d->cfg, "%s/isvdd.yaml", d->root);
	if (free_ports(port) != 0)
		return -1;
	snprintf(d->ingest, sizeof d->ingest, "tcp://127.0.0.1:%d", port[0]);
	snprintf(d->query, sizeof d->query, "tcp://127.0.0.1:%d", port[1]);
	snprintf(d->publish, sizeof d->publish, "tcp://127.0.0.1:%d", port[2]);
	return 0;
}

static void print_log_tail(const struct daemon *d)
{
	char line[512];
	FILE *f = fopen(d->log, "r");
	long size;

	if (f == NULL)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 2048)
		fseek(f, size - 2048, SEEK_SET);
	else
		fseek(f, 0, SEEK_SET);
	fprintf(stderr, PROG ": end of %s:\n", d->log);
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "  %s", line);
	fclose(f);
}

static struct isvd_client *client_new(const struct daemon *d, unsigned window, int timeout_ms)
{
	struct isvd_client_options co;
	struct isvd_client *c = NULL;
	int err;

	isvd_client_options_init(&co);
	co.ingest = d->ingest;
	co.query = d->query;
	co.publish = d->publish;
	co.timeout_ms = timeout_ms;
	co.retries = 0;
	co.max_in_flight = window;
	err = isvd_client_create(&c, &co);
	if (err) {
		fprintf(stderr, PROG ": isvd_client_create: %s\n", isvd_client_strerror(err));
		return NULL;
	}
	return c;
}

/* Kills the daemon with sig and reaps it. */
static void daemon_stop(struct daemon *d, int sig)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	waitpid(d->pid, NULL, 0);
	child_del(d->pid);
	d->pid = 0;
}

/* Starts isvdd on d->cfg and waits until ping answers.  Returns 0 or -1
 * (with the daemon killed and its log's end printed). */
static int daemon_start(struct daemon *d, const char *exe)
{
	struct isvd_client *c;
	char out[PATH_MAX + 32];
	double t0 = now_s();
	int fd;
	pid_t pid;

	snprintf(out, sizeof out, "%s/isvdd.out", d->root);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, PROG ": fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execl(exe, exe, "--config", d->cfg, (char *)NULL);
		fprintf(stderr, PROG ": exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	d->pid = pid;
	child_add(pid);
	c = client_new(d, 1, 200);
	if (c == NULL) {
		daemon_stop(d, SIGKILL);
		return -1;
	}
	for (;;) {
		char version[32];
		uint64_t proto;
		int status;

		if (isvd_client_ping(c, version, sizeof version, &proto) == ISVD_CLIENT_OK)
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			child_del(pid);
			d->pid = 0;
			fprintf(stderr, PROG ": isvdd exited during start-up (status %d); see %s\n",
			        WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), out);
			print_log_tail(d);
			isvd_client_destroy(c);
			return -1;
		}
		if (g_stop || now_s() - t0 > E2E_START_TIMEOUT) {
			fprintf(stderr, PROG ": isvdd did not answer ping within %.0f s\n",
			        now_s() - t0);
			print_log_tail(d);
			isvd_client_destroy(c);
			daemon_stop(d, SIGKILL);
			return -1;
		}
	}
	d->ready_s = now_s() - t0;
	isvd_client_destroy(c);
	return 0;
}

/* The mode the daemon's model runs in ("?" when unknown). */
static void daemon_mode(const struct daemon *d, char *mode, size_t cap)
{
	struct isvd_client *c = client_new(d, 1, 10000);
	struct isvd_client_info info;

	memset(&info, 0, sizeof info);
	snprintf(mode, cap, "?");
	if (c && isvd_client_info(c, &info) == ISVD_CLIENT_OK && info.mode[0])
		snprintf(mode, cap, "%s", info.mode);
	isvd_client_info_fini(&info);
	isvd_client_destroy(c);
}

/* ------------------------------------------------------------------------ */
/* Data                                                                     */

/* Rows nrows × n (row-major) like isvd-bench's: rank-r signal with
 * s_j = 10^(-j/r) along a random orthonormal basis plus noise.  NULL on
 * failure (printed). */
static double *make_pool(size_t n, size_t r, size_t nrows, uint64_t seed)
{
	struct rng g = {seed, 0, 0.0};
	double *q = malloc(n * r * sizeof *q), *tau = malloc(r * sizeof *tau);
	double *z = malloc(nrows * r * sizeof *z), *x = malloc(nrows * n * sizeof *x);
	lapack_int info;

	if (q == NULL || tau == NULL || z == NULL || x == NULL) {
		fprintf(stderr, PROG ": out of memory for %zu rows of %zu\n", nrows, n);
		goto fail;
	}
	for (size_t i = 0; i < n * r; i++)
		q[i] = rng_normal(&g);
	info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r, q, (lapack_int)n, tau);
	if (info == 0)
		info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r, (lapack_int)r, q,
		                      (lapack_int)n, tau);
	if (info != 0) {
		fprintf(stderr, PROG ": QR of the random basis failed (info %d)\n", (int)info);
		goto fail;
	}
	for (size_t i = 0; i < nrows; i++)
		for (size_t j = 0; j < r; j++)
			z[i * r + j] = pow(10.0, -(double)j / (double)r) * rng_normal(&g);
	for (size_t i = 0; i < nrows * n; i++)
		x[i] = 1e-3 * rng_normal(&g);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nrows, (int)n, (int)r, 1.0, z,
	            (int)r, q, (int)n, 1.0, x, (int)n);
	free(z);
	free(tau);
	free(q);
	return x;
fail:
	free(x);
	free(z);
	free(tau);
	free(q);
	return NULL;
}

struct pool {
	size_t n, k, rows;
	double *x;
};

static int pool_make(struct pool *p, size_t n, size_t k, uint64_t seed)
{
	size_t rows = E2E_POOL_BYTES / (n * sizeof(double));

	if (rows > E2E_POOL_MAXROWS)
		rows = E2E_POOL_MAXROWS;
	if (rows < E2E_MAX_ROWS)
		rows = E2E_MAX_ROWS;
	p->n = n;
	p->k = k;
	p->rows = rows;
	p->x = make_pool(n, k, rows, seed);
	return p->x ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* The engine in process                                                    */

/* The engine's rows/s on the pool in blocks of E2E_MAX_ROWS for about
 * `seconds`, with the daemon's model options; with `scored`, through
 * isvd_model_update_monitored() (the scores and the tail figures of the
 * control limits) as monitor.enabled makes the daemon do.
 * *mode receives the mode auto resolved to.  -1 on failure. */
static double engine_rate_scored(const struct pool *p, double seconds, int scored,
                                 const char **mode, size_t *threads)
{
	struct isvd_options o, r;
	struct isvd_model *m = NULL;
	uint64_t rows = 0;
	size_t off = 0;
	double t0, dt;
	double spe[E2E_MAX_ROWS], t2[E2E_MAX_ROWS];
	struct isvd_tail tail;
	int err;

	isvd_options_default(&o);
	o.dim = p->n;
	o.rank = p->k;
	o.center = 0;
	o.mode = ISVD_MODE_AUTO;
	o.threads = 1;   /* isvdd's model.threads default */
	err = isvd_model_create(&o, &m);
	if (err == ISVD_OK)
		err = isvd_model_options(m, &r);
	if (err != ISVD_OK) {
		fprintf(stderr, PROG ": engine: %s\n", isvd_strerror(err));
		isvd_model_destroy(m);
		return -1;
	}
	*mode = isvd_mode_name(r.mode);
	*threads = r.threads;
	t0 = now_s();
	do {
		err = scored ? isvd_model_update_monitored(m, p->x + off * p->n, E2E_MAX_ROWS, p->n,
		                                           spe, t2, &tail)
		             : isvd_model_update(m, p->x + off * p->n, E2E_MAX_ROWS, p->n);
		if (err != ISVD_OK) {
			fprintf(stderr, PROG ": engine update: %s\n", isvd_strerror(err));
			isvd_model_destroy(m);
			return -1;
		}
		rows += E2E_MAX_ROWS;
		off += E2E_MAX_ROWS;
		if (off + E2E_MAX_ROWS > p->rows)
			off = 0;
		dt = now_s() - t0;
	} while ((dt < seconds || rows < 2 * E2E_MAX_ROWS) && !g_stop);
	(void)isvd_model_rank(m);        /* exact mode: the SVD of R a reader pays for */
	dt = now_s() - t0;
	isvd_model_destroy(m);
	return (double)rows / dt;
}

static double engine_rate(const struct pool *p, double seconds, const char **mode,
                          size_t *threads)
{
	return engine_rate_scored(p, seconds, 0, mode, threads);
}

/* ------------------------------------------------------------------------ */
/* Pushers                                                                  */

struct milestone {           /* memory samples, taken from the ack callback */
	uint64_t at_rows;
	uint64_t rows, rss, hwm, storage;
	double t;
};

struct pusher {
	/* in */
	const struct daemon *d;
	const struct pool *pool;
	size_t push_rows;
	unsigned window, id;
	double deadline;             /* stop sending at this time (0: none) */
	uint64_t max_rows;           /* stop after this many rows (0: none) */
	atomic_int *stop;            /* stop sending when set (NULL: none) */
	struct milestone *ms;        /* samples to take (NULL: none) */
	size_t nms;
	/* out */
	uint64_t sent_rows, acked_rows, pushes, errors;
	double t_first, t_last;
	double *lat;                 /* µs, one per ack */
	size_t nlat, lat_cap;
	char errmsg[320];
	/* state */
	double ring[E2E_RING];
	size_t next_ms;
	atomic_uint_least64_t progress; /* rows acknowledged, for other threads */
};

static void on_ack(const struct isvd_client_ack *ack, void *user)
{
	struct pusher *p = user;
	uintptr_t idx = (uintptr_t)ack->user;
	double t = now_s();

	if (ack->err != ISVD_CLIENT_OK) {
		if (p->errors++ == 0)
			snprintf(p->errmsg, sizeof p->errmsg, "%s: %s", isvd_client_err_name(ack->err),
			         ack->message);
		return;
	}
	p->acked_rows += ack->accepted;
	atomic_store(&p->progress, p->acked_rows);
	p->t_last = t;
	if (p->nlat == p->lat_cap) {
		size_t cap = p->lat_cap ? 2 * p->lat_cap : 4096;
		double *v = realloc(p->lat, cap * sizeof *v);
		if (v == NULL)
			return;
		p->lat = v;
		p->lat_cap = cap;
	}
	p->lat[p->nlat++] = 1e6 * (t - p->ring[idx % E2E_RING]);
	while (p->ms && p->next_ms < p->nms && p->acked_rows >= p->ms[p->next_ms].at_rows) {
		struct milestone *m = &p->ms[p->next_ms++];
		m->rows = p->acked_rows;
		m->t = t;
		proc_mem(p->d->pid, &m->rss, &m->hwm);
		m->storage = dir_bytes(p->d->data);
	}
}

/* Runs one pusher to its deadline / row budget / stop flag, then flushes.
 * Returns 0, or -1 when the client could not be made or a send failed. */
static int pusher_run(struct pusher *p)
{
	struct isvd_client *c = client_new(p->d, p->window, E2E_ACK_TIMEOUT);
	const size_t span = p->pool->rows - p->push_rows + 1;
	size_t off = ((size_t)p->id * 7919u * p->push_rows) % span;
	int err = 0;

	if (c == NULL)
		return -1;
	isvd_client_set_ack_callback(c, on_ack, p);
	p->t_first = now_s();
	while (!g_stop && !(p->stop && atomic_load(p->stop))) {
		struct isvd_client_batch b;
		size_t rows = p->push_rows;

		if (p->max_rows) {
			if (p->sent_rows >= p->max_rows)
				break;
			if (rows > p->max_rows - p->sent_rows)
				rows = (size_t)(p->max_rows - p->sent_rows);
		}
		if (p->deadline > 0 && now_s() >= p->deadline)
			break;
		memset(&b, 0, sizeof b);
		b.rows = p->pool->x + off * p->pool->n;
		b.nrows = rows;
		b.dim = p->pool->n;
		b.dtype = ISVD_CLIENT_F64;
		b.user = (void *)(uintptr_t)p->pushes;
		p->ring[p->pushes % E2E_RING] = now_s();
		err = isvd_client_push_send(c, &b, NULL);
		if (err) {
			snprintf(p->errmsg, sizeof p->errmsg, "push_send: %s", isvd_client_errmsg(c));
			break;
		}
		p->pushes++;
		p->sent_rows += rows;
		off += rows;
		if (off >= span)
			off = 0;
		if (p->errors)
			break;
	}
	if (!err && !g_stop && isvd_client_push_flush(c) != ISVD_CLIENT_OK) {
		snprintf(p->errmsg, sizeof p->errmsg, "flush: %s", isvd_client_errmsg(c));
		err = -1;
	}
	isvd_client_destroy(c);
	return err || p->errors ? -1 : 0;
}

static void *pusher_thread(void *arg)
{
	struct pusher *p = arg;

	(void)pusher_run(p);
	return NULL;
}

static void pusher_fini(struct pusher *p)
{
	free(p->lat);
	p->lat = NULL;
}

static unsigned window_for(const struct e2e_opts *o, size_t n, size_t push_rows, unsigned pushers)
{
	double bytes = (double)push_rows * (double)n * 8.0 + 256;
	double w = (double)E2E_INFLIGHT_MAX / pushers / bytes;

	if (w > o->in_flight)
		w = o->in_flight;
	if (w < 2)
		w = 2;
	return (unsigned)w;
}

/* The result of running `npushers` pushers together. */
struct ingest_result {
	double rows_per_s, p50_us, p99_us, cpu_pct, seconds;
	uint64_t rows;
	unsigned window;
	int failed;
};

/* Runs npushers pushers of push_rows for `seconds` (or until *stop), and
 * measures. */
static void run_pushers(const struct e2e_opts *o, const struct daemon *d, const struct pool *pool,
                        size_t push_rows, unsigned npushers, double seconds, atomic_int *stop,
                        struct ingest_result *res)
{
	struct pusher *ps = calloc(npushers, sizeof *ps);
	pthread_t *th = calloc(npushers, sizeof *th);
	double cpu0, cpu1, t0, t_first = 1e300, t_last = 0;
	size_t nlat = 0;
	double *lat = NULL;

	memset(res, 0, sizeof *res);
	if (ps == NULL || th == NULL) {
		res->failed = 1;
		goto out;
	}
	res->window = window_for(o, pool->n, push_rows, npushers);
	cpu0 = proc_cpu_s(d->pid);
	t0 = now_s();
	for (unsigned i = 0; i < npushers; i++) {
		ps[i].d = d;
		ps[i].pool = pool;
		ps[i].push_rows = push_rows;
		ps[i].window = res->window;
		ps[i].id = i;
		ps[i].deadline = t0 + seconds;
		ps[i].stop = stop;
		if (pthread_create(&th[i], NULL, pusher_thread, &ps[i]) != 0) {
			fprintf(stderr, PROG ": pthread_create failed\n");
			ps[i].errors = 1;
			th[i] = 0;
		}
	}
	for (unsigned i = 0; i < npushers; i++)
		if (th[i])
			pthread_join(th[i], NULL);
	cpu1 = proc_cpu_s(d->pid);
	for (unsigned i = 0; i < npushers; i++) {
		if (ps[i].errmsg[0] || ps[i].errors) {
			fprintf(stderr, PROG ": pusher %u: %s\n", i, ps[i].errmsg);
			res->failed = 1;
		}
		res->rows += ps[i].acked_rows;
		nlat += ps[i].nlat;
		if (ps[i].t_first < t_first)
			t_first = ps[i].t_first;
		if (ps[i].t_last > t_last)
			t_last = ps[i].t_last;
	}
	lat = malloc((nlat ? nlat : 1) * sizeof *lat);
	if (lat == NULL) {
		res->failed = 1;
		goto out;
	}
	nlat = 0;
	for (unsigned i = 0; i < npushers; i++) {
		memcpy(lat + nlat, ps[i].lat, ps[i].nlat * sizeof *lat);
		nlat += ps[i].nlat;
	}
	res->seconds = t_last > t_first ? t_last - t_first : 0;
	res->rows_per_s = res->seconds > 0 ? (double)res->rows / res->seconds : 0;
	res->p50_us = quantile(lat, nlat, 0.50, 0);
	res->p99_us = quantile(lat, nlat, 0.99, 1);
	res->cpu_pct = cpu0 >= 0 && cpu1 >= 0 && res->seconds > 0 ?
	               100.0 * (cpu1 - cpu0) / (now_s() - t0) : -1;
out:
	if (ps)
		for (unsigned i = 0; i < npushers; i++)
			pusher_fini(&ps[i]);
	free(lat);
	free(th);
	free(ps);
}

/* ------------------------------------------------------------------------ */
/* Output helpers                                                           */

static void json_num(const char *key, double v)
{
	if (!isfinite(v) || v < 0)
		printf(",\"%s\":null", key);
	else
		printf(",\"%s\":%.6g", key, v);
}

static void fmt_ms(char *buf, size_t cap, double us)
{
	if (us < 0)
		snprintf(buf, cap, "-");
	else
		snprintf(buf, cap, "%.3f", us / 1000.0);
}

static double mib(uint64_t b)
{
	return (double)b / 1048576.0;
}

/* ------------------------------------------------------------------------ */
/* Section: ingest                                                          */

static const char *const fsyncs[] = { "always", "interval", "none" };
static const size_t push_sizes[] = { 1, 16, 256 };

static void ingest_print(const struct e2e_opts *o, size_t n, size_t k, const char *mode,
                         const char *fsync, size_t push_rows, unsigned pushers,
                         const struct ingest_result *r, double engine)
{
	char p50[32], p99[32];

	if (o->json) {
		printf("{\"section\":\"ingest\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"fsync\":\"%s\","
		       "\"push_rows\":%zu,\"pushers\":%u,\"in_flight\":%u,\"rows\":%" PRIu64, n, k, mode,
		       fsync, push_rows, pushers, r->window, r->rows);
		json_num("seconds", r->seconds);
		json_num("rows_per_s", r->rows_per_s);
		json_num("ack_p50_us", r->p50_us);
		json_num("ack_p99_us", r->p99_us);
		json_num("daemon_cpu_pct", r->cpu_pct);
		json_num("engine_rows_per_s", engine);
		json_num("pct_of_engine", pct(r->rows_per_s, engine));
		printf(",\"failed\":%s}\n", r->failed ? "true" : "false");
	} else {
		fmt_ms(p50, sizeof p50, r->p50_us);
		fmt_ms(p99, sizeof p99, r->p99_us);
		char pw[32];

		snprintf(pw, sizeof pw, "%ux%u", pushers, r->window);
		printf("%6zu %4zu %-9s %-8s %5zu %8s %10" PRIu64 " %10.0f %9s %9s %6.0f%% %8.1f%%%s\n",
		       n, k, mode, fsync, push_rows, pw, r->rows, r->rows_per_s, p50, p99,
		       r->cpu_pct, pct(r->rows_per_s, engine), r->failed ? "  (errors)" : "");
	}
	fflush(stdout);
}

static int section_ingest(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	const char *emode = "?";
	size_t ethreads = 0;
	char mode[16];
	double engine;
	int failed = 0;

	engine = engine_rate(pool, o->seconds, &emode, &ethreads);
	if (o->json) {
		printf("{\"section\":\"engine\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"block\":%d,"
		       "\"threads\":%zu", n, k, emode, E2E_MAX_ROWS, ethreads);
		json_num("rows_per_s", engine);
		printf("}\n");
	} else {
		printf("%6zu %4zu %-9s %-8s %5d %8s %10s %10.0f   (the engine in process, %zu "
		       "thread%s, one BLAS thread)\n", n, k, emode, "engine", E2E_MAX_ROWS, "-", "-",
		       engine, ethreads, ethreads == 1 ? "" : "s");
	}
	fflush(stdout);
	if (engine < 0)
		failed = 1;

	/* One daemon per fsync policy: the push sizes, then group commit. */
	for (size_t f = 0; f < 3 && !g_stop; f++) {
		struct daemon d;
		struct ingest_result r;
		int group = strcmp(fsyncs[f], "none") != 0;

		if (daemon_init(&d, o->tmp, n, k) != 0 ||
		    daemon_config(&d, fsyncs[f], 1000000, 300, "isvdd.log") != 0 ||
		    daemon_start(&d, o->isvdd) != 0) {
			rm_tree(d.root);
			return 1;
		}
		/* Warm-up: the model's first blocks, page faults of the buffers. */
		run_pushers(o, &d, pool, 256, 1, o->seconds / 5 > 0.2 ? 0.2 : o->seconds / 5, NULL, &r);
		daemon_mode(&d, mode, sizeof mode);
		for (size_t s = 0; s < 3 && !g_stop; s++) {
			run_pushers(o, &d, pool, push_sizes[s], o->pushers, o->seconds, NULL, &r);
			failed |= r.failed;
			ingest_print(o, n, k, mode, fsyncs[f], push_sizes[s], o->pushers, &r, engine);
		}
		if (group && !g_stop && o->pushers != 8) {
			run_pushers(o, &d, pool, 256, 8, o->seconds, NULL, &r);
			failed |= r.failed;
			ingest_print(o, n, k, mode, fsyncs[f], 256, 8, &r, engine);
		}
		daemon_stop(&d, SIGKILL);
		rm_tree(d.root);
	}
	return failed;
}

/* ------------------------------------------------------------------------ */
/* Section: what monitoring costs                                           */

/* One daemon with monitor.enabled = `monitor`: rows/s of one pusher of
 * 256-row pushes (fsync interval) after a short warm-up.  -1 on failure. */
static double monitor_daemon_rate(const struct e2e_opts *o, const struct pool *pool, int monitor,
                                  char *mode, size_t mode_cap, double *cpu_pct)
{
	struct daemon d;
	struct ingest_result r;

	if (daemon_init(&d, o->tmp, pool->n, pool->k) != 0) {
		rm_tree(d.root);
		return -1;
	}
	d.monitor = monitor;
	if (daemon_config(&d, "interval", 1000000, 300, "isvdd.log") != 0 ||
	    daemon_start(&d, o->isvdd) != 0) {
		rm_tree(d.root);
		return -1;
	}
	run_pushers(o, &d, pool, 256, 1, o->seconds / 5 > 0.2 ? 0.2 : o->seconds / 5, NULL, &r);
	daemon_mode(&d, mode, mode_cap);
	run_pushers(o, &d, pool, 256, 1, o->seconds, NULL, &r);
	daemon_stop(&d, SIGKILL);
	rm_tree(d.root);
	*cpu_pct = r.cpu_pct;
	return r.failed ? -1 : r.rows_per_s;
}

/* The median of the first `len` values of v (sorted in place). */
static double median_of(double *v, int len)
{
	if (len <= 0)
		return 0;
	for (int i = 1; i < len; i++)   /* insertion sort: a handful of values */
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			const double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return len % 2 ? v[len / 2] : (v[len / 2 - 1] + v[len / 2]) / 2;
}

static int section_monitor(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	double e[2] = { 0, 0 }, d[2] = { 0, 0 }, cpu[2] = { 0, 0 };
	double er[E2E_MONITOR_ROUNDS], dr[E2E_MONITOR_ROUNDS];
	int ne = 0, nd = 0;
	const char *emode = "?";
	size_t ethreads = 0;
	char mode[16] = "?";
	int failed = 0;

	/* off, on, off, on, ...: the best of each, and the median of each
	 * round's on/off (neighbours in time), so that a drift of the host's
	 * speed during the run touches both alike */
	for (int round = 0; round < E2E_MONITOR_ROUNDS && !g_stop; round++) {
		double pair[2] = { -1, -1 };
		for (int on = 0; on < 2 && !g_stop; on++) {
			double v = engine_rate_scored(pool, o->seconds, on, &emode, &ethreads);
			failed |= v < 0;
			pair[on] = v;
			if (v > e[on])
				e[on] = v;
		}
		if (pair[0] > 0 && pair[1] > 0)
			er[ne++] = pair[1] / pair[0];
	}
	for (int round = 0; round < E2E_MONITOR_ROUNDS && !g_stop; round++) {
		double pair[2] = { -1, -1 };
		for (int on = 0; on < 2 && !g_stop; on++) {
			double c = -1, v = monitor_daemon_rate(o, pool, on, mode, sizeof mode, &c);
			failed |= v < 0;
			pair[on] = v;
			if (v > d[on]) {
				d[on] = v;
				cpu[on] = c;
			}
		}
		if (pair[0] > 0 && pair[1] > 0)
			dr[nd++] = pair[1] / pair[0];
	}
	const double emed = 100 * median_of(er, ne), dmed = 100 * median_of(dr, nd);
	if (o->json) {
		printf("{\"section\":\"monitor\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"rounds\":%d",
		       n, k, emode, E2E_MONITOR_ROUNDS);
		json_num("engine_off_rows_per_s", e[0]);
		json_num("engine_on_rows_per_s", e[1]);
		json_num("engine_on_pct_of_off", pct(e[1], e[0]));
		json_num("engine_median_round_pct", emed);
		json_num("daemon_off_rows_per_s", d[0]);
		json_num("daemon_on_rows_per_s", d[1]);
		json_num("daemon_on_pct_of_off", pct(d[1], d[0]));
		json_num("daemon_median_round_pct", dmed);
		json_num("daemon_off_cpu_pct", cpu[0]);
		json_num("daemon_on_cpu_pct", cpu[1]);
		printf(",\"failed\":%s}\n", failed ? "true" : "false");
	} else {
		printf("%6zu %4zu %-9s %11.0f %11.0f %6.1f%% %6.1f%% %11.0f %11.0f %6.1f%% %6.1f%% %5.0f%% "
		       "%5.0f%%%s\n",
		       n, k, mode[0] != '?' ? mode : emode, e[0], e[1], pct(e[1], e[0]), emed, d[0], d[1],
		       pct(d[1], d[0]), dmed, cpu[0], cpu[1], failed ? "  (errors)" : "");
	}
	fflush(stdout);
	return failed;
}

/* ------------------------------------------------------------------------ */
/* Section: query latency under load                                        */

static int section_query(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	struct daemon d;
	struct pusher p;
	pthread_t th;
	atomic_int stop = 0;
	struct isvd_client *c = NULL;
	double *lat = NULL, t0, t_end, cpu0, cpu1, tq0;
	size_t nlat = 0, cap = 0;
	uint64_t errors = 0, rows0, rows1;
	char mode[16], msg[256] = "";
	int failed = 0;

	if (daemon_init(&d, o->tmp, n, k) != 0 ||
	    daemon_config(&d, "interval", 1000000, 300, "isvdd.log") != 0 ||
	    daemon_start(&d, o->isvdd) != 0) {
		rm_tree(d.root);
		return 1;
	}
	daemon_mode(&d, mode, sizeof mode);      /* before the load: info waits its turn too */
	memset(&p, 0, sizeof p);
	p.d = &d;
	p.pool = pool;
	p.push_rows = 256;
	p.window = window_for(o, n, 256, 1);
	p.stop = &stop;
	/* The pusher runs until the querier is done (a query in flight when the
	 * measurement ends still waits under load), at most E2E_ACK_TIMEOUT more. */
	p.deadline = now_s() + o->seconds + 2 * E2E_ACK_TIMEOUT / 1000.0;
	if (pthread_create(&th, NULL, pusher_thread, &p) != 0) {
		fprintf(stderr, PROG ": pthread_create failed\n");
		daemon_stop(&d, SIGKILL);
		rm_tree(d.root);
		return 1;
	}
	c = client_new(&d, 1, 2 * E2E_ACK_TIMEOUT);   /* a query may wait out a whole ingest burst */
	/* Wait for the first rows, then a short warm-up of the pusher. */
	t0 = now_s();
	while (atomic_load(&p.progress) < 256 && now_s() - t0 < 30 && !g_stop)
		sleep_s(0.005);
	sleep_s(0.2);
	cpu0 = proc_cpu_s(d.pid);
	rows0 = atomic_load(&p.progress);
	tq0 = now_s();
	t_end = tq0 + o->seconds;
	for (size_t i = 0; c && now_s() < t_end && !g_stop; i++) {
		struct isvd_client_projection pr;
		const double *row = pool->x + (i % pool->rows) * n;
		double ts = now_s();
		int err;

		memset(&pr, 0, sizeof pr);
		err = isvd_client_project(c, row, 1, n, ISVD_CLIENT_SCORES, &pr);
		ts = 1e6 * (now_s() - ts);
		isvd_client_projection_fini(&pr);
		if (err) {
			if (errors++ == 0)
				snprintf(msg, sizeof msg, "%s", isvd_client_errmsg(c));
			continue;
		}
		if (nlat == cap) {
			double *v;
			cap = cap ? 2 * cap : 4096;
			v = realloc(lat, cap * sizeof *v);
			if (v == NULL)
				break;
			lat = v;
		}
		lat[nlat++] = ts;
	}
	cpu1 = proc_cpu_s(d.pid);
	rows1 = atomic_load(&p.progress);
	t_end = now_s();
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	if (errors || p.errmsg[0]) {
		fprintf(stderr, PROG ": query under load: %" PRIu64 " project errors%s%s; pusher: %s\n",
		        errors, msg[0] ? ": " : "", msg, p.errmsg);
		failed = 1;
	}
	{
		double q50 = quantile(lat, nlat, 0.50, 0), q99 = quantile(lat, nlat, 0.99, 1);
		double q999 = quantile(lat, nlat, 0.999, 1), qmax = quantile(lat, nlat, 1.0, 1);
		double ingest = (double)(rows1 - rows0) / (t_end - tq0);
		double cpu = cpu0 >= 0 && cpu1 >= 0 ? 100.0 * (cpu1 - cpu0) / (t_end - tq0) : -1;

		if (o->json) {
			printf("{\"section\":\"query\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"fsync\":\"interval\","
			       "\"queries\":%zu", n, k, mode, nlat);
			json_num("p50_us", q50);
			json_num("p99_us", q99);
			json_num("p999_us", q999);
			json_num("max_us", qmax);
			json_num("ingest_rows_per_s", ingest);
			json_num("daemon_cpu_pct", cpu);
			printf(",\"errors\":%" PRIu64 "}\n", errors);
		} else {
			printf("%6zu %4zu %-9s %8zu %9.0f %9.0f %9.0f %9.0f %12.0f %7.0f%%%s\n", n, k, mode, nlat,
			       q50, q99, q999, qmax, ingest, cpu, errors ? "  (errors)" : "");
		}
		fflush(stdout);
	}
	isvd_client_destroy(c);
	free(lat);
	pusher_fini(&p);
	daemon_stop(&d, SIGKILL);
	rm_tree(d.root);
	return failed;
}

/* ------------------------------------------------------------------------ */
/* Section: memory                                                          */

/* Rows of a long stream at (n, k): 10^7 at (64,8), 10^6 at (1000,50), 10^5
 * otherwise, divided by `divide` (the memory section streams these, the
 * recovery section a tenth), times --rows-scale; at least 1000. */
static uint64_t stream_rows(const struct e2e_opts *o, size_t n, size_t k, double divide)
{
	double base = n == 64 && k == 8 ? 1e7 : n == 1000 && k == 50 ? 1e6 : 1e5;
	double r = base / divide * o->rows_scale;

	return r < 1000 ? 1000 : (uint64_t)r;
}

static int section_memory(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	const uint64_t rows = stream_rows(o, n, k, 1);
	uint64_t ckpt = rows / 10 < 1000000 ? rows / 10 : 1000000;
	struct milestone ms[3];
	struct pusher p;
	struct daemon d;
	char mode[16];
	int failed = 0;

	if (ckpt < 1000)
		ckpt = 1000;
	if (daemon_init(&d, o->tmp, n, k) != 0 ||
	    daemon_config(&d, "interval", ckpt, 300, "isvdd.log") != 0 ||
	    daemon_start(&d, o->isvdd) != 0) {
		rm_tree(d.root);
		return 1;
	}
	daemon_mode(&d, mode, sizeof mode);
	memset(ms, 0, sizeof ms);
	ms[0].at_rows = rows / 10 < 100000 ? rows / 10 : 100000;
	ms[1].at_rows = rows / 2;
	ms[2].at_rows = rows;
	memset(&p, 0, sizeof p);
	p.d = &d;
	p.pool = pool;
	p.push_rows = 256;
	p.window = window_for(o, n, 256, 1);
	p.max_rows = rows;
	p.deadline = now_s() + o->time_cap;
	p.ms = ms;
	p.nms = 3;
	if (pusher_run(&p) != 0) {
		fprintf(stderr, PROG ": memory %zux%zu: %s\n", n, k, p.errmsg);
		failed = 1;
	}
	if (p.acked_rows < rows)
		fprintf(stderr, PROG ": memory %zux%zu: stopped after %" PRIu64 " of %" PRIu64
		        " rows (--time-cap %.0f s)\n", n, k, p.acked_rows, rows, o->time_cap);
	for (size_t i = 0; i < 3; i++) {
		const struct milestone *m = &ms[i];
		double rate = p.acked_rows && p.t_last > p.t_first ?
		              (double)p.acked_rows / (p.t_last - p.t_first) : 0;

		if (m->rows == 0)
			continue;
		if (o->json) {
			printf("{\"section\":\"memory\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"fsync\":\"interval\","
			       "\"checkpoint_every_rows\":%" PRIu64 ",\"rows_total\":%" PRIu64 ",\"point\":\"%s\","
			       "\"rows\":%" PRIu64 ",\"vm_rss_bytes\":%" PRIu64 ",\"vm_hwm_bytes\":%" PRIu64
			       ",\"storage_bytes\":%" PRIu64, n, k, mode, ckpt, rows,
			       i == 0 ? "first" : i == 1 ? "middle" : "end", m->rows, m->rss, m->hwm, m->storage);
			json_num("elapsed_s", m->t - p.t_first);
			json_num("stream_rows_per_s", rate);
			json_num("rss_growth_pct", ms[0].rss ? 100.0 * ((double)m->rss / (double)ms[0].rss - 1) : -1);
			json_num("hwm_growth_pct", ms[0].hwm ? 100.0 * ((double)m->hwm / (double)ms[0].hwm - 1) : -1);
			printf("}\n");
		} else {
			printf("%6zu %4zu %-9s %9" PRIu64 " %11" PRIu64 " %9.1f %9.1f %+8.1f%% %10.1f %8.1f %10.0f\n",
			       n, k, mode, ckpt, m->rows, mib(m->rss), mib(m->hwm),
			       ms[0].hwm ? 100.0 * ((double)m->hwm / (double)ms[0].hwm - 1) : 0.0,
			       mib(m->storage), m->t - p.t_first, rate);
		}
	}
	fflush(stdout);
	pusher_fini(&p);
	daemon_stop(&d, SIGKILL);
	rm_tree(d.root);
	return failed;
}

/* ------------------------------------------------------------------------ */
/* Section: recovery                                                        */

/* From the log: "recovery: replayed N log records in T s" → *records, *secs. */
static int parse_replay(const char *path, uint64_t *records, double *secs)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	int found = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f)) {
		const char *p = strstr(line, "recovery: replayed ");
		unsigned long long r;
		double s;

		if (p && sscanf(p, "recovery: replayed %llu log records in %lf s", &r, &s) == 2) {
			*records = r;
			*secs = s;
			found = 1;
		}
	}
	fclose(f);
	return found ? 0 : -1;
}

static int section_recovery(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	const uint64_t rows = stream_rows(o, n, k, 10);
	struct pusher p;
	struct daemon d;
	uint64_t records = 0, log_bytes;
	double replay_s = -1, stream_rate;
	char mode[16];
	int failed = 0;

	if (daemon_init(&d, o->tmp, n, k) != 0 ||
	    daemon_config(&d, "none", 0, 0, "isvdd.log") != 0 ||
	    daemon_start(&d, o->isvdd) != 0) {
		rm_tree(d.root);
		return 1;
	}
	daemon_mode(&d, mode, sizeof mode);
	memset(&p, 0, sizeof p);
	p.d = &d;
	p.pool = pool;
	p.push_rows = 256;
	p.window = window_for(o, n, 256, 1);
	p.max_rows = rows;
	p.deadline = now_s() + o->time_cap;
	if (pusher_run(&p) != 0) {
		fprintf(stderr, PROG ": recovery %zux%zu: %s\n", n, k, p.errmsg);
		failed = 1;
	}
	stream_rate = p.t_last > p.t_first ? (double)p.acked_rows / (p.t_last - p.t_first) : 0;
	daemon_stop(&d, SIGKILL);
	log_bytes = dir_bytes(d.data);
	if (!failed && !g_stop && daemon_config(&d, "none", 0, 0, "isvdd-restart.log") == 0 &&
	    daemon_start(&d, o->isvdd) == 0) {
		if (parse_replay(d.log, &records, &replay_s) != 0) {
			fprintf(stderr, PROG ": recovery: no 'recovery: replayed' line in %s\n", d.log);
			failed = 1;
		}
		daemon_stop(&d, SIGKILL);
	} else {
		failed = 1;
	}
	if (o->json) {
		printf("{\"section\":\"recovery\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"rows\":%" PRIu64
		       ",\"log_bytes\":%" PRIu64 ",\"records\":%" PRIu64, n, k, mode, p.acked_rows,
		       log_bytes, records);
		json_num("replay_s", replay_s);
		json_num("replay_rows_per_s", replay_s > 0 ? (double)p.acked_rows / replay_s : -1);
		json_num("start_to_ready_s", failed ? -1 : d.ready_s);
		json_num("stream_rows_per_s", stream_rate);
		printf("}\n");
	} else {
		printf("%6zu %4zu %-9s %9" PRIu64 " %9.1f %8" PRIu64 " %9.2f %12.0f %9.2f %12.0f\n", n, k,
		       mode, p.acked_rows, mib(log_bytes), records, replay_s,
		       replay_s > 0 ? (double)p.acked_rows / replay_s : 0.0, failed ? -1.0 : d.ready_s,
		       stream_rate);
	}
	fflush(stdout);
	pusher_fini(&p);
	rm_tree(d.root);
	return failed;
}

/* ------------------------------------------------------------------------ */
/* Section: one-row pushes through the producer                             */

struct producer_result {
	double rows_per_s, seconds;
	uint64_t rows, batches;
	int failed;
};

/* One row per isvd_producer_push_row() call, cycling through the pool, for
 * `seconds`; then flush.  rows/s is the rows acknowledged over the time from
 * the first call to the flush's return. */
static void run_producer(const struct daemon *d, const struct pool *pool, double seconds,
                         struct producer_result *res)
{
	struct isvd_client *c = client_new(d, ISVD_PRODUCER_MAX_IN_FLIGHT, E2E_ACK_TIMEOUT);
	struct isvd_producer *p = NULL;
	struct isvd_producer_stats st;
	size_t off = 0;
	double t0, deadline;
	int err;

	memset(res, 0, sizeof *res);
	res->failed = 1;
	if (c == NULL)
		return;
	if ((err = isvd_producer_create(&p, c, NULL)) != ISVD_CLIENT_OK) {
		fprintf(stderr, PROG ": isvd_producer_create: %s\n", isvd_client_strerror(err));
		goto out;
	}
	t0 = now_s();
	deadline = t0 + seconds;
	while (!g_stop) {
		for (int i = 0; i < 256; i++) {     /* the clock is read every 256 rows */
			if ((err = isvd_producer_push_row(p, pool->x + off * pool->n, pool->n))) {
				fprintf(stderr, PROG ": push_row: %s\n", isvd_client_strerror(err));
				goto out;
			}
			if (++off == pool->rows)
				off = 0;
		}
		if (now_s() >= deadline)
			break;
	}
	err = isvd_producer_flush(p, -1);
	res->seconds = now_s() - t0;
	isvd_producer_get_stats(p, &st);
	res->rows = st.rows_accepted;
	res->batches = st.batches;
	res->rows_per_s = res->seconds > 0 ? (double)res->rows / res->seconds : 0;
	if (err)
		fprintf(stderr, PROG ": producer flush: %s (%" PRIu64 " rows failed)\n",
		        isvd_client_err_name(err), st.rows_failed);
	else
		res->failed = 0;
out:
	isvd_producer_destroy(p);
	isvd_client_destroy(c);
}

static int section_producer(const struct e2e_opts *o, const struct pool *pool)
{
	const size_t n = pool->n, k = pool->k;
	struct ingest_result r;
	struct producer_result pr;
	struct daemon d;
	char mode[16];

	if (daemon_init(&d, o->tmp, n, k) != 0 ||
	    daemon_config(&d, "always", 1000000, 300, "isvdd.log") != 0 ||
	    daemon_start(&d, o->isvdd) != 0) {
		rm_tree(d.root);
		return 1;
	}
	run_pushers(o, &d, pool, 256, 1, o->seconds / 5 > 0.2 ? 0.2 : o->seconds / 5, NULL, &r);
	daemon_mode(&d, mode, sizeof mode);
	run_pushers(o, &d, pool, 256, 1, o->seconds, NULL, &r);
	run_producer(&d, pool, o->seconds, &pr);
	double ratio = pct(pr.rows_per_s, r.rows_per_s);
	if (o->json) {
		printf("{\"section\":\"producer\",\"n\":%zu,\"k\":%zu,\"mode\":\"%s\",\"fsync\":\"always\","
		       "\"rows\":%" PRIu64 ",\"batches\":%" PRIu64, n, k, mode, pr.rows, pr.batches);
		json_num("push256_rows_per_s", r.rows_per_s);
		json_num("producer_rows_per_s", pr.rows_per_s);
		json_num("ratio_pct", ratio);
		printf(",\"failed\":%s}\n", r.failed || pr.failed ? "true" : "false");
	} else {
		printf("%6zu %4zu %-9s %12.0f %12.0f %12" PRIu64 " %8" PRIu64 " %7.1f%%%s\n", n, k, mode,
		       r.rows_per_s, pr.rows_per_s, pr.rows, pr.batches, ratio,
		       r.failed || pr.failed ? "  (errors)" : "");
	}
	fflush(stdout);
	daemon_stop(&d, SIGKILL);
	rm_tree(d.root);
	return r.failed || pr.failed;
}

/* ------------------------------------------------------------------------ */

/* The daemon: --isvdd, else build/daemon/isvdd, else ../daemon/isvdd next
 * to this program (its own build tree). */
static const char *find_isvdd(const char *given, char *buf, size_t cap)
{
	char self[PATH_MAX];
	ssize_t len;
	char *slash;

	if (given)
		return given;
	if (access("build/daemon/isvdd", X_OK) == 0)
		return "build/daemon/isvdd";
	len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len > 0) {
		self[len] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, cap, "%s/../daemon/isvdd", self);
			if (access(buf, X_OK) == 0)
				return buf;
		}
	}
	return "build/daemon/isvdd";
}

int main(int argc, char **argv)
{
	struct e2e_opts o;
	struct sigaction sa;
	char exe_buf[PATH_MAX + 32];
	char abs_exe[PATH_MAX];
	int failed = 0;

	setenv("OPENBLAS_NUM_THREADS", "1", 0);   /* as the daemon: one BLAS thread */
	bench_blas_single_thread();
	if (parse_opts(argc, argv, &o) != 0)
		return 2;
	o.isvdd = find_isvdd(o.isvdd, exe_buf, sizeof exe_buf);
	if (access(o.isvdd, X_OK) != 0 || realpath(o.isvdd, abs_exe) == NULL) {
		fprintf(stderr, PROG ": %s: not an executable (build isvdd, or pass --isvdd PATH)\n",
		        o.isvdd);
		return 2;
	}
	o.isvdd = abs_exe;
	g_keep = o.keep;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_children);

	if (!o.json) {
		printf("isvd-e2e: isvdd %s over tcp://127.0.0.1 through libisvd %s; %ld CPUs; "
		       "%.1f s per measurement; data: rank-k signal + noise 1e-3, seed %" PRIu64 "\n",
		       o.isvdd, ISVD_CLIENT_VERSION, sysconf(_SC_NPROCESSORS_ONLN), o.seconds, o.seed);
		printf("daemon config: mode auto, no centring, batching.max_rows %d, storage in %s\n",
		       E2E_MAX_ROWS, o.tmp);
	}
	for (unsigned sec = SEC_INGEST; sec <= SEC_LAST && !g_stop; sec <<= 1) {
		if (!(o.only & sec))
			continue;
		if (!o.json) {
			printf("\n");
			switch (sec) {
			case SEC_INGEST:
				printf("== ingest: P pushers x W pushes in flight; rows/s acknowledged (first send\n"
				       "   to last ack); ack latency from push_send to its ack; daemon CPU in %%\n"
				       "   of one core (all its threads);\n"
				       "   %% engine = ingest rows/s / the engine's in-process rows/s on the same rows\n");
				printf("%6s %4s %-9s %-8s %5s %8s %10s %10s %9s %9s %7s %9s\n", "n", "k", "mode",
				       "fsync", "push", "P x W", "rows", "rows/s", "p50 ms", "p99 ms",
				       "CPU", "% engine");
				break;
			case SEC_QUERY:
				printf("== query: single-row project, back to back, while one pusher ingests\n"
				       "   pushes of 256 rows at full speed (fsync interval); latency in µs\n");
				printf("%6s %4s %-9s %8s %9s %9s %9s %9s %12s %8s\n", "n", "k", "mode", "queries",
				       "p50", "p99", "p99.9", "max", "ingest r/s", "CPU");
				break;
			case SEC_MEMORY:
				printf("== memory: one pusher, pushes of 256 rows, fsync interval; the daemon's\n"
				       "   VmRSS/VmHWM and the storage directory (files' sizes) at ~10^5 rows,\n"
				       "   halfway and at the end; HWM growth relative to the first point\n");
				printf("%6s %4s %-9s %9s %11s %9s %9s %9s %10s %8s %10s\n", "n", "k", "mode",
				       "ckpt rows", "rows", "RSS MiB", "HWM MiB", "HWM grow", "store MiB", "t s",
				       "rows/s");
				break;
			case SEC_RECOVERY:
				printf("== recovery: stream with checkpoints off (fsync none), kill -9, restart;\n"
				       "   replay time from the daemon's 'recovery: replayed' log line\n");
				printf("%6s %4s %-9s %9s %9s %8s %9s %12s %9s %12s\n", "n", "k", "mode", "rows",
				       "log MiB", "records", "replay s", "replay r/s", "ready s", "stream r/s");
				break;
			case SEC_MONITOR:
				printf("== monitor: rows/s with monitor.enabled off and on, best of %d\n"
				       "   alternating rounds each; the engine in process (blocks of %d, one\n"
				       "   thread, as isvdd's model.threads: the scores on the scoring thread)\n"
				       "   and the daemon (one pusher, pushes of 256, fsync interval); on/off\n"
				       "   of the bests, and med: the median of each round's on/off; daemon\n"
				       "   CPU in %% of one core\n", E2E_MONITOR_ROUNDS, E2E_MAX_ROWS);
				printf("%6s %4s %-9s %11s %11s %7s %7s %11s %11s %7s %7s %6s %6s\n", "n", "k",
				       "mode", "engine off", "engine on", "on/off", "med", "daemon off",
				       "daemon on", "on/off", "med", "CPU", "CPU on");
				break;
			case SEC_PRODUCER:
				printf("== producer: one pusher, fsync always; pushes of 256 rows (pipelined)\n"
				       "   against one row per isvd_producer_push_row() call (linger %d ms,\n"
				       "   %d rows a batch); rows/s acknowledged; target: producer >= 50%%\n",
				       ISVD_PRODUCER_DEFAULT_LINGER_MS, ISVD_PRODUCER_DEFAULT_MAX_ROWS);
				printf("%6s %4s %-9s %12s %12s %12s %8s %8s\n", "n", "k", "mode", "push256 r/s",
				       "producer r/s", "rows", "batches", "ratio");
				break;
			}
			fflush(stdout);
		}
		for (size_t i = 0; i < o.nsizes && !g_stop; i++) {
			struct pool pool;

			if (pool_make(&pool, o.sizes[i].n, o.sizes[i].k, o.seed) != 0) {
				failed = 1;
				continue;
			}
			switch (sec) {
			case SEC_INGEST: failed |= section_ingest(&o, &pool); break;
			case SEC_QUERY: failed |= section_query(&o, &pool); break;
			case SEC_MEMORY: failed |= section_memory(&o, &pool); break;
			case SEC_RECOVERY: failed |= section_recovery(&o, &pool); break;
			case SEC_MONITOR: failed |= section_monitor(&o, &pool); break;
			case SEC_PRODUCER: failed |= section_producer(&o, &pool); break;
			}
			free(pool.x);
		}
	}
	kill_children();
	return g_stop ? 130 : failed;
}
