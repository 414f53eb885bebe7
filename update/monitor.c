/*
 * monitor.c — what the engine tells about a stream beyond its factors:
 * per-row anomaly statistics (Q/SPE and Hotelling's T² over the top k
 * components), the largest principal angle between two subspaces (drift),
 * and the stability of each reported component (the spectral gap).  Pure
 * numerics like the rest of update/: the control limits, which need
 * distribution quantiles, are the daemon's (daemon/limits.c, GSL).
 *
 * DEFINITIONS (k = the reported rank, V_k, σ_i, μ, W = the total weight)
 *   c    = V_kᵀ(x − μ), the row's scores;
 *   SPE  = ‖(x − μ) − V_k c‖², the squared prediction error (Q statistic);
 *   T²   = Σ_{i≤k} c_i² / v_i with v_i = σ_i²/W, the variance of the rows
 *          along component i (the weighted population variance);
 *   for a row with gaps (NaN) the row is first completed as queries
 *   complete it (isvd_model_impute's estimator) and SPE covers its
 *   observed values only.
 *   Principal angles between the row spaces of two k × n matrices with
 *   orthonormal rows A and B: sin θ_max = ‖B − (BAᵀ)A‖₂, computed so (not
 *   from cos θ = σ_min(BAᵀ)) to keep small angles accurate.
 *   Stability of component i: g_i = min over its neighbours j of
 *   |σ_i² − σ_j²| / σ_1², against the noise in σ_i² estimated as
 *   s_i = σ_i²·√(2/W) (the standard error of a covariance eigenvalue from W
 *   rows, Anderson 1963) plus, in truncated mode, the energy the model has
 *   not kept (what truncation may have moved between components);
 *   stable when g_i·σ_1² > ISVD_STABILITY_FACTOR · max(s_i, s_j) for both
 *   neighbours.  A component whose σ is that close to a neighbour's is not
 *   determined on its own: only the span of the pair is (its vector turns
 *   freely within it from one block to the next).
 *
 * DESIGN
 *   Scores at ingest (isvd_model_update_scored) are taken against the model
 *   before each block, from one dgemm per block (SPE as ‖x − μ‖² − ‖c‖²
 *   while that does not cancel, else the residual); the workspace comes from
 *   isvd_model_set_scoring(), so the fold allocates nothing; the block's
 *   rows are split over the engine's pool.  Exact mode needs the top k of R
 *   once per block and has no V between reads: it refines the previous
 *   block's basis (refine(): subspace iteration and Rayleigh–Ritz, checked
 *   by residuals), else takes the eigenpairs of RᵀR (as gap imputation
 *   does, missing.c) — not an SVD of R, which costs three times as much.
 *   A spectrum without a gap past the basis (σ_{k+extra+1} close to σ_k)
 *   does not converge; after a failure the eigenpairs are taken directly
 *   for 1, 2, 4 … up to REFINE_BACKOFF_MAX blocks before refining again.
 *   The carried basis is transient state: scores are outputs, so replay
 *   (which does not score) does not depend on it.  The basis a block is
 *   scored against is found once (score_basis(), cached until the fold)
 *   and shared with the tail moments of its model (tail_of(); the daemon
 *   takes the block's control limits from them, isvd_model_update_monitored):
 *   in exact mode the moments of the whole spectrum past k come from R
 *   deflated by that basis (tail_exact(), ~3n³ flops), where taking them
 *   from an SVD of R per block cost more than the scores themselves.
 *   A model of one thread scores on a thread of its own while the caller
 *   folds (upd_score_fold(), whose comment has the argument): the basis,
 *   the scores and the tail cost the fold's thread a copy of R (exact) or
 *   of V (truncated).
 *
 * INVARIANTS
 *   sq_ok ⇒ sq holds sm orthonormal columns (n × sm); score_x, score_c
 *   exist (n·B, kmax·B) whenever isvd_model_set_scoring() succeeded, and
 *   in exact mode sq…swork and stail too; sbasis_ok ⇒ sbV/sbsigma/sbr are
 *   the top of the model as it stands (cleared by every fold, model.c);
 *   spool ⇒ a pool of one part (m->pool), sRt (n², exact) or sV and ssigma
 *   (n·m and m, truncated) and, when centring, smean (n) allocated;
 *   srefine_wait ≤ srefine_backoff ≤ REFINE_BACKOFF_MAX.
 */
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"
#include "par.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* SPE is taken as ‖x − μ‖² − ‖c‖² only while it is at least this share of
 * ‖x − μ‖² (its relative rounding error then stays near 1e-16/SPE_CANCEL,
 * plus the basis's orthogonality error over the same share); rows the
 * model explains more closely get the residual computed. */
#define SPE_CANCEL 1e-6

/* Rows per chunk of the query-time scores. */
#define SCORE_CHUNK 256

/* Variance of component i, or 0 when it has none. */
/* T² of one row from its k scores c against singular values sigma and
 * total weight: Σ c_i²/v_i, v_i = σ_i²/W; components without variance add
 * nothing. */
static double t2_of(const double *sigma, double weight, const double *c, size_t k)
{
	double t2 = 0;

	for (size_t i = 0; i < k && weight > 0; i++)
		if (sigma[i] > 0)
			t2 += c[i] * c[i] * weight / (sigma[i] * sigma[i]);
	return t2;
}

int isvd_model_scores(const struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                      double *spe, double *t2)
{
	double *coords = NULL, *res = NULL;
	size_t k;
	int err;

	if (!m || (nrows && (!spe || !t2)))
		return ISVD_ERR_INVALID;
	if (m->rows_seen == 0)
		return ISVD_ERR_NOT_READY;
	k = isvd_model_rank(m);   /* refreshes exact mode's SVD */
	const size_t chunk = nrows < SCORE_CHUNK ? nrows : SCORE_CHUNK;
	coords = malloc((k ? k : 1) * (chunk ? chunk : 1) * sizeof *coords);
	res = malloc((chunk ? chunk : 1) * sizeof *res);
	if (!coords || !res) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	err = ISVD_OK;
	for (size_t i0 = 0; i0 < nrows && !err; i0 += chunk) {
		const size_t c = nrows - i0 < chunk ? nrows - i0 : chunk;
		err = isvd_model_project(m, rows + i0 * ld, c, ld, ISVD_SPACE_SCORES, coords, res);
		for (size_t i = 0; i < c && !err; i++) {
			spe[i0 + i] = res[i] * res[i];
			t2[i0 + i] = t2_of(m->sigma, m->weight, coords + i * k, k);
		}
	}
out:
	free(coords);
	free(res);
	return err;
}

void upd_score_fini(struct isvd_model *m)
{
	free(m->score_x);
	free(m->score_c);
	m->score_x = m->score_c = NULL;
	upd_imp_fini(&m->score_eig);
	free(m->sq);
	free(m->sy);
	free(m->sb);
	free(m->sw);
	free(m->stau);
	free(m->swork);
	free(m->stail);
	m->sq = m->sy = m->sb = m->sw = m->stau = m->swork = m->stail = NULL;
	m->sq_ok = 0;
	m->sbasis_ok = 0;
	m->srefine_wait = m->srefine_backoff = 0;
	upd_score_thread(m);   /* score_x is NULL now: it stops the thread */
}

/* Columns of R_⊥·G formed at a time by tail_exact(). */
#define TAIL_PANEL 64

/* Doubles of tail_exact()'s workspace for dimension n. */
static size_t tail_len(size_t n)
{
	return 2 * n * n + n * TAIL_PANEL;
}

/* Exact mode's subspace-iteration workspace (refine()). */
static int refine_init(struct isvd_model *m)
{
	const size_t n = m->n, sm = m->m < n ? m->m : n;
	double q1 = 0, q2 = 0, q3 = 0;
	const lapack_int ln = (lapack_int)n, ls = (lapack_int)sm;

	if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, ln, ls, NULL, ln, NULL, &q1, -1) ||
	    LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, ln, ls, ls, NULL, ln, NULL, &q2, -1) ||
	    LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', ls, NULL, ls, NULL, &q3, -1))
		return ISVD_ERR_NOMEM;
	double lw = q1 > q2 ? q1 : q2;
	m->slwork = (size_t)(lw > q3 ? lw : q3) + 1;
	m->sm = sm;
	m->sq = malloc(n * sm * sizeof *m->sq);
	m->sy = malloc(n * sm * sizeof *m->sy);
	m->sb = malloc(sm * sm * sizeof *m->sb);
	m->sw = malloc(sm * sizeof *m->sw);
	m->stau = malloc(sm * sizeof *m->stau);
	m->swork = malloc(m->slwork * sizeof *m->swork);
	m->stail = malloc(tail_len(n) * sizeof *m->stail);
	return m->sq && m->sy && m->sb && m->sw && m->stau && m->swork && m->stail ? ISVD_OK
	                                                                          : ISVD_ERR_NOMEM;
}

