/*
 * fuzz_ckpt.c — libFuzzer target over the checkpoint loader: ckpt_read()
 * (daemon/ckpt.c) on a checkpoint file, then the engine's
 * isvd_model_load() (update/image.c) on the model image it holds.
 *
 * Input byte 0 is a mode, the rest the file.  With mode bit 0 set the
 * target repairs the checksums first (the model image's CRC32C when the
 * section sizes add up, then the file's), so the fuzzer reaches the
 * image's field checks; without it the bytes are read as they are.  A
 * model that loads must then behave: info succeeds and reports what the
 * options say, and save → load → save gives the same bytes.
 */
#include "ckpt.h"
#include "fuzz_file.h"
#include "isvd_bytes.h"
#include "isvd_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_ckpt: %s:%d: %s\n", \
                 __FILE__, __LINE__, #c); abort(); } } while (0)

#define HDR 48   /* ckpt.h's layout: header, model image, client table, CRC */

static void fix_crcs(uint8_t *p, size_t n)
{
	if (n < HDR + 4)
		return;
	uint64_t ml = isvd_get_le64(p + 32), cl = isvd_get_le64(p + 40);
	if (ml >= 4 && ml <= n && cl <= n && HDR + ml + cl + 4 == n)
		isvd_put_le32(p + HDR + ml - 4, isvd_crc32c(0, p + HDR, (size_t)ml - 4));
	isvd_put_le32(p + n - 4, isvd_crc32c(0, p, n - 4));
}

static void check_model(const struct isvd_model *m)
{
	struct isvd_info info;
	struct isvd_options o;
	struct isvd_model *m2 = NULL;
	size_t need = isvd_model_saved_size(m), len = 0, len2 = 0;
	uint8_t *a = malloc(need ? need : 1), *b = malloc(need ? need : 1);

	CHECK(a && b);
	CHECK(isvd_model_info(m, &info) == ISVD_OK);
	isvd_model_options(m, &o);
	CHECK(o.dim >= 1 && o.rank >= 1);
	CHECK(info.rows_seen == isvd_model_rows_seen(m));
	CHECK(isvd_model_save(m, a, need, &len) == ISVD_OK && len == need);
	CHECK(isvd_model_load(a, len, &m2) == ISVD_OK);
	CHECK(isvd_model_save(m2, b, need, &len2) == ISVD_OK && len2 == len);
	CHECK(memcmp(a, b, len) == 0);
	isvd_model_destroy(m2);
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char name[] = "checkpoint-00000000000000000001-00000000000000000001.isvdc";
	struct ckpt c;
	struct wal_err e;
	uint8_t *buf;

	if (size < 1)
		return 0;
	buf = fuzz_body(data, size, fix_crcs);
	fuzz_write(name, buf, size - 1);
	free(buf);

	if (ckpt_read(fuzz_dir(NULL), name, &c, &e) != 0) {
		CHECK(e.msg[0] != '\0');
		return 0;
	}
	CHECK(c.model_len + c.clients_len + HDR + 4 == size - 1);
	if (c.model) {
		struct isvd_model *m = NULL;
		int rc = isvd_model_load(c.model, c.model_len, &m);
		CHECK((rc == ISVD_OK) == (m != NULL));
		if (m)
			check_model(m);
		isvd_model_destroy(m);
	}
	ckpt_fini(&c);
	return 0;
}
