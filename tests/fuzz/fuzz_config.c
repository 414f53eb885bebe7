/*
 * fuzz_config.c — libFuzzer target over isvdd's configuration loader
 * (daemon/config.c: cfg_load(), libyaml's event parser underneath).
 *
 * The input is written to a file and loaded over the defaults, as
 * `isvdd --config` does.  Besides crashes, leaks and UB it checks the
 * loader's promises: it returns a count >= 0; a file it accepts (0
 * problems) leaves every value in its documented range (the table in
 * config.c) and the forget/half_life rule applied; cfg_fini() frees all.
 */
#include <math.h>

#include "config.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz_config: %s:%d: %s\n", \
                 __FILE__, __LINE__, #c); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	char dir[256], path[300];
	struct cfg c;
	int problems;

	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	fuzz_dir(dir);
	snprintf(path, sizeof path, "%s/config.yaml", dir);
	fuzz_write("config.yaml", data, size);

	CHECK(cfg_init_defaults(&c) == 0);
	problems = cfg_load(&c, path, devnull);
	CHECK(problems >= 0);
	if (problems == 0) {
		CHECK(c.model.rank >= 1);
		CHECK(c.model.forget > 0 && c.model.forget <= 1);
		CHECK(c.model.half_life == 0 || fabs(c.model.forget - pow(2.0, -1.0 / c.model.half_life)) < 1e-12);
		CHECK(c.batching.max_rows >= 1);
		CHECK(c.limits.max_message_bytes >= 1024);
		CHECK(c.limits.max_pending_pushes >= 1);
		CHECK(c.endpoints.ingest && c.endpoints.query && c.endpoints.publish);
		CHECK(strcmp(c.endpoints.ingest, c.endpoints.query) && strcmp(c.endpoints.query, c.endpoints.publish) &&
		      strcmp(c.endpoints.ingest, c.endpoints.publish));
		CHECK(c.storage.dir && c.storage.dir[0]);
		CHECK(!c.security.curve || c.security.secret_key_file[0]);
		if (c.http.listen[0]) {   /* what loaded, http.c can bind; CURVE keeps it on loopback */
			struct sockaddr_storage a;
			socklen_t len;
			bool loopback;
			char why[160];
			CHECK(cfg_parse_listen(c.http.listen, &a, &len, &loopback, why, sizeof why) == 0);
			CHECK(!c.security.curve || c.http.allow_insecure || loopback);
		}
	}
	cfg_fini(&c);
	return 0;
}
