/*
 * kafka_client.c — what the shard (kafka.c) and the merger (kafka_merge.c)
 * share: `--check` of kafka.properties, librdkafka clients made from the
 * configuration, the changelog's image format and the reader of the
 * changelog, and the dispatch of kafka.h's entry points to the role.
 *
 * DESIGN
 *   An image is a checkpoint file (update/isvd_ckpt.h) whose second
 *   section holds the partition, its folded offset and its count of
 *   skipped messages instead of a client table (kafka.h has the layout):
 *   one message is one consistent state of one partition, checked by the
 *   checkpoint's CRC32C, and the tools that read checkpoints read images.
 *
 *   A reader is a consumer that joins no group (librdkafka wants a
 *   group.id to assign partitions; it is never used), assigned every
 *   partition of the changelog at its beginning: the merger keeps one for its life and
 *   hands each image over as it comes (kfk_reader_poll()); a shard makes
 *   one whenever it is given partitions and reads to the end of the
 *   changelog of that moment (kfk_reader_catch_up()), keeping the newest
 *   image of the partitions it was given.  Nothing is committed: a reader
 *   always starts at the beginning (compaction keeps that short).
 *
 * INVARIANTS
 *   Every librdkafka client's opaque starts with a struct kfk_opaque, and
 *   every client is made by kfk_client(), so that the log callback and
 *   the properties the operator gave apply to all of them alike.
 */
#define ISVD_KAFKA_INTERNAL
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isvd_bytes.h"
#include "isvd_ckpt.h"
#include "isvdd.h"
#include "loop.h"
#include "query.h"

/* Properties isvdd sets itself, and why: kfk_check() refuses them. */
static const struct {
	const char *name, *why;
} owned[] = {
	{ "bootstrap.servers", "kafka.brokers" },
	{ "metadata.broker.list", "kafka.brokers" },
	{ "group.id", "kafka.group" },
	{ "enable.auto.commit", "the offsets are in the changelog's images, never committed" },
	{ "enable.auto.offset.store", "the offsets are in the changelog's images, never committed" },
	{ "acks", "an image counts as published once all in-sync replicas have it (acks=all)" },
	{ "request.required.acks", "an image counts as published once all in-sync replicas have it "
	                           "(acks=all)" },
	{ "enable.idempotence", "images are produced idempotently" },
	{ "enable.partition.eof", "the changelog reader asks for it" },
};

int kfk_check(const struct cfg *cfg, FILE *errs)
{
	const struct cfg_map *m = &cfg->kafka.properties;
	int problems = 0;

	if (!cfg->kafka.on)
		return 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct cfg_kv *kv = &m->kv[i];
		char err[512] = "";
		size_t o;
		for (o = 0; o < sizeof owned / sizeof owned[0] && strcmp(owned[o].name, kv->key); o++)
			;
		if (o < sizeof owned / sizeof owned[0]) {
			snprintf(err, sizeof err, "isvdd sets it itself (%s); remove it", owned[o].why);
		} else {
			rd_kafka_conf_t *c = rd_kafka_conf_new();
			if (rd_kafka_conf_set(c, kv->key, kv->value, err, sizeof err) == RD_KAFKA_CONF_OK)
				err[0] = '\0';
			rd_kafka_conf_destroy(c);
		}
		if (err[0]) {
			problems++;
			fprintf(errs, "%s:%zu:%zu: kafka.properties.%s: %s\n", cfg->path ? cfg->path : "",
			        kv->line, kv->col, kv->key, err);
		}
	}
	return problems;
}

const char *kfk_version(void)
{
	static char v[64];   /* written once, the same text every time */

	snprintf(v, sizeof v, "librdkafka %s", rd_kafka_version_str());
	return v;
}

/* ------------------------------------------------------------ dispatch */

