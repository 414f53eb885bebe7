/*
 * missing.c — rows with gaps: the imputation of missing values (Brand 2002).
 *
 * With isvd_options.missing = ISVD_MISSING_IMPUTE, a NaN in a row is a gap
 * (±Inf stays an error).  Before a block is folded, every gap of its rows is
 * filled from the model as it stands before the block, and the completed
 * rows are folded as usual: the residual of a completed row is zero on its
 * gaps by construction, so the model learns nothing false about them
 * (Brand, "Incremental SVD of uncertain data with missing values", 2002).
 * The same estimator answers the gap-filling query (isvd_model_impute).
 *
 * THE ESTIMATOR (probabilistic PCA's posterior mean, Tipping & Bishop 1999)
 *   The model's r components are taken as a Gaussian: x = μ + V c + e with
 *   c_i ~ N(0, λ_i), λ_i = σ_i²/W (W the total weight: the variance of the
 *   rows along component i) and e ~ N(0, s² I), s² the energy the r
 *   components leave, per weight and per remaining dimension:
 *   s² = max(E − Σσ_i², 0)/(W·(n − r)), floored at 1e-12·λ_1 so the system
 *   below stays positive definite on exactly low-rank data.  For a row with
 *   observed set O and missing set M, d = x_O − μ_O:
 *       c = (V_OᵀV_O + s²·diag(1/λ_i))⁻¹ V_Oᵀ d,      x_M = μ_M + V_M c.
 *   The ridge term s²/λ_i shrinks the coordinates a few observed values
 *   cannot determine toward 0, so a row with few observations is pulled
 *   toward the mean rather than blown up.  V_OᵀV_O = I − V_MᵀV_M (V has
 *   orthonormal columns), so with few gaps the system costs O(|M|·r² + r³)
 *   plus one O(n·r) product V_Oᵀd; with fewer gaps than components the
 *   Woodbury identity turns the r×r system into an |M|×|M| one, and with
 *   more, conjugate gradients on G (never formed) usually converge in a few
 *   O(|M|·r) steps — the r×r factorisation remains the fallback.
 *   Warm-up: before the model has any component (r = 0), gaps take the
 *   running mean (0 before any row, or without centring).
 *   Exact mode uses the same estimator on its SVD (computed from R once per
 *   block that has gaps, O(n³): cheap at the small n exact mode is for).
 *   A fold takes one of two block routes (below): the precision route
 *   when Q fits (n ≤ max_block, and always in exact mode), else one dgemm
 *   for every row's V_Oᵀd; queries take the same estimator row by row.
 *
 * DESIGN
 * - A row needs at least one observed value (ISVD_ERR_GAPS otherwise, the
 *   whole call refused, as for non-finite input); the ridge makes one
 *   enough.  Which rows have gaps is checked once, before anything is
 *   applied.
 * - Blocks without gaps are folded straight from the caller's rows; a block
 *   with gaps is completed into m->Xb first.  Workspaces (Xb, the gathered
 *   V_M, the r×r system, Q or the block's coordinates and a row-major V)
 *   are allocated when imputation is turned on, so a fold allocates
 *   nothing.
 * - Imputation reads only the model's state before the block, so the same
 *   rows in the same blocks give bit-identical factors (replay).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "internal.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* Smallest noise variance, relative to the largest component variance. */
#define NOISE_FLOOR 1e-12

size_t isvd_row_observed(const double *x, size_t n)
{
	size_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += !isnan(x[j]);
	return c;
}

void upd_imp_fini(struct upd_imp *w)
{
	free(w->vm);
	free(w->g);
	free(w->c);
	free(w->d);
	free(w->idx);
	free(w->ridge);
	free(w->Q);
	free(w->h);
	free(w->cb);
	free(w->vr);
	free(w->ea);
	free(w->ez);
	free(w->ev);
	free(w->es);
	free(w->ed);
	free(w->ee);
	free(w->etau);
	free(w->ework);
	free(w->eiwork);
	memset(w, 0, sizeof *w);
}

