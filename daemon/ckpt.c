/*
 * ckpt.c — writing and reading checkpoint files (format in ckpt.h).
 *
 * DESIGN
 *   Write: checkpoint.tmp (O_TRUNC) ← header, image, table, CRC; fsync;
 *   rename to the final name; fsync the directory.  Any failure unlinks the
 *   temporary file and leaves earlier checkpoints alone.  Read: the whole
 *   file into memory (an image is O(n·r) doubles), then validate.
 */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isvd_bytes.h"

#define CKPT_MAX_BYTES ((uint64_t)1 << 36)

void ckpt_name(char out[64], uint64_t seq, uint64_t lsn)
{
	snprintf(out, 64, CKPT_NAME_PREFIX "%0*" PRIu64 "-%0*" PRIu64 CKPT_NAME_SUFFIX, WAL_NAME_DIGITS, seq,
	         WAL_NAME_DIGITS, lsn);
}

bool ckpt_parse_name(const char *name, uint64_t *seq, uint64_t *lsn)
{
	uint64_t v[2];

	if (!wal_parse_numbered_name(name, CKPT_NAME_PREFIX, CKPT_NAME_SUFFIX, 2, v))
		return false;
	*seq = v[0];
	*lsn = v[1];
	return true;
}

int ckpt_write(int dirfd, const struct ckpt *c, char name_out[64], struct wal_err *e)
{
	uint8_t h[CKPT_HEADER], tail[4];
	uint32_t crc;
	const char *step = "create";
	int fd, en;

	ckpt_name(name_out, c->seq, c->lsn);
	isvd_ckpt_put_header(h, c->seq, c->lsn, c->model_len, c->clients_len);
	crc = isvd_crc32c(0, h, sizeof h);
	crc = isvd_crc32c(crc, c->model, c->model_len);
	crc = isvd_crc32c(crc, c->clients, c->clients_len);
	isvd_put_le32(tail, crc);

	fd = openat(dirfd, CKPT_TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail_noclose;
	step = "write";
	if (wal_pwrite_all(fd, h, sizeof h, 0) ||
	    wal_pwrite_all(fd, c->model, c->model_len, sizeof h) ||
	    wal_pwrite_all(fd, c->clients, c->clients_len, sizeof h + c->model_len) ||
	    wal_pwrite_all(fd, tail, sizeof tail, sizeof h + c->model_len + c->clients_len))
		goto fail;
	step = "fsync";
	if (fsync(fd))
		goto fail;
	if (close(fd)) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	step = "rename";
	if (renameat(dirfd, CKPT_TMP_NAME, dirfd, name_out))
		goto fail;
	if (fsync(dirfd)) {
		en = errno;
		e->errnum = en;
		snprintf(e->msg, sizeof e->msg, "checkpoint %s: cannot fsync the storage directory: %s",
		         name_out, strerror(en));
		/* the file exists but its name may not be durable: treat as failed,
		 * and remove it so it is never mistaken for a durable one */
		unlinkat(dirfd, name_out, 0);
		return -1;
	}
	return 0;
fail:
	en = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, CKPT_TMP_NAME, 0);
	e->errnum = en;
	snprintf(e->msg, sizeof e->msg, "checkpoint %s: cannot %s %s: %s", name_out, step,
	         CKPT_TMP_NAME, strerror(en));
	return -1;
fail_noclose:
	en = errno;
	e->errnum = en;
	snprintf(e->msg, sizeof e->msg, "checkpoint %s: cannot create %s: %s", name_out,
	         CKPT_TMP_NAME, strerror(en));
	return -1;
}

static int bad(struct wal_err *e, const char *name, const char *why)
{
	e->errnum = 0;
	snprintf(e->msg, sizeof e->msg, "checkpoint %s is not valid: %s", name, why);
	return -1;
}

int ckpt_read(int dirfd, const char *name, struct ckpt *c, struct wal_err *e)
{
	struct stat st;
	struct isvd_ckpt_view v;
	const char *why;
	uint64_t size;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd;

	memset(c, 0, sizeof *c);
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		e->errnum = errno;
		snprintf(e->msg, sizeof e->msg, "cannot open checkpoint %s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	size = (uint64_t)st.st_size;
	if (size < CKPT_OVERHEAD || size > CKPT_MAX_BYTES) {
		close(fd);
		return bad(e, name, size < CKPT_OVERHEAD ? "shorter than its header" : "too large");
	}
	buf = malloc((size_t)size);
	if (!buf) {
		close(fd);
		e->errnum = ENOMEM;
		snprintf(e->msg, sizeof e->msg, "cannot read checkpoint %s: %s", name, strerror(ENOMEM));
		return -1;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, (size_t)size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e->errnum = n < 0 ? errno : EIO;
			snprintf(e->msg, sizeof e->msg, "cannot read checkpoint %s: %s", name,
			         n < 0 ? strerror(errno) : "it shrank while being read");
			close(fd);
			free(buf);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	if (isvd_ckpt_parse(buf, (size_t)size, &v, &why)) {
		free(buf);
		return bad(e, name, why);
	}
	c->seq = v.seq;
	c->lsn = v.lsn;
	c->model = v.model;
	c->model_len = v.model_len;
	c->clients = v.clients;
	c->clients_len = v.clients_len;
	c->buf_ = buf;
	return 0;
}

void ckpt_fini(struct ckpt *c)
{
	free(c->buf_);
	memset(c, 0, sizeof *c);
}
