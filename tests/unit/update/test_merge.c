/*
 * test_merge.c — isvd_model_merge() against LAPACK's SVD of all the rows.
 *
 * A stream is split into 2, 3 and 8 parts in four ways (contiguous,
 * interleaved, unequal sizes, one part empty), each part is folded into a
 * model of its own and the models are merged.  Exact mode must equal the
 * SVD of every row (σ relative and the projector onto every top-k
 * subspace, 1e-10), with and without centring, and with forgetting, where
 * each part's rows keep the weights they had in their own model.
 * Truncated mode, on data with a spectral gap after k, must be about as
 * accurate as one model fed the whole stream: sin θ within 2× the single
 * model's (plus 1e-13 of rounding).  The σ error is not within 2× for
 * more than two parts, and the merge cannot help it: each part's model
 * loses about as much of σ² to its own truncations as a model of the whole
 * stream does (measured: the ratio does not change with the noise level
 * or the split, it grows with the part count: up to 2.2× for 2 parts,
 * 3.2× for 3, 5.9× for 8, at 1e-12 to 3e-11 of σ₁ here), and the merge,
 * which decomposes the stack of what its inputs kept exactly, adds their
 * losses.  So the σ error is held to (parts + 1)× the single model's.  Plus: the totals (rows, weight, energy, mean) combine
 * exactly; merging commutes and associates; an empty model is the
 * identity; a merged model saves, loads and keeps streaming; and every
 * mismatch is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

enum split { CONTIGUOUS, INTERLEAVED, UNEQUAL, ONE_EMPTY, SPLITS_ };
static const char *const split_name[SPLITS_] = { "contiguous", "interleaved", "unequal",
                                                 "one empty" };

/* Part of each of m rows under a split into p parts (part[i] in [0, p)). */
static void assign_parts(size_t *part, size_t m, size_t p, enum split how, uint64_t seed)
{
	struct ref_rng g;
	ref_rng_seed(&g, seed);
	for (size_t i = 0; i < m; i++) {
		switch (how) {
		case CONTIGUOUS: part[i] = i * p / m; break;
		case INTERLEAVED: part[i] = i % p; break;
		case UNEQUAL: {   /* part j takes a share ∝ 2^j */
			const double u = ref_rng_uniform(&g) * (double)((1u << p) - 1);
			size_t j = 0;
			while (j + 1 < p && u >= (double)((2u << j) - 1))
				j++;
			part[i] = j;
			break;
		}
		case ONE_EMPTY: part[i] = 1 + i * (p - 1) / m; break;   /* part 0 empty */
		default: fail();
		}
	}
}

/* The rows of x (m×n) in part j, in stream order, into out; returns their count. */
static size_t gather(const double *x, const size_t *part, size_t m, size_t n, size_t j,
                     double *out)
{
	size_t c = 0;
	for (size_t i = 0; i < m; i++)
		if (part[i] == j)
			memcpy(out + c++ * n, x + i * n, n * sizeof *out);
	return c;
}

/* One model per part, fed in seeded mixed call sizes. */
static struct isvd_model **part_models(const struct isvd_options *o, const double *x,
                                       const size_t *part, size_t m, size_t p)
{
	const size_t n = o->dim;
	struct isvd_model **md = calloc(p, sizeof *md);
	double *buf = ref_alloc(m * n);
	assert_non_null(md);
	for (size_t j = 0; j < p; j++) {
		const size_t c = gather(x, part, m, n, j, buf);
		md[j] = ref_create(o);
		ref_feed(md[j], buf, c, n, 0, 97, 11 + j);
	}
	free(buf);
	return md;
}

static void destroy_all(struct isvd_model **md, size_t p)
{
	for (size_t j = 0; j < p; j++)
		isvd_model_destroy(md[j]);
	free(md);
}

static struct isvd_model *merge(struct isvd_model *const *md, size_t p)
{
	struct isvd_model *out = NULL;
	REF_ASSERT_OK(isvd_model_merge((const struct isvd_model *const *)md, p, &out));
	return out;
}

static struct isvd_model *merge2(const struct isvd_model *a, const struct isvd_model *b)
{
	const struct isvd_model *in[2] = { a, b };
	struct isvd_model *out = NULL;
	REF_ASSERT_OK(isvd_model_merge(in, 2, &out));
	return out;
}

/* max |(P_a − P_b)_ij| for the projectors onto the top k rows of two k×n
 * orthonormal-row matrices. */