int kfk_start(struct isvdd *srv, struct kfk **out)
{
	struct kfk *k = calloc(1, sizeof *k);
	int rc;

	if (!k) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(errno));
		return -1;
	}
	k->srv = srv;
	srv->kafka = k;   /* the roles' callbacks may look */
	rc = srv->cfg->kafka.role == CFG_KAFKA_SHARD ? kfk_shard_start(srv, &k->shard)
	                                             : kfk_merge_start(srv, &k->merge);
	if (rc) {
		srv->kafka = NULL;
		free(k);
		return -1;
	}
	*out = k;
	return 0;
}

void kfk_stop(struct kfk *k)
{
	if (k && k->shard)
		kfk_shard_stop(k->shard);
}

void kfk_destroy(struct kfk *k)
{
	if (!k)
		return;
	kfk_shard_destroy(k->shard);
	kfk_merge_destroy(k->merge);
	free(k);
}

int kfk_on_checkpoint_request(void *ctx, uint64_t *seq, char *why, size_t cap)
{
	struct isvdd *srv = ctx;

	if (!srv->kafka || !srv->kafka->shard) {
		snprintf(why, cap, "a merger writes nothing: its model is rebuilt from the changelog "
		         "topic whenever it starts");
		return -1;
	}
	return kfk_shard_checkpoint(srv->kafka->shard, seq, why, cap);
}

/* -------------------------------------------------------------- clients */

/* librdkafka's log, at the daemon's levels (syslog's: ≤ 3 error, 4
 * warning, 5 and 6 info, 7 debug).  kafka.properties go to every client
 * the role makes, so that a consumer's property ignored by a producer (or
 * the other way round) is no warning. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	const struct kfk_opaque *o = rd_kafka_opaque(rk);
	int at = level <= 3 ? CFG_LOG_ERROR : level == 4 ? CFG_LOG_WARN
	       : level <= 6 ? CFG_LOG_INFO : CFG_LOG_DEBUG;

	if (!strcmp(fac, "CONFWARN") && strstr(buf, "will be ignored by this"))
		at = CFG_LOG_DEBUG;
	if (o && o->log)
		log_msg(o->log, at, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

rd_kafka_t *kfk_client(const struct cfg *cfg, rd_kafka_type_t type, const char *const *props,
                       struct kfk_opaque *opaque, void (*prepare)(rd_kafka_conf_t *conf))
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const struct cfg_map *m = &cfg->kafka.properties;
	char err[512];
	rd_kafka_t *rk;

	rd_kafka_conf_set_log_cb(conf, on_log);
	rd_kafka_conf_set_opaque(conf, opaque);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers, err, sizeof err))
		goto refused;
	for (size_t i = 0; props && props[i]; i += 2)
		if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof err))
			goto refused;
	for (size_t i = 0; i < m->n; i++)
		if (rd_kafka_conf_set(conf, m->kv[i].key, m->kv[i].value, err, sizeof err))
			goto refused;
	if (prepare)
		prepare(conf);
	if (!(rk = rd_kafka_new(type, conf, err, sizeof err))) {   /* conf is freed on success only */
		log_msg(opaque->log, CFG_LOG_ERROR, "kafka: cannot create a %s: %s",
		        type == RD_KAFKA_CONSUMER ? "consumer" : "producer", err);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
refused:
	log_msg(opaque->log, CFG_LOG_ERROR, "kafka: %s", err);
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int kfk_partitions(rd_kafka_t *rk, const char *topic, char *why, size_t cap)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	int n = -1;

	if (!t) {
		snprintf(why, cap, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	const rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, KFK_TIMEOUT_MS);
	if (e)
		snprintf(why, cap, "the metadata of topic %s: %s", topic, rd_kafka_err2str(e));
	else if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0)
		snprintf(why, cap, "topic %s: %s", topic,
		         md->topic_cnt == 1 && md->topics[0].err ? rd_kafka_err2str(md->topics[0].err)
		                                                 : "no partitions");
	else
		n = md->topics[0].partition_cnt;
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

