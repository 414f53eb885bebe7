/*
 * security.c — CurveZMQ on isvdd's sockets: key files, authorised key sets
 * and the ZAP handler (ZeroMQ RFC 27) that admits clients.
 *
 * DESIGN
 *   With security.curve every socket (ingest and query ROUTERs, publish
 *   PUB) is a CURVE server with the secret key of security.secret_key_file.
 *   A CURVE handshake proves that the client holds the secret key of the
 *   public key it presents; whether that key may come in is asked of the
 *   ZAP handler, which libzmq reaches at inproc://zeromq.zap.01 in the
 *   daemon's own context:
 *
 *     client ──HELLO/INITIATE──► libzmq (I/O thread) ──ZAP request──►
 *        REP "inproc://zeromq.zap.01" ──sec_zap_serve()──► "200" admitted
 *                                                         "400" refused (logged)
 *
 *   Each socket has its own ZAP domain ("isvd-ingest", "isvd-query",
 *   "isvd-publish"), and the handler admits a key when it is in
 *   client_keys_dir, or in ingest_keys_dir for the ingest domain, or in
 *   query_keys_dir for the query and publish domains.  So a pipeline host
 *   can push but read nothing, and a dashboard read but never push.
 *
 *   The handler is served by a thread of its own (gate.c), which from
 *   start to stop owns the key sets and the connection table: a handshake
 *   waits only for other handshakes, never for the loop thread's disk
 *   writes (a hung fsync or checkpoint); it is bounded by
 *   limits.handshake_ms.  SIGHUP's sec_reload() runs on that thread too.
 *
 *   Fail closed.  ZMQ_ZAP_DOMAIN plus ZMQ_ZAP_ENFORCE_DOMAIN make libzmq
 *   refuse every CURVE client when no handler is bound (without enforce it
 *   would let any key in); the handler refuses any mechanism but CURVE; a
 *   NULL or PLAIN client never gets as far as ZAP, since a CURVE server
 *   speaks only CURVE.  The handler is bound before the sockets, so there
 *   is no window without it.  The environment variable ISVDD_TEST_NO_ZAP=1
 *   leaves it unbound, for the test that proves the fail-closed claim; it
 *   can only ever refuse clients, never admit one.
 *
 *   Keys are read at start (every problem refuses the start) and again on
 *   SIGHUP (a problem then keeps the sets in force).  A key set is a sorted
 *   array of 32-byte keys searched with bsearch().
 *
 *   Connection caps (conncap.c).  The handler also sees the peer address
 *   of every handshake, and refuses one while its address, or the daemon
 *   in all, has more connections open than limits.max_connections_per_address
 *   or limits.max_connections allow (a key is checked first, so that an
 *   unknown key is refused as such).  For that it runs without CURVE too
 *   whenever a cap is set: each socket then gets its ZAP domain (without
 *   ZMQ_ZAP_ENFORCE_DOMAIN, which concerns CURVE only), so that libzmq asks
 *   the handler about NULL handshakes, which it admits within the caps.
 *   Without CURVE and without caps no handler is bound and libzmq admits
 *   every NULL client, as before.
 */
#include "security.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "conncap.h"
#include "metrics.h"

#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93   /* libzmq >= 4.3 (a draft option in its header) */
#endif

#define SEC_ZAP_ENDPOINT  "inproc://zeromq.zap.01"
#define SEC_ZAP_BURST     256       /* ZAP requests answered per sec_zap_serve() */
#define SEC_ZAP_FRAMES    8

static const char *const role_names[SEC_ROLES_] = { "ingest", "query", "publish" };
static const char *const role_domains[SEC_ROLES_] = { "isvd-ingest", "isvd-query", "isvd-publish" };

struct keyset {
	uint8_t (*k)[SEC_KEY_BYTES];     /* sorted, owned */
	size_t n;
};

struct sec {
	const struct cfg *cfg;
	struct log_sink *log;
	bool curve;
	uint8_t secret[SEC_KEY_BYTES];
	struct keyset all, ingest, query;   /* client_, ingest_, query_keys_dir */
	void *zap;                          /* REP, or NULL */
	struct cc *cc;                      /* sec_set_conncap(); NULL: no caps */
	struct sec_counts counts;
	struct met *met;                    /* sec_set_metrics(); may be NULL */
};

