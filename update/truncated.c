/*
 * truncated.c — the truncated update strategy: Brand's block update.
 *
 * The model holds A ≈ U Σ Vᵀ with U implicit.  A block of b rows becomes the
 * weighted, centred block Y (bb = b − 1, b rows, see block.c), and
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
 *   block's weighted, centred rows (reflected so that they are
 *   independent, see block.c) plus the mean-correction row, and old rows
 *   are scaled by λ^{b/2}.
 * - The n-sized products (VᵀY, Y − VC, YᵀY, the rotation) are split by rows
 *   over the model's pool (par.c); the BLAS itself runs one thread.
 * - Residual, the cheap way when it is safe ("1.5 passes"): one classical
 *   Gram–Schmidt pass C = VᵀY, Y −= VC; then one sweep over Y gives both
 *   E = VᵀY (what the pass left along V) and S = YᵀY.  The second pass of
 *   "twice is enough", Y'' = Y − VE, is never applied to the n-sized Y: its
 *   Gram matrix is S − EᵀE, R = chol(S − EᵀE), Q = (Y − VE)R⁻¹ stays
 *   implicit, and the rotation V' = [V Q]W becomes
 *   V(W_top − E·R⁻¹W_bot) + Y·(R⁻¹W_bot): small products instead of two
 *   n-sized ones (the second subtraction and Q = YR⁻¹).  Q is then as
 *   orthogonal to V as with two applied passes (E is computed from the
 *   once-projected Y, as the second pass would be), and orthonormal to
 *   about ε·κ(R)².  Safe means: the second pass removes less than half of
 *   every column (Parlett–Kahan's criterion that two passes suffice),
 *   Cholesky succeeds, and κ(R) ≤ ONEPASS_MAX_COND (dtrcon's estimate).
 *   Otherwise the full path: the second pass applied, CholeskyQR2 with a
 *   Householder fallback, Q formed explicitly.  (A plain single pass
 *   without E was measured too: at (1000, 50) it let ‖VᵀV − I‖ grow ~70×
 *   faster, by ε·√(loss)·κ per block, a loss of 2e4 being usual for
 *   low-rank data with 1e-3 noise.)
 * - Core, the cheap way when it is safe: the right singular vectors of
 *   K = [λ^{b/2}Σ 0; Cᵀ Rᵀ] are the eigenvectors of
 *   M = KᵀK = diag(λ^b σ², 0) + F Fᵀ, F = [C; R] (dsyrk), found by dsytrd,
 *   dstedc and dormtr applied to the top m eigenvectors only; σ_j are then
 *   recomputed from the vectors, σ_j = ‖K w_j‖, not taken as √λ_j.  Forming
 *   M squares: an eigenvalue carries an absolute error of about
 *   t·ε·σ₁², so σ_j² of a component with σ₁/σ_j = κ has a relative error
 *   near t·ε·κ², and its vector an error near t·ε·κ²/(relative gap).  The
 *   route is used only when every one of the top m values it returns has
 *   σ₁/σ_j ≤ UPD_EIG_MAX_COND (checked after it, predicted from the previous
 *   block before it): with t ≤ 125 that bounds the relative error of σ_j²
 *   by ~3e-8 before the recomputation, and the recomputed σ_j (a
 *   Rayleigh-quotient-like estimate, second order in the vector error) to
 *   rounding level; beyond it, and for rank-deficient cores (whose zero
 *   eigenvalues come out as noise of size √ε·σ₁), gesdd on K is used, as
 *   for every core before.
 *   (m->eig_max_cond holds the bound, so that the tests can move it.)
 * - When r + bb ≥ n the basis [V Q] would not fit in n dimensions; then the
 *   stacked matrix [λ^{b/2}ΣVᵀ; Y] ((r+bb)×n) is decomposed directly (QR,
 *   then the SVD of its n×n triangle).  That happens only for small n,
 *   where it is also the cheaper path.
 * - gesdd is tried first; if it does not converge, gesvd runs on a copy.
 * - All workspaces are sized once by upd_truncated_workspace (lwork = -1
 *   queries), so a fold allocates nothing.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"
#include "par.h"

/* Column-major element (i, j) with leading dimension ld. */
#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* The implicit residual is used only when κ(R) ≤ ONEPASS_MAX_COND (see
 * DESIGN): Q = (Y − VE)R⁻¹ is then orthonormal to about 400ε.  Measured at
 * (1000, 50), centred, over 99,328 rows: ‖VᵀV − I‖ 4.8e-13 against 5.7e-13
 * with two applied passes and CholeskyQR2, with 1550 of 1552 blocks on
 * this path. */
