/*
 * wal.c — the write-ahead log's format, writer and reader (see wal.h for the
 * layout).
 *
 * DESIGN
 *   The writer assembles a record's headers, client names and small pushes'
 *   rows in one buffer and writes them, and big pushes' rows straight from
 *   the caller's memory (no copy of megabytes of rows), piece by piece with
 *   pwrite() at the end of the last whole record; the payload CRC is
 *   chained over the same pieces in file order.  On any failure it
 *   ftruncate()s back, so a live daemon never leaves a partial record in
 *   front of a later one.  Durability is wal_sync()'s business (fdatasync),
 *   called by storage.c according to storage.fsync.
 *
 *   The reader maps a segment and validates each record before handing it
 *   out: magic, header CRC, payload length within the file, payload CRC,
 *   and a payload that parses exactly (push count, lengths and sizes all add
 *   up).  Classification of a bad record: if it runs past the end of the
 *   file, or nothing but zero bytes follows its start, it is a torn append
 *   (WAL_TORN); otherwise something after it survived and it is corruption
 *   in the middle of the log (WAL_CORRUPT).
 */
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isvd_bytes.h"
#include "isvd_model.h"   /* ISVD_MAX_DIM */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the log stores float64 values in host order, which must be little-endian"
#endif

static const char seg_magic[8] = { 'I', 'S', 'V', 'D', 'W', 'A', 'L', 0 };

void wal_segment_name(char out[64], uint64_t first_lsn)
{
	snprintf(out, 64, WAL_NAME_PREFIX "%0*" PRIu64 WAL_NAME_SUFFIX, WAL_NAME_DIGITS, first_lsn);
}

bool wal_parse_numbered_name(const char *name, const char *prefix, const char *suffix,
                             size_t nfields, uint64_t *v)
{
	const size_t lp = strlen(prefix), ls = strlen(suffix);
	const size_t len = lp + nfields * (WAL_NAME_DIGITS + 1) - 1 + ls;
	const char *f = name + lp;

	if (nfields == 0 || strlen(name) != len || strncmp(name, prefix, lp) ||
	    strcmp(name + len - ls, suffix))
		return false;
	for (size_t k = 0; k < nfields; k++, f += WAL_NAME_DIGITS + 1) {
		uint64_t x = 0;
		if (k > 0 && f[-1] != '-')
			return false;
		for (int i = 0; i < WAL_NAME_DIGITS; i++) {
			const unsigned d = (unsigned)(f[i] - '0');
			if (f[i] < '0' || f[i] > '9' || x > (UINT64_MAX - d) / 10)
				return false;   /* not a digit, or more than a u64 holds */
			x = x * 10 + d;
		}
		v[k] = x;
	}
	return true;
}

bool wal_parse_name(const char *name, uint64_t *first_lsn)
{
	return wal_parse_numbered_name(name, WAL_NAME_PREFIX, WAL_NAME_SUFFIX, 1, first_lsn);
}

static int fail(struct wal_err *e, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct wal_err *e, int errnum, const char *fmt, ...)
{
	va_list ap;

	e->errnum = errnum;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---------------------------------------------------------------- writer */

void wal_writer_init(struct wal_writer *w, int dirfd)
{
	memset(w, 0, sizeof *w);
	w->dirfd = dirfd;
	w->fd = -1;
}

void wal_close(struct wal_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}

void wal_writer_fini(struct wal_writer *w)
{
	wal_close(w);
	free(w->buf);
	w->buf = NULL;
	w->cap = 0;
	free(w->pieces);
	w->pieces = NULL;
	w->pieces_cap = 0;
}

int wal_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int wal_create_segment(struct wal_writer *w, uint64_t first_lsn, struct wal_err *e)
{
	uint8_t h[WAL_SEGMENT_HEADER] = { 0 };
	char name[64];
	int fd;

	wal_close(w);
	wal_segment_name(name, first_lsn);
	fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail(e, errno, "cannot create log segment %s: %s", name, strerror(errno));
	memcpy(h, seg_magic, 8);
	isvd_put_le32(h + 8, 1);
	isvd_put_le64(h + 16, first_lsn);
	isvd_put_le32(h + 24, isvd_crc32c(0, h, 24));
	if (wal_pwrite_all(fd, h, sizeof h, 0) || fdatasync(fd)) {
		int en = errno;
		close(fd);
		unlinkat(w->dirfd, name, 0);
		return fail(e, en, "cannot write log segment %s: %s", name, strerror(en));
	}
	if (fsync(w->dirfd)) {
		int en = errno;
		close(fd);
		return fail(e, en, "cannot fsync the storage directory after creating %s: %s", name,
		            strerror(en));
	}
	w->fd = fd;
	memcpy(w->name, name, sizeof name);
	w->first_lsn = first_lsn;
	w->off = w->synced = WAL_SEGMENT_HEADER;
	return 0;
}

int wal_reopen_segment(struct wal_writer *w, const char *name, uint64_t first_lsn, uint64_t end,
                       struct wal_err *e)
{
	struct stat st;
	int fd;

	wal_close(w);
	fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(e, errno, "cannot open log segment %s: %s", name, strerror(errno));
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != end) {
		if (ftruncate(fd, (off_t)end) || fdatasync(fd)) {
			int en = errno;
			close(fd);
			return fail(e, en, "cannot truncate log segment %s: %s", name, strerror(en));
		}
	}
	w->fd = fd;
	snprintf(w->name, sizeof w->name, "%s", name);
	w->first_lsn = first_lsn;
	w->off = w->synced = end;
	return 0;
}

