/*
 * wal.h — isvdd's write-ahead log: the on-disk format of log segments and
 * records, a writer that appends blocks, and a reader that walks a segment.
 *
 * The log is a sequence of segment files in storage.dir named
 * wal-<first lsn, 20 digits>.log.  A segment is a 32-byte header followed by
 * records; every record is one block: the pushes that one engine update call
 * folded into the model, in order, with their rows as received (float64),
 * their (client, batch) ids and the block boundary itself (the record).  The
 * record number (lsn) increases by one per record across segments; a
 * checkpoint names the last lsn it covers.
 *
 *   segment header (32 bytes, little-endian)
 *     0  "ISVDWAL\0"   8  u32 version = 1   12 u32 0
 *     16 u64 first lsn                      24 u32 crc32c(bytes 0..23)  28 u32 0
 *   record header (24 bytes)
 *     0  u32 magic 0x31524449 ("IDR1")      4  u32 type (1 = block)
 *     8  u64 payload length                16 u32 crc32c(payload)
 *     20 u32 crc32c(bytes 0..19)
 *   block payload
 *     u64 lsn, u64 first seq, u64 dim, u32 number of pushes, u32 0, then
 *     per push:
 *     u64 rows, u64 batch, u8 has_batch, u8 0, u16 client length (0 = none),
 *     u32 0, the client bytes, rows × dim float64 values.
 *
 * first seq numbers the block's first row as if every row logged since the
 * last checkpoint had been applied: the checkpoint's seq + the rows of the
 * records before this one, + 1.  (The daemon logs a block while the engine
 * still applies the one before, whose pushes it may yet refuse, e.g. on
 * energy overflow; so logged rows can run ahead of the model's.)  Records
 * written after a checkpoint restart at the model's rows + 1, which is why a
 * reader accepts either continuation.
 *
 * A torn append is detectable: the header has its own CRC, so a damaged
 * length cannot make a record swallow its successors, and a payload that is
 * cut short or fails its CRC is found before anything is applied.
 *
 * This module does file I/O only: it neither logs nor knows the model.
 * Errors come back as -1 with a message naming the file (and the offset) in
 * a struct wal_err.
 */
#ifndef ISVDD_WAL_H
#define ISVDD_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_SEGMENT_HEADER 32
#define WAL_RECORD_HEADER  24
#define WAL_RECORD_MAGIC   0x31524449u
#define WAL_TYPE_BLOCK     1u

struct wal_err {
	int errnum;              /* errno of the failed call, 0 for a format error */
	char msg[512];
};

/* One push inside a block.  For the writer `data` is rows × dim doubles;
 * for the reader it points into the mapped segment (not aligned: memcpy). */
struct wal_push {
	const char *client;      /* NULL when none; not NUL-terminated */
	size_t client_len;
	bool has_batch;
	uint64_t batch;
	size_t rows;
	const void *data;
};

struct wal_block {
	uint64_t lsn;
	uint64_t first_seq;
	size_t dim;
	size_t npush;
	struct wal_push *push;   /* npush entries */
};

/* ---------------------------------------------------------------- writer */

/* A push's rows up to this size are copied into the writer's buffer; larger
 * ones are written from the caller's memory. */
#define WAL_INLINE_MAX (64u << 10)

struct wal_piece {
	const uint8_t *p;
	size_t len;
};

/* The open segment being appended to.  Invariant: off is the end of the
 * last whole record written (the file is never longer once append
 * returns), synced ≤ off is what the last successful fsync covered. */
struct wal_writer {
	int dirfd;               /* storage.dir, borrowed */
	int fd;                  /* -1 when no segment is open */
	char name[64];           /* the segment's file name */
	uint64_t first_lsn;
	uint64_t off, synced;
	uint8_t *buf;            /* headers and small rows of a record, owned */
	size_t cap;
	struct wal_piece *pieces;   /* what one record is written from, in file order, owned */
	size_t pieces_cap;
};

