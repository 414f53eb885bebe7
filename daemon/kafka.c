/*
 * kafka.c — isvdd as a shard (kafka.role: shard): it joins the consumer
 * group kafka.group on kafka.topic, keeps one model per partition the
 * group assigns it, publishes each partition's image on the changelog, and
 * serves the merge of its partitions on the query and publish sockets.
 * The ingest socket is not bound.
 *
 * DESIGN
 *   A partition travels (all on the loop thread; kafka.h says why an
 *   image is a state the partition really had):
 *
 *     assigned ──assign(): the newest image on the changelog (a reader,
 *        kafka_client.c), or a new model ──► read from folded + 1
 *     message ──take(): kfk_decode_rows() ──► pending rows; undecodable:
 *        skip(): counted, logged, dead-lettered, its offset passed over
 *     pending ──fold(): one isvd_model_update() per partition per burst
 *        (batching.max_rows at most) ──► folded = the last offset read
 *     every image_every_ms ──publish()──► an image per partition that
 *        moved, produced with acks=all; it counts (image_offset) when the
 *        delivery report says all in-sync replicas have it
 *     revoked ──give_back(): fold, publish, wait for the reports ──► released
 *
 *   Exactly once: a model only ever holds the rows up to its folded offset,
 *   each once, and reading resumes at folded + 1 of the image it started
 *   from; so a shard killed at any point leaves the newest image as the
 *   state to resume from, and whoever is given the partition re-reads
 *   exactly the rows after it.  The image of a partition being revoked is
 *   published before the partition is let go, so a rebalance costs no
 *   re-reading at all.  No write-ahead log: the rows topic is the log.
 *
 *   The loop learns that librdkafka has something (messages, a rebalance,
 *   delivery reports) from a pipe both clients' queues write to
 *   (kfk_wakeup_pipe()); a burst reads at most SHARD_BURST messages or
 *   SHARD_BURST_BLOCKS × batching.max_rows rows, then folds, and lets the
 *   loop turn (t_more) before the next: images, merges and `checkpoint`
 *   wait for one burst at most.  Rebalances run
 *   inside rd_kafka_consumer_poll(), in the burst.  Every merge_every_ms the
 *   partitions' models are merged into the daemon's model (kfk_install())
 *   when any moved, and info's `kafka` map is refreshed.
 *
 * INVARIANTS
 *   For an assigned partition: image_offset ≤ image_sent ≤ folded ≤ read
 *   (as offsets; -1 none); rows holds the rows of pend, in order;
 *   isvd_model_rows_seen(model) counts exactly the rows of the decodable
 *   messages at offsets ≤ folded.  A broken partition (the engine failed
 *   mid-fold) is never published: the daemon stops, and the partition's
 *   next owner starts from its last image.
 */
#define ISVD_KAFKA_INTERNAL
#include "kafka.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isvdd.h"
#include "loop.h"
#include "query.h"

#define SHARD_BURST     4096        /* messages read in one turn of the loop, */
#define SHARD_BURST_BLOCKS 8        /* or this many batching.max_rows of rows */
#define SHARD_MAX_PARTS (1 << 20)   /* partition numbers beyond are refused */

struct pend {                    /* a message read, its rows not yet folded */
	rd_kafka_message_t *m;
	size_t row0, nrows;
};

struct part {
	bool assigned, broken;
	uint32_t epoch;              /* assignments so far: a late report of an older one is ignored */
	struct isvd_model *model;    /* when assigned */
	int64_t read, folded;        /* the last offset read, and folded into model */
	int64_t image_sent;          /* folded of the last image produced */
	int64_t image_offset;        /* folded of the last image acknowledged */
	uint64_t image_rows;         /* the rows that image holds */
	uint64_t undecodable;        /* in this lineage of images (carried by them) */
	struct pend *pend;
	size_t npend, pend_cap;
	double *rows;                /* the rows of pend, row-major */
	size_t nrows, rows_cap;      /* in rows */
};

/* What a delivery report was for. */
struct dr {
	bool image;                  /* else a dead letter */
	int32_t partition;
	uint32_t epoch;
	int64_t folded;              /* image: its folded offset */
	uint64_t rows;               /* image: its rows */
};

