/*
 * log.c — text or JSON log lines and the refused-request rate limit (its
 * clocks are loop.c's).
 *
 * A text line:  2026-11-23T11:15:39.123Z isvdd[4242] info: message
 * A JSON line:  {"t":"2026-11-23T11:15:39.123Z","pid":4242,"level":"info","msg":"message"}
 * To the journal (log.h):  <6>info: message   and   <6>{"t":...}
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"

/* Whether fd is the stream JOURNAL_STREAM ("DEVICE:INODE", decimal) names:
 * systemd connected it to the journal (systemd.exec(5)). */
static int is_journal(int fd)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &end) != 2 || fstat(fd, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_open(struct log_sink *log, const char *path, int level, int json,
             uint64_t warn_every_ms)
{
	pthread_mutexattr_t a;

	memset(log, 0, sizeof *log);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&log->mu, &a);
	pthread_mutexattr_destroy(&a);
	log->f = stderr;
	log->level = level;
	log->json = json;
	log->warn_every_ms = warn_every_ms;
	if (!path || !*path) {
		log->journal = is_journal(fileno(stderr));
		return 0;
	}
	log->path = strdup(path);
	if (!log->path) {
		fprintf(stderr, "isvdd: out of memory: %s\n", strerror(errno));
		return -1;
	}
	log->f = fopen(path, "a");
	if (!log->f) {
		fprintf(stderr, "isvdd: cannot open log file %s: %s\n", path, strerror(errno));
		log->f = stderr;
		free(log->path);
		log->path = NULL;
		return -1;
	}
	setvbuf(log->f, NULL, _IOLBF, 0);
	return 0;
}

void log_reopen(struct log_sink *log)
{
	FILE *f;

	if (!log->path)
		return;
	f = fopen(log->path, "a");
	if (!f) {
		log_msg(log, CFG_LOG_ERROR, "cannot reopen log file %s: %s; keeping the old one",
		        log->path, strerror(errno));
		return;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log->mu);
	fclose(log->f);
	log->f = f;
	pthread_mutex_unlock(&log->mu);
	log_msg(log, CFG_LOG_INFO, "log reopened");
}

void log_close(struct log_sink *log)
{
	if (log->f && log->f != stderr)
		fclose(log->f);
	free(log->path);
	if (log->f)   /* opened: the mutex was initialised */
		pthread_mutex_destroy(&log->mu);
	memset(log, 0, sizeof *log);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void vlog(struct log_sink *log, int level, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void vlog(struct log_sink *log, int level, const char *fmt, va_list ap)
{
	char msg[1024], stamp[96];
	struct timespec ts;
	struct tm tm;
	FILE *f;

	if (level < log->level)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	pthread_mutex_lock(&log->mu);
	f = log->f ? log->f : stderr;
	if (log->journal) {   /* sd-daemon(3)'s <prio>; the journal keeps time and pid */
		static const int prio[] = { 7, 6, 4, 3 };   /* debug info warn error */
		fprintf(f, "<%d>", prio[level >= CFG_LOG_DEBUG && level <= CFG_LOG_ERROR ? level : 3]);
	}
	if (log->json) {
		fprintf(f, "{\"t\":\"%s\",\"pid\":%ld,\"level\":\"%s\",\"msg\":", stamp, (long)getpid(),
		        cfg_log_level_name(level));
		json_string(f, msg);
		fputs("}\n", f);
	} else if (log->journal) {
		fprintf(f, "%s: %s\n", cfg_log_level_name(level), msg);
	} else {
		fprintf(f, "%s isvdd[%ld] %s: %s\n", stamp, (long)getpid(), cfg_log_level_name(level), msg);
	}
	fflush(f);
	pthread_mutex_unlock(&log->mu);
}

void log_msg(struct log_sink *log, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(log, level, fmt, ap);
	va_end(ap);
}

void log_refused(struct log_sink *log, const char *fmt, ...)
{
	const uint64_t now = loop_now_ms();
	char msg[768];
	va_list ap;

	pthread_mutex_lock(&log->mu);
	log->refused_total++;
	if (log->last_warn_ms && now - log->last_warn_ms < log->warn_every_ms) {
		log->suppressed++;
		pthread_mutex_unlock(&log->mu);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (log->suppressed)
		log_msg(log, CFG_LOG_WARN, "%s (and %llu more refused requests not logged)", msg,
		        (unsigned long long)log->suppressed);
	else
		log_msg(log, CFG_LOG_WARN, "%s", msg);
	log->last_warn_ms = now ? now : 1;
	log->suppressed = 0;
	pthread_mutex_unlock(&log->mu);
}

uint64_t log_refused_count(struct log_sink *log)
{
	uint64_t n;

	pthread_mutex_lock(&log->mu);
	n = log->refused_total;
	pthread_mutex_unlock(&log->mu);
	return n;
}