#define ONEPASS_MAX_COND 20.0
/* Rows of V and Y per chunk of the fused sweep: 128 rows of r + bb ≤ 125
 * columns is ~125 KiB, which stays in a core's L2 between the three
 * products of the chunk. */
#define SWEEP_ROWS 128

/* Largest lwork among every LAPACK call a fold or a re-orthogonalisation can
 * make, found by workspace queries at the largest sizes.  Returns 0 on a
 * query failure. */
static size_t query_lwork(const struct isvd_model *m)
{
	const lapack_int n = (lapack_int)m->n, bb = (lapack_int)(m->B + 1);
	const lapack_int s = (lapack_int)m->s, c = (lapack_int)m->c, mm = (lapack_int)m->m;
	double q, best = 1;
	lapack_int info, iq = 0;

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
	/* The eigen route of the core (t ≤ c): tridiagonalise, divide and
	 * conquer, back-transform m vectors. */
	TAKE(LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', c, NULL, c, NULL, NULL, NULL, &q, -1));
	TAKE(LAPACKE_dormtr_work(LAPACK_COL_MAJOR, 'L', 'L', 'N', c, mm, NULL, c, NULL, NULL,
	                         c, &q, -1));
	TAKE(LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', c, NULL, NULL, NULL, c, &q, -1, &iq, -1));
	if ((double)c * c + 4.0 * c + 1 > best)   /* dstedc's documented minimum */
		best = (double)c * c + 4.0 * c + 1;
	if (3.0 * bb > best)                        /* dtrcon */
		best = 3.0 * bb;
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

size_t upd_truncated_liwork(const struct isvd_model *m)
{
	const size_t c = m->c, bb = m->B + 1;
	size_t li = 8 * c;                 /* gesdd */

	if (3 + 5 * c > li)
		li = 3 + 5 * c;                /* dstedc */
	return bb > li ? bb : li;          /* dtrcon */
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

/* ------------------------------------------------------------------------
 * The n-sized products, split by rows over the pool.  Part 0 writes a sum
 * into its destination, parts 1… into their own slice of m->part_buf;
 * run_job() then adds those in part order, so a given part count gives
 * bit-identical results. */

enum job_op {
	OP_PROJECT,        /* dst (r × bb, ld r)  = V[rows]ᵀ Y[rows] */
	OP_SUBTRACT,       /* Y[rows] −= V[rows] C */
	OP_SUBTRACT_PROJECT_GRAM,  /* OP_SUBTRACT, then dst = V[rows]ᵀ Y[rows] and
	                              dst2 (bb × bb upper) = Y[rows]ᵀ Y[rows] on the
	                              result, chunk by chunk of SWEEP_ROWS rows so
	                              each chunk is reused from cache */
	OP_GRAM,           /* dst (bb × bb upper) = Y[rows]ᵀ Y[rows] */
	OP_TRSM,           /* Y[rows] ← Y[rows] T⁻¹, T (bb × bb upper) */
	OP_ROTATE          /* Vnew[rows] = V[rows] W[0:r] + Y[rows] W[r:t] */
};

struct job {
	struct isvd_model *m;
	enum job_op op;
	size_t parts, r, bb, rn;
	const double *C;    /* OP_SUBTRACT*: r × bb, ld r;  OP_TRSM: T */
	double *dst;        /* OP_PROJECT, OP_SUBTRACT_PROJECT_GRAM, OP_GRAM */
	double *dst2;       /* OP_SUBTRACT_PROJECT_GRAM's Gram matrix */
	const double *W;    /* OP_ROTATE: t × rn, ld t */
};

static double *part_dst(const struct job *j, size_t part)
{
	return part == 0 ? j->dst : j->m->part_buf + (part - 1) * j->m->part_len;
}

/* OP_SUBTRACT_PROJECT_GRAM's second sum: after the first in each part's
 * slice. */
static double *part_dst2(const struct job *j, size_t part)
{
	return part == 0 ? j->dst2 : part_dst(j, part) + j->r * j->bb;
}

static void job_run(void *arg, size_t part)
{
	const struct job *j = arg;
	struct isvd_model *m = j->m;
	const size_t n = m->n, r = j->r, bb = j->bb;
	size_t lo, hi;

	upd_pool_range(n, j->parts, part, &lo, &hi);
	const int h = (int)(hi - lo);
	double *Y = m->Y + lo;
	const double *V = m->V + lo;

	switch (j->op) {
	case OP_PROJECT:
		if (h > 0)
			cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)bb, h, 1.0,
			            V, (int)n, Y, (int)n, 0.0, part_dst(j, part), (int)r);
		else
			memset(part_dst(j, part), 0, r * bb * sizeof(double));
		break;
	case OP_SUBTRACT_PROJECT_GRAM:
		if (h == 0) {
			memset(part_dst(j, part), 0, r * bb * sizeof(double));
			memset(part_dst2(j, part), 0, bb * bb * sizeof(double));
			break;
		}
		for (size_t c0 = 0; c0 < (size_t)h; c0 += SWEEP_ROWS) {
			const int hc = (int)((size_t)h - c0 < SWEEP_ROWS ? (size_t)h - c0 : SWEEP_ROWS);
			const double beta = c0 == 0 ? 0.0 : 1.0;
			cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, hc, (int)bb, (int)r,
			            -1.0, V + c0, (int)n, j->C, (int)r, 1.0, Y + c0, (int)n);
			cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)bb, hc, 1.0,
			            V + c0, (int)n, Y + c0, (int)n, beta, part_dst(j, part), (int)r);
			cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)bb, hc, 1.0, Y + c0,
			            (int)n, beta, part_dst2(j, part), (int)bb);
		}
		break;
	case OP_SUBTRACT:
		if (h > 0 && r > 0)
			cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, h, (int)bb, (int)r,
			            -1.0, V, (int)n, j->C, (int)r, 1.0, Y, (int)n);
		break;
	case OP_GRAM:
		if (h > 0)
			cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)bb, h, 1.0, Y,
			            (int)n, 0.0, part_dst(j, part), (int)bb);
		else
			memset(part_dst(j, part), 0, bb * bb * sizeof(double));
		break;
	case OP_TRSM:
		if (h > 0)
			cblas_dtrsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans,
			            CblasNonUnit, h, (int)bb, 1.0, j->C, (int)bb, Y, (int)n);
		break;
	case OP_ROTATE: {
		const size_t t = r + bb;
		if (h == 0 || j->rn == 0)
			break;
		if (r > 0)
			cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, h, (int)j->rn, (int)r,
			            1.0, V, (int)n, j->W, (int)t, 0.0, m->Vnew + lo, (int)n);
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, h, (int)j->rn, (int)bb,
		            1.0, Y, (int)n, j->W + r, (int)t, r > 0 ? 1.0 : 0.0, m->Vnew + lo,
		            (int)n);
		break;
	}
	}
}

