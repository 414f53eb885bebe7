/*
 * internal.h — the model's state, its invariants, and the functions shared
 * between the engine's files.  Nothing here is public.
 *
 * FILES
 *   model.c      create/destroy, validation, mode choice, accessors,
 *                queries, info
 *   block.c      weighting and centring of a block (both strategies)
 *   truncated.c  the truncated update strategy (Brand's block update) and
 *                re-orthogonalisation
 *   exact.c      the exact strategy (the stream's triangular factor R)
 *   par.c        the fork–join pool that splits the n-sized products
 *   missing.c    rows with gaps: imputation before the fold, gap filling
 *   image.c      save/load of the complete state
 *   crc32c.c     checksum;  error.c  error texts
 *
 * STATE MACHINE OF ONE UPDATE CALL
 *
 *   isvd_model_update ──► check_rows_gaps (admissible? gaps allowed? a row
 *   with no observed value?) ──► for each block of ≤ B rows:
 *       [gaps: upd_impute_block fills them into Xb from the state so far]
 *       ──► upd_truncated_fold or upd_exact_fold
 *
 *   upd_truncated_fold: upd_weigh_block (weights, centring by reflection,
 *       mean correction → Y) ──► fold_core (r + bb < n: residual_implicit,
 *       else residual_full; core_eig, else core_svd; the rotation job) or
 *       fold_direct (QR of the stacked block, SVD of its triangle)
 *       ──► commit (swap V, σ, μ, totals) ──► upd_sign_normalise
 *       ──► upd_reorthogonalise when rows_since_reorth ≥ reorth_every
 *
 *   A truncated block is atomic: everything is computed in workspaces and
 *   the state is written only after every LAPACK call of the block has
 *   succeeded.
 *
 *   upd_exact_fold: upd_weigh_block ──► R ← λ^{b/2}R ──► fold_rows (dtpqrt,
 *   or TSQR parts over the pool) ──► commit totals, mark the factors stale;
 *   the next reader calls upd_exact_refresh (SVD of R ──► σ, V,
 *   sign-normalised).
 */
#ifndef ISVD_UPDATE_INTERNAL_H
#define ISVD_UPDATE_INTERNAL_H

#include "isvd_model.h"

/* Scratch of the gap estimator (missing.c): for an n-dimensional model
 * with at most m components.  r is the component count the ridge was
 * prepared for. */
struct upd_imp {
	double *vm;      /* n×m  V's rows at the gaps (|M| × r) */
	double *g;       /* 2m² + 6m: the r×r system and its Cholesky factor;
	                    (Woodbury, |M| < r) scaled V_M and the |M|×|M| one;
	                    or CG's six r-vectors */
	double *c;       /* m    coordinates */
	double *d;       /* 2n   the centred row, zero at gaps; then V_M c;
	                    the second half is Woodbury's and CG's scratch */
	double *ridge;   /* m    s²/λ_i */
	size_t *idx;     /* n    the gaps' indices */
	size_t r;
	/* The precision route (missing.c, upd_imp_fill): Q (n×n, both
	 * triangles) = I − V D⁻¹ Vᵀ, the estimator's precision matrix up to
	 * scale, valid when q_ready (reset by every preparation); h the
	 * Cholesky scratch of Q_MM (UPD_IMP_Q_GAPS²).  Q is NULL when not
	 * allocated (truncated mode with n > max_block, truncated queries). */
	double *Q;
	double *h;
	int exact;
	int q_ready;
	/* the block route without Q (truncated mode, n > max_block): V_Oᵀd of
	 * every row of a block (m × max_block) and V row-major (n × m, valid
	 * while vr_ready, within one upd_impute_block call); NULL otherwise */
	double *cb;
	double *vr;
	int vr_ready;
	/* the basis the estimator uses (V: n × r, sigma: r), set by each
	 * preparation: the model's own, or exact mode's eigen basis below */
	const double *V;
	const double *sigma;
	/* exact mode: the top eigenpairs of RᵀR (missing.c, prepare_eig) —
	 * A and its reflectors, Z, the basis ev (n × m) and es (m), and
	 * dsytrd/dstedc/dormtr scratch; NULL otherwise */
	double *ea, *ez, *ev, *es, *ed, *ee, *etau, *ework;
	int *eiwork;      /* lapack_int (LP64), as the model's iwork */
	size_t elwork, eliwork;
};
#define UPD_IMP_Q_GAPS 32