struct kfk_shard {
	struct kfk_opaque opaque;    /* first: librdkafka's log callback reads it */
	struct isvdd *srv;
	const struct cfg *cfg;
	size_t dim;
	rd_kafka_t *consumer, *producer;
	bool closed;                 /* the consumer left the group */
	rd_kafka_queue_t *cq, *pq;   /* their queues, which write to wake[1] */
	int wake[2];
	int io, t_more, t_image, t_merge;
	char *changelog;
	int clog_parts;
	struct part *part;           /* by partition number */
	size_t npart;
	bool dirty;                  /* a model or the assignment moved since the last merge */
	uint64_t images, images_failed;
	uint64_t dead_lettered;      /* delivered to kafka.dead_letter_topic */
	struct isvd_model **merge_in;   /* scratch: the models merged */
};

/* ------------------------------------------------------------ partitions */

static struct part *part_of(struct kfk_shard *s, int32_t p)
{
	return p >= 0 && (size_t)p < s->npart ? &s->part[p] : NULL;
}

/* The entry of partition p, made when new.  NULL when out of memory. */
static struct part *part_get(struct kfk_shard *s, int32_t p)
{
	if (p < 0 || p >= SHARD_MAX_PARTS)
		return NULL;
	if ((size_t)p >= s->npart) {
		const size_t n = (size_t)p + 1;
		struct part *np = realloc(s->part, n * sizeof *np);
		struct isvd_model **mi = np ? realloc(s->merge_in, n * sizeof *mi) : NULL;
		if (np)
			s->part = np;
		if (!mi)
			return NULL;
		s->merge_in = mi;
		memset(np + s->npart, 0, (n - s->npart) * sizeof *np);
		for (size_t i = s->npart; i < n; i++)
			np[i].read = np[i].folded = np[i].image_sent = np[i].image_offset = -1;
		s->npart = n;
	}
	return &s->part[p];
}

static void drop_pending(struct part *kp)
{
	for (size_t i = 0; i < kp->npend; i++)
		if (kp->pend[i].m)
			rd_kafka_message_destroy(kp->pend[i].m);
	kp->npend = 0;
	kp->nrows = 0;
}

static void release(struct part *kp)
{
	drop_pending(kp);
	isvd_model_destroy(kp->model);
	kp->model = NULL;
	kp->assigned = false;
}

/* ---------------------------------------------------------- dead letters */

/* A message that cannot be folded: counted in its partition's lineage,
 * logged (rate-limited), produced to kafka.dead_letter_topic when set with
 * the reason and its origin in headers.  Takes m. */
static void skip(struct kfk_shard *s, struct part *kp, rd_kafka_message_t *m, const char *why)
{
	const char *dl = s->cfg->kafka.dead_letter_topic;

	kp->undecodable++;
	log_refused(s->srv->log, "kafka: %s [%" PRId32 "] offset %" PRId64 ": message skipped: %s",
	            s->cfg->kafka.topic, m->partition, m->offset, why);
	if (dl[0]) {
		char part[16], off[24];
		struct dr *d = calloc(1, sizeof *d);
		snprintf(part, sizeof part, "%" PRId32, m->partition);
		snprintf(off, sizeof off, "%" PRId64, m->offset);
		rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__FAIL;   /* no memory for d */
		if (d) {
			d->partition = m->partition;
			d->epoch = kp->epoch;
			e = rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC(dl),
			                      RD_KAFKA_V_KEY(m->key, m->key_len),
			                      RD_KAFKA_V_VALUE(m->payload, m->len),
			                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
			                      RD_KAFKA_V_HEADER("isvd-reason", why, -1),
			                      RD_KAFKA_V_HEADER("isvd-topic", s->cfg->kafka.topic, -1),
			                      RD_KAFKA_V_HEADER("isvd-partition", part, -1),
			                      RD_KAFKA_V_HEADER("isvd-offset", off, -1),
			                      RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
		}
		if (e) {
			free(d);
			log_msg(s->srv->log, CFG_LOG_WARN, "kafka: %s [%" PRId32 "] offset %" PRId64 ": not "
			        "produced to %s: %s", s->cfg->kafka.topic, m->partition, m->offset, dl,
			        rd_kafka_err2str(e));
		}
	}
	rd_kafka_message_destroy(m);
}

/* --------------------------------------------------------------- folding */

/* Folds kp's pending rows into its model: one engine call, message by
 * message when the block as a whole would overflow the model's energy
 * (then a message that still would is skipped).  Afterwards folded =
 * read.  Any other engine failure breaks the partition and stops the
 * daemon (its model may hold part of the block). */
