/*
 * isvd.c — `isvd`, the command-line client of isvdd, built on libisvd.
 *
 *   isvd push FILE|-           rows from CSV/TSV/text, raw f64/f32 or .npy
 *   isvd push --follow -       rows as lines arrive, batched by --batch/--linger-ms
 *   isvd info [--json]         the model and its spectrum as a bar chart
 *   isvd project FILE|-        coordinates + residual as CSV
 *   isvd reconstruct FILE|-    reconstructed rows as CSV
 *   isvd factors               σ, Vᵀ, μ as CSV or NPY files
 *   isvd subscribe [TOPIC...]  published messages (spectrum, factors, anomaly,
 *                              drift), one line each
 *   isvd checkpoint | ping
 *   isvd keygen NAME           a CURVE key pair: NAME.key (secret), NAME.pub
 *   isvd merge -o OUT FILE...  merge saved models (checkpoints, images) into one
 *   isvd inspect FILE          what a checkpoint or image holds
 * (keygen, merge and inspect contact no daemon; merge and inspect live in
 * cli_model.c and link the engine)
 *
 * Endpoints come from --ingest/--query/--publish, else the environment
 * (ISVD_INGEST, ISVD_QUERY, ISVD_PUBLISH), else the protocol's defaults
 * (libisvd resolves the last two).  CURVE keys likewise: --server-key and
 * --client-key, else ISVD_SERVER_KEY and ISVD_CLIENT_KEY, else none.
 *
 * Exit status: 0 success, 1 a failure (the daemon refused, no reply, bad
 * input, I/O), 2 a usage error.
 */
#include "cli.h"
#include "cli_model.h"
#include "isvd/producer.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef ISVD_VERSION
#define ISVD_VERSION "0.0.0"
#endif

#define EXIT_USAGE 2

struct cli {
	const char *cmd;
	struct isvd_client_options o;
	double timeout_s;          /* --timeout as given; < 0: not given */
	int format;                /* --format: input format, or for factors 0 csv / 1 npy */
	bool format_set;
	size_t dim;
	size_t batch;
	unsigned in_flight;
	const char *out;
	enum isvd_client_space space;
	bool fill;                 /* reconstruct --fill */
	bool json;
	size_t count;
	bool follow;               /* push --follow */
	size_t linger_ms;          /* push --linger-ms */
	bool linger_ms_set;
};

/* ------------------------------------------------------------------- help */

static const char common_help[] =
	"  --ingest EP       ingest endpoint (env ISVD_INGEST, default " "tcp://127.0.0.1:5570)\n"
	"  --query EP        query endpoint (env ISVD_QUERY, default tcp://127.0.0.1:5571)\n"
	"  --publish EP      publish endpoint (env ISVD_PUBLISH, default tcp://127.0.0.1:5572)\n"
	"  --timeout SEC     seconds to wait for each reply (default 5)\n"
	"  --retries N       resends after a timeout, reconnecting each time, and of a push\n"
	"                    refused RATE_LIMITED, after the wait the daemon asks (default 3)\n"
	"  --server-key FILE the daemon's CURVE public key (env ISVD_SERVER_KEY)\n"
	"  --client-key FILE this client's CURVE secret key (env ISVD_CLIENT_KEY); both\n"
	"                    or neither: with them every socket is encrypted and\n"
	"                    authenticated (the daemon's security.curve)\n"
	"  -h, --help        this help\n";

