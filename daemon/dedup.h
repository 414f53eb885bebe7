/*
 * dedup.h — isvdd's duplicate table: which (client, batch) pushes the model
 * already holds, so that a resend is answered, not applied twice.
 *
 * Per client a ring of the last DUP_RING (batch, seq) pairs it pushed, for
 * at most max_clients clients; when a new client would exceed that, the
 * least recently used one is forgotten.  The table survives restarts:
 * checkpoints store dup_encode()'s bytes and replaying the log after one
 * records what came after.  Pushes without both `client` and `batch` are
 * never looked up.  Single-threaded (the event loop's).
 *
 * INVARIANTS
 *   n ≤ cap (limits.max_clients); every entry's name is unique and owned;
 *   an entry's n ≤ DUP_RING, head < DUP_RING, top is the largest batch in
 *   its ring (or the last recorded one); tick ≥ every last_used.
 */
#ifndef ISVDD_DEDUP_H
#define ISVDD_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DUP_RING 8   /* batches remembered per client */

struct dup_client {
	char *name;                  /* owned */
	uint64_t last_used;          /* the table's tick when last recorded */
	uint64_t top;                /* largest batch applied */
	size_t n, head;              /* ring of (batch, seq); head = next slot */
	uint64_t batch[DUP_RING], seq[DUP_RING];
};

struct dup_table {
	struct dup_client *v;        /* cap entries, n used */
	size_t n, cap;
	uint64_t tick;               /* counts dup_record() calls */
};

/* An empty table of cap (≥ 1) clients.  0, or -1 when out of memory. */
int dup_init(struct dup_table *t, size_t cap);
/* Frees the entries; a zeroed table is a no-op. */
void dup_fini(struct dup_table *t);

/* Is (client, batch) already applied?  Sets *seq (0 = not remembered).
 * A batch in the ring is; a batch above the client's largest is not; a
 * batch between remembered ones but not among them is not either (it was
 * refused or lost, e.g. while storage was failing, and may be resent); a
 * batch older than everything remembered, once the ring is full, is taken
 * as applied with seq unknown (0), so that a very late resend is never
 * applied twice. */
bool dup_seen(const struct dup_table *t, const char *name, uint64_t batch, uint64_t *seq);

/* Remembers that (name, batch) was applied ending at row seq; a new client
 * beyond cap forgets the least recently used one.  0, or -1 when out of
 * memory (errno set; the table is unchanged). */
int dup_record(struct dup_table *t, const char *name, uint64_t batch, uint64_t seq);

/* The table as checkpoint bytes (little-endian):
 *   u32 count, u32 0, u64 tick, then per client: u16 name length, name,
 *   u64 last_used, u64 top, u32 n, u32 head, DUP_RING × u64 batch,
 *   DUP_RING × u64 seq.
 * 0 and *out (the caller frees it), or -1 when out of memory. */
int dup_encode(const struct dup_table *t, uint8_t **out, size_t *len);

/* Parses dup_encode()'s bytes into *out, a new table of cap clients (when
 * the bytes hold more, the least recently used are forgotten: max_clients
 * shrank).  0, or -1 with a reason in why and *out untouched. */
int dup_decode(const uint8_t *p, size_t len, size_t cap, struct dup_table *out, char *why,
               size_t whycap);

#endif /* ISVDD_DEDUP_H */
