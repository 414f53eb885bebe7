/*
 * test_weighted.c — centring and forgetting against their definitions.
 *
 * A model with forgetting λ and centring stands for the matrix whose rows
 * are sqrt(λ^t)(x_t − μ), t the row's age in rows and μ the weighted mean
 * (isvd_model.h).  ref_weighted() builds that matrix explicitly and LAPACK
 * takes its SVD.  The data are chosen so that truncation loses nothing
 * (exactly low-rank rows, or n ≤ k + extra), hence the comparison is tight:
 * σ to 1e-10 relative, subspace sine ≤ 1e-8, mean to 1e-10.  The info
 * fields are checked against the same explicit matrix.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

enum data_kind {
	LOWRANK,   /* n = 30, rank 4 (+ the offset direction when not centred) */
	FULLRANK   /* n = 10 ≤ k + extra, full rank, well separated spectrum */
};

struct wcase {
	enum data_kind kind;
	int center;
	double lambda;
	size_t block;      /* 0 = seeded mix */
	size_t max_block;  /* 0 = default */
	uint64_t seed;
};

/* The info fields against the explicit weighted matrix w (m×n). */
static void check_info(const struct isvd_model *md, const double *w, size_t m, size_t n,
                       double weight_ref, int center, double lambda)
{
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	double *s_ref = ref_alloc(n);
	ref_svd(w, m, n, n, s_ref, NULL);
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);

	assert_int_equal(info.dim, n);
	assert_int_equal(info.rank, r);
	assert_int_equal(info.rows_seen, m);
	assert_int_equal(info.center, center);
	REF_ASSERT_CLOSE(info.forget, lambda, 0.0);
	assert_int_equal(info.reorth_every, 100000);
	assert_int_equal(info.reorth_count, 0);
	REF_ASSERT_CLOSE(info.weight_total, weight_ref, 1e-12 * weight_ref);

	double fro = ref_frob(w, m, n), energy = fro * fro;
	REF_ASSERT_CLOSE(info.energy_total, energy, 1e-10 * energy);

	double captured = 0.0, captured_ref = 0.0;
	for (size_t i = 0; i < r; i++) {
		captured += s[i] * s[i];
		captured_ref += s_ref[i] * s_ref[i];
	}
	REF_ASSERT_CLOSE(info.energy_captured, captured, 1e-12 * captured);
	REF_ASSERT_CLOSE(info.energy_captured, captured_ref, 1e-10 * captured_ref);
	REF_ASSERT_CLOSE(info.explained_energy_ratio, captured / info.energy_total, 1e-12);
	REF_ASSERT_CLOSE(info.explained_energy_ratio, captured_ref / energy, 1e-10);
	assert_true(info.explained_energy_ratio <= 1.0 + 1e-12);

	assert_true(r >= 1);
	REF_ASSERT_CLOSE(info.condition_number, s[0] / s[r - 1], 1e-12 * s[0] / s[r - 1]);
	REF_ASSERT_CLOSE(info.condition_number, s_ref[0] / s_ref[r - 1],
	                 1e-9 * s_ref[0] / s_ref[r - 1]);
	REF_ASSERT_LE(info.orthogonality_error, 1e-12);

	free(s_ref);
	free(s);
	free(vt);
	free(mu);
}

static void run_weighted(const struct wcase *c)
{
	size_t n, k, extra, r, rank, m;
	double *x;
	if (c->kind == LOWRANK) {
		n = 30, k = 5, extra = 3, r = 4, m = 300;
		x = ref_make_rows(c->seed, m, n, r, 0.8, 0.0, 3.0);
		rank = c->center ? r : r + 1;
	} else {
		n = 10, k = 4, extra = 6, r = 10, m = 300;
		x = ref_make_rows(c->seed, m, n, r, 0.75, 0.0, 2.0);
		rank = k;
	}
	struct isvd_options o = ref_options(n, k, extra);
	o.center = c->center;
	o.forget = c->lambda;
	if (c->max_block)
		o.max_block = c->max_block;
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, x, m, n, c->block, 23, c->seed * 7 + 1);

	double *w = ref_alloc(m * n), *mean = ref_alloc(n), weight;
	ref_weighted(x, m, n, c->lambda, c->center, w, mean, &weight);
	ref_check_against(md, w, m, n, rank, rank, mean, 1e-10, 1e-8);
	check_info(md, w, m, n, weight, c->center, c->lambda);

	/* Also right in the middle of the stream, not only at its end: feed
	 * the same rows again and compare with the doubled stream. */
	ref_feed(md, x, m, n, c->block, 23, c->seed * 7 + 2);
	double *x2 = ref_alloc(2 * m * n), *w2 = ref_alloc(2 * m * n);
	for (size_t i = 0; i < 2 * m * n; i++)
		x2[i] = x[i % (m * n)];
	ref_weighted(x2, 2 * m, n, c->lambda, c->center, w2, mean, &weight);
	assert_int_equal(isvd_model_rows_seen(md), 2 * m);
	ref_check_against(md, w2, 2 * m, n, rank, rank, mean, 1e-10, 1e-8);

	free(x2);
	free(w2);
	free(w);
	free(mean);
	free(x);
	isvd_model_destroy(md);
}

