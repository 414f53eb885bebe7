/*
 * test_queries.c — what a model answers, and the small edge cases.
 *
 *   determinism: the same rows in the same blocks give bit-identical factors
 *     and images; factors are sign-normalised (largest-magnitude entry of
 *     each right singular vector positive, lowest index on ties), so
 *     negated rows give the same factors;
 *   project (scores and U-coordinates), residual and reconstruct against
 *     direct computation from the factors read out; rcond drops components;
 *     U-coordinates are never inf;
 *   NOT_READY before any row; zero rows, a single row, a repeated row,
 *     all-zero rows, n = 1.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Every right singular vector's largest-magnitude entry (lowest index on
 * ties) is positive. */
static void assert_sign_normalised(const double *vt, size_t r, size_t n)
{
	for (size_t i = 0; i < r; i++) {
		const double *v = vt + i * n;
		size_t best = 0;
		for (size_t c = 1; c < n; c++)
			if (fabs(v[c]) > fabs(v[best]))
				best = c;
		if (!(v[best] > 0.0))
			fail_msg("vt row %zu: largest-magnitude entry v[%zu] = %g is not positive", i,
			         best, v[best]);
	}
}

static void test_determinism(void **state)
{
	(void)state;
	const size_t n = 20, m = 300;
	double *x = ref_make_rows(501, m, n, 6, 0.8, 0.05, 2.0);
	struct isvd_options o = ref_options(n, 4, 3);
	o.center = 1;
	o.forget = 0.995;
	o.reorth_every = 70;
	struct isvd_model *a = ref_create(&o), *b = ref_create(&o);
	ref_feed(a, x, m, n, 0, 19, 502);
	ref_feed(b, x, m, n, 0, 19, 502);
	double *sa, *va, *ma, *sb, *vb, *mb;
	size_t ra, rb;
	ref_factors(a, &sa, &va, &ma, &ra);
	ref_factors(b, &sb, &vb, &mb, &rb);
	assert_int_equal(ra, 4);
	assert_int_equal(rb, 4);
	assert_memory_equal(sa, sb, ra * sizeof *sa);
	assert_memory_equal(va, vb, ra * n * sizeof *va);
	assert_memory_equal(ma, mb, n * sizeof *ma);
	assert_sign_normalised(va, ra, n);
	ref_assert_same_image(a, b);
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

/* Negated rows have the same Gram matrix, so the same σ and — thanks to
 * sign normalisation — the same vectors; the mean is negated. */
static void test_sign_normalisation(void **state)
{
	(void)state;
	const size_t n = 15, m = 200;
	for (int center = 0; center <= 1; center++) {
		double *x = ref_make_rows(601 + (uint64_t)center, m, n, 5, 0.7, 0.0, 1.0);
		double *neg = ref_alloc(m * n);
		for (size_t i = 0; i < m * n; i++)
			neg[i] = -x[i];
		struct isvd_options o = ref_options(n, 5, 2);
		o.center = center;
		struct isvd_model *a = ref_create(&o), *b = ref_create(&o);
		ref_feed(a, x, m, n, 0, 13, 603);
		ref_feed(b, neg, m, n, 0, 13, 604);
		double *sa, *va, *ma, *sb, *vb, *mb;
		size_t ra, rb;
		ref_factors(a, &sa, &va, &ma, &ra);
		ref_factors(b, &sb, &vb, &mb, &rb);
		assert_int_equal(ra, 5);
		assert_int_equal(rb, 5);
		assert_sign_normalised(va, ra, n);
		assert_sign_normalised(vb, rb, n);
		for (size_t i = 0; i < ra; i++)
			REF_ASSERT_CLOSE(sa[i], sb[i], 1e-11 * sa[i]);
		for (size_t i = 0; i < ra * n; i++)
			REF_ASSERT_CLOSE(va[i], vb[i], 1e-9);
		for (size_t c = 0; c < n; c++)
			REF_ASSERT_CLOSE(ma[c], -mb[c], 1e-12);
		free(sa);
		free(va);
		free(ma);
		free(sb);
		free(vb);
		free(mb);
		isvd_model_destroy(a);
		isvd_model_destroy(b);
		free(neg);
		free(x);
	}
}

/* Ties: a single row whose entries all have the same magnitude (and are
 * exact in binary after division by ‖x‖ = 2); the lowest index decides. */
static void test_sign_tie(void **state)
{
	(void)state;
	const double x[4] = { -1.0, 1.0, 1.0, -1.0 };
	struct isvd_options o = ref_options(4, 2, 0);
	struct isvd_model *md = ref_create(&o);
	REF_ASSERT_OK(isvd_model_update(md, x, 1, 4));
	double s[2], vt[8];
	size_t r;
	REF_ASSERT_OK(isvd_model_factors(md, s, vt, NULL, &r));
	assert_int_equal(r, 1);
	REF_ASSERT_CLOSE(s[0], 2.0, 1e-15);
	const double want[4] = { 0.5, -0.5, -0.5, 0.5 };
	for (size_t c = 0; c < 4; c++)
		REF_ASSERT_CLOSE(vt[c], want[c], 1e-15);
	isvd_model_destroy(md);
}

/* project / residual / reconstruct against the factors. */
static void check_queries(const struct isvd_model *md, const double *q, size_t nq,
                          size_t n, size_t ld)
{
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	double *sc = ref_alloc(nq * (r ? r : 1)), *uc = ref_alloc(nq * (r ? r : 1));
	double *res = ref_alloc(nq), *res2 = ref_alloc(nq), *rec = ref_alloc(nq * n);
	REF_ASSERT_OK(isvd_model_project(md, q, nq, ld, ISVD_SPACE_SCORES, sc, res));
	REF_ASSERT_OK(isvd_model_project(md, q, nq, ld, ISVD_SPACE_U, uc, NULL));
	REF_ASSERT_OK(isvd_model_project(md, q, nq, ld, ISVD_SPACE_U, NULL, res2));
	REF_ASSERT_OK(isvd_model_reconstruct(md, q, nq, ld, rec));
	double *d = ref_alloc(n), *proj = ref_alloc(n);
	for (size_t i = 0; i < nq; i++) {
		const double *x = q + i * ld;
		double dn = 0.0;
		for (size_t c = 0; c < n; c++) {
			d[c] = x[c] - mu[c];
			dn += d[c] * d[c];
			proj[c] = 0.0;
		}
		dn = sqrt(dn);
		for (size_t j = 0; j < r; j++) {
			double t = 0.0;
			for (size_t c = 0; c < n; c++)
				t += vt[j * n + c] * d[c];
			REF_ASSERT_CLOSE(sc[i * r + j], t, 1e-12 * (dn + 1.0));
			REF_ASSERT_CLOSE(uc[i * r + j], t / s[j], 1e-12 * (dn + 1.0) / s[j]);
			for (size_t c = 0; c < n; c++)
				proj[c] += t * vt[j * n + c];
		}
		double rn = 0.0;
		for (size_t c = 0; c < n; c++) {
			REF_ASSERT_CLOSE(rec[i * n + c], mu[c] + proj[c], 1e-12 * (dn + fabs(mu[c])));
			rn += (d[c] - proj[c]) * (d[c] - proj[c]);
		}
		rn = sqrt(rn);
		REF_ASSERT_CLOSE(res[i], rn, 1e-10 * dn);
		REF_ASSERT_CLOSE(res2[i], res[i], 1e-13 * dn);
	}
	free(d);
	free(proj);
	free(sc);
	free(uc);
	free(res);
	free(res2);
	free(rec);
	free(s);
	free(vt);
	free(mu);
}

static void test_project_residual_reconstruct(void **state)
{
	(void)state;
	const size_t n = 12, m = 400, nq = 300, ld = n + 2;
	for (int center = 0; center <= 1; center++) {
		double *x = ref_make_rows(701, m, n, 6, 0.8, 0.1, 2.0);
		struct isvd_options o = ref_options(n, 4, 3);
		o.center = center;
		struct isvd_model *md = ref_create(&o);
		ref_feed(md, x, m, n, 0, 30, 702);
		/* Query rows: fresh data (padded, ld > n), plus rows lying exactly in
		 * the model's subspace (residual ~ 0: tests the residual's accuracy). */
		double *q = ref_alloc(nq * ld), *fresh = ref_make_rows(703, nq, n, 6, 0.8, 0.3, 2.0);
		double *s, *vt, *mu;
		size_t r;
		ref_factors(md, &s, &vt, &mu, &r);
		assert_int_equal(r, 4);
		for (size_t i = 0; i < nq; i++) {
			for (size_t c = 0; c < n; c++)
				q[i * ld + c] = fresh[i * n + c];
			q[i * ld + n] = NAN;   /* padding is not data */
			q[i * ld + n + 1] = -1e300;
			if (i % 10 == 0)
				for (size_t c = 0; c < n; c++)
					q[i * ld + c] = mu[c] + 3.0 * vt[c] - 2.0 * vt[n + c] +
					                0.5 * vt[3 * n + c];
		}
		check_queries(md, q, nq, n, ld);

		/* A row in the subspace has a tiny residual, a row orthogonal to it a
		 * residual equal to its distance from the mean. */
		double res[10], sc[40];
		REF_ASSERT_OK(isvd_model_project(md, q, 1, ld, ISVD_SPACE_SCORES, sc, res));
		REF_ASSERT_LE(res[0], 1e-12 * 4.0);
		REF_ASSERT_CLOSE(sc[0], 3.0, 1e-12);
		REF_ASSERT_CLOSE(sc[1], -2.0, 1e-12);
		REF_ASSERT_CLOSE(sc[2], 0.0, 1e-12);
		REF_ASSERT_CLOSE(sc[3], 0.5, 1e-12);

		/* nrows = 0 is fine. */
		REF_ASSERT_OK(isvd_model_project(md, q, 0, ld, ISVD_SPACE_U, sc, res));
		REF_ASSERT_OK(isvd_model_reconstruct(md, q, 0, ld, sc));

		free(s);
		free(vt);
		free(mu);
		free(q);
		free(fresh);
		free(x);
		isvd_model_destroy(md);
	}
}

/* Components with σ ≤ rcond·σ1 are dropped (so U-coordinates stay finite). */
static void test_rcond_drops(void **state)
{
	(void)state;
	const size_t n = 10, m = 60;
	struct ref_rng g;
	ref_rng_seed(&g, 801);
	/* Even rows along e1, odd rows along e2 (1e-4 smaller): the Gram matrix
	 * is diagonal, so dropping the e2 component loses nothing of e1. */
	double *x = ref_alloc(m * n);
	for (size_t i = 0; i < m; i++) {
		if (i % 2 == 0)
			x[i * n + 0] = ref_rng_normal(&g);
		else
			x[i * n + 1] = 1e-4 * ref_rng_normal(&g);
	}
	double s_ref[10];
	ref_svd(x, m, n, n, s_ref, NULL);
	const double ratio = s_ref[1] / s_ref[0];
	assert_true(ratio > 2e-5 && ratio < 5e-4);

	const double rconds[] = { 1e-3, 1e-5 };
	const size_t want[] = { 1, 2 };
	for (size_t t = 0; t < 2; t++) {
		struct isvd_options o = ref_options(n, 3, 2);
		o.rcond = rconds[t];
		struct isvd_model *md = ref_create(&o);
		ref_feed(md, x, m, n, 0, 8, 802);
		assert_int_equal(isvd_model_rank(md), want[t]);
		ref_check_against(md, x, m, n, want[t], want[t], NULL, 1e-10, 1e-8);
		double q[10] = { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }, u[3], res;
		REF_ASSERT_OK(isvd_model_project(md, q, 1, n, ISVD_SPACE_U, u, &res));
		for (size_t j = 0; j < want[t]; j++)
			assert_true(isfinite(u[j]));
		isvd_model_destroy(md);
	}
	free(x);
}


/* A σ at or below rcond·σ1 cannot arise from updates (it is dropped), so it
 * is planted through an image with a valid CRC: the loader either refuses
 * it as a broken invariant, or the U-coordinate is 0 — never inf. */
static void test_u_space_tiny_sigma(void **state)
{
	(void)state;
	const size_t n = 6, m = 40;
	double *x = ref_make_rows(901, m, n, 3, 0.5, 0.0, 0.0);
	struct isvd_options o = ref_options(n, 3, 0);
	struct isvd_model *md = ref_create(&o);
	ref_feed(md, x, m, n, 0, 5, 902);
	double *s, *vt, *mu;
	size_t r;
	ref_factors(md, &s, &vt, &mu, &r);
	assert_int_equal(r, 3);
	size_t len;
	unsigned char *img = ref_save(md, &len);
	const double tiny[] = { 1e-300, 0.0, 1e-13 * s[0] };
	for (size_t t = 0; t < 3; t++) {
		unsigned char *bad = malloc(len);
		assert_non_null(bad);
		memcpy(bad, img, len);
		assert_true(ref_patch_double(bad, len, s[2], tiny[t]));
		struct isvd_model *lm = NULL;
		int rc = isvd_model_load(bad, len, &lm);
		if (rc == ISVD_OK) {
			double q[6] = { 1, 2, 3, 4, 5, 6 }, u[3] = { -1, -1, -1 }, res;
			size_t lr = isvd_model_rank(lm);
			REF_ASSERT_OK(isvd_model_project(lm, q, 1, n, ISVD_SPACE_U, u, &res));
			for (size_t j = 0; j < lr; j++)
				assert_true(isfinite(u[j]));
			if (lr == 3)
				REF_ASSERT_CLOSE(u[2], 0.0, 0.0);
			isvd_model_destroy(lm);
		} else {
			REF_ASSERT_ERR(rc, ISVD_ERR_FORMAT);
			assert_null(lm);
		}
		free(bad);
	}
	free(img);
	free(s);
	free(vt);
	free(mu);
	free(x);
	isvd_model_destroy(md);
}

/* Before any row: queries are NOT_READY, info reports an empty model. */
static void test_not_ready(void **state)
{
	(void)state;
	for (int center = 0; center <= 1; center++) {
		struct isvd_options o = ref_options(5, 2, 1);
		o.center = center;
		struct isvd_model *md = ref_create(&o);
		double q[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, c[4], res[2], out[10];
		REF_ASSERT_OK(isvd_model_update(md, q, 0, 5));
		REF_ASSERT_ERR(isvd_model_project(md, q, 2, 5, ISVD_SPACE_SCORES, c, res),
		               ISVD_ERR_NOT_READY);
		REF_ASSERT_ERR(isvd_model_project(md, q, 2, 5, ISVD_SPACE_U, c, NULL),
		               ISVD_ERR_NOT_READY);
		REF_ASSERT_ERR(isvd_model_reconstruct(md, q, 2, 5, out), ISVD_ERR_NOT_READY);
		struct isvd_info info;
		REF_ASSERT_OK(isvd_model_info(md, &info));
		assert_int_equal(info.rows_seen, 0);
		assert_int_equal(info.rank, 0);
		assert_int_equal(info.rank_max, 2);
		assert_int_equal(isvd_model_rank(md), 0);
		REF_ASSERT_CLOSE(info.weight_total, 0.0, 0.0);
		REF_ASSERT_CLOSE(info.energy_total, 0.0, 0.0);
		REF_ASSERT_CLOSE(info.explained_energy_ratio, 0.0, 0.0);
		REF_ASSERT_CLOSE(info.condition_number, 0.0, 0.0);
		double s[2] = { -1, -1 };
		size_t r = 99;
		int rc = isvd_model_factors(md, s, NULL, NULL, &r);
		if (rc == ISVD_OK)
			assert_int_equal(r, 0);
		else
			REF_ASSERT_ERR(rc, ISVD_ERR_NOT_READY);
		isvd_model_destroy(md);
	}
}

/* The empty model (rank 0, seen rows): project/reconstruct are answered. */
static void assert_rank0_queries(const struct isvd_model *md, const double *mean, size_t n)
{
	assert_int_equal(isvd_model_rank(md), 0);
	double q[8] = { 1, -2, 3, -4, 5, -6, 7, -8 }, res = -1.0, out[8];
	assert_true(n <= 8);
	REF_ASSERT_OK(isvd_model_project(md, q, 1, n, ISVD_SPACE_SCORES, NULL, &res));
	double d = 0.0;
	for (size_t c = 0; c < n; c++)
		d += (q[c] - mean[c]) * (q[c] - mean[c]);
	REF_ASSERT_CLOSE(res, sqrt(d), 1e-12 * sqrt(d));
	REF_ASSERT_OK(isvd_model_reconstruct(md, q, 1, n, out));
	for (size_t c = 0; c < n; c++)
		REF_ASSERT_CLOSE(out[c], mean[c], 1e-12 * (fabs(mean[c]) + 1.0));
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	REF_ASSERT_CLOSE(info.explained_energy_ratio, 0.0, 0.0);
	REF_ASSERT_CLOSE(info.condition_number, 0.0, 0.0);
	REF_ASSERT_CLOSE(info.energy_captured, 0.0, 0.0);
	REF_ASSERT_LE(info.orthogonality_error, 1e-12);
}

static void test_single_row(void **state)
{
	(void)state;
	const size_t n = 7;
	const double x[7] = { 0.5, -3.0, 1.0, 2.0, -0.25, 0.0, 1.5 };
	double nx = 0.0;
	for (size_t c = 0; c < n; c++)
		nx += x[c] * x[c];
	nx = sqrt(nx);

	/* Plain: σ1 = ‖x‖, v = x/‖x‖ up to the sign rule (here −x/‖x‖). */
	struct isvd_options o = ref_options(n, 3, 2);
	struct isvd_model *md = ref_create(&o);
	REF_ASSERT_OK(isvd_model_update(md, x, 1, n));
	double s[3], vt[21], mu[7];
	size_t r;
	REF_ASSERT_OK(isvd_model_factors(md, s, vt, mu, &r));
	assert_int_equal(r, 1);
	REF_ASSERT_CLOSE(s[0], nx, 1e-14 * nx);
	for (size_t c = 0; c < n; c++) {
		REF_ASSERT_CLOSE(vt[c], -x[c] / nx, 1e-14);
		REF_ASSERT_CLOSE(mu[c], 0.0, 0.0);
	}
	struct isvd_info info;
	REF_ASSERT_OK(isvd_model_info(md, &info));
	REF_ASSERT_CLOSE(info.energy_total, nx * nx, 1e-14 * nx * nx);
	REF_ASSERT_CLOSE(info.explained_energy_ratio, 1.0, 1e-14);
	REF_ASSERT_CLOSE(info.condition_number, 1.0, 0.0);
	REF_ASSERT_CLOSE(info.weight_total, 1.0, 0.0);
	isvd_model_destroy(md);

	/* Centred: nothing but the mean. */
	o.center = 1;
	o.forget = 0.9;
	md = ref_create(&o);
	REF_ASSERT_OK(isvd_model_update(md, x, 1, n));
	REF_ASSERT_OK(isvd_model_factors(md, s, vt, mu, &r));
	assert_int_equal(r, 0);
	for (size_t c = 0; c < n; c++)
		REF_ASSERT_CLOSE(mu[c], x[c], 1e-15 * fabs(x[c]));
	REF_ASSERT_OK(isvd_model_info(md, &info));
	REF_ASSERT_LE(info.energy_total, 1e-28 * nx * nx);
	assert_int_equal(info.rows_seen, 1);
	assert_rank0_queries(md, mu, n);
	isvd_model_destroy(md);
}

static void test_repeated_row(void **state)
{
	(void)state;
	const size_t n = 5, m = 50;
	const double x[5] = { 1.0, 2.0, -0.5, 0.3, -4.0 };
	double nx = 0.0;
	for (size_t c = 0; c < n; c++)
		nx += x[c] * x[c];
	nx = sqrt(nx);
	double *rows = ref_alloc(m * n);
	for (size_t i = 0; i < m; i++)
		memcpy(rows + i * n, x, sizeof x);

	const double lambdas[] = { 1.0, 0.9 };
	for (size_t li = 0; li < 2; li++) {
		double wsum = 0.0;
		for (size_t t = 0; t < m; t++)
			wsum += pow(lambdas[li], (double)t);
		/* Plain: rank 1, σ1 = sqrt(Σw)·‖x‖, v = −x/‖x‖ (largest |x_c| is −4). */
		struct isvd_options o = ref_options(n, 3, 2);
		o.forget = lambdas[li];
		struct isvd_model *md = ref_create(&o);
		ref_feed(md, rows, m, n, 0, 9, 1001);
		double s[3], vt[15], mu[5];
		size_t r;
		REF_ASSERT_OK(isvd_model_factors(md, s, vt, mu, &r));
		assert_int_equal(r, 1);
		REF_ASSERT_CLOSE(s[0], sqrt(wsum) * nx, 1e-12 * sqrt(wsum) * nx);
		for (size_t c = 0; c < n; c++)
			REF_ASSERT_CLOSE(vt[c], -x[c] / nx, 1e-12);
		isvd_model_destroy(md);

		/* Centred: the mean is the row and nothing of substance remains. */
		o.center = 1;
		md = ref_create(&o);
		ref_feed(md, rows, m, n, 0, 9, 1002);
		REF_ASSERT_OK(isvd_model_factors(md, s, vt, mu, &r));
		for (size_t c = 0; c < n; c++)
			REF_ASSERT_CLOSE(mu[c], x[c], 1e-14 * fabs(x[c]));
		for (size_t i = 0; i < r; i++)
			REF_ASSERT_LE(s[i], 1e-12 * nx);
		struct isvd_info info;
		REF_ASSERT_OK(isvd_model_info(md, &info));
		REF_ASSERT_LE(info.energy_total, 1e-24 * nx * nx);
		assert_true(isfinite(info.explained_energy_ratio));
		assert_true(info.explained_energy_ratio >= 0.0);
		assert_true(info.explained_energy_ratio <= 1.0 + 1e-12);
		assert_true(isfinite(info.condition_number));
		REF_ASSERT_CLOSE(info.weight_total, wsum, 1e-13 * wsum);
		isvd_model_destroy(md);
	}
	free(rows);
}

static void test_all_zero_rows(void **state)
{
	(void)state;
	const size_t n = 8, m = 20;
	double *zeros = ref_alloc(m * n);
	for (int center = 0; center <= 1; center++) {
		struct isvd_options o = ref_options(n, 3, 2);
		o.center = center;
		struct isvd_model *md = ref_create(&o);
		ref_feed(md, zeros, m, n, 0, 6, 1101);
		struct isvd_info info;
		REF_ASSERT_OK(isvd_model_info(md, &info));
		assert_int_equal(info.rows_seen, m);
		assert_int_equal(info.rank, 0);
		REF_ASSERT_CLOSE(info.energy_total, 0.0, 0.0);
		REF_ASSERT_CLOSE(info.weight_total, (double)m, 0.0);
		double mean[8] = { 0 };
		assert_rank0_queries(md, mean, n);

		/* Real rows afterwards: the zeros simply count as rows. */
		double *x = ref_make_rows(1102, 60, n, 2, 0.5, 0.0, 1.0);
		ref_feed(md, x, 60, n, 0, 7, 1103);
		double *all = ref_alloc(80 * n), *w = ref_alloc(80 * n), *mu = ref_alloc(n);
		memcpy(all + m * n, x, 60 * n * sizeof *x);
		ref_weighted(all, 80, n, 1.0, center, w, mu, NULL);
		/* Rank 3 either way: uncentred, the rank-2 rows' offset adds a
		 * direction; centred, the 20 zero rows move the mean away from the
		 * rows' own, and that shift adds one. */
		const size_t rank = 3;
		ref_check_against(md, w, 80, n, rank, rank, mu, 1e-10, 1e-8);
		free(all);
		free(w);
		free(mu);
		free(x);
		isvd_model_destroy(md);
	}
	free(zeros);
}

/* n = 1: σ is the root of the (centred) sum of squares, v = [1]. */
static void test_dim_one(void **state)
{
	(void)state;
	const size_t m = 33;
	double *x = ref_make_rows(1201, m, 1, 1, 1.0, 0.0, 2.0);
	for (int center = 0; center <= 1; center++) {
		struct isvd_options o = ref_options(1, 3, 2);
		o.center = center;
		struct isvd_model *md = ref_create(&o);
		ref_feed(md, x, m, 1, 0, 4, 1202);
		double mean = 0.0, ss = 0.0;
		for (size_t i = 0; i < m; i++)
			mean += x[i];
		mean = center ? mean / (double)m : 0.0;
		for (size_t i = 0; i < m; i++)
			ss += (x[i] - mean) * (x[i] - mean);
		double s[1], vt[1], mu[1];
		size_t r;
		REF_ASSERT_OK(isvd_model_factors(md, s, vt, mu, &r));
		assert_int_equal(r, 1);
		REF_ASSERT_CLOSE(s[0], sqrt(ss), 1e-12 * sqrt(ss));
		REF_ASSERT_CLOSE(vt[0], 1.0, 1e-15);
		REF_ASSERT_CLOSE(mu[0], mean, 1e-13);
		struct isvd_info info;
		REF_ASSERT_OK(isvd_model_info(md, &info));
		assert_int_equal(info.rank_max, 1);
		REF_ASSERT_CLOSE(info.explained_energy_ratio, 1.0, 1e-12);
		double q = 7.0, res = -1.0, u = 0.0;
		REF_ASSERT_OK(isvd_model_project(md, &q, 1, 1, ISVD_SPACE_U, &u, &res));
		REF_ASSERT_CLOSE(res, 0.0, 1e-14);
		REF_ASSERT_CLOSE(u, (q - mean) / sqrt(ss), 1e-12);
		isvd_model_destroy(md);
	}
	free(x);
}

/* A snapshot answers every reader exactly as the model did when it was
 * taken, keeps doing so while the model moves on, and refuses writes. */
static void snapshot_case(int mode)
{
	const size_t n = 16, m1 = 300;
	double *x = ref_make_rows(31, 2 * m1, n, 6, 0.7, 0.01, 2.0);
	struct isvd_options o = ref_options(n, 4, 3);
	o.center = 1;
	o.mode = mode;
	struct isvd_model *md = ref_create(&o), *snap = NULL;
	double c1[10 * 4], r1[10], c2[10 * 4], r2[10], rec1[10 * 16], rec2[10 * 16];
	struct isvd_info i1, i2;
	size_t len;

	ref_feed(md, x, m1, n, 0, 25, 4);
	/* exact mode: taken while the SVD of R is stale, so the snapshot
	 * decomposes its copy of R when first read */
	REF_ASSERT_OK(isvd_model_snapshot(md, &snap));
	REF_ASSERT_OK(isvd_model_project(md, x, 10, n, ISVD_SPACE_U, c1, r1));
	/* and one taken after a read (nothing stale): the factors themselves */
	struct isvd_model *snap2 = NULL;
	REF_ASSERT_OK(isvd_model_snapshot(md, &snap2));
	REF_ASSERT_OK(isvd_model_reconstruct(md, x, 10, n, rec1));
	REF_ASSERT_OK(isvd_model_info(md, &i1));
	unsigned char *img = ref_save(md, &len);
	ref_feed(md, x + m1 * n, m1, n, 0, 25, 5);          /* the model moves on */
	REF_ASSERT_OK(isvd_model_project(snap2, x, 10, n, ISVD_SPACE_U, c2, r2));
	assert_memory_equal(c1, c2, sizeof c1);
	assert_memory_equal(r1, r2, sizeof r1);
	isvd_model_destroy(snap2);
	REF_ASSERT_OK(isvd_model_project(snap, x, 10, n, ISVD_SPACE_U, c2, r2));
	REF_ASSERT_OK(isvd_model_reconstruct(snap, x, 10, n, rec2));
	REF_ASSERT_OK(isvd_model_info(snap, &i2));
	assert_memory_equal(c1, c2, sizeof c1);
	assert_memory_equal(r1, r2, sizeof r1);
	assert_memory_equal(rec1, rec2, sizeof rec1);
	assert_int_equal(i2.rows_seen, m1);
	assert_int_equal(i2.rank, i1.rank);
	assert_int_equal(i2.mode, mode);
	REF_ASSERT_CLOSE(i2.energy_total, i1.energy_total, 0.0);
	REF_ASSERT_CLOSE(i2.orthogonality_error, i1.orthogonality_error, 0.0);
	/* identical factors to the saved model's */
	struct isvd_model *back = NULL;
	REF_ASSERT_OK(isvd_model_load(img, len, &back));
	double *s1, *v1, *mu1, *s2, *v2, *mu2;
	size_t k1, k2;
	ref_factors(back, &s1, &v1, &mu1, &k1);
	ref_factors(snap, &s2, &v2, &mu2, &k2);
	assert_int_equal(k1, k2);
	assert_memory_equal(s1, s2, k1 * sizeof *s1);
	assert_memory_equal(v1, v2, k1 * n * sizeof *v1);
	assert_memory_equal(mu1, mu2, n * sizeof *mu1);
	/* read-only */
	REF_ASSERT_ERR(isvd_model_update(snap, x, 1, n), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_reorthogonalize(snap), ISVD_ERR_INVALID);
	assert_int_equal(isvd_model_saved_size(snap), 0);
	unsigned char buf[64];
	REF_ASSERT_ERR(isvd_model_save(snap, buf, sizeof buf, &len), ISVD_ERR_INVALID);
	free(s1); free(v1); free(mu1); free(s2); free(v2); free(mu2);
	free(img);
	free(x);
	isvd_model_destroy(back);
	isvd_model_destroy(snap);
	isvd_model_destroy(md);
}

static void test_snapshot_truncated(void **state) { (void)state; snapshot_case(ISVD_MODE_TRUNCATED); }
static void test_snapshot_exact(void **state) { (void)state; snapshot_case(ISVD_MODE_EXACT); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_truncated),
		cmocka_unit_test(test_snapshot_exact),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_sign_normalisation),
		cmocka_unit_test(test_sign_tie),
		cmocka_unit_test(test_project_residual_reconstruct),
		cmocka_unit_test(test_rcond_drops),
		cmocka_unit_test(test_u_space_tiny_sigma),
		cmocka_unit_test(test_not_ready),
		cmocka_unit_test(test_single_row),
		cmocka_unit_test(test_repeated_row),
		cmocka_unit_test(test_all_zero_rows),
		cmocka_unit_test(test_dim_one),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
