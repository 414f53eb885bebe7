/*
 * cli_model.c — `isvd merge` and `isvd inspect`: the commands that work on
 * saved models instead of a daemon.
 *
 *   isvd merge -o OUT FILE...   the model of the union of the inputs' rows
 *                               (isvd_model_merge), saved as an engine image
 *   isvd inspect FILE           what a checkpoint or an image holds
 *
 * An input is an isvdd checkpoint file (checkpoint-*.isvdc, framed as
 * update/isvd_ckpt.h says; the model image inside is used, the duplicate
 * table ignored) or an engine image (isvd_model_save, what `merge` writes),
 * told apart by their magic.  These commands link the engine (update/) for
 * loading, merging and saving, and nothing of the daemon: the checkpoint
 * framing is read through the engine's isvd_ckpt.h.  Every error names the
 * file it is about.  Exit status as for the other commands: 0, 1 failure,
 * 2 usage.
 */
#include "cli_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isvd_ckpt.h"
#include "isvd_model.h"

#define EXIT_USAGE 2
#define IMAGE_MAGIC "ISVDMODL"   /* image.c's; the first bytes of an engine image */

static const char merge_help[] =
	"usage: isvd merge -o OUT FILE...\n\n"
	"Merges the models in FILE... (isvdd checkpoint files, e.g. the newest\n"
	"storage.dir/checkpoint-*.isvdc of each daemon, or engine images such as an\n"
	"earlier merge wrote) into one engine image OUT: the model of every row the\n"
	"inputs have seen, without the rows.  Exact-mode models merge exactly (the SVD\n"
	"of all rows, to rounding); truncated ones as accurately as their own models.\n"
	"Rows seen, weights, energy and the mean combine exactly.  The inputs must agree\n"
	"in dimension, mode, centring, rank, extra, forgetting factor and rcond.  OUT is\n"
	"written to OUT.tmp and renamed; start a daemon from it with isvdd --seed OUT.\n"
	"Works on files only: the common options do not apply.\n\n"
	"options:\n"
	"  -o, --output OUT  the image to write (required)\n"
	"  -h, --help        this help\n";

static const char inspect_help[] =
	"usage: isvd inspect FILE\n\n"
	"Prints what an isvdd checkpoint file or an engine image holds: its kind (and a\n"
	"checkpoint's seq and log record), mode, dimension, rank, centring, forgetting\n"
	"factor, rows seen, weight, energy and the explained share, and the spectrum.\n"
	"Works on files only: the common options do not apply.\n\n"
	"options:\n"
	"  -h, --help        this help\n";

/* A model read from a file: the model, and where it came from. */
struct loaded {
	const char *path;
	struct isvd_model *model;   /* NULL: a checkpoint of a daemon with no model yet */
	int is_ckpt;
	uint64_t seq, lsn;          /* a checkpoint's */
};

/* The whole of path into *buf (the caller frees it).  0, or 1 after
 * printing why. */
static int read_all(const char *cmd, const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b = NULL;
	size_t cap = 0, n = 0;

	*buf = NULL;
	if (!f) {
		fprintf(stderr, "isvd: %s: cannot open %s: %s\n", cmd, path, strerror(errno));
		return 1;
	}
	for (;;) {
		if (n == cap) {
			unsigned char *nb = cap < ((size_t)1 << 40) ? realloc(b, cap ? 2 * cap : 65536) : NULL;
			if (!nb) {
				fprintf(stderr, "isvd: %s: cannot read %s: %s\n", cmd, path, strerror(ENOMEM));
				goto fail;
			}
			b = nb;
			cap = cap ? 2 * cap : 65536;
		}
		const size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "isvd: %s: cannot read %s: %s\n", cmd, path, strerror(errno));
		goto fail;
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
fail:
	fclose(f);
	free(b);
	return 1;
}

/* Reads and checks path into *l.  0, or 1 after printing why (naming the
 * file). */
