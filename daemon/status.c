/*
 * status.c — the HTML of GET /status (see status.h).
 *
 * DESIGN
 *   The page is written top to bottom into a stream: a header with the
 *   state, a row of figures, three charts and three tables.  Everything it
 *   needs is inline: the style sheet (light and dark through
 *   prefers-color-scheme, the system's own fonts), the charts as SVG drawn
 *   here, the refresh as a meta tag; http.c serves it with a
 *   Content-Security-Policy that forbids anything else, so a stray external
 *   reference would show as an error in the browser, not as a silent fetch.
 *
 *   Charts: the spectrum is one <rect class="bar"> per reported component,
 *   its height proportional to log10 σ over whole decades spanning every
 *   σ > 0 with room below the smallest (a σ of 0 gets height 0), so
 *   heights are ordered as σ and none but a zero is empty; each bar
 *   carries data-component and data-sigma for tools and tests.  The
 *   explained-energy curve is Σ_{j≤i} σ_j² over the stream's whole energy.
 *   The ingest rate is the registry's ring (metrics.c): rows acknowledged
 *   per 10 s slot over the last hour.
 *
 *   Every string from the configuration is HTML-escaped (esc()).
 */
#include "status.h"

#include <math.h>
#include <string.h>

#include "isvd_model.h"
#include "query.h"

/* The charts' drawing areas, in SVG user units (about CSS pixels at the
 * cards' usual widths, so that labels keep their size): the spectrum and
 * the energy curve share a row, the rate chart has one of its own. */
#define CH_W   520.0
#define CH_WR  1060.0
#define CH_H   230.0
#define CH_L   52.0    /* left margin: the y labels */
#define CH_R   12.0
#define CH_T   12.0
#define CH_B   28.0    /* bottom margin: the x labels */

static const char style[] =
	":root{--bg:#f7f8fa;--card:#fff;--fg:#1d2330;--mute:#6a7386;--line:#e3e6ec;"
	"--accent:#3b6fd8;--accent2:#15a37f;--warn:#d0731a;--bad:#c8373f;--ok:#15a37f}"
	"@media (prefers-color-scheme:dark){:root{--bg:#0f1217;--card:#171b22;--fg:#e6e9ef;"
	"--mute:#8d96a8;--line:#272d38;--accent:#6f9bff;--accent2:#39c9a0;--warn:#f0a04b;"
	"--bad:#ff6b73;--ok:#39c9a0}}"
	"*{box-sizing:border-box}"
	"body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"
	"'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;-webkit-font-smoothing:antialiased}"
	"main{max-width:1120px;margin:0 auto;padding:24px 20px 40px}"
	"header{display:flex;flex-wrap:wrap;align-items:center;gap:12px 18px;margin-bottom:20px}"
	"h1{font-size:22px;margin:0;letter-spacing:-.01em}h1 span{color:var(--mute);font-weight:400}"
	"h2{font-size:14px;margin:0 0 10px;color:var(--mute);font-weight:600;text-transform:uppercase;"
	"letter-spacing:.06em}"
	".pill{display:inline-flex;align-items:center;gap:6px;padding:3px 11px;border-radius:999px;"
	"font-size:13px;font-weight:600;border:1px solid currentColor}"
	".pill:before{content:'';width:8px;height:8px;border-radius:50%;background:currentColor}"
	".ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}"
	".meta{color:var(--mute);font-size:13px;margin-left:auto}"
	".tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;"
	"margin-bottom:16px}"
	".tile,.card{background:var(--card);border:1px solid var(--line);border-radius:12px}"
	".tile{padding:12px 14px}.tile b{display:block;font-size:22px;font-weight:650;"
	"font-variant-numeric:tabular-nums;letter-spacing:-.01em}"
	".tile small{color:var(--mute);font-size:12px}"
	".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px;"
	"margin-bottom:16px}.two{grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}"
	".card{padding:16px 18px}.wide{grid-column:1/-1}"
	"svg{width:100%;height:auto;display:block}"
	"svg text{fill:var(--mute);font-size:11px;font-family:inherit}"
	".axis{stroke:var(--line);stroke-width:1}"
	".bar{fill:var(--accent)}.bar:hover{opacity:.8}"
	".curve{fill:none;stroke:var(--accent2);stroke-width:2.2}.dot{fill:var(--accent2)}"
	".area{fill:var(--accent);fill-opacity:.18;stroke:var(--accent);stroke-width:1.6}"
	"table{width:100%;border-collapse:collapse;font-size:14px}"
	"td{padding:6px 0;border-bottom:1px solid var(--line);vertical-align:top}"
	"td:first-child{color:var(--mute);width:44%;padding-right:10px}"
	"td:last-child{font-variant-numeric:tabular-nums;overflow-wrap:anywhere}"
	"tr:last-child td{border-bottom:0}"
	".empty{color:var(--mute);padding:40px 0;text-align:center}"
	"footer{margin-top:22px;color:var(--mute);font-size:12px;text-align:center}";

