/*
 * kafka_merge.c — isvdd as a merger (kafka.role: merge): it reads the
 * changelog topic from its beginning, keeps the newest image of every
 * partition of the rows topic, merges them every kafka.merge_every_ms when
 * any changed, and serves the result on the query and publish sockets as
 * a single daemon serves its model.  The ingest socket is not bound.
 *
 * DESIGN
 *     changelog ──reader (kafka_client.c)──► on_image(): the image with the
 *        highest folded offset of each partition, loaded (kfk_model_from_
 *        image(): another model's images are refused) ──merge timer──►
 *        kfk_install(): isvd_model_merge() of them, in partition order
 *
 *   "Newest" is the highest folded offset, not the latest message: a shard
 *   that stalled and lost its partitions may still publish an older state
 *   afterwards, and every image is a state the partition really had
 *   (kafka.h), so the furthest one is the one to merge.  The merger keeps
 *   nothing of its own: restarted, it reads the same images and merges the
 *   same models in the same order, and two mergers side by side serve the
 *   same model once they have read the same changelog.  Until the
 *   changelog topic exists it looks again every second.
 *
 * INVARIANTS
 *   part[p].model, when set, was loaded from the image of partition p with
 *   the highest folded offset read so far; dirty is set when any changed
 *   since the last merge.
 */
#define ISVD_KAFKA_INTERNAL
#include "kafka.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isvdd.h"
#include "loop.h"
#include "query.h"

#define MERGE_RETRY_MS  1000        /* looking for the changelog topic again */
#define MERGE_MAX_PARTS (1 << 20)   /* partition numbers beyond are refused */

struct mpart {
	struct isvd_model *model;    /* NULL: no image of this partition yet */
	int64_t folded;
	uint64_t rows, undecodable;
	int64_t ts_ms;               /* the image's timestamp (-1: none) */
};

struct kfk_merge {
	struct isvdd *srv;
	const struct cfg *cfg;
	char *changelog;
	struct kfk_reader *reader;   /* NULL until the changelog exists */
	rd_kafka_queue_t *queue;
	int wake[2];
	int io, t_more, t_merge, t_retry;
	struct mpart *part;          /* by partition number */
	size_t npart;
	bool dirty;
	uint64_t images, refused;
	struct isvd_model **merge_in;
};

/* kfk_image_fn: an image replaces its partition's when it is further. */
static void on_image(void *ctx, const struct kfk_image *img, int64_t ts_ms)
{
	struct kfk_merge *g = ctx;
	char why[400];
	const int32_t p = img->partition;

	if (p >= MERGE_MAX_PARTS) {
		g->refused++;
		return;
	}
	if ((size_t)p >= g->npart) {
		const size_t n = (size_t)p + 1;
		struct mpart *np = realloc(g->part, n * sizeof *np);
		struct isvd_model **mi = np ? realloc(g->merge_in, n * sizeof *mi) : NULL;
		if (np)
			g->part = np;
		if (!mi) {
			log_msg(g->srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(ENOMEM));
			g->refused++;
			return;
		}
		g->merge_in = mi;
		memset(np + g->npart, 0, (n - g->npart) * sizeof *np);
		g->npart = n;
	}
	struct mpart *mp = &g->part[p];
	g->images++;
	if (mp->model && img->folded <= mp->folded)
		return;   /* not further than what is merged */
	struct isvd_model *m = NULL;
	if (kfk_model_from_image(g->srv, img, &m, why, sizeof why)) {
		g->refused++;
		log_refused(g->srv->log, "kafka: the image of partition %" PRId32 " at offset %" PRId64
		            " is refused: %s", p, img->folded, why);
		return;
	}
	isvd_model_destroy(mp->model);
	mp->model = m;
	mp->folded = img->folded;
	mp->rows = img->rows;
	mp->undecodable = img->undecodable;
	mp->ts_ms = ts_ms;
	g->dirty = true;
}

/* What the reader has, KFK_READ_BURST messages at most; when more wait
 * (kfk_more_waiting()), again after the loop's turn. */
static void read_images(struct kfk_merge *g)
{
	if (!g->reader)
		return;
	const int n = kfk_reader_poll(g->reader, on_image, g, &g->refused);
	if (kfk_more_waiting(g->queue, n == KFK_READ_BURST))
		loop_timer_at(g->srv->loop, g->t_more, loop_now_ms());
}

static void on_wake(void *ctx)
{
	struct kfk_merge *g = ctx;

	kfk_drain_wakeups(g->wake[0]);
	read_images(g);
}

static void on_more(void *ctx, uint64_t now)
{
	read_images(ctx);
}

