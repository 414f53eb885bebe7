/*
 * test_metrics.c — the registry (daemon/metrics.c): counters land under
 * their labels, histograms render cumulative with +Inf equal to _count and
 * _sum in base units, local error codes count as INTERNAL, the rate ring
 * forgets a slot when its period comes round again, the storage state
 * carries its reason, numbers print in the fewest digits that read back
 * exactly; and the status page (daemon/status.c) escapes what the
 * configuration says and draws one bar per σ, ordered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isvd_proto.h"
#include "metrics.h"
#include "query.h"
#include "status.h"

/* The registry rendered (malloc'd; the caller frees it). */
static char *render(struct met *m, const struct qry_summary *s)
{
	const struct met_info in = { "9.9.9", 1, "exact", 5000, 1000, s };
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(out);
	met_render(m, &in, out);
	fclose(out);
	return text;
}

/* The value of the sample line that starts with prefix + ' ', or -1. */
static double sample(const char *text, const char *prefix)
{
	const size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, prefix, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static void test_counters_and_labels(void **state)
{
	struct met *m = met_create();
	char *t;

	(void)state;
	assert_non_null(m);
	for (int i = 0; i < 3; i++)
		met_push(m);
	met_acked(m, 100, false, 12345);
	met_acked(m, 50, false, 12346);
	met_acked(m, 0, true, 12347);
	met_refusal(m, MET_INGEST, ISVD_PROTO_DIM_MISMATCH);
	met_refusal(m, MET_INGEST, ISVD_PROTO_NOMEM);      /* local: INTERNAL on the wire */
	met_refusal(m, MET_QUERY, ISVD_PROTO_NOT_READY);
	met_query(m, ISVD_OP_INFO, 2000);
	met_query(m, 999, 1);                               /* out of range: "invalid" */
	met_snapshot(m, 1);
	met_curve(m, 2, false);
	met_curve(m, 0, true);
	met_set_phase(m, MET_SERVING);
	t = render(m, NULL);
	assert_true(sample(t, "isvd_pushes_total") == 3);
	assert_true(sample(t, "isvd_rows_ingested_total") == 150);
	assert_true(sample(t, "isvd_push_duplicates_total") == 1);
	assert_true(sample(t, "isvd_refusals_total{socket=\"ingest\",code=\"DIM_MISMATCH\"}") == 1);
	assert_true(sample(t, "isvd_refusals_total{socket=\"ingest\",code=\"INTERNAL\"}") == 1);
	assert_true(sample(t, "isvd_refusals_total{socket=\"query\",code=\"NOT_READY\"}") == 1);
	assert_true(sample(t, "isvd_refusals_total{socket=\"query\",code=\"DIM_MISMATCH\"}") == 0);
	assert_null(strstr(t, "code=\"NOMEM\""));
	assert_true(sample(t, "isvd_queries_total{op=\"info\"}") == 1);
	assert_true(sample(t, "isvd_queries_total{op=\"invalid\"}") == 1);
	assert_null(strstr(t, "op=\"push\""));
	assert_true(sample(t, "isvd_snapshots_published_total{topic=\"factors\"}") == 1);
	assert_true(sample(t, "isvd_snapshots_published_total{topic=\"spectrum\"}") == 0);
	assert_true(sample(t, "isvd_curve_refused_total{socket=\"publish\"}") == 1);
	assert_true(sample(t, "isvd_curve_admitted_total{socket=\"ingest\"}") == 1);
	assert_true(sample(t, "isvd_recovering") == 0);
	assert_true(sample(t, "isvd_uptime_seconds") == 4);
	assert_true(sample(t, "isvd_build_info{version=\"9.9.9\",protocol=\"1\",mode=\"exact\"}") == 1);
	/* no model yet: the families are declared, without samples */
	assert_non_null(strstr(t, "# TYPE isvd_sigma gauge\n# HELP"));
	assert_null(strstr(t, "\nisvd_checkpoint_age_seconds "));
	free(t);
	met_destroy(m);
	met_destroy(NULL);
	met_push(NULL);   /* every writer takes NULL */
	met_fold(NULL, 1);
	met_storage_failed(NULL, "x");
}

static void test_histograms(void **state)
{
	struct met *m = met_create();
	char *t;

	(void)state;
	met_block(m, 1);         /* le 1 */
	met_block(m, 64);        /* le 64 */
	met_block(m, 65);        /* le 256 */
	met_block(m, 1000000);   /* above every bound */
	met_fold(m, 10000);      /* exactly 10 µs: le 1e-05 */
	met_fold(m, 3000000000u);
	t = render(m, NULL);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"1\"}") == 1);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"16\"}") == 1);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"64\"}") == 2);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"256\"}") == 3);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"65536\"}") == 3);
	assert_true(sample(t, "isvd_block_rows_bucket{le=\"+Inf\"}") == 4);
	assert_true(sample(t, "isvd_block_rows_count") == 4);
	assert_true(sample(t, "isvd_block_rows_sum") == 1000130);
	assert_true(sample(t, "isvd_fold_duration_seconds_bucket{le=\"1e-05\"}") == 1);
	assert_true(sample(t, "isvd_fold_duration_seconds_bucket{le=\"2.5\"}") == 1);
	assert_true(sample(t, "isvd_fold_duration_seconds_bucket{le=\"5\"}") == 2);
	assert_true(sample(t, "isvd_fold_duration_seconds_sum") == 3.00001);
	assert_true(sample(t, "isvd_query_duration_seconds_count{op=\"ping\"}") == 0);
	free(t);
	met_destroy(m);
}

