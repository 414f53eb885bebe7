/*
 * merge.c — merging models: the model of the union of several streams,
 * built from the models of each, without their rows (the interface and
 * what must match are in isvd_model.h, isvd_model_merge()).
 *
 * Model i stands for the rows √w_t·(x_t − μ_i) of its own stream, weights
 * w_t as it gave them; its scatter about μ_i is S_i = A_iᵀA_i, its total
 * weight w_i = Σ w_t.  The union, centred on μ = Σ w_iμ_i / W (W = Σ w_i),
 * has the scatter
 *
 *     S = Σ S_i + Σ w_i (μ_i − μ)(μ_i − μ)ᵀ  =  MᵀM,
 *     M = [ A_1; …; A_P; C ],  row i of C = √w_i·(μ_i − μ)
 *
 * (without centring C is empty and μ = 0).  For two models the two rows of
 * C have the scatter of the one row √(w_1w_2/W)·(μ_1 − μ_2), Ross et al.'s
 * correction, because μ_1 − μ = w_2(μ_1 − μ_2)/W and μ_2 − μ = −w_1(μ_1 −
 * μ_2)/W; the rows of C are dependent (Σ √w_i·row_i = 0), which neither
 * decomposition below minds.  Each A_i is replaced by what its model keeps
 * with the same scatter: R_i in exact mode (R_iᵀR_i = S_i), Σ_iV_iᵀ in
 * truncated mode (exact for what it kept).
 *
 * DESIGN
 * - Exact: R ← R_1, then each further R_i folded in with dtpqrt (a
 *   triangle on a triangle, as exact.c's TSQR parts), then C (a
 *   rectangle): the QR of M without forming it, O(P·n³).  σ and V are the
 *   SVD of R, computed at once (upd_exact_refresh) so that a failure is
 *   the merge's, not a later reader's.
 * - Truncated, t = Σ r_i + rows of C: when t ≥ n, the QR of the t×n stack
 *   and the SVD of its n×n triangle (right singular vectors).  When t < n,
 *   the QR of its transpose Mᵀ = QT (n×t, columns σ_ij·v_ij and C's rows),
 *   the SVD of the t×t triangle T = U S Zᵀ, and V = Q·U (dormqr on the kept
 *   columns of U): Mᵀ = (QU) S Zᵀ, so QU are M's right singular vectors.
 *   O(n·t²), and M is never squared.  Kept: upd_keep_count (k + extra,
 *   σ > rcond·σ₁).  The energy the truncation drops needs no bookkeeping:
 *   the energy total is the inputs' plus C's, exactly.
 * - Every SVD tries gesdd, then gesvd on a copy (info > 0); info < 0 is a
 *   programming error (ISVD_ERR_INVALID).  A merge is not on the hot path:
 *   it allocates its scratch per call, and the result is a new model.
 * - Order: the inputs are stacked in the order given; another order is a
 *   row permutation of M, which changes σ and V by rounding only, and
 *   signs are normalised (upd_sign_normalise) as everywhere.
 */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* The isvd_err of a LAPACKE call's nonzero info: the high-level interface
 * allocates its workspace, and reports a failed allocation as a negative
 * info of its own; other negative values are a programming error (a bad
 * argument); positive ones a factorisation that did not converge. */
static int lapack_err(lapack_int info)
{
	if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
		return ISVD_ERR_NOMEM;
	return info < 0 ? ISVD_ERR_INVALID : ISVD_ERR_LAPACK;
}

int isvd_model_merge_check(const struct isvd_model *a, const struct isvd_model *b,
                           const char **what)
{
	const char *w = NULL;

	if (what)
		*what = NULL;
	if (!a || !b)
		return ISVD_ERR_INVALID;
	if (a->n != b->n)
		w = "dimension";
	else if (a->mode != b->mode)
		w = "mode";
	else if (a->center != b->center)
		w = "centring";
	else if (a->k != b->k)
		w = "rank";
	else if (a->p != b->p)
		w = "extra";
	else if (a->forget != b->forget)
		w = "forgetting factor";
	else if (a->rcond != b->rcond)
		w = "rcond";
	if (what)
		*what = w;
	return w ? ISVD_ERR_MISMATCH : ISVD_OK;
}

