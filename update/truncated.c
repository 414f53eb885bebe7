/*
 * truncated.c — the truncated update strategy: Brand's block update.
 *
 * The model holds A ≈ U Σ Vᵀ with U implicit.  A block of b rows becomes the
 * weighted, centred block Y (bb = b or b + 1 rows, see below), and
 *
 *   A' = [ λ^{b/2} A ]  =  [U 0] [ λ^{b/2} Σ   0  ] [V Q]ᵀ
 *        [    Y      ]     [0 I] [   Pᵀ      Rᵀ  ]
 *
 * where P = VᵀYᵀ (projection), Yᵀ − VP = QR (QR of the residual).  The SVD
 * of the small (r+bb)×(r+bb) core K = W_L S W_Rᵀ gives V' = [V Q] W_R and
 * σ' = S, truncated to m components and to σ > rcond·σ_1.
 *
 * DESIGN
 * - Weights and centring are block.c's (upd_weigh_block): Y holds the
 *   block's weighted, centred rows plus the mean-correction row, and old
 *   rows are scaled by λ^{b/2}.
 * - The residual is orthogonalised against V twice (classical Gram–Schmidt,
 *   "twice is enough") so Q is orthogonal to V to working precision, and
 *   then factored by CholeskyQR2 with a Householder fallback.
 * - When r + bb ≥ n the basis [V Q] would not fit in n dimensions; then the
 *   stacked matrix [λ^{b/2}ΣVᵀ; Y] ((r+bb)×n) is decomposed directly (QR,
 *   then the SVD of its n×n triangle).  That happens only for small n,
 *   where it is also the cheaper path.
 * - gesdd is tried first; if it does not converge, gesvd runs on a copy.
 * - All workspaces are sized once by upd_truncated_workspace (lwork = -1
 *   queries), so a fold allocates nothing.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"

/* Column-major element (i, j) with leading dimension ld. */
#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* Largest lwork among every LAPACK call a fold or a re-orthogonalisation can
 * make, found by workspace queries at the largest sizes.  Returns 0 on a
 * query failure. */
static size_t query_lwork(const struct isvd_model *m)
{
	const lapack_int n = (lapack_int)m->n, bb = (lapack_int)(m->B + 1);
	const lapack_int s = (lapack_int)m->s, c = (lapack_int)m->c, mm = (lapack_int)m->m;
	double q, best = 1;
	lapack_int info;

#define TAKE(call) do { q = 0; info = (call); if (info != 0) return 0; \
		if (q > best) best = q; } while (0)
	/* QR of the residual (n × bb, only when bb < n) and of V (n × m). */
	TAKE(LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, n, bb, NULL, n, NULL, &q, -1));
	TAKE(LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, n, bb < n ? bb : n, bb < n ? bb : n,
	                         NULL, n, NULL, &q, -1));
	TAKE(LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, n, mm, NULL, n, NULL, &q, -1));
	TAKE(LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, n, mm, mm, NULL, n, NULL, &q, -1));
	/* Every SVD is square, at most c × c (core t × t, direct n × n,
	 * re-orthogonalisation r × r). */
	TAKE(LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'O', c, c, NULL, c, NULL, NULL, 1,
	                         NULL, c, &q, -1, NULL));
	TAKE(LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'S', c, c, NULL, c, NULL, NULL, 1,
	                         NULL, c, &q, -1));
	/* Direct path (only when n ≤ s): QR of s × n, SVD of n × n. */
	if (n <= s)
		TAKE(LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, s, n, NULL, s, NULL, &q, -1));
#undef TAKE
	return (size_t)best + 1;
}

int upd_truncated_workspace(struct isvd_model *m)
{
	size_t lw = query_lwork(m);

	if (lw == 0)
		return ISVD_ERR_INVALID;
	m->lwork = lw;
	return ISVD_OK;
}