static const struct {
	const char *name, *usage, *about, *options;
} commands[] = {
	{ "push", "isvd push [options] FILE|-",
	  "Pushes the rows of FILE (- for standard input) to the daemon, --batch rows per\n"
	  "push, keeping up to --in-flight pushes outstanding.  Text input is CSV, TSV or\n"
	  "whitespace-separated, detected from the first row; a first row with no number\n"
	  "in it is a header.  Empty fields, 'NA' and 'NaN' (any case) are missing values\n"
	  "(raw input: NaN), which a daemon with model.missing: impute fills from the\n"
	  "model and one with reject refuses (NON_FINITE); blank lines and\n"
	  "lines starting with '#' are skipped.  A value that cannot be parsed, or a row\n"
	  "of the wrong length, stops the push with FILE:LINE: ... (the batches before it\n"
	  "were pushed).  Shows a progress bar on a terminal, a summary line otherwise.\n",
	  "  -f, --format F    auto (default), csv, tsv, text, f64 or f32 (raw little-endian)\n"
	  "                    or npy; under auto a NumPy .npy file is recognised by its\n"
	  "                    magic (float64, float32 or integer dtypes, C or Fortran\n"
	  "                    order, shape (N, M) or (M,); NaN is a missing value)\n"
	  "  -d, --dim N       values per row (required for f64/f32; checked for text, npy)\n"
	  "  -b, --batch N     rows per push (default 1000)\n"
	  "  -n, --in-flight N pushes outstanding at once (default 16)\n"
	  "  -c, --client ID   client id for retries (default: a random one)\n"
	  "  -w, --follow      read standard input (FILE must be -) as lines arrive, for\n"
	  "                    a sensor loop or tail -F FILE | isvd push --follow -: a\n"
	  "                    batch is sent when it holds --batch rows or --linger-ms\n"
	  "                    after its first row, whichever comes first; text only;\n"
	  "                    ends at end of input or on SIGINT/SIGTERM, sending what\n"
	  "                    it holds first\n"
	  "  -l, --linger-ms N with --follow: the longest a row waits for its batch to\n"
	  "                    fill (default 5)\n" },
	{ "info", "isvd info [options]",
	  "Prints the model (dimension, rank, rows seen, ...) and its singular values as a\n"
	  "bar chart with each component's share of the total energy, the cumulative\n"
	  "share, and the condition number.\n",
	  "  -j, --json        print the reply as one JSON object instead\n" },
	{ "project", "isvd project [options] FILE|-",
	  "Projects the rows of FILE onto the model and writes CSV: a header row, then per\n"
	  "row its k coordinates and the residual norm ||(x-mu) - V V^T (x-mu)||.  Rows may\n"
	  "have missing values (as for push): such a row is first completed from the model\n"
	  "(as a push would be) and its residual covers its observed values only; when the\n"
	  "input has any, an 'observed' column counts each row's observed values.\n",
	  "  -s, --space S     scores (default: V^T(x-mu)) or u (Sigma^-1 V^T(x-mu))\n"
	  "  -o, --output FILE write to FILE instead of standard output\n"
	  "  -f, --format F    input format, as for push\n"
	  "  -d, --dim N       values per row, as for push\n"
	  "  -b, --batch N     rows per request (default 4096)\n" },
	{ "reconstruct", "isvd reconstruct [options] FILE|-",
	  "Reconstructs the rows of FILE from the model (mu + V V^T (x-mu)) and writes them\n"
	  "as CSV, with the input's header row when it had one.  With --fill, gap filling:\n"
	  "each row's observed values are written unchanged and only its missing values\n"
	  "(as for push) are filled from the model.\n",
	  "  -F, --fill        fill only the missing values; keep the observed ones\n"
	  "  -o, --output FILE write to FILE instead of standard output\n"
	  "  -f, --format F    input format, as for push\n"
	  "  -d, --dim N       values per row, as for push\n"
	  "  -b, --batch N     rows per request (default 4096)\n" },
	{ "factors", "isvd factors [options]",
	  "Exports the factors: sigma (k), V^T (k x n) and, when the model centres, the\n"
	  "mean mu (n).  With -o PREFIX it writes PREFIX_sigma.EXT, PREFIX_vt.EXT and\n"
	  "PREFIX_mean.EXT (EXT csv or npy; no mean file when the model does not centre).\n"
	  "NPY files are version 1.0, little-endian float64, shapes (k,), (k, n), (n,):\n"
	  "numpy.load reads them.  CSV files hold plain numbers, one matrix row per line\n"
	  "(sigma one value per line).  Without -o, CSV goes to standard output with a\n"
	  "label first on each line: 'sigma', 'vt1'..'vtk', 'mean'.\n",
	  "  -f, --format F    csv (default) or npy (npy needs -o)\n"
	  "  -o, --output P    file name prefix\n" },
	{ "subscribe", "isvd subscribe [options] [spectrum|factors|anomaly|drift]...",
	  "Prints the messages the daemon publishes (spectrum and factors unless topics are\n"
	  "named; anomaly and drift come from daemons with monitor.enabled), one line each,\n"
	  "until --count messages arrived or --timeout seconds passed.  Exits 1 when\n"
	  "--count was given and not reached.\n",
	  "  -n, --count N     stop after N snapshots\n"
	  "  -j, --json        one JSON object per snapshot\n"
	  "  (--timeout SEC here is the total time to listen; default: no limit)\n" },
	{ "checkpoint", "isvd checkpoint [options]",
	  "Asks the daemon for a durable checkpoint and prints the seq it covers.\n", "" },
	{ "ping", "isvd ping [options]",
	  "Checks that the daemon answers; prints its version, protocol and round trip.\n", "" },
	{ "keygen", "isvd keygen NAME",
	  "Writes a new CURVE key pair: NAME.key, the secret key (mode 0600; give it to the\n"
	  "daemon as security.secret_key_file, or to a client as --client-key) and NAME.pub,\n"
	  "the public key (give the daemon's to clients as --server-key; put a client's in\n"
	  "one of the daemon's keys directories).  Existing files are never overwritten.\n"
	  "Prints the public key.  Contacts nothing; the common options do not apply.\n", "" },
	{ "merge", "isvd merge -o OUT FILE...",
	  "Merges saved models (isvdd checkpoint files or engine images) into one engine\n"
	  "image OUT (isvd merge --help says more).  Contacts nothing; the common options\n"
	  "do not apply.\n", "  -o, --output OUT  the image to write (required)\n" },
	{ "inspect", "isvd inspect FILE",
	  "Prints what an isvdd checkpoint file or an engine image holds.  Contacts\n"
	  "nothing; the common options do not apply.\n", "" },
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void main_help(FILE *f)
{
	fprintf(f, "usage: isvd COMMAND [options] [args]\n"
	           "       isvd --help | --version\n"
	           "       isvd COMMAND --help\n\n"
	           "Command-line client of isvdd, the streaming SVD daemon.\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].usage);
	fprintf(f, "\ncommon options:\n%s", common_help);
}

static int cmd_help(const char *name, FILE *f)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name)) {
			fprintf(f, "usage: %s\n\n%s\noptions:\n%s%s", commands[i].usage, commands[i].about,
			        commands[i].options, common_help);
			return 0;
		}
	return -1;
}

static int usage_error(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "isvd: %s: ", c->cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(isvd %s --help for help)\n", c->cmd);
	return EXIT_USAGE;
}

/* ---------------------------------------------------------------- parsing */

static bool parse_size(const char *s, size_t *v, size_t min)
{
	char *end;
	errno = 0;
	unsigned long long u = strtoull(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || u < min || u > SIZE_MAX / 16)
		return false;
	*v = (size_t)u;
	return true;
}

/* Option letters each command accepts (besides the common ones). */
static const char *command_opts(const char *cmd)
{
	if (!strcmp(cmd, "push")) return "fdbncwl";
	if (!strcmp(cmd, "info")) return "j";
	if (!strcmp(cmd, "project")) return "sofdb";
	if (!strcmp(cmd, "reconstruct")) return "Fofdb";
	if (!strcmp(cmd, "factors")) return "fo";
	if (!strcmp(cmd, "subscribe")) return "nCj";
	return "";
}

/* Parses argv (argv[0] is the command).  Returns -1 to go on, else an exit
 * status. */
/* Applies one option (opt, its value in optarg; given: the option as
 * written, for messages).  -1 to go on, or parse()'s result. */
