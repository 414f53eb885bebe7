/*
 * cli_output.c — what the `isvd` tool writes: CSV, NPY v1.0 files, JSON,
 * the spectrum bar chart of `info`, snapshot lines and the push progress
 * bar.  Numbers are written with %.17g so that a value read back is the
 * value the daemon sent.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_put_double(FILE *f, double v)
{
	if (isnan(v))
		fputs("nan", f);
	else
		fprintf(f, "%.17g", v);
}

void cli_json_double(FILE *f, double v)
{
	if (!isfinite(v))
		fputs("null", f);
	else
		fprintf(f, "%.17g", v);
}

void cli_json_vec(FILE *f, const double *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		cli_json_double(f, v[i]);
	}
	fputc(']', f);
}

void cli_json_matrix(FILE *f, const struct isvd_client_matrix *m)
{
	fputc('[', f);
	for (size_t i = 0; i < m->rows; i++) {
		if (i)
			fputc(',', f);
		cli_json_vec(f, m->data + i * m->cols, m->cols);
	}
	fputc(']', f);
}

/* A CSV field, quoted when it holds a comma, quote or newline. */
static void put_field(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

int cli_write_csv(FILE *f, const char *const *head, size_t nhead, const struct isvd_client_matrix *m,
                  const char *extra_name, const double *extra)
{
	if (nhead) {
		for (size_t j = 0; j < nhead; j++) {
			if (j)
				fputc(',', f);
			put_field(f, head[j]);
		}
		if (extra_name) {
			fputc(',', f);
			put_field(f, extra_name);
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < m->rows; i++) {
		for (size_t j = 0; j < m->cols; j++) {
			if (j)
				fputc(',', f);
			cli_put_double(f, m->data[i * m->cols + j]);
		}
		if (extra) {
			if (m->cols)
				fputc(',', f);
			cli_put_double(f, extra[i]);
		}
		fputc('\n', f);
	}
	return ferror(f) ? -1 : 0;
}

int cli_write_npy(const char *path, const double *v, size_t rows, size_t cols)
{
	char dict[128];
	unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0 };
	size_t n = rows ? rows * cols : cols;
	int len;

	if (rows)
		len = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %zu), }",
		               rows, cols);
	else
		len = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu,), }",
		               cols);
	/* pad with spaces and end with '\n' so that the data starts at a
	 * multiple of 64 (NPY format, version 1.0) */
	size_t total = 10 + (size_t)len + 1;
	size_t pad = (64 - total % 64) % 64;
	size_t hlen = (size_t)len + pad + 1;
	pre[8] = (unsigned char)(hlen & 0xff);
	pre[9] = (unsigned char)(hlen >> 8);

	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(pre, 1, sizeof pre, f);
	fwrite(dict, 1, (size_t)len, f);
	for (size_t i = 0; i < pad; i++)
		fputc(' ', f);
	fputc('\n', f);
	for (size_t i = 0; i < n; i++) {
		uint64_t u;
		unsigned char b[8];
		memcpy(&u, &v[i], 8);
		for (int k = 0; k < 8; k++)
			b[k] = (unsigned char)(u >> (8 * k));
		fwrite(b, 1, 8, f);
	}
	int bad = ferror(f);
	int e = errno;
	if (fclose(f) || bad) {
		if (bad)
			errno = e ? e : EIO;
		return -1;
	}
	return 0;
}

/* A bar of width w·frac characters (eighth blocks in UTF-8, else '#'). */
static void bar(FILE *f, double frac, int width, bool utf8)
{
	static const char *const eighths[] = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" };
	if (!(frac > 0))
		return;
	if (frac > 1)
		frac = 1;
	if (!utf8) {
		int n = (int)lround(frac * width);
		for (int i = 0; i < n; i++)
			fputc('#', f);
		return;
	}
	int units = (int)lround(frac * width * 8);
	for (int i = 0; i < units / 8; i++)
		fputs("█", f);
	fputs(eighths[units % 8], f);
}