static void fold(struct kfk_shard *s, struct part *kp)
{
	int rc = ISVD_OK;

	if (kp->broken)
		return;
	if (kp->nrows)
		rc = isvd_model_update(kp->model, kp->rows, kp->nrows, s->dim);
	if (rc == ISVD_ERR_NONFINITE) {
		rc = ISVD_OK;
		for (size_t i = 0; i < kp->npend && !rc; i++) {
			struct pend *q = &kp->pend[i];
			const int r1 = isvd_model_update(kp->model, kp->rows + q->row0 * s->dim, q->nrows, s->dim);
			if (r1 == ISVD_ERR_NONFINITE) {
				skip(s, kp, q->m, "values too large for the model's energy to stay finite");
				q->m = NULL;
			} else {
				rc = r1;
			}
		}
	}
	if (rc) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: %s [%td]: the engine failed folding %zu rows: "
		        "%s; stopping (the partition's next owner resumes from its last image, offset %"
		        PRId64 ")", s->cfg->kafka.topic, kp - s->part, kp->nrows, isvd_strerror(rc),
		        kp->image_offset);
		kp->broken = true;
		s->srv->failed = true;
		drop_pending(kp);
		return;
	}
	if (kp->nrows || kp->folded != kp->read)
		s->dirty = true;
	kp->folded = kp->read;
	drop_pending(kp);
}

static void fold_all(struct kfk_shard *s)
{
	for (size_t p = 0; p < s->npart; p++)
		if (s->part[p].assigned)
			fold(s, &s->part[p]);
}

/* One message: its rows join its partition's pending ones, or it is
 * skipped.  Messages of partitions not (or no longer) assigned, or
 * already read, are dropped.  Takes m; returns the rows it held. */
static size_t take(struct kfk_shard *s, rd_kafka_message_t *m)
{
	struct part *kp = part_of(s, m->partition);
	double *rows = NULL;
	size_t n = 0;
	char why[320];

	if (!kp || !kp->assigned || kp->broken || m->offset <= kp->read) {
		rd_kafka_message_destroy(m);
		return 0;
	}
	if (m->offset > kp->read + 1)   /* rows the retention rule protects, or markers */
		log_msg(s->srv->log, kp->read >= 0 ? CFG_LOG_WARN : CFG_LOG_INFO, "kafka: %s [%" PRId32 "]: "
		        "offsets %" PRId64 " to %" PRId64 " are not there to read: deleted by the topic's "
		        "retention before an image covered them, or a transaction's markers",
		        s->cfg->kafka.topic, m->partition, kp->read + 1, m->offset - 1);
	kp->read = m->offset;
	if (kfk_decode_rows(s->cfg, m->payload, m->len, &rows, &n, why, sizeof why)) {
		skip(s, kp, m, why);
		return 0;
	}
	if (kp->nrows + n > kp->rows_cap) {
		size_t cap = kp->rows_cap ? kp->rows_cap : 256;
		while (cap < kp->nrows + n)
			cap *= 2;
		double *r = realloc(kp->rows, cap * s->dim * sizeof *r);
		if (!r) {
			free(rows);
			skip(s, kp, m, "out of memory");
			return 0;
		}
		kp->rows = r;
		kp->rows_cap = cap;
	}
	if (kp->npend == kp->pend_cap) {
		const size_t cap = kp->pend_cap ? 2 * kp->pend_cap : 64;
		struct pend *q = realloc(kp->pend, cap * sizeof *q);
		if (!q) {
			free(rows);
			skip(s, kp, m, "out of memory");
			return 0;
		}
		kp->pend = q;
		kp->pend_cap = cap;
	}
	memcpy(kp->rows + kp->nrows * s->dim, rows, n * s->dim * sizeof *rows);
	free(rows);
	kp->pend[kp->npend++] = (struct pend){ m, kp->nrows, n };
	kp->nrows += n;
	if (kp->nrows >= s->cfg->batching.max_rows)
		fold(s, kp);
	return n;
}

/* --------------------------------------------------------------- images */