/* Relative residual below which a Ritz pair of the refined basis is taken:
 * ‖RᵀR v − λ v‖ ≤ REFINE_TOL · λ₁. */
#define REFINE_TOL 1e-11
#define REFINE_STEPS 3
/* Most blocks scored from the eigenpairs before refine() is tried again,
 * after failures in a row (the wait doubles from 1). */
#define REFINE_BACKOFF_MAX 64

/* How long the scoring thread spins for its next block before it sleeps
 * (par.c): a block comes at most every few hundred microseconds, and a
 * spinning worker would take the core the daemon's loop and I/O run on. */
#define SCORE_SPIN_NS 20000

/*
 * Exact mode's top k for scoring, without an eigensolver on n × n: the
 * basis of the block before (sq, k + extra columns) is refined by
 * subspace iteration on RᵀR — Z = Rᵀ(R Q), re-orthonormalised — and a
 * Rayleigh–Ritz step (the eigenpairs of (RQ)ᵀ(RQ), sm × sm).  One block
 * moves the subspace little, and the top k converge by (σ_{sm+1}/σ_k)² a
 * step, so a step or two suffice; each Ritz pair of the top k must have a
 * residual under REFINE_TOL·λ₁, else after REFINE_STEPS the caller takes
 * the eigenpairs of RᵀR (upd_eig_basis).  Scores are outputs, not state:
 * that this basis depends on the blocks before does not touch replay.  On
 * success V (n × k in sq, the top k first), sigma (in sw, descending) and
 * *kk are set; 0, or -1 to fall back.
 */
