/*
 * kafka.h — isvdd on Kafka: with a `kafka:` section the daemon is a shard
 * (kafka.c) or a merger (kafka_merge.c) instead of taking pushes on its
 * ingest socket (README, "Scale-out with Kafka").
 *
 *   producers ──► rows topic (partitions) ──► shards: one model per assigned
 *      partition (kafka.c) ──images──► changelog topic ──► mergers: the newest
 *      image of every partition, merged (kafka_merge.c) ──► query, publish
 *
 * The pieces both roles share live in kafka_client.c: librdkafka handles
 * made from the configuration (kafka.brokers, kafka.properties), the
 * changelog's image format, and reading the changelog.  kafka_format.c
 * decodes a message of rows in kafka.format.  kafka_none.c stands in for
 * all of them when isvdd is built without librdkafka (meson -Dkafka).
 *
 * THE STATE OF A PARTITION
 *   (its model, the last offset folded into it): a model is the fold of
 *   exactly the decodable rows at offsets ≤ folded, each once.  An image on
 *   the changelog carries that pair in one message, so every image is a
 *   state the partition really had; the newest is the one with the highest
 *   folded offset.  A shard that is given a partition starts from the
 *   newest image and reads on at folded + 1, which is why a shard killed
 *   at any moment loses nothing and doubles nothing.
 */
#ifndef ISVDD_KAFKA_H
#define ISVDD_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "isvd_model.h"
#include "isvd_proto.h"

struct isvdd;
struct kfk;

/* ------------------------------------------------- the daemon's side */

/* `isvdd --check`: with a kafka section, every kafka.properties entry
 * librdkafka refuses for the clients the role makes, or that isvdd sets
 * itself, printed to errs as "file:line:col: kafka.properties.NAME: why".
 * Returns the number of problems (built without Kafka: 1 for the section). */
int kfk_check(const struct cfg *cfg, FILE *errs);

/* "librdkafka x.y.z", or NULL when built without Kafka. */
const char *kfk_version(void);

/* Starts the role of srv->cfg->kafka.role: its librdkafka clients and the
 * loop's registrations (a pollable, timers).  0 and *out, or -1 after
 * logging why. */
int kfk_start(struct isvdd *srv, struct kfk **out);

/* At stop, on the loop thread: a shard folds what it has read, publishes
 * the image of every partition that moved and leaves the group; a merger
 * just stops reading.  The role serves nothing afterwards. */
void kfk_stop(struct kfk *k);

/* Frees everything.  kfk_destroy(NULL) is a no-op. */
void kfk_destroy(struct kfk *k);

/* What the log and info's `kafka` map say about the ingest socket, which a
 * shard or a merger does not bind, into buf.  Returns buf. */
#define KFK_NOTE_MAX 512
static inline const char *kfk_ingest_note(const struct cfg *cfg, char *buf, size_t cap)
{
	char changelog[CFG_CHANGELOG_MAX];

	if (cfg->kafka.role == CFG_KAFKA_SHARD)
		snprintf(buf, cap, "the ingest socket (%s) is not bound: this shard folds the rows of "
		         "Kafka topic %.200s", cfg->endpoints.ingest, cfg->kafka.topic);
	else
		snprintf(buf, cap, "the ingest socket (%s) is not bound: this merger serves the merge of "
		         "the partition images on Kafka topic %s", cfg->endpoints.ingest,
		         cfg_kafka_changelog(cfg, changelog, sizeof changelog));
	return buf;
}

/* The query thread's `checkpoint` op (qry_hooks.checkpoint): a shard
 * publishes its images now and answers once they are acknowledged; a
 * merger has nothing of its own to write and refuses. */
int kfk_on_checkpoint_request(void *srv, uint64_t *seq, char *why, size_t cap);

/* --------------------------------------------- shared by the two roles */

#ifdef ISVD_KAFKA_INTERNAL
#include <librdkafka/rdkafka.h>

#include "log.h"

#define KFK_TIMEOUT_MS 10000   /* metadata, watermarks, a flush of images */

/* The two roles (kafka.c, kafka_merge.c) behind struct kfk, which
 * kafka_client.c's kfk_start() and the rest dispatch to. */
struct kfk_shard;
struct kfk_merge;
struct kfk {
	struct isvdd *srv;
	struct kfk_shard *shard;     /* exactly one of the two */
	struct kfk_merge *merge;
};
int kfk_shard_start(struct isvdd *srv, struct kfk_shard **out);
void kfk_shard_stop(struct kfk_shard *s);
void kfk_shard_destroy(struct kfk_shard *s);
/* Publishes every image that moved and waits for the acknowledgements;
 * 0 with *seq the rows the acknowledged images hold, or -1 with why. */
int kfk_shard_checkpoint(struct kfk_shard *s, uint64_t *seq, char *why, size_t cap);
int kfk_merge_start(struct isvdd *srv, struct kfk_merge **out);
void kfk_merge_destroy(struct kfk_merge *m);

/* Every opaque handed to kfk_client() points at a structure whose first
 * member is this: librdkafka's log callback finds the log through it. */
struct kfk_opaque {
	struct log_sink *log;
};

/* A librdkafka client of type for cfg: kafka.brokers, then the role's own
 * settings (props: name, value, ..., NULL), then kafka.properties (which
 * kfk_check() has vetted), librdkafka's log going to opaque's log (see
 * struct kfk_opaque).  prepare (may be NULL) sets the role's callbacks on
 * the configuration.  NULL after logging why. */
rd_kafka_t *kfk_client(const struct cfg *cfg, rd_kafka_type_t type, const char *const *props,
                       struct kfk_opaque *opaque, void (*prepare)(rd_kafka_conf_t *conf));