static double projector_diff(const double *va, const double *vb, size_t k, size_t n)
{
	double worst = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			double a = 0, b = 0;
			for (size_t c = 0; c < k; c++) {
				a += va[c * n + i] * va[c * n + j];
				b += vb[c * n + i] * vb[c * n + j];
			}
			worst = fmax(worst, fabs(a - b));
		}
	return worst;
}

/* The explicit matrix the merge of the parts stands for: each part's rows
 * weighted as its own model weighed them (λ^age within the part), centred
 * on the weighted mean of everything.  out m×n, mean n, *w the weight. */
static void union_matrix(const double *x, const size_t *part, size_t m, size_t n, size_t p,
                         double lambda, int center, double *out, double *mean, double *w)
{
	double *sw = ref_alloc(m), wsum = 0;
	for (size_t j = 0; j < p; j++) {
		size_t left = 0;
		for (size_t i = 0; i < m; i++)
			left += part[i] == j;
		for (size_t i = 0; i < m; i++)
			if (part[i] == j)   /* the part's newest row has age 0 */
				sw[i] = pow(lambda, (double)--left);
	}
	memset(mean, 0, n * sizeof *mean);
	for (size_t i = 0; i < m; i++) {
		wsum += sw[i];
		for (size_t c = 0; c < n; c++)
			mean[c] += sw[i] * x[i * n + c];
	}
	for (size_t c = 0; c < n; c++)
		mean[c] = center ? mean[c] / wsum : 0.0;
	for (size_t i = 0; i < m; i++)
		for (size_t c = 0; c < n; c++)
			out[i * n + c] = sqrt(sw[i]) * (x[i * n + c] - mean[c]);
	*w = wsum;
	free(sw);
}

/* An exact-mode model reporting every component against LAPACK's SVD of a
 * (m×n): every σ to 1e-10 relative, the projector for every k to 1e-10,
 * the mean and the totals. */
static void check_exact(const struct isvd_model *md, const double *a, size_t m, size_t n,
                        const double *mu, double w, uint64_t rows)
{
	double *s_ref = ref_alloc(n), *vt_ref = ref_alloc(n * n);
	double *s, *vt, *mean;
	size_t r;
	struct isvd_info info;

	ref_svd(a, m, n, n, s_ref, vt_ref);
	ref_factors(md, &s, &vt, &mean, &r);
	assert_int_equal(r, n);
	for (size_t i = 0; i < n; i++)
		REF_ASSERT_LE(fabs(s[i] - s_ref[i]), 1e-10 * s_ref[i]);
	for (size_t k = 1; k <= n; k++)
		REF_ASSERT_LE(projector_diff(vt, vt_ref, k, n), 1e-10);
	for (size_t j = 0; j < n; j++)
		REF_ASSERT_CLOSE(mean[j], mu[j], 1e-12 * (1 + fabs(mu[j])));
	REF_ASSERT_OK(isvd_model_info(md, &info));
	assert_int_equal(info.rows_seen, rows);
	REF_ASSERT_CLOSE(info.weight_total, w, 1e-12 * w);
	const double e = ref_frob(a, m, n) * ref_frob(a, m, n);
	REF_ASSERT_CLOSE(info.energy_total, e, 1e-12 * e);
	free(s_ref);
	free(vt_ref);
	free(s);
	free(vt);
	free(mean);
}

/* ---- exact mode ---- */

#define EN 12
#define EM 900

static void exact_case(int center, double lambda)
{
	double *x = ref_make_rows(5, EM, EN, 6, 0.7, 0.05, 3.0);
	double *a = ref_alloc(EM * EN), *mu = ref_alloc(EN), w;
	size_t *part = calloc(EM, sizeof *part);
	const size_t parts[] = { 2, 3, 8 };
	struct isvd_options o = ref_options(EN, EN, 0);

	assert_non_null(part);
	o.mode = ISVD_MODE_EXACT;
	o.center = center;
	o.forget = lambda;
	for (size_t pi = 0; pi < 3; pi++)
		for (int how = 0; how < SPLITS_; how++) {
			const size_t p = parts[pi];
			print_message("exact, center %d, λ %g: %zu parts, %s\n", center, lambda, p,
			              split_name[how]);
			assign_parts(part, EM, p, (enum split)how, 100 + p);
			struct isvd_model **md = part_models(&o, x, part, EM, p);
			struct isvd_model *all = merge(md, p);
			union_matrix(x, part, EM, EN, p, lambda, center, a, mu, &w);
			check_exact(all, a, EM, EN, mu, w, EM);
			isvd_model_destroy(all);
			destroy_all(md, p);
		}
	free(x);
	free(a);
	free(mu);
	free(part);
}

