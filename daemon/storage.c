/*
 * storage.c — storage.dir: lock, recovery, the log on the ingest path,
 * checkpoints, pruning and the failed state (interface in storage.h).
 *
 * DESIGN
 *   Files in storage.dir:
 *     LOCK                         flock()ed while a daemon uses the directory
 *     wal-<first lsn>.log          log segments (wal.h)
 *     checkpoint-<seq>-<lsn>.isvdc checkpoints (ckpt.h)
 *     checkpoint.tmp               a checkpoint being written (removed at start)
 *     *.corrupt                    what --repair set aside
 *
 *   Recovery (sto_open): take the newest checkpoint that validates and
 *   loads, falling back to older ones (and to replaying from record 1 when
 *   the log still starts there); then replay every record after the
 *   checkpoint's lsn, in lsn order, with no gap.  A bad record at the end of
 *   the last segment is a torn append: the segment is cut there (logged with
 *   the offset).  A bad record anywhere else is corruption: refuse to start
 *   (STO_EXIT_CORRUPT) naming the file and offset, unless --repair, which
 *   keeps a copy (*.corrupt) and cuts the log at that record.  Recovery only
 *   ever cuts torn tails and removes torn segment headers, so being killed
 *   during recovery and starting again is safe.
 *
 *   Retention: after a durable checkpoint C (lsn L) a new segment starts at
 *   L + 1.  C and the checkpoint before it, P, are kept, and so is every
 *   segment holding a record after P's lsn, so that a corrupt C can fall back
 *   to P plus the log.  Older checkpoints and segments are deleted.  The disk
 *   used is therefore bounded by two checkpoints plus the log written between
 *   two checkpoints.  After a storage failure, the checkpoint that heals it
 *   removes every older file: the log may hold a record that was never
 *   applied (its fsync failed), so only the new checkpoint is trusted.
 *
 * INVARIANTS
 *   next_lsn is one more than the lsn of the last record logged (or
 *   replayed); ckpt_lsn ≤ next_lsn − 1.  When not failed, w.fd is an open
 *   segment whose valid length is w.off.
 */

#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop.h"
#include "metrics.h"

#define STO_RETRY_MS     1000   /* failed state: checkpoint retry interval */
#define STO_PROGRESS_MS  1000   /* recovery progress log interval */

struct sto {
	const struct cfg *cfg;
	struct log_sink *log;
	int dirfd, lockfd;
	struct wal_writer w;
	uint64_t next_lsn;

	uint64_t ckpt_seq, ckpt_lsn;      /* the last durable checkpoint (0, 0: none) */
	uint64_t ckpt_ms;                 /* when it was written (or storage opened) */
	bool have_ckpt;

	bool failed;
	char why[600];
	uint64_t retry_ms;                /* failed: next checkpoint attempt */

	uint64_t last_sync_ms;            /* fsync: interval */

	struct met *met;                  /* the hooks' (may be NULL) */
	uint64_t log_bytes, log_segments; /* the log on disk, as metrics.c shows it */
};

/* -------------------------------------------------------------- listing */

struct names {
	char (*v)[64];
	size_t n, cap;
};

static int names_add(struct names *l, const char *name)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char (*v)[64] = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	snprintf(l->v[l->n++], 64, "%s", name);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);   /* fixed-width numbers: lexical order is numeric order */
}

/* Lists the segments and checkpoints of dir, each sorted ascending. */
static int list_dir(struct sto *s, struct names *segs, struct names *ckpts)
{
	DIR *d;
	struct dirent *de;
	int fd = dup(s->dirfd);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		log_msg(s->log, CFG_LOG_ERROR, "cannot list %s: %s", s->cfg->storage.dir, strerror(errno));
		return -1;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		uint64_t a, b;
		if (wal_parse_name(de->d_name, &a)) {
			if (names_add(segs, de->d_name))
				goto nomem;
		} else if (ckpt_parse_name(de->d_name, &a, &b)) {
			if (names_add(ckpts, de->d_name))
				goto nomem;
		}
	}
	closedir(d);
	if (segs->n)
		qsort(segs->v, segs->n, sizeof *segs->v, cmp_names);
	if (ckpts->n)
		qsort(ckpts->v, ckpts->n, sizeof *ckpts->v, cmp_names);
	return 0;