static int apply_option(struct cli *c, int opt, const char *given)
{
	switch (opt) {
	case 'h':
		cmd_help(c->cmd, stdout);
		return 0;
	case 'I': c->o.ingest = optarg; break;
	case 'Q': c->o.query = optarg; break;
	case 'P': c->o.publish = optarg; break;
	case 'T': {
		char *end;
		double t = strtod(optarg, &end);
		if (*end || !(t > 0) || t > 86400 * 365)
			return usage_error(c, "--timeout wants seconds > 0, not '%s'", optarg);
		c->timeout_s = t;
		c->o.timeout_ms = (int)ceil(t * 1000 > 2e9 ? 2e9 : t * 1000);
		break;
	}
	case 'S': c->o.server_key_file = optarg; break;
	case 'K': c->o.client_key_file = optarg; break;
	case 'R': {
		size_t v;
		if (!parse_size(optarg, &v, 0) || v > 1000000)
			return usage_error(c, "--retries wants a count, not '%s'", optarg);
		c->o.retries = (int)v;
		break;
	}
	case 'f':
		if (!strcmp(c->cmd, "factors")) {
			if (strcmp(optarg, "csv") && strcmp(optarg, "npy"))
				return usage_error(c, "--format is csv or npy, not '%s'", optarg);
			c->format = !strcmp(optarg, "npy");
		} else {
			int f = cli_format_parse(optarg);
			if (f < 0)
				return usage_error(c, "--format is auto, csv, tsv, text, f64, f32 or npy, not '%s'", optarg);
			c->format = f;
		}
		c->format_set = true;
		break;
	case 'd':
		if (!parse_size(optarg, &c->dim, 1))
			return usage_error(c, "--dim wants a positive count, not '%s'", optarg);
		break;
	case 'b':
		if (!parse_size(optarg, &c->batch, 1) || c->batch > (1u << 24))
			return usage_error(c, "--batch wants a positive count, not '%s'", optarg);
		break;
	case 'n':
	case 'C': {
		size_t v;
		if (!parse_size(optarg, &v, 1) || v > 1000000)
			return usage_error(c, "%s wants a positive count", given);
		if (!strcmp(c->cmd, "push"))
			c->in_flight = (unsigned)v;
		else
			c->count = v;
		break;
	}
	case 'c':
		if (!*optarg || strlen(optarg) > 255)
			return usage_error(c, "--client wants 1..255 bytes, not '%s'", optarg);
		c->o.client_id = optarg;
		break;
	case 'o': c->out = optarg; break;
	case 's':
		if (!strcmp(optarg, "scores"))
			c->space = ISVD_CLIENT_SCORES;
		else if (!strcmp(optarg, "u"))
			c->space = ISVD_CLIENT_U;
		else
			return usage_error(c, "--space is scores or u, not '%s'", optarg);
		break;
	case 'j': c->json = true; break;
	case 'F': c->fill = true; break;
	case 'w': c->follow = true; break;
	case 'l':
		if (!parse_size(optarg, &c->linger_ms, 0) || c->linger_ms > 3600 * 1000)
			return usage_error(c, "--linger-ms wants milliseconds (0 to 3600000), not '%s'", optarg);
		c->linger_ms_set = true;
		break;
	default:
		return usage_error(c, "unexpected option %s", given);
	}
	return -1;
}

static int parse(struct cli *c, int argc, char **argv)
{
	static const struct option longs[] = {
		{ "ingest", required_argument, NULL, 'I' },
		{ "query", required_argument, NULL, 'Q' },
		{ "publish", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "retries", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "dim", required_argument, NULL, 'd' },
		{ "batch", required_argument, NULL, 'b' },
		{ "in-flight", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'C' },
		{ "client", required_argument, NULL, 'c' },
		{ "output", required_argument, NULL, 'o' },
		{ "space", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "fill", no_argument, NULL, 'F' },
		{ "follow", no_argument, NULL, 'w' },
		{ "linger-ms", required_argument, NULL, 'l' },
		{ "server-key", required_argument, NULL, 'S' },
		{ "client-key", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	const char *allowed = command_opts(c->cmd);
	int opt, li, rc;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "hf:d:b:n:c:o:s:jwl:", longs, &li)) != -1) {
		if (opt == '?' || opt == ':')
			return usage_error(c, "unknown option or missing value: %s", argv[optind - 1]);
		if (strchr("fdbncosjCwl", opt) && !strchr(allowed, opt))
			return usage_error(c, "option %s does not apply here", argv[optind - 1]);
		if ((rc = apply_option(c, opt, argv[optind - 1])) != -1)
			return rc;
	}
	return -1;
}

/* ---------------------------------------------------------------- helpers */

static int daemon_error(const struct cli *c, struct isvd_client *cl, int err)
{
	const char *msg = isvd_client_errmsg(cl);
	fprintf(stderr, "isvd: %s: %s: %s\n", c->cmd, isvd_client_err_name(err),
	        *msg ? msg : isvd_client_strerror(err));
	return EXIT_FAILURE;
}

static int connect_client(const struct cli *c, struct isvd_client **cl)
{
	int err = isvd_client_create(cl, &c->o);
	if (err) {
		/* a key problem: say which file and why */
		const char *sk = c->o.server_key_file ? c->o.server_key_file : getenv("ISVD_SERVER_KEY");
		const char *ck = c->o.client_key_file ? c->o.client_key_file : getenv("ISVD_CLIENT_KEY");
		char z85[41], why[512] = "";
		if (sk && !*sk)
			sk = NULL;
		if (ck && !*ck)
			ck = NULL;
		if ((sk || ck) && !(sk && ck))
			snprintf(why, sizeof why, "CURVE needs both --server-key and --client-key "
			         "(or ISVD_SERVER_KEY and ISVD_CLIENT_KEY)");
		else if (sk && isvd_client_key_read(sk, false, z85, why, sizeof why) == ISVD_CLIENT_OK)
			isvd_client_key_read(ck, true, z85, why, sizeof why);
		fprintf(stderr, "isvd: %s: cannot connect: %s\n", c->cmd, why[0] ? why : isvd_client_strerror(err));
		return EXIT_FAILURE;
	}
	return 0;
}

static FILE *open_out(const struct cli *c)
{
	if (!c->out || !strcmp(c->out, "-"))
		return stdout;
	FILE *f = fopen(c->out, "w");
	if (!f)
		fprintf(stderr, "isvd: %s: %s: %s\n", c->cmd, c->out, strerror(errno));
	return f;
}