static void produce_image(struct kfk_shard *s, int32_t p, struct part *kp)
{
	uint8_t *img = NULL;
	size_t len = 0;
	char key[16];
	struct dr *d = calloc(1, sizeof *d);
	int rc = d ? kfk_image_encode(kp->model, p, kp->folded, kp->undecodable, &img, &len)
	           : ISVD_ERR_NOMEM;

	if (rc) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: the image of partition %" PRId32 ": %s", p,
		        isvd_strerror(rc));
		free(d);
		s->images_failed++;
		return;
	}
	*d = (struct dr){ true, p, kp->epoch, kp->folded, isvd_model_rows_seen(kp->model) };
	snprintf(key, sizeof key, "%" PRId32, p);
	const rd_kafka_resp_err_t e =
		rd_kafka_producev(s->producer, RD_KAFKA_V_TOPIC(s->changelog),
		                  RD_KAFKA_V_PARTITION(p % s->clog_parts), RD_KAFKA_V_KEY(key, strlen(key)),
		                  RD_KAFKA_V_VALUE(img, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
		                  RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
	if (e) {
		log_msg(s->srv->log, CFG_LOG_WARN, "kafka: the image of partition %" PRId32 " (%zu bytes) "
		        "was not produced: %s; tried again at the next interval", p, len,
		        rd_kafka_err2str(e));
		free(img);
		free(d);
		s->images_failed++;
		return;
	}
	kp->image_sent = kp->folded;
}

/* librdkafka's delivery report (served by rd_kafka_poll/flush on the
 * producer, on the loop thread): an image counts once acknowledged. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct kfk_shard *s = opaque;
	struct dr *d = m->_private;
	struct part *kp = part_of(s, d->partition);
	const bool ours = kp && kp->epoch == d->epoch;

	if (d->image && !m->err) {
		s->images++;
		if (ours && d->folded > kp->image_offset) {
			kp->image_offset = d->folded;
			kp->image_rows = d->rows;
		}
	} else if (d->image) {
		s->images_failed++;
		log_msg(s->srv->log, CFG_LOG_WARN, "kafka: the image of partition %" PRId32 " at offset %"
		        PRId64 " was not published: %s", d->partition, d->folded, rd_kafka_err2str(m->err));
		if (ours && kp->image_sent == d->folded)
			kp->image_sent = kp->image_offset;   /* produced again at the next interval */
	} else if (!m->err) {
		s->dead_lettered++;
	} else {
		log_msg(s->srv->log, CFG_LOG_WARN, "kafka: a dead letter of partition %" PRId32 " was not "
		        "delivered: %s", d->partition, rd_kafka_err2str(m->err));
	}
	free(d);
}

/* Folds what was read, then produces the image of every partition that
 * moved since its last one; with wait, returns once every report is in
 * (at most KFK_TIMEOUT_MS).  0, or -1 when an image is not acknowledged. */
static int publish(struct kfk_shard *s, bool wait)
{
	int ret = 0;

	fold_all(s);
	for (size_t p = 0; p < s->npart; p++) {
		struct part *kp = &s->part[p];
		if (kp->assigned && !kp->broken && kp->folded >= 0 && kp->folded != kp->image_sent)
			produce_image(s, (int32_t)p, kp);
	}
	if (!wait) {
		rd_kafka_poll(s->producer, 0);
		return 0;
	}
	rd_kafka_flush(s->producer, KFK_TIMEOUT_MS);
	for (size_t p = 0; p < s->npart; p++) {
		const struct part *kp = &s->part[p];
		if (kp->assigned && !kp->broken && kp->folded != kp->image_offset)
			ret = -1;
	}
	return ret;
}

/* ------------------------------------------------------------ rebalances */

/* What assign() gathers from the changelog for the partitions given. */
struct newest {
	struct kfk_shard *s;
	const rd_kafka_topic_partition_list_t *given;
	struct kfk_image *img;       /* per entry of given: the newest so far (folded -1: none) */
	struct isvd_model **model;   /* its model */
	int64_t *ts;
	bool mismatch;               /* an image of another model: fatal */
};

/* kfk_image_fn: keeps the image with the highest folded offset of every
 * partition given (a tie is the same rows: the first stays). */
