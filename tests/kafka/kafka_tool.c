/*
 * kafka_tool.c — isvd-kafka-tool, the Kafka side of the tests and the
 * benchmark: a mock cluster to run against, a producer of prepared
 * messages and a reader of a topic.  It never links isvdd: what it writes
 * and reads are plain Kafka messages.
 *
 *   isvd-kafka-tool mock [--brokers N] --topic NAME:PARTITIONS ...
 *       starts librdkafka's in-process mock cluster (rdkafka_mock.h) of N
 *       brokers (3), creates each topic, prints "bootstrap HOST:PORT,..."
 *       on standard output and stays up until SIGTERM or SIGINT
 *   isvd-kafka-tool produce --brokers B --topic T [--file F]
 *       produces the records of F (standard input when absent) with acks
 *       from all in-sync replicas and idempotence, waits for every delivery
 *       and prints "produced N"; exit 1 when any failed.  A record is
 *       u32 partition (0xffffffff: the partitioner's choice), u32 key
 *       length, u32 value length (little-endian), the key, the value
 *   isvd-kafka-tool consume --brokers B --topic T
 *       reads every partition of T from its beginning to its end (the high
 *       watermarks when it starts) and prints one JSON object per message:
 *       partition, offset, key and value (hex), headers (name: text)
 *
 * The mock cluster is librdkafka's own (no broker to install): consumer
 * groups, idempotent producers and acks=all work against it as against
 * Kafka; it keeps everything in memory and never compacts.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define TIMEOUT_MS 30000

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: isvd-kafka-tool mock [--brokers N] --topic NAME:PARTITIONS ...\n"
	        "       isvd-kafka-tool produce --brokers B --topic T [--file F]\n"
	        "       isvd-kafka-tool consume --brokers B --topic T\n");
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *const *props)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (brokers && rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err)) {
		fprintf(stderr, "isvd-kafka-tool: %s\n", err);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	for (size_t i = 0; props && props[i]; i += 2)
		if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof err)) {
			fprintf(stderr, "isvd-kafka-tool: %s\n", err);
			rd_kafka_conf_destroy(conf);
			return NULL;
		}
	rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
	if (!rk)
		fprintf(stderr, "isvd-kafka-tool: %s\n", err);
	return rk;
}

/* ------------------------------------------------------------------ mock */

static int run_mock(int argc, char **argv)
{
	int brokers = 3;
	const char *topics[64];
	size_t ntopics = 0;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
			brokers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--topic") && i + 1 < argc && ntopics < 64)
			topics[ntopics++] = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	/* the mock cluster lives in a handle of its own */
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
	if (!rk)
		return 1;
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (!mc) {
		fprintf(stderr, "isvd-kafka-tool: cannot start the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	for (size_t t = 0; t < ntopics; t++) {
		char name[256];
		const char *colon = strrchr(topics[t], ':');
		int parts = colon ? atoi(colon + 1) : 1;
		snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - topics[t]) : 255, topics[t]);
		rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, parts,
		                                                   brokers < 3 ? brokers : 3);
		if (e) {
			fprintf(stderr, "isvd-kafka-tool: topic %s: %s\n", name, rd_kafka_err2str(e));
			rd_kafka_mock_cluster_destroy(mc);
			rd_kafka_destroy(rk);
			return 1;
		}
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	while (!stop)
		pause();
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}

/* --------------------------------------------------------------- produce */

static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err) {
		if (failed++ < 5)
			fprintf(stderr, "isvd-kafka-tool: delivery failed: %s\n", rd_kafka_err2str(m->err));
	} else {
		delivered++;
	}
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int run_produce(const char *brokers, const char *topic, const char *file)
{
	static const char *const props[] = { "acks", "all", "enable.idempotence", "true",
	                                     "linger.ms", "5", "message.max.bytes", "100000000",
	                                     NULL };
	FILE *f = file ? fopen(file, "rb") : stdin;
	long sent = 0;
	int ret = 1;

	if (!f) {
		fprintf(stderr, "isvd-kafka-tool: %s: %s\n", file, strerror(errno));
		return 1;
	}
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err)) {
		fprintf(stderr, "isvd-kafka-tool: %s\n", err);
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	for (size_t i = 0; props[i]; i += 2)
		rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof err);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "isvd-kafka-tool: %s\n", err);
		goto out;
	}
	for (;;) {
		unsigned char h[12];
		size_t got = fread(h, 1, sizeof h, f);
		if (got == 0)
			break;
		if (got != sizeof h) {
			fprintf(stderr, "isvd-kafka-tool: a record header is cut short\n");
			goto done;
		}
		const uint32_t part = le32(h), kl = le32(h + 4), vl = le32(h + 8);
		char *buf = malloc((size_t)kl + vl + 1);
		if (!buf || fread(buf, 1, (size_t)kl + vl, f) != (size_t)kl + vl) {
			fprintf(stderr, "isvd-kafka-tool: a record is cut short\n");
			free(buf);
			goto done;
		}
		const int32_t to = part == UINT32_MAX ? RD_KAFKA_PARTITION_UA : (int32_t)part;
		rd_kafka_resp_err_t e;
		do {
			e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(to),
			                      RD_KAFKA_V_KEY(kl ? buf : NULL, kl),
			                      RD_KAFKA_V_VALUE((buf + kl), vl),
			                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
				rd_kafka_poll(rk, 100);
		} while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
		free(buf);
		if (e) {
			fprintf(stderr, "isvd-kafka-tool: produce: %s\n", rd_kafka_err2str(e));
			goto done;
		}
		sent++;
		rd_kafka_poll(rk, 0);
	}
	ret = 0;
