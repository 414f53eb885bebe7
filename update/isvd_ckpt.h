/*
 * isvd_ckpt.h — the framing of isvdd's checkpoint files as bytes: the
 * header the daemon writes and the checks every reader makes.
 *
 * The daemon writes and reads checkpoint files (daemon/ckpt.c does the
 * file I/O); the `isvd` command line reads them too (`isvd merge`,
 * `isvd inspect`) and must not link the daemon.  So the format lives here,
 * next to the engine image it wraps and the byte helpers every isvd format
 * shares (isvd_bytes.h), once: pure bytes, no I/O.
 *
 *     0 "ISVDCKPT"        8 u32 version = 1       12 u32 0
 *    16 u64 seq (rows in the model)               24 u64 lsn (last log record covered)
 *    32 u64 model image bytes (0: no model yet)   40 u64 client table bytes
 *    48 model image (isvd_model_save), client table (opaque here)
 *   end u32 CRC32C of everything before it
 */
#ifndef ISVD_CKPT_H
#define ISVD_CKPT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ISVD_CKPT_MAGIC    "ISVDCKPT"
#define ISVD_CKPT_VERSION  1u
#define ISVD_CKPT_HEADER   48u                    /* bytes before the model image */
#define ISVD_CKPT_OVERHEAD (ISVD_CKPT_HEADER + 4) /* header and trailing CRC */

/* What a checkpoint holds; the pointers point into the parsed buffer. */
struct isvd_ckpt_view {
	uint64_t seq, lsn;
	const uint8_t *model;    /* model image, or NULL (no model yet) */
	size_t model_len;
	const uint8_t *clients;  /* client table (the daemon's) */
	size_t clients_len;
};

/* Writes the header of a checkpoint with these fields into h. */
void isvd_ckpt_put_header(uint8_t h[ISVD_CKPT_HEADER], uint64_t seq, uint64_t lsn,
                          uint64_t model_len, uint64_t clients_len);

/* Whether buf starts with the checkpoint magic (len ≥ 8). */
int isvd_ckpt_is(const void *buf, size_t len);

/* Checks the len bytes of a whole checkpoint file (size, magic, version,
 * section sizes, CRC) and fills *v.  ISVD_OK, or ISVD_ERR_TRUNCATED /
 * ISVD_ERR_FORMAT / ISVD_ERR_CORRUPT with *why (may be NULL) a static
 * text saying which check failed.  The model image is not checked here
 * (isvd_model_load() does). */
int isvd_ckpt_parse(const void *buf, size_t len, struct isvd_ckpt_view *v, const char **why);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_CKPT_H */