static void keep_newest(void *ctx, const struct kfk_image *img, int64_t ts_ms)
{
	struct newest *w = ctx;
	char why[400];
	int i;

	for (i = 0; i < w->given->cnt && w->given->elems[i].partition != img->partition; i++)
		;
	if (i == w->given->cnt || img->folded <= w->img[i].folded)
		return;
	struct isvd_model *m = NULL;
	const int rc = kfk_model_from_image(w->s->srv, img, &m, why, sizeof why);
	if (rc) {
		log_msg(w->s->srv->log, CFG_LOG_ERROR, "kafka: the image of partition %" PRId32 " at "
		        "offset %" PRId64 " is refused: %s", img->partition, img->folded, why);
		w->mismatch |= rc == ISVD_ERR_MISMATCH;
		return;
	}
	isvd_model_destroy(w->model[i]);
	w->model[i] = m;
	w->img[i] = *img;
	w->img[i].model = NULL;   /* it pointed into the message */
	w->ts[i] = ts_ms;
}

/* Partitions given: each starts from its newest image (or a new model),
 * and given's offsets are set to resume at folded + 1.  0, or -1 (logged):
 * the changelog could not be read, or holds another model's images. */
static int assign(struct kfk_shard *s, rd_kafka_topic_partition_list_t *given)
{
	const int n = given->cnt;
	struct newest w = { s, given, calloc((size_t)n + 1, sizeof *w.img),
	                    calloc((size_t)n + 1, sizeof *w.model), calloc((size_t)n + 1, sizeof *w.ts),
	                    false };
	struct kfk_reader *r = NULL;
	uint64_t refused = 0;
	int ret = -1;

	if (!w.img || !w.model || !w.ts) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(ENOMEM));
		goto out;
	}
	for (int i = 0; i < n; i++) {
		w.img[i].folded = -1;
		if (!part_get(s, given->elems[i].partition)) {
			log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: partition %" PRId32 ": %s",
			        given->elems[i].partition, strerror(ENOMEM));
			goto out;
		}
	}
	if (!(r = kfk_reader_create(s->srv, s->changelog)) ||
	    kfk_reader_catch_up(r, keep_newest, &w, &refused) || w.mismatch)
		goto out;
	for (int i = 0; i < n; i++) {
		struct part *kp = part_of(s, given->elems[i].partition);
		if (!w.model[i] && ing_new_model(s->cfg, s->srv->log, s->dim, &w.model[i]))
			goto out;
		release(kp);
		kp->assigned = true;
		kp->broken = false;
		kp->epoch++;
		kp->model = w.model[i];
		w.model[i] = NULL;
		kp->read = kp->folded = kp->image_sent = kp->image_offset = w.img[i].folded;
		kp->image_rows = w.img[i].rows;
		kp->undecodable = w.img[i].undecodable;
		given->elems[i].offset = kp->folded >= 0 ? kp->folded + 1 : RD_KAFKA_OFFSET_BEGINNING;
		if (kp->folded >= 0)
			log_msg(s->srv->log, CFG_LOG_INFO, "kafka: assigned %s [%" PRId32 "]: from its image "
			        "at offset %" PRId64 " (%" PRIu64 " rows)", s->cfg->kafka.topic,
			        given->elems[i].partition, kp->folded, kp->image_rows);
		else
			log_msg(s->srv->log, CFG_LOG_INFO, "kafka: assigned %s [%" PRId32 "]: no image yet, "
			        "from the beginning", s->cfg->kafka.topic, given->elems[i].partition);
	}
	s->dirty = true;
	ret = 0;
out:
	kfk_reader_destroy(r);
	for (int i = 0; i < n && w.model; i++)
		isvd_model_destroy(w.model[i]);
	free(w.img);
	free(w.model);
	free(w.ts);
	return ret;
}

/* Partitions taken away: fold what was read, publish the images that
 * moved and wait for them, then let the partitions go.  A lost assignment
 * (the group gave them away already, e.g. after a stall) publishes
 * nothing: its next owner resumes from the last image either way. */