static void exact_plain(void **state) { exact_case(0, 1.0); }
static void exact_centred(void **state) { exact_case(1, 1.0); }
static void exact_forgetting(void **state) { exact_case(1, 0.995); }

/* merge(a, b) = merge(b, a) and merge(merge(a, b), c) = merge(a, merge(b, c))
 * = merge(a, b, c), exact mode, to the tolerances above. */
static void exact_commutes_associates(void **state)
{
	double *x = ref_make_rows(6, EM, EN, 6, 0.7, 0.05, 3.0);
	double *a = ref_alloc(EM * EN), *mu = ref_alloc(EN), w;
	size_t *part = calloc(EM, sizeof *part);
	struct isvd_options o = ref_options(EN, EN, 0);

	o.mode = ISVD_MODE_EXACT;
	o.center = 1;
	assign_parts(part, EM, 3, UNEQUAL, 7);
	struct isvd_model **md = part_models(&o, x, part, EM, 3);
	union_matrix(x, part, EM, EN, 3, 1.0, 1, a, mu, &w);

	struct isvd_model *ab = merge2(md[0], md[1]), *ba = merge2(md[1], md[0]);
	double *s1, *v1, *m1, *s2, *v2, *m2;
	size_t r1, r2;
	ref_factors(ab, &s1, &v1, &m1, &r1);
	ref_factors(ba, &s2, &v2, &m2, &r2);
	assert_int_equal(r1, r2);
	for (size_t i = 0; i < r1; i++)
		REF_ASSERT_LE(fabs(s1[i] - s2[i]), 1e-12 * s1[i]);
	for (size_t k = 1; k <= r1; k++)
		REF_ASSERT_LE(projector_diff(v1, v2, k, EN), 1e-10);
	for (size_t j = 0; j < EN; j++)
		REF_ASSERT_CLOSE(m1[j], m2[j], 1e-12 * (1 + fabs(m1[j])));
	free(s1), free(v1), free(m1), free(s2), free(v2), free(m2);

	struct isvd_model *ab_c = merge2(ab, md[2]), *bc = merge2(md[1], md[2]);
	struct isvd_model *a_bc = merge2(md[0], bc);
	check_exact(ab_c, a, EM, EN, mu, w, EM);
	check_exact(a_bc, a, EM, EN, mu, w, EM);
	isvd_model_destroy(ab);
	isvd_model_destroy(ba);
	isvd_model_destroy(ab_c);
	isvd_model_destroy(bc);
	isvd_model_destroy(a_bc);
	destroy_all(md, 3);
	free(x);
	free(a);
	free(mu);
	free(part);
}

/* A merged exact model saves, loads, and keeps streaming: the rest of the
 * stream folded into it gives the SVD of every row. */
static void exact_continues(void **state)
{
	double *x = ref_make_rows(8, EM, EN, 6, 0.7, 0.05, 3.0);
	double *a = ref_alloc(EM * EN), *mu = ref_alloc(EN), w;
	size_t *part = calloc(EM, sizeof *part);
	struct isvd_options o = ref_options(EN, EN, 0);
	size_t len;

	o.mode = ISVD_MODE_EXACT;
	o.center = 1;
	for (size_t i = 0; i < EM; i++)   /* rows 0..599 in two parts; 600.. later */
		part[i] = i < 600 ? i % 2 : 0;
	struct isvd_model **md = part_models(&o, x, part, 600, 2);
	struct isvd_model *mg = merge(md, 2), *back = NULL;
	unsigned char *img = ref_save(mg, &len);
	REF_ASSERT_OK(isvd_model_load(img, len, &back));
	ref_assert_same_image(mg, back);
	ref_feed(back, x + 600 * EN, EM - 600, EN, 64, 0, 0);
	ref_weighted(x, EM, EN, 1.0, 1, a, mu, &w);
	check_exact(back, a, EM, EN, mu, w, EM);
	free(img);
	isvd_model_destroy(mg);
	isvd_model_destroy(back);
	destroy_all(md, 2);
	free(x);
	free(a);
	free(mu);
	free(part);
}

/* ---- truncated mode ---- */