/* SVD of the q×q column-major A (destroyed): σ in s, and U (q×q, ld q)
 * when u is non-NULL, else Vᵀ (q×q, ld q) in vt.  gesdd, then gesvd on a
 * copy when gesdd does not converge. */
static int square_svd(double *A, size_t q, double *s, double *u, double *vt)
{
	const lapack_int n = (lapack_int)q;
	double *copy = malloc(q * q * sizeof *copy), *superb = malloc(q * sizeof *superb);
	double *scratch = malloc(q * q * sizeof *scratch);   /* the factor not wanted */
	lapack_int info;
	int err = ISVD_OK;

	if (!copy || !superb || !scratch) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	memcpy(copy, A, q * q * sizeof *A);
	double *U = u ? u : scratch, *VT = u ? scratch : vt;
	info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', n, n, A, n, s, U, n, VT, n);
	if (info < 0) {
		err = lapack_err(info);   /* no memory, or a bad argument */
	} else if (info > 0) {
		/* gesdd did not converge: the slower, more robust QR iteration */
		info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', n, n, copy, n, s, U, n, VT, n,
		                      superb);
		err = info == 0 ? ISVD_OK : lapack_err(info);
	}
out:
	free(copy);
	free(superb);
	free(scratch);
	return err;
}

/* The totals of the union into out (weight, energy, mean, counters), from
 * the count inputs.  ISVD_ERR_TOO_LARGE when the rows seen overflow,
 * ISVD_ERR_NONFINITE when the energy would leave the bounds a model keeps
 * (below DBL_MAX/4, see check_rows in model.c). */
static int merge_totals(const struct isvd_model *const *in, size_t count,
                        struct isvd_model *out)
{
	const size_t n = out->n;
	double w = 0, e = 0;
	uint64_t rows = 0;

	for (size_t i = 0; i < count; i++) {
		if (in[i]->rows_seen > UINT64_MAX - rows)
			return ISVD_ERR_TOO_LARGE;
		rows += in[i]->rows_seen;
		w += in[i]->weight;
		e += in[i]->energy;
		out->reorth_count += in[i]->reorth_count;
		out->rows_with_gaps += in[i]->rows_with_gaps;
		out->values_imputed += in[i]->values_imputed;
	}
	if (out->center && w > 0) {
		memset(out->mean, 0, n * sizeof *out->mean);
		for (size_t i = 0; i < count; i++)
			if (in[i]->weight > 0)
				cblas_daxpy((int)n, in[i]->weight / w, in[i]->mean, 1, out->mean, 1);
		for (size_t i = 0; i < count; i++)
			for (size_t j = 0; in[i]->weight > 0 && j < n; j++) {
				const double d = in[i]->mean[j] - out->mean[j];
				e += in[i]->weight * d * d;
			}
	}
	if (!(isfinite(w) && e < DBL_MAX / 4))
		return ISVD_ERR_NONFINITE;
	out->rows_seen = rows;
	out->weight = w;
	out->energy = e;
	out->rows_since_reorth = 0;   /* V is computed afresh below */
	return ISVD_OK;
}

/* The number of rows of C (see the top): one per input that has seen rows
 * when the models centre and at least two have; else 0 (C adds nothing). */
static size_t correction_count(const struct isvd_model *const *in, size_t count, int center)
{
	size_t live = 0;

	for (size_t i = 0; i < count; i++)
		live += in[i]->weight > 0;
	return center && live >= 2 ? live : 0;
}

/* The rows of C: element (q, j) at c[q·rs + j·cs]; returns their count
 * (correction_count()). */
static size_t correction_rows(const struct isvd_model *const *in, size_t count,
                              const struct isvd_model *out, double *c, size_t rs, size_t cs)
{
	size_t q = 0;

	if (correction_count(in, count, out->center) == 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		if (!(in[i]->weight > 0))
			continue;
		const double sw = sqrt(in[i]->weight);
		for (size_t j = 0; j < out->n; j++)
			c[q * rs + j * cs] = sw * (in[i]->mean[j] - out->mean[j]);
		q++;
	}
	return q;
}