struct isvd_model {
	/* ---- options, fixed at creation ---- */
	size_t n;              /* dimension */
	size_t k;              /* requested rank */
	size_t p;              /* extra components requested */
	size_t kmax;           /* min(k, n): most components ever reported */
	size_t m;              /* min(k + p, n): most components ever kept */
	size_t B;              /* max rows per block */
	int center;
	double forget;         /* λ */
	uint64_t reorth_every;
	double rcond;
	int mode;              /* ISVD_MODE_EXACT or ISVD_MODE_TRUNCATED, resolved */

	/* ---- state ----
	 * INVARIANTS (after every public call returns):
	 *   0 ≤ r ≤ m;  r = 0 until the first non-zero row.
	 *   V is n×m column-major (ld n); its first r columns are orthonormal:
	 *     ‖VᵀV − I‖ grows by O(ε) per block and is reset below 1e-13 by
	 *     every re-orthogonalisation (reorth_every rows).
	 *   sigma[0..r) is finite, non-increasing and > rcond·sigma[0].
	 *   Each column of V is sign-normalised: its largest-magnitude entry
	 *     (lowest index on ties) is positive.
	 *   mean (n values, only when center) is the weighted mean of every row
	 *     seen; all zeros before the first row.
	 *   weight = Σ λ^t over rows seen; energy = ‖weighted centred A‖_F²,
	 *     both exact (not truncated), both finite.
	 *   Nothing here is ever NaN: input is checked before it touches state.
	 *   Memory is fixed at creation: O(n·(m + B)) (exact mode: O(n² + n·B))
	 *   and never grows.
	 *   Exact mode: Rt (n×n, ld n, upper triangle; zeros below) satisfies
	 *     RtᵀRt = the weighted, centred scatter of every row seen, exactly up
	 *     to rounding; V, sigma and r are its SVD truncated to m components
	 *     whenever stale == 0, and are refreshed before any read when
	 *     stale == 1 (set by every fold).
	 */
	size_t r;
	double *V;
	double *sigma;
	double *mean;
	uint64_t rows_seen;
	uint64_t rows_since_reorth;
	uint64_t reorth_count;
	double weight;
	double energy;
	double *Rt;            /* exact mode only, see above */
	int stale;
	int frozen;            /* a snapshot (isvd_model_snapshot): only V's r
	                          columns, sigma and mean exist; readers only */

