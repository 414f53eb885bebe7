/*
 * isvd_bytes.h — the byte-level helpers the engine's saved image shares
 * with the daemon's file formats (write-ahead log, checkpoints, duplicate
 * table): little-endian integers and CRC32C.  Not part of the model's API
 * (isvd_model.h); one copy, so that every format isvd writes agrees on
 * byte order and checksum.
 */
#ifndef ISVD_BYTES_H
#define ISVD_BYTES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline void isvd_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void isvd_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void isvd_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t isvd_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t isvd_get_le32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t isvd_get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* CRC32C (Castagnoli).  Start with crc = 0; feeding a buffer in pieces
 * gives the same result as at once. */
uint32_t isvd_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_BYTES_H */