/* Where problems go: a stream (--check) or the log (start-up, SIGHUP). */
struct report {
	FILE *errs;
	struct log_sink *log;
	int problems;
};

static void report(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct report *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->problems++;
	if (r->errs)
		fprintf(r->errs, "%s\n", msg);
	if (r->log)
		log_msg(r->log, CFG_LOG_ERROR, "%s", msg);
}

/* ------------------------------------------------------------- key files */

int sec_read_key_file(const char *path, bool want_secret, uint8_t key[SEC_KEY_BYTES],
                      char *why, size_t cap)
{
	char z85[ISVD_KEY_Z85_LEN + 1];

	if (isvd_key_file_read(path, want_secret, want_secret, z85, why, cap) != ISVD_KEY_OK)
		return -1;
	if (!zmq_z85_decode(key, z85)) {
		snprintf(why, cap, "%s: not a valid Z85 key", path);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------- key sets */

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SEC_KEY_BYTES);
}

static void keyset_fini(struct keyset *ks)
{
	free(ks->k);
	ks->k = NULL;
	ks->n = 0;
}

static bool keyset_has(const struct keyset *ks, const uint8_t *key)
{
	return ks->n && bsearch(key, ks->k, ks->n, SEC_KEY_BYTES, key_cmp) != NULL;
}

/* Reads every regular file of dir not starting with '.' as a public key
 * into *out (empty when dir is ""), reporting each problem under name.
 * Returns the number of problems; *out is filled only when there were none. */
static int load_dir(const char *name, const char *dir, struct keyset *out, struct report *r)
{
	struct keyset ks = { NULL, 0 };
	size_t cap = 0;
	const int before = r->problems;
	DIR *d;
	struct dirent *e;

	if (!dir[0]) {
		*out = ks;
		return 0;
	}
	if (!(d = opendir(dir))) {
		report(r, "%s: cannot open directory %s: %s", name, dir, strerror(errno));
		return 1;
	}
	while ((errno = 0, e = readdir(d)) != NULL) {
		char path[8192], why[1024];
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;   /* sub-directories and dangling links are not keys */
		if (ks.n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			void *p = realloc(ks.k, nc * SEC_KEY_BYTES);
			if (!p) {
				report(r, "%s: out of memory", name);
				break;
			}
			ks.k = p;
			cap = nc;
		}
		if (sec_read_key_file(path, false, ks.k[ks.n], why, sizeof why) == 0)
			ks.n++;
		else
			report(r, "%s: %s", name, why);
	}
	if (errno)
		report(r, "%s: cannot read directory %s: %s", name, dir, strerror(errno));
	closedir(d);
	if (r->problems != before) {
		keyset_fini(&ks);
		return r->problems - before;
	}
	if (ks.n)
		qsort(ks.k, ks.n, SEC_KEY_BYTES, key_cmp);
	*out = ks;
	return 0;
}

/* Loads the three directories of c; on success replaces *all, *in, *q. */
static int load_dirs(const struct cfg *c, struct keyset *all, struct keyset *in, struct keyset *q,
                     struct report *r)
{
	struct keyset a = { NULL, 0 }, i = { NULL, 0 }, k = { NULL, 0 };
	int problems = load_dir("security.client_keys_dir", c->security.client_keys_dir, &a, r) +
	               load_dir("security.ingest_keys_dir", c->security.ingest_keys_dir, &i, r) +
	               load_dir("security.query_keys_dir", c->security.query_keys_dir, &k, r);

	if (problems) {
		keyset_fini(&a);
		keyset_fini(&i);
		keyset_fini(&k);
		return problems;
	}
	keyset_fini(all);
	keyset_fini(in);
	keyset_fini(q);
	*all = a;
	*in = i;
	*q = k;
	return 0;
}

static int check_into(const struct cfg *cfg, struct report *r, uint8_t secret[SEC_KEY_BYTES],
                      struct keyset *all, struct keyset *in, struct keyset *q)
{
	char why[1024];

	if (!cfg->security.curve)
		return 0;
	if (!zmq_has("curve")) {
		report(r, "security.curve: this libzmq was built without CURVE support (it needs libsodium or "
		       "tweetnacl); install a libzmq with CURVE or set security.curve: false");
		return r->problems;
	}
	if (sec_read_key_file(cfg->security.secret_key_file, true, secret, why, sizeof why))
		report(r, "security.secret_key_file: %s", why);
	load_dirs(cfg, all, in, q, r);
	return r->problems;
}

