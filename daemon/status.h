/*
 * status.h — the page GET /status serves (http.c): one self-contained HTML
 * document (no scripts, no external fonts, styles or images) that draws the
 * spectrum, the cumulative explained energy and the last hour's ingest rate
 * as inline SVG, and sums up the model, storage and the process.  It
 * reloads itself every STATUS_REFRESH_S seconds.
 */
#ifndef ISVDD_STATUS_H
#define ISVDD_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "metrics.h"

#define STATUS_REFRESH_S 5

struct qry_summary;

/* Everything the page shows, gathered by http.c. */
struct status_page {
	const char *version;
	int protocol;
	const struct cfg *cfg;
	enum met_phase phase;
	bool storage_failed;
	const char *storage_why;           /* when storage_failed */
	struct met_totals totals;
	const struct qry_summary *model;   /* NULL while recovering */
	const double *rate;                /* rows/s per MET_RATE_SLOT_MS, oldest first */
	size_t nrate;
	uint64_t now_ms, start_ms;         /* the loop's clock */
	const char *http_listen;           /* where the page is served */
};

/* Writes the page to out. */
void status_render(const struct status_page *p, FILE *out);

#endif /* ISVDD_STATUS_H */