static int close_out(const struct cli *c, FILE *f)
{
	int bad = ferror(f);
	if (f == stdout)
		bad |= fflush(f);
	else
		bad |= fclose(f);
	if (bad) {
		fprintf(stderr, "isvd: %s: write %s: %s\n", c->cmd, c->out ? c->out : "<stdout>", strerror(errno));
		return EXIT_FAILURE;
	}
	return 0;
}

/* ------------------------------------------------------------------- push */

struct push_state {
	uint64_t rows_acked, acks, duplicates, last_seq;
	int err;                     /* first failed push */
	size_t err_line;
	char err_msg[256];
};

static void on_ack(const struct isvd_client_ack *a, void *user)
{
	struct push_state *s = user;
	s->acks++;
	if (a->err) {
		if (!s->err) {
			s->err = a->err;
			s->err_line = (size_t)(uintptr_t)a->user;
			snprintf(s->err_msg, sizeof s->err_msg, "%s", a->message);
		}
		return;
	}
	s->rows_acked += a->accepted;
	if (a->duplicate)
		s->duplicates++;
	if (a->seq > s->last_seq)
		s->last_seq = a->seq;
}

/* ------------------------------------------------------- push --follow */

/* push --follow: standard input is polled, not read to its end, and every
 * row goes to a libisvd producer (isvd/producer.h), whose thread sends a
 * batch when it holds --batch rows or --linger-ms after its first row and
 * resends what the daemon did not answer:
 *
 *   poll(stdin, failure pipe) ──bytes──► follow_read ─lines─► follow_feed ─rows─► producer
 *        │                      └─ a batch failed (on_follow_report wrote the pipe) ─┐
 *        └─ EOF / SIGINT / SIGTERM / bad line ──────────────────────────────────────┴─►
 *   follow_finish: flush (the producer sends what it holds), summary or error
 *
 * Rows are numbered from 0 in input order, as the producer numbers them;
 * struct line_map turns a failed batch's first row back into its line. */
#define FOLLOW_READ 65536
#define FOLLOW_BATCH 1000            /* --batch's default, as for push */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static volatile sig_atomic_t follow_stop;

static void on_follow_signal(int sig)
{
	follow_stop = sig;
}

/* The line of each row, stored as runs: (row, line) where a row's line is
 * not the previous row's plus one (a header, a blank or comment line). */
struct line_map {
	uint64_t *row, *line;
	size_t n, cap;
	uint64_t rows, last_line;
};

static int line_map_add(struct line_map *m, uint64_t line)
{
	if (!m->n || line != m->last_line + 1) {
		if (m->n == m->cap) {
			size_t cap = m->cap ? 2 * m->cap : 16;
			uint64_t *r = realloc(m->row, cap * sizeof *r);
			if (!r)
				return -1;
			m->row = r;
			uint64_t *l = realloc(m->line, cap * sizeof *l);
			if (!l)
				return -1;
			m->line = l;
			m->cap = cap;
		}
		m->row[m->n] = m->rows;
		m->line[m->n++] = line;
	}
	m->rows++;
	m->last_line = line;
	return 0;
}

static uint64_t line_map_find(const struct line_map *m, uint64_t row)
{
	size_t lo = 0, hi = m->n;          /* the last run starting at or before row */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->row[mid] <= row)
			lo = mid;
		else
			hi = mid;
	}
	return m->n ? m->line[lo] + (row - m->row[lo]) : 0;
}

struct follow {
	struct cli_reader r;
	struct isvd_client *cl;
	struct isvd_producer *p;
	struct line_map lines;
	double *rows;                    /* rows parsed from the last read */
	size_t cap, n;
	char *in;                        /* bytes read, up to the last newline */
	size_t ilen, icap;
	int fail_pipe[2];                /* the producer's thread → the loop: a batch failed */
	pthread_mutex_t mu;
	struct isvd_producer_report failed;   /* the first failed batch (mu) */
	bool has_failed;
	bool eof, input_error;
	struct sigaction old_int, old_term;
	bool signals_set;
};

/* The producer's thread: keeps the first failure and wakes the loop. */
static void on_follow_report(const struct isvd_producer_report *rep, void *user)
{
	struct follow *f = user;
	if (rep->err == ISVD_CLIENT_OK)
		return;
	pthread_mutex_lock(&f->mu);
	if (!f->has_failed) {
		f->failed = *rep;
		f->has_failed = true;
		ssize_t w = write(f->fail_pipe[1], "x", 1);
		(void)w;                     /* the pipe is empty: it cannot be full */
	}
	pthread_mutex_unlock(&f->mu);
}

static void follow_close(struct follow *f)
{
	if (f->signals_set) {
		sigaction(SIGINT, &f->old_int, NULL);
		sigaction(SIGTERM, &f->old_term, NULL);
	}
	isvd_producer_destroy(f->p);
	isvd_client_destroy(f->cl);
	for (int i = 0; i < 2; i++)
		if (f->fail_pipe[i] >= 0)
			close(f->fail_pipe[i]);
	pthread_mutex_destroy(&f->mu);
	free(f->lines.row);
	free(f->lines.line);
	free(f->rows);
	free(f->in);
	cli_reader_close(&f->r);
}

/* Checks the arguments and opens the line reader and the failure pipe.
 * Returns 0 or an exit status; follow_close() either way. */