/* info's `kafka` map, for the query thread. */
static void publish_info(struct kfk_merge *g)
{
	struct isvd_proto_kafka k = { 0 };
	struct isvd_proto_kafka_partition *pp = calloc(g->npart + 1, sizeof *pp);
	const double now = loop_unix_time();
	char note[KFK_NOTE_MAX];
	uint8_t *out = NULL;
	size_t len = 0;

	if (!pp)
		return;
	k.role = (char *)"merge";
	k.topic = g->cfg->kafka.topic;
	k.changelog_topic = g->changelog;
	k.ingest = (char *)kfk_ingest_note(g->cfg, note, sizeof note);
	k.images = g->images;
	k.images_failed = g->refused;
	k.has_merge = true;
	k.part = pp;
	for (size_t p = 0; p < g->npart; p++) {
		const struct mpart *mp = &g->part[p];
		if (!mp->model)
			continue;
		struct isvd_proto_kafka_partition *e = &pp[k.partitions++];
		e->partition = p;
		e->rows = mp->rows;
		e->folded_offset = mp->folded;
		e->undecodable = mp->undecodable;
		e->has_merge = true;
		e->image_age_s = mp->ts_ms < 0 ? 0 : now - (double)mp->ts_ms / 1000.0;
		if (e->image_age_s > k.oldest_image_age_s)
			k.oldest_image_age_s = e->image_age_s;
		k.rows += mp->rows;
	}
	if (isvd_proto_kafka_encode(&k, &out, &len) == ISVD_PROTO_OK)
		qry_set_kafka(g->srv->qry, out, len);
	free(pp);
}

static void on_merge_timer(void *ctx, uint64_t now)
{
	struct kfk_merge *g = ctx;

	if (g->dirty) {
		size_t n = 0;
		uint64_t rows = 0;   /* every one of them is in an image on the changelog */
		for (size_t p = 0; p < g->npart; p++)
			if (g->part[p].model && g->part[p].rows) {
				g->merge_in[n++] = g->part[p].model;
				rows += g->part[p].rows;
			}
		if (kfk_install(g->srv, g->merge_in, n, rows) == 0)
			g->dirty = false;
	}
	publish_info(g);
}

/* Timer: until the changelog topic exists, looks for it every second. */
static void on_retry(void *ctx, uint64_t now)
{
	struct kfk_merge *g = ctx;

	if (g->reader)
		return;
	if (!(g->reader = kfk_reader_create(g->srv, g->changelog))) {
		loop_timer_at(g->srv->loop, g->t_retry, now + MERGE_RETRY_MS);
		return;
	}
	g->queue = kfk_reader_queue(g->reader);
	if (kfk_wakeup_pipe(g->queue, g->wake)) {
		log_msg(g->srv->log, CFG_LOG_ERROR, "kafka: a pipe: %s", strerror(errno));
		g->srv->failed = true;
		return;
	}
	if ((g->io = loop_add_io(g->srv->loop, NULL, g->wake[0], on_wake, g)) < 0) {
		log_msg(g->srv->log, CFG_LOG_ERROR, "the event loop's tables are full");
		g->srv->failed = true;
		return;
	}
	log_msg(g->srv->log, CFG_LOG_INFO, "kafka: merging the images on %s", g->changelog);
	read_images(g);
}

int kfk_merge_start(struct isvdd *srv, struct kfk_merge **out)
{
	struct kfk_merge *g = calloc(1, sizeof *g);
	struct loop *l = srv->loop;
	char changelog[CFG_CHANGELOG_MAX];

	if (!g) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(errno));
		return -1;
	}
	g->srv = srv;
	g->cfg = srv->cfg;
	g->wake[0] = g->wake[1] = -1;
	g->io = g->t_more = g->t_merge = g->t_retry = -1;
	if (!(g->changelog = strdup(cfg_kafka_changelog(g->cfg, changelog, sizeof changelog)))) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(errno));
		goto fail;
	}
	if ((g->t_more = loop_add_timer(l, 0, on_more, g)) < 0 ||
	    (g->t_retry = loop_add_timer(l, 0, on_retry, g)) < 0 ||
	    (g->t_merge = loop_add_timer(l, g->cfg->kafka.merge_every_ms, on_merge_timer, g)) < 0) {
		log_msg(srv->log, CFG_LOG_ERROR, "the event loop's tables are full");
		goto fail;
	}
	const uint64_t now = loop_now_ms();
	loop_timer_at(l, g->t_merge, now + g->cfg->kafka.merge_every_ms);
	on_retry(g, now);
	if (srv->failed)
		goto fail;
	publish_info(g);   /* info has its kafka map from the first query on */
	if (!g->reader)
		log_msg(srv->log, CFG_LOG_WARN, "kafka: no changelog topic %s yet; looking again every "
		        "%d ms", g->changelog, MERGE_RETRY_MS);
	*out = g;
	return 0;
fail:
	kfk_merge_destroy(g);
	return -1;
}

void kfk_merge_destroy(struct kfk_merge *g)
{
	if (!g)
		return;
	struct loop *l = g->srv->loop;
	if (g->io >= 0)
		loop_del_io(l, g->io);
	const int timers[] = { g->t_more, g->t_merge, g->t_retry };
	for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
		if (timers[i] >= 0)
			loop_del_timer(l, timers[i]);
	if (g->queue)
		rd_kafka_queue_destroy(g->queue);
	kfk_reader_destroy(g->reader);
	for (int i = 0; i < 2; i++)
		if (g->wake[i] >= 0)
			close(g->wake[i]);
	for (size_t p = 0; p < g->npart; p++)
		isvd_model_destroy(g->part[p].model);
	free(g->part);
	free(g->merge_in);
	free(g->changelog);
	free(g);
}