int upd_svd(struct isvd_model *m, size_t rows, size_t cols, double *A, double *Acopy,
            double *s, double *vt, size_t ldvt)
{
	lapack_int info;

	memcpy(Acopy, A, rows * cols * sizeof *A);
	info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'O', (lapack_int)rows, (lapack_int)cols,
	                           A, (lapack_int)rows, s, NULL, 1, vt, (lapack_int)ldvt,
	                           m->work, (lapack_int)m->lwork, m->iwork);
	if (info == 0)
		return ISVD_OK;
	if (info < 0)
		return ISVD_ERR_INVALID;  /* a programming error: bad argument */
	/* gesdd did not converge: the slower, more robust QR-iteration driver. */
	info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'S', (lapack_int)rows,
	                           (lapack_int)cols, Acopy, (lapack_int)rows, s, NULL, 1,
	                           vt, (lapack_int)ldvt, m->work, (lapack_int)m->lwork);
	return info == 0 ? ISVD_OK : ISVD_ERR_LAPACK;
}

size_t upd_keep_count(const struct isvd_model *m, const double *s, size_t len)
{
	size_t r = 0;

	if (len == 0 || !(s[0] > 0))
		return 0;
	while (r < len && r < m->m && s[r] > m->rcond * s[0])
		r++;
	return r;
}

/*
 * Orthonormalises the residual Y (n × bb, bb < n) in place: Y = Q R with R
 * upper triangular in m->R (bb × bb, ld bb).
 *
 * CholeskyQR2 (Fukaya et al. 2014): R₁ = chol(YᵀY), Y ← Y R₁⁻¹, twice —
 * all BLAS-3, about half the time of Householder QR for tall blocks, and as
 * orthogonal as Householder when cond(Y) ≲ 1e8.  A pass whose Cholesky
 * fails or whose triangle has a diagonal spread beyond CHOLQR_MAX_SPREAD
 * (cond(Y) too large: repeated rows, an exactly zero residual) is redone by
 * Householder QR on the current Y, which is always stable.
 */
#define CHOLQR_MAX_SPREAD 1e6

static int householder_pass(struct isvd_model *m, size_t bb, double *Rp)
{
	const size_t n = m->n;
	lapack_int info;

	info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)bb, m->Y,
	                           (lapack_int)n, m->tau, m->work, (lapack_int)m->lwork);
	if (info != 0)
		return ISVD_ERR_INVALID;
	for (size_t j = 0; j < bb; j++)
		for (size_t i = 0; i < bb; i++)
			AT(Rp, bb, i, j) = i <= j ? AT(m->Y, n, i, j) : 0.0;
	info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)bb,
	                           (lapack_int)bb, m->Y, (lapack_int)n, m->tau, m->work,
	                           (lapack_int)m->lwork);
	return info == 0 ? ISVD_OK : ISVD_ERR_INVALID;
}

/* One CholeskyQR pass; returns 1 if it was applied, 0 if the caller must
 * fall back to Householder (Y untouched in that case). */
static int cholqr_pass(struct isvd_model *m, size_t bb, double *Rp)
{
	const size_t n = m->n;
	double dmin, dmax;

	cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)bb, (int)n, 1.0, m->Y,
	            (int)n, 0.0, Rp, (int)bb);
	if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)bb, Rp, (lapack_int)bb) != 0)
		return 0;
	dmin = dmax = fabs(Rp[0]);
	for (size_t j = 1; j < bb; j++) {
		const double d = fabs(AT(Rp, bb, j, j));
		dmin = d < dmin ? d : dmin;
		dmax = d > dmax ? d : dmax;
	}
	if (!(dmin > 0) || dmax > CHOLQR_MAX_SPREAD * dmin)
		return 0;
	for (size_t j = 0; j < bb; j++)  /* potrf leaves the lower part as it was */
		for (size_t i = j + 1; i < bb; i++)
			AT(Rp, bb, i, j) = 0.0;
	cblas_dtrsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit,
	            (int)n, (int)bb, 1.0, Rp, (int)bb, m->Y, (int)n);
	return 1;
}

