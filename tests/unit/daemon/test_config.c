/*
 * test_config.c — the configuration table (daemon/config.c): every key's
 * range check, walked from the table itself, so a key added later is
 * covered too.  Integers and numbers: both ends of the range load, one
 * step beyond either end is refused; choices: each loads, anything else is
 * refused; booleans, strings, endpoints, listen addresses and maps
 * likewise.  Also the cross-field rules of http.listen under
 * security.curve and of a kafka section.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "config.h"

static char dir[] = "/tmp/isvd-test-config-XXXXXX";

/* A kafka section needs model.dim, kafka.brokers and kafka.topic: a file
 * testing one of its keys gives the others. */
static void kafka_needs(FILE *f, const char *key)
{
	fprintf(f, "model:\n  dim: 4\nkafka:\n");
	if (strcmp(key, "brokers"))
		fprintf(f, "  brokers: 127.0.0.1:9092\n");
	if (strcmp(key, "topic"))
		fprintf(f, "  topic: rows\n");
}

/* Problems cfg_load() finds in a file holding just "section: {key: value}"
 * (and, for a kafka key, what a kafka section needs besides). */
static int load_one(const char *name, const char *value)
{
	char path[128], section[64];
	const char *dot = strchr(name, '.');
	struct cfg c;
	FILE *f, *errs;
	int problems;

	assert_non_null(dot);
	snprintf(section, sizeof section, "%.*s", (int)(dot - name), name);
	snprintf(path, sizeof path, "%s/c.yaml", dir);
	assert_non_null(f = fopen(path, "w"));
	if (!strcmp(section, "kafka")) {
		kafka_needs(f, dot + 1);
		fprintf(f, "  %s: %s\n", dot + 1, value);
	} else {
		fprintf(f, "%s:\n  %s: %s\n", section, dot + 1, value);
	}
	fclose(f);
	assert_non_null(errs = fopen("/dev/null", "w"));
	assert_int_equal(cfg_init_defaults(&c), 0);
	problems = cfg_load(&c, path, errs);
	cfg_fini(&c);
	fclose(errs);
	unlink(path);
	return problems;
}

static void accepts(const char *name, const char *value)
{
	if (load_one(name, value) != 0)
		fail_msg("%s: %s refused", name, value);
}

static void refuses(const char *name, const char *value)
{
	if (load_one(name, value) == 0)
		fail_msg("%s: %s accepted", name, value);
}

static void check_integer(const struct cfg_option_info *o)
{
	char v[64];

	snprintf(v, sizeof v, "%.0f", o->min);
	accepts(o->name, v);
	snprintf(v, sizeof v, "%.0f", o->max);
	accepts(o->name, v);
	snprintf(v, sizeof v, "%.0f", o->max + 1);
	refuses(o->name, v);
	snprintf(v, sizeof v, "%.0f", o->min - 1);   /* "-1" when min is 0 */
	refuses(o->name, v);
	refuses(o->name, "1.5");
	refuses(o->name, "'7'");                      /* quoted: a string, not a number */
	refuses(o->name, "twelve");
}

static void check_number(const struct cfg_option_info *o)
{
	char v[64];

	snprintf(v, sizeof v, "%.17g", o->max);
	accepts(o->name, v);
	snprintf(v, sizeof v, "%.17g", o->max + (o->max ? o->max * 1e-9 : 1e-9));
	refuses(o->name, v);
	snprintf(v, sizeof v, "%.17g", o->min);
	if (o->min_exclusive) {
		refuses(o->name, v);
		snprintf(v, sizeof v, "%.17g", o->min + (o->max - o->min) * 1e-6);
	}
	accepts(o->name, v);
	snprintf(v, sizeof v, "%.17g", o->min - 1);
	refuses(o->name, v);
	refuses(o->name, ".nan");
	refuses(o->name, "'0.5'");
}

static void check_choice(const struct cfg_option_info *o)
{
	for (size_t i = 0; o->choices[i]; i++)
		accepts(o->name, o->choices[i]);
	refuses(o->name, "no-such-choice");
	refuses(o->name, "''");
}

static void check_bool(const struct cfg_option_info *o)
{
	accepts(o->name, "false");
	if (strcmp(o->name, "security.curve"))   /* true needs keys: a cross-field rule */
		accepts(o->name, "true");
	refuses(o->name, "yes");
	refuses(o->name, "1");
	refuses(o->name, "'true'");
}

static void check_string(const struct cfg_option_info *o)
{
	char *big = malloc(5000);
	/* required when their section is there: a cross-field rule */
	const bool required = !strcmp(o->name, "kafka.brokers") || !strcmp(o->name, "kafka.topic");

	accepts(o->name, "some-name");
	if (o->nonempty || required)
		refuses(o->name, "''");
	else
		accepts(o->name, "''");
	memset(big, 'a', 4097);
	big[4097] = '\0';
	refuses(o->name, big);                        /* longer than a string may be */
	free(big);
	refuses(o->name, "[a, b]");                   /* not a scalar */
}