static int reserve(struct wal_writer *w, size_t need)
{
	if (need <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 1 << 16;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(w->buf, cap);
	if (!p)
		return -1;
	w->buf = p;
	w->cap = cap;
	return 0;
}

static int reserve_pieces(struct wal_writer *w, size_t need)
{
	if (need <= w->pieces_cap)
		return 0;
	struct wal_piece *p = realloc(w->pieces, need * sizeof *p);
	if (!p)
		return -1;
	w->pieces = p;
	w->pieces_cap = need;
	return 0;
}

/* Adds [p, p + len) to the record's pieces, joining it to the last piece
 * when the two are adjacent (both in w->buf). */
static void add_piece(struct wal_writer *w, size_t *n, const uint8_t *p, size_t len)
{
	if (*n && w->pieces[*n - 1].p + w->pieces[*n - 1].len == p) {
		w->pieces[*n - 1].len += len;
		return;
	}
	w->pieces[*n].p = p;
	w->pieces[*n].len = len;
	(*n)++;
}

int wal_append(struct wal_writer *w, const struct wal_block *b, struct wal_err *e)
{
	size_t len = 32, small = WAL_RECORD_HEADER + 32, np = 0;
	uint32_t crc = 0;
	uint64_t at;
	uint8_t *p;

	if (w->fd < 0)
		return fail(e, EBADF, "no log segment is open");
	for (size_t i = 0; i < b->npush; i++) {
		const size_t bytes = b->push[i].rows * b->dim * sizeof(double);
		len += 24 + b->push[i].client_len + bytes;
		small += 24 + b->push[i].client_len + (bytes <= WAL_INLINE_MAX ? bytes : 0);
	}
	if (reserve(w, small) || reserve_pieces(w, 2 * b->npush + 1))
		return fail(e, ENOMEM, "cannot assemble a log record for %s: %s", w->name, strerror(ENOMEM));

	/* headers, client names and small pushes' rows go to w->buf; big
	 * pushes' rows are written from where they are */
	p = w->buf;
	isvd_put_le64(p + WAL_RECORD_HEADER, b->lsn);
	isvd_put_le64(p + WAL_RECORD_HEADER + 8, b->first_seq);
	isvd_put_le64(p + WAL_RECORD_HEADER + 16, b->dim);
	isvd_put_le32(p + WAL_RECORD_HEADER + 24, (uint32_t)b->npush);
	isvd_put_le32(p + WAL_RECORD_HEADER + 28, 0);
	add_piece(w, &np, p, WAL_RECORD_HEADER + 32);
	p += WAL_RECORD_HEADER + 32;
	for (size_t i = 0; i < b->npush; i++) {
		const struct wal_push *q = &b->push[i];
		const size_t bytes = q->rows * b->dim * sizeof(double);
		isvd_put_le64(p, q->rows);
		isvd_put_le64(p + 8, q->batch);
		p[16] = q->has_batch;
		p[17] = 0;
		p[18] = (uint8_t)q->client_len;
		p[19] = (uint8_t)(q->client_len >> 8);
		isvd_put_le32(p + 20, 0);
		if (q->client_len)
			memcpy(p + 24, q->client, q->client_len);
		add_piece(w, &np, p, 24 + q->client_len);
		p += 24 + q->client_len;
		if (bytes <= WAL_INLINE_MAX) {
			memcpy(p, q->data, bytes);
			add_piece(w, &np, p, bytes);
			p += bytes;
		} else {
			add_piece(w, &np, q->data, bytes);
		}
	}
	for (size_t i = 0; i < np; i++) {   /* the payload's CRC, in file order */
		const size_t skip = i == 0 ? WAL_RECORD_HEADER : 0;
		crc = isvd_crc32c(crc, w->pieces[i].p + skip, w->pieces[i].len - skip);
	}
	isvd_put_le32(w->buf, WAL_RECORD_MAGIC);
	isvd_put_le32(w->buf + 4, WAL_TYPE_BLOCK);
	isvd_put_le64(w->buf + 8, len);
	isvd_put_le32(w->buf + 16, crc);
	isvd_put_le32(w->buf + 20, isvd_crc32c(0, w->buf, 20));
	at = w->off;
	for (size_t i = 0; i < np; i++) {
		if (wal_pwrite_all(w->fd, w->pieces[i].p, w->pieces[i].len, at))
			break;
		at += w->pieces[i].len;
	}
	if (at != w->off + WAL_RECORD_HEADER + len) {
		int en = errno;
		if (ftruncate(w->fd, (off_t)w->off)) {
			e->errnum = en;
			snprintf(e->msg, sizeof e->msg,
			         "cannot append to log segment %s at offset %" PRIu64 ": %s; cutting the "
			         "partial record off failed too (%s)", w->name, w->off, strerror(en),
			         strerror(errno));
			wal_close(w);
			return -1;
		}
		e->errnum = en;
		snprintf(e->msg, sizeof e->msg, "cannot append to log segment %s at offset %" PRIu64 ": %s",
		         w->name, w->off, strerror(en));
		return -1;
	}
	w->off += WAL_RECORD_HEADER + len;
	return 0;
}

int wal_sync(struct wal_writer *w, struct wal_err *e)
{
	if (w->fd < 0)
		return fail(e, EBADF, "no log segment is open");
	if (w->synced == w->off)
		return 0;
	if (fdatasync(w->fd))
		return fail(e, errno, "cannot fsync log segment %s: %s", w->name, strerror(errno));
	w->synced = w->off;
	return 0;
}

/* ---------------------------------------------------------------- reader */

int wal_segment_open(int dirfd, const char *name, struct wal_segment *s, struct wal_err *e)
{
	struct stat st;
	int fd;

	memset(s, 0, sizeof *s);
	snprintf(s->name, sizeof s->name, "%s", name);
	if (!wal_parse_name(name, &s->first_lsn))
		return fail(e, EINVAL, "%s is not a log segment name", name);
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(e, errno, "cannot open log segment %s: %s", name, strerror(errno));
	if (fstat(fd, &st)) {
		int en = errno;
		close(fd);
		return fail(e, en, "cannot stat log segment %s: %s", name, strerror(en));
	}
	s->size = (size_t)st.st_size;
	if (s->size < WAL_SEGMENT_HEADER) {
		close(fd);
		return fail(e, 0, "log segment %s is shorter than its header (%s)",
		            name, s->size ? "torn" : "empty");
	}
	s->map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		return fail(e, errno, "cannot map log segment %s: %s", name, strerror(errno));
	}
	if (memcmp(s->map, seg_magic, 8) || isvd_get_le32(s->map + 8) != 1 ||
	    isvd_get_le32(s->map + 24) != isvd_crc32c(0, s->map, 24) ||
	    isvd_get_le64(s->map + 16) != s->first_lsn) {
		wal_segment_close(s);
		return fail(e, 0, "log segment %s has a damaged header (bad magic, version, "
		            "checksum or first record number)", name);
	}
	return 0;
}