	/* ---- workspaces: allocated at creation, contents meaningless between
	 * calls.  s = m + B + 1 is the largest core (r + block + correction). */
	size_t s;
	size_t c;         /* min(s, n): the largest square SVD either path runs */
	double *Vnew;     /* n×m     rotated basis, swapped with V on commit */
	double *Y;        /* n×(B+1) block (transposed), then residual, then Q */
	double *P;        /* m×(B+1) projection coefficients VᵀY */
	double *P2;       /* m×(B+1) second Gram–Schmidt pass (E) */
	double *G;        /* q×m the eigen route's Fᵀ W (bb × cnt) */
	double *R;        /* q², q = min(B+1, n): triangular factor of the residual
	                     (the core path has bb < n columns, so bb ≤ q) */
	double *R2;       /* q²  second CholeskyQR pass */
	double *K;        /* s×c: the t×t core (core path: t = r+bb < n, so
	                     t ≤ c), or the stacked t×n matrix of the direct
	                     path (n ≤ t ≤ s, so n = c) */
	double *Kcopy;    /* c×c copy kept for the gesvd fallback */
	double *VT;       /* c×c right singular vectors of the core */
	double *svals;    /* c   singular values of the core */
	double *tau;      /* s   Householder scalars */
	double *dw;       /* B   row weights sqrt(λ^age) of the current block */
	double *hv;       /* B   the centring reflection's vector (block.c) */
	double *W;        /* s×m the core's top right singular vectors (t × cnt) */
	double *eig_d;    /* s   the eigen route's tridiagonal (diagonal) */
	double *eig_e;    /* s   … and off-diagonal */
	double *part_buf; /* (parts−1)·part_len partial sums of the pool's parts */
	size_t part_len;  /* max(m·(B+1), (B+1)²) */
	struct upd_pool *pool;  /* threads parts (NULL in a snapshot: one part) */
	size_t threads;   /* resolved thread count, ≥ 1 */
	uint64_t stat_implicit; /* core folds that took the implicit residual */
	uint64_t stat_eig;      /* core folds whose core took the eigen route */
	double eig_max_cond;    /* UPD_EIG_MAX_COND; tests move it to force a route */
	/* ---- missing values (missing.c) ----
	 * missing is ISVD_MISSING_REJECT or _IMPUTE; with IMPUTE, Xb (B×n) and
	 * imp are allocated (both NULL/zero otherwise and in a snapshot).
	 * rows_with_gaps and values_imputed count since creation or load (they
	 * are not part of a saved image). */
	int missing;
	double *Xb;
	struct upd_imp imp;
	uint64_t rows_with_gaps;
	uint64_t values_imputed;
	/* ---- scores at ingest (monitor.c): n × B and kmax × B, allocated by
	 * isvd_model_set_scoring() (NULL otherwise and in a snapshot) ---- */
	double *score_x;
	double *score_c;
	struct upd_imp score_eig;   /* exact mode: the basis scores use (upd_eig_basis) */
	/* exact mode: the scoring basis carried from block to block and
	 * refined by subspace iteration (monitor.c, refine()): sq (n × sm,
	 * orthonormal columns, valid when sq_ok), scratch sy (n × sm), sb
	 * (sm × sm), sw (sm), stau (sm), swork (slwork) */
	double *sq, *sy, *sb, *sw, *stau, *swork;
	size_t sm, slwork;
	int sq_ok;
	/* blocks left (srefine_wait) before refine() is tried again after it
	 * failed to converge — a spectrum without a gap past k, where the
	 * eigenpairs are taken directly meanwhile; the wait doubles with each
	 * failure in a row (srefine_backoff, up to REFINE_BACKOFF_MAX) */
	unsigned srefine_wait, srefine_backoff;
	/* a model of one thread: the scoring thread — a pool of two parts,
	 * the fold on the caller and the scores on the worker (monitor.c,
	 * upd_score_fold) — and the copies the scores read while the fold
	 * moves the model's: exact mode's R (sRt, n × n), truncated mode's V
	 * (sV, n × m) and sigma (ssigma, m), the mean (smean, n, when
	 * centring).  spool NULL: blocks are scored serially (more threads,
	 * or no thread could be had). */
	struct upd_pool *spool;
	double *sRt, *sV, *ssigma, *smean;
	/* the basis the next block is scored against (V n × sr, sigma), once
	 * computed for the model as it stands (sbasis_ok, cleared by every
	 * fold): isvd_model_tail() and upd_score_block() share it; exact mode
	 * also keeps the tail's workspace stail (2n² + n·TAIL_PANEL doubles) */
	const double *sbV, *sbsigma;
	size_t sbr;
	int sbasis_ok;
	double *stail;
	double *mu_b;     /* n   weighted mean of the current block */
	double *mu_new;   /* n   mean after the current block */
	double *work;     /* lwork doubles for LAPACK */
	int *iwork;       /* upd_truncated_liwork() ints: gesdd, dstedc, dtrcon
	                     (8·c in exact mode) */
	size_t lwork;
	/* exact mode: Bt ((B+1)×n, ld B+1) the block transposed for dtpqrt,
	 * Tq (nb×n) its block reflectors; K, Kcopy, VT are n×n. */
	double *Bt;
	double *Tq;
	size_t nb;
};

/* Below this dimension a model runs one thread: splitting its n-sized
 * products would cost more in hand-offs than it saves. */
#define UPD_PAR_MIN_DIM 256

/* Largest σ₁/σ_j among the top m values for which a truncated fold trusts
 * the eigen route of its core (truncated.c, DESIGN). */
#define UPD_EIG_MAX_COND 1e3

/* model.c */
int upd_validate_options(const struct isvd_options *o);
/* Exact mode: brings σ, V and r up to date with R (no-op otherwise). */
int upd_refresh(const struct isvd_model *m);
int upd_alloc(const struct isvd_options *o, struct isvd_model **out);
void upd_sign_normalise(struct isvd_model *m);
/* ‖VᵀV − I‖_F over the r kept columns (O(n·r²)); allocates r² doubles. */
int upd_orthogonality_error(const struct isvd_model *m, double *out);

/* block.c: fills m->Y (n × *bb, column-major) with the weighted, centred
 * block (plus the mean-correction row when centring and rows came before)
 * and computes the totals it would produce: m->mu_new, *w_new, *e_new and
 * *lam_b = λ^b.  Touches no state.  Enters: b ≤ B finite rows. */
void upd_weigh_block(struct isvd_model *m, const double *rows, size_t b, size_t ld,
                     size_t *bb, double *w_new, double *e_new, double *lam_b);