/* s, HTML-escaped. */
static void esc(FILE *out, const char *s)
{
	for (; s && *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", out); break;
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '"': fputs("&quot;", out); break;
		case '\'': fputs("&#39;", out); break;
		default: fputc(*s, out);
		}
}

/* v with thousands separators (thin spaces) into buf (64 bytes suffice). */
static const char *count_text(uint64_t v, char *buf, size_t cap)
{
	char d[32];
	const int n = snprintf(d, sizeof d, "%llu", (unsigned long long)v);
	size_t at = 0;

	for (int i = 0; i < n && at + 8 < cap; i++) {
		if (i && (n - i) % 3 == 0)
			at += (size_t)snprintf(buf + at, cap - at, "&#8201;");
		buf[at++] = d[i];
	}
	buf[at] = '\0';
	return buf;
}

static void count(FILE *out, uint64_t v)
{
	char buf[64];

	fputs(count_text(v, buf, sizeof buf), out);
}

static void bytes(FILE *out, uint64_t b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	fprintf(out, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void duration(FILE *out, double s)
{
	const uint64_t t = (uint64_t)s;

	if (t >= 86400)
		fprintf(out, "%llud %lluh", (unsigned long long)(t / 86400), (unsigned long long)(t % 86400 / 3600));
	else if (t >= 3600)
		fprintf(out, "%lluh %llum", (unsigned long long)(t / 3600), (unsigned long long)(t % 3600 / 60));
	else if (t >= 60)
		fprintf(out, "%llum %llus", (unsigned long long)(t / 60), (unsigned long long)(t % 60));
	else
		fprintf(out, "%.1f s", s);
}

static void row_begin(FILE *out, const char *label)
{
	fprintf(out, "<tr><td>%s</td><td>", label);
}

static void row_end(FILE *out)
{
	fputs("</td></tr>\n", out);
}

static void row_text(FILE *out, const char *label, const char *value)
{
	row_begin(out, label);
	esc(out, value);
	row_end(out);
}

static void row_count(FILE *out, const char *label, uint64_t v)
{
	row_begin(out, label);
	count(out, v);
	row_end(out);
}

static void tile(FILE *out, const char *label, const char *value, const char *note)
{
	fprintf(out, "<div class=\"tile\"><small>%s</small><b>%s</b><small>%s</small></div>\n", label,
	        value, note);
}

/* ------------------------------------------------------------------ charts */

static double plot_x(size_t i, size_t n, double cw)   /* the centre of slot i of n */
{
	return CH_L + (cw - CH_L - CH_R) * ((double)i + 0.5) / (double)n;
}

static void svg_open(FILE *out, const char *label, double cw)
{
	fprintf(out, "<svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%s\">\n", cw, CH_H, label);
}

/* A horizontal grid line at y with a label. */
static void y_tick(FILE *out, double y, const char *label, double cw)
{
	fprintf(out, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
	        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
	        CH_L, cw - CH_R, y, y, CH_L - 6, y + 4, label);
}

/* The x labels of n components: every one when few, else about ten. */
static void component_labels(FILE *out, size_t n)
{
	const size_t step = n <= 16 ? 1 : (n + 9) / 10;

	for (size_t i = 0; i < n; i += step)
		fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%zu</text>", plot_x(i, n, CH_W),
		        CH_H - CH_B + 16, i + 1);
	fputc('\n', out);
}

static void spectrum(FILE *out, const struct qry_summary *s)
{
	const double h = CH_H - CH_T - CH_B, w = (CH_W - CH_L - CH_R) / (double)s->nsigma;
	double lo = INFINITY, hi = 0;
	char label[32];

	for (size_t i = 0; i < s->nsigma; i++)
		if (s->sigma[i] > 0) {
			lo = fmin(lo, s->sigma[i]);
			hi = fmax(hi, s->sigma[i]);
		}
	if (!(hi > 0))
		lo = hi = 1;
	/* whole decades, the lowest at least a quarter decade under the smallest
	 * σ > 0, so that every σ > 0 has a visible bar */
	const int dlo = (int)floor(log10(lo) - 0.25), dhi = (int)fmax(ceil(log10(hi)), dlo + 1);
	svg_open(out, "singular values, log scale", CH_W);
	const int every = (dhi - dlo + 5) / 6;   /* at most about six labelled decades */
	for (int d = dlo; d <= dhi; d += every) {
		const double y = CH_T + h * (1 - (double)(d - dlo) / (dhi - dlo));
		snprintf(label, sizeof label, "1e%d", d);
		y_tick(out, y, label, CH_W);
	}
	for (size_t i = 0; i < s->nsigma; i++) {
		const double v = s->sigma[i];
		const double bh = v > 0 ? h * (log10(v) - dlo) / (dhi - dlo) : 0;
		fprintf(out, "<rect class=\"bar\" data-component=\"%zu\" data-sigma=\"%.17g\" x=\"%.2f\" "
		        "y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" rx=\"2\"><title>σ%zu = %.6g</title></rect>\n",
		        i + 1, v, plot_x(i, s->nsigma, CH_W) - w * 0.36, CH_T + h - bh, w * 0.72, bh, i + 1, v);
	}
	component_labels(out, s->nsigma);
	fputs("</svg>\n", out);
}

static void energy_curve(FILE *out, const struct qry_summary *s)
{
	const double h = CH_H - CH_T - CH_B, total = s->info.energy_total;
	double cum = 0;
	char label[16];

	svg_open(out, "cumulative explained energy", CH_W);
	for (int p = 0; p <= 100; p += 25) {
		snprintf(label, sizeof label, "%d%%", p);
		y_tick(out, CH_T + h * (1 - p / 100.0), label, CH_W);
	}
	fputs("<polyline class=\"curve\" points=\"", out);
	for (size_t i = 0; i < s->nsigma; i++) {
		cum += s->sigma[i] * s->sigma[i];
		const double r = total > 0 ? fmin(cum / total, 1) : 0;
		fprintf(out, "%.2f,%.2f ", plot_x(i, s->nsigma, CH_W), CH_T + h * (1 - r));
	}
	fputs("\"/>\n", out);
	cum = 0;
	for (size_t i = 0; i < s->nsigma; i++) {
		cum += s->sigma[i] * s->sigma[i];
		const double r = total > 0 ? fmin(cum / total, 1) : 0;
		fprintf(out, "<circle class=\"dot\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\"><title>components 1–%zu: "
		        "%.2f%%</title></circle>", plot_x(i, s->nsigma, CH_W), CH_T + h * (1 - r), i + 1, 100 * r);
	}
	fputc('\n', out);
	component_labels(out, s->nsigma);
	fputs("</svg>\n", out);
}

/* A round number ≥ v for the rate axis. */
static double nice_ceiling(double v)
{
	const double p = pow(10, floor(log10(v)));

	for (int m = 1; m <= 10; m++)
		if (m * p >= v)
			return m * p;
	return 10 * p;
}

static void rate_chart(FILE *out, const double *rate, size_t n)
{
	const double h = CH_H - CH_T - CH_B;
	double top = 0;
	char label[32];

	for (size_t i = 0; i < n; i++)
		top = fmax(top, rate[i]);
	top = top > 0 ? nice_ceiling(top) : 1;
	svg_open(out, "rows acknowledged per second over the last hour", CH_WR);
	for (int t = 0; t <= 4; t++) {
		const double v = top * t / 4;
		snprintf(label, sizeof label, v >= 1e6 ? "%.3gM" : v >= 1e3 ? "%.3gk" : "%.3g",
		         v >= 1e6 ? v / 1e6 : v >= 1e3 ? v / 1e3 : v);
		y_tick(out, CH_T + h * (1 - t / 4.0), label, CH_WR);
	}
	fprintf(out, "<path class=\"area\" d=\"M%.2f,%.2f", plot_x(0, n, CH_WR), CH_T + h);
	for (size_t i = 0; i < n; i++)
		fprintf(out, " L%.2f,%.2f", plot_x(i, n, CH_WR), CH_T + h * (1 - rate[i] / top));
	fprintf(out, " L%.2f,%.2f Z\"/>\n", plot_x(n - 1, n, CH_WR), CH_T + h);
	for (int m = 60; m > 0; m -= 10)
		fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">−%d min</text>",
		        plot_x((size_t)((60 - m) * (n - 1) / 60), n, CH_WR), CH_H - CH_B + 16, m);
	fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">now</text>", CH_WR - CH_R,
	        CH_H - CH_B + 16);
	fputs("\n</svg>\n", out);
}