#define K 6
#define P 4

/* σ error (max over the top k of |σ − σ_ref| / σ_ref,1) and sin θ of the
 * top-k subspace of a model against the SVD of a. */
static void errors(const struct isvd_model *md, const double *a, size_t m, size_t n,
                   double *sig_err, double *sin_err)
{
	const size_t mn = m < n ? m : n;
	double *s_ref = ref_alloc(mn), *vt_ref = ref_alloc(mn * n), *s, *vt, *mean;
	size_t r;
	ref_svd(a, m, n, n, s_ref, vt_ref);
	ref_factors(md, &s, &vt, &mean, &r);
	assert_int_equal(r, K);
	*sig_err = 0;
	for (size_t i = 0; i < K; i++)
		*sig_err = fmax(*sig_err, fabs(s[i] - s_ref[i]) / s_ref[0]);
	*sin_err = ref_sin_angle(vt, vt_ref, K, n);
	REF_ASSERT_LE(ref_orth_error(vt, r, n), 1e-12);
	free(s_ref);
	free(vt_ref);
	free(s);
	free(vt);
	free(mean);
}

/* n = 60 with 8 parts stacks t = Σ r_i + 8 ≥ n rows (the tall path); n = 60
 * with 2 or 3 parts and n = 300 stack fewer (the wide path). */
static void truncated_case(size_t n, int center)
{
	const size_t m = 3000;
	/* rank-K signal with a gap after k, noise 1e-3 */
	double *x = ref_make_rows(21 + n, m, n, K, 0.8, 1e-3, center ? 2.0 : 0.0);
	double *a = ref_alloc(m * n), *mu = ref_alloc(n), w, se1, ae1;
	size_t *part = calloc(m, sizeof *part);
	const size_t parts[] = { 2, 3, 8 };
	struct isvd_options o = ref_options(n, K, P);
	struct isvd_info info;

	o.center = center;
	struct isvd_model *one = ref_create(&o);
	ref_feed(one, x, m, n, 0, 97, 3);
	ref_weighted(x, m, n, 1.0, center, a, mu, &w);
	errors(one, a, m, n, &se1, &ae1);
	print_message("truncated n %zu center %d: single model σ error %.3g, sin θ %.3g\n", n,
	              center, se1, ae1);
	const double e = ref_frob(a, m, n) * ref_frob(a, m, n);
	for (size_t pi = 0; pi < 3; pi++)
		for (int how = 0; how < SPLITS_; how++) {
			const size_t p = parts[pi];
			double se, ae;
			assign_parts(part, m, p, (enum split)how, 200 + p);
			struct isvd_model **md = part_models(&o, x, part, m, p);
			struct isvd_model *all = merge(md, p);
			errors(all, a, m, n, &se, &ae);
			print_message("  %zu parts, %-11s: σ error %.3g (%.2f×), sin θ %.3g (%.2f×)\n",
			              p, split_name[how], se, se / se1, ae, ae / ae1);
			REF_ASSERT_LE(ae, 2 * ae1 + 1e-13);
			REF_ASSERT_LE(se, (double)(p + 1) * se1 + 1e-13);
			/* the totals are exact whatever the truncation */
			REF_ASSERT_OK(isvd_model_info(all, &info));
			assert_int_equal(info.rows_seen, m);
			REF_ASSERT_CLOSE(info.weight_total, w, 1e-12 * w);
			REF_ASSERT_CLOSE(info.energy_total, e, 1e-12 * e);
			double *s, *vt, *mean;
			size_t r;
			ref_factors(all, &s, &vt, &mean, &r);
			for (size_t j = 0; j < n; j++)
				REF_ASSERT_CLOSE(mean[j], mu[j], 1e-12 * (1 + fabs(mu[j])));
			free(s), free(vt), free(mean);
			isvd_model_destroy(all);
			destroy_all(md, p);
		}
	isvd_model_destroy(one);
	free(x);
	free(a);
	free(mu);
	free(part);
}

static void truncated_plain_60(void **state) { truncated_case(60, 0); }
static void truncated_centred_60(void **state) { truncated_case(60, 1); }
static void truncated_plain_300(void **state) { truncated_case(300, 0); }
static void truncated_centred_300(void **state) { truncated_case(300, 1); }

/* Truncated: commutes (σ to 1e-12 relative, the top-k projector to
 * 1e-10) and associates to the accuracy above. */