/* Runs one job over the pool and adds the partial results (len doubles,
 * for the ops that have them) into j->dst in part order. */
static void run_job(struct job *j, size_t len)
{
	j->parts = upd_pool_size(j->m->pool);   /* 1 without a pool */
	upd_pool_run(j->m->pool, job_run, j);
	const int sums2 = j->op == OP_SUBTRACT_PROJECT_GRAM;
	if (j->op == OP_PROJECT || j->op == OP_GRAM || sums2)
		for (size_t p = 1; p < j->parts; p++)
			cblas_daxpy((int)len, 1.0, part_dst(j, p), 1, j->dst, 1);
	if (sums2)
		for (size_t p = 1; p < j->parts; p++)
			cblas_daxpy((int)(j->bb * j->bb), 1.0, part_dst2(j, p), 1, j->dst2, 1);
}

static void gram(struct isvd_model *m, size_t bb, double *S)
{
	struct job j = { .m = m, .op = OP_GRAM, .bb = bb, .dst = S };
	run_job(&j, bb * bb);
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

/* Cholesky of the Gram matrix S (bb × bb upper, in place) with the lower
 * part cleared; 0 when it failed or its diagonal spread exceeds
 * CHOLQR_MAX_SPREAD (S is then garbage). */
static int chol_upper(double *S, size_t bb)
{
	double dmin, dmax;

	if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)bb, S, (lapack_int)bb) != 0)
		return 0;
	dmin = dmax = fabs(S[0]);
	for (size_t j = 1; j < bb; j++) {
		const double d = fabs(AT(S, bb, j, j));
		dmin = d < dmin ? d : dmin;
		dmax = d > dmax ? d : dmax;
	}
	if (!(dmin > 0) || dmax > CHOLQR_MAX_SPREAD * dmin)
		return 0;
	for (size_t j = 0; j < bb; j++)  /* potrf leaves the lower part as it was */
		for (size_t i = j + 1; i < bb; i++)
			AT(S, bb, i, j) = 0.0;
	return 1;
}