static void give_back(struct kfk_shard *s, const rd_kafka_topic_partition_list_t *taken, bool lost)
{
	for (int i = 0; i < taken->cnt; i++) {
		struct part *kp = part_of(s, taken->elems[i].partition);
		if (!kp || !kp->assigned)
			continue;
		fold(s, kp);
		if (!lost && !kp->broken && kp->folded >= 0 && kp->folded != kp->image_sent)
			produce_image(s, taken->elems[i].partition, kp);
	}
	if (!lost)
		rd_kafka_flush(s->producer, KFK_TIMEOUT_MS);
	for (int i = 0; i < taken->cnt; i++) {
		struct part *kp = part_of(s, taken->elems[i].partition);
		if (!kp || !kp->assigned)
			continue;
		if (kp->folded < 0)
			log_msg(s->srv->log, CFG_LOG_INFO, "kafka: released %s [%" PRId32 "]: nothing read yet",
			        s->cfg->kafka.topic, taken->elems[i].partition);
		else if (lost || kp->broken || kp->folded != kp->image_offset)
			log_msg(s->srv->log, CFG_LOG_WARN, "kafka: released %s [%" PRId32 "] at offset %" PRId64
			        " with its last image at %" PRId64 "%s: its next owner reads again from there",
			        s->cfg->kafka.topic, taken->elems[i].partition, kp->folded, kp->image_offset,
			        lost ? " (the assignment was lost)" : "");
		else
			log_msg(s->srv->log, CFG_LOG_INFO, "kafka: released %s [%" PRId32 "] with its image at "
			        "offset %" PRId64, s->cfg->kafka.topic, taken->elems[i].partition, kp->folded);
		release(kp);
	}
	s->dirty = true;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct kfk_shard *s = opaque;
	const bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
	rd_kafka_error_t *e = NULL;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		if (assign(s, parts)) {
			log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: cannot take the partitions assigned; "
			        "stopping, so that the group gives them to another shard");
			s->srv->failed = true;
			return;   /* consumer_close() at stop leaves the group */
		}
		if (coop)
			e = rd_kafka_incremental_assign(rk, parts);
		else
			rd_kafka_assign(rk, parts);
	} else {
		if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
			log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: rebalance: %s", rd_kafka_err2str(err));
		give_back(s, parts, rd_kafka_assignment_lost(rk));
		if (coop)
			e = rd_kafka_incremental_unassign(rk, parts);
		else
			rd_kafka_assign(rk, NULL);
	}
	if (e) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: rebalance: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
}

/* ------------------------------------------------------------- the loop */

/* Reads a burst of messages (rebalances run in there), folds them,
 * serves the producer's reports; when more wait (kfk_more_waiting()),
 * comes back after the loop's turn. */