/* Exact mode's eigen workspaces (prepare_eig), sized by workspace queries. */
static int eig_init(struct upd_imp *w, size_t n, size_t m)
{
	double q1 = 0, q2 = 0, q3 = 0;
	lapack_int iq = 0;
	const lapack_int ln = (lapack_int)n;

	if (LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'U', ln, NULL, ln, NULL, NULL, NULL, &q1, -1) ||
	    LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', ln, NULL, NULL, NULL, ln, &q2, -1, &iq, -1) ||
	    LAPACKE_dormtr_work(LAPACK_COL_MAJOR, 'L', 'U', 'N', ln, (lapack_int)(m ? m : 1), NULL,
	                        ln, NULL, NULL, ln, &q3, -1))
		return ISVD_ERR_NOMEM;
	double lw = q1 > q2 ? q1 : q2;
	lw = lw > q3 ? lw : q3;
	if ((double)n * n + 4.0 * n + 1 > lw)   /* dstedc's documented minimum */
		lw = (double)n * n + 4.0 * n + 1;
	w->elwork = (size_t)lw + 1;
	w->eliwork = (size_t)iq > 3 + 5 * n ? (size_t)iq : 3 + 5 * n;
	w->ea = malloc(n * n * sizeof *w->ea);
	w->ez = malloc(n * n * sizeof *w->ez);
	w->ev = malloc(n * (m ? m : 1) * sizeof *w->ev);
	w->es = malloc((m ? m : 1) * sizeof *w->es);
	w->ed = malloc(n * sizeof *w->ed);
	w->ee = malloc(n * sizeof *w->ee);
	w->etau = malloc(n * sizeof *w->etau);
	w->ework = malloc(w->elwork * sizeof *w->ework);
	w->eiwork = malloc(w->eliwork * sizeof *w->eiwork);
	if (!w->ea || !w->ez || !w->ev || !w->es || !w->ed || !w->ee || !w->etau || !w->ework ||
	    !w->eiwork)
		return ISVD_ERR_NOMEM;
	return ISVD_OK;
}

int upd_imp_init(struct upd_imp *w, size_t n, size_t m, int with_q, int exact, size_t cb_cols)
{
	memset(w, 0, sizeof *w);
	w->vm = malloc((n ? n : 1) * (m ? m : 1) * sizeof *w->vm);
	/* r², nm·r + nm² with nm < r (Woodbury), or 6r (CG) */
	w->g = malloc((m ? 2 * m * m + 6 * m : 1) * sizeof *w->g);
	w->c = malloc((m ? m : 1) * sizeof *w->c);
	w->d = malloc(2 * n * sizeof *w->d);
	w->idx = malloc(n * sizeof *w->idx);
	w->ridge = malloc((m ? m : 1) * sizeof *w->ridge);
	w->exact = exact;
	if (cb_cols) {
		w->cb = malloc((m ? m : 1) * cb_cols * sizeof *w->cb);
		w->vr = malloc(n * (m ? m : 1) * sizeof *w->vr);
		if (!w->cb || !w->vr) {
			upd_imp_fini(w);
			return ISVD_ERR_NOMEM;
		}
	}
	if (with_q) {
		w->Q = malloc(n * n * sizeof *w->Q);
		w->h = malloc(UPD_IMP_Q_GAPS * UPD_IMP_Q_GAPS * sizeof *w->h);
	}
	if (exact && eig_init(w, n, m) != ISVD_OK) {
		upd_imp_fini(w);
		return ISVD_ERR_NOMEM;
	}
	if (!w->vm || !w->g || !w->c || !w->d || !w->idx || !w->ridge ||
	    (with_q && (!w->Q || !w->h))) {
		upd_imp_fini(w);
		return ISVD_ERR_NOMEM;
	}
	return ISVD_OK;
}

/* The ridge s²/λ_i for the basis w->V, w->sigma, w->r, into w->ridge. */
static void set_ridge(const struct isvd_model *m, struct upd_imp *w)
{
	const size_t r = w->r, n = m->n;
	double captured = 0;

	if (r == 0 || !(m->weight > 0))
		return;
	for (size_t i = 0; i < r; i++)
		captured += w->sigma[i] * w->sigma[i];
	double s2 = n > r ? fmax(m->energy - captured, 0.0) / (m->weight * (double)(n - r)) : 0.0;
	const double lam1 = w->sigma[0] * w->sigma[0] / m->weight;
	if (s2 < NOISE_FLOOR * lam1)
		s2 = NOISE_FLOOR * lam1;
	for (size_t i = 0; i < r; i++)
		w->ridge[i] = s2 * m->weight / (w->sigma[i] * w->sigma[i]);
}