static void test_rate_ring(void **state)
{
	struct met *m = met_create();
	double r[MET_RATE_SLOTS];
	const uint64_t slot = MET_RATE_SLOT_MS, t0 = 1000 * slot;

	(void)state;
	met_acked(m, 100, false, t0 + 1);             /* period P */
	met_acked(m, 50, false, t0 + slot - 1);       /* still P */
	met_acked(m, 30, false, t0 + 2 * slot);       /* P + 2 */
	met_rate(m, t0 + 3 * slot + 5, r, 3);         /* P, P + 1, P + 2; P + 3 is current */
	assert_true(r[0] == 150.0 * 1000 / slot);
	assert_true(r[1] == 0);
	assert_true(r[2] == 30.0 * 1000 / slot);
	met_rate(m, t0 + 2 * slot + 5, r, 1);         /* P + 2 is still current: P + 1 */
	assert_true(r[0] == 0);
	/* a whole ring later the slot of P is reused and starts from zero */
	met_acked(m, 7, false, t0 + MET_RATE_SLOTS * slot);
	met_rate(m, t0 + (MET_RATE_SLOTS + 1) * slot, r, 1);
	assert_true(r[0] == 7.0 * 1000 / slot);
	/* and nothing older than the ring is shown */
	met_rate(m, t0 + (2 * MET_RATE_SLOTS + 5) * slot, r, MET_RATE_SLOTS - 1);
	for (size_t i = 0; i < MET_RATE_SLOTS - 1; i++)
		assert_true(r[i] == 0);
	met_destroy(m);
}

static void test_storage_state_and_checkpoint(void **state)
{
	struct met *m = met_create();
	struct met_totals tt;
	char why[64], *t;

	(void)state;
	assert_false(met_storage_state(m, why, sizeof why));
	assert_string_equal(why, "");
	met_storage_failed(m, "log: write: No space left on device");
	met_storage_failed(m, "log: still");          /* the same failure: counted once */
	assert_true(met_storage_state(m, why, sizeof why));
	assert_string_equal(why, "log: still");
	met_checkpoint(m, 1234, 4000);
	met_log_size(m, 4096, 2);
	t = render(m, NULL);
	assert_true(sample(t, "isvd_storage_failed") == 1);
	assert_true(sample(t, "isvd_storage_failures_total") == 1);
	assert_true(sample(t, "isvd_checkpoint_rows") == 1234);
	assert_true(sample(t, "isvd_checkpoint_age_seconds") == 1);
	assert_true(sample(t, "isvd_log_bytes") == 4096);
	assert_true(sample(t, "isvd_log_segments") == 2);
	free(t);
	met_storage_healthy(m);
	assert_false(met_storage_state(m, why, sizeof why));
	met_storage_failed(m, "again");
	met_totals(m, &tt);
	assert_int_equal(tt.storage_failures, 2);
	assert_true(tt.have_checkpoint);
	met_destroy(m);
}

static void test_shortest(void **state)
{
	const double v[] = { 0.1, 1.0 / 3, 39472.279392987592, 1e-300, 5e-324, 123456789.0 };
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		assert_true(strtod(met_shortest(v[i], buf, sizeof buf), NULL) == v[i]);
	assert_string_equal(met_shortest(0.1, buf, sizeof buf), "0.1");
	assert_string_equal(met_shortest(123456789.0, buf, sizeof buf), "123456789");
}

/* The page with a model of σ = {100, 10, 1, 0} and a hostile storage.dir. */
static void test_status_page(void **state)
{
	struct qry_summary *s = calloc(1, sizeof *s);
	struct cfg c;
	double rate[4] = { 0, 5, 10, 2.5 };
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	(void)state;
	assert_int_equal(cfg_init_defaults(&c), 0);
	free(c.storage.dir);
	c.storage.dir = strdup("/srv/<script>alert('x')</script>&\"");
	s->gen = 1;
	s->seq = 42;
	s->have_model = true;
	s->info.dim = 5;
	s->info.rank_max = 4;
	s->info.energy_total = 10101;
	s->nsigma = 4;
	s->sigma[0] = 100;
	s->sigma[1] = 10;
	s->sigma[2] = 1;
	s->sigma[3] = 0;
	const struct status_page p = { "1.2.3", 1, &c, MET_SERVING, false, "", { 0 }, s, rate, 4,
	                               10000, 1000, "127.0.0.1:0" };
	assert_non_null(out = open_memstream(&text, &len));
	status_render(&p, out);
	fclose(out);
	assert_null(strstr(text, "<script"));
	assert_non_null(strstr(text, "/srv/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
	assert_non_null(strstr(text, "http-equiv=\"refresh\""));
	assert_null(strstr(text, "http://"));   /* nothing external */
	assert_null(strstr(text, "https://"));
	/* four bars, heights non-increasing, the σ = 0 one empty */
	double h[4];
	const char *at = text;
	for (int i = 0; i < 4; i++) {
		char want[64];
		snprintf(want, sizeof want, "data-component=\"%d\"", i + 1);
		assert_non_null(at = strstr(at, want));
		const char *hh = strstr(at, "height=\"");
		assert_non_null(hh);
		h[i] = strtod(hh + 8, NULL);
	}
	assert_null(strstr(at + 1, "data-component="));
	assert_true(h[0] > h[1] && h[1] > h[2] && h[2] > h[3] && h[3] == 0);
	free(text);
	free(s);
	cfg_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_and_labels),
		cmocka_unit_test(test_histograms),
		cmocka_unit_test(test_rate_ring),
		cmocka_unit_test(test_storage_state_and_checkpoint),
		cmocka_unit_test(test_shortest),
		cmocka_unit_test(test_status_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