nomem:
	closedir(d);
	log_msg(s->log, CFG_LOG_ERROR, "cannot list %s: %s", s->cfg->storage.dir, strerror(ENOMEM));
	return -1;
}

/* Measures the log on disk (segments and their bytes) for the metrics;
 * after anything that adds or removes a segment.  Appends add their bytes
 * as they go (sto_log_block()). */
static void measure_log(struct sto *s)
{
	struct names segs = { 0 }, ckpts = { 0 };
	struct stat st;

	if (list_dir(s, &segs, &ckpts))
		return;
	s->log_bytes = 0;
	s->log_segments = segs.n;
	for (size_t i = 0; i < segs.n; i++)
		if (fstatat(s->dirfd, segs.v[i], &st, 0) == 0)
			s->log_bytes += (uint64_t)st.st_size;
	free(segs.v);
	free(ckpts.v);
	met_log_size(s->met, s->log_bytes, s->log_segments);
}

/* wal_sync(), timed for the fsync histogram. */
static int sync_log(struct sto *s, struct wal_err *e)
{
	const uint64_t t0 = loop_now_ns();
	const int rc = wal_sync(&s->w, e);

	met_fsync(s->met, loop_now_ns() - t0);
	return rc;
}

static void remove_file(struct sto *s, const char *name, const char *reason)
{
	if (unlinkat(s->dirfd, name, 0) && errno != ENOENT)
		log_msg(s->log, CFG_LOG_WARN, "cannot remove %s/%s: %s", s->cfg->storage.dir, name,
		        strerror(errno));
	else
		log_msg(s->log, CFG_LOG_DEBUG, "removed %s/%s (%s)", s->cfg->storage.dir, name, reason);
}