static int follow_open(struct cli *c, int argc, char **argv, struct follow *f)
{
	memset(f, 0, sizeof *f);
	f->fail_pipe[0] = f->fail_pipe[1] = -1;
	pthread_mutex_init(&f->mu, NULL);
	if (argc - optind != 1 || strcmp(argv[optind], "-"))
		return usage_error(c, "%s", "--follow reads standard input: isvd push --follow - "
		                   "(e.g. tail -F FILE | isvd push --follow -)");
	if (cli_reader_open_lines(&f->r, "<stdin>", (enum cli_format)c->format, c->dim))
		return usage_error(c, "--follow: %s", f->r.err);
	if (pipe(f->fail_pipe)) {
		fprintf(stderr, "isvd: push: pipe: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return 0;
}

/* Connects and starts the producer with --batch, --linger-ms and --in-flight. */
static int follow_connect(struct cli *c, struct follow *f)
{
	struct isvd_producer_options po;
	int rc, err;

	if ((rc = connect_client(c, &f->cl)))
		return rc;
	isvd_producer_options_init(&po);
	po.linger_ms = c->linger_ms_set ? (int)c->linger_ms : ISVD_PRODUCER_DEFAULT_LINGER_MS;
	po.max_rows = c->batch ? c->batch : FOLLOW_BATCH;
	if (c->in_flight)
		po.max_in_flight = c->in_flight < ISVD_PRODUCER_MAX_IN_FLIGHT ? c->in_flight
		                                                             : ISVD_PRODUCER_MAX_IN_FLIGHT;
	po.on_report = on_follow_report;
	po.user = f;
	if ((err = isvd_producer_create(&f->p, f->cl, &po))) {
		fprintf(stderr, "isvd: push: cannot start the producer: %s\n", isvd_client_strerror(err));
		return EXIT_FAILURE;
	}
	return 0;
}

static void follow_catch_signals(struct follow *f)
{
	struct sigaction sa = { .sa_handler = on_follow_signal };

	follow_stop = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &f->old_int);     /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, &f->old_term);
	f->signals_set = true;
}

/* Hands the rows parsed so far to the producer.  0, or -1 (reported). */
static int follow_send(struct follow *f)
{
	if (!f->n)
		return 0;
	int err = isvd_producer_push_rows(f->p, f->rows, f->n, f->r.dim);
	f->n = 0;
	if (err) {
		fprintf(stderr, "isvd: push: %s\n", isvd_client_strerror(err));
		return -1;
	}
	return 0;
}

/* Parses the complete lines in f->in and hands their rows to the producer;
 * keeps a partial last line for the next read.  0, or -1 after an error
 * (reported; the rows before a bad line are sent). */
static int follow_feed(struct follow *f)
{
	size_t start = 0;

	for (size_t i = 0; i < f->ilen; i++) {
		if (f->in[i] != '\n')
			continue;
		size_t before = f->n;
		if (cli_reader_feed(&f->r, f->in + start, i - start, &f->rows, &f->cap, &f->n)) {
			fprintf(stderr, "isvd: push: %s\n", f->r.err);
			follow_send(f);
			return -1;
		}
		if (f->n > before && line_map_add(&f->lines, f->r.line)) {
			fprintf(stderr, "isvd: push: out of memory\n");
			follow_send(f);
			return -1;
		}
		start = i + 1;
	}
	memmove(f->in, f->in + start, f->ilen - start);
	f->ilen -= start;
	return follow_send(f);
}

/* Reads what standard input has (poll said so) and feeds its lines.  0,
 * or -1 after an error (reported). */
static int follow_read(struct follow *f)
{
	if (f->icap - f->ilen < FOLLOW_READ + 1) {
		char *bigger = realloc(f->in, f->ilen + FOLLOW_READ + 1);
		if (!bigger) {
			fprintf(stderr, "isvd: push: out of memory\n");
			return -1;
		}
		f->in = bigger;
		f->icap = f->ilen + FOLLOW_READ + 1;
	}
	ssize_t got = read(STDIN_FILENO, f->in + f->ilen, FOLLOW_READ);
	if (got < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		fprintf(stderr, "isvd: push: <stdin>: read: %s\n", strerror(errno));
		return -1;
	}
	f->ilen += (size_t)got;
	if (got == 0) {
		f->eof = true;
		if (f->ilen)                     /* a last line without its newline */
			f->in[f->ilen++] = '\n';
	}
	return follow_feed(f);
}

/* Reads standard input until its end, a signal, an input error or a failed
 * batch. */
static void follow_loop(struct follow *f)
{
	while (!f->eof && !follow_stop) {
		struct pollfd pf[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
		                        { .fd = f->fail_pipe[0], .events = POLLIN } };
		int k = poll(pf, 2, -1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "isvd: push: <stdin>: poll: %s\n", strerror(errno));
			f->input_error = true;
			return;
		}
		if (pf[1].revents)
			return;                      /* a batch failed */
		if (pf[0].revents && follow_read(f)) {
			f->input_error = true;
			return;
		}
	}
}

/* Flushes the producer and prints the summary or what failed; the exit status. */
static int follow_finish(struct cli *c, struct follow *f, int64_t t0)
{
	struct isvd_producer_stats st;
	int err = isvd_producer_flush(f->p, -1);

	isvd_producer_get_stats(f->p, &st);
	pthread_mutex_lock(&f->mu);
	bool failed = f->has_failed;
	struct isvd_producer_report rep = f->failed;
	pthread_mutex_unlock(&f->mu);
	if (failed) {
		fprintf(stderr, "isvd: push: <stdin>:%" PRIu64 ": batch starting here: %s: %s\n",
		        line_map_find(&f->lines, rep.first), isvd_client_err_name(rep.err), rep.message);
		return EXIT_FAILURE;
	}
	if (f->input_error) {
		if (st.rows_accepted)
			fprintf(stderr, "isvd: push: %" PRIu64 " rows before it were pushed\n", st.rows_accepted);
		return EXIT_FAILURE;
	}
	if (err)
		return daemon_error(c, f->cl, err);
	double el = (double)(mono_ms() - t0) / 1000.0;
	printf("pushed %" PRIu64 " rows in %" PRIu64 " batches (%" PRIu64 " duplicate%s), seq %" PRIu64
	       ", %.2f s, %.0f rows/s%s\n",
	       st.rows_accepted, st.batches_sent, st.batches_duplicate, st.batches_duplicate == 1 ? "" : "s",
	       st.last_seq, el, el > 0 ? (double)st.rows_accepted / el : 0.0,
	       follow_stop ? " (stopped by a signal)" : "");
	return 0;
}