static int refine(struct isvd_model *m, size_t k, const double **V, const double **sigma,
                  size_t *kk)
{
	const size_t n = m->n, sm = m->sm;
	const lapack_int ln = (lapack_int)n, ls = (lapack_int)sm;

	if (!m->sq_ok || k > sm)
		return -1;
	m->sq_ok = 0;   /* until a step succeeds: sq is rewritten on the way */
	for (int step = 0; step < REFINE_STEPS; step++) {
		/* Q ← orth(RᵀR Q) */
		memcpy(m->sy, m->sq, n * sm * sizeof *m->sy);
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)n,
		            (int)sm, 1.0, m->Rt, (int)n, m->sy, (int)n);
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, (int)n,
		            (int)sm, 1.0, m->Rt, (int)n, m->sy, (int)n);
		if (LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, ln, ls, m->sy, ln, m->stau, m->swork,
		                        (lapack_int)m->slwork) ||
		    LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, ln, ls, ls, m->sy, ln, m->stau, m->swork,
		                        (lapack_int)m->slwork))
			return -1;
		/* Rayleigh–Ritz: B = (RQ)ᵀ(RQ), its eigenpairs, V = Q W */
		memcpy(m->sq, m->sy, n * sm * sizeof *m->sq);
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)n,
		            (int)sm, 1.0, m->Rt, (int)n, m->sy, (int)n);
		cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)sm, (int)n, 1.0, m->sy, (int)n,
		            0.0, m->sb, (int)sm);
		if (LAPACKE_dsyev_work(LAPACK_COL_MAJOR, 'V', 'U', ls, m->sb, ls, m->sw, m->swork,
		                       (lapack_int)m->slwork))
			return -1;
		/* descending: column j of W is eigenvector sm − 1 − j */
		for (size_t j = 0; j < sm / 2; j++) {
			const size_t o = sm - 1 - j;
			const double t = m->sw[j];
			m->sw[j] = m->sw[o];
			m->sw[o] = t;
			for (size_t i = 0; i < sm; i++) {
				const double u = AT(m->sb, sm, i, j);
				AT(m->sb, sm, i, j) = AT(m->sb, sm, i, o);
				AT(m->sb, sm, i, o) = u;
			}
		}
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)sm, (int)sm, 1.0,
		            m->sq, (int)n, m->sb, (int)sm, 0.0, m->sy, (int)n);
		memcpy(m->sq, m->sy, n * sm * sizeof *m->sq);
		/* residuals of the top k: RᵀR v − λ v */
		const double l1 = m->sw[0];
		if (!(l1 > 0))
			return -1;
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)n,
		            (int)k, 1.0, m->Rt, (int)n, m->sy, (int)n);
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, (int)n,
		            (int)k, 1.0, m->Rt, (int)n, m->sy, (int)n);
		int ok = 1;
		for (size_t j = 0; j < k && ok; j++) {
			cblas_daxpy((int)n, -m->sw[j], m->sq + j * n, 1, m->sy + j * n, 1);
			ok = cblas_dnrm2((int)n, m->sy + j * n, 1) <= REFINE_TOL * l1 && m->sw[j] > 0;
		}
		m->sq_ok = 1;   /* an orthonormal basis again, converged or not */
		if (ok) {
			for (size_t j = 0; j < sm; j++)
				m->sw[j] = m->sw[j] > 0 ? sqrt(m->sw[j]) : 0;   /* σ from λ */
			*V = m->sq;   /* and the next block starts from it */
			*sigma = m->sw;
			*kk = k;
			return 0;
		}
	}
	return -1;
}

