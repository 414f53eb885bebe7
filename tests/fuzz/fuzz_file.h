/*
 * fuzz_file.h — for the fuzz targets whose code under test reads a file
 * (the config loader, the log reader, the checkpoint reader): the input is
 * written to one file in a private temporary directory, made once per
 * process, and rewritten for every input; both are removed at exit.
 * fuzz_body() splits off the mode byte the file targets' inputs start
 * with.  Header-only; each target includes it once.
 */
#ifndef ISVD_FUZZ_FILE_H
#define ISVD_FUZZ_FILE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir_name[256];
static char fuzz_file_name[64];

static void fuzz_cleanup(void)
{
	char path[340];

	if (fuzz_file_name[0]) {
		snprintf(path, sizeof path, "%s/%s", fuzz_dir_name, fuzz_file_name);
		unlink(path);
	}
	rmdir(fuzz_dir_name);
}

/* The temporary directory's fd (opened on first use; aborts on failure). */
static int fuzz_dir(char path[256])
{
	static int fd = -1;
	char *name = fuzz_dir_name;

	if (fd < 0) {
		const char *t = getenv("TMPDIR");
		snprintf(name, sizeof fuzz_dir_name, "%s/isvd-fuzz-XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(name) || (fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			perror("fuzz: temporary directory");
			abort();
		}
		atexit(fuzz_cleanup);
	}
	if (path)
		snprintf(path, 256, "%s", name);
	return fd;
}

/* Writes data to dir/name (replacing it; one name per process, which the
 * exit removes).  Aborts on failure. */
static void fuzz_write(const char *name, const uint8_t *data, size_t size)
{
	int fd = openat(fuzz_dir(NULL), name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	if (strcmp(fuzz_file_name, name)) {   /* a new name: the old file goes */
		if (fuzz_file_name[0])
			unlinkat(fuzz_dir(NULL), fuzz_file_name, 0);
		snprintf(fuzz_file_name, sizeof fuzz_file_name, "%s", name);
	}

	if (fd < 0) {
		perror("fuzz: write");
		abort();
	}
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0) {
			perror("fuzz: write");
			abort();
		}
		off += (size_t)n;
	}
	close(fd);
}

/* An input of size >= 1 is a mode byte and a file: returns a malloc'd copy
 * of the file (size - 1 bytes; the caller frees), repaired by
 * fix_checksums() first when mode bit 0 is set, so that the fuzzer also
 * gets past the CRC checks.  Aborts when out of memory. */
static inline uint8_t *fuzz_body(const uint8_t *data, size_t size, void (*fix_checksums)(uint8_t *, size_t))
{
	uint8_t *buf = malloc(size);

	if (!buf)
		abort();
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		fix_checksums(buf, size - 1);
	return buf;
}

#endif /* ISVD_FUZZ_FILE_H */