/* Copies name to name.corrupt (what --repair drops is kept for a person). */
static int keep_copy(struct sto *s, const char *name)
{
	char dst[96];
	uint8_t buf[1 << 16];
	ssize_t n;
	int in, out, rc = -1;

	snprintf(dst, sizeof dst, "%s.corrupt", name);
	in = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
	out = openat(s->dirfd, dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in < 0 || out < 0)
		goto done;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			goto done;
	if (n == 0 && fsync(out) == 0)
		rc = 0;
done:
	if (rc)
		log_msg(s->log, CFG_LOG_ERROR, "cannot copy %s to %s: %s", name, dst, strerror(errno));
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

static int cut_segment(struct sto *s, const char *name, uint64_t off)
{
	int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)off) || fdatasync(fd)) {
		log_msg(s->log, CFG_LOG_ERROR, "cannot cut %s/%s at offset %" PRIu64 ": %s",
		        s->cfg->storage.dir, name, off, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* ------------------------------------------------------------- recovery */

/* Loads the newest usable checkpoint.  0 (maybe none loaded), or an exit
 * code. */
static int load_checkpoint(struct sto *s, const struct names *ckpts, const struct sto_hooks *h)
{
	char why[512];

	for (size_t i = ckpts->n; i-- > 0;) {
		const char *name = ckpts->v[i];
		struct ckpt c;
		struct wal_err e;
		uint64_t seq, lsn;
		int rc;

		ckpt_parse_name(name, &seq, &lsn);
		if (ckpt_read(s->dirfd, name, &c, &e)) {
			log_msg(s->log, CFG_LOG_WARN, "%s%s", e.msg,
			        i ? "; falling back to the previous checkpoint" : "");
			continue;
		}
		if (c.seq != seq || c.lsn != lsn) {
			log_msg(s->log, CFG_LOG_WARN, "checkpoint %s is not valid: its contents say seq %" PRIu64
			        ", lsn %" PRIu64 "%s", name, c.seq, c.lsn,
			        i ? "; falling back to the previous checkpoint" : "");
			ckpt_fini(&c);
			continue;
		}
		why[0] = '\0';
		rc = h->load(h->ctx, &c, why, sizeof why);
		ckpt_fini(&c);
		if (rc == -2) {
			log_msg(s->log, CFG_LOG_ERROR, "%s/%s: %s", s->cfg->storage.dir, name, why);
			return 1;
		}
		if (rc) {
			log_msg(s->log, CFG_LOG_WARN, "checkpoint %s cannot be loaded: %s%s", name, why,
			        i ? "; falling back to the previous checkpoint" : "");
			continue;
		}
		s->have_ckpt = true;
		s->ckpt_seq = seq;
		s->ckpt_lsn = lsn;
		log_msg(s->log, CFG_LOG_INFO, "loaded checkpoint %s/%s: %" PRIu64 " rows, log record %" PRIu64,
		        s->cfg->storage.dir, name, seq, lsn);
		return 0;
	}
	return 0;
}

/* --repair: keep a copy of segment i and every later one, cut segment i at
 * off, remove the later ones.  0 or an exit code. */
static int repair_at(struct sto *s, const struct names *segs, size_t i, uint64_t off,
                     const char *msg)
{
	log_msg(s->log, CFG_LOG_ERROR, "--repair: %s; dropping it and everything after it "
	        "(copies kept as *.corrupt in %s)", msg, s->cfg->storage.dir);
	for (size_t j = i; j < segs->n; j++)
		if (keep_copy(s, segs->v[j]))
			return STO_EXIT_UNUSABLE;
	if (cut_segment(s, segs->v[i], off))
		return STO_EXIT_UNUSABLE;
	for (size_t j = i + 1; j < segs->n; j++)
		remove_file(s, segs->v[j], "after a repaired record");
	return 0;
}

/* Where a replay stands, across segments. */
struct replay {
	const struct sto_hooks *h;
	bool repair;
	uint64_t expect;             /* the next record's lsn */
	uint64_t records, bytes_total, bytes_done;
	uint64_t start_ms, last_progress;
	struct wal_push *pushes;     /* wal_next()'s scratch, cap entries */
	size_t cap;
};

#define REPLAY_CUT (-1)   /* replay_records(): --repair cut the log at *off */

/* Replays the records of segs->v[i] (mapped as seg) from *off on, moving
 * *off past each; last: it is the last segment (a torn append there is cut
 * off, not corruption).  0 at the segment's end, REPLAY_CUT when --repair
 * ended the log at *off (seg is then closed), or an exit code. */
static int replay_records(struct sto *s, struct replay *r, struct names *segs, size_t i,
                          struct wal_segment *seg, uint64_t *off, bool last)
{
	for (;;) {
		struct wal_block b;
		struct wal_err e;
		uint64_t next = 0;
		char why[512];
		int rc = wal_next(seg, *off, &b, &r->pushes, &r->cap, &next, &e);

		if (rc < 0) {
			log_msg(s->log, CFG_LOG_ERROR, "replaying %s: out of memory", seg->name);
			return 1;
		}
		if (rc == WAL_END)
			return 0;
		if (rc == WAL_TORN && last) {
			log_msg(s->log, CFG_LOG_WARN, "%s/%s: a torn append; cutting the log at offset %"
			        PRIu64 " (%zu bytes dropped, none of them acknowledged)",
			        s->cfg->storage.dir, e.msg, *off, seg->size - (size_t)*off);
			return cut_segment(s, seg->name, *off) ? STO_EXIT_UNUSABLE : 0;
		}
		if (rc == WAL_TORN || rc == WAL_CORRUPT) {
			char msg[600];
			snprintf(msg, sizeof msg, "%s/%s", s->cfg->storage.dir, e.msg);
			if (r->repair) {
				wal_segment_close(seg);
				rc = repair_at(s, segs, i, *off, msg);
				if (rc)
					return rc;
				segs->n = i + 1;
				return REPLAY_CUT;
			}
			log_msg(s->log, CFG_LOG_ERROR, "%s: corruption in the middle of the log; not starting "
			        "(start with --repair to drop this record and everything after it)", msg);
			return STO_EXIT_CORRUPT;
		}
		if (b.lsn < r->expect) {          /* covered by the checkpoint */
			*off = next;
			continue;
		}
		if (b.lsn != r->expect) {
			log_msg(s->log, CFG_LOG_ERROR, "%s/%s: record at offset %" PRIu64 " is number %"
			        PRIu64 ", expected %" PRIu64 "; not starting", s->cfg->storage.dir, seg->name,
			        *off, b.lsn, r->expect);
			return STO_EXIT_CORRUPT;
		}
		why[0] = '\0';
		if (r->h->apply(r->h->ctx, &b, why, sizeof why)) {
			log_msg(s->log, CFG_LOG_ERROR, "%s/%s: record %" PRIu64 " at offset %" PRIu64
			        " cannot be replayed: %s; not starting", s->cfg->storage.dir, seg->name,
			        b.lsn, *off, why);
			return STO_EXIT_CORRUPT;
		}
		r->expect++;
		r->records++;
		r->bytes_done += next - *off;
		*off = next;
		if (loop_now_ms() - r->last_progress >= STO_PROGRESS_MS) {
			r->last_progress = loop_now_ms();
			log_msg(s->log, CFG_LOG_INFO, "recovery: %" PRIu64 " log records replayed, %.0f%% of %"
			        PRIu64 " bytes", r->records, 100.0 * (double)r->bytes_done /
			        (double)r->bytes_total, r->bytes_total);
		}
	}
}

/* Opens segs->v[i] into *seg.  0; 1 when the log ends before it (a torn
 * header: removed, or --repair dropped it and what follows); or an exit
 * code. */
static int open_segment(struct sto *s, struct replay *r, struct names *segs, size_t i,
                        struct wal_segment *seg)
{
	struct wal_err e;
	int ret;

	if (wal_segment_open(s->dirfd, segs->v[i], seg, &e) == 0) {
		if (seg->first_lsn <= r->expect)
			return 0;
		log_msg(s->log, CFG_LOG_ERROR, "%s/%s starts at log record %" PRIu64 " but record %" PRIu64
		        " is missing; not starting", s->cfg->storage.dir, seg->name, seg->first_lsn, r->expect);
		wal_segment_close(seg);
		return STO_EXIT_CORRUPT;
	}
	if (e.errnum == 0 && i + 1 == segs->n) {   /* a torn segment creation */
		log_msg(s->log, CFG_LOG_WARN, "%s/%s; removing it (a segment creation cut short)",
		        s->cfg->storage.dir, e.msg);
		remove_file(s, segs->v[i], "torn header");
		segs->n--;
		return 1;
	}
	if (e.errnum == 0 && r->repair) {
		if ((ret = repair_at(s, segs, i, 0, e.msg)))
			return ret;
		remove_file(s, segs->v[i], "damaged header");
		segs->n = i;
		return 1;
	}
	log_msg(s->log, CFG_LOG_ERROR, "%s/%s%s", s->cfg->storage.dir, e.msg,
	        e.errnum ? "" : "; not starting (start with --repair to drop it and the log after it)");
	return e.errnum ? STO_EXIT_UNUSABLE : STO_EXIT_CORRUPT;
}

/* Replays the log after the loaded checkpoint.  Sets *tail_seg / *tail_off
 * to the segment to append to (tail_seg = SIZE_MAX: create a new one).
 * 0 or an exit code. */
static int replay(struct sto *s, struct names *segs, const struct sto_hooks *h, bool repair,
                  size_t *tail_seg, uint64_t *tail_off)
{
	struct replay r = { .h = h, .repair = repair, .expect = s->ckpt_lsn + 1 };
	size_t first = 0;
	int ret = 0;

	r.start_ms = r.last_progress = loop_now_ms();
	*tail_seg = SIZE_MAX;
	*tail_off = 0;
	/* skip segments that end at or before the checkpoint */
	while (first + 1 < segs->n) {
		uint64_t next_first;
		wal_parse_name(segs->v[first + 1], &next_first);
		if (next_first > r.expect)
			break;
		first++;
	}
	for (size_t i = first; i < segs->n; i++) {
		struct stat st;
		if (fstatat(s->dirfd, segs->v[i], &st, 0) == 0)
			r.bytes_total += (uint64_t)st.st_size;
	}
	for (size_t i = first; i < segs->n; i++) {
		const bool last = i + 1 == segs->n;
		struct wal_segment seg;
		uint64_t off = WAL_SEGMENT_HEADER;

		if ((ret = open_segment(s, &r, segs, i, &seg)) != 0) {
			if (ret == 1)
				ret = 0;   /* the log ends before this segment */
			break;
		}
		ret = replay_records(s, &r, segs, i, &seg, &off, last);
		wal_segment_close(&seg);
		if (ret == REPLAY_CUT || (ret == 0 && last)) {
			*tail_seg = i;
			*tail_off = off;
			ret = 0;
			break;
		}
		if (ret)
			break;
	}
	free(r.pushes);
	s->next_lsn = r.expect;
	if (!ret)
		log_msg(s->log, r.records ? CFG_LOG_INFO : CFG_LOG_DEBUG,
		        "recovery: replayed %" PRIu64 " log records in %.3f s", r.records,
		        (double)(loop_now_ms() - r.start_ms) / 1000.0);
	return ret;
}

static int lock_dir(struct sto *s)
{
	char pid[32];
	int n;

	s->lockfd = openat(s->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lockfd < 0) {
		log_msg(s->log, CFG_LOG_ERROR, "cannot open %s/LOCK: %s", s->cfg->storage.dir, strerror(errno));
		return -1;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB)) {
		char other[32] = "";
		ssize_t r = pread(s->lockfd, other, sizeof other - 1, 0);
		other[r > 0 ? r : 0] = '\0';
		other[strcspn(other, "\n")] = '\0';
		log_msg(s->log, CFG_LOG_ERROR, "%s is in use by another isvdd (pid %s): %s",
		        s->cfg->storage.dir, other[0] ? other : "unknown", strerror(errno));
		return -1;
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(s->lockfd, 0) || pwrite(s->lockfd, pid, (size_t)n, 0) != n)
		log_msg(s->log, CFG_LOG_WARN, "cannot write the pid into %s/LOCK: %s", s->cfg->storage.dir,
		        strerror(errno));
	return 0;
}

int sto_open(const struct cfg *cfg, struct log_sink *log, bool repair, const struct sto_hooks *h,
             struct sto **out)
{
	struct sto *s = calloc(1, sizeof *s);
	struct names segs = { 0 }, ckpts = { 0 };
	size_t tail_seg;
	uint64_t tail_off;
	struct wal_err e;
	int ret = STO_EXIT_UNUSABLE;

	if (!s) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate storage: %s", strerror(errno));
		return 1;
	}
	s->cfg = cfg;
	s->log = log;
	s->met = h->met;
	s->lockfd = -1;
	s->dirfd = -1;
	wal_writer_init(&s->w, -1);
	if (mkdir(cfg->storage.dir, 0750) && errno != EEXIST) {
		log_msg(log, CFG_LOG_ERROR, "cannot create storage.dir %s: %s", cfg->storage.dir, strerror(errno));
		goto fail;
	}
	s->dirfd = open(cfg->storage.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		log_msg(log, CFG_LOG_ERROR, "cannot open storage.dir %s: %s", cfg->storage.dir, strerror(errno));
		goto fail;
	}
	s->w.dirfd = s->dirfd;
	if (lock_dir(s))
		goto fail;
	if (unlinkat(s->dirfd, CKPT_TMP_NAME, 0) == 0)
		log_msg(log, CFG_LOG_INFO, "removed %s/%s left by an interrupted checkpoint", cfg->storage.dir,
		        CKPT_TMP_NAME);
	if (list_dir(s, &segs, &ckpts))
		goto fail;
	if ((ret = load_checkpoint(s, &ckpts, h)))
		goto fail;
	if (!s->have_ckpt && ckpts.n) {
		uint64_t first = 0;
		if (!segs.n || !wal_parse_name(segs.v[0], &first) || first != 1) {
			log_msg(log, CFG_LOG_ERROR, "no checkpoint in %s is usable and the log does not reach back to "
			        "its first record; not starting (move the directory away to start afresh)",
			        cfg->storage.dir);
			ret = STO_EXIT_CORRUPT;
			goto fail;
		}
		log_msg(log, CFG_LOG_WARN, "no checkpoint in %s is usable; replaying the whole log",
		        cfg->storage.dir);
	}
	if ((ret = replay(s, &segs, h, repair, &tail_seg, &tail_off)))
		goto fail;
	ret = STO_EXIT_UNUSABLE;
	if (tail_seg != SIZE_MAX) {
		uint64_t first;
		wal_parse_name(segs.v[tail_seg], &first);
		if (wal_reopen_segment(&s->w, segs.v[tail_seg], first, tail_off, &e)) {
			log_msg(log, CFG_LOG_ERROR, "%s/%s", cfg->storage.dir, e.msg);
			goto fail;
		}
	} else if (wal_create_segment(&s->w, s->next_lsn, &e)) {
		log_msg(log, CFG_LOG_ERROR, "%s/%s", cfg->storage.dir, e.msg);
		goto fail;
	}
	s->ckpt_ms = s->last_sync_ms = loop_now_ms();
	free(segs.v);
	free(ckpts.v);
	measure_log(s);
	if (s->have_ckpt)
		met_checkpoint(s->met, s->ckpt_seq, s->ckpt_ms);
	*out = s;
	return 0;
fail:
	free(segs.v);
	free(ckpts.v);
	sto_close(s);
	return ret;
}