int isvd_model_set_scoring(struct isvd_model *m, int on)
{
	if (!m || m->frozen)
		return ISVD_ERR_INVALID;
	if (!on) {
		upd_score_fini(m);
		return ISVD_OK;
	}
	if (m->score_x)
		return ISVD_OK;
	m->score_x = malloc(m->n * m->B * sizeof *m->score_x);
	m->score_c = malloc((m->kmax ? m->kmax : 1) * m->B * sizeof *m->score_c);
	if (!m->score_x || !m->score_c ||
	    (m->mode == ISVD_MODE_EXACT &&
	     (upd_imp_init(&m->score_eig, m->n, m->m, 0, 1, 0) || refine_init(m)))) {
		upd_score_fini(m);
		return ISVD_ERR_NOMEM;
	}
	upd_score_thread(m);
	return ISVD_OK;
}

/* Stops the scoring thread and frees its copies. */
static void score_thread_stop(struct isvd_model *m)
{
	upd_pool_destroy(m->spool);
	free(m->sRt);
	free(m->sV);
	free(m->ssigma);
	free(m->smean);
	m->sRt = m->sV = m->ssigma = m->smean = NULL;
	m->spool = NULL;
}

void upd_score_thread(struct isvd_model *m)
{
	score_thread_stop(m);
	/* the scoring thread: a model of one thread only (with more, the
	 * fold's parts have the cores); without it, blocks are scored serially */
	if (m->score_x && upd_pool_size(m->pool) == 1) {
		const int exact = m->mode == ISVD_MODE_EXACT;
		if (exact)
			m->sRt = malloc(m->n * m->n * sizeof *m->sRt);
		else {
			m->sV = malloc(m->n * (m->m ? m->m : 1) * sizeof *m->sV);
			m->ssigma = malloc((m->m ? m->m : 1) * sizeof *m->ssigma);
		}
		if (m->center)
			m->smean = malloc(m->n * sizeof *m->smean);
		if ((exact ? !m->sRt : !m->sV || !m->ssigma) || (m->center && !m->smean) ||
		    upd_pool_create(2, SCORE_SPIN_NS, &m->spool) != 0)
			score_thread_stop(m);   /* spool is NULL on a failed create */
	}
}

/* One block's scoring, split by rows over the engine's pool (each part
 * scores whole rows, so results do not depend on the split). */
struct score_job {
	struct isvd_model *m;
	const double *x;
	size_t xld;
	const double *orig;
	size_t old, b;
	const double *V, *sigma;
	size_t k;
	double *spe, *t2;
};

static void score_rows(void *arg, size_t part)
{
	const struct score_job *j = arg;
	const struct isvd_model *m = j->m;
	const size_t n = m->n, k = j->k;
	const double *V = j->V, *sigma = j->sigma;
	size_t lo, hi;

	upd_pool_range(j->b, upd_pool_size(m->pool), part, &lo, &hi);
	if (hi <= lo)
		return;
	double *xc = m->score_x + lo * n, *c = m->score_c + lo * (k ? k : 1);
	/* x − μ: the rows themselves without centring (read in place: at
	 * n = 1000 the copy cost a quarter of the scores), else a copy */
	const double *xs = j->x + lo * j->xld;
	size_t xsld = j->xld;
	if (m->center) {
		for (size_t i = lo; i < hi; i++)
			for (size_t q = 0; q < n; q++)
				xc[(i - lo) * n + q] = j->x[i * j->xld + q] - m->mean[q];
		xs = xc;
		xsld = n;
	}
	if (k > 0)
		cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)k, (int)(hi - lo), (int)n, 1.0,
		            V, (int)n, xs, (int)xsld, 0.0, c, (int)k);
	for (size_t i = lo; i < hi; i++) {
		const double *row = xs + (i - lo) * xsld;
		double *res = xc + (i - lo) * n;
		const double *o = j->orig + i * j->old, *ci = c + (i - lo) * k;
		double cc = 0;
		for (size_t a = 0; a < k; a++)
			cc += ci[a] * ci[a];
		j->t2[i] = t2_of(sigma, m->weight, ci, k);
		/* SPE = ‖x − μ‖² − ‖c‖² (Vₖ has orthonormal columns), unless that
		 * cancels: then, and for rows with gaps (SPE over the observed
		 * values), the residual itself, x − μ − Vₖc */
		double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
		size_t q = 0;
		if (j->orig == j->x) {   /* a block without gaps */
			for (; q + 4 <= n; q += 4) {
				a0 += row[q] * row[q];
				a1 += row[q + 1] * row[q + 1];
				a2 += row[q + 2] * row[q + 2];
				a3 += row[q + 3] * row[q + 3];
			}
			for (; q < n; q++)
				a0 += row[q] * row[q];
			const double xx = (a0 + a1) + (a2 + a3);
			if (isfinite(xx) && xx - cc > SPE_CANCEL * xx) {
				j->spe[i] = xx - cc;
				continue;
			}
		}
		if (row != res)
			memcpy(res, row, n * sizeof *res);
		if (k > 0)
			cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)k, -1.0, V, (int)n, ci, 1, 1.0,
			            res, 1);
		double acc = 0, amax = 0;
		for (q = 0; q < n; q++)
			if (!isnan(o[q]) && fabs(res[q]) > amax)
				amax = fabs(res[q]);
		for (q = 0; amax > 0 && q < n; q++)   /* scaled: no square overflows */
			if (!isnan(o[q])) {
				const double y = res[q] / amax;
				acc += y * y;
			}
		j->spe[i] = amax * amax * acc;
	}
}