static int load(const char *cmd, const char *path, struct loaded *l)
{
	unsigned char *buf;
	size_t len;
	const unsigned char *img;
	size_t img_len;
	int err;

	memset(l, 0, sizeof *l);
	l->path = path;
	if (read_all(cmd, path, &buf, &len))
		return 1;
	if (isvd_ckpt_is(buf, len)) {
		struct isvd_ckpt_view v;
		const char *why;
		if ((err = isvd_ckpt_parse(buf, len, &v, &why))) {
			fprintf(stderr, "isvd: %s: %s: not a valid checkpoint (%s): %s\n", cmd, path,
			        isvd_strerror(err), why);
			goto fail;
		}
		l->is_ckpt = 1;
		l->seq = v.seq;
		l->lsn = v.lsn;
		if (!v.model) {   /* a daemon that never learned its dimension */
			free(buf);
			return 0;
		}
		img = v.model;
		img_len = v.model_len;
	} else if (len >= 8 && !memcmp(buf, IMAGE_MAGIC, 8)) {
		img = buf;
		img_len = len;
	} else {
		fprintf(stderr, "isvd: %s: %s: neither an isvdd checkpoint nor an isvd model image "
		        "(%s)\n", cmd, path, len < 8 ? "shorter than a magic" : "unknown magic");
		goto fail;
	}
	if ((err = isvd_model_load(img, img_len, &l->model))) {
		fprintf(stderr, "isvd: %s: %s: %s%s\n", cmd, path,
		        l->is_ckpt ? "the model image in the checkpoint: " : "", isvd_strerror(err));
		goto fail;
	}
	if (l->is_ckpt && isvd_model_rows_seen(l->model) != l->seq) {
		fprintf(stderr, "isvd: %s: %s: the model image holds %llu rows, the checkpoint says %llu\n",
		        cmd, path, (unsigned long long)isvd_model_rows_seen(l->model),
		        (unsigned long long)l->seq);
		isvd_model_destroy(l->model);
		l->model = NULL;
		goto fail;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return 1;
}

/* The value of the setting `what` (isvd_model_merge_check's names) of o. */
static void setting(const struct isvd_options *o, const char *what, char *out, size_t cap)
{
	if (!strcmp(what, "dimension"))
		snprintf(out, cap, "%zu", o->dim);
	else if (!strcmp(what, "mode"))
		snprintf(out, cap, "%s", isvd_mode_name(o->mode));
	else if (!strcmp(what, "centring"))
		snprintf(out, cap, "%s", o->center ? "on" : "off");
	else if (!strcmp(what, "rank"))
		snprintf(out, cap, "%zu", o->rank);
	else if (!strcmp(what, "extra"))
		snprintf(out, cap, "%zu", o->extra);
	else if (!strcmp(what, "forgetting factor"))
		snprintf(out, cap, "%.17g", o->forget);
	else
		snprintf(out, cap, "%.17g", o->rcond);
}

/* Writes the image of m to path through path.tmp and a rename.  0, or 1
 * after printing why. */
static int save(const char *cmd, const struct isvd_model *m, const char *path)
{
	const size_t need = isvd_model_saved_size(m);
	unsigned char *img = need ? malloc(need) : NULL;
	char *tmp = malloc(strlen(path) + 5);
	size_t len = 0;
	int err, rc = 1;
	FILE *f = NULL;

	if (!img || !tmp) {
		fprintf(stderr, "isvd: %s: cannot save the merged model: %s\n", cmd, strerror(ENOMEM));
		goto out;
	}
	if ((err = isvd_model_save(m, img, need, &len))) {
		fprintf(stderr, "isvd: %s: cannot save the merged model: %s\n", cmd, isvd_strerror(err));
		goto out;
	}
	sprintf(tmp, "%s.tmp", path);
	if (!(f = fopen(tmp, "wb")) || fwrite(img, 1, len, f) != len || fflush(f) ||
	    fsync(fileno(f))) {
		fprintf(stderr, "isvd: %s: cannot write %s: %s\n", cmd, tmp, strerror(errno));
		goto out;
	}
	if (fclose(f)) {
		f = NULL;
		fprintf(stderr, "isvd: %s: cannot write %s: %s\n", cmd, tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, path)) {
		fprintf(stderr, "isvd: %s: cannot rename %s to %s: %s\n", cmd, tmp, path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	if (rc && tmp)
		remove(tmp);
	free(img);
	free(tmp);
	return rc;
}

int cli_merge(int argc, char **argv)
{
	const char *out = NULL;
	struct loaded *in = NULL;
	const struct isvd_model **models = NULL;
	struct isvd_model *merged = NULL;
	size_t nin = 0;
	int rc = 1, err;

	in = calloc((size_t)argc, sizeof *in);
	models = calloc((size_t)argc, sizeof *models);
	if (!in || !models) {
		fprintf(stderr, "isvd: merge: %s\n", strerror(ENOMEM));
		goto out;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(merge_help, stdout);
			rc = 0;
			goto out;
		} else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) {
			out = argv[++i];
		} else if (!strncmp(a, "--output=", 9)) {
			out = a + 9;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "isvd: merge: unknown or incomplete option '%s'\n"
			        "(isvd merge --help for help)\n", a);
			rc = EXIT_USAGE;
			goto out;
		} else {
			in[nin++].path = a;
		}
	}
	if (!out || !*out || nin == 0) {
		fprintf(stderr, "isvd: merge: wants -o OUT and at least one FILE\n"
		        "(isvd merge --help for help)\n");
		rc = EXIT_USAGE;
		goto out;
	}
	for (size_t i = 0; i < nin; i++) {
		if (load("merge", in[i].path, &in[i]))
			goto out;
		if (!in[i].model) {
			fprintf(stderr, "isvd: merge: %s: the checkpoint holds no model yet (its daemon "
			        "never learned the dimension); leave it out\n", in[i].path);
			goto out;
		}
		models[i] = in[i].model;
	}
	for (size_t i = 1; i < nin; i++) {
		const char *what;
		if (isvd_model_merge_check(models[0], models[i], &what)) {
			struct isvd_options a, b;
			char va[64], vb[64];
			isvd_model_options(models[0], &a);
			isvd_model_options(models[i], &b);
			setting(&a, what, va, sizeof va);
			setting(&b, what, vb, sizeof vb);
			fprintf(stderr, "isvd: merge: %s and %s differ in %s (%s and %s): they cannot be "
			        "merged\n", in[0].path, in[i].path, what, va, vb);
			goto out;
		}
	}
	if ((err = isvd_model_merge(models, nin, &merged))) {
		fprintf(stderr, "isvd: merge: %s\n", isvd_strerror(err));
		goto out;
	}
	if (save("merge", merged, out))
		goto out;
	struct isvd_options o;
	isvd_model_options(merged, &o);
	printf("merged %zu model%s (%llu rows, dim %zu, rank %zu, %s) into %s\n", nin,
	       nin == 1 ? "" : "s", (unsigned long long)isvd_model_rows_seen(merged), o.dim,
	       isvd_model_rank(merged), isvd_mode_name(o.mode), out);
	rc = 0;
out:
	for (size_t i = 0; in && i < nin; i++)
		isvd_model_destroy(in[i].model);
	isvd_model_destroy(merged);
	free(in);
	free(models);
	return rc;
}