/* ---- centring = PCA ---- */

static void test_pca_lowrank_block1(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ LOWRANK, 1, 1.0, 1, 0, 101 });
}

static void test_pca_lowrank_block5(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ LOWRANK, 1, 1.0, 5, 0, 102 });
}

static void test_pca_lowrank_mixed(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ LOWRANK, 1, 1.0, 0, 0, 103 });
}

static void test_pca_fullrank_block1(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ FULLRANK, 1, 1.0, 1, 0, 104 });
}

static void test_pca_fullrank_block7(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ FULLRANK, 1, 1.0, 7, 0, 105 });
}

static void test_pca_fullrank_split(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ FULLRANK, 1, 1.0, 0, 4, 106 });
}

static void test_plain_fullrank_mixed(void **state)
{
	(void)state;
	run_weighted(&(struct wcase){ FULLRANK, 0, 1.0, 0, 0, 107 });
}

/* ---- forgetting, with and without centring ---- */

static const double lambdas[] = { 0.99, 0.9, 0.5 };

static void run_forget_all(enum data_kind kind, int center, uint64_t seed)
{
	for (size_t li = 0; li < 3; li++) {
		const size_t blocks[] = { 1, 7, 0 };
		for (size_t bi = 0; bi < 3; bi++) {
			print_message("lambda %.2f block %zu center %d\n", lambdas[li], blocks[bi],
			              center);
			run_weighted(&(struct wcase){ kind, center, lambdas[li], blocks[bi], 0,
			                              seed + 10 * li + bi });
		}
	}
	/* Calls split into blocks of 3 by max_block. */
	run_weighted(&(struct wcase){ kind, center, 0.95, 0, 3, seed + 99 });
}

static void test_forget_lowrank_plain(void **state)
{
	(void)state;
	run_forget_all(LOWRANK, 0, 200);
}

static void test_forget_lowrank_centred(void **state)
{
	(void)state;
	run_forget_all(LOWRANK, 1, 300);
}

static void test_forget_fullrank_plain(void **state)
{
	(void)state;
	run_forget_all(FULLRANK, 0, 400);
}

static void test_forget_fullrank_centred(void **state)
{
	(void)state;
	run_forget_all(FULLRANK, 1, 500);
}

/* The weights depend on age in rows only: one block of 40 rows and 40
 * single rows give the same model (to rounding). */
static void test_forget_grouping_irrelevant(void **state)
{
	(void)state;
	const size_t n = 10, m = 40;
	double *x = ref_make_rows(600, m, n, n, 0.7, 0.0, 1.0);
	struct isvd_options o = ref_options(n, 3, 7);
	o.forget = 0.8;
	o.center = 1;
	struct isvd_model *a = ref_create(&o), *b = ref_create(&o);
	ref_feed(a, x, m, n, m, 0, 0);
	ref_feed(b, x, m, n, 1, 0, 0);
	double *sa, *va, *ma, *sb, *vb, *mb;
	size_t ra, rb;
	ref_factors(a, &sa, &va, &ma, &ra);
	ref_factors(b, &sb, &vb, &mb, &rb);
	assert_int_equal(ra, 3);
	assert_int_equal(rb, 3);
	for (size_t i = 0; i < ra; i++)
		REF_ASSERT_CLOSE(sa[i], sb[i], 1e-11 * sa[i]);
	REF_ASSERT_LE(ref_sin_angle(va, vb, ra, n), 1e-8);
	for (size_t c = 0; c < n; c++)
		REF_ASSERT_CLOSE(ma[c], mb[c], 1e-12);
	struct isvd_info ia, ib;
	REF_ASSERT_OK(isvd_model_info(a, &ia));
	REF_ASSERT_OK(isvd_model_info(b, &ib));
	REF_ASSERT_CLOSE(ia.weight_total, ib.weight_total, 1e-13 * ia.weight_total);
	REF_ASSERT_CLOSE(ia.energy_total, ib.energy_total, 1e-11 * ia.energy_total);
	REF_ASSERT_CLOSE(ia.weight_total, (1.0 - pow(0.8, (double)m)) / 0.2, 1e-12);
	free(sa);
	free(va);
	free(ma);
	free(sb);
	free(vb);
	free(mb);
	isvd_model_destroy(a);
	isvd_model_destroy(b);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pca_lowrank_block1),
		cmocka_unit_test(test_pca_lowrank_block5),
		cmocka_unit_test(test_pca_lowrank_mixed),
		cmocka_unit_test(test_pca_fullrank_block1),
		cmocka_unit_test(test_pca_fullrank_block7),
		cmocka_unit_test(test_pca_fullrank_split),
		cmocka_unit_test(test_plain_fullrank_mixed),
		cmocka_unit_test(test_forget_lowrank_plain),
		cmocka_unit_test(test_forget_lowrank_centred),
		cmocka_unit_test(test_forget_fullrank_plain),
		cmocka_unit_test(test_forget_fullrank_centred),
		cmocka_unit_test(test_forget_grouping_irrelevant),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