/*
 * The basis the model as it stands is scored against (V: n × *r columns,
 * sigma descending), computed once between folds (sbasis_ok): exact mode's
 * refined from the block before (refine()), or from the eigenpairs of RᵀR
 * when R has moved since its SVD (a third of the SVD's cost), else the
 * model's own (upd_refresh).  Only on a model with scoring on.
 */
static int score_basis(struct isvd_model *m, int may_refresh, const double **V,
                       const double **sigma, size_t *r)
{
	int err, refined = 0;
	size_t k;

	if (m->sbasis_ok) {
		*V = m->sbV;
		*sigma = m->sbsigma;
		*r = m->sbr;
		return ISVD_OK;
	}
	if (m->mode == ISVD_MODE_EXACT && m->stale && m->sq) {
		/* after a failure, the eigenpairs for a while: a spectrum
		 * without a gap past the basis does not converge, and three
		 * wasted steps a block cost more than the eigensolver */
		if (m->srefine_wait > 0) {
			m->srefine_wait--;
		} else if (refine(m, m->kmax < m->sm ? m->kmax : m->sm, V, sigma, &k) == 0) {
			refined = 1;
			m->srefine_backoff = 0;
		} else {
			m->srefine_backoff = m->srefine_backoff == 0 ? 1
			                     : m->srefine_backoff * 2 > REFINE_BACKOFF_MAX
			                         ? REFINE_BACKOFF_MAX
			                         : m->srefine_backoff * 2;
			m->srefine_wait = m->srefine_backoff;
		}
	}
	if (refined) {
		*r = k;
	} else if (m->mode == ISVD_MODE_EXACT && m->stale && m->score_eig.ea &&
	           upd_eig_basis(m, &m->score_eig) == ISVD_OK) {
		*V = m->score_eig.V;
		*sigma = m->score_eig.sigma;
		*r = m->score_eig.r;
		if (m->sq && *r >= m->sm) {   /* the next block refines from here */
			memcpy(m->sq, *V, m->n * m->sm * sizeof *m->sq);
			m->sq_ok = 1;
		}
	} else {
		/* the model's own SVD: current (not stale), or computed now —
		 * not on the scoring thread, where the fold uses the workspace
		 * an SVD of R would (may_refresh 0) */
		if (m->stale && !may_refresh)
			return ISVD_ERR_LAPACK;
		if ((err = upd_refresh(m)))
			return err;
		*V = m->V;
		*sigma = m->sigma;
		*r = m->r;
		if (m->sq && *r >= m->sm) {
			memcpy(m->sq, *V, m->n * m->sm * sizeof *m->sq);
			m->sq_ok = 1;
		}
	}
	m->sbV = *V;
	m->sbsigma = *sigma;
	m->sbr = *r;
	m->sbasis_ok = 1;
	return ISVD_OK;
}

/*
 * θ_p = Σ_{j ≥ k} s_j^p, p = 1..3, over the squared singular values past
 * the top k of the whole of R (exact mode): R_⊥ = R − (R V_k)V_kᵀ, G =
 * R_⊥ᵀR_⊥ (whose eigenvalues are those s_j and zeros), θ₁ = tr G,
 * θ₂ = ‖G‖_F², θ₃ = tr G³ = ‖R_⊥G‖_F² (R_⊥G formed TAIL_PANEL columns at
 * a time).  About 3n³ flops and no eigensolver; an error of δ in V_k moves
 * θ by O(δ²σ₁²).  w: tail_len(n) doubles.
 */