/* Exact mode: out->Rt ← the triangle of [R_1; …; R_P; C]; then its SVD. */
static int merge_exact(const struct isvd_model *const *in, size_t count,
                       struct isvd_model *out)
{
	const size_t n = out->n, nb = out->nb;
	const size_t nc = correction_count(in, count, out->center);
	double *B = NULL;
	int first = 1, err = ISVD_OK;
	lapack_int info;

	memset(out->Rt, 0, n * n * sizeof *out->Rt);
	for (size_t i = 0; i < count; i++) {
		if (!(in[i]->weight > 0))   /* no rows (a loaded image: weight 0 ⇔ rows 0) */
			continue;
		if (first) {   /* R ← R_1 (zeros below the diagonal in both) */
			memcpy(out->Rt, in[i]->Rt, n * n * sizeof *out->Rt);
			first = 0;
			continue;
		}
		/* out->K (n×n in exact mode) holds R_i while it is folded in */
		memcpy(out->K, in[i]->Rt, n * n * sizeof *out->K);
		info = LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n,
		                           (lapack_int)n, (lapack_int)nb, out->Rt, (lapack_int)n,
		                           out->K, (lapack_int)n, out->Tq, (lapack_int)nb,
		                           out->work);
		if (info != 0)   /* Householder QR has no failure mode on valid arguments */
			return ISVD_ERR_INVALID;
	}
	if (nc > 0) {
		if (!(B = malloc(nc * n * sizeof *B)))
			return ISVD_ERR_NOMEM;
		const size_t q = correction_rows(in, count, out, B, 1, nc);
		assert(q == nc);
		(void)q;
		info = LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, (lapack_int)nc, (lapack_int)n, 0,
		                           (lapack_int)(nc < nb ? nc : nb), out->Rt, (lapack_int)n,
		                           B, (lapack_int)nc, out->Tq, (lapack_int)nb, out->work);
		free(B);
		if (info != 0)
			return ISVD_ERR_INVALID;
	}
	out->stale = 1;
	if ((err = upd_exact_refresh(out)))
		return err;
	return ISVD_OK;
}

/* Truncated mode, t ≥ n: the QR of the t×n stack M (ld t), then the SVD of
 * its triangle.  Leaves σ in s (n values) and V's columns in out->V. */
static int stack_tall(struct isvd_model *out, double *M, size_t t, double *s, size_t *keep)
{
	const size_t n = out->n;
	double *tau = malloc(n * sizeof *tau), *R = calloc(n * n, sizeof *R);
	double *vt = malloc(n * n * sizeof *vt);
	lapack_int info;
	int err = ISVD_OK;

	if (!tau || !R || !vt) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)t, (lapack_int)n, M, (lapack_int)t, tau);
	if (info != 0) {
		err = lapack_err(info);
		goto out;
	}
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i <= j; i++)
			AT(R, n, i, j) = AT(M, t, i, j);
	if ((err = square_svd(R, n, s, NULL, vt)))
		goto out;
	*keep = upd_keep_count(out, s, n);
	for (size_t c = 0; c < *keep; c++)   /* column c of V = row c of Vᵀ */
		for (size_t j = 0; j < n; j++)
			AT(out->V, n, j, c) = AT(vt, n, c, j);
out:
	free(tau);
	free(R);
	free(vt);
	return err;
}

/* Truncated mode, t < n: Mᵀ (n×t, ld n) = QT, T = U S Zᵀ, V = Q·U (see
 * DESIGN).  Leaves σ in s (t values) and V's columns in out->V. */