/* One CholeskyQR pass; returns 1 if it was applied, 0 if the caller must
 * fall back to Householder (Y untouched in that case). */
static int cholqr_pass(struct isvd_model *m, size_t bb, double *Rp)
{
	gram(m, bb, Rp);
	if (!chol_upper(Rp, bb))
		return 0;
	struct job j = { .m = m, .op = OP_TRSM, .bb = bb, .C = Rp };
	run_job(&j, 0);
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

/*
 * The residual of the block against V, the cheap way (see DESIGN).
 * Enters with the block in Y.  One Gram–Schmidt pass C = VᵀY, Y −= VC;
 * then, in one sweep over Y, E = VᵀY (what that pass left along V) and
 * S = YᵀY.  The second pass of "twice is enough" is Y'' = Y − VE; it is
 * not applied to Y: Y'' = Y − VE enters the rotation as V·(−E·…), a small
 * product (fold_core), and its Gram matrix is S − EᵀE.  Leaves C in
 * m->P, E in m->P2, and
 *   returns 1: R = chol(S − EᵀE) in m->R and C += E, so Q = (Y − VE)R⁻¹
 *              implicitly, orthonormal and orthogonal to V to rounding;
 *   returns 0: the cheap path is not safe here (the second pass would
 *              remove more than half of a column, Cholesky fails, or
 *              κ(R) > ONEPASS_MAX_COND); the caller runs residual_full.
 */
static int residual_implicit(struct isvd_model *m, size_t bb)
{
	const size_t r = m->r;
	double rc = 0;

	if (r > 0) {
		struct job j = { .m = m, .op = OP_PROJECT, .r = r, .bb = bb, .dst = m->P };
		run_job(&j, r * bb);
		j = (struct job){ .m = m, .op = OP_SUBTRACT_PROJECT_GRAM, .r = r, .bb = bb,
		                  .C = m->P, .dst = m->P2, .dst2 = m->R };
		run_job(&j, r * bb);
		for (size_t i = 0; i < bb; i++) {  /* the second pass keeps > ½ */
			const double e2 = cblas_ddot((int)r, m->P2 + i * r, 1, m->P2 + i * r, 1);
			if (!(2 * e2 <= AT(m->R, bb, i, i)))
				return 0;
		}
		cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)bb, (int)r, -1.0, m->P2,
		            (int)r, 1.0, m->R, (int)bb);
	} else {
		gram(m, bb, m->R);
	}
	if (!chol_upper(m->R, bb))
		return 0;
	if (LAPACKE_dtrcon_work(LAPACK_COL_MAJOR, '1', 'U', 'N', (lapack_int)bb, m->R,
	                        (lapack_int)bb, &rc, m->work, m->iwork) != 0)
		return 0;
	if (!(rc * ONEPASS_MAX_COND >= 1.0))
		return 0;
	if (r > 0)
		cblas_daxpy((int)(r * bb), 1.0, m->P2, 1, m->P, 1);
	return 1;
}

/* The full path after residual_implicit refused: the second Gram–Schmidt
 * pass applied (Y −= V E, C += E, E in m->P2 from residual_implicit), then
 * CholeskyQR2 / Householder.  Leaves Q in Y and R in m->R. */