int sec_check(const struct cfg *cfg, FILE *errs)
{
	struct report r = { errs, NULL, 0 };
	struct keyset a = { NULL, 0 }, i = { NULL, 0 }, q = { NULL, 0 };
	uint8_t secret[SEC_KEY_BYTES];
	int n = check_into(cfg, &r, secret, &a, &i, &q);

	memset(secret, 0, sizeof secret);
	keyset_fini(&a);
	keyset_fini(&i);
	keyset_fini(&q);
	return n;
}

/* ------------------------------------------------------------ the server */

/* Is endpoint reachable only from this host (ipc, inproc, tcp on loopback)? */
static bool local_only(const char *ep)
{
	const char *h;

	if (strncmp(ep, "tcp://", 6))
		return true;
	h = ep + 6;
	return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6) ||
	       !strncmp(h, "::1:", 4);
}

static void z85_of(const uint8_t *key, char out[SEC_Z85_LEN + 1])
{
	if (!zmq_z85_encode(out, key, SEC_KEY_BYTES))
		snprintf(out, SEC_Z85_LEN + 1, "?");
}

/* Binds the ZAP handler's REP socket.  0, or -1 after logging. */
static int bind_zap(struct sec *s, void *zctx)
{
	const int linger = 0;

	s->zap = zmq_socket(zctx, ZMQ_REP);
	if (!s->zap) {
		log_msg(s->log, CFG_LOG_ERROR, "cannot create the ZAP socket: %s", zmq_strerror(errno));
		return -1;
	}
	zmq_setsockopt(s->zap, ZMQ_LINGER, &linger, sizeof linger);
	if (zmq_bind(s->zap, SEC_ZAP_ENDPOINT) < 0) {
		log_msg(s->log, CFG_LOG_ERROR, "cannot bind the ZAP handler %s: %s", SEC_ZAP_ENDPOINT,
		        zmq_strerror(errno));
		return -1;
	}
	return 0;
}

int sec_create(const struct cfg *cfg, struct log_sink *log, void *zctx, struct sec **out)
{
	struct sec *s = calloc(1, sizeof *s);
	struct report r = { NULL, log, 0 };

	if (!s) {
		log_msg(log, CFG_LOG_ERROR, "cannot allocate the security state: %s", strerror(errno));
		return -1;
	}
	s->cfg = cfg;
	s->log = log;
	s->curve = cfg->security.curve;
	const bool caps = cfg->limits.max_connections_per_address || cfg->limits.max_connections;
	if (!s->curve) {
		const char *eps[3] = { cfg->endpoints.ingest, cfg->endpoints.query, cfg->endpoints.publish };
		for (int i = 0; i < 3; i++)
			if (!local_only(eps[i]))
				log_msg(log, CFG_LOG_WARN, "the %s endpoint %s is reachable from the network and "
				        "security.curve is false: anyone who can connect can %s", role_names[i],
				        eps[i], i == SEC_INGEST ? "push rows" : "read the model");
		if (cfg->security.client_keys_dir[0] || cfg->security.ingest_keys_dir[0] ||
		    cfg->security.query_keys_dir[0] || cfg->security.secret_key_file[0])
			log_msg(log, CFG_LOG_WARN, "security.* keys are set but security.curve is false: "
			        "they have no effect");
		if (caps && bind_zap(s, zctx))
			goto fail;
		*out = s;
		return 0;
	}
	if (check_into(cfg, &r, s->secret, &s->all, &s->ingest, &s->query))
		goto fail;

	char z85s[SEC_Z85_LEN + 1], z85p[SEC_Z85_LEN + 1];
	z85_of(s->secret, z85s);
	if (zmq_curve_public(z85p, z85s) != 0) {
		log_msg(log, CFG_LOG_ERROR, "security.secret_key_file: cannot derive the public key: %s",
		        zmq_strerror(errno));
		goto fail;
	}
	memset(z85s, 0, sizeof z85s);
	log_msg(log, CFG_LOG_INFO, "CURVE on: server public key %s; %zu client key%s on every socket, "
	        "%zu ingest-only, %zu query-only", z85p, s->all.n, s->all.n == 1 ? "" : "s",
	        s->ingest.n, s->query.n);
	if (s->all.n + s->ingest.n + s->query.n == 0)
		log_msg(log, CFG_LOG_WARN, "the keys directories are empty: every client is refused "
		        "until keys are added (SIGHUP re-reads them)");

	const char *test_off = getenv("ISVDD_TEST_NO_ZAP");
	if (test_off && !strcmp(test_off, "1")) {
		log_msg(log, CFG_LOG_WARN, "ISVDD_TEST_NO_ZAP=1: the ZAP handler is not started, so every "
		        "client is refused (a test of failing closed)");
		*out = s;
		return 0;
	}
	if (bind_zap(s, zctx))
		goto fail;
	*out = s;
	return 0;
fail:
	sec_destroy(s);
	return -1;
}

