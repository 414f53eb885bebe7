/*
 * recover.c — the daemon's side of storage.c: start-up recovery (the hooks
 * that load a checkpoint and replay a log record) and the checkpoints whose
 * content recovery loads (state in isvdd.h).
 *
 *     start ──sto_open()──► hook_load(): model image + duplicate table of the
 *        newest valid checkpoint ──► hook_apply() per record after it:
 *        ing_replay_block(), the live run's blocks again
 *     loop ──rec_checkpoint()──► ing_drain() ──► model image + dup_encode()
 *        ──sto_checkpoint()──► checkpoint file (storage.c)
 *     start, --seed FILE, storage.dir empty ──rec_seed()──► the image (or a
 *        checkpoint's image) as the model ──rec_checkpoint()──► durable
 *
 * DESIGN
 *   A checkpoint holds the engine image and the duplicate table and is
 *   taken between blocks only (ing_drain() first), so it never splits a
 *   block.  A checkpoint of another model than the configuration describes
 *   (model_differs()) is refused whole: continuing it would silently mix
 *   two models.  The storage timer (rec_on_storage_timer()) does storage's
 *   interval fsync, its retry while failed and the checkpoints that are
 *   due, and re-arms itself for storage's next deadline.
 *
 * INVARIANTS
 *   On a hook's failure nothing of the server's state has changed (the
 *   model and table are built aside and swapped in last).  After a
 *   checkpoint srv->logged == srv->seq: the next record restarts the
 *   numbering at the model's rows + 1 (see wal.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isvd_ckpt.h"

#include "isvdd.h"
#include "loop.h"
#include "query.h"

bool rec_model_differs(const struct cfg *cfg, const struct isvd_options *o, int source,
                       char *why, size_t cap)
{
	const char *key = NULL;
	char was[64] = "", now[64] = "";
	if (cfg->model.dim && cfg->model.dim != o->dim) {
		key = "model.dim";
		snprintf(was, sizeof was, "%zu", o->dim);
		snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.dim);
	} else if (cfg->model.rank != o->rank) {
		key = "model.rank";
		snprintf(was, sizeof was, "%zu", o->rank);
		snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.rank);
	} else if (cfg->model.extra != o->extra) {
		key = "model.extra";
		snprintf(was, sizeof was, "%zu", o->extra);
		snprintf(now, sizeof now, "%llu", (unsigned long long)cfg->model.extra);
	} else if ((cfg->model.center != 0) != (o->center != 0)) {
		key = "model.center";
		snprintf(was, sizeof was, "%s", o->center ? "true" : "false");
		snprintf(now, sizeof now, "%s", cfg->model.center ? "true" : "false");
	} else if (cfg->model.forget != o->forget) {
		key = "model.forget";
		snprintf(was, sizeof was, "%.17g", o->forget);
		snprintf(now, sizeof now, "%.17g", cfg->model.forget);
	} else if (cfg->model.mode != ISVD_MODE_AUTO && cfg->model.mode != o->mode) {
		key = "model.mode";
		snprintf(was, sizeof was, "%s", isvd_mode_name(o->mode));
		snprintf(now, sizeof now, "%s", isvd_mode_name(cfg->model.mode));
	}
	if (!key)
		return false;
	if (source == REC_SEED)
		snprintf(why, cap, "the image was written with %s %s, the configuration says %s; "
		         "seed with the configuration the image was made with", key, was, now);
	else if (source == REC_CHANGELOG)
		snprintf(why, cap, "the image was written with %s %s, the configuration says %s; "
		         "every shard and merger of a topic needs the same model.* settings", key, was,
		         now);
	else
		snprintf(why, cap, "the checkpoint was written with %s %s, the configuration says %s; "
		         "restore the configuration, or move storage.dir away to start a new model",
		         key, was, now);
	return true;
}

/* sto_hooks.load: the model and duplicate table from a checkpoint. */
static int hook_load(void *ctx, const struct ckpt *c, char *why, size_t cap)
{
	struct isvdd *srv = ctx;
	const struct cfg *cfg = srv->cfg;
	struct isvd_model *m = NULL;
	struct isvd_options o;
	struct dup_table tab;
	int rc;

	if (c->model) {
		if ((rc = isvd_model_load(c->model, c->model_len, &m))) {
			snprintf(why, cap, "model image: %s", isvd_strerror(rc));
			return -1;
		}
		isvd_model_options(m, &o);
		if (isvd_model_rows_seen(m) != c->seq) {
			snprintf(why, cap, "model image holds %llu rows, the checkpoint says %llu",
			         (unsigned long long)isvd_model_rows_seen(m), (unsigned long long)c->seq);
			isvd_model_destroy(m);
			return -1;
		}
		/* a checkpoint of another model must not be silently continued */
		if (rec_model_differs(cfg, &o, REC_CHECKPOINT, why, cap)) {
			isvd_model_destroy(m);
			return -2;
		}
	} else if (c->seq != 0) {
		snprintf(why, cap, "no model image but %llu rows", (unsigned long long)c->seq);
		return -1;
	}
	if (dup_decode(c->clients, c->clients_len, cfg->limits.max_clients, &tab, why, cap)) {
		isvd_model_destroy(m);
		return -1;
	}
	ing_adopt_model(srv, m);
	dup_fini(&srv->dup);
	srv->dup = tab;
	srv->seq = srv->logged = c->seq;
	return 0;
}