static void tail_exact(const struct isvd_model *m, const double *V, size_t k, double *w,
                       double theta[3])
{
	const size_t n = m->n;
	double *Rp = w, *G = w + n * n, *H = w + 2 * n * n;

	memcpy(Rp, m->Rt, n * n * sizeof *Rp);   /* zeros below its diagonal (internal.h) */
	for (size_t j0 = 0; k > 0 && j0 < k; j0 += TAIL_PANEL) {   /* P = R V_k in H */
		const size_t c = k - j0 < TAIL_PANEL ? k - j0 : TAIL_PANEL;
		memcpy(H, V + j0 * n, n * c * sizeof *H);
		cblas_dtrmm(CblasColMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, (int)n,
		            (int)c, 1.0, m->Rt, (int)n, H, (int)n);
		/* R_⊥ −= P V_kᵀ for these columns of V_k */
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)c, -1.0, H,
		            (int)n, V + j0 * n, (int)n, 1.0, Rp, (int)n);
	}
	cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)n, (int)n, 1.0, Rp, (int)n, 0.0, G,
	            (int)n);
	double t1 = 0, t2 = 0, t3 = 0;
	for (size_t j = 0; j < n; j++) {
		t1 += AT(G, n, j, j);
		t2 += AT(G, n, j, j) * AT(G, n, j, j);
		for (size_t i = 0; i < j; i++) {
			t2 += 2 * AT(G, n, i, j) * AT(G, n, i, j);
			AT(G, n, j, i) = AT(G, n, i, j);   /* G whole, for the product */
		}
	}
	for (size_t j0 = 0; j0 < n; j0 += TAIL_PANEL) {
		const size_t c = n - j0 < TAIL_PANEL ? n - j0 : TAIL_PANEL;
		cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)c, (int)n, 1.0, Rp,
		            (int)n, G + j0 * n, (int)n, 0.0, H, (int)n);
		for (size_t q = 0; q < n * c; q++)
			t3 += H[q] * H[q];
	}
	theta[0] = t1;
	theta[1] = t2;
	theta[2] = t3;
}

/* Fills *t with the tail moments of m against the basis V, sigma (r
 * columns) that its scores use (isvd_model_tail() has the definitions). */
static int tail_of(const struct isvd_model *m, const double *V, const double *sigma, size_t r,
                   struct isvd_tail *t)
{
	t->k = r < m->kmax ? r : m->kmax;
	const double W = m->weight;
	double *theta = t->theta;
	theta[0] = theta[1] = theta[2] = 0;
	if (m->mode == ISVD_MODE_EXACT && m->Rt) {
		double *w = m->stail ? m->stail : malloc(tail_len(m->n) * sizeof *w);
		if (!w)
			return ISVD_ERR_NOMEM;
		tail_exact(m, V, t->k, w, theta);
		if (w != m->stail)
			free(w);
	} else {   /* the tracked ones past k, the energy not tracked spread evenly */
		double kept = 0;
		for (size_t j = 0; j < r; j++)
			kept += sigma[j] * sigma[j];
		for (size_t j = t->k; j < r; j++) {
			const double l = sigma[j] * sigma[j];
			theta[0] += l;
			theta[1] += l * l;
			theta[2] += l * l * l;
		}
		if (m->n > r) {
			const double d = (double)(m->n - r), l = fmax(m->energy - kept, 0.0) / d;
			theta[0] += d * l;
			theta[1] += d * l * l;
			theta[2] += d * l * l * l;
		}
	}
	if (W > 0) {   /* of the variances s_j/W */
		theta[0] /= W;
		theta[1] /= W * W;
		theta[2] /= W * W * W;
	}
	t->weight = W;
	t->energy = m->energy;
	return ISVD_OK;
}

/*
 * Scores of b rows (the block about to be folded: x, ld apart, completed
 * rows with NaN-free values) against m as it stands, and its tail when
 * tail is not NULL; gaps (NaN in orig, may be x itself) are left out of
 * SPE.  Uses m->score_x/score_c.  m is the model, or on the scoring
 * thread the view of it before the fold (upd_score_fold()).
 */
static int score_on(struct isvd_model *m, int may_refresh, const double *x, size_t xld,
                    const double *orig, size_t old, size_t b, double *spe, double *t2,
                    struct isvd_tail *tail)
{
	int err;

	if (m->rows_seen == 0 || !(m->weight > 0)) {
		for (size_t i = 0; i < b; i++)
			spe[i] = t2[i] = NAN;   /* nothing to score against yet */
		if (tail)
			*tail = (struct isvd_tail){ 0, { 0, 0, 0 }, m->weight, m->energy };
		return ISVD_OK;
	}
	const double *V, *sigma;
	size_t r;
	if ((err = score_basis(m, may_refresh, &V, &sigma, &r)))
		return err;
	const size_t k = r < m->kmax ? r : m->kmax;
	struct score_job j = { m, x, xld, orig, old, b, V, sigma, k, spe, t2 };
	upd_pool_run(m->pool, score_rows, &j);   /* the block's rows split over the pool */
	return tail ? tail_of(m, V, sigma, r, tail) : ISVD_OK;
}

/* One block on the scoring pool: part 0 (the caller) folds it into the
 * model, part 1 scores it against the view of the model before (see
 * upd_score_fold()). */
struct fold_job {
	struct isvd_model *m, *view;
	const double *x, *orig;
	size_t xld, old, b;
	double *spe, *t2;
	struct isvd_tail *tail;
	int fold_err, score_err;
};

