/*
 * exact.c — the exact update strategy: the stream's triangular factor.
 *
 * The model holds the n×n upper-triangular R with RᵀR = AᵀA for the
 * weighted, centred matrix A of every row seen (A = QR with Q never
 * formed), so A and R have the same singular values and right singular
 * vectors.  A block of b rows, weighted and centred into Y by block.c
 * (bb = b or b + 1 rows with the mean correction), is folded in as
 *
 *     [ λ^{b/2} R ]  = Q' R'        (LAPACK dtpqrt: the QR of a triangle
 *     [    Yᵀ     ]                  stacked on a rectangle, O(bb·n²))
 *
 * and σ, V are the SVD of R', computed only when a reader asks for them
 * (upd_exact_refresh, cached until the next fold).  Nothing is truncated
 * while streaming: factors are exact for every reported k ≤ n, whatever the
 * block sizes, and AᵀA is never formed, so the condition number is not
 * squared.
 *
 * DESIGN
 * - dtpqrt has no failure mode on valid arguments (it is Householder QR),
 *   so a fold updates R in place; an info ≠ 0 is a programming error.
 * - The refresh SVD uses the same gesdd → gesvd fallback as the truncated
 *   strategy, on a copy of R, so a failed refresh leaves R intact and the
 *   next read tries again.
 * - Workspaces (Bt, Tq, K, Kcopy, VT, work) are allocated at creation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

int upd_exact_workspace(struct isvd_model *m)
{
	const lapack_int n = (lapack_int)m->n;
	double q, best = (double)(m->nb * m->n);   /* dtpqrt needs nb·n */
	lapack_int info;

	q = 0;
	info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'O', n, n, NULL, n, NULL, NULL, 1, NULL, n,
	                           &q, -1, NULL);
	if (info != 0)
		return ISVD_ERR_INVALID;
	best = q > best ? q : best;
	q = 0;
	info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'S', n, n, NULL, n, NULL, NULL, 1,
	                           NULL, n, &q, -1);
	if (info != 0)
		return ISVD_ERR_INVALID;
	best = q > best ? q : best;
	m->lwork = (size_t)best + 1;
	return ISVD_OK;
}

int upd_exact_fold(struct isvd_model *m, const double *rows, size_t b, size_t ld)
{
	const size_t n = m->n, ldb = m->B + 1;
	size_t bb;
	double w_new, e_new, lam_b;
	lapack_int info;

	upd_weigh_block(m, rows, b, ld, &bb, &w_new, &e_new, &lam_b);
	if (!isfinite(e_new) || !isfinite(w_new))
		return ISVD_ERR_NONFINITE;  /* overflow of finite but huge values */

	/* Bt = Yᵀ (bb × n); Y holds one block row per column. */
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i < bb; i++)
			AT(m->Bt, ldb, i, j) = AT(m->Y, n, j, i);
	if (lam_b != 1.0) {
		const double h = sqrt(lam_b);
		for (size_t j = 0; j < n; j++)
			cblas_dscal((int)(j + 1), h, m->Rt + j * n, 1);
	}
	/* bb = 0 only for a centred first row: R stays 0, the mean moves. */
	info = bb == 0 ? 0 :
	       LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, (lapack_int)bb, (lapack_int)n, 0,
	                           (lapack_int)m->nb, m->Rt, (lapack_int)n, m->Bt, (lapack_int)ldb,
	                           m->Tq, (lapack_int)m->nb, m->work);
	if (info != 0)
		return ISVD_ERR_INVALID;

	if (m->center)
		memcpy(m->mean, m->mu_new, n * sizeof *m->mean);
	m->weight = w_new;
	m->energy = e_new;
	m->rows_seen += b;
	m->stale = 1;
	return ISVD_OK;
}

/* A snapshot (isvd_model_snapshot) taken while stale carries R but none of
 * the workspaces; its first reader allocates them here. */
static int snapshot_workspaces(struct isvd_model *m)
{
	const size_t n = m->n;

	m->K = malloc(n * n * sizeof *m->K);
	m->Kcopy = malloc(n * n * sizeof *m->Kcopy);
	m->VT = malloc(n * n * sizeof *m->VT);
	m->svals = malloc(n * sizeof *m->svals);
	m->iwork = malloc(8 * n * sizeof *m->iwork);
	m->work = malloc(m->lwork * sizeof *m->work);
	if (m->K && m->Kcopy && m->VT && m->svals && m->iwork && m->work)
		return ISVD_OK;
	free(m->K);
	free(m->Kcopy);
	free(m->VT);
	free(m->svals);
	free(m->iwork);
	free(m->work);
	m->K = m->Kcopy = m->VT = m->svals = m->work = NULL;
	m->iwork = NULL;
	return ISVD_ERR_NOMEM;
}

int upd_exact_refresh(struct isvd_model *m)
{
	const size_t n = m->n;
	int err;

	if (!m->stale)
		return ISVD_OK;
	if (m->frozen && !m->K && (err = snapshot_workspaces(m)))
		return err;
	for (size_t j = 0; j < n; j++) {   /* K = R with its lower part zeroed */
		memcpy(m->K + j * n, m->Rt + j * n, (j + 1) * sizeof *m->K);
		memset(m->K + j * n + j + 1, 0, (n - j - 1) * sizeof *m->K);
	}
	err = upd_svd(m, n, n, m->K, m->Kcopy, m->svals, m->VT, n);
	if (err)
		return err;
	const size_t rn = upd_keep_count(m, m->svals, n);
	for (size_t i = 0; i < rn; i++)
		if (!isfinite(m->svals[i]))
			return ISVD_ERR_NONFINITE;
	for (size_t c = 0; c < rn; c++)          /* column c of V = row c of VT */
		for (size_t j = 0; j < n; j++)
			AT(m->V, n, j, c) = AT(m->VT, n, c, j);
	memcpy(m->sigma, m->svals, rn * sizeof *m->sigma);
	m->r = rn;
	upd_sign_normalise(m);
	m->stale = 0;
	return ISVD_OK;
}