int sec_apply(struct sec *s, void *sock, enum sec_role role)
{
	const int ivl = (int)s->cfg->limits.handshake_ms, one = 1;
	const char *dom = role_domains[role];

	if (zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl) < 0) {
		log_msg(s->log, CFG_LOG_ERROR, "%s socket: ZMQ_HANDSHAKE_IVL: %s", role_names[role],
		        zmq_strerror(errno));
		return -1;
	}
	if (!s->curve) {   /* the handler, when bound, hears NULL handshakes for the caps */
		if (s->zap && zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, dom, strlen(dom)) < 0) {
			log_msg(s->log, CFG_LOG_ERROR, "%s socket: ZMQ_ZAP_DOMAIN: %s", role_names[role],
			        zmq_strerror(errno));
			return -1;
		}
		return 0;
	}
	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->secret, SEC_KEY_BYTES) < 0 ||
	    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, dom, strlen(dom)) < 0 ||
	    zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one) < 0) {
		log_msg(s->log, CFG_LOG_ERROR, "%s socket: cannot set up CURVE with an enforced ZAP domain "
		        "(libzmq >= 4.3 is needed): %s", role_names[role], zmq_strerror(errno));
		return -1;
	}
	return 0;
}

void *sec_zap_socket(const struct sec *s)
{
	return s ? s->zap : NULL;
}

/* The socket of a ZAP domain into *role (-1: none of ours).  Whether found. */
static bool domain_role(const char *domain, size_t dlen, int *role)
{
	*role = -1;
	for (int i = 0; i < SEC_ROLES_; i++)
		if (strlen(role_domains[i]) == dlen && !memcmp(role_domains[i], domain, dlen))
			*role = i;
	return *role >= 0;
}

/* Is key (from a ZAP request of domain) admitted?  *role is set. */
static bool admitted(const struct sec *s, const char *domain, size_t dlen, const uint8_t *key,
                     int *role)
{
	if (!domain_role(domain, dlen, role))
		return false;
	if (keyset_has(&s->all, key))
		return true;
	return *role == SEC_INGEST ? keyset_has(&s->ingest, key) : keyset_has(&s->query, key);
}