/* sto_hooks.apply: replays one log record exactly as the engine thread
 * applied it.  Its first_seq continues the logged rows, or restarts at the
 * model's rows + 1 where the live run wrote a checkpoint (see wal.h). */
static int hook_apply(void *ctx, const struct wal_block *b, char *why, size_t cap)
{
	struct isvdd *srv = ctx;

	if (b->first_seq != srv->logged + 1 && b->first_seq != srv->seq + 1) {
		snprintf(why, cap, "it starts at row %llu but the log before it ends at row %llu and the "
		         "model holds %llu rows", (unsigned long long)b->first_seq,
		         (unsigned long long)srv->logged, (unsigned long long)srv->seq);
		return -1;
	}
	ntf_recovering(srv);   /* progress, at most once a second */
	return ing_replay_block(srv, b, why, cap);
}

int rec_checkpoint(struct isvdd *srv)
{
	uint8_t *img = NULL, *tab = NULL;
	size_t img_len = 0, tab_len = 0;
	int rc = -1;

	ing_drain(srv);
	srv->logged = srv->seq;   /* the next record restarts the numbering (see wal.h) */
	if (srv->model) {
		size_t need = isvd_model_saved_size(srv->model);
		if (!(img = malloc(need)) || isvd_model_save(srv->model, img, need, &img_len)) {
			log_msg(srv->log, CFG_LOG_ERROR, "checkpoint: cannot save the model image (%zu bytes)", need);
			goto out;
		}
	}
	if (dup_encode(&srv->dup, &tab, &tab_len)) {
		log_msg(srv->log, CFG_LOG_ERROR, "checkpoint: cannot encode the client table: %s", strerror(errno));
		goto out;
	}
	rc = sto_checkpoint(srv->sto, srv->seq, img, img_len, tab, tab_len);
	if (rc == 0 && srv->qry)
		qry_set_checkpoint(srv->qry, sto_last_checkpoint_seq(srv->sto));
out:
	free(img);
	free(tab);
	return rc;
}

int rec_on_checkpoint_request(void *ctx, uint64_t *seq, char *why, size_t cap)
{
	struct isvdd *srv = ctx;
	const char *reason;

	if (rec_checkpoint(srv)) {
		sto_failed(srv->sto, &reason);
		snprintf(why, cap, "the checkpoint failed: %s", reason);
		return -1;
	}
	*seq = srv->seq;
	return 0;
}

