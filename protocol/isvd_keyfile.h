/*
 * isvd_keyfile.h — the CURVE key file format, read the same way by the
 * daemon (its secret key, the admitted clients' public keys) and by
 * libisvd (the daemon's public key, the client's secret key).
 *
 * A key file is one line of 40 Z85 characters (a 32-byte CurveZMQ key),
 * optionally with '#' comment lines; `isvd keygen` writes a secret key
 * file whose comment says "secret", so that it is never mistaken for a
 * public key.  Plain C and POSIX: no zmq (callers decode the Z85 text).
 */
#ifndef ISVD_KEYFILE_H
#define ISVD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define ISVD_KEY_Z85_LEN   40      /* characters of a Z85-encoded key */
#define ISVD_KEY_FILE_MAX  4096    /* bytes a key file may hold */

enum isvd_key_err {
	ISVD_KEY_OK = 0,
	ISVD_KEY_IO = -1,            /* cannot open, stat or read the file */
	ISVD_KEY_INVALID = -2        /* not a key file of the kind wanted */
};

/* Reads path's key into z85 (40 characters and a NUL).  Refused: anything
 * but a regular file of at most ISVD_KEY_FILE_MAX bytes without NUL bytes
 * holding exactly one key line of Z85 characters; a file marked secret when
 * secret is false; and, when private_mode, a file accessible by group or
 * others.  Returns an isvd_key_err, with a reason naming path in why. */
int isvd_key_file_read(const char *path, bool secret, bool private_mode,
                       char z85[ISVD_KEY_Z85_LEN + 1], char *why, size_t cap);

#endif /* ISVD_KEYFILE_H */