int kfk_wakeup_pipe(rd_kafka_queue_t *q, int fds[2])
{
	if (pipe(fds))
		return -1;
	for (int i = 0; i < 2; i++)
		if (fcntl(fds[i], F_SETFL, O_NONBLOCK) || fcntl(fds[i], F_SETFD, FD_CLOEXEC)) {
			const int e = errno;
			close(fds[0]);
			close(fds[1]);
			fds[0] = fds[1] = -1;
			errno = e;
			return -1;
		}
	rd_kafka_queue_io_event_enable(q, fds[1], "!", 1);
	return 0;
}

void kfk_drain_wakeups(int fd)
{
	char buf[256];

	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* --------------------------------------------------------------- images */

int kfk_image_encode(const struct isvd_model *m, int32_t p, int64_t folded, uint64_t undecodable,
                     uint8_t **out, size_t *len)
{
	const size_t ml = m ? isvd_model_saved_size(m) : 0;
	const size_t total = ISVD_CKPT_OVERHEAD + ml + KFK_IMAGE_SECTION;
	uint8_t *b;
	size_t got = 0;
	int rc;

	if (m && ml == 0)
		return ISVD_ERR_INVALID;
	if (!(b = malloc(total)))
		return ISVD_ERR_NOMEM;
	if (m && (rc = isvd_model_save(m, b + ISVD_CKPT_HEADER, ml, &got)) != ISVD_OK) {
		free(b);
		return rc;
	}
	isvd_ckpt_put_header(b, m ? isvd_model_rows_seen(m) : 0, 0, ml, KFK_IMAGE_SECTION);
	uint8_t *k = b + ISVD_CKPT_HEADER + ml;
	memcpy(k, KFK_IMAGE_MAGIC, 8);
	isvd_put_le32(k + 8, (uint32_t)p);
	isvd_put_le32(k + 12, 0);
	isvd_put_le64(k + 16, (uint64_t)folded);
	isvd_put_le64(k + 24, undecodable);
	isvd_put_le32(b + total - 4, isvd_crc32c(0, b, total - 4));
	*out = b;
	*len = total;
	return ISVD_OK;
}

int kfk_image_parse(const void *buf, size_t len, struct kfk_image *img, const char **why)
{
	struct isvd_ckpt_view v;
	int rc;

	memset(img, 0, sizeof *img);
	if ((rc = isvd_ckpt_parse(buf, len, &v, why)))
		return rc;
	const uint8_t *k = v.clients;
	if (v.clients_len != KFK_IMAGE_SECTION || memcmp(k, KFK_IMAGE_MAGIC, 8) ||
	    isvd_get_le32(k + 12) != 0) {
		*why = "a checkpoint, but not a partition's image (no ISVDKAFK section)";
		return ISVD_ERR_FORMAT;
	}
	const uint32_t p = isvd_get_le32(k + 8);
	const int64_t folded = (int64_t)isvd_get_le64(k + 16);
	if (p > INT32_MAX || folded < -1) {
		*why = "partition or folded offset out of range";
		return ISVD_ERR_FORMAT;
	}
	if (!v.model && v.seq) {
		*why = "rows but no model image";
		return ISVD_ERR_FORMAT;
	}
	img->partition = (int32_t)p;
	img->folded = folded;
	img->undecodable = isvd_get_le64(k + 24);
	img->rows = v.seq;
	img->model = v.model;
	img->model_len = v.model_len;
	return ISVD_OK;
}

int kfk_model_from_image(struct isvdd *srv, const struct kfk_image *img, struct isvd_model **out,
                         char *why, size_t cap)
{
	const struct cfg *cfg = srv->cfg;
	struct isvd_model *m = NULL;
	struct isvd_options o;
	int rc;

	if (!img->model) {
		if ((rc = ing_new_model(cfg, srv->log, (size_t)cfg->model.dim, out)))
			snprintf(why, cap, "cannot create a model: %s", isvd_strerror(rc));
		return rc;
	}
	if ((rc = isvd_model_load(img->model, img->model_len, &m))) {
		snprintf(why, cap, "its model image: %s", isvd_strerror(rc));
		return rc;
	}
	isvd_model_options(m, &o);
	if (isvd_model_rows_seen(m) != img->rows) {
		snprintf(why, cap, "its model holds %llu rows, its header says %llu",
		         (unsigned long long)isvd_model_rows_seen(m), (unsigned long long)img->rows);
		isvd_model_destroy(m);
		return ISVD_ERR_FORMAT;
	}
	if (rec_model_differs(cfg, &o, REC_CHANGELOG, why, cap)) {
		isvd_model_destroy(m);
		return ISVD_ERR_MISMATCH;
	}
	ing_model_settings(cfg, srv->log, m);
	*out = m;
	return ISVD_OK;
}

int kfk_install(struct isvdd *srv, struct isvd_model *const *models, size_t n,
                uint64_t last_checkpoint_seq)
{
	struct isvd_model *m = NULL;
	int rc, err;

	if (n && (rc = isvd_model_merge((const struct isvd_model *const *)models, n, &m))) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: cannot merge %zu partition models: %s; queries "
		        "answer from the previous merge", n, isvd_strerror(rc));
		return -1;
	}
	ing_adopt_model(srv, m);
	srv->seq = m ? isvd_model_rows_seen(m) : 0;
	struct qry_view *v = qry_view_make(srv->model, srv->seq, &err);
	if (!v) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: cannot publish the model to the query thread: "
		        "%s; queries answer from the previous merge", isvd_strerror(err));
		return -1;
	}
	qry_publish_view(srv->qry, v, last_checkpoint_seq, ing_rate(srv, loop_now_ms()));
	return 0;
}