/* Timer, and after every block: the interval fsync, storage's retry and the
 * checkpoints that are due; then re-armed for storage's next deadline (at
 * most SRV_POLL_MAX_MS away, which bounds a checkpoint_every_s lag). */
void rec_on_storage_timer(void *ctx, uint64_t now)
{
	struct isvdd *srv = ctx;
	long d;

	sto_tick(srv->sto, now);
	if (sto_checkpoint_due(srv->sto, srv->seq, now))
		rec_checkpoint(srv);
	d = sto_timeout_ms(srv->sto, now);
	loop_timer_at(srv->loop, srv->t_storage, now + (d >= 0 && d < SRV_POLL_MAX_MS ? (uint64_t)d
	                                                                           : SRV_POLL_MAX_MS));
}

/* The whole of path into *buf (freed by the caller); 0, or -1 with why. */
static int read_file(const char *path, uint8_t **buf, size_t *len, char *why, size_t cap)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b = NULL;
	size_t n = 0, room = 0, got;

	if (!f) {
		snprintf(why, cap, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	do {
		if (n == room) {
			uint8_t *nb = room < ((size_t)1 << 40) ? realloc(b, room ? 2 * room : 65536) : NULL;
			if (!nb) {
				snprintf(why, cap, "cannot read %s: %s", path, strerror(ENOMEM));
				goto fail;
			}
			b = nb;
			room = room ? 2 * room : 65536;
		}
		got = fread(b + n, 1, room - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		snprintf(why, cap, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
fail:
	fclose(f);
	free(b);
	return -1;
}

int rec_seed(struct isvdd *srv, const char *path)
{
	const char *dir = srv->cfg->storage.dir;
	struct isvd_model *m = NULL;
	struct isvd_options o;
	struct isvd_ckpt_view v;
	uint8_t *buf = NULL;
	const uint8_t *img;
	size_t len = 0, img_len;
	const char *what;
	char why[600];
	int rc;

	/* Refused first, before the file is even read: seeding must never
	 * replace or mix with rows a directory already holds. */
	if (srv->seq != 0 || (srv->model && isvd_model_rows_seen(srv->model) != 0)) {
		log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: refused: storage.dir %s already holds a model "
		        "(%llu rows); --seed only starts a directory without one (move it away, or "
		        "start without --seed)", path, dir, (unsigned long long)srv->seq);
		return -1;
	}
	if (read_file(path, &buf, &len, why, sizeof why)) {
		log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: %s", path, why);
		return -1;
	}
	img = buf;
	img_len = len;
	if (isvd_ckpt_is(buf, len)) {   /* a checkpoint: its image; the duplicate table is not kept */
		if ((rc = isvd_ckpt_parse(buf, len, &v, &what)) || !v.model) {
			log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: %s", path,
			        rc ? what : "the checkpoint holds no model");
			free(buf);
			return -1;
		}
		img = v.model;
		img_len = v.model_len;
	}
	if ((rc = isvd_model_load(img, img_len, &m))) {
		log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: not a usable model image: %s", path,
		        isvd_strerror(rc));
		free(buf);
		return -1;
	}
	free(buf);
	isvd_model_options(m, &o);
	if (rec_model_differs(srv->cfg, &o, REC_SEED, why, sizeof why)) {
		log_msg(srv->log, CFG_LOG_ERROR, "--seed %s: refused: %s", path, why);
		isvd_model_destroy(m);
		return -1;
	}
	ing_adopt_model(srv, m);
	srv->seq = srv->logged = isvd_model_rows_seen(m);
	if (rec_checkpoint(srv))   /* the seed is durable before anything is served */
		return -1;
	log_msg(srv->log, CFG_LOG_INFO, "seeded storage.dir %s from %s: %llu rows, dim %zu, %s mode",
	        dir, path, (unsigned long long)srv->seq, o.dim, isvd_mode_name(o.mode));
	return 0;
}

struct sto_hooks rec_hooks(struct isvdd *srv)
{
	const struct sto_hooks h = { srv, hook_load, hook_apply, srv->met };

	return h;
}