static int residual_qr(struct isvd_model *m, size_t bb)
{
	int err;

	if (!cholqr_pass(m, bb, m->R))
		return householder_pass(m, bb, m->R);
	/* Second pass, by Householder if Cholesky refuses: Y R₁⁻¹ = Q R₂, so
	 * R = R₂ R₁. */
	if (!cholqr_pass(m, bb, m->R2)) {
		err = householder_pass(m, bb, m->R2);
		if (err)
			return err;
	}
	cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
	            (int)bb, (int)bb, 1.0, m->R2, (int)bb, m->R, (int)bb);
	return ISVD_OK;
}

/* Core path (r + bb < n).  Leaves the new basis in Vnew and σ in svals;
 * *r_new the kept count. */
static int fold_core(struct isvd_model *m, size_t bb, double lam_half, size_t *r_new)
{
	const size_t n = m->n, r = m->r, t = r + bb;
	int err;

	/* P = VᵀY, Y -= VP, twice; P accumulates both passes. */
	if (r > 0) {
		cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)bb, (int)n,
		            1.0, m->V, (int)n, m->Y, (int)n, 0.0, m->P, (int)r);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)bb, (int)r,
		            -1.0, m->V, (int)n, m->P, (int)r, 1.0, m->Y, (int)n);
		cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)bb, (int)n,
		            1.0, m->V, (int)n, m->Y, (int)n, 0.0, m->P2, (int)r);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)bb, (int)r,
		            -1.0, m->V, (int)n, m->P2, (int)r, 1.0, m->Y, (int)n);
		for (size_t i = 0; i < r * bb; i++)
			m->P[i] += m->P2[i];
	}

	/* Residual = Q R, Q in Y, R in m->R. */
	err = residual_qr(m, bb);
	if (err)
		return err;

	/* K = [λ^{b/2}Σ 0; Pᵀ Rᵀ], t × t. */
	memset(m->K, 0, t * t * sizeof *m->K);
	for (size_t i = 0; i < r; i++)
		AT(m->K, t, i, i) = lam_half * m->sigma[i];
	for (size_t j = 0; j < bb; j++) {
		for (size_t i = 0; i < r; i++)
			AT(m->K, t, r + j, i) = AT(m->P, r, i, j);
		for (size_t i = 0; i <= j; i++)
			AT(m->K, t, r + j, r + i) = AT(m->R, bb, i, j);
	}

	err = upd_svd(m, t, t, m->K, m->Kcopy, m->svals, m->VT, t);
	if (err)
		return err;
	const size_t rn = upd_keep_count(m, m->svals, t);

	/* V' = V·W_R[0:r, 0:rn] + Q·W_R[r:t, 0:rn], with W_R = VTᵀ. */
	if (rn > 0) {
		if (r > 0)
			cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)rn, (int)r,
			            1.0, m->V, (int)n, m->VT, (int)t, 0.0, m->Vnew, (int)n);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)rn, (int)bb,
		            1.0, m->Y, (int)n, m->VT + r * t, (int)t, r > 0 ? 1.0 : 0.0,
		            m->Vnew, (int)n);
	}
	*r_new = rn;
	return ISVD_OK;
}

/* Direct path (r + bb ≥ n): the stacked (r+bb) × n matrix M = [λ^{b/2}ΣVᵀ; Y]
 * is reduced by a QR to its n × n triangle R, whose SVD gives σ and V (the
 * left factor, never needed, is not formed). */
static int fold_direct(struct isvd_model *m, size_t bb, double lam_half, size_t *r_new)
{
	const size_t n = m->n, r = m->r, t = r + bb;
	lapack_int info;
	int err;

	for (size_t j = 0; j < n; j++) {
		for (size_t i = 0; i < r; i++)
			AT(m->K, t, i, j) = lam_half * m->sigma[i] * AT(m->V, n, j, i);
		for (size_t i = 0; i < bb; i++)
			AT(m->K, t, r + i, j) = AT(m->Y, n, j, i);
	}
	info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)t, (lapack_int)n, m->K,
	                           (lapack_int)t, m->tau, m->work, (lapack_int)m->lwork);
	if (info != 0)
		return ISVD_ERR_INVALID;
	/* Compact R to leading dimension n in place (column j moves down to
	 * j·n ≤ j·t, never over a column not yet moved) and clear below it. */
	for (size_t j = 0; j < n; j++) {
		memmove(m->K + j * n, m->K + j * t, (j + 1) * sizeof *m->K);
		memset(m->K + j * n + j + 1, 0, (n - j - 1) * sizeof *m->K);
	}
	err = upd_svd(m, n, n, m->K, m->Kcopy, m->svals, m->VT, n);
	if (err)
		return err;
	const size_t rn = upd_keep_count(m, m->svals, n);
	for (size_t c = 0; c < rn; c++)
		for (size_t j = 0; j < n; j++)
			AT(m->Vnew, n, j, c) = AT(m->VT, n, c, j);
	*r_new = rn;
	return ISVD_OK;
}