/* ----------------------------------------------------------- live path */

static void set_failed(struct sto *s, const char *what, const char *msg)
{
	if (!s->failed)
		log_msg(s->log, CFG_LOG_ERROR, "storage failed: %s: %s; refusing pushes until a checkpoint "
		        "succeeds (retried every %d ms); queries are still answered", what, msg, STO_RETRY_MS);
	else
		log_msg(s->log, CFG_LOG_DEBUG, "storage still failed: %s: %s", what, msg);
	s->failed = true;
	snprintf(s->why, sizeof s->why, "%s: %s", what, msg);
	s->retry_ms = loop_now_ms() + STO_RETRY_MS;
	met_storage_failed(s->met, s->why);
}

bool sto_failed(const struct sto *s, const char **why)
{
	if (why)
		*why = s->why;
	return s->failed;
}

int sto_log_block(struct sto *s, struct wal_block *b)
{
	struct wal_err e;
	uint64_t before;

	if (s->failed)
		return -1;
	if (s->w.off >= s->cfg->storage.segment_bytes) {   /* roll */
		struct wal_err e2;
		if (s->cfg->storage.fsync != CFG_FSYNC_NONE && sync_log(s, &e2)) {
			set_failed(s, "log", e2.msg);
			wal_close(&s->w);
			return -1;
		}
		if (wal_create_segment(&s->w, s->next_lsn, &e2)) {
			set_failed(s, "log", e2.msg);
			return -1;
		}
		measure_log(s);
	}
	before = s->w.off;   /* after a roll: the new segment's, which the rollback cuts */
	b->lsn = s->next_lsn;
	if (wal_append(&s->w, b, &e)) {
		set_failed(s, "log", e.msg);
		wal_close(&s->w);
		return -1;
	}
	s->log_bytes += s->w.off - before;
	met_log_size(s->met, s->log_bytes, s->log_segments);
	if (s->cfg->storage.fsync == CFG_FSYNC_ALWAYS && sync_log(s, &e)) {
		/* of unknown durability and never acknowledged: cut it off, so that
		 * a restart does not replay a push that was refused */
		if (ftruncate(s->w.fd, (off_t)before))
			log_msg(s->log, CFG_LOG_ERROR, "cannot cut the unsynced record off %s: %s", s->w.name,
			        strerror(errno));
		else
			s->log_bytes -= s->w.off - before;
		set_failed(s, "log", e.msg);
		wal_close(&s->w);
		return -1;
	}
	s->next_lsn++;
	return 0;
}