static void check_endpoint(const struct cfg_option_info *o)
{
	accepts(o->name, "tcp://127.0.0.1:1");
	accepts(o->name, "ipc:///tmp/isvd-test.sock");
	accepts(o->name, "inproc://isvd-test");
	refuses(o->name, "''");
	refuses(o->name, "tcp://");
	refuses(o->name, "http://127.0.0.1:1");
	refuses(o->name, "127.0.0.1:1");
}

static void check_listen(const struct cfg_option_info *o)
{
	accepts(o->name, "''");                       /* off */
	accepts(o->name, "127.0.0.1:5573");
	accepts(o->name, "0.0.0.0:0");                /* any free port */
	accepts(o->name, "localhost:80");
	accepts(o->name, "'[::1]:65535'");
	refuses(o->name, "127.0.0.1:65536");
	refuses(o->name, "127.0.0.1:");
	refuses(o->name, "127.0.0.1:-1");
	refuses(o->name, "127.0.0.1");
	refuses(o->name, ":5573");
	refuses(o->name, "example.com:80");           /* names are not resolved */
	refuses(o->name, "'::1:80'");                 /* IPv6 needs brackets */
	refuses(o->name, "'[::1:80'");
	refuses(o->name, "http://127.0.0.1:80");
	refuses(o->name, "[a, b]");
}

static void check_map(const struct cfg_option_info *o)
{
	accepts(o->name, "{}");
	accepts(o->name, "{a.b: c}");
	accepts(o->name, "{a.b: 1, c: 'two words', d: true}");
	refuses(o->name, "{a: 1, a: 2}");             /* a name twice */
	refuses(o->name, "{a: {b: c}}");              /* nested */
	refuses(o->name, "{a: [1, 2]}");
	refuses(o->name, "{a: }");                    /* no value */
	refuses(o->name, "{'': x}");
	refuses(o->name, "[a, b]");
	refuses(o->name, "'{}'");                     /* a string, not a mapping */
	refuses(o->name, "x");
}

static void test_every_key(void **state)
{
	struct cfg_option_info o;
	size_t n = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; cfg_option_info(i, &o); i++, n++) {
		if (!strcmp(o.type, "integer"))
			check_integer(&o);
		else if (!strcmp(o.type, "number"))
			check_number(&o);
		else if (!strcmp(o.type, "choice"))
			check_choice(&o);
		else if (!strcmp(o.type, "bool"))
			check_bool(&o);
		else if (!strcmp(o.type, "string"))
			check_string(&o);
		else if (!strcmp(o.type, "endpoint"))
			check_endpoint(&o);
		else if (!strcmp(o.type, "listen"))
			check_listen(&o);
		else if (!strcmp(o.type, "map"))
			check_map(&o);
		else
			fail_msg("%s: unknown type %s", o.name, o.type);
	}
	assert_true(n >= 40);   /* the table as of this writing; more only adds rows */
	rmdir(dir);
}

/* Problems cfg_load() finds in text (a whole file). */
static int load_text(const char *text)
{
	char path[128];
	struct cfg c;
	FILE *f, *errs;
	int problems;

	snprintf(path, sizeof path, "%s/t.yaml", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	assert_non_null(errs = fopen("/dev/null", "w"));
	assert_int_equal(cfg_init_defaults(&c), 0);
	problems = cfg_load(&c, path, errs);
	cfg_fini(&c);
	fclose(errs);
	unlink(path);
	return problems;
}

/* With security.curve on, http.listen on a non-loopback address is refused
 * unless http.allow_insecure says otherwise; loopback is always fine. */
static void test_http_listen_with_curve(void **state)
{
	static const char curve[] = "security:\n  curve: true\n  secret_key_file: s.key\n"
	                            "  client_keys_dir: keys\n";
	static const struct {
		const char *http;
		int problems;
	} cases[] = {
		{ "http:\n  listen: 0.0.0.0:5573\n", 1 },
		{ "http:\n  listen: 10.1.2.3:5573\n", 1 },
		{ "http:\n  listen: '[::]:5573'\n", 1 },
		{ "http:\n  listen: 0.0.0.0:5573\n  allow_insecure: true\n", 0 },
		{ "http:\n  listen: 127.0.0.1:5573\n", 0 },
		{ "http:\n  listen: 127.8.9.10:5573\n", 0 },
		{ "http:\n  listen: localhost:5573\n", 0 },
		{ "http:\n  listen: '[::1]:5573'\n", 0 },
		{ "http:\n  listen: ''\n", 0 },
		{ "", 0 },
	};
	char text[512];

	(void)state;
	memcpy(dir + strlen(dir) - 6, "XXXXXX", 6);   /* test_every_key used the template */
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(text, sizeof text, "%s%s", curve, cases[i].http);
		if (load_text(text) != cases[i].problems)
			fail_msg("case %zu: %s: expected %d problems", i, cases[i].http, cases[i].problems);
		/* without CURVE every address is allowed (isvdd warns at start) */
		if (load_text(cases[i].http) != 0)
			fail_msg("case %zu without curve refused", i);
	}
	rmdir(dir);
}