/* ------------------------------------------------------------------- page */

static void header(const struct status_page *p, FILE *out)
{
	const char *cls = "ok", *state = "serving";

	if (p->phase == MET_RECOVERING)
		cls = "warn", state = "recovering";
	else if (p->phase == MET_STOPPING)
		cls = "warn", state = "stopping";
	else if (p->storage_failed)
		cls = "bad", state = "storage failed: pushes refused";
	fputs("<header><h1>isvdd <span>", out);
	esc(out, p->version);
	fprintf(out, "</span></h1><span class=\"pill %s\" id=\"state\">%s</span>", cls, state);
	fputs("<span class=\"meta\">up ", out);
	duration(out, (double)(p->now_ms - p->start_ms) / 1000.0);
	fprintf(out, " · refreshes every %d s</span></header>\n", STATUS_REFRESH_S);
	if (p->storage_failed) {
		fputs("<div class=\"card bad\" style=\"margin-bottom:16px\">", out);
		esc(out, p->storage_why);
		fputs("</div>\n", out);
	}
}

static void tiles(const struct status_page *p, FILE *out)
{
	const struct qry_summary *s = p->model;
	const bool have = s && s->have_model;
	char v[96];
	const double now = p->nrate ? p->rate[p->nrate - 1] : 0;
	fputs("<section class=\"tiles\">\n", out);
	tile(out, "rows in the model", count_text(s ? s->seq : 0, v, sizeof v), "acknowledged and applied");
	tile(out, "ingest, rows/s", count_text((uint64_t)(now + 0.5), v, sizeof v), "the last whole 10 s");
	snprintf(v, sizeof v, have ? "%zu / %zu" : "–", have ? s->nsigma : 0, have ? s->info.rank_max : 0);
	tile(out, "components", v, "reported / k");
	snprintf(v, sizeof v, have ? "%.2f%%" : "–", have ? 100 * s->info.explained_energy_ratio : 0);
	tile(out, "explained energy", v, "by the reported components");
	snprintf(v, sizeof v, have ? "%.3g" : "–", have ? s->info.condition_number : 0);
	tile(out, "condition number", v, "σ₁ / σ_rank");
	snprintf(v, sizeof v, have ? "%.1e" : "–", have ? s->info.orthogonality_error : 0);
	tile(out, "orthogonality error", v, "‖VᵀV − I‖_F");
	fputs("</section>\n", out);
}