static void consume(struct kfk_shard *s)
{
	const size_t most = SHARD_BURST_BLOCKS * s->cfg->batching.max_rows;
	size_t rows = 0;
	int n;

	for (n = 0; n < SHARD_BURST && rows < most && !s->srv->failed; n++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(s->consumer, 0);
		if (!m)
			break;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				log_msg(s->srv->log, CFG_LOG_WARN, "kafka: %s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		rows += take(s, m);
	}
	fold_all(s);
	rd_kafka_poll(s->producer, 0);
	if (kfk_more_waiting(s->cq, n == SHARD_BURST || rows >= most))
		loop_timer_at(s->srv->loop, s->t_more, loop_now_ms());
}

static void on_wake(void *ctx)
{
	struct kfk_shard *s = ctx;

	kfk_drain_wakeups(s->wake[0]);
	consume(s);
}

static void on_more(void *ctx, uint64_t now)
{
	consume(ctx);
}

static void on_image_timer(void *ctx, uint64_t now)
{
	publish(ctx, false);
}

/* info's `kafka` map, for the query thread. */
static void publish_info(struct kfk_shard *s)
{
	struct isvd_proto_kafka k = { 0 };
	struct isvd_proto_kafka_partition *pp = calloc(s->npart + 1, sizeof *pp);
	char note[KFK_NOTE_MAX];
	uint8_t *out = NULL;
	size_t len = 0;

	if (!pp)
		return;
	k.role = (char *)"shard";
	k.topic = s->cfg->kafka.topic;
	k.changelog_topic = s->changelog;
	k.group = s->cfg->kafka.group;
	k.ingest = (char *)kfk_ingest_note(s->cfg, note, sizeof note);
	k.images = s->images;
	k.images_failed = s->images_failed;
	k.has_shard = true;
	k.dead_lettered = s->dead_lettered;
	k.part = pp;
	for (size_t p = 0; p < s->npart; p++) {
		const struct part *kp = &s->part[p];
		if (!kp->assigned)
			continue;
		struct isvd_proto_kafka_partition *e = &pp[k.partitions++];
		int64_t lo = -1, hi = -1;
		e->partition = p;
		e->rows = isvd_model_rows_seen(kp->model);
		e->folded_offset = kp->folded;
		e->undecodable = kp->undecodable;
		e->has_shard = true;
		e->image_offset = kp->image_offset;
		e->lag = rd_kafka_get_watermark_offsets(s->consumer, s->cfg->kafka.topic, (int32_t)p, &lo,
		                                        &hi) || hi < 0 ? -1
		       : hi > kp->folded + 1 ? hi - kp->folded - 1 : 0;
		k.rows += e->rows;
	}
	if (isvd_proto_kafka_encode(&k, &out, &len) == ISVD_PROTO_OK)
		qry_set_kafka(s->srv->qry, out, len);
	free(pp);
}

/* Every merge_every_ms: the merge of the partitions' models when any
 * moved, then info. */
static void on_merge_timer(void *ctx, uint64_t now)
{
	struct kfk_shard *s = ctx;

	size_t n = 0;
	uint64_t imaged = 0;   /* info's last_checkpoint_seq: the rows acknowledged images hold */

	for (size_t p = 0; p < s->npart; p++)
		if (s->part[p].assigned && !s->part[p].broken) {
			imaged += s->part[p].image_rows;
			if (isvd_model_rows_seen(s->part[p].model))
				s->merge_in[n++] = s->part[p].model;
		}
	if (!s->dirty)
		qry_set_checkpoint(s->srv->qry, imaged);
	else if (kfk_install(s->srv, s->merge_in, n, imaged) == 0)
		s->dirty = false;
	publish_info(s);
}

/* ------------------------------------------------------------ life cycle */

static void prepare_consumer(rd_kafka_conf_t *conf)
{
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
}

static void prepare_producer(rd_kafka_conf_t *conf)
{
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
}

/* The two clients, the subscription and the wake-up pipe.  0, or -1 after
 * logging why. */
static int connect_clients(struct kfk_shard *s)
{
	const struct cfg *cfg = s->cfg;
	const char *const cprops[] = {
		"group.id", cfg->kafka.group, "enable.auto.commit", "false",
		"enable.auto.offset.store", "false", "auto.offset.reset", "earliest",
		"client.id", "isvdd-shard", NULL
	};
	static const char *const pprops[] = {
		"acks", "all", "enable.idempotence", "true", "linger.ms", "5",
		"client.id", "isvdd-shard", NULL
	};
	char why[300];

	if (!(s->producer = kfk_client(cfg, RD_KAFKA_PRODUCER, pprops, &s->opaque, prepare_producer)) ||
	    !(s->consumer = kfk_client(cfg, RD_KAFKA_CONSUMER, cprops, &s->opaque, prepare_consumer)))
		return -1;
	if ((s->clog_parts = kfk_partitions(s->producer, s->changelog, why, sizeof why)) < 0) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: the changelog: %s (create it, compacted: "
		        "README, \"Scale-out with Kafka\")", why);
		return -1;
	}
	/* the dead-letter topic must be there too (asked now, its metadata is
	 * at hand for the first letter) */
	if (cfg->kafka.dead_letter_topic[0] &&
	    kfk_partitions(s->producer, cfg->kafka.dead_letter_topic, why, sizeof why) < 0) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: kafka.dead_letter_topic: %s (create it)", why);
		return -1;
	}
	rd_kafka_poll_set_consumer(s->consumer);
	s->cq = rd_kafka_queue_get_consumer(s->consumer);
	s->pq = rd_kafka_queue_get_main(s->producer);
	if (kfk_wakeup_pipe(s->cq, s->wake)) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: a pipe: %s", strerror(errno));
		return -1;
	}
	rd_kafka_queue_io_event_enable(s->pq, s->wake[1], "!", 1);
	rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(t, cfg->kafka.topic, RD_KAFKA_PARTITION_UA);
	const rd_kafka_resp_err_t e = rd_kafka_subscribe(s->consumer, t);
	rd_kafka_topic_partition_list_destroy(t);
	if (e) {
		log_msg(s->srv->log, CFG_LOG_ERROR, "kafka: cannot subscribe to %s: %s", cfg->kafka.topic,
		        rd_kafka_err2str(e));
		return -1;
	}
	return 0;
}