/* The estimator on the model's own components (m->V, m->sigma, m->r). */
void upd_imp_prepare(const struct isvd_model *m, struct upd_imp *w)
{
	w->V = m->V;
	w->sigma = m->sigma;
	w->r = m->r;
	set_ridge(m, w);
}

/*
 * Exact mode's basis, from R without its SVD: the top eigenpairs of
 * A = RᵀR (σ_j² = λ_j) by dsytrd, dstedc and dormtr on the kept count
 * only — at n = 64 about a third of the cost of the SVD of R (0.57 ms
 * against 1.7 ms for gesdd with vectors, measured with this OpenBLAS), which
 * the fold of a 1024-row block costs about as much as.  Eigenvalues of RᵀR
 * resolve σ_j down to about √ε·σ₁, so components below 1e-7·σ₁ are not
 * kept (their ridge would make them irrelevant anyway).  The same numbers
 * as the SVD's to rounding wherever the estimator uses them.  ISVD_OK, or
 * ISVD_ERR_LAPACK when the tridiagonal eigensolver does not converge (the
 * caller then takes the SVD).
 */
#define EIG_KEEP 1e-7

int upd_eig_basis(const struct isvd_model *m, struct upd_imp *w)
{
	const size_t n = m->n;
	lapack_int info;

	cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)n, (int)n, 1.0, m->Rt, (int)n, 0.0,
	            w->ea, (int)n);
	info = LAPACKE_dsytrd_work(LAPACK_COL_MAJOR, 'U', (lapack_int)n, w->ea, (lapack_int)n,
	                           w->ed, w->ee, w->etau, w->ework, (lapack_int)w->elwork);
	if (info == 0)
		info = LAPACKE_dstedc_work(LAPACK_COL_MAJOR, 'I', (lapack_int)n, w->ed, w->ee, w->ez,
		                           (lapack_int)n, w->ework, (lapack_int)w->elwork, w->eiwork,
		                           (lapack_int)w->eliwork);
	if (info != 0)
		return ISVD_ERR_LAPACK;
	/* dstedc sorts ascending: the top ones, largest first */
	const double top = w->ed[n - 1] > 0 ? sqrt(w->ed[n - 1]) : 0;
	size_t r = 0;
	while (r < m->m && r < n) {
		const double lam = w->ed[n - 1 - r];
		if (!(top > 0) || !(lam > 0) || sqrt(lam) <= EIG_KEEP * top || sqrt(lam) <= m->rcond * top)
			break;
		w->es[r] = sqrt(lam);
		memcpy(w->ev + r * n, w->ez + (n - 1 - r) * n, n * sizeof *w->ev);
		r++;
	}
	if (r > 0) {
		info = LAPACKE_dormtr_work(LAPACK_COL_MAJOR, 'L', 'U', 'N', (lapack_int)n, (lapack_int)r,
		                           w->ea, (lapack_int)n, w->etau, w->ev, (lapack_int)n,
		                           w->ework, (lapack_int)w->elwork);
		if (info != 0)
			return ISVD_ERR_LAPACK;
	}
	w->V = w->ev;
	w->sigma = w->es;
	w->r = r;
	set_ridge(m, w);
	return ISVD_OK;
}

/*
 * Solves G c = c in place for G = I + diag(ridge) − V_MᵀV_M (w->vm, nm × r)
 * by conjugate gradients preconditioned with G's diagonal, without forming
 * G: each step costs two products with V_M (4·nm·r flops) against
 * nm·r² + r³/3 for forming and factoring G.  With a few gaps spread over
 * the coordinates G is close to a multiple of I and a few steps reach a
 * relative residual of CG_TOL; 1 when they did (c solved), 0 when CG_MAX
 * steps did not (c untouched: the caller factors G instead — gaps that
 * hide most of a component make G ill-conditioned).  Scratch: w->g (6r)
 * and t (nm).
 */