done:
	rd_kafka_flush(rk, TIMEOUT_MS);
	if (delivered != sent || failed) {
		fprintf(stderr, "isvd-kafka-tool: %ld of %ld messages delivered\n", delivered, sent);
		ret = 1;
	}
	printf("produced %ld\n", delivered);
	rd_kafka_destroy(rk);
out:
	if (file)
		fclose(f);
	return ret;
}

/* --------------------------------------------------------------- consume */

static void print_hex(const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", ((const unsigned char *)p)[i]);
}

/* A header's value as a JSON string (printable ASCII kept, the rest \u escaped). */
static void print_text(const void *p, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		const unsigned char c = ((const unsigned char *)p)[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			putchar(c);
		else
			printf("\\u%04x", c);
	}
	putchar('"');
}

static void print_message(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs = NULL;

	printf("{\"partition\": %" PRId32 ", \"offset\": %" PRId64 ", \"key\": \"", m->partition,
	       m->offset);
	print_hex(m->key, m->key_len);
	printf("\", \"value\": \"");
	print_hex(m->payload, m->len);
	printf("\", \"headers\": {");
	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		const char *name;
		const void *val;
		size_t len;
		for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &len); i++) {
			printf("%s", i ? ", " : "");
			print_text(name, strlen(name));
			printf(": ");
			print_text(val, val ? len : 0);
		}
	}
	printf("}}\n");
}

static int run_consume(const char *brokers, const char *topic)
{
	static const char *const props[] = { "group.id", "isvd-kafka-tool", "enable.auto.commit",
	                                     "false", "enable.partition.eof", "true", NULL };
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, props);
	int ret = 1;

	if (!rk)
		return 1;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, TIMEOUT_MS);
	if (e || md->topic_cnt != 1 || md->topics[0].err) {
		fprintf(stderr, "isvd-kafka-tool: metadata of %s: %s\n", topic,
		        rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		goto out;
	}
	const int n = md->topics[0].partition_cnt;
	rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(n);
	int64_t *end = calloc((size_t)n, sizeof *end);
	int left = 0;
	for (int p = 0; p < n && end; p++) {
		int64_t lo = 0, hi = 0;
		if ((e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TIMEOUT_MS))) {
			fprintf(stderr, "isvd-kafka-tool: watermarks of %s [%d]: %s\n", topic, p,
			        rd_kafka_err2str(e));
			goto out_list;
		}
		end[p] = hi;
		if (hi > lo) {
			rd_kafka_topic_partition_list_add(want, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	if (left && rd_kafka_assign(rk, want)) {
		fprintf(stderr, "isvd-kafka-tool: cannot assign %s\n", topic);
		goto out_list;
	}
	while (left > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, TIMEOUT_MS);
		if (!m) {
			fprintf(stderr, "isvd-kafka-tool: no message for %d s\n", TIMEOUT_MS / 1000);
			goto out_list;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err) {
			fprintf(stderr, "isvd-kafka-tool: %s\n", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out_list;
		}
		print_message(m);
		if (m->offset + 1 == end[m->partition])
			left--;
		rd_kafka_message_destroy(m);
	}
	ret = 0;
out_list:
	free(end);
	rd_kafka_topic_partition_list_destroy(want);
out:
	fflush(stdout);
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return ret;
}

int main(int argc, char **argv)
{
	const char *brokers = NULL, *topic = NULL, *file = NULL;

	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "mock"))
		return run_mock(argc - 2, argv + 2);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
			brokers = argv[++i];
		else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
			topic = argv[++i];
		else if (!strcmp(argv[i], "--file") && i + 1 < argc)
			file = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (!brokers || !topic) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "produce"))
		return run_produce(brokers, topic, file);
	if (!strcmp(argv[1], "consume"))
		return run_consume(brokers, topic);
	usage();
	return 2;
}