long sto_timeout_ms(const struct sto *s, uint64_t now_ms)
{
	const uint64_t iv = s->cfg->storage.fsync_interval_ms;
	long t = -1;

	if (s->cfg->storage.fsync == CFG_FSYNC_INTERVAL && !s->failed && s->w.fd >= 0 && s->w.synced != s->w.off)
		t = s->last_sync_ms + iv > now_ms ? (long)(s->last_sync_ms + iv - now_ms) : 0;
	if (s->failed) {
		long r = s->retry_ms > now_ms ? (long)(s->retry_ms - now_ms) : 0;
		t = t < 0 || r < t ? r : t;
	}
	return t;
}

void sto_tick(struct sto *s, uint64_t now_ms)
{
	struct wal_err e;

	if (s->cfg->storage.fsync != CFG_FSYNC_INTERVAL || s->failed || s->w.fd < 0 ||
	    s->w.synced == s->w.off || now_ms < s->last_sync_ms + s->cfg->storage.fsync_interval_ms)
		return;
	s->last_sync_ms = now_ms;
	if (sync_log(s, &e)) {
		set_failed(s, "log", e.msg);
		wal_close(&s->w);
	}
}

/* ----------------------------------------------------------- checkpoints */

bool sto_checkpoint_due(const struct sto *s, uint64_t seq, uint64_t now_ms)
{
	const struct cfg *c = s->cfg;

	if (s->failed)
		return now_ms >= s->retry_ms;
	if (seq == s->ckpt_seq)
		return false;
	if (c->storage.checkpoint_every_rows && seq - s->ckpt_seq >= c->storage.checkpoint_every_rows)
		return true;
	return c->storage.checkpoint_every_s && now_ms - s->ckpt_ms >= c->storage.checkpoint_every_s * 1000;
}