void wal_segment_close(struct wal_segment *s)
{
	if (s->map)
		munmap((void *)s->map, s->size);
	s->map = NULL;
}

static bool zeros(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Parses a block payload that passed its CRC. 0 or a reason. */
static const char *parse_block(const uint8_t *p, uint64_t len, struct wal_block *b,
                               struct wal_push **pushes, size_t *cap, int *nomem)
{
	uint64_t at = 32, n;

	if (len < 32)
		return "block payload shorter than its header";
	b->lsn = isvd_get_le64(p);
	b->first_seq = isvd_get_le64(p + 8);
	b->dim = (size_t)isvd_get_le64(p + 16);
	n = isvd_get_le32(p + 24);
	if (b->dim == 0 || b->dim > ISVD_MAX_DIM)
		return "block dimension out of range";
	if (n == 0)
		return "block without pushes";
	if (n > (len - 32) / 24)
		return "push count exceeds the payload";
	if (n > *cap) {
		struct wal_push *q = realloc(*pushes, n * sizeof *q);
		if (!q) {
			*nomem = 1;
			return "out of memory";
		}
		*pushes = q;
		*cap = n;
	}
	b->push = *pushes;
	b->npush = n;
	for (uint64_t i = 0; i < n; i++) {
		struct wal_push *q = &b->push[i];
		uint64_t rows, clen, bytes;
		if (len - at < 24)
			return "push header beyond the payload";
		rows = isvd_get_le64(p + at);
		q->batch = isvd_get_le64(p + at + 8);
		q->has_batch = p[at + 16] != 0;
		clen = (uint64_t)p[at + 18] | (uint64_t)p[at + 19] << 8;
		at += 24;
		if (rows == 0 || rows > (len - at) / 8 / b->dim)
			return "push rows exceed the payload";
		bytes = rows * b->dim * 8;
		if (clen > len - at || bytes > len - at - clen)
			return "push data beyond the payload";
		q->rows = (size_t)rows;
		q->client_len = (size_t)clen;
		q->client = clen ? (const char *)p + at : NULL;
		at += clen;
		q->data = p + at;
		at += bytes;
	}
	if (at != len)
		return "payload longer than its pushes";
	return NULL;
}

int wal_next(const struct wal_segment *s, uint64_t off, struct wal_block *b,
             struct wal_push **pushes, size_t *cap, uint64_t *next, struct wal_err *e)
{
	const uint8_t *h = s->map + off;
	const uint64_t left = s->size - off;
	uint64_t len;
	const char *why;
	int nomem = 0;

	if (off == s->size)
		return WAL_END;
	e->errnum = 0;
	if (left < WAL_RECORD_HEADER) {
		snprintf(e->msg, sizeof e->msg, "%s: incomplete record header at offset %" PRIu64
		         " (%" PRIu64 " bytes)", s->name, off, left);
		return WAL_TORN;
	}
	if (isvd_get_le32(h) != WAL_RECORD_MAGIC || isvd_get_le32(h + 20) != isvd_crc32c(0, h, 20) ||
	    isvd_get_le32(h + 4) != WAL_TYPE_BLOCK) {
		snprintf(e->msg, sizeof e->msg, "%s: damaged record header at offset %" PRIu64,
		         s->name, off);
		return zeros(h, left) ? WAL_TORN : WAL_CORRUPT;
	}
	len = isvd_get_le64(h + 8);
	if (len > left - WAL_RECORD_HEADER) {
		snprintf(e->msg, sizeof e->msg, "%s: record at offset %" PRIu64 " needs %" PRIu64
		         " bytes, %" PRIu64 " remain", s->name, off, len + WAL_RECORD_HEADER, left);
		return WAL_TORN;
	}
	if (isvd_get_le32(h + 16) != isvd_crc32c(0, h + WAL_RECORD_HEADER, len)) {
		snprintf(e->msg, sizeof e->msg, "%s: record at offset %" PRIu64 " fails its checksum",
		         s->name, off);
		return off + WAL_RECORD_HEADER + len == s->size ||
		       zeros(h + WAL_RECORD_HEADER + len, left - WAL_RECORD_HEADER - len) ? WAL_TORN : WAL_CORRUPT;
	}
	why = parse_block(h + WAL_RECORD_HEADER, len, b, pushes, cap, &nomem);
	if (nomem)
		return -1;
	if (why) {   /* a valid checksum over a malformed payload: not a torn write */
		snprintf(e->msg, sizeof e->msg, "%s: record at offset %" PRIu64 " is malformed: %s",
		         s->name, off, why);
		return WAL_CORRUPT;
	}
	*next = off + WAL_RECORD_HEADER + len;
	return WAL_RECORD;
}