static int residual_full(struct isvd_model *m, size_t bb)
{
	const size_t r = m->r;

	if (r > 0) {
		struct job j = { .m = m, .op = OP_SUBTRACT, .r = r, .bb = bb, .C = m->P2 };
		run_job(&j, 0);
		cblas_daxpy((int)(r * bb), 1.0, m->P2, 1, m->P, 1);
	}
	return residual_qr(m, bb);
}

/* Sorts the first cnt values of s into non-increasing order, moving the
 * columns of W (ld t) with them.  cnt ≤ m is small. */
static void sort_desc(double *s, double *W, size_t t, size_t cnt, double *tmp)
{
	for (size_t i = 0; i + 1 < cnt; i++) {
		size_t best = i;
		for (size_t j = i + 1; j < cnt; j++)
			if (s[j] > s[best])
				best = j;
		if (best == i)
			continue;
		const double x = s[i];
		s[i] = s[best];
		s[best] = x;
		memcpy(tmp, W + i * t, t * sizeof *tmp);
		memcpy(W + i * t, W + best * t, t * sizeof *tmp);
		memcpy(W + best * t, tmp, t * sizeof *tmp);
	}
}

/*
 * The core by the eigen route (see DESIGN).  Enters with C in m->P (r × bb)
 * and R in m->R (bb × bb upper).  On success returns ISVD_OK with the top
 * cnt = min(m, t) right singular vectors in m->W (t × cnt, ld t) and their σ
 * in m->svals, non-increasing.  Returns 1 (not an isvd_err) when the result
 * is outside the route's guard: the caller then runs gesdd.
 */
static int core_eig(struct isvd_model *m, size_t bb, double lam_half, size_t *cnt_out)
{
	const size_t r = m->r, t = r + bb, cnt = m->m < t ? m->m : t;
	double *F = m->Kcopy, *M = m->K, *Z = m->VT, *W = m->W;
	double *d = m->eig_d, *e = m->eig_e;
	lapack_int info;

	/* F = [C; R], t × bb. */
	for (size_t j = 0; j < bb; j++) {
		memcpy(F + j * t, m->P + j * r, r * sizeof *F);
		memcpy(F + j * t + r, m->R + j * bb, bb * sizeof *F);
	}
	/* M = diag(λ^b σ², 0) + F Fᵀ, lower triangle. */
	for (size_t j = 0; j < t; j++)
		memset(M + j * t + j, 0, (t - j) * sizeof *M);
	for (size_t i = 0; i < r; i++) {
		const double x = lam_half * m->sigma[i];
		AT(M, t, i, i) = x * x;
	}
	cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)t, (int)bb, 1.0, F, (int)t,
	            1.0, M, (int)t);
	info = LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'L', (lapack_int)t, M, (lapack_int)t, d, e,
	                           m->tau, m->work, (lapack_int)m->lwork);
	if (info != 0)
		return info < 0 ? ISVD_ERR_INVALID : 1;
	info = LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', (lapack_int)t, d, e, Z, (lapack_int)t,
	                           m->work, (lapack_int)m->lwork, m->iwork,
	                           (lapack_int)upd_truncated_liwork(m));
	if (info != 0)
		return info < 0 ? ISVD_ERR_INVALID : 1;   /* > 0: no convergence */
	/* The top cnt eigenvectors (dstedc sorts ascending), largest first. */
	for (size_t j = 0; j < cnt; j++)
		memcpy(W + j * t, Z + (t - 1 - j) * t, t * sizeof *W);
	info = LAPACKE_dormtr_work(LAPACK_COL_MAJOR, 'L', 'L', 'N', (lapack_int)t,
	                           (lapack_int)cnt, M, (lapack_int)t, m->tau, W, (lapack_int)t,
	                           m->work, (lapack_int)m->lwork);
	if (info != 0)
		return ISVD_ERR_INVALID;
	/* σ_j = ‖K w_j‖ = ‖[λ^{b/2}σ ∘ w_j[0:r]; Fᵀ w_j]‖, G = Fᵀ W. */
	double *G = m->G;
	cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)bb, (int)cnt, (int)t, 1.0, F,
	            (int)t, W, (int)t, 0.0, G, (int)bb);
	for (size_t j = 0; j < cnt; j++) {
		double acc = 0;
		for (size_t i = 0; i < r; i++) {
			const double x = lam_half * m->sigma[i] * AT(W, t, i, j);
			acc += x * x;
		}
		for (size_t i = 0; i < bb; i++)
			acc += AT(G, bb, i, j) * AT(G, bb, i, j);
		m->svals[j] = sqrt(acc);
	}
	sort_desc(m->svals, W, t, cnt, Z);
	/* The guard: every returned value within EIG_MAX_COND of σ₁. */
	if (!(m->svals[0] > 0) || !isfinite(m->svals[0]) ||
	    m->svals[0] > m->eig_max_cond * m->svals[cnt - 1])
		return 1;
	*cnt_out = cnt;
	return ISVD_OK;
}

