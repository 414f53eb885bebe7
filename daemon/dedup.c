/*
 * dedup.c — the duplicate table (interface and invariants in dedup.h).
 *
 * DESIGN
 *   A flat array searched linearly: limits.max_clients is small (1024 by
 *   default) and a lookup costs one strcmp per client, next to a push's
 *   decode and copy.  Least-recently-used eviction scans for the smallest
 *   last_used.  The checkpoint encoding is fixed-width apart from the name,
 *   so a reader checks each entry's length before touching it.
 */
#include "dedup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isvd_proto.h"   /* ISVD_PROTO_MAX_CLIENT */
#include "isvd_bytes.h"

#define DUP_HEADER      16                        /* u32 count, u32 0, u64 tick */
#define DUP_ENTRY_FIXED (24 + 16 * DUP_RING)      /* an entry's bytes after its name */

int dup_init(struct dup_table *t, size_t cap)
{
	memset(t, 0, sizeof *t);
	if (!(t->v = calloc(cap, sizeof *t->v)))
		return -1;
	t->cap = cap;
	return 0;
}

void dup_fini(struct dup_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].name);
	free(t->v);
	memset(t, 0, sizeof *t);
}

static struct dup_client *find(const struct dup_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].name, name))
			return &t->v[i];
	return NULL;
}

/* The index of the least recently used of v[0..n), n ≥ 1. */
static size_t lru(const struct dup_client *v, size_t n)
{
	size_t j = 0;

	for (size_t i = 1; i < n; i++)
		if (v[i].last_used < v[j].last_used)
			j = i;
	return j;
}

bool dup_seen(const struct dup_table *t, const char *name, uint64_t batch, uint64_t *seq)
{
	const struct dup_client *c = find(t, name);
	uint64_t oldest = UINT64_MAX;

	if (!c || batch > c->top)
		return false;
	for (size_t i = 0; i < c->n; i++) {
		if (c->batch[i] == batch) {
			*seq = c->seq[i];
			return true;
		}
		if (c->batch[i] < oldest)
			oldest = c->batch[i];
	}
	*seq = 0;
	return c->n == DUP_RING && batch < oldest;
}

int dup_record(struct dup_table *t, const char *name, uint64_t batch, uint64_t seq)
{
	struct dup_client *c = find(t, name);

	if (!c) {
		char *copy = strdup(name);
		if (!copy)
			return -1;
		if (t->n == t->cap) {   /* forget the least recent */
			const size_t j = lru(t->v, t->n);
			free(t->v[j].name);
			t->v[j] = t->v[--t->n];
		}
		c = &t->v[t->n++];
		memset(c, 0, sizeof *c);
		c->name = copy;
	}
	c->last_used = ++t->tick;
	if (batch > c->top || c->n == 0)
		c->top = batch;
	c->batch[c->head] = batch;
	c->seq[c->head] = seq;
	c->head = (c->head + 1) % DUP_RING;
	if (c->n < DUP_RING)
		c->n++;
	return 0;
}

int dup_encode(const struct dup_table *t, uint8_t **out, size_t *len)
{
	size_t n = DUP_HEADER, at = DUP_HEADER;
	uint8_t *p;

	for (size_t i = 0; i < t->n; i++)
		n += 2 + strlen(t->v[i].name) + DUP_ENTRY_FIXED;
	if (!(p = malloc(n)))
		return -1;
	isvd_put_le32(p, (uint32_t)t->n);
	isvd_put_le32(p + 4, 0);
	isvd_put_le64(p + 8, t->tick);
	for (size_t i = 0; i < t->n; i++) {
		const struct dup_client *c = &t->v[i];
		const size_t nl = strlen(c->name);
		isvd_put_le16(p + at, (uint16_t)nl);
		memcpy(p + at + 2, c->name, nl);
		at += 2 + nl;
		isvd_put_le64(p + at, c->last_used);
		isvd_put_le64(p + at + 8, c->top);
		isvd_put_le32(p + at + 16, (uint32_t)c->n);
		isvd_put_le32(p + at + 20, (uint32_t)c->head);
		at += 24;
		for (int j = 0; j < DUP_RING; j++, at += 8)
			isvd_put_le64(p + at, c->batch[j]);
		for (int j = 0; j < DUP_RING; j++, at += 8)
			isvd_put_le64(p + at, c->seq[j]);
	}
	*out = p;
	*len = at;
	return 0;
}

/* Parses the entry at p[*at..len) into *c (name owned).  false when it is
 * cut short or out of range. */
static bool decode_entry(const uint8_t *p, size_t len, size_t *at, struct dup_client *c)
{
	size_t nl, i = *at;

	if (len - i < 2 || (nl = isvd_get_le16(p + i)) == 0 ||
	    nl > ISVD_PROTO_MAX_CLIENT || len - i - 2 < nl + DUP_ENTRY_FIXED)
		return false;
	memset(c, 0, sizeof *c);
	i += 2;
	if (!(c->name = strndup((const char *)p + i, nl)))
		return false;
	i += nl;
	c->last_used = isvd_get_le64(p + i);
	c->top = isvd_get_le64(p + i + 8);
	c->n = isvd_get_le32(p + i + 16);
	c->head = isvd_get_le32(p + i + 20);
	i += 24;
	for (int j = 0; j < DUP_RING; j++, i += 8)
		c->batch[j] = isvd_get_le64(p + i);
	for (int j = 0; j < DUP_RING; j++, i += 8)
		c->seq[j] = isvd_get_le64(p + i);
	if (c->n > DUP_RING || c->head >= DUP_RING) {
		free(c->name);
		c->name = NULL;
		return false;
	}
	*at = i;
	return true;
}

int dup_decode(const uint8_t *p, size_t len, size_t cap, struct dup_table *out, char *why,
               size_t whycap)
{
	struct dup_table t;
	size_t n, at = DUP_HEADER;

	if (len < DUP_HEADER) {
		snprintf(why, whycap, "client table shorter than its header");
		return -1;
	}
	if (dup_init(&t, cap)) {
		snprintf(why, whycap, "out of memory");
		return -1;
	}
	n = isvd_get_le32(p);
	t.tick = isvd_get_le64(p + 8);
	for (size_t i = 0; i < n; i++) {
		struct dup_client c;
		if (!decode_entry(p, len, &at, &c))
			goto bad;
		if (t.n < cap) {
			t.v[t.n++] = c;
		} else {   /* limits.max_clients shrank: forget the least recent */
			const size_t j = lru(t.v, t.n);
			if (c.last_used > t.v[j].last_used) {
				free(t.v[j].name);
				t.v[j] = c;
			} else {
				free(c.name);
			}
		}
	}
	if (at != len)
		goto bad;
	*out = t;
	return 0;
bad:
	dup_fini(&t);
	snprintf(why, whycap, "client table malformed at byte %zu", at);
	return -1;
}