static void fold_part(void *arg, size_t part)
{
	struct fold_job *j = arg;

	if (part == 0)
		j->fold_err = j->m->mode == ISVD_MODE_EXACT ? upd_exact_fold(j->m, j->x, j->b, j->xld)
		                                            : upd_truncated_fold(j->m, j->x, j->b, j->xld);
	else
		j->score_err = score_on(j->view, 0, j->x, j->xld, j->orig, j->old, j->b, j->spe,
		                        j->t2, j->tail);
}

/*
 * DESIGN of the scoring thread.  The scores of a block depend on the model
 * before it, and so does its fold: the two can run at once if the scorer
 * reads a model that the fold does not move.  Exact mode's fold moves R,
 * the mean and the scalars (weight, energy, rows_seen, r, stale) and
 * nothing else a scorer reads — V and sigma are only rewritten by a
 * refresh, which the scoring thread never runs (may_refresh 0);
 * truncated mode's moves V (rotated, swapped with Vnew, re-orthogonalised)
 * and sigma instead of R.  So the view is a copy of the model's struct
 * with R (exact: n² doubles) or V's r columns and sigma (truncated: n·r +
 * r), and the mean, pointing at copies taken here; a basis cached on the
 * model (sbasis_ok) is kept only in exact mode, where it lives in the
 * scorer's buffers.  The scorer's own carried state (the refined basis,
 * the backoff, the eigen workspace's fields) is copied back after the
 * join.  Each thread writes only its own buffers: the fold the model's
 * state and its workspaces (Y, Bt, Tq, P, K, work …), the scorer
 * score_x/c, sq…stail, score_eig's.  Both run the BLAS single-threaded
 * (isvd_model_create), and the fold's pool has one part (it runs inline
 * on either thread).
 */
int upd_score_fold(struct isvd_model *m, const double *x, size_t xld, const double *orig,
                   size_t old, size_t b, double *spe, double *t2, struct isvd_tail *tail)
{
	int err;

	if (!m->spool || m->rows_seen == 0 || !(m->weight > 0)) {   /* serial */
		if ((err = score_on(m, 1, x, xld, orig, old, b, spe, t2, tail)))
			return err;
		return m->mode == ISVD_MODE_EXACT ? upd_exact_fold(m, x, b, xld)
		                                  : upd_truncated_fold(m, x, b, xld);
	}
	const int exact = m->mode == ISVD_MODE_EXACT;
	/* upd_score_thread() keeps spool only beside a pool of one part */
	assert(upd_pool_size(m->pool) == 1 && (exact ? m->sRt != NULL : m->sV && m->ssigma) &&
	       (!m->center || m->smean));
	assert(m->srefine_wait <= m->srefine_backoff && m->srefine_backoff <= REFINE_BACKOFF_MAX);
	struct isvd_model view = *m;
	if (exact) {
		memcpy(m->sRt, m->Rt, m->n * m->n * sizeof *m->sRt);
		view.Rt = m->sRt;
	} else {   /* the kept r columns and values (the fold rotates V, swaps it) */
		memcpy(m->sV, m->V, m->n * m->r * sizeof *m->sV);
		memcpy(m->ssigma, m->sigma, m->r * sizeof *m->ssigma);
		view.V = m->sV;
		view.sigma = m->ssigma;
		view.sbasis_ok = 0;   /* it would point into the V the fold rotates */
	}
	if (m->center) {
		memcpy(m->smean, m->mean, m->n * sizeof *m->smean);
		view.mean = m->smean;
	}
	struct fold_job j = { m, &view, x, orig, xld, old, b, spe, t2, tail, 0, 0 };
	upd_pool_run(m->spool, fold_part, &j);
	/* the scorer's carried state back; sbasis_ok described the model
	 * before the fold and is cleared by the caller */
	m->sq_ok = view.sq_ok;
	m->srefine_wait = view.srefine_wait;
	m->srefine_backoff = view.srefine_backoff;
	m->score_eig = view.score_eig;
	if (j.score_err) {   /* the fold happened: the block goes unscored */
		for (size_t i = 0; i < b; i++)
			spe[i] = t2[i] = NAN;
		if (tail)
			*tail = (struct isvd_tail){ 0, { NAN, NAN, NAN }, view.weight, view.energy };
	}
	return j.fold_err;
}