int upd_truncated_fold(struct isvd_model *m, const double *rows, size_t b, size_t ld)
{
	size_t bb, rn = 0;
	double w_new, e_new, lam_b;
	int err;

	upd_weigh_block(m, rows, b, ld, &bb, &w_new, &e_new, &lam_b);
	if (!isfinite(e_new) || !isfinite(w_new))
		return ISVD_ERR_NONFINITE;  /* overflow of finite but huge values */
	const double lam_half = sqrt(lam_b);

	if (m->r + bb < m->n)
		err = fold_core(m, bb, lam_half, &rn);
	else
		err = fold_direct(m, bb, lam_half, &rn);
	if (err)
		return err;
	for (size_t i = 0; i < rn; i++)
		if (!isfinite(m->svals[i]))
			return ISVD_ERR_NONFINITE;

	/* Commit. */
	double *tmp = m->V;
	m->V = m->Vnew;
	m->Vnew = tmp;
	memcpy(m->sigma, m->svals, rn * sizeof *m->sigma);
	m->r = rn;
	if (m->center)
		memcpy(m->mean, m->mu_new, m->n * sizeof *m->mean);
	m->weight = w_new;
	m->energy = e_new;
	m->rows_seen += b;
	m->rows_since_reorth += b;
	upd_sign_normalise(m);
	if (m->reorth_every && m->rows_since_reorth >= m->reorth_every)
		return upd_reorthogonalise(m);
	return ISVD_OK;
}

/*
 * V = QR (Householder), then Σ Rᵀ = U₂ Σ₂ W₂ᵀ, so U Σ Vᵀ = (U U₂) Σ₂ (Q W₂)ᵀ:
 * the same matrix expressed with an orthonormal basis.  Enters with V
 * slightly non-orthonormal; leaves ‖VᵀV − I‖ at working precision.
 */
int upd_reorthogonalise(struct isvd_model *m)
{
	const size_t n = m->n, r = m->r;
	lapack_int info;
	int err;

	m->rows_since_reorth = 0;
	if (r == 0)
		return ISVD_OK;
	memcpy(m->Vnew, m->V, n * r * sizeof *m->V);
	info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r, m->Vnew,
	                           (lapack_int)n, m->tau, m->work, (lapack_int)m->lwork);
	if (info != 0)
		return ISVD_ERR_INVALID;
	/* C = Σ Rᵀ (lower triangular), r × r. */
	memset(m->K, 0, r * r * sizeof *m->K);
	for (size_t i = 0; i < r; i++)
		for (size_t j = 0; j <= i; j++)
			AT(m->K, r, i, j) = m->sigma[i] * AT(m->Vnew, n, j, i);
	info = LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)r,
	                           (lapack_int)r, m->Vnew, (lapack_int)n, m->tau, m->work,
	                           (lapack_int)m->lwork);
	if (info != 0)
		return ISVD_ERR_INVALID;
	err = upd_svd(m, r, r, m->K, m->Kcopy, m->svals, m->VT, r);
	if (err)
		return err;
	const size_t rn = upd_keep_count(m, m->svals, r);
	if (rn > 0)
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)rn, (int)r,
		            1.0, m->Vnew, (int)n, m->VT, (int)r, 0.0, m->V, (int)n);
	memcpy(m->sigma, m->svals, rn * sizeof *m->sigma);
	m->r = rn;
	m->reorth_count++;
	upd_sign_normalise(m);
	return ISVD_OK;
}