#define CG_TOL 1e-10
#define CG_MAX 40

static int cg_solve(struct upd_imp *w, size_t nm, size_t r, double *t)
{
	double *x = w->g, *res = x + r, *z = res + r, *p = z + r, *ap = p + r, *dinv = ap + r;
	const double *b = w->c;
	double bb = 0, rz = 0;

	for (size_t i = 0; i < r; i++) {
		/* G's diagonal: column i of V_M is contiguous (ddot vectorises what
		 * a plain loop would chain through one accumulator) */
		const double *col = w->vm + i * nm;
		const double g = 1.0 + w->ridge[i] - cblas_ddot((int)nm, col, 1, col, 1);
		if (!(g > 0))
			return 0;
		dinv[i] = 1.0 / g;
		x[i] = 0.0;
		res[i] = b[i];
		z[i] = dinv[i] * b[i];
		p[i] = z[i];
		rz += res[i] * z[i];
		bb += b[i] * b[i];
	}
	if (bb == 0) {
		return 1;   /* c = 0 already */
	}
	for (int it = 0; it < CG_MAX; it++) {
		/* ap = G p = p + ridge∘p − V_Mᵀ(V_M p) */
		cblas_dgemv(CblasColMajor, CblasNoTrans, (int)nm, (int)r, 1.0, w->vm, (int)nm, p, 1,
		            0.0, t, 1);
		cblas_dgemv(CblasColMajor, CblasTrans, (int)nm, (int)r, -1.0, w->vm, (int)nm, t, 1,
		            0.0, ap, 1);
		double pap = 0;
		for (size_t i = 0; i < r; i++) {
			ap[i] += (1.0 + w->ridge[i]) * p[i];
			pap += p[i] * ap[i];
		}
		if (!(pap > 0))
			return 0;
		const double alpha = rz / pap;
		double rr = 0;
		for (size_t i = 0; i < r; i++) {
			x[i] += alpha * p[i];
			res[i] -= alpha * ap[i];
			rr += res[i] * res[i];
		}
		if (rr <= CG_TOL * CG_TOL * bb) {
			memcpy(w->c, x, r * sizeof *x);
			return 1;
		}
		double rz_new = 0;
		for (size_t i = 0; i < r; i++) {
			z[i] = dinv[i] * res[i];
			rz_new += res[i] * z[i];
		}
		const double beta = rz_new / rz;
		rz = rz_new;
		for (size_t i = 0; i < r; i++)
			p[i] = z[i] + beta * p[i];
	}
	return 0;
}

/*
 * Solves G c = c in place, G = I + diag(ridge) − V_MᵀV_M, by the Woodbury
 * identity when there are fewer gaps than components (nm < r): an
 * nm × nm system instead of r × r.  With D = I + diag(ridge),
 * (D − V_MᵀV_M)⁻¹ = D⁻¹ + D⁻¹V_Mᵀ H⁻¹ V_M D⁻¹, H = I − V_M D⁻¹ V_Mᵀ
 * (positive definite: V_M's rows come from orthonormal columns and the
 * ridge is > 0).  Scratch: w->g (nm·r + nm² < 2m²) and t (nm).
 */
