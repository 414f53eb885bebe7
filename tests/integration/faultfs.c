/*
 * faultfs.c — an LD_PRELOAD shim that makes file-system calls fail on
 * demand, for the storage fault tests (test_storage_faults.py).
 *
 * Environment:
 *   ISVD_FAULT_DIR  only files under this directory are affected
 *   ISVD_FAULT_CTL  a control file, re-read whenever its mtime or size
 *                   changes; each line "CALL ERRNO" (for example
 *                   "write ENOSPC", "fsync EIO", "rename EIO") makes every
 *                   later CALL on an affected file fail with that errno.
 *                   "write ERRNO BYTES" first lets BYTES more bytes through
 *                   (the write that crosses the mark is cut short there, as
 *                   on a disk that fills up mid-write), then fails.
 *                   "CALL PAUSE" (CALL not write) makes every later CALL
 *                   block (polling the control file every 10 ms, for at
 *                   most 60 s) until the line is gone, then go ahead:
 *                   "rename PAUSE" holds a checkpoint with its temporary
 *                   file written, for a test to kill the daemon in the
 *                   middle of it.
 *                   An empty or missing file means no faults.
 * CALL is one of: write (write, pwrite), fsync (fsync, fdatasync), rename
 * (rename, renameat), open (open/openat with O_CREAT), truncate (ftruncate).
 *
 * Only isvdd's event loop thread touches storage; the shim keeps no locks.
 */
/* the daemon is built with 64-bit file offsets, so it calls pwrite64,
 * ftruncate64 and openat64; this file defines both names of each, which it
 * can only do without the header redirections */
#undef _FILE_OFFSET_BITS
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { F_WRITE, F_FSYNC, F_RENAME, F_OPEN, F_TRUNCATE, F_COUNT };
static const char *const names[F_COUNT] = { "write", "fsync", "rename", "open", "truncate" };

static int fault[F_COUNT];             /* errno to fail with, 0 = none */
static long long write_budget = -1;    /* bytes still let through before failing, -1 = none */
static struct timespec ctl_mtime;
static off_t ctl_size = -1;

#define PAUSE (-1)   /* a fault[] value: block instead of failing */

static int errno_of(const char *s)
{
	static const struct { const char *n; int e; } t[] = {
		{ "ENOSPC", ENOSPC }, { "EIO", EIO }, { "EDQUOT", EDQUOT }, { "EROFS", EROFS },
		{ "EACCES", EACCES }, { "EFBIG", EFBIG },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(s, t[i].n))
			return t[i].e;
	if (!strcmp(s, "PAUSE"))
		return PAUSE;
	return EIO;
}

static void reload(void)
{
	const char *ctl = getenv("ISVD_FAULT_CTL");
	struct stat st;
	char line[128];
	FILE *f;

	if (!ctl || stat(ctl, &st)) {
		memset(fault, 0, sizeof fault);
		ctl_size = -1;
		return;
	}
	if (st.st_size == ctl_size && st.st_mtim.tv_sec == ctl_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == ctl_mtime.tv_nsec)
		return;
	ctl_size = st.st_size;
	ctl_mtime = st.st_mtim;
	memset(fault, 0, sizeof fault);
	write_budget = -1;
	if (!(f = fopen(ctl, "r")))
		return;
	while (fgets(line, sizeof line, f)) {
		char call[32], err[32];
		long long bytes = -1;
		if (sscanf(line, "%31s %31s %lld", call, err, &bytes) < 2)
			continue;
		for (int i = 0; i < F_COUNT; i++)
			if (!strcmp(call, names[i]))
				fault[i] = errno_of(err);
		if (!strcmp(call, "write"))
			write_budget = bytes;
	}
	fclose(f);
}

static int path_affected(const char *path)
{
	const char *dir = getenv("ISVD_FAULT_DIR");
	char real[4096];

	if (!dir || !path)
		return 0;
	if (path[0] != '/') {   /* relative to the cwd, or to a dirfd we resolve below */
		if (!getcwd(real, sizeof real))
			return 0;
		size_t n = strlen(real);
		snprintf(real + n, sizeof real - n, "/%s", path);
		path = real;
	}
	return !strncmp(path, dir, strlen(dir));
}