int kfk_shard_start(struct isvdd *srv, struct kfk_shard **out)
{
	struct kfk_shard *s = calloc(1, sizeof *s);
	struct loop *l = srv->loop;
	char changelog[CFG_CHANGELOG_MAX];

	if (!s) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(errno));
		return -1;
	}
	s->opaque.log = srv->log;
	s->srv = srv;
	s->cfg = srv->cfg;
	s->dim = (size_t)srv->cfg->model.dim;
	s->wake[0] = s->wake[1] = -1;
	s->io = s->t_more = s->t_image = s->t_merge = -1;
	if (!(s->changelog = strdup(cfg_kafka_changelog(s->cfg, changelog, sizeof changelog)))) {
		log_msg(srv->log, CFG_LOG_ERROR, "kafka: %s", strerror(errno));
		goto fail;
	}
	if (connect_clients(s))
		goto fail;
	const uint64_t now = loop_now_ms();
	if ((s->io = loop_add_io(l, NULL, s->wake[0], on_wake, s)) < 0 ||
	    (s->t_more = loop_add_timer(l, 0, on_more, s)) < 0 ||
	    (s->t_image = loop_add_timer(l, s->cfg->kafka.image_every_ms, on_image_timer, s)) < 0 ||
	    (s->t_merge = loop_add_timer(l, s->cfg->kafka.merge_every_ms, on_merge_timer, s)) < 0) {
		log_msg(srv->log, CFG_LOG_ERROR, "the event loop's tables are full");
		goto fail;
	}
	loop_timer_at(l, s->t_more, now);   /* whatever came before the pipe was watched */
	loop_timer_at(l, s->t_image, now + s->cfg->kafka.image_every_ms);
	loop_timer_at(l, s->t_merge, now + s->cfg->kafka.merge_every_ms);
	publish_info(s);   /* info has its kafka map from the first query on */
	log_msg(srv->log, CFG_LOG_INFO, "kafka: a shard of %s in group %s (%s, brokers %s); images "
	        "to %s (%d partitions) every %llu ms", s->cfg->kafka.topic, s->cfg->kafka.group,
	        cfg_kafka_format_name(s->cfg->kafka.format), s->cfg->kafka.brokers, s->changelog,
	        s->clog_parts, (unsigned long long)s->cfg->kafka.image_every_ms);
	*out = s;
	return 0;
fail:
	kfk_shard_destroy(s);
	return -1;
}

void kfk_shard_stop(struct kfk_shard *s)
{
	if (!s || !s->consumer)
		return;
	if (!s->srv->failed)   /* a broken partition is never published */
		publish(s, true);
	rd_kafka_consumer_close(s->consumer);   /* revokes: give_back() releases every partition */
	s->closed = true;
	rd_kafka_flush(s->producer, KFK_TIMEOUT_MS);
	log_msg(s->srv->log, CFG_LOG_INFO, "kafka: left group %s; %" PRIu64 " images published, %"
	        PRIu64 " not", s->cfg->kafka.group, s->images, s->images_failed);
}

int kfk_shard_checkpoint(struct kfk_shard *s, uint64_t *seq, char *why, size_t cap)
{
	uint64_t rows = 0;

	if (publish(s, true)) {
		snprintf(why, cap, "not every partition's image was acknowledged within %d s",
		         KFK_TIMEOUT_MS / 1000);
		return -1;
	}
	for (size_t p = 0; p < s->npart; p++)
		if (s->part[p].assigned)
			rows += s->part[p].image_rows;
	*seq = rows;
	return 0;
}

void kfk_shard_destroy(struct kfk_shard *s)
{
	if (!s)
		return;
	struct loop *l = s->srv->loop;
	if (s->io >= 0)
		loop_del_io(l, s->io);
	const int timers[] = { s->t_more, s->t_image, s->t_merge };
	for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
		if (timers[i] >= 0)
			loop_del_timer(l, timers[i]);
	for (size_t p = 0; p < s->npart; p++) {   /* messages go before their consumer */
		release(&s->part[p]);
		free(s->part[p].pend);
		free(s->part[p].rows);
	}
	if (s->cq)
		rd_kafka_queue_destroy(s->cq);
	if (s->pq)
		rd_kafka_queue_destroy(s->pq);
	if (s->consumer) {
		if (!s->closed)
			rd_kafka_consumer_close(s->consumer);
		rd_kafka_destroy(s->consumer);
	}
	if (s->producer) {
		rd_kafka_flush(s->producer, KFK_TIMEOUT_MS);
		rd_kafka_destroy(s->producer);
	}
	for (int i = 0; i < 2; i++)
		if (s->wake[i] >= 0)
			close(s->wake[i]);
	free(s->part);
	free(s->merge_in);
	free(s->changelog);
	free(s);
}