static int woodbury_solve(struct upd_imp *w, size_t nm, size_t r, double *t)
{
	for (size_t i = 0; i < r; i++)
		w->c[i] /= 1.0 + w->ridge[i];
	/* H = I − Σ_i V_M[:, i] V_M[:, i]ᵀ /(1 + ridge_i), upper; from a copy of
	 * V_M's columns scaled by 1/sqrt(1 + ridge_i) in g (nm × r, ld nm) */
	for (size_t i = 0; i < r; i++) {
		const double f = 1.0 / sqrt(1.0 + w->ridge[i]);
		for (size_t q = 0; q < nm; q++)
			AT(w->g, nm, q, i) = f * AT(w->vm, nm, q, i);
	}
	double *h = w->g + nm * r;
	memset(h, 0, nm * nm * sizeof *h);
	for (size_t q = 0; q < nm; q++)
		AT(h, nm, q, q) = 1.0;
	cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)nm, (int)r, -1.0, w->g,
	            (int)nm, 1.0, h, (int)nm);
	if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)nm, h, (lapack_int)nm) != 0)
		return ISVD_ERR_LAPACK;
	cblas_dgemv(CblasColMajor, CblasNoTrans, (int)nm, (int)r, 1.0, w->vm, (int)nm, w->c, 1,
	            0.0, t, 1);
	if (LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, 'U', (lapack_int)nm, 1, h, (lapack_int)nm, t,
	                        (lapack_int)nm) != 0)
		return ISVD_ERR_LAPACK;
	for (size_t i = 0; i < r; i++) {
		double acc = 0;
		for (size_t q = 0; q < nm; q++)
			acc += AT(w->vm, nm, q, i) * t[q];
		w->c[i] += acc / (1.0 + w->ridge[i]);
	}
	return ISVD_OK;
}

/* Solves G c = c in place by forming G = I − V_MᵀV_M + diag(ridge) (upper,
 * in w->g) and factoring it: the general case, O(nm·r² + r³). */
static int chol_solve(struct upd_imp *w, size_t nm, size_t r)
{
	memset(w->g, 0, r * r * sizeof *w->g);
	for (size_t i = 0; i < r; i++)
		AT(w->g, r, i, i) = 1.0 + w->ridge[i];
	cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)r, (int)nm, -1.0, w->vm,
	            (int)nm, 1.0, w->g, (int)r);
	if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', (lapack_int)r, w->g, (lapack_int)r) != 0)
		return ISVD_ERR_LAPACK;
	if (LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, 'U', (lapack_int)r, 1, w->g, (lapack_int)r,
	                        w->c, (lapack_int)r) != 0)
		return ISVD_ERR_LAPACK;
	return ISVD_OK;
}

/*
 * Fills the gaps of the row x (n values, NaN = gap, at least one observed)
 * into out (n values; observed values copied unchanged); *filled (may be
 * NULL) receives the number of gaps.  Enters with upd_imp_prepare() done
 * for the model's current state.  Returns
 * ISVD_ERR_NONFINITE if an imputed value is not finite, ISVD_ERR_LAPACK if
 * the r×r system is not positive definite (it is by construction).
 */
static int solve_row(const struct isvd_model *m, struct upd_imp *w, size_t nm, double *out);

/* x's gaps into w->idx (their count returned), the centred row with zeros
 * at the gaps into w->d, and x into out. */
static size_t scan_row(const struct isvd_model *m, struct upd_imp *w, const double *x,
                       double *out)
{
	size_t nm = 0;

	for (size_t j = 0; j < m->n; j++) {
		const int gap = isnan(x[j]);
		if (gap)
			w->idx[nm++] = j;
		w->d[j] = gap ? 0.0 : m->center ? x[j] - m->mean[j] : x[j];
		out[j] = x[j];
	}
	return nm;
}

/* upd_imp_row() after scan_row() found nm ≥ 1 gaps. */
static int fill_scanned(const struct isvd_model *m, struct upd_imp *w, size_t nm, double *out)
{
	const size_t n = m->n, r = w->r;

	if (r == 0) {   /* warm-up: the running mean */
		for (size_t q = 0; q < nm; q++)
			out[w->idx[q]] = m->center ? m->mean[w->idx[q]] : 0.0;
		return ISVD_OK;
	}
	/* c ← V_Oᵀ d (d is zero on M) */
	cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)r, 1.0, w->V, (int)n, w->d, 1, 0.0,
	            w->c, 1);
	return solve_row(m, w, nm, out);
}

int upd_imp_row(const struct isvd_model *m, struct upd_imp *w, const double *x, double *out,
                size_t *filled)
{
	const size_t nm = scan_row(m, w, x, out);

	if (filled)
		*filled = nm;
	return nm == 0 ? ISVD_OK : fill_scanned(m, w, nm, out);
}

/*
 * The rest of upd_imp_row() once w->c = V_Oᵀd and w->idx (nm ≥ 1 gaps) are
 * set: c ← G⁻¹c, then out's gaps ← μ_M + V_M c.
 */
