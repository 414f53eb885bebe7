/*
 * log.h — isvdd's log: text lines or one JSON object per line, to standard
 * error or to a file that SIGHUP reopens (for logrotate).
 *
 * When standard error is systemd's journal (JOURNAL_STREAM names its
 * device and inode, as systemd sets it for a service's stderr), each line
 * starts with its syslog priority, "<6>info: ready", instead of the time
 * and pid the journal records itself: `journalctl -p warning` then
 * filters isvdd's lines by level.
 *
 * A struct log_sink is owned by the daemon and passed explicitly; nothing
 * here is global.  Lines are written whole under a (recursive) mutex, so
 * the event loop and the query thread (query.c) may both log.
 */
#ifndef ISVDD_LOG_H
#define ISVDD_LOG_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

struct log_sink {
	pthread_mutex_t mu;  /* guards everything below and the writes */
	FILE *f;             /* stderr, or the opened file */
	char *path;          /* NULL when logging to stderr */
	int level;           /* least severe level written (enum cfg_log_level) */
	int json;            /* non-zero: JSON lines */
	int journal;         /* non-zero: stderr is the journal; "<prio>" prefixes */
	/* rate limit of log_refused() */
	uint64_t warn_every_ms;
	uint64_t last_warn_ms;   /* monotonic ms of the last warning written */
	uint64_t suppressed;     /* warnings not written since */
	uint64_t refused_total;  /* every log_refused() call, written or not */
};

/* Opens the log: path NULL or "" means stderr.  Returns 0, or -1 after
 * printing why to stderr (strerror(errno)). */
int log_open(struct log_sink *log, const char *path, int level, int json,
             uint64_t warn_every_ms);
/* Reopens the file (after SIGHUP); keeps the old stream if that fails and
 * logs why.  A no-op for stderr. */
void log_reopen(struct log_sink *log);
/* Closes the file and frees the path.  close of a zeroed log is a no-op. */
void log_close(struct log_sink *log);

/* Writes one record at level (enum cfg_log_level) when level is enabled. */
void log_msg(struct log_sink *log, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A warning about a refused request, rate-limited to one per warn_every_ms;
 * the next one written says how many were suppressed. */
void log_refused(struct log_sink *log, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* refused_total, read under the lock (another thread may be counting). */
uint64_t log_refused_count(struct log_sink *log);

#endif /* ISVDD_LOG_H */