/* The partition count of topic, asking the cluster (at most
 * KFK_TIMEOUT_MS).  > 0, or -1 with why (no such topic, no broker). */
int kfk_partitions(rd_kafka_t *rk, const char *topic, char *why, size_t cap);

/* A pipe whose read end polls readable when rk's queue q receives
 * something (rd_kafka_queue_io_event_enable()): the loop's pollable.
 * kfk_drain_wakeups() empties it.  0, or -1 with errno. */
int kfk_wakeup_pipe(rd_kafka_queue_t *q, int fds[2]);
void kfk_drain_wakeups(int fd);
/* After a burst of polls on q that stopped at its limit (full) or at a
 * poll that returned nothing: whether to come back without waiting for the
 * pipe, which speaks only when q goes from empty to not empty — and a poll
 * that meets only librdkafka's own events may return nothing with messages
 * still queued. */
static inline bool kfk_more_waiting(rd_kafka_queue_t *q, bool full)
{
	return full || rd_kafka_queue_length(q) > 0;
}

/* --- the changelog's image of a partition: a checkpoint file
 * (update/isvd_ckpt.h: seq = rows in the model, lsn 0, the model image)
 * whose section after the image, where a daemon's checkpoint keeps its
 * client table, is the partition's:
 *
 *     0 "ISVDKAFK"   8 u32 partition   12 u32 0
 *    16 i64 folded offset (-1: none)   24 u64 undecodable messages skipped
 *
 * So `isvd inspect`, `isvd merge` and `isvdd --seed` take an image as
 * they take a checkpoint.  The message's key is the partition in decimal. */
#define KFK_IMAGE_MAGIC   "ISVDKAFK"
#define KFK_IMAGE_SECTION 32u

struct kfk_image {
	int32_t partition;
	int64_t folded;              /* the last offset folded in; -1: none */
	uint64_t undecodable;
	uint64_t rows;               /* the model's rows (the checkpoint's seq) */
	const uint8_t *model;        /* into the parsed buffer; NULL: no model yet */
	size_t model_len;
};

/* The image of partition p's state into *out (malloc'd, the caller frees
 * it).  m may be NULL (nothing folded yet).  An isvd_err. */
int kfk_image_encode(const struct isvd_model *m, int32_t p, int64_t folded, uint64_t undecodable,
                     uint8_t **out, size_t *len);
/* Checks an image (the checkpoint's checks, then the section's) and fills
 * *img, pointing into buf.  ISVD_OK, or an isvd_err with *why. */
int kfk_image_parse(const void *buf, size_t len, struct kfk_image *img, const char **why);

/* A model for partition p made from an image: loaded, held to the
 * configuration's model.* (a shard must not continue, nor a merger merge,
 * another model), with the settings an image does not carry applied.
 * img->model NULL gives a new empty model.  ISVD_OK, or an isvd_err with
 * why (ISVD_ERR_MISMATCH: another model). */
int kfk_model_from_image(struct isvdd *srv, const struct kfk_image *img, struct isvd_model **out,
                         char *why, size_t cap);

/* --- reading the changelog from its beginning.  A reader is a consumer
 * that joins no group, assigned every partition of the changelog topic at
 * its beginning; each image it reads goes to on_image (the message's
 * timestamp in ms, -1 when it has none).  A damaged image is logged
 * (rate-limited) and counted in *refused. */
typedef void kfk_image_fn(void *ctx, const struct kfk_image *img, int64_t ts_ms);
struct kfk_reader;
/* NULL after logging why (also when the changelog topic does not exist). */
struct kfk_reader *kfk_reader_create(struct isvdd *srv, const char *changelog);
void kfk_reader_destroy(struct kfk_reader *r);
/* The consumer's queue, for kfk_wakeup_pipe(). */
rd_kafka_queue_t *kfk_reader_queue(struct kfk_reader *r);
/* Hands what has arrived to on_image, without waiting, at most
 * KFK_READ_BURST messages.  Returns the messages taken (KFK_READ_BURST:
 * more may wait). */
#define KFK_READ_BURST 4096
int kfk_reader_poll(struct kfk_reader *r, kfk_image_fn *on_image, void *ctx, uint64_t *refused);
/* Reads every image there is now (to the high watermarks of this moment,
 * waiting at most KFK_TIMEOUT_MS).  0, or -1 after logging why. */
int kfk_reader_catch_up(struct kfk_reader *r, kfk_image_fn *on_image, void *ctx,
                        uint64_t *refused);

/* Installs the merge of models[0..n) (in that order; n may be 0: no model
 * yet) as the daemon's model: what publish.c snapshots and, through a new
 * view, what the query thread answers from (last_checkpoint_seq: info's,
 * the rows durable elsewhere).  0, or -1 after logging why (the daemon
 * keeps serving the previous model). */
int kfk_install(struct isvdd *srv, struct isvd_model *const *models, size_t n,
                uint64_t last_checkpoint_seq);

/* --- kafka_format.c: a message of rows */

/* Decodes the len bytes of a message in cfg's kafka.format into rows
 * (row-major, dim values a row, malloc'd into *rows, *nrows of them) and
 * holds them to what the engine takes: model.dim, finite values (a gap —
 * NaN, msgpack nil, JSON null, an empty CSV field — only under model.missing
 * impute, and never a whole row of them).  0, or -1 with why (*rows NULL). */
int kfk_decode_rows(const struct cfg *cfg, const void *buf, size_t len, double **rows,
                    size_t *nrows, char *why, size_t cap);

/* The partition's entry of info's `kafka` map and the map itself are
 * encoded by protocol/ (isvd_proto_kafka_encode()); each role fills them. */
#endif /* ISVD_KAFKA_INTERNAL */

#endif /* ISVDD_KAFKA_H */