static int solve_row(const struct isvd_model *m, struct upd_imp *w, size_t nm, double *out)
{
	const size_t n = m->n, r = w->r;
	int err;

	/* V_M gathered (nm × r, ld nm): from the block route's row-major copy
	 * when there is one (a gap's r values on a few cache lines, not r) */
	if (w->vr_ready) {
		for (size_t q = 0; q < nm; q++) {
			const double *vrow = w->vr + w->idx[q] * r;
			for (size_t i = 0; i < r; i++)
				AT(w->vm, nm, q, i) = vrow[i];
		}
	} else {
		for (size_t i = 0; i < r; i++)
			for (size_t q = 0; q < nm; q++)
				AT(w->vm, nm, q, i) = AT(w->V, n, w->idx[q], i);
	}
	/* c ← G⁻¹c: Woodbury for fewer gaps than components; CG while the gaps
	 * are at most a quarter of the row (with more, V_MᵀV_M's spectrum
	 * spreads, CG needs tens of steps, and forming G measured faster — 50%
	 * gaps at (1000, 50): 4.3k rows/s factored, 3.4k by CG); else, or when
	 * CG does not converge, G factored. */
	double *t = w->d + n;   /* d's second half: nm ≤ n scratch */
	if (nm < r)
		err = woodbury_solve(w, nm, r, t);
	else if (4 * nm <= n && cg_solve(w, nm, r, t))
		err = ISVD_OK;
	else
		err = chol_solve(w, nm, r);
	if (err)
		return err;
	/* x_M = μ_M + V_M c. */
	cblas_dgemv(CblasColMajor, CblasNoTrans, (int)nm, (int)r, 1.0, w->vm, (int)nm, w->c, 1,
	            0.0, w->d, 1);
	for (size_t q = 0; q < nm; q++) {
		const size_t j = w->idx[q];
		const double v = (m->center ? m->mean[j] : 0.0) + w->d[q];
		if (!isfinite(v))
			return ISVD_ERR_NONFINITE;
		out[j] = v;
	}
	return ISVD_OK;
}

/*
 * THE PRECISION ROUTE.  The estimator is the conditional mean of a
 * Gaussian, x_M = μ_M + S_MO S_OO⁻¹ d_O with S = VΛVᵀ + s²I (the formula at
 * the top, by the push-through identity).  In terms of a precision matrix
 * Q ∝ S⁻¹ the same is
 *     x_M − μ_M = −Q_MM⁻¹ Q_MO d_O,      Q = I − V D⁻¹ Vᵀ, D = I + diag(ridge)
 * (Woodbury: s²S⁻¹ = Q).  With Q formed once per block (one dsyrk, n²·r
 * flops) a row with |M| gaps costs |M|·n for Q_MO d_O (contiguous columns
 * of Q: d is zero at M) and |M|³/3 for the Cholesky factor of Q_MM — no
 * r-sized product, and for a few gaps no library call: at (64, 8) the
 * per-row BLAS and LAPACK calls of upd_imp_row() cost more than their
 * arithmetic.  Q_MM is positive definite (Q's eigenvalues are
 * ridge_i/(1 + ridge_i) and 1).
 * Rows with at most min(r, UPD_IMP_Q_GAPS) gaps take it: with more gaps
 * than components upd_imp_row()'s r×r system is the smaller one.
 * - Truncated mode has Q when n ≤ max_block (Q is then no larger than the
 *   block's own rows).
 * - Exact mode has Q always (it is R's size).  Its V is the SVD of R,
 *   computed once per block with gaps.  (The Gaussian
 *   conditional of R's full covariance, (RᵀR + εI)⁻¹ with no SVD, was
 *   tried and is cheaper, but it also conditions on the noise directions
 *   of a covariance still being estimated: on test_missing's stream the
 *   learned subspace was 3× further from the truth than with the k + extra
 *   components, so exact mode keeps PPCA's estimator.)
 * A pivot that is not positive (rounding) falls back to upd_imp_row().
 */