int isvd_subspace_sin(const double *a, const double *b, size_t k, size_t n, double *sin_max)
{
	double *p = NULL, *d = NULL, *s = NULL, *work = NULL;
	double q = 0;
	int err = ISVD_OK;

	if (!a || !b || !sin_max || n == 0 || k == 0 || k > n)
		return ISVD_ERR_INVALID;
	p = malloc(k * k * sizeof *p);
	d = malloc(k * n * sizeof *d);
	s = malloc(k * sizeof *s);
	if (!p || !d || !s) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	/* rows of a and b are the vectors: as column-major n × k, A = aᵀ.
	 * P = Bᵀ A (k × k), D = B − A Pᵀ (n × k, column-major). */
	cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)k, (int)k, (int)n, 1.0, a,
	            (int)n, b, (int)n, 0.0, p, (int)k);
	memcpy(d, b, k * n * sizeof *d);
	cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)k, -1.0, a,
	            (int)n, p, (int)k, 1.0, d, (int)n);
	lapack_int info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'N', (lapack_int)n,
	                                      (lapack_int)k, d, (lapack_int)n, s, NULL, 1, NULL, 1,
	                                      &q, -1);
	if (info == 0) {
		work = malloc(((size_t)q + 1) * sizeof *work);
		if (!work) {
			err = ISVD_ERR_NOMEM;
			goto out;
		}
		info = LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, 'N', 'N', (lapack_int)n, (lapack_int)k,
		                           d, (lapack_int)n, s, NULL, 1, NULL, 1, work,
		                           (lapack_int)q + 1);
	}
	if (info != 0) {
		err = info < 0 ? ISVD_ERR_INVALID : ISVD_ERR_LAPACK;
		goto out;
	}
	*sin_max = s[0] > 1 ? 1 : s[0];
out:
	free(p);
	free(d);
	free(s);
	free(work);
	return err;
}

int isvd_model_stability(const struct isvd_model *m, double *gap, int *stable, size_t *count)
{
	int err;

	if (!m)
		return ISVD_ERR_INVALID;
	if ((err = upd_refresh(m)))
		return err;
	const size_t k = isvd_model_rank(m), r = m->r;
	if (count)
		*count = k;
	if (k == 0)
		return ISVD_OK;
	double kept = 0;
	for (size_t i = 0; i < r; i++)
		kept += m->sigma[i] * m->sigma[i];
	const double s1 = m->sigma[0] * m->sigma[0];
	const double lost = m->mode == ISVD_MODE_TRUNCATED ? fmax(m->energy - kept, 0.0) : 0.0;
	const double rel = m->weight > 0 ? sqrt(2.0 / m->weight) : INFINITY;
	/* below the last kept component: the untracked energy per dimension */
	const double floor2 = m->n > r ? fmax(m->energy - kept, 0.0) / (double)(m->n - r) : 0.0;
	for (size_t i = 0; i < k; i++) {
		const double li = m->sigma[i] * m->sigma[i];
		const double si = li * rel + lost;
		double g = INFINITY;
		int ok = 1;
		for (int side = -1; side <= 1; side += 2) {
			double lj, sj;
			if (side < 0 && i == 0)
				continue;
			if (side < 0) {
				lj = m->sigma[i - 1] * m->sigma[i - 1];
			} else if (i + 1 < r) {
				lj = m->sigma[i + 1] * m->sigma[i + 1];
			} else {
				lj = floor2;
			}
			sj = lj * rel + lost;
			const double d = fabs(li - lj);
			if (d / s1 < g)
				g = d / s1;
			if (!(d > ISVD_STABILITY_FACTOR * fmax(si, sj)))
				ok = 0;
		}
		if (gap)
			gap[i] = isfinite(g) ? g : 1.0;
		if (stable)
			stable[i] = ok;
	}
	return ISVD_OK;
}

int isvd_model_tail(const struct isvd_model *m, size_t *k, double theta[3], double *weight,
                    double *energy)
{
	const double *V, *sigma;
	struct isvd_tail t;
	size_t r;
	int err;

	if (!m || !k || !theta)
		return ISVD_ERR_INVALID;
	if (m->mode == ISVD_MODE_EXACT && m->stail) {
		/* the engine's own model with scoring on: the basis the block
		 * about to be folded is scored against, computed once for both */
		if ((err = score_basis((struct isvd_model *)m, 1, &V, &sigma, &r)))
			return err;
	} else {
		if ((err = upd_refresh(m)))
			return err;
		V = m->V;
		sigma = m->sigma;
		r = m->r;
	}
	if ((err = tail_of(m, V, sigma, r, &t)))
		return err;
	*k = t.k;
	memcpy(theta, t.theta, sizeof t.theta);
	if (weight)
		*weight = t.weight;
	if (energy)
		*energy = t.energy;
	return ISVD_OK;
}

int isvd_model_kept(const struct isvd_model *m, double *sigma, size_t *r, double *weight,
                    double *energy)
{
	int err;

	if (!m || !r)
		return ISVD_ERR_INVALID;
	if ((err = upd_refresh(m)))
		return err;
	*r = m->r;
	if (sigma)
		memcpy(sigma, m->sigma, m->r * sizeof *sigma);
	if (weight)
		*weight = m->weight;
	if (energy)
		*energy = m->energy;
	return ISVD_OK;
}