static int push_follow(struct cli *c, int argc, char **argv)
{
	struct follow f;
	int64_t t0 = mono_ms();
	int rc;

	if (!(rc = follow_open(c, argc, argv, &f)) && !(rc = follow_connect(c, &f))) {
		follow_catch_signals(&f);
		follow_loop(&f);
		rc = follow_finish(c, &f, t0);
	}
	follow_close(&f);
	return rc;
}

static int cmd_push(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl = NULL;
	struct cli_reader r;
	struct cli_progress pg;
	struct push_state st = { 0 };
	double *rows = NULL;
	size_t cap = 0, n, line;
	uint64_t sent_rows = 0, batches = 0;
	int rc = EXIT_FAILURE, err;

	if (c->follow)
		return push_follow(c, argc, argv);
	if (c->linger_ms_set)
		return usage_error(c, "%s", "--linger-ms applies to --follow");
	if (argc - optind != 1)
		return usage_error(c, "%s", "wants one FILE (- for standard input)");
	if (cli_reader_open(&r, argv[optind], (enum cli_format)c->format, c->dim)) {
		fprintf(stderr, "isvd: push: %s\n", r.err);
		goto out_reader;
	}
	if (c->in_flight)
		c->o.max_in_flight = c->in_flight;
	if ((rc = connect_client(c, &cl)))
		goto out_reader;
	rc = EXIT_FAILURE;
	isvd_client_set_ack_callback(cl, on_ack, &st);
	cli_progress_start(&pg, r.size);
	for (;;) {
		if (cli_reader_next(&r, c->batch ? c->batch : 1000, &rows, &cap, &n, &line)) {
			isvd_client_push_flush(cl);
			cli_progress_update(&pg, st.rows_acked, r.bytes, true);
			fprintf(stderr, "isvd: push: %s\n", r.err);
			if (sent_rows)
				fprintf(stderr, "isvd: push: %" PRIu64 " rows before it were pushed\n", st.rows_acked);
			goto out_client;
		}
		if (n == 0)
			break;
		struct isvd_client_batch b = { .rows = rows, .nrows = n, .dim = r.dim, .dtype = ISVD_CLIENT_F64,
		                               .user = (void *)(uintptr_t)line };
		err = isvd_client_push_send(cl, &b, NULL);
		if (err) {
			cli_progress_update(&pg, st.rows_acked, r.bytes, true);
			rc = daemon_error(c, cl, err);
			goto out_client;
		}
		sent_rows += n;
		batches++;
		if (st.err)
			break;
		cli_progress_update(&pg, st.rows_acked, r.bytes, false);
	}
	err = isvd_client_push_flush(cl);
	cli_progress_update(&pg, st.rows_acked, r.bytes, true);
	if (st.err) {
		if (r.fmt == CLI_FMT_F64 || r.fmt == CLI_FMT_F32 || r.fmt == CLI_FMT_NPY)
			fprintf(stderr, "isvd: push: %s: %s: %s\n", r.name, isvd_client_err_name(st.err), st.err_msg);
		else
			fprintf(stderr, "isvd: push: %s:%zu: batch starting here: %s: %s\n", r.name, st.err_line,
			        isvd_client_err_name(st.err), st.err_msg);
		goto out_client;
	}
	if (err) {
		rc = daemon_error(c, cl, err);
		goto out_client;
	}
	double el = cli_now() - pg.t0;
	printf("pushed %" PRIu64 " rows in %" PRIu64 " batches (%" PRIu64 " duplicate%s), seq %" PRIu64
	       ", %.2f s, %.0f rows/s\n",
	       st.rows_acked, batches, st.duplicates, st.duplicates == 1 ? "" : "s", st.last_seq, el,
	       el > 0 ? (double)st.rows_acked / el : 0.0);
	rc = 0;
out_client:
	isvd_client_destroy(cl);
out_reader:
	free(rows);
	cli_reader_close(&r);
	return rc;
}

/* ------------------------------------------------------------------ query */

static int cmd_info(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl;
	struct isvd_client_info in;
	int rc, err;

	if (argc != optind)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = connect_client(c, &cl)))
		return rc;
	err = isvd_client_info(cl, &in);
	if (err) {
		rc = daemon_error(c, cl, err);
	} else {
		if (c->json)
			cli_print_info_json(stdout, &in);
		else
			cli_print_info(stdout, &in, isatty(STDOUT_FILENO));
		rc = fflush(stdout) ? EXIT_FAILURE : 0;
	}
	isvd_client_info_fini(&in);
	isvd_client_destroy(cl);
	return rc;
}

/* Observed (non-NaN) values among x[0..n). */
static size_t count_observed(const double *x, size_t n)
{
	size_t c = 0;
	for (size_t j = 0; j < n; j++)
		c += !isnan(x[j]);
	return c;
}