static void prepare_q(const struct isvd_model *m, struct upd_imp *w)
{
	const size_t n = m->n, r = w->r;

	/* W = V D^(-1/2) in vm (n × r); Q = I − W Wᵀ (upper), mirrored */
	for (size_t i = 0; i < r; i++) {
		const double f = 1.0 / sqrt(1.0 + w->ridge[i]);
		for (size_t j = 0; j < n; j++)
			AT(w->vm, n, j, i) = f * AT(w->V, n, j, i);
	}
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i <= j; i++)
			AT(w->Q, n, i, j) = i == j;
	cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)n, (int)r, -1.0, w->vm, (int)n,
	            1.0, w->Q, (int)n);
	for (size_t j = 0; j < n; j++)
		for (size_t i = j + 1; i < n; i++)
			AT(w->Q, n, i, j) = AT(w->Q, n, j, i);
	w->q_ready = 1;
}

/* Fills the nm gaps (w->idx) of out from w->d (the centred row, zero at
 * its gaps) by the precision route; 0 when done, 1 when a pivot was not
 * positive or a value not finite. */
static int impute_q(const struct isvd_model *m, struct upd_imp *w, size_t nm, double *out)
{
	const size_t n = m->n;
	double *h = w->h, *y = w->d + n;

	/* y = −Q_MO d_O, four partial sums (a single one is bound by the FMA
	 * latency; the order is fixed, so results are reproducible); h = Q_MM,
	 * lower triangle by rows (h[q·nm + s], s ≤ q) */
	for (size_t q = 0; q < nm; q++) {
		const double *col = w->Q + w->idx[q] * n;
		double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
		size_t j = 0;
		for (; j + 4 <= n; j += 4) {
			a0 += col[j] * w->d[j];
			a1 += col[j + 1] * w->d[j + 1];
			a2 += col[j + 2] * w->d[j + 2];
			a3 += col[j + 3] * w->d[j + 3];
		}
		for (; j < n; j++)
			a0 += col[j] * w->d[j];
		y[q] = -((a0 + a1) + (a2 + a3));
		for (size_t s = 0; s <= q; s++)
			h[q * nm + s] = col[w->idx[s]];
	}
	{
		/* Cholesky L Lᵀ = Q_MM (L_qs in h[q·nm + s]), then L Lᵀ y = y */
		for (size_t q = 0; q < nm; q++) {
			for (size_t s = 0; s <= q; s++) {
				double acc = h[q * nm + s];
				for (size_t t = 0; t < s; t++)
					acc -= h[q * nm + t] * h[s * nm + t];
				if (s < q) {
					h[q * nm + s] = acc / h[s * nm + s];
				} else {
					if (!(acc > 0))
						return 1;
					h[q * nm + q] = sqrt(acc);
				}
			}
		}
		for (size_t q = 0; q < nm; q++) {
			double acc = y[q];
			for (size_t t = 0; t < q; t++)
				acc -= h[q * nm + t] * y[t];
			y[q] = acc / h[q * nm + q];
		}
		for (size_t q = nm; q-- > 0;) {
			double acc = y[q];
			for (size_t t = q + 1; t < nm; t++)
				acc -= h[t * nm + q] * y[t];
			y[q] = acc / h[q * nm + q];
		}
	}
	for (size_t q = 0; q < nm; q++) {
		const size_t j = w->idx[q];
		const double v = (m->center ? m->mean[j] : 0.0) + y[q];
		if (!isfinite(v))
			return 1;
		out[j] = v;
	}
	return 0;
}

/* Prepares w for m's state (exact mode: the SVD of R first); Q is formed
 * when a row first needs it. */
static int prepare(const struct isvd_model *m, struct upd_imp *w)
{
	int err;

	w->q_ready = 0;
	/* exact mode with R at hand and not yet decomposed: its eigenpairs */
	if (w->ea && m->Rt && m->stale && upd_eig_basis(m, w) == ISVD_OK)
		return ISVD_OK;
	if ((err = upd_refresh(m)))
		return err;
	upd_imp_prepare(m, w);
	return ISVD_OK;
}