static void charts(const struct status_page *p, FILE *out)
{
	const struct qry_summary *s = p->model;
	const bool have = s && s->have_model && s->nsigma > 0;

	fputs("<section class=\"grid two\">\n<div class=\"card\"><h2>Spectrum σ (log scale)</h2>\n", out);
	if (have)
		spectrum(out, s);
	else
		fputs("<div class=\"empty\">no rows yet</div>\n", out);
	fputs("</div>\n<div class=\"card\"><h2>Cumulative explained energy</h2>\n", out);
	if (have)
		energy_curve(out, s);
	else
		fputs("<div class=\"empty\">no rows yet</div>\n", out);
	fputs("</div>\n<div class=\"card wide\"><h2>Ingest, rows/s over the last hour</h2>\n", out);
	rate_chart(out, p->rate, p->nrate);
	fputs("</div>\n</section>\n<section class=\"grid\">\n", out);
}

static void model_table(const struct status_page *p, FILE *out)
{
	const struct qry_summary *s = p->model;
	const struct cfg *c = p->cfg;
	char v[96];

	fputs("<div class=\"card\"><h2>Model</h2><table>\n", out);
	if (s && s->have_model) {
		snprintf(v, sizeof v, "%zu", s->info.dim);
		row_text(out, "dimension n", v);
		snprintf(v, sizeof v, "%zu of k = %zu (%zu kept)", s->nsigma, s->info.rank_max,
		         s->info.rank_internal);
		row_text(out, "components", v);
		row_text(out, "update mode", isvd_mode_name(s->info.mode));
		row_text(out, "centring", s->info.center ? "on (PCA)" : "off");
		snprintf(v, sizeof v, "%.10g%s", s->info.forget, s->info.forget == 1 ? " (no forgetting)" : "");
		row_text(out, "forgetting factor λ", v);
		row_count(out, "rows seen", s->info.rows_seen);
		snprintf(v, sizeof v, "%.6g", s->info.weight_total);
		row_text(out, "effective rows Σw", v);
		row_count(out, "re-orthogonalisations", s->info.reorth_count);
		if (s->info.missing == ISVD_MISSING_IMPUTE) {
			snprintf(v, sizeof v, "imputed: %llu rows with gaps, %llu values filled",
			         (unsigned long long)s->info.rows_with_gaps,
			         (unsigned long long)s->info.values_imputed);
			row_text(out, "missing values", v);
		} else {
			row_text(out, "missing values", "refused (model.missing: reject)");
		}
	} else {
		snprintf(v, sizeof v, "%llu%s", (unsigned long long)c->model.dim,
		         c->model.dim ? "" : " (from the first push)");
		row_text(out, "dimension n", v);
		snprintf(v, sizeof v, "%llu", (unsigned long long)c->model.rank);
		row_text(out, "rank k", v);
		row_text(out, "state", p->phase == MET_RECOVERING ? "recovering" : "no rows yet");
	}
	const struct met_totals *mt = &p->totals;
	if (!mt->monitored) {
		row_text(out, "drift", "not monitored (monitor.enabled: false)");
	} else if (!isfinite(mt->drift_baseline_deg)) {
		row_text(out, "drift", "no baseline yet");
	} else {
		snprintf(v, sizeof v, "%.2f° from the baseline, %.2f° since the last snapshot; "
		         "%llu rows flagged", mt->drift_baseline_deg,
		         isfinite(mt->drift_prev_deg) ? mt->drift_prev_deg : 0.0,
		         (unsigned long long)mt->rows_flagged);
		row_text(out, "drift", v);
	}
	fputs("</table></div>\n", out);
}