uint64_t sto_last_checkpoint_seq(const struct sto *s)
{
	return s->ckpt_seq;
}

/* Deletes what checkpoint (seq, lsn) makes unnecessary; everything older
 * than it when healing a failure, else what predates the previous one. */
static void prune(struct sto *s, uint64_t keep_ckpt_lsn, bool healing, const char *current)
{
	struct names segs = { 0 }, ckpts = { 0 };
	uint64_t prev_lsn = 0;   /* lsn of the previous checkpoint kept */
	bool have_prev = false;

	if (list_dir(s, &segs, &ckpts))
		return;
	for (size_t i = ckpts.n; i-- > 0;) {
		uint64_t seq, lsn;
		ckpt_parse_name(ckpts.v[i], &seq, &lsn);
		if (!strcmp(ckpts.v[i], current))
			continue;
		if (!healing && !have_prev && lsn <= keep_ckpt_lsn) {
			have_prev = true;
			prev_lsn = lsn;
			continue;
		}
		remove_file(s, ckpts.v[i], "superseded checkpoint");
	}
	/* segment i holds records [first_i, first_{i+1} - 1] */
	for (size_t i = 0; i + 1 < segs.n; i++) {
		uint64_t next_first;
		wal_parse_name(segs.v[i + 1], &next_first);
		if (!strcmp(segs.v[i], s->w.name))
			continue;
		if (healing || (have_prev && next_first - 1 <= prev_lsn))
			remove_file(s, segs.v[i], "covered by checkpoints");
	}
	free(segs.v);
	free(ckpts.v);
	if (fsync(s->dirfd))
		log_msg(s->log, CFG_LOG_WARN, "cannot fsync %s after pruning: %s", s->cfg->storage.dir,
		        strerror(errno));
}