static void truncated_commutes_associates(void **state)
{
	const size_t n = 120, m = 2400;
	double *x = ref_make_rows(31, m, n, K, 0.8, 1e-3, 2.0);
	double *a = ref_alloc(m * n), *mu = ref_alloc(n), w, se1, ae1, se, ae;
	size_t *part = calloc(m, sizeof *part);
	struct isvd_options o = ref_options(n, K, P);

	o.center = 1;
	assign_parts(part, m, 3, CONTIGUOUS, 1);
	struct isvd_model **md = part_models(&o, x, part, m, 3);
	struct isvd_model *one = ref_create(&o);
	ref_feed(one, x, m, n, 0, 97, 3);
	ref_weighted(x, m, n, 1.0, 1, a, mu, &w);
	errors(one, a, m, n, &se1, &ae1);

	struct isvd_model *ab = merge2(md[0], md[1]), *ba = merge2(md[1], md[0]);
	double *s1, *v1, *m1, *s2, *v2, *m2;
	size_t r1, r2;
	ref_factors(ab, &s1, &v1, &m1, &r1);
	ref_factors(ba, &s2, &v2, &m2, &r2);
	assert_int_equal(r1, r2);
	for (size_t i = 0; i < r1; i++)
		REF_ASSERT_LE(fabs(s1[i] - s2[i]), 1e-12 * s1[i]);
	REF_ASSERT_LE(projector_diff(v1, v2, K, n), 1e-10);
	free(s1), free(v1), free(m1), free(s2), free(v2), free(m2);

	struct isvd_model *ab_c = merge2(ab, md[2]), *bc = merge2(md[1], md[2]);
	struct isvd_model *a_bc = merge2(md[0], bc);
	errors(ab_c, a, m, n, &se, &ae);
	REF_ASSERT_LE(se, 4 * se1 + 1e-13);   /* three parts, see the top */
	REF_ASSERT_LE(ae, 2 * ae1 + 1e-13);
	errors(a_bc, a, m, n, &se, &ae);
	REF_ASSERT_LE(se, 4 * se1 + 1e-13);
	REF_ASSERT_LE(ae, 2 * ae1 + 1e-13);
	isvd_model_destroy(one);
	isvd_model_destroy(ab);
	isvd_model_destroy(ba);
	isvd_model_destroy(ab_c);
	isvd_model_destroy(bc);
	isvd_model_destroy(a_bc);
	destroy_all(md, 3);
	free(x);
	free(a);
	free(mu);
	free(part);
}

/* ---- identity, refusals ---- */

/* Merging with a model that has seen no rows changes nothing (both modes,
 * centred: the empty model adds no correction row), a single model merges
 * to itself, and merging empty models gives an empty one. */
static void empty_is_identity(void **state)
{
	const int modes[2] = { ISVD_MODE_TRUNCATED, ISVD_MODE_EXACT };
	double *x = ref_make_rows(41, 500, 30, 5, 0.7, 1e-2, 1.0);

	for (int mi = 0; mi < 2; mi++) {
		struct isvd_options o = ref_options(30, 5, 3);
		o.mode = modes[mi];
		o.center = 1;
		struct isvd_model *a = ref_create(&o), *e = ref_create(&o), *e2 = ref_create(&o);
		ref_feed(a, x, 500, 30, 64, 0, 0);
		struct isvd_model *ae = merge2(a, e), *ea = merge2(e, a), *ee = merge2(e, e2);
		const struct isvd_model *solo[1] = { a };
		struct isvd_model *aa = NULL;
		REF_ASSERT_OK(isvd_model_merge(solo, 1, &aa));
		const struct isvd_model *cmp[3] = { ae, ea, aa };
		double *s0, *v0, *m0;
		size_t r0;
		ref_factors(a, &s0, &v0, &m0, &r0);
		for (int c = 0; c < 3; c++) {
			double *s, *v, *mu;
			size_t r;
			struct isvd_info i0, i1;
			ref_factors(cmp[c], &s, &v, &mu, &r);
			assert_int_equal(r, r0);
			for (size_t i = 0; i < r; i++)
				REF_ASSERT_LE(fabs(s[i] - s0[i]), 1e-12 * s0[0]);
			for (size_t i = 0; i < r * 30; i++)   /* signs normalised: same vectors */
				REF_ASSERT_LE(fabs(v[i] - v0[i]), 1e-10);
			for (size_t j = 0; j < 30; j++)
				assert_true(mu[j] == m0[j]);
			REF_ASSERT_OK(isvd_model_info(a, &i0));
			REF_ASSERT_OK(isvd_model_info(cmp[c], &i1));
			assert_int_equal(i1.rows_seen, i0.rows_seen);
			assert_true(i1.weight_total == i0.weight_total);
			assert_true(i1.energy_total == i0.energy_total);
			free(s), free(v), free(mu);
		}
		free(s0), free(v0), free(m0);
		assert_int_equal(isvd_model_rows_seen(ee), 0);
		assert_int_equal(isvd_model_rank(ee), 0);
		double row[30] = { 0 };
		REF_ASSERT_ERR(isvd_model_project(ee, row, 1, 30, ISVD_SPACE_SCORES, NULL, NULL),
		               ISVD_ERR_NOT_READY);
		isvd_model_destroy(a);
		isvd_model_destroy(e);
		isvd_model_destroy(e2);
		isvd_model_destroy(ae);
		isvd_model_destroy(ea);
		isvd_model_destroy(ee);
		isvd_model_destroy(aa);
	}
	free(x);
}