static void storage_table(const struct status_page *p, FILE *out)
{
	const struct met_totals *t = &p->totals;

	fputs("<div class=\"card\"><h2>Storage</h2><table>\n", out);
	row_text(out, "directory", p->cfg->storage.dir);
	row_text(out, "fsync", cfg_fsync_name(p->cfg->storage.fsync));
	row_begin(out, "write-ahead log");
	bytes(out, t->log_bytes);
	fprintf(out, " in %llu segment%s", (unsigned long long)t->log_segments, t->log_segments == 1 ? "" : "s");
	row_end(out);
	row_begin(out, "last checkpoint");
	if (t->have_checkpoint) {
		count(out, t->checkpoint_seq);
		fputs(" rows, ", out);
		duration(out, p->now_ms > t->checkpoint_ms ? (double)(p->now_ms - t->checkpoint_ms) / 1000.0 : 0);
		fputs(" ago", out);
	} else {
		fputs("none yet", out);
	}
	row_end(out);
	row_begin(out, "state");
	if (p->storage_failed) {
		fputs("<span class=\"bad\">failed: ", out);
		esc(out, p->storage_why);
		fputs("</span>", out);
	} else {
		fputs("<span class=\"ok\">healthy</span>", out);
	}
	row_end(out);
	row_count(out, "failures since start", t->storage_failures);
	fputs("</table></div>\n", out);
}

static void process_table(const struct status_page *p, FILE *out)
{
	const struct met_totals *t = &p->totals;
	char v[64];

	fputs("<div class=\"card\"><h2>Process</h2><table>\n", out);
	snprintf(v, sizeof v, "%s, protocol %d", p->version, p->protocol);
	row_text(out, "version", v);
	row_begin(out, "uptime");
	duration(out, (double)(p->now_ms - p->start_ms) / 1000.0);
	row_end(out);
	row_text(out, "ingest", p->cfg->endpoints.ingest);
	row_text(out, "query", p->cfg->endpoints.query);
	row_text(out, "publish", p->cfg->endpoints.publish);
	row_text(out, "CURVE", p->cfg->security.curve ? "on" : "off");
	row_count(out, "rows acknowledged since start", t->rows);
	row_count(out, "pushes", t->pushes);
	row_count(out, "duplicates", t->duplicates);
	row_count(out, "refusals", t->refusals);
	row_count(out, "queries", t->queries);
	row_count(out, "snapshots published", t->snapshots);
	fputs("</table></div>\n", out);
}

void status_render(const struct status_page *p, FILE *out)
{
	fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
	        "<meta http-equiv=\"refresh\" content=\"%d\">"
	        "<meta name=\"color-scheme\" content=\"light dark\">"
	        "<link rel=\"icon\" href=\"data:,\">"
	        "<title>isvdd · %s</title><style>%s</style></head>\n<body><main>\n",
	        STATUS_REFRESH_S, p->phase == MET_SERVING && !p->storage_failed ? "serving" : "attention",
	        style);
	header(p, out);
	tiles(p, out);
	charts(p, out);
	model_table(p, out);
	storage_table(p, out);
	process_table(p, out);
	fputs("</section>\n<footer>isvdd · <a style=\"color:inherit\" href=\"/metrics\">/metrics</a> · "
	      "<a style=\"color:inherit\" href=\"/healthz\">/healthz</a></footer>\n</main></body></html>\n",
	      out);
}