void cli_print_info(FILE *f, const struct isvd_client_info *in, bool utf8)
{
	double sum2 = 0;
	for (size_t i = 0; i < in->nsigma; i++)
		sum2 += in->sigma[i] * in->sigma[i];

	fprintf(f, "model      dim %" PRIu64 ", rank %" PRIu64 " of %" PRIu64 ", %s, forget %g%s%s\n",
	        in->dim, in->rank, in->rank_max, in->center ? "centred" : "not centred", in->forget,
	        in->mode[0] ? ", mode " : "", in->mode);
	fprintf(f, "rows       %" PRIu64 " seen, seq %" PRIu64 ", last checkpoint seq %" PRIu64 "\n",
	        in->rows_seen, in->seq, in->last_checkpoint_seq);
	fprintf(f, "daemon     up %.1f s, ingest %.0f rows/s\n", in->uptime_s, in->ingest_rows_per_s);
	if (in->missing[0] || in->has_gaps)
		fprintf(f, "gaps       missing values %s; %" PRIu64 " rows with gaps, %" PRIu64
		        " values imputed since start\n", in->missing[0] ? in->missing : "?",
		        in->rows_with_gaps, in->values_imputed);
	fprintf(f, "quality    explained energy %.2f%%, condition number %.6g, orthogonality error %.3g\n",
	        100 * in->explained_energy_ratio, in->condition_number, in->orthogonality_error);
	if (in->has_monitor) {
		fprintf(f, "monitor    limits SPE %.6g, T2 %.6g; %" PRIu64 " rows flagged (%" PRIu64
		        " anomaly messages, %" PRIu64 " dropped)\n", in->spe_limit, in->t2_limit,
		        in->rows_flagged, in->anomaly_messages, in->anomaly_messages_dropped);
		if (isfinite(in->drift_baseline_deg))
			fprintf(f, "drift      %.2f° from the baseline (row %" PRIu64 "), %.2f° since the "
			        "last snapshot\n", in->drift_baseline_deg, in->baseline_seq,
			        isfinite(in->drift_prev_deg) ? in->drift_prev_deg : 0.0);
		else
			fprintf(f, "drift      no baseline yet\n");
	}
	for (size_t i = 0; i < in->npushers; i++) {   /* most rows first */
		const struct isvd_client_pusher *p = &in->pushers[i];
		char key[48];
		size_t k = 0;
		for (; p->key[k] && k < 44; k++)   /* a client id is any bytes: printable only */
			key[k] = p->key[k] >= 0x20 && p->key[k] < 0x7f ? p->key[k] : '?';
		key[k] = '\0';
		fprintf(f, "%s %-44s %" PRIu64 " pushes, %" PRIu64 " rows; rate-limited %" PRIu64
		        " pushes, %" PRIu64 " rows\n", i ? "          " : "pushers   ", key, p->pushes,
		        p->rows, p->limited_pushes, p->limited_rows);
	}
	if (in->nsigma == 0) {
		fprintf(f, "\nno components yet: the model has seen no rows\n");
		return;
	}
	/* share of the total energy: σᵢ² / Σσⱼ² × explained_energy_ratio */
	fprintf(f, "\n%4s %14s %9s %9s\n", "i", "sigma", "energy", "cumul.");
	double cum = 0;
	for (size_t i = 0; i < in->nsigma; i++) {
		double share = sum2 > 0 ? in->sigma[i] * in->sigma[i] / sum2 * in->explained_energy_ratio : 0;
		cum += share;
		fprintf(f, "%4zu %14.6g %8.2f%% %8.2f%%  ", i + 1, in->sigma[i], 100 * share, 100 * cum);
		bar(f, in->sigma[0] > 0 ? in->sigma[i] / in->sigma[0] : 0, 40, utf8);
		if (in->stable && !(in->stable[i] > 0))
			fputs("  unstable", f);
		fputc('\n', f);
	}
	if (in->stable) {
		bool any = false;
		for (size_t i = 0; i < in->nsigma; i++)
			any |= !(in->stable[i] > 0);
		if (any)
			fputs("\nunstable: the singular value is too close to a neighbour's for its vector to\n"
			      "mean anything alone; only the span of the close components is determined.\n", f);
	}
}

/* s as a JSON string: quotes, backslashes and control bytes escaped, other
 * bytes as they are (a client id may be any bytes: outside ASCII as \u00XX
 * of each byte, so the output stays valid UTF-8). */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		const unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