/* exact.c: sizes workspaces, folds one block, refreshes σ and V from R when
 * stale (a no-op otherwise).  Return isvd_err codes. */
int upd_exact_workspace(struct isvd_model *m);
/* Parts a fold of B-row blocks splits into with `threads` threads (1 when
 * the parts would be shorter than 8n rows), and the doubles each part ≥ 1 needs
 * in part_buf (0 on a workspace-query failure). */
size_t upd_exact_parts(size_t n, size_t B, size_t threads);
size_t upd_exact_part_len(const struct isvd_model *m);
int upd_exact_fold(struct isvd_model *m, const double *rows, size_t b, size_t ld);
int upd_exact_refresh(struct isvd_model *m);

/* truncated.c: sizes workspaces (called by upd_alloc), folds one block of
 * b ≤ B finite rows, re-orthogonalises.  Return isvd_err codes. */
int upd_truncated_workspace(struct isvd_model *m);
size_t upd_truncated_liwork(const struct isvd_model *m);
int upd_truncated_fold(struct isvd_model *m, const double *rows, size_t b, size_t ld);
int upd_reorthogonalise(struct isvd_model *m);

/* SVD of a column-major rows×cols matrix A (rows ≥ cols) computing σ and
 * Vᵀ (cols×cols, ld ldvt) with gesdd; on non-convergence retries gesvd on
 * the copy Acopy (which must hold A on entry).  A is destroyed. */
int upd_svd(struct isvd_model *m, size_t rows, size_t cols, double *A, double *Acopy,
            double *s, double *vt, size_t ldvt);
/* crc32c.c: the table path of isvd_crc32c(), and whether isvd_crc32c()
 * uses the CPU's crc32 instruction instead (for the tests of both). */
uint32_t upd_crc32c_portable(uint32_t crc, const void *buf, size_t len);
int upd_crc32c_accelerated(void);

/* missing.c: the estimator's scratch, its per-state preparation, one row
 * (*filled: its gaps), and a whole block into m->Xb (*gaps: values
 * imputed, *gap_rows: rows that had any).  isvd_err codes. */
int upd_imp_init(struct upd_imp *w, size_t n, size_t m, int with_q, int exact, size_t cb_cols);
void upd_imp_fini(struct upd_imp *w);
void upd_imp_prepare(const struct isvd_model *m, struct upd_imp *w);
int upd_imp_row(const struct isvd_model *m, struct upd_imp *w, const double *x, double *out,
                size_t *filled);
int upd_impute_block(struct isvd_model *m, const double *rows, size_t b, size_t ld,
                     uint64_t *gaps, uint64_t *gap_rows);
/* The queries' gap filling: *w made for m (upd_imp_query_init, which
 * allocates; release with upd_imp_fini), then rows completed one by one
 * by the estimator a fold of m would use. */
int upd_imp_query_init(const struct isvd_model *m, struct upd_imp *w);
/* Exact mode: the top eigenpairs of RᵀR (R's singular values and right
 * vectors, without its SVD) into w->V, w->sigma, w->r, and the ridge; w
 * made with exact = 1.  ISVD_ERR_LAPACK when the eigensolver fails. */
int upd_eig_basis(const struct isvd_model *m, struct upd_imp *w);
int upd_imp_fill(const struct isvd_model *m, struct upd_imp *w, const double *x, double *out,
                 size_t *filled);

/* monitor.c: scores of a block about to be folded (orig: the rows as given,
 * for their gaps) and, when tail is not NULL, the tail moments of the
 * model they are scored against; then the fold.  Serial, or the scores on
 * the scoring thread while the caller folds (m->spool).  A fold's error is
 * returned; scores that fail after the fold began are NaN. */
int upd_score_fold(struct isvd_model *m, const double *x, size_t xld, const double *orig,
                   size_t old, size_t b, double *spe, double *t2, struct isvd_tail *tail);
void upd_score_fini(struct isvd_model *m);
/* (Re)starts the scoring thread to match the model's threads: started on
 * a model with scoring on and a pool of one part, stopped otherwise
 * (isvd_model_set_scoring and isvd_model_set_threads call it).  Without
 * memory or a thread it leaves blocks to be scored serially. */
void upd_score_thread(struct isvd_model *m);

/* Number of singular values to keep: at most m, and only σ > rcond·σ_1. */
size_t upd_keep_count(const struct isvd_model *m, const double *s, size_t len);

#endif
