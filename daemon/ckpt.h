/*
 * ckpt.h — isvdd's checkpoint files: the engine's saved image plus where in
 * the stream it stands and the duplicate table, written atomically.
 *
 * A checkpoint is storage.dir/checkpoint-<seq, 20 digits>-<lsn, 20>.isvdc,
 * framed as update/isvd_ckpt.h describes (the header, the engine image,
 * the client table, a CRC32C): the framing lives there so that the `isvd`
 * command line, which must not link the daemon, reads the same format.
 *
 * ckpt_write() writes checkpoint.tmp, fsyncs it, renames it into place and
 * fsyncs the directory, so a checkpoint file either is whole and durable or
 * does not exist under its final name.  ckpt_read() checks size, magic,
 * version and CRC before anything is handed out.  File I/O only; no logging.
 */
#ifndef ISVDD_CKPT_H
#define ISVDD_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isvd_ckpt.h"
#include "wal.h"   /* struct wal_err */

#define CKPT_TMP_NAME "checkpoint.tmp"
#define CKPT_HEADER   ISVD_CKPT_HEADER    /* bytes before the model image */
#define CKPT_OVERHEAD ISVD_CKPT_OVERHEAD  /* header and trailing CRC: file size − sections */

struct ckpt {
	uint64_t seq, lsn;
	const uint8_t *model;    /* model image, or NULL */
	size_t model_len;
	const uint8_t *clients;  /* client table */
	size_t clients_len;
	uint8_t *buf_;           /* ckpt_read: the file's bytes, owned */
};

/* Writes c durably.  The final name is returned in name_out (64 bytes). */
int ckpt_write(int dirfd, const struct ckpt *c, char name_out[64], struct wal_err *e);
/* Reads and validates dir/name into *c (release with ckpt_fini()).  A file
 * that fails validation gives -1 with e->errnum == 0 and a reason. */
int ckpt_read(int dirfd, const char *name, struct ckpt *c, struct wal_err *e);
void ckpt_fini(struct ckpt *c);

/* The file name of the checkpoint at (seq, lsn), and back (false when name
 * is not a checkpoint's); the numbers as in wal.h's numbered names. */
#define CKPT_NAME_PREFIX "checkpoint-"
#define CKPT_NAME_SUFFIX ".isvdc"
void ckpt_name(char out[64], uint64_t seq, uint64_t lsn);
bool ckpt_parse_name(const char *name, uint64_t *seq, uint64_t *lsn);

#endif /* ISVDD_CKPT_H */