/* project and reconstruct: rows in, CSV out, --batch rows per request. */
static int cmd_rows(struct cli *c, int argc, char **argv, bool project)
{
	struct isvd_client *cl = NULL;
	struct cli_reader r;
	double *rows = NULL;
	FILE *out = NULL;
	size_t n;
	int rc = EXIT_FAILURE, err;
	char **head = NULL;

	if (argc - optind != 1)
		return usage_error(c, "%s", "wants one FILE (- for standard input)");
	if (cli_reader_open(&r, argv[optind], (enum cli_format)c->format, c->dim) ||
	    cli_reader_all(&r, &rows, &n)) {
		fprintf(stderr, "isvd: %s: %s\n", c->cmd, r.err);
		goto out;
	}
	if ((rc = connect_client(c, &cl)))
		goto out;
	rc = EXIT_FAILURE;
	if (!(out = open_out(c)))
		goto out;
	bool gaps = false;   /* project: an 'observed' column when the input has gaps */
	for (size_t i = 0; i < n * r.dim && !gaps; i++)
		gaps = isnan(rows[i]);
	size_t step = c->batch ? c->batch : 4096;
	for (size_t i = 0; i < n; i += step) {
		size_t m = n - i < step ? n - i : step;
		if (project) {
			struct isvd_client_projection p;
			err = isvd_client_project(cl, rows + i * r.dim, m, r.dim, c->space, &p);
			if (err) {
				isvd_client_projection_fini(&p);
				rc = daemon_error(c, cl, err);
				goto out;
			}
			if (i == 0) {
				size_t k = p.coords.cols;
				head = calloc(k + 1, sizeof *head);   /* NULL-terminated */
				for (size_t j = 0; head && j < k; j++) {
					head[j] = malloc(32);
					if (head[j])
						snprintf(head[j], 32, "%s%zu", c->space == ISVD_CLIENT_U ? "u" : "score", j + 1);
				}
				/* a rank-0 model: only the residual column */
				if (k == 0) {
					fputs(gaps ? "residual,observed\n" : "residual\n", out);
				} else if (head) {
					for (size_t j = 0; j < k; j++)
						fprintf(out, "%s,", head[j] ? head[j] : "?");
					fputs(gaps ? "residual,observed\n" : "residual\n", out);
				}
			}
			if (!gaps) {
				cli_write_csv(out, NULL, 0, &p.coords, NULL, p.residual);
			} else {
				for (size_t q = 0; q < m; q++) {
					for (size_t j = 0; j < p.coords.cols; j++) {
						cli_put_double(out, p.coords.data[q * p.coords.cols + j]);
						fputc(',', out);
					}
					cli_put_double(out, p.residual[q]);
					fprintf(out, ",%zu\n", p.observed ? (size_t)p.observed[q]
					                                  : count_observed(rows + (i + q) * r.dim, r.dim));
				}
			}
			isvd_client_projection_fini(&p);
		} else {
			struct isvd_client_matrix m2;
			err = c->fill ? isvd_client_reconstruct_fill(cl, rows + i * r.dim, m, r.dim, &m2, NULL)
			              : isvd_client_reconstruct(cl, rows + i * r.dim, m, r.dim, &m2, NULL);
			if (err) {
				rc = daemon_error(c, cl, err);
				goto out;
			}
			cli_write_csv(out, i == 0 ? (const char *const *)r.header : NULL, i == 0 ? r.nheader : 0, &m2,
			              NULL, NULL);
			isvd_client_matrix_fini(&m2);
		}
	}
	rc = close_out(c, out);
	out = NULL;
out:
	if (out && out != stdout)
		fclose(out);
	if (head) {
		for (size_t j = 0; head[j]; j++)
			free(head[j]);
		free(head);
	}
	free(rows);
	cli_reader_close(&r);
	isvd_client_destroy(cl);
	return rc;
}

static int cmd_project(struct cli *c, int argc, char **argv)
{
	return cmd_rows(c, argc, argv, true);
}

static int cmd_reconstruct(struct cli *c, int argc, char **argv)
{
	return cmd_rows(c, argc, argv, false);
}

static int write_csv_file(const char *path, const double *v, size_t rows, size_t cols)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	for (size_t i = 0; i < rows; i++) {
		for (size_t j = 0; j < cols; j++) {
			if (j)
				fputc(',', f);
			cli_put_double(f, v[i * cols + j]);
		}
		fputc('\n', f);
	}
	int bad = ferror(f);
	return fclose(f) || bad ? -1 : 0;
}

static void put_labelled(FILE *f, const char *label, const double *v, size_t n)
{
	fputs(label, f);
	for (size_t i = 0; i < n; i++) {
		fputc(',', f);
		cli_put_double(f, v[i]);
	}
	fputc('\n', f);
}

static int cmd_factors(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl;
	struct isvd_client_factors fa;
	int rc, err;
	bool npy = c->format == 1;

	if (argc != optind)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if (npy && (!c->out || !strcmp(c->out, "-")))
		return usage_error(c, "%s", "--format npy needs -o PREFIX");
	if ((rc = connect_client(c, &cl)))
		return rc;
	err = isvd_client_factors(cl, &fa);
	if (err) {
		rc = daemon_error(c, cl, err);
		goto out;
	}
	rc = EXIT_FAILURE;
	if (!c->out || !strcmp(c->out, "-")) {
		put_labelled(stdout, "sigma", fa.sigma, fa.k);
		for (size_t i = 0; i < fa.vt.rows; i++) {
			char label[32];
			snprintf(label, sizeof label, "vt%zu", i + 1);
			put_labelled(stdout, label, fa.vt.data + i * fa.vt.cols, fa.vt.cols);
		}
		if (fa.mean)
			put_labelled(stdout, "mean", fa.mean, fa.dim);
		rc = fflush(stdout) ? EXIT_FAILURE : 0;
		goto out;
	}
	const char *ext = npy ? "npy" : "csv";
	const char *names[3] = { "sigma", "vt", "mean" };
	for (int i = 0; i < 3; i++) {
		char path[4096];
		int w;
		if (i == 2 && !fa.mean)
			break;
		w = snprintf(path, sizeof path, "%s_%s.%s", c->out, names[i], ext);
		if (w < 0 || (size_t)w >= sizeof path) {
			fprintf(stderr, "isvd: factors: -o prefix too long\n");
			goto out;
		}
		if (npy)
			w = i == 0 ? cli_write_npy(path, fa.sigma, 0, fa.k)
			    : i == 1 ? cli_write_npy(path, fa.vt.data, fa.vt.rows, fa.vt.cols)
			             : cli_write_npy(path, fa.mean, 0, fa.dim);
		else
			w = i == 0 ? write_csv_file(path, fa.sigma, fa.k, 1)
			    : i == 1 ? write_csv_file(path, fa.vt.data, fa.vt.rows, fa.vt.cols)
			             : write_csv_file(path, fa.mean, 1, fa.dim);
		if (w) {
			fprintf(stderr, "isvd: factors: %s: %s\n", path, strerror(errno));
			goto out;
		}
		printf("wrote %s\n", path);
	}
	printf("factors seq %" PRIu64 ": k %zu, dim %zu, mean %s\n", fa.seq, fa.k, fa.dim,
	       fa.mean ? "yes" : "no (model does not centre)");
	rc = 0;
out:
	isvd_client_factors_fini(&fa);
	isvd_client_destroy(cl);
	return rc;
}

struct sub_state {
	bool json;
};

