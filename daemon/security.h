/*
 * security.h — CurveZMQ authentication of isvdd's three sockets: the key
 * files, the sets of authorised client keys, and the ZAP handler that
 * admits or refuses every connecting client.
 *
 * A struct sec is owned by the server (struct isvdd) and passed
 * explicitly.  With security.curve false it still exists and does only
 * what applies to every socket (the handshake timeout); with it true it
 * holds the server's secret key, the key sets and the ZAP socket.
 *
 * Key files are text: lines starting with '#' and blank lines are ignored,
 * and exactly one other line holds a 40-character Z85 key.  `isvd keygen
 * NAME` writes NAME.key (secret, mode 0600) and NAME.pub (public) in that
 * form; the comment of a secret file says so, and a secret file found
 * where a public key is expected is refused.
 */
#ifndef ISVDD_SECURITY_H
#define ISVDD_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "isvd_keyfile.h"
#include "log.h"

/* The three sockets; each has its own ZAP domain and admitted keys. */
enum sec_role { SEC_INGEST, SEC_QUERY, SEC_PUBLISH, SEC_ROLES_ };

#define SEC_KEY_BYTES 32
#define SEC_Z85_LEN   ISVD_KEY_Z85_LEN

struct sec;

/* Reads a key file (protocol/isvd_keyfile.h) and decodes its key.  want_secret
 * refuses a file that is accessible by group or others (chmod 600) and
 * !want_secret one whose comment marks it secret.  Returns 0 with key
 * filled, or -1 with a message naming path in why. */
int sec_read_key_file(const char *path, bool want_secret, uint8_t key[SEC_KEY_BYTES],
                      char *why, size_t cap);

/* Checks what cfg's security section needs from the world, for --check and
 * for start-up alike: libzmq's CURVE support, the secret key file (present,
 * mode 0600, a valid key) and every keys directory (readable, every file in
 * it a public key).  Every problem is printed to errs as "key: message";
 * returns their number (0 = fine, and always 0 with curve off). */
int sec_check(const struct cfg *cfg, FILE *errs);

/* Creates the security state for cfg in the ZeroMQ context zctx: loads the
 * keys and, with curve or a connection cap, binds the ZAP handler (a REP socket on
 * inproc://zeromq.zap.01) — before any socket that relies on it is bound.
 * Logs what it loaded, and warns when curve is off and an endpoint is not
 * loopback.  Returns 0 and sets *out (the caller owns it, release with
 * sec_destroy()), or -1 after logging why. */
int sec_create(const struct cfg *cfg, struct log_sink *log, void *zctx, struct sec **out);

/* Sets the options of a socket about to be bound for role: the handshake
 * timeout and, with curve, CURVE server, secret key, ZAP domain and ZAP
 * domain enforcement; without curve, the ZAP domain when the handler is
 * bound (the connection caps).  Returns 0, or -1 after logging why. */
int sec_apply(struct sec *s, void *sock, enum sec_role role);

/* The ZAP socket for zmq_poll (ZMQ_POLLIN), or NULL when none. */
void *sec_zap_socket(const struct sec *s);

/* Answers the ZAP requests waiting, without blocking. */
void sec_zap_serve(struct sec *s);

/* Re-reads the keys directories (SIGHUP).  On a problem the old sets stay
 * in force and the problem is logged. */
void sec_reload(struct sec *s);

/* Counters for the summary line. */
struct sec_counts {
	uint64_t admitted[SEC_ROLES_], refused[SEC_ROLES_];   /* CURVE keys */
	uint64_t capped;             /* handshakes refused by the connection caps */
};
void sec_get_counts(const struct sec *s, struct sec_counts *c);
/* Also counts admissions and refusals in met (metrics.c) from now on. */
struct met;
void sec_set_metrics(struct sec *s, struct met *met);

/* From now on the handler also applies the connection caps of cc
 * (conncap.c; NULL: none) to every handshake.  The handler is bound (by
 * sec_create()) when security.curve is on or a cap is set. */
struct cc;
void sec_set_conncap(struct sec *s, struct cc *cc);

/* Closes the ZAP socket and frees everything.  sec_destroy(NULL) is a no-op. */
void sec_destroy(struct sec *s);

#endif /* ISVDD_SECURITY_H */