void cli_print_info_json(FILE *f, const struct isvd_client_info *in)
{
	fprintf(f, "{\"ok\":true,\"dim\":%" PRIu64 ",\"rank\":%" PRIu64 ",\"rank_max\":%" PRIu64
	           ",\"rows_seen\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"sigma\":",
	        in->dim, in->rank, in->rank_max, in->rows_seen, in->seq);
	cli_json_vec(f, in->sigma, in->nsigma);
	fputs(",\"explained_energy_ratio\":", f);
	cli_json_double(f, in->explained_energy_ratio);
	fputs(",\"condition_number\":", f);
	cli_json_double(f, in->condition_number);
	fputs(",\"orthogonality_error\":", f);
	cli_json_double(f, in->orthogonality_error);
	fprintf(f, ",\"center\":%s,\"forget\":", in->center ? "true" : "false");
	cli_json_double(f, in->forget);
	if (in->mode[0])   /* "exact" or "truncated" (the library admits no other): no escaping */
		fprintf(f, ",\"mode\":\"%s\"", in->mode);
	fprintf(f, ",\"last_checkpoint_seq\":%" PRIu64 ",\"uptime_s\":", in->last_checkpoint_seq);
	cli_json_double(f, in->uptime_s);
	fputs(",\"ingest_rows_per_s\":", f);
	cli_json_double(f, in->ingest_rows_per_s);
	if (in->missing[0])   /* "reject" or "impute" (the library admits no other) */
		fprintf(f, ",\"missing\":\"%s\"", in->missing);
	if (in->has_gaps)
		fprintf(f, ",\"rows_with_gaps\":%" PRIu64 ",\"values_imputed\":%" PRIu64,
		        in->rows_with_gaps, in->values_imputed);
	if (in->has_monitor) {
		fputs(",\"spe_limit\":", f);
		cli_json_double(f, in->spe_limit);
		fputs(",\"t2_limit\":", f);
		cli_json_double(f, in->t2_limit);
		fprintf(f, ",\"rows_flagged\":%" PRIu64 ",\"anomaly_messages\":%" PRIu64
		        ",\"anomaly_messages_dropped\":%" PRIu64 ",\"baseline_seq\":%" PRIu64
		        ",\"drift_prev_deg\":", in->rows_flagged, in->anomaly_messages,
		        in->anomaly_messages_dropped, in->baseline_seq);
		cli_json_double(f, in->drift_prev_deg);
		fputs(",\"drift_baseline_deg\":", f);
		cli_json_double(f, in->drift_baseline_deg);
		if (in->gap && in->stable) {
			fputs(",\"gap\":", f);
			cli_json_vec(f, in->gap, in->nsigma);
			fputs(",\"stable\":", f);
			cli_json_vec(f, in->stable, in->nsigma);
		}
	}
	if (in->pushers) {
		fputs(",\"pushers\":[", f);
		for (size_t i = 0; i < in->npushers; i++) {
			const struct isvd_client_pusher *p = &in->pushers[i];
			fputs(i ? ",{\"key\":" : "{\"key\":", f);
			json_string(f, p->key);
			fprintf(f, ",\"pushes\":%" PRIu64 ",\"rows\":%" PRIu64 ",\"limited_pushes\":%" PRIu64
			        ",\"limited_rows\":%" PRIu64 "}", p->pushes, p->rows, p->limited_pushes,
			        p->limited_rows);
		}
		fputc(']', f);
	}
	fputs("}\n", f);
}

static void put_vec_short(FILE *f, const double *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, i ? ", %.6g" : "%.6g", v[i]);
	fputc(']', f);
}

/* The 0/1 stability flags as a short string "SUUS" (S stable, U not). */
static void put_flags(FILE *f, const double *stable, size_t k)
{
	for (size_t i = 0; i < k; i++)
		fputc(stable[i] > 0 ? 'S' : 'U', f);
}

static void json_u64s(FILE *f, const uint64_t *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, i ? ",%" PRIu64 : "%" PRIu64, v[i]);
	fputc(']', f);
}