int cli_inspect(int argc, char **argv)
{
	struct loaded l;
	struct isvd_info info;
	struct isvd_options o;
	double *sigma = NULL;
	int err;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(inspect_help, stdout);
		return 0;
	}
	if (argc != 2 || (argv[1][0] == '-' && argv[1][1])) {
		fprintf(stderr, "isvd: inspect: wants one FILE\n(isvd inspect --help for help)\n");
		return EXIT_USAGE;
	}
	if (load("inspect", argv[1], &l))
		return 1;
	if (l.is_ckpt)
		printf("file        %s: isvdd checkpoint, seq %llu, log record %llu\n", l.path,
		       (unsigned long long)l.seq, (unsigned long long)l.lsn);
	else
		printf("file        %s: isvd model image\n", l.path);
	if (!l.model) {
		printf("model       none yet (the daemon never learned its dimension)\n");
		return 0;
	}
	if ((err = isvd_model_info(l.model, &info)) || (err = isvd_model_options(l.model, &o))) {
		fprintf(stderr, "isvd: inspect: %s: %s\n", l.path, isvd_strerror(err));
		isvd_model_destroy(l.model);
		return 1;
	}
	printf("mode        %s\n", isvd_mode_name(info.mode));
	printf("dim         %zu\n", info.dim);
	printf("rank        %zu (k %zu, extra %zu; %zu components kept)\n", info.rank, o.rank,
	       o.extra, info.rank_internal);
	printf("center      %s\n", info.center ? "yes" : "no");
	printf("forget      %.17g\n", info.forget);
	printf("rows        %llu\n", (unsigned long long)info.rows_seen);
	printf("seq         %llu\n", (unsigned long long)(l.is_ckpt ? l.seq : info.rows_seen));
	printf("weight      %.17g\n", info.weight_total);
	printf("energy      %.17g (top %zu: %.4f%%)\n", info.energy_total, info.rank,
	       100.0 * info.explained_energy_ratio);
	printf("condition   %.6g\n", info.condition_number);
	if (!(sigma = malloc((info.rank ? info.rank : 1) * sizeof *sigma))) {
		fprintf(stderr, "isvd: inspect: %s\n", strerror(ENOMEM));
		isvd_model_destroy(l.model);
		return 1;
	}
	isvd_model_factors(l.model, sigma, NULL, NULL, NULL);
	printf("sigma      ");
	for (size_t i = 0; i < info.rank; i++)
		printf(" %.17g", sigma[i]);
	printf("\n");
	free(sigma);
	isvd_model_destroy(l.model);
	return 0;
}