static void zap_reply(struct sec *s, zmq_msg_t *reqid, const char *code, const char *text,
                      const char *user)
{
	zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
	zmq_msg_send(reqid, s->zap, ZMQ_SNDMORE);
	zmq_send(s->zap, code, strlen(code), ZMQ_SNDMORE);
	zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(s->zap, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(s->zap, "", 0, 0);
}

void sec_zap_serve(struct sec *s)
{
	if (!s || !s->zap)
		return;
	for (int n = 0; n < SEC_ZAP_BURST; n++) {
		zmq_msg_t f[SEC_ZAP_FRAMES];
		size_t nf = 0;
		int more = 1;

		zmq_msg_init(&f[0]);
		if (zmq_msg_recv(&f[0], s->zap, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f[0]);
			return;
		}
		nf = 1;
		more = zmq_msg_more(&f[0]);
		while (more) {   /* the rest of the request is already here */
			zmq_msg_t extra;
			zmq_msg_t *m = nf < SEC_ZAP_FRAMES ? &f[nf] : &extra;
			zmq_msg_init(m);
			if (zmq_msg_recv(m, s->zap, 0) < 0) {
				zmq_msg_close(m);
				break;
			}
			more = zmq_msg_more(m);
			if (m == &extra)
				zmq_msg_close(m);
			else
				nf++;
		}
		/* version, request id, domain, address, routing id, mechanism, credentials... */
		const char *mech = nf > 5 ? zmq_msg_data(&f[5]) : "";
		const size_t mlen = nf > 5 ? zmq_msg_size(&f[5]) : 0;
		const bool curve = mlen == 5 && !memcmp(mech, "CURVE", 5) && nf == 7 &&
		                   zmq_msg_size(&f[6]) == SEC_KEY_BYTES;
		/* NULL: only when security.curve is off (a CURVE server speaks CURVE only) */
		const bool null = !s->curve && mlen == 4 && !memcmp(mech, "NULL", 4) && nf >= 6;
		char z85[SEC_Z85_LEN + 1] = "-", addr[64] = "?";
		int role = -1;
		bool ok = false;
		enum cc_verdict capped = CC_ADMIT;

		if (nf > 3)
			snprintf(addr, sizeof addr, "%.*s", (int)(zmq_msg_size(&f[3]) < 60 ? zmq_msg_size(&f[3]) : 60),
			         (const char *)zmq_msg_data(&f[3]));
		if (curve) {
			const uint8_t *key = zmq_msg_data(&f[6]);
			z85_of(key, z85);
			ok = admitted(s, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), key, &role);
		} else if (null) {
			ok = domain_role(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &role);
		}
		if (ok && nf > 3 && (capped = cc_admit(s->cc, zmq_msg_data(&f[3]), zmq_msg_size(&f[3]))))
			ok = false;
		{   /* REP must answer every request, even a malformed one */
			zmq_msg_t id;
			zmq_msg_init(&id);
			if (nf >= 2)
				zmq_msg_copy(&id, &f[1]);
			if (ok)
				zap_reply(s, &id, "200", "OK", z85);
			else
				zap_reply(s, &id, "400", "not authorised", "");
			zmq_msg_close(&id);
		}
		if (role >= 0 && curve && !capped) {
			if (ok)
				s->counts.admitted[role]++;
			else
				s->counts.refused[role]++;
			met_curve(s->met, (int)role, ok);
		}
		if (capped)
			s->counts.capped++;
		if (ok)
			log_msg(s->log, CFG_LOG_DEBUG, "%s client %s admitted on the %s socket (peer %s)",
			        curve ? "CURVE" : "NULL", z85, role_names[role], addr);
		else if (capped)
			log_refused(s->log, "client refused on the %s socket (peer %s): %s", role_names[role],
			            addr, capped == CC_PER_ADDRESS
			                  ? "more connections from this address are open than "
			                    "limits.max_connections_per_address allows"
			                  : "more connections are open than limits.max_connections allows");
		else if (!curve && !null)
			log_refused(s->log, "client refused (peer %s): mechanism %.*s, only %s is accepted",
			            addr, (int)(mlen < 16 ? mlen : 16), mech, s->curve ? "CURVE" : "NULL");
		else if (!curve)
			log_refused(s->log, "client refused (peer %s): unknown ZAP domain", addr);
		else
			log_refused(s->log, "CURVE client %s refused on the %s socket (peer %s): key not "
			            "authorised for it", z85, role >= 0 ? role_names[role] : "unknown", addr);
		for (size_t i = 0; i < nf; i++)
			zmq_msg_close(&f[i]);
	}
}

void sec_reload(struct sec *s)
{
	struct report r = { NULL, s ? s->log : NULL, 0 };

	if (!s || !s->curve)
		return;
	if (load_dirs(s->cfg, &s->all, &s->ingest, &s->query, &r)) {
		log_msg(s->log, CFG_LOG_ERROR, "keys not reloaded (%d problem%s); the previous keys stay in force",
		        r.problems, r.problems == 1 ? "" : "s");
		return;
	}
	log_msg(s->log, CFG_LOG_INFO, "keys reloaded: %zu on every socket, %zu ingest-only, %zu query-only",
	        s->all.n, s->ingest.n, s->query.n);
}

void sec_set_metrics(struct sec *s, struct met *met)
{
	s->met = met;
}

void sec_set_conncap(struct sec *s, struct cc *cc)
{
	s->cc = cc;
}

void sec_get_counts(const struct sec *s, struct sec_counts *c)
{
	if (s)
		*c = s->counts;
	else
		memset(c, 0, sizeof *c);
}

void sec_destroy(struct sec *s)
{
	if (!s)
		return;
	if (s->zap)
		zmq_close(s->zap);
	keyset_fini(&s->all);
	keyset_fini(&s->ingest);
	keyset_fini(&s->query);
	memset(s->secret, 0, sizeof s->secret);
	free(s);
}
