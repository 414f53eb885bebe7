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
 * - With more than one thread (small n, blocks of ≥ 8n rows a part:
 *   upd_exact_parts), the
 *   block's rows are split TSQR-style: part 0 folds its rows into R with
 *   dtpqrt while each other part p takes the QR of its own rows (dgeqrf,
 *   in place in Bt, into its triangle R_p); then each R_p is folded into R
 *   with dtpqrt (a triangle on a triangle, ~n³ flops).  [R; rows] and
 *   [R; rows_0; R_1; …] have the same R up to signs of rows, which the SVD
 *   does not see; results are bit-identical for a given part count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"
#include "par.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

size_t upd_exact_part_len(const struct isvd_model *m)
{
	const lapack_int n = (lapack_int)m->n, ldb = (lapack_int)(m->B + 1);
	double q = 0;

	if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, ldb, n, NULL, ldb, NULL, &q, -1) != 0)
		return 0;
	return m->n + (size_t)q + 1;   /* tau, then dgeqrf's work */
}

size_t upd_exact_parts(size_t n, size_t B, size_t threads)
{
	/* Each part must have at least 8n rows: folding its triangle in costs
	 * about n³, and the block's weighing stays serial.  Measured with
	 * isvd-bench, centred, 1024-row blocks: at n = 64 (16n rows a part)
	 * two parts fold 1.0–1.06M rows/s against 0.84–0.94M on one; at
	 * n = 128 (4n rows a part) they were no faster. */
	size_t p = threads;
	while (p > 1 && (B + 1) / p < 8 * n)
		p--;
	return p;
}

struct exact_job {
	struct isvd_model *m;
	size_t bb, parts;
	int info[ISVD_MAX_THREADS];   /* parts ≤ threads ≤ ISVD_MAX_THREADS */
};

/* Part 0: dtpqrt of its rows into R.  Part p ≥ 1: dgeqrf of its rows. */
static void exact_part(void *arg, size_t part)
{
	struct exact_job *j = arg;
	struct isvd_model *m = j->m;
	const size_t n = m->n, ldb = m->B + 1;
	size_t lo, hi;

	upd_pool_range(j->bb, j->parts, part, &lo, &hi);
	const lapack_int h = (lapack_int)(hi - lo);
	if (h == 0)
		return;
	if (part == 0) {
		j->info[0] = LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, h, (lapack_int)n, 0,
		                                 (lapack_int)m->nb, m->Rt, (lapack_int)n, m->Bt,
		                                 (lapack_int)ldb, m->Tq, (lapack_int)m->nb,
		                                 m->work);
		return;
	}
	double *buf = m->part_buf + (part - 1) * m->part_len;
	j->info[part] = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, h, (lapack_int)n, m->Bt + lo,
	                                    (lapack_int)ldb, buf, buf + n,
	                                    (lapack_int)(m->part_len - n));
}

/* Folds Bt's bb rows into R over the pool (see DESIGN). */
static int fold_rows(struct isvd_model *m, size_t bb)
{
	const size_t n = m->n, ldb = m->B + 1;
	struct exact_job j = { .m = m, .bb = bb, .parts = upd_pool_size(m->pool) };

	if (bb < j.parts * 8 * n)
		j.parts = 1;     /* a short block: one dtpqrt */
	if (j.parts == 1)
		exact_part(&j, 0);
	else
		upd_pool_run(m->pool, exact_part, &j);
	for (size_t p = 0; p < j.parts; p++)
		if (j.info[p] != 0)
			return ISVD_ERR_INVALID;
	for (size_t p = 1; p < j.parts; p++) {
		size_t lo, hi;
		upd_pool_range(bb, j.parts, p, &lo, &hi);
		const size_t l = hi - lo < n ? hi - lo : n;   /* rows of R_p */
		double *Rp = m->Bt + lo;
		if (l == 0)
			continue;                              /* an empty part */
		for (size_t c = 0; c < n; c++)                 /* clear the reflectors */
			for (size_t i = c + 1; i < l; i++)
				AT(Rp, ldb, i, c) = 0.0;
		if (LAPACKE_dtpqrt_work(LAPACK_COL_MAJOR, (lapack_int)l, (lapack_int)n,
		                        (lapack_int)l, (lapack_int)m->nb, m->Rt,
		                        (lapack_int)n, Rp, (lapack_int)ldb, m->Tq,
		                        (lapack_int)m->nb, m->work) != 0)
			return ISVD_ERR_INVALID;
	}
	return ISVD_OK;
}

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
	int err;

	upd_weigh_block(m, rows, b, ld, &bb, &w_new, &e_new, &lam_b);
	if (!isfinite(e_new) || !isfinite(w_new))
		return ISVD_ERR_NONFINITE;  /* overflow of finite but huge values */

	/* Bt = Yᵀ (bb × n); Y holds one block row per column.  In tiles, so
	 * that both sides stay in cache. */
	for (size_t j0 = 0; j0 < n; j0 += 32)
		for (size_t i0 = 0; i0 < bb; i0 += 32)
			for (size_t i = i0; i < i0 + 32 && i < bb; i++)
				for (size_t j = j0; j < j0 + 32 && j < n; j++)
					AT(m->Bt, ldb, i, j) = AT(m->Y, n, j, i);
	if (lam_b != 1.0) {
		const double h = sqrt(lam_b);
		for (size_t j = 0; j < n; j++)
			cblas_dscal((int)(j + 1), h, m->Rt + j * n, 1);
	}
	/* bb = 0 only for a centred first row: R stays 0, the mean moves. */
	if (bb > 0 && (err = fold_rows(m, bb)))
		return err;

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