int sto_checkpoint(struct sto *s, uint64_t seq, const uint8_t *model, size_t model_len,
                   const uint8_t *clients, size_t clients_len)
{
	const uint64_t t0 = loop_now_ms();
	const uint64_t lsn = s->next_lsn - 1;
	const bool healing = s->failed;
	struct ckpt c = { 0 };
	struct wal_err e;
	char name[64];

	if (!healing && s->have_ckpt && seq == s->ckpt_seq && lsn == s->ckpt_lsn)
		return 0;
	c.seq = seq;
	c.lsn = lsn;
	c.model = model;
	c.model_len = model_len;
	c.clients = clients;
	c.clients_len = clients_len;
	if (ckpt_write(s->dirfd, &c, name, &e)) {
		set_failed(s, "checkpoint", e.msg);
		return -1;
	}
	s->have_ckpt = true;
	s->ckpt_seq = seq;
	s->ckpt_lsn = lsn;
	s->ckpt_ms = loop_now_ms();
	/* the next record starts a new segment, so that whole segments are
	 * covered by checkpoints and can go */
	if (healing || s->w.fd < 0 || s->w.off > WAL_SEGMENT_HEADER) {
		if (s->w.fd >= 0 && s->cfg->storage.fsync != CFG_FSYNC_NONE && sync_log(s, &e))
			log_msg(s->log, CFG_LOG_WARN, "%s (covered by checkpoint %s)", e.msg, name);
		if (wal_create_segment(&s->w, s->next_lsn, &e)) {
			set_failed(s, "log", e.msg);
			return -1;
		}
	}
	s->failed = false;
	s->why[0] = '\0';
	prune(s, lsn, healing, name);
	measure_log(s);
	met_checkpoint(s->met, seq, s->ckpt_ms);
	met_storage_healthy(s->met);
	log_msg(s->log, CFG_LOG_INFO, "checkpoint %s/%s: %" PRIu64 " rows, %zu bytes, %.3f s%s",
	        s->cfg->storage.dir, name, seq, model_len + clients_len + CKPT_OVERHEAD,
	        (double)(loop_now_ms() - t0) / 1000.0, healing ? "; storage healthy again, accepting pushes" : "");
	return 0;
}

void sto_close(struct sto *s)
{
	struct wal_err e;

	if (!s)
		return;
	if (s->w.fd >= 0 && !s->failed && wal_sync(&s->w, &e))
		log_msg(s->log, CFG_LOG_ERROR, "%s", e.msg);
	wal_writer_fini(&s->w);
	if (s->lockfd >= 0)
		close(s->lockfd);   /* releases the flock */
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s);
}