/* The core by gesdd on K = [λ^{b/2}Σ 0; Cᵀ Rᵀ] (t × t): σ in m->svals and
 * the top cnt = min(m, t) right singular vectors in m->W (t × cnt). */
static int core_svd(struct isvd_model *m, size_t bb, double lam_half, size_t *cnt_out)
{
	const size_t r = m->r, t = r + bb, cnt = m->m < t ? m->m : t;
	int err;

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
	for (size_t j = 0; j < cnt; j++)      /* column j of W = row j of VT */
		for (size_t i = 0; i < t; i++)
			AT(m->W, t, i, j) = AT(m->VT, t, j, i);
	*cnt_out = cnt;
	return ISVD_OK;
}

/* Whether the eigen route is worth trying: the previous block's spectrum
 * was within its guard (the first blocks, with r < m, always try). */
static int eig_predicted(const struct isvd_model *m)
{
	return m->r < m->m || m->sigma[0] <= m->eig_max_cond * m->sigma[m->r - 1];
}

/* Core path (r + bb < n).  Leaves the new basis in Vnew and σ in svals;
 * *r_new the kept count. */
static int fold_core(struct isvd_model *m, size_t bb, double lam_half, size_t *r_new)
{
	const size_t r = m->r, t = r + bb;
	size_t cnt = 0;
	int err, implicit_q;

	implicit_q = residual_implicit(m, bb);
	if (!implicit_q && (err = residual_full(m, bb)))
		return err;
	m->stat_implicit += implicit_q;

	err = 1;
	if (eig_predicted(m))
		err = core_eig(m, bb, lam_half, &cnt);
	if (err == 1) {
		err = core_svd(m, bb, lam_half, &cnt);
	} else if (err == ISVD_OK) {
		m->stat_eig++;
	}
	if (err)
		return err;
	const size_t rn = upd_keep_count(m, m->svals, cnt);

	/* When Q = (Y − VE)R⁻¹ is implicit: V' = [V Q] W
	 * = V (W[0:r] − E R⁻¹W[r:t]) + Y (R⁻¹W[r:t]). */
	if (rn > 0 && implicit_q) {
		cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit,
		            (int)bb, (int)rn, 1.0, m->R, (int)bb, m->W + r, (int)t);
		if (r > 0)
			cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)rn,
			            (int)bb, -1.0, m->P2, (int)r, m->W + r, (int)t, 1.0, m->W,
			            (int)t);
	}
	struct job j = { .m = m, .op = OP_ROTATE, .r = r, .bb = bb, .rn = rn, .W = m->W };
	run_job(&j, 0);
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

	if (bb == 0) {
		/* Only a centred first row: nothing but the mean and totals. */
		assert(m->r == 0);
		err = ISVD_OK;
	} else if (m->r + bb < m->n) {
		err = fold_core(m, bb, lam_half, &rn);
	} else {
		err = fold_direct(m, bb, lam_half, &rn);
	}
	if (err)
		return err;
	for (size_t i = 0; i < rn; i++)
		if (!isfinite(m->svals[i]))
			return ISVD_ERR_NONFINITE;

	/* Commit.  The invariants of internal.h: r ≤ m, σ finite, positive and
	 * non-increasing. */
	assert(rn <= m->m);
	for (size_t i = 1; i < rn; i++)
		assert(m->svals[i] <= m->svals[i - 1] && m->svals[i] > 0);
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
