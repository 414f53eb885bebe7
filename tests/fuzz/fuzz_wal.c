/*
 * fuzz_wal.c — libFuzzer target over the write-ahead log reader
 * (daemon/wal.c: wal_segment_open() and wal_next() on a segment file).
 *
 * Input byte 0 is a mode, the rest the segment.  With mode bit 0 set the
 * target first repairs every CRC it can (the segment header's, then each
 * record's header and payload CRC while the declared lengths fit), so the
 * fuzzer gets past the checksums into the block parser; without it the
 * bytes are read as they are.  The file is named after the first record
 * number in its header (as the daemon names segments), or with mode bit 1
 * set after record 1 whatever the header says.  It walks the segment as recovery does and
 * checks what the reader promises: a record's pushes lie inside the file,
 * their rows × dim values fit in the payload, offsets strictly advance,
 * and a damaged record is reported with a message.
 */
#include "fuzz_file.h"
#include "isvd_bytes.h"
#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_wal: %s:%d: %s\n", \
                 __FILE__, __LINE__, #c); abort(); } } while (0)

static void fix_crcs(uint8_t *p, size_t n)
{
	uint64_t off = WAL_SEGMENT_HEADER;

	if (n < WAL_SEGMENT_HEADER)
		return;
	isvd_put_le32(p + 24, isvd_crc32c(0, p, 24));
	while (n - off >= WAL_RECORD_HEADER) {
		uint8_t *h = p + off;
		uint64_t len = isvd_get_le64(h + 8);
		if (len > n - off - WAL_RECORD_HEADER)
			break;
		isvd_put_le32(h + 16, isvd_crc32c(0, h + WAL_RECORD_HEADER, (size_t)len));
		isvd_put_le32(h + 20, isvd_crc32c(0, h, 20));
		off += WAL_RECORD_HEADER + len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[64];
	struct wal_segment s;
	struct wal_err e;
	struct wal_push *pushes = NULL;
	size_t cap = 0;
	uint8_t *buf;

	if (size < 1)
		return 0;
	buf = fuzz_body(data, size, fix_crcs);
	wal_segment_name(name, (data[0] & 2) || size - 1 < WAL_SEGMENT_HEADER ? 1 : isvd_get_le64(buf + 16));
	fuzz_write(name, buf, size - 1);
	free(buf);

	if (wal_segment_open(fuzz_dir(NULL), name, &s, &e) != 0) {
		CHECK(e.msg[0] != '\0');
		return 0;
	}
	CHECK(s.size == size - 1);
	uint64_t off = WAL_SEGMENT_HEADER;
	for (;;) {
		struct wal_block b;
		uint64_t next = 0;
		int r = wal_next(&s, off, &b, &pushes, &cap, &next, &e);
		CHECK(r >= 0);
		if (r != WAL_RECORD) {
			CHECK(r == WAL_END || e.msg[0] != '\0');
			break;
		}
		CHECK(next > off && next <= s.size);
		size_t values = 0;
		for (size_t i = 0; i < b.npush; i++) {
			const struct wal_push *q = &b.push[i];
			CHECK(!q->client_len || ((const uint8_t *)q->client >= s.map &&
			                         (const uint8_t *)q->client + q->client_len <= s.map + next));
			CHECK(b.dim == 0 || q->rows <= (next - off) / 8 / b.dim);
			if (q->rows && b.dim) {
				const uint8_t *d = q->data;
				CHECK(d >= s.map && d + q->rows * b.dim * 8 <= s.map + next);
				double first, last;
				memcpy(&first, d, 8);   /* touch both ends: ASan checks the bounds */
				memcpy(&last, d + q->rows * b.dim * 8 - 8, 8);
				(void)first;
				(void)last;
			}
			values += q->rows * b.dim;
		}
		CHECK(values <= (next - off) / 8);
		off = next;
	}
	free(pushes);
	wal_segment_close(&s);
	return 0;
}