void cli_print_snapshot(FILE *f, const struct isvd_client_snapshot *s, bool json)
{
	if (json) {
		if (s->topic == ISVD_CLIENT_TOPIC_SPECTRUM) {
			fprintf(f, "{\"topic\":\"spectrum\",\"seq\":%" PRIu64 ",\"rows_seen\":%" PRIu64 ",\"sigma\":",
			        s->seq, s->rows_seen);
			cli_json_vec(f, s->sigma, s->k);
			fputs(",\"explained_energy_ratio\":", f);
			cli_json_double(f, s->explained_energy_ratio);
			fputs(",\"t\":", f);
			cli_json_double(f, s->t);
			if (s->has_gaps)
				fprintf(f, ",\"rows_with_gaps\":%" PRIu64 ",\"values_imputed\":%" PRIu64,
				        s->rows_with_gaps, s->values_imputed);
			if (s->has_monitor) {
				fputs(",\"drift_prev_deg\":", f);
				cli_json_double(f, s->drift_prev_deg);
				fputs(",\"drift_baseline_deg\":", f);
				cli_json_double(f, s->drift_baseline_deg);
				fputs(",\"stable\":", f);
				cli_json_vec(f, s->stable, s->k);
			}
		} else if (s->topic == ISVD_CLIENT_TOPIC_FACTORS) {
			fprintf(f, "{\"topic\":\"factors\",\"seq\":%" PRIu64 ",\"sigma\":", s->seq);
			cli_json_vec(f, s->sigma, s->k);
			fputs(",\"vt\":", f);
			cli_json_matrix(f, &s->vt);
			fputs(",\"mean\":", f);
			if (s->mean)
				cli_json_vec(f, s->mean, s->dim);
			else
				fputs("null", f);
			if (s->has_monitor) {
				fputs(",\"stable\":", f);
				cli_json_vec(f, s->stable, s->k);
			}
		} else if (s->topic == ISVD_CLIENT_TOPIC_ANOMALY) {
			fputs("{\"topic\":\"anomaly\",\"seq\":", f);
			json_u64s(f, s->flagged_seq, s->nflagged);
			fputs(",\"spe\":", f);
			cli_json_vec(f, s->spe, s->nflagged);
			fputs(",\"t2\":", f);
			cli_json_vec(f, s->t2, s->nflagged);
			fputs(",\"spe_limit\":", f);
			cli_json_double(f, s->spe_limit);
			fputs(",\"t2_limit\":", f);
			cli_json_double(f, s->t2_limit);
			fputs(",\"t\":", f);
			cli_json_double(f, s->t);
		} else {
			fprintf(f, "{\"topic\":\"drift\",\"seq\":%" PRIu64 ",\"angle_deg\":", s->seq);
			cli_json_double(f, s->angle_deg);
			fputs(",\"threshold_deg\":", f);
			cli_json_double(f, s->threshold_deg);
			fprintf(f, ",\"baseline_seq\":%" PRIu64 ",\"exceeded\":%s,\"t\":", s->baseline_seq,
			        s->exceeded ? "true" : "false");
			cli_json_double(f, s->t);
		}
		fputs("}\n", f);
	} else if (s->topic == ISVD_CLIENT_TOPIC_SPECTRUM) {
		fprintf(f, "spectrum seq=%" PRIu64 " rows_seen=%" PRIu64 " energy=%.2f%% sigma=", s->seq,
		        s->rows_seen, 100 * s->explained_energy_ratio);
		put_vec_short(f, s->sigma, s->k);
		if (s->has_gaps && s->rows_with_gaps)
			fprintf(f, " gaps=%" PRIu64 "/%" PRIu64, s->values_imputed, s->rows_with_gaps);
		if (s->has_monitor) {
			fputs(" stable=", f);
			put_flags(f, s->stable, s->k);
			if (isfinite(s->drift_baseline_deg))
				fprintf(f, " drift=%.2fdeg", s->drift_baseline_deg);
		}
		fputc('\n', f);
	} else if (s->topic == ISVD_CLIENT_TOPIC_FACTORS) {
		fprintf(f, "factors seq=%" PRIu64 " k=%zu dim=%zu mean=%s sigma=", s->seq, s->k, s->dim,
		        s->mean ? "yes" : "no");
		put_vec_short(f, s->sigma, s->k);
		fputc('\n', f);
	} else if (s->topic == ISVD_CLIENT_TOPIC_ANOMALY) {
		fprintf(f, "anomaly rows=%zu spe_limit=%.6g t2_limit=%.6g seq=", s->nflagged, s->spe_limit,
		        s->t2_limit);
		for (size_t i = 0; i < s->nflagged && i < 8; i++)
			fprintf(f, i ? ",%" PRIu64 : "%" PRIu64, s->flagged_seq[i]);
		if (s->nflagged > 8)
			fputs(",...", f);
		fputc('\n', f);
	} else {
		fprintf(f, "drift seq=%" PRIu64 " angle=%.2fdeg %s %.2fdeg baseline_seq=%" PRIu64 "\n",
		        s->seq, s->angle_deg, s->exceeded ? "over" : "back under", s->threshold_deg,
		        s->baseline_seq);
	}
	fflush(f);
}

double cli_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cli_progress_start(struct cli_progress *p, int64_t size)
{
	p->tty = isatty(STDERR_FILENO);
	p->t0 = p->last = cli_now();
	p->size = size;
}

void cli_progress_update(struct cli_progress *p, uint64_t rows, uint64_t bytes, bool final)
{
	double now = cli_now();
	if (!p->tty || (!final && now - p->last < 0.1))
		return;
	p->last = now;
	double el = now - p->t0;
	double rate = el > 0 ? (double)rows / el : 0;
	if (p->size > 0) {
		double frac = (double)bytes / (double)p->size;
		if (frac > 1)
			frac = 1;
		int filled = (int)(frac * 30);
		fputs("\r\033[K[", stderr);
		for (int i = 0; i < 30; i++)
			fputc(i < filled ? '#' : '.', stderr);
		fprintf(stderr, "] %3.0f%% %" PRIu64 " rows %.0f rows/s", 100 * frac, rows, rate);
		if (!final && frac > 0 && el > 0.5)
			fprintf(stderr, " ETA %.0fs", el / frac - el);
	} else {
		fprintf(stderr, "\r\033[K%" PRIu64 " rows %.0f rows/s", rows, rate);
	}
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}