/* A kafka section: what it needs, what it excludes, and its map kept as
 * given (names, values, where each stands). */
static void test_kafka_section(void **state)
{
	static const struct {
		const char *text;
		int problems;
	} cases[] = {
		{ "kafka:\n", 3 },                                   /* brokers, topic, model.dim */
		{ "kafka:\n  brokers: b:1\n  topic: t\n", 1 },        /* model.dim */
		{ "model:\n  dim: 3\nkafka:\n  brokers: b:1\n  topic: t\n", 0 },
		{ "model:\n  dim: 3\nmonitor:\n  enabled: true\nkafka:\n  brokers: b:1\n  topic: t\n", 1 },
		{ "model:\n  dim: 3\nkafka:\n  brokers: b:1\n  topic: t\n  changelog_topic: t\n", 1 },
		{ "model:\n  dim: 3\nkafka:\n  brokers: b:1\n  topic: t\n  dead_letter_topic: t.isvd-models\n", 1 },
		{ "model:\n  dim: 3\nkafka:\n  brokers: b:1\n  topic: t\n  properties: {}\n  properties: {}\n", 1 },
		{ "model:\n  dim: 3\n", 0 },                         /* no section: no rule */
	};
	char path[128];
	struct cfg c;
	FILE *f, *errs;

	(void)state;
	memcpy(dir + strlen(dir) - 6, "XXXXXX", 6);
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (load_text(cases[i].text) != cases[i].problems)
			fail_msg("case %zu: %s: expected %d problems", i, cases[i].text, cases[i].problems);

	snprintf(path, sizeof path, "%s/k.yaml", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("model:\n  dim: 3\nkafka:\n  role: merge\n  brokers: b:1\n  topic: t\n"
	      "  properties:\n    session.timeout.ms: 6000\n    sasl.username: \"a b\"\n", f);
	fclose(f);
	assert_non_null(errs = fopen("/dev/null", "w"));
	assert_int_equal(cfg_init_defaults(&c), 0);
	assert_false(c.kafka.on);
	assert_int_equal(cfg_load(&c, path, errs), 0);
	assert_true(c.kafka.on);
	assert_int_equal(c.kafka.line, 3);
	assert_int_equal(c.kafka.role, CFG_KAFKA_MERGE);
	assert_int_equal(c.kafka.properties.n, 2);
	assert_string_equal(c.kafka.properties.kv[0].key, "session.timeout.ms");
	assert_string_equal(c.kafka.properties.kv[0].value, "6000");
	assert_int_equal(c.kafka.properties.kv[0].line, 8);
	assert_int_equal(c.kafka.properties.kv[0].col, 5);
	assert_string_equal(c.kafka.properties.kv[1].value, "a b");
	char buf[CFG_CHANGELOG_MAX];
	assert_string_equal(cfg_kafka_changelog(&c, buf, sizeof buf), "t.isvd-models");
	cfg_fini(&c);
	fclose(errs);
	unlink(path);
	rmdir(dir);
}

/* cfg_parse_listen(): the address and the loopback verdict http.c binds by. */
static void test_parse_listen(void **state)
{
	struct sockaddr_storage a;
	socklen_t len;
	bool loop;
	char why[160];

	(void)state;
	assert_int_equal(cfg_parse_listen("127.0.0.1:5573", &a, &len, &loop, why, sizeof why), 0);
	assert_int_equal(a.ss_family, AF_INET);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&a)->sin_port), 5573);
	assert_true(loop);
	assert_int_equal(cfg_parse_listen("192.168.1.1:0", &a, &len, &loop, why, sizeof why), 0);
	assert_false(loop);
	assert_int_equal(cfg_parse_listen("[::1]:1", &a, &len, &loop, why, sizeof why), 0);
	assert_int_equal(a.ss_family, AF_INET6);
	assert_true(loop);
	assert_int_equal(cfg_parse_listen("[::]:1", &a, &len, &loop, why, sizeof why), 0);
	assert_false(loop);
	assert_int_equal(cfg_parse_listen("host:1", &a, &len, &loop, why, sizeof why), -1);
	assert_non_null(strstr(why, "not resolved"));
}

static void test_defaults_load(void **state)
{
	struct cfg c;
	struct cfg_option_info o;

	(void)state;
	assert_int_equal(cfg_init_defaults(&c), 0);
	cfg_fini(&c);
	assert_false(cfg_option_info(1000, &o));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_load),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_http_listen_with_curve),
		cmocka_unit_test(test_kafka_section),
		cmocka_unit_test(test_parse_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