int upd_imp_fill(const struct isvd_model *m, struct upd_imp *w, const double *x, double *out,
                 size_t *filled)
{
	if (!(w->Q && w->r > 0))   /* no Q here, or warm-up */
		return upd_imp_row(m, w, x, out, filled);
	const size_t nm = scan_row(m, w, x, out);
	*filled = nm;
	if (nm == 0)
		return ISVD_OK;
	if (nm <= UPD_IMP_Q_GAPS && nm <= w->r) {
		if (!w->q_ready)
			prepare_q(m, w);
		if (impute_q(m, w, nm, out) == 0)
			return ISVD_OK;
	}
	/* the r×r system, from the same scan (impute_q leaves w->d's first
	 * half, the centred row, as it was; the gaps of out are all rewritten) */
	return fill_scanned(m, w, nm, out);
}

int upd_imp_query_init(const struct isvd_model *m, struct upd_imp *w)
{
	const int exact = m->mode == ISVD_MODE_EXACT;
	int err;

	/* truncated queries take upd_imp_row() (no n×n matrix for one row) */
	if ((err = upd_imp_init(w, m->n, exact ? m->m : m->r, exact, exact, 0)))
		return err;
	if ((err = prepare(m, w))) {
		upd_imp_fini(w);
		return err;
	}
	return ISVD_OK;
}

/*
 * The block route of truncated mode without Q (n > max_block): every row's
 * V_Oᵀd at once, C = Vᵀ D for D = the block's centred rows with zeros at
 * the gaps (laid out in Xb, n × b), one dgemm that reads V once — not once
 * per row, as upd_imp_row()'s dgemv does; then each row with gaps solves
 * its system from its column of C (solve_row()).  Rows without gaps are
 * copied.
 */
static int impute_block_gemm(struct isvd_model *m, const double *rows, size_t b, size_t ld,
                             uint64_t *gaps, uint64_t *gap_rows)
{
	struct upd_imp *w = &m->imp;
	const size_t n = m->n, r = w->r;
	int err;

	for (size_t i = 0; i < b; i++) {
		const double *x = rows + i * ld;
		double *d = m->Xb + i * n;
		for (size_t j = 0; j < n; j++)
			d[j] = isnan(x[j]) ? 0.0 : m->center ? x[j] - m->mean[j] : x[j];
	}
	cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)b, (int)n, 1.0, w->V,
	            (int)n, m->Xb, (int)n, 0.0, w->cb, (int)r);
	for (size_t i = 0; i < r; i++)   /* V row-major, for the gathers */
		for (size_t j = 0; j < n; j++)
			w->vr[j * r + i] = AT(w->V, n, j, i);
	w->vr_ready = 1;
	for (size_t i = 0; i < b; i++) {
		const double *x = rows + i * ld;
		double *out = m->Xb + i * n;
		size_t nm = 0;
		for (size_t j = 0; j < n; j++) {
			if (isnan(x[j]))
				w->idx[nm++] = j;
			out[j] = x[j];
		}
		if (nm == 0)
			continue;
		memcpy(w->c, w->cb + i * r, r * sizeof *w->c);
		if ((err = solve_row(m, w, nm, out))) {
			w->vr_ready = 0;
			return err;
		}
		*gaps += nm;
		*gap_rows += 1;
	}
	w->vr_ready = 0;   /* V changes with the fold */
	return ISVD_OK;
}

/*
 * Completes b rows (ld apart) into m->Xb (b × n, ld n) from the model as it
 * stands; *gaps receives the number of values imputed and *gap_rows the
 * rows that had any.  Which route a row takes depends only on the row and
 * the model, so the same rows in the same blocks replay bit-identically.
 */
int upd_impute_block(struct isvd_model *m, const double *rows, size_t b, size_t ld,
                     uint64_t *gaps, uint64_t *gap_rows)
{
	int err = prepare(m, &m->imp);

	if (err)
		return err;
	*gaps = *gap_rows = 0;
	if (m->imp.cb && m->imp.r > 0)
		return impute_block_gemm(m, rows, b, ld, gaps, gap_rows);
	for (size_t i = 0; i < b; i++) {
		size_t nm;
		if ((err = upd_imp_fill(m, &m->imp, rows + i * ld, m->Xb + i * m->n, &nm)))
			return err;
		*gaps += nm;
		*gap_rows += nm > 0;
	}
	return ISVD_OK;
}
