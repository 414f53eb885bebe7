/*
 * ckptfmt.c — isvdd's checkpoint framing as bytes (isvd_ckpt.h): the header
 * and the checks, shared by the daemon (daemon/ckpt.c) and the command line.
 */
#include <string.h>

#include "isvd_bytes.h"
#include "isvd_ckpt.h"
#include "isvd_model.h"

void isvd_ckpt_put_header(uint8_t h[ISVD_CKPT_HEADER], uint64_t seq, uint64_t lsn,
                          uint64_t model_len, uint64_t clients_len)
{
	memset(h, 0, ISVD_CKPT_HEADER);
	memcpy(h, ISVD_CKPT_MAGIC, 8);
	isvd_put_le32(h + 8, ISVD_CKPT_VERSION);
	isvd_put_le64(h + 16, seq);
	isvd_put_le64(h + 24, lsn);
	isvd_put_le64(h + 32, model_len);
	isvd_put_le64(h + 40, clients_len);
}

int isvd_ckpt_is(const void *buf, size_t len)
{
	return buf && len >= 8 && memcmp(buf, ISVD_CKPT_MAGIC, 8) == 0;
}

static int fail(const char **why, const char *text, int err)
{
	if (why)
		*why = text;
	return err;
}

int isvd_ckpt_parse(const void *buf, size_t len, struct isvd_ckpt_view *v, const char **why)
{
	const uint8_t *p = buf;

	if (why)
		*why = NULL;
	if (!buf || !v)
		return fail(why, "no buffer", ISVD_ERR_INVALID);
	memset(v, 0, sizeof *v);
	if (len < ISVD_CKPT_OVERHEAD)
		return fail(why, "shorter than its header", ISVD_ERR_TRUNCATED);
	if (!isvd_ckpt_is(p, len) || isvd_get_le32(p + 8) != ISVD_CKPT_VERSION)
		return fail(why, "bad magic or version", ISVD_ERR_FORMAT);
	const uint64_t ml = isvd_get_le64(p + 32), cl = isvd_get_le64(p + 40);
	/* the declared sections against the bytes there are: more is a file
	 * cut short, fewer is bytes that do not belong (ml, cl ≤ len first, so
	 * that the sum cannot wrap) */
	if (ml > len || cl > len || ISVD_CKPT_OVERHEAD + ml + cl > len)
		return fail(why, "section sizes do not add up to the file size (truncated?)",
		            ISVD_ERR_TRUNCATED);
	if (ISVD_CKPT_OVERHEAD + ml + cl != len)
		return fail(why, "section sizes do not add up to the file size (trailing bytes)",
		            ISVD_ERR_FORMAT);
	if (isvd_get_le32(p + len - 4) != isvd_crc32c(0, p, len - 4))
		return fail(why, "checksum mismatch", ISVD_ERR_CORRUPT);
	v->seq = isvd_get_le64(p + 16);
	v->lsn = isvd_get_le64(p + 24);
	v->model = ml ? p + ISVD_CKPT_HEADER : NULL;
	v->model_len = (size_t)ml;
	v->clients = p + ISVD_CKPT_HEADER + ml;
	v->clients_len = (size_t)cl;
	return ISVD_OK;
}