static int stack_wide(struct isvd_model *out, double *Mt, size_t t, double *s, size_t *keep)
{
	const size_t n = out->n;
	double *tau = malloc(t * sizeof *tau), *T = calloc(t * t, sizeof *T);
	double *U = malloc(t * t * sizeof *U);
	lapack_int info;
	int err = ISVD_OK;

	if (!tau || !T || !U) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)t, Mt, (lapack_int)n, tau);
	if (info != 0) {
		err = lapack_err(info);
		goto out;
	}
	for (size_t j = 0; j < t; j++)
		for (size_t i = 0; i <= j; i++)
			AT(T, t, i, j) = AT(Mt, n, i, j);
	if ((err = square_svd(T, t, s, U, NULL)))
		goto out;
	*keep = upd_keep_count(out, s, t);
	if (*keep == 0)
		goto out;
	/* V = Q [U_keep; 0] */
	memset(out->V, 0, n * *keep * sizeof *out->V);
	for (size_t c = 0; c < *keep; c++)
		memcpy(out->V + c * n, U + c * t, t * sizeof *U);
	info = LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)n, (lapack_int)*keep,
	                      (lapack_int)t, Mt, (lapack_int)n, tau, out->V, (lapack_int)n);
	if (info != 0)
		err = lapack_err(info);
out:
	free(tau);
	free(T);
	free(U);
	return err;
}

/* Truncated mode: σ and V of [Σ_1V_1ᵀ; …; Σ_PV_Pᵀ; C], truncated. */
static int merge_truncated(const struct isvd_model *const *in, size_t count,
                           struct isvd_model *out)
{
	const size_t n = out->n, nc = correction_count(in, count, out->center);
	size_t t = nc, keep = 0, q, row = 0;   /* t: rows of M */
	double *M = NULL, *s = NULL;
	int err;

	for (size_t i = 0; i < count; i++)
		t += in[i]->r;
	out->r = 0;
	if (t == 0)
		return ISVD_OK;
	const int tall = t >= n;
	M = malloc(t * n * sizeof *M);
	s = malloc((tall ? n : t) * sizeof *s);
	if (!M || !s) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	/* Row `row` of M is σ_ij·v_ijᵀ: in the tall layout (t×n, ld t) a row,
	 * in the wide one (Mᵀ, n×t, ld n) a column. */
	for (size_t i = 0; i < count; i++)
		for (size_t c = 0; c < in[i]->r; c++, row++) {
			const double sg = in[i]->sigma[c], *v = in[i]->V + c * n;
			for (size_t j = 0; j < n; j++) {
				if (tall)
					AT(M, t, row, j) = sg * v[j];
				else
					AT(M, n, j, row) = sg * v[j];
			}
		}
	/* C's rows: rows of the tall M, columns of the wide Mᵀ */
	q = tall ? correction_rows(in, count, out, M + row, 1, t)
	         : correction_rows(in, count, out, M + row * n, n, 1);
	assert(q == nc);
	(void)q;
	err = tall ? stack_tall(out, M, t, s, &keep) : stack_wide(out, M, t, s, &keep);
	if (err)
		goto out;
	for (size_t i = 0; i < keep; i++)
		if (!isfinite(s[i])) {
			err = ISVD_ERR_NONFINITE;
			goto out;
		}
	/* The invariants of internal.h: r ≤ m, σ positive and non-increasing. */
	assert(keep <= out->m);
	for (size_t i = 1; i < keep; i++)
		assert(s[i] <= s[i - 1] && s[i] > 0);
	memcpy(out->sigma, s, keep * sizeof *s);
	out->r = keep;
	upd_sign_normalise(out);
out:
	free(M);
	free(s);
	return err;
}

int isvd_model_merge(const struct isvd_model *const *in, size_t count,
                     struct isvd_model **out)
{
	struct isvd_options o;
	struct isvd_model *m = NULL;
	int err;

	if (!in || count == 0 || !out)
		return ISVD_ERR_INVALID;
	for (size_t i = 0; i < count; i++)
		if (!in[i] || in[i]->frozen)
			return ISVD_ERR_INVALID;
	for (size_t i = 1; i < count; i++)
		if ((err = isvd_model_merge_check(in[0], in[i], NULL)))
			return err;
	if ((err = isvd_model_options(in[0], &o)) || (err = upd_alloc(&o, &m)))
		return err;
	if ((err = merge_totals(in, count, m)))
		goto fail;
	err = m->mode == ISVD_MODE_EXACT ? merge_exact(in, count, m)
	                                 : merge_truncated(in, count, m);
	if (err)
		goto fail;
	*out = m;
	return ISVD_OK;
fail:
	isvd_model_destroy(m);
	return err;
}