static int on_snapshot(const struct isvd_client_snapshot *s, void *user)
{
	const struct sub_state *st = user;
	cli_print_snapshot(stdout, s, st->json);
	return 0;
}

static int cmd_subscribe(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl;
	struct sub_state st = { c->json };
	unsigned topics = 0;
	int rc, err;

	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "spectrum"))
			topics |= ISVD_CLIENT_TOPIC_SPECTRUM;
		else if (!strcmp(argv[i], "factors"))
			topics |= ISVD_CLIENT_TOPIC_FACTORS;
		else if (!strcmp(argv[i], "anomaly"))
			topics |= ISVD_CLIENT_TOPIC_ANOMALY;
		else if (!strcmp(argv[i], "drift"))
			topics |= ISVD_CLIENT_TOPIC_DRIFT;
		else
			return usage_error(c, "unknown topic '%s' (spectrum, factors, anomaly or drift)",
			                   argv[i]);
	}
	if (!topics)
		topics = ISVD_CLIENT_TOPIC_SPECTRUM | ISVD_CLIENT_TOPIC_FACTORS;
	/* --timeout is the total time to listen here, not a reply timeout */
	int total_ms = c->timeout_s > 0 ? c->o.timeout_ms : -1;
	c->o.timeout_ms = 0;
	if ((rc = connect_client(c, &cl)))
		return rc;
	err = isvd_client_subscribe(cl, topics);
	if (!err)
		err = isvd_client_snapshot_loop(cl, c->count, total_ms, on_snapshot, &st);
	if (err == ISVD_CLIENT_TIMEOUT && !c->count)
		err = 0;                         /* listened for the time asked */
	if (err == ISVD_CLIENT_TIMEOUT) {
		fprintf(stderr, "isvd: subscribe: fewer than %zu snapshots within %g s\n", c->count, c->timeout_s);
		rc = EXIT_FAILURE;
	} else if (err) {
		rc = daemon_error(c, cl, err);
	}
	isvd_client_destroy(cl);
	return rc;
}

static int cmd_checkpoint(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl;
	uint64_t seq = 0;
	int rc, err;

	if (argc != optind)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = connect_client(c, &cl)))
		return rc;
	err = isvd_client_checkpoint(cl, &seq);
	if (err)
		rc = daemon_error(c, cl, err);
	else
		printf("checkpoint seq %" PRIu64 "\n", seq);
	isvd_client_destroy(cl);
	return rc;
}

static int cmd_ping(struct cli *c, int argc, char **argv)
{
	struct isvd_client *cl;
	char version[64];
	uint64_t proto = 0;
	int rc, err;

	if (argc != optind)
		return usage_error(c, "unexpected argument '%s'", argv[optind]);
	if ((rc = connect_client(c, &cl)))
		return rc;
	double t0 = cli_now();
	err = isvd_client_ping(cl, version, sizeof version, &proto);
	double dt = cli_now() - t0;
	if (err)
		rc = daemon_error(c, cl, err);
	else
		printf("isvdd %s, protocol %" PRIu64 ", %s, %.2f ms\n", version, proto,
		       isvd_client_endpoint(cl, "query"), dt * 1000);
	isvd_client_destroy(cl);
	return rc;
}

/* ----------------------------------------------------------------- keygen */

static int cmd_keygen(const char *name)
{
	char *sec = malloc(strlen(name) + 5), *pub = malloc(strlen(name) + 5), z85[41];
	int rc = EXIT_FAILURE, err;

	if (!sec || !pub) {
		fprintf(stderr, "isvd: keygen: out of memory\n");
		goto out;
	}
	sprintf(sec, "%s.key", name);
	sprintf(pub, "%s.pub", name);
	err = isvd_client_keygen(sec, pub, z85);
	if (err == ISVD_CLIENT_IO)
		fprintf(stderr, "isvd: keygen: cannot write %s / %s: %s\n", sec, pub, strerror(errno));
	else if (err)
		fprintf(stderr, "isvd: keygen: this libzmq has no CURVE support (it needs libsodium)\n");
	else {
		printf("%s\n", z85);
		fprintf(stderr, "isvd: keygen: wrote %s (secret, mode 0600) and %s (public)\n", sec, pub);
		rc = 0;
	}
out:
	free(sec);
	free(pub);
	return rc;
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} table[] = {
		{ "push", cmd_push }, { "info", cmd_info }, { "project", cmd_project },
		{ "reconstruct", cmd_reconstruct }, { "factors", cmd_factors }, { "subscribe", cmd_subscribe },
		{ "checkpoint", cmd_checkpoint }, { "ping", cmd_ping },
	};
	struct cli c;

	if (argc < 2) {
		main_help(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && !strcmp(argv[1], "help") && cmd_help(argv[2], stdout) == 0)
			return 0;
		main_help(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "keygen")) {
		if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			cmd_help("keygen", stdout);
			return 0;
		}
		if (argc != 3 || !argv[2][0] || argv[2][0] == '-') {
			fprintf(stderr, "isvd: keygen: wants one NAME (writes NAME.key and NAME.pub)\n"
			        "(isvd keygen --help for help)\n");
			return EXIT_USAGE;
		}
		return cmd_keygen(argv[2]);
	}
	if (!strcmp(argv[1], "merge"))
		return cli_merge(argc - 1, argv + 1);
	if (!strcmp(argv[1], "inspect"))
		return cli_inspect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("isvd %s (libisvd %s, protocol 1)\n", ISVD_VERSION, ISVD_CLIENT_VERSION);
		return 0;
	}
	memset(&c, 0, sizeof c);
	isvd_client_options_init(&c.o);
	c.timeout_s = -1;
	c.linger_ms = 5;              /* push --follow: the producer default of issue 21 */
	c.cmd = argv[1];
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (strcmp(argv[1], table[i].name))
			continue;
		int rc = parse(&c, argc - 1, argv + 1);
		if (rc >= 0)
			return rc;
		return table[i].fn(&c, argc - 1, argv + 1);
	}
	fprintf(stderr, "isvd: unknown command '%s' (isvd --help lists them)\n", argv[1]);
	return EXIT_USAGE;
}