/* Each setting that must match is refused with ISVD_ERR_MISMATCH and named;
 * bad arguments and snapshots are ISVD_ERR_INVALID. */
static void refusals(void **state)
{
	struct isvd_options base = ref_options(10, 3, 2);
	struct isvd_options o[7];
	const char *names[7] = { "dimension", "mode", "centring", "rank", "extra",
	                         "forgetting factor", "rcond" };
	for (int i = 0; i < 7; i++)
		o[i] = base;
	o[0].dim = 11;
	o[1].mode = ISVD_MODE_EXACT;
	o[2].center = 1;
	o[3].rank = 4;
	o[4].extra = 3;
	o[5].forget = 0.99;
	o[6].rcond = 1e-10;

	struct isvd_model *a = ref_create(&base), *out = NULL;
	double *x = ref_make_rows(3, 40, 11, 3, 0.5, 0.1, 0.0);
	ref_feed(a, x, 40, 11, 16, 0, 0);   /* the first 10 values of each row */
	for (int i = 0; i < 7; i++) {
		struct isvd_model *b = ref_create(&o[i]);
		ref_feed(b, x, 40, o[i].dim, 16, 0, 0);
		const struct isvd_model *in[2] = { a, b }, *rev[2] = { b, a };
		const char *what = NULL;
		REF_ASSERT_ERR(isvd_model_merge(in, 2, &out), ISVD_ERR_MISMATCH);
		REF_ASSERT_ERR(isvd_model_merge(rev, 2, &out), ISVD_ERR_MISMATCH);
		assert_null(out);
		REF_ASSERT_ERR(isvd_model_merge_check(a, b, &what), ISVD_ERR_MISMATCH);
		assert_string_equal(what, names[i]);
		isvd_model_destroy(b);
	}
	const char *what = "x";
	REF_ASSERT_OK(isvd_model_merge_check(a, a, &what));
	assert_null(what);
	assert_string_not_equal(isvd_strerror(ISVD_ERR_MISMATCH), "unknown error");

	/* arguments */
	const struct isvd_model *in[2] = { a, NULL };
	REF_ASSERT_ERR(isvd_model_merge(NULL, 1, &out), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_merge(in, 0, &out), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_merge(in, 1, NULL), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_merge(in, 2, &out), ISVD_ERR_INVALID);
	REF_ASSERT_ERR(isvd_model_merge_check(a, NULL, NULL), ISVD_ERR_INVALID);
	struct isvd_model *snap = NULL;
	REF_ASSERT_OK(isvd_model_snapshot(a, &snap));
	in[1] = snap;
	REF_ASSERT_ERR(isvd_model_merge(in, 2, &out), ISVD_ERR_INVALID);
	assert_null(out);
	isvd_model_destroy(snap);
	isvd_model_destroy(a);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_plain),
		cmocka_unit_test(exact_centred),
		cmocka_unit_test(exact_forgetting),
		cmocka_unit_test(exact_commutes_associates),
		cmocka_unit_test(exact_continues),
		cmocka_unit_test(truncated_plain_60),
		cmocka_unit_test(truncated_centred_60),
		cmocka_unit_test(truncated_plain_300),
		cmocka_unit_test(truncated_centred_300),
		cmocka_unit_test(truncated_commutes_associates),
		cmocka_unit_test(empty_is_identity),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
