/*
 * keyfile.c — the CURVE key file reader (isvd_keyfile.h).
 *
 * The file is read whole (one byte more than the limit tells a larger
 * file), then walked line by line: blank lines and '#' comments skipped
 * (a comment naming "secret" marks a secret key file), surrounding white
 * space trimmed, and the one key line checked for length and alphabet.
 */
#include "isvd_keyfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool z85_char(int c)
{
	return c > 0 && strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#",
	                       c) != NULL;
}

/* Opens and reads path into buf (at most ISVD_KEY_FILE_MAX + 1 bytes, NUL
 * added), checking what the file is.  Returns an isvd_key_err. */
static int slurp(const char *path, bool private_mode, char *buf, size_t *got, char *why, size_t cap)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = ISVD_KEY_IO;

	if (fd < 0) {
		snprintf(why, cap, "%s: cannot open: %s", path, strerror(errno));
		return ISVD_KEY_IO;
	}
	*got = 0;
	if (fstat(fd, &st) != 0) {
		snprintf(why, cap, "%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	ret = ISVD_KEY_INVALID;
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, cap, "%s: not a regular file", path);
		goto out;
	}
	if (private_mode && (st.st_mode & 077)) {
		snprintf(why, cap, "%s: a secret key must not be accessible by group or others "
		         "(mode %04o); chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while (*got < ISVD_KEY_FILE_MAX + 1 &&
	       (n = read(fd, buf + *got, ISVD_KEY_FILE_MAX + 1 - *got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, cap, "%s: cannot read: %s", path, strerror(errno));
			ret = ISVD_KEY_IO;
			goto out;
		}
		*got += (size_t)n;
	}
	buf[*got] = '\0';
	ret = ISVD_KEY_OK;
	if (*got > ISVD_KEY_FILE_MAX) {
		snprintf(why, cap, "%s: larger than %d bytes; not a key file", path, ISVD_KEY_FILE_MAX);
		ret = ISVD_KEY_INVALID;
	} else if (memchr(buf, '\0', *got)) {
		snprintf(why, cap, "%s: contains a NUL byte; not a key file", path);
		ret = ISVD_KEY_INVALID;
	}
out:
	close(fd);
	return ret;
}

int isvd_key_file_read(const char *path, bool secret, bool private_mode,
                       char z85[ISVD_KEY_Z85_LEN + 1], char *why, size_t cap)
{
	char buf[ISVD_KEY_FILE_MAX + 2];
	size_t got, lines = 0;
	bool secret_mark = false;
	int ret = slurp(path, private_mode, buf, &got, why, cap);

	if (ret)
		return ret;
	for (char *line = buf, *next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		size_t len = strlen(line);
		while (len && isspace((unsigned char)line[len - 1]))
			line[--len] = '\0';
		while (isspace((unsigned char)*line))
			line++, len--;
		if (len == 0)
			continue;
		if (line[0] == '#') {
			if (strstr(line, "secret") || strstr(line, "SECRET"))
				secret_mark = true;
			continue;
		}
		if (++lines > 1) {
			snprintf(why, cap, "%s: more than one key line; a key file holds one Z85 key", path);
			return ISVD_KEY_INVALID;
		}
		if (len != ISVD_KEY_Z85_LEN) {
			snprintf(why, cap, "%s: the key line is %zu characters long; a Z85 key has %d", path,
			         len, ISVD_KEY_Z85_LEN);
			return ISVD_KEY_INVALID;
		}
		for (size_t i = 0; i < len; i++)
			if (!z85_char((unsigned char)line[i])) {
				snprintf(why, cap, "%s: character %zu of the key is not Z85", path, i + 1);
				return ISVD_KEY_INVALID;
			}
		memcpy(z85, line, ISVD_KEY_Z85_LEN + 1);
	}
	if (lines == 0) {
		snprintf(why, cap, "%s: no key in the file", path);
		return ISVD_KEY_INVALID;
	}
	if (!secret && secret_mark) {
		snprintf(why, cap, "%s: this is a secret key file; a public key (the .pub file) belongs here",
		         path);
		return ISVD_KEY_INVALID;
	}
	return ISVD_KEY_OK;
}