/* --------------------------------------------------------------- reader */

struct kfk_reader {
	struct kfk_opaque opaque;    /* first: the log callback reads it */
	struct isvdd *srv;
	rd_kafka_t *rk;
	char *topic;
	int nparts;
	int64_t *next;               /* per changelog partition: the next offset to read */
};

void kfk_reader_destroy(struct kfk_reader *r)
{
	if (!r)
		return;
	if (r->rk) {
		rd_kafka_consumer_close(r->rk);
		rd_kafka_destroy(r->rk);
	}
	free(r->topic);
	free(r->next);
	free(r);
}

struct kfk_reader *kfk_reader_create(struct isvdd *srv, const char *changelog)
{
	static const char *const props[] = {
		"enable.auto.commit", "false", "enable.auto.offset.store", "false",
		"enable.partition.eof", "true", "auto.offset.reset", "earliest",
		"client.id", "isvdd-changelog-reader",
		/* librdkafka wants one to assign partitions; it never joins it */
		"group.id", "isvdd-changelog-reader", NULL
	};
	struct kfk_reader *r = calloc(1, sizeof *r);
	rd_kafka_topic_partition_list_t *all = NULL;
	char why[300];

	if (!r || !(r->topic = strdup(changelog))) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(ENOMEM));
		free(r);
		return NULL;
	}
	r->opaque.log = srv->log;
	r->srv = srv;
	if (!(r->rk = kfk_client(srv->cfg, RD_KAFKA_CONSUMER, props, &r->opaque, NULL)))
		goto fail;
	rd_kafka_poll_set_consumer(r->rk);   /* its errors come with the messages */
	if ((r->nparts = kfk_partitions(r->rk, changelog, why, sizeof why)) < 0) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: the changelog: %s (create it, compacted: "
		        "README, \"Scale-out with Kafka\")", why);
		goto fail;
	}
	r->next = calloc((size_t)r->nparts, sizeof *r->next);
	all = rd_kafka_topic_partition_list_new(r->nparts);
	if (!r->next || !all) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(ENOMEM));
		goto fail;
	}
	for (int p = 0; p < r->nparts; p++)
		rd_kafka_topic_partition_list_add(all, changelog, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	const rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, all);
	rd_kafka_topic_partition_list_destroy(all);
	if (e) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: cannot read the changelog %s: %s", changelog,
		        rd_kafka_err2str(e));
		goto fail;
	}
	return r;