static int fd_affected(int fd)
{
	char link[64], path[4096];
	ssize_t n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return path_affected(path);
}

static int at_affected(int dirfd, const char *path)
{
	char link[64], dir[4096], full[8192];
	ssize_t n;

	if (path[0] == '/' || dirfd == AT_FDCWD)
		return path_affected(path);
	snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
	n = readlink(link, dir, sizeof dir - 1);
	if (n <= 0)
		return 0;
	dir[n] = '\0';
	snprintf(full, sizeof full, "%s/%s", dir, path);
	return path_affected(full);
}

static int should_fail(int what, int affected)
{
	if (!affected)   /* zmq's threads write too: leave them alone */
		return 0;
	reload();
	for (int i = 0; fault[what] == PAUSE && i < 6000; i++) {
		const struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
		nanosleep(&ten_ms, NULL);
		reload();
	}
	if (fault[what] == PAUSE)
		return 0;
	if (fault[what]) {
		errno = fault[what];
		return 1;
	}
	return 0;
}

/* How many of n bytes a write on an affected (or not) file may write: n,
 * fewer (a short write at the end of the budget), or -1 with errno set. */
static ssize_t write_allowed(int affected, size_t n)
{
	if (!affected)
		return (ssize_t)n;
	reload();
	if (!fault[F_WRITE])
		return (ssize_t)n;
	if (write_budget > 0) {
		size_t k = (unsigned long long)write_budget < n ? (size_t)write_budget : n;
		write_budget -= (long long)k;
		return (ssize_t)k;
	}
	errno = fault[F_WRITE];
	return -1;
}

#define REAL(ret, name, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (!real_##name) \
		*(void **)&real_##name = dlsym(RTLD_NEXT, #name)   /* POSIX's idiom */

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	const ssize_t k = fd > 2 ? write_allowed(fd_affected(fd), n) : (ssize_t)n;
	return k < 0 ? -1 : real_write(fd, buf, (size_t)k);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
	const ssize_t k = write_allowed(fd_affected(fd), n);
	return k < 0 ? -1 : real_pwrite(fd, buf, (size_t)k, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
	const ssize_t k = write_allowed(fd_affected(fd), n);
	return k < 0 ? -1 : real_pwrite64(fd, buf, (size_t)k, off);
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	if (should_fail(F_FSYNC, fd_affected(fd)))
		return -1;
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	if (should_fail(F_FSYNC, fd_affected(fd)))
		return -1;
	return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
	REAL(int, ftruncate, int, off_t);
	if (should_fail(F_TRUNCATE, fd_affected(fd)))
		return -1;
	return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
	REAL(int, ftruncate64, int, off64_t);
	if (should_fail(F_TRUNCATE, fd_affected(fd)))
		return -1;
	return real_ftruncate64(fd, len);
}

int rename(const char *a, const char *b)
{
	REAL(int, rename, const char *, const char *);
	if (should_fail(F_RENAME, path_affected(b)))
		return -1;
	return real_rename(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
	REAL(int, renameat, int, const char *, int, const char *);
	if (should_fail(F_RENAME, at_affected(db, b)))
		return -1;
	return real_renameat(da, a, db, b);
}

/* openat and openat64 are one wrapper under two names (both must exist: see
 * the top of the file); only creating a file can fail. */
#define OPENAT(name) \
	int name(int dirfd, const char *path, int flags, ...) \
	{ \
		REAL(int, name, int, const char *, int, ...); \
		mode_t mode = 0; \
		if (flags & O_CREAT) { \
			va_list ap; \
			va_start(ap, flags); \
			mode = (mode_t)va_arg(ap, int); \
			va_end(ap); \
			if (should_fail(F_OPEN, at_affected(dirfd, path))) \
				return -1; \
		} \
		return real_##name(dirfd, path, flags, mode); \
	}

OPENAT(openat)
OPENAT(openat64)