void wal_writer_init(struct wal_writer *w, int dirfd);
/* Creates segment wal-<first_lsn>.log (replacing an empty leftover of that
 * name), writes and fsyncs its header and fsyncs the directory. */
int wal_create_segment(struct wal_writer *w, uint64_t first_lsn, struct wal_err *e);
/* Opens an existing segment for appending after `end`, its last whole
 * record (a recovered tail).  The file is truncated to end. */
int wal_reopen_segment(struct wal_writer *w, const char *name, uint64_t first_lsn, uint64_t end,
                       struct wal_err *e);
/* Appends one block record.  On failure the file is cut back to its length
 * before the call (if that fails too, e->msg says so and the segment must
 * not be appended to again); nothing partial stays behind. */
int wal_append(struct wal_writer *w, const struct wal_block *b, struct wal_err *e);
/* fdatasync()s the segment.  A failure is never retried as if it had
 * succeeded: the caller must treat every record since the last successful
 * sync as of unknown durability. */
int wal_sync(struct wal_writer *w, struct wal_err *e);
/* Closes the segment (no sync).  Safe on a closed writer. */
void wal_close(struct wal_writer *w);
/* wal_close() and frees the buffer. */
void wal_writer_fini(struct wal_writer *w);

/* ---------------------------------------------------------------- reader */

/* One mapped segment, read-only. */
struct wal_segment {
	char name[64];
	uint64_t first_lsn;
	const uint8_t *map;
	size_t size;
};

/* What wal_next() found at an offset. */
enum wal_read {
	WAL_RECORD,      /* a whole, valid record; *next is the offset after it */
	WAL_END,         /* the segment ends exactly here */
	WAL_TORN,        /* an incomplete or damaged record that runs to the end of
	                  * the file (or only zero bytes follow): a torn append */
	WAL_CORRUPT      /* a damaged record with data after it */
};

/* Maps dir/name and checks its header.  Returns 0; or -1 with e filled, and
 * e->errnum == 0 when the header is damaged or the file is shorter than a
 * header (a torn segment creation when the file is the last one). */
int wal_segment_open(int dirfd, const char *name, struct wal_segment *s, struct wal_err *e);
void wal_segment_close(struct wal_segment *s);

/* Reads the record at off.  For WAL_RECORD, *b is filled (b->push is
 * realloc'd into *pushes of *cap entries, which the caller frees) and *next
 * set.  For WAL_TORN and WAL_CORRUPT e->msg says what is wrong.  Returns the
 * enum, or -1 when out of memory. */
int wal_next(const struct wal_segment *s, uint64_t off, struct wal_block *b,
             struct wal_push **pushes, size_t *cap, uint64_t *next, struct wal_err *e);

/* storage.dir's numbered file names: a prefix, then nfields decimal
 * numbers of exactly WAL_NAME_DIGITS digits (zero-padded u64) joined by
 * '-', then a suffix.  wal_parse_numbered_name() parses one into
 * v[0..nfields) and refuses anything else (a wrong length, prefix, suffix
 * or separator, a non-digit, a number above UINT64_MAX). */
#define WAL_NAME_DIGITS 20
#define WAL_NAME_PREFIX "wal-"
#define WAL_NAME_SUFFIX ".log"
bool wal_parse_numbered_name(const char *name, const char *prefix, const char *suffix,
                             size_t nfields, uint64_t *v);

/* The file name of the segment starting at lsn ("wal-<lsn, 20 digits>.log");
 * parses a name back (returns false when name is not a segment's). */
void wal_segment_name(char out[64], uint64_t first_lsn);
bool wal_parse_name(const char *name, uint64_t *first_lsn);

/* pwrite() of all len bytes at off, retrying short writes and EINTR.
 * 0, or -1 with errno set.  Shared with the checkpoint writer. */
int wal_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

#endif /* ISVDD_WAL_H */