fail:
	kfk_reader_destroy(r);
	return NULL;
}

rd_kafka_queue_t *kfk_reader_queue(struct kfk_reader *r)
{
	return rd_kafka_queue_get_consumer(r->rk);
}

/* One message from the changelog: an image to on_image, an error logged. */
static void take(struct kfk_reader *r, const rd_kafka_message_t *m, kfk_image_fn *on_image,
                 void *ctx, uint64_t *refused)
{
	struct kfk_image img;
	const char *why = NULL;

	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {   /* offset: where the end was */
		if (m->partition >= 0 && m->partition < r->nparts && m->offset > r->next[m->partition])
			r->next[m->partition] = m->offset;
		return;
	}
	if (m->err) {
		log_refused(r->srv->log, "kafka: reading the changelog %s: %s", r->topic,
		            rd_kafka_message_errstr(m));
		return;
	}
	if (m->partition >= 0 && m->partition < r->nparts)
		r->next[m->partition] = m->offset + 1;
	if (kfk_image_parse(m->payload, m->len, &img, &why)) {
		(*refused)++;
		log_refused(r->srv->log, "kafka: changelog %s [%" PRId32 "] offset %" PRId64 ": not an "
		            "image: %s", r->topic, m->partition, m->offset, why);
		return;
	}
	rd_kafka_timestamp_type_t tt;
	const int64_t ts = rd_kafka_message_timestamp(m, &tt);
	on_image(ctx, &img, tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts);
}

int kfk_reader_poll(struct kfk_reader *r, kfk_image_fn *on_image, void *ctx, uint64_t *refused)
{
	rd_kafka_message_t *m;
	int n;

	for (n = 0; n < KFK_READ_BURST && (m = rd_kafka_consumer_poll(r->rk, 0)); n++) {
		take(r, m, on_image, ctx, refused);
		rd_kafka_message_destroy(m);
	}
	return n;
}

int kfk_reader_catch_up(struct kfk_reader *r, kfk_image_fn *on_image, void *ctx,
                        uint64_t *refused)
{
	int64_t *end = calloc((size_t)r->nparts, sizeof *end);
	const uint64_t until = loop_now_ms() + KFK_TIMEOUT_MS;
	int ret = -1;

	if (!end) {
		log_msg(r->srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(ENOMEM));
		return -1;
	}
	for (int p = 0; p < r->nparts; p++) {
		int64_t lo = 0, hi = 0;
		const rd_kafka_resp_err_t e =
			rd_kafka_query_watermark_offsets(r->rk, r->topic, p, &lo, &hi, KFK_TIMEOUT_MS);
		if (e) {
			log_msg(r->srv->log, CFG_LOG_ERROR, "kafka: the end of changelog %s [%d]: %s",
			        r->topic, p, rd_kafka_err2str(e));
			goto out;
		}
		end[p] = hi;
	}
	for (;;) {
		int left = 0;
		for (int p = 0; p < r->nparts; p++)
			left += r->next[p] < end[p];
		if (!left)
			break;
		const uint64_t now = loop_now_ms();
		if (now >= until) {
			log_msg(r->srv->log, CFG_LOG_ERROR, "kafka: the changelog %s could not be read to its "
			        "end within %d s", r->topic, KFK_TIMEOUT_MS / 1000);
			goto out;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, (int)(until - now));
		if (m) {
			take(r, m, on_image, ctx, refused);
			rd_kafka_message_destroy(m);
		}
	}
	ret = 0;
out:
	free(end);
	return ret;
}
