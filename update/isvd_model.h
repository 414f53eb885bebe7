/*
 * isvd_model.h — the incremental SVD engine: public interface.
 *
 * A model keeps a rank-k truncated SVD of an unbounded stream of rows,
 * A ≈ U Σ Vᵀ, without ever storing A or U.  Two update strategies sit behind
 * this one interface (isvd_options.mode):
 *   truncated  Brand's incremental block update (project on V, QR of the
 *              residual, SVD of a small core, rotate, truncate to k + extra).
 *              Memory O(n·(k+p+max_block)); approximate once the data's
 *              rank exceeds k + extra.
 *   exact      the n×n triangular factor R of the stream (A = QR, so A and R
 *              share σ and V), each block folded in with LAPACK's
 *              triangular-pentagonal QR (dtpqrt) at O(n²) per row, and the
 *              SVD of R computed only when factors are read.  Memory O(n²);
 *              exact for every k ≤ n; never forms AᵀA, so it does not square
 *              the condition number.
 *   auto       exact where it is cheaper, from a cost model measured with
 *              isvd-bench (see upd_choose_mode() in model.c).
 * Neither grows with the number of rows streamed.
 *
 * This library is pure numerics: it links CBLAS, LAPACKE and libm only and
 * performs no I/O.  It owns the model state and nothing else; the daemon
 * persists saved images, the protocol encodes what the accessors return.
 *
 * WHAT THE MODEL IS OF
 *   Rows x_1 … x_N arrive in order.  With forgetting factor λ ∈ (0,1], a row
 *   that is t rows old (t = 0 for the newest) has weight w_t = λ^t.  Weights
 *   are weights in the weighted-least-squares sense: the model is the SVD of
 *   the matrix whose rows are  sqrt(w_t)·(x_t − μ), where μ is the weighted
 *   mean Σ w_t x_t / Σ w_t when centring is on and 0 when it is off.  So
 *   σ_i² are the eigenvalues of the weighted scatter Σ w_t (x_t−μ)(x_t−μ)ᵀ
 *   and V its eigenvectors: with centring on this is exactly (weighted) PCA.
 *   The update is exact for every block size: the weights depend on a row's
 *   age in rows, not on how rows were grouped into blocks.  Only truncation
 *   to k + extra components loses information.
 *
 *   Choosing λ: a half-life of h rows (a row's weight halves after h newer
 *   rows) is λ = 2^(−1/h); the effective window Σ w_t → 1/(1−λ) ≈ 1.44·h rows.
 *   λ = 1 (the default) is no forgetting.
 *
 * CONVENTIONS
 *   Matrices passed in and out are row-major with an explicit leading
 *   dimension (ld ≥ the row length), one row per observation, because that is
 *   how rows arrive on the wire.  Internally the engine is column-major.
 *   Factors read out are sign-normalised: in each right singular vector the
 *   entry of largest magnitude is positive (the lowest index wins a tie), so
 *   the same rows in the same blocks give bit-identical factors.
 *
 * ERRORS AND OWNERSHIP
 *   Every function returns an isvd_err (ISVD_OK = 0) and hands results back
 *   through out-parameters.  Nothing aborts on bad input.  The caller owns
 *   every buffer it passes; the engine never keeps a pointer to one.
 *   A model is not thread-safe: calls on one model must be serialised by the
 *   caller, const ones included (an exact-mode model computes its SVD on the
 *   first read after an update and caches it).
 */
#ifndef ISVD_MODEL_H
#define ISVD_MODEL_H

#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* The one error enum of the engine; isvd_strerror() gives its text. */
typedef enum isvd_err {
	ISVD_OK = 0,
	ISVD_ERR_INVALID,     /* an argument is out of range or NULL */
	ISVD_ERR_DIM,         /* a row's length differs from the model's dimension */
	ISVD_ERR_NONFINITE,   /* a value is NaN or ±Inf, or so large (about 1e150)
	                         that its square could overflow; nothing applied */
	ISVD_ERR_NOMEM,       /* allocation failed; the model is unchanged */
	ISVD_ERR_LAPACK,      /* an SVD did not converge even after the gesvd fallback */
	ISVD_ERR_NOT_READY,   /* the model has seen no rows yet */
	ISVD_ERR_FORMAT,      /* a saved image has a bad magic, version or field */
	ISVD_ERR_CORRUPT,     /* a saved image fails its CRC32C */
	ISVD_ERR_TRUNCATED,   /* a saved image or buffer is shorter than it must be */
	ISVD_ERR_TOO_LARGE,   /* sizes whose product would overflow or exceed limits */
	ISVD_ERR_GAPS,        /* a row has no observed value (every value is a gap) */
	ISVD_ERR_MISMATCH,    /* models to merge differ in a setting that must match */
	ISVD_ERR_COUNT_       /* number of codes; not an error */
} isvd_err;

/* Static text for an error code; never NULL (unknown codes get a generic text). */
const char *isvd_strerror(int err);

/* Space of projected coordinates. */
enum isvd_space {
	ISVD_SPACE_SCORES = 0, /* Vₖᵀ(x − μ) */
	ISVD_SPACE_U = 1       /* Σₖ⁺Vₖᵀ(x − μ); σ_j ≤ rcond·σ_1 gives 0, never inf */
};

/* Update strategy; see the top of this file. */
enum isvd_mode {
	ISVD_MODE_AUTO = 0,     /* exact where cheaper (the default) */
	ISVD_MODE_EXACT = 1,
	ISVD_MODE_TRUNCATED = 2
};

/* What a NaN in the input means (isvd_options.missing). */
enum isvd_missing {
	ISVD_MISSING_REJECT = 0, /* NaN is refused as ISVD_ERR_NONFINITE (the default) */
	ISVD_MISSING_IMPUTE = 1  /* NaN is a gap: filled from the model, then folded */
};

/* "auto", "exact", "truncated"; NULL when out of range. */
const char *isvd_mode_name(int mode);

/* Creation options.  Fill with isvd_options_default() and then override. */
struct isvd_options {
	size_t dim;            /* n ≥ 1, the row length */
	size_t rank;           /* k ≥ 1; factors reported have min(k, n) components */
	size_t extra;          /* p ≥ 0 components kept beyond k (default 10) */
	size_t max_block;      /* rows folded per block; longer calls are split.
	                          0 (the default) picks by dimension: 1024 for
	                          n ≤ 128 (a QR of the stacked block is cheapest
	                          there), 64 up to 4095 (Brand's core stays
	                          small), 128 from 4096 */
	int center;            /* non-zero: subtract the running (weighted) mean */
	double forget;         /* λ ∈ (0, 1]; 1 = no forgetting (default) */
	uint64_t reorth_every; /* re-orthogonalise V every this many rows; 0 = never
	                          (default 100000) */
	double rcond;          /* relative threshold (default 1e-12): components
	                          with σ ≤ rcond·σ_1 are dropped, and give 0 in
	                          U-coordinates */
	int mode;              /* enum isvd_mode (default AUTO).  In exact mode
	                          reorth_every is kept but unused (V is recomputed
	                          from R on every read) and max_block defaults to
	                          1024 for n ≤ 128, 256 above */
	size_t threads;        /* threads a truncated fold splits its n-sized
	                          products over (the caller's thread is one of
	                          them).  0 (the default) = auto: the machine's
	                          cores, at most 2, and 1 when the BLAS runs
	                          threads of its own (OpenBLAS with more than one:
	                          call openblas_set_num_threads(1), as isvdd
	                          does, for the engine's own split).  Results are
	                          bit-identical for a given count and agree to
	                          rounding across counts.  Truncated mode below
	                          n = 256 runs 1; exact mode splits a block's
	                          rows (TSQR) only when each part keeps at least
	                          8n rows, else runs 1.
	                          Not part of a saved image: a loaded model
	                          takes the default. */
	int missing;           /* enum isvd_missing (default REJECT).  IMPUTE:
	                          a NaN is a gap (±Inf stays an error); before a
	                          block is folded, each gap is filled from the
	                          model as it stands before the block, by
	                          probabilistic PCA's posterior mean over the
	                          kept components (missing.c), and the completed
	                          rows are folded.  A row with no observed value
	                          is refused (ISVD_ERR_GAPS).  Not part of a
	                          saved image: see isvd_model_set_missing(). */
};

/* Limits checked by isvd_model_create() and isvd_model_load(). */
#define ISVD_MAX_DIM   ((size_t)1 << 24)
#define ISVD_MAX_RANK  4096
#define ISVD_MAX_BLOCK 65536
#define ISVD_MAX_THREADS 64

struct isvd_model;

/* Summary of a model, as reported by `info`. */
struct isvd_info {
	size_t dim;                    /* n */
	size_t rank;                   /* components reported now: min(k, internal rank) */
	size_t rank_max;               /* min(k, n) */
	size_t rank_internal;          /* components kept, ≤ min(k + extra, n) */
	uint64_t rows_seen;            /* rows folded in since creation */
	double weight_total;           /* Σ w_t (= rows_seen when λ = 1) */
	double energy_total;           /* ‖weighted, centred A‖_F², exact */
	double energy_captured;        /* Σ_{i≤rank} σ_i² */
	double explained_energy_ratio; /* energy_captured / energy_total (0 if none) */
	double condition_number;       /* σ_1 / σ_rank (0 if rank = 0) */
	double orthogonality_error;    /* ‖VᵀV − I‖_F over the kept components */
	int center;                    /* options as created */
	double forget;
	uint64_t reorth_every;
	uint64_t reorth_count;         /* re-orthogonalisations done (0 in exact mode) */
	int mode;                      /* ISVD_MODE_EXACT or ISVD_MODE_TRUNCATED (resolved) */
	int missing;                   /* enum isvd_missing */
	uint64_t rows_with_gaps;       /* rows folded that had gaps, since creation or load */
	uint64_t values_imputed;       /* gaps filled in them */
};

/* Fills *o with the defaults above (dim and rank are 0 and must be set). */
void isvd_options_default(struct isvd_options *o);

/* Creates an empty model; all workspaces are allocated here, so updates
 * allocate nothing.  *out is set only on success; the caller owns it and
 * frees it with isvd_model_destroy(). */
int isvd_model_create(const struct isvd_options *o, struct isvd_model **out);

/* Frees the model.  destroy(NULL) is a no-op. */
void isvd_model_destroy(struct isvd_model *m);

/* Folds nrows rows (row-major, row i at rows + i*ld, ld ≥ dim) into the model
 * in blocks of at most max_block rows.  nrows = 0 is a no-op.
 * With missing = IMPUTE, NaN values are gaps (see isvd_options.missing) and
 * a row with no observed value makes the call fail with ISVD_ERR_GAPS.
 * All or nothing against bad input: if any value is non-finite, or so large
 * that the squares of the call's values could overflow the model's energy
 * (|x| around 1e150 and beyond), the call returns ISVD_ERR_NONFINITE and the
 * model is untouched.  Only on
 * ISVD_ERR_LAPACK (both SVD drivers failed on a finite core) may a prefix of
 * whole blocks have been applied; isvd_model_rows_seen() tells how many. */
int isvd_model_update(struct isvd_model *m, const double *rows, size_t nrows, size_t ld);

/* The admissibility rule of isvd_model_update(), for callers that check
 * input before it reaches the model (the daemon refuses a push whole).
 * A value is admissible when it is finite and |x| ≤ ISVD_MAX_MAGNITUDE;
 * isvd_first_inadmissible() returns the index of the first value of
 * x[0..n) that is not, or n when all are.  An update of admissible values
 * may still be refused as ISVD_ERR_NONFINITE when the squares of the whole
 * call, added to the model's energy, would overflow (rows × dim values of
 * that size): that depends on the model's state, so only the update can
 * tell, and it refuses the call whole. */
#define ISVD_MAX_MAGNITUDE 1e150
size_t isvd_first_inadmissible(const double *x, size_t n);

/* Changes the threads a model runs with (isvd_options.threads; 0 = auto),
 * e.g. for a loaded one, which starts with the default.  Resolved as at
 * creation.  ISVD_ERR_NOMEM (model unchanged) if the pool cannot be had. */
int isvd_model_set_threads(struct isvd_model *m, size_t threads);

/* Turns imputation of gaps on or off for a model (a loaded one starts with
 * REJECT); allocates the estimator's workspaces when turned on
 * (ISVD_ERR_NOMEM, model unchanged, if they cannot be had). */
int isvd_model_set_missing(struct isvd_model *m, int missing);

/* Number of observed (non-NaN) values among x[0..n). */
size_t isvd_row_observed(const double *x, size_t n);

/* Gap filling: out_i = row i with each NaN replaced by the model's estimate
 * (the same estimator an IMPUTE model applies before a fold) and every
 * observed value copied unchanged; row-major, ld = dim.  Works whatever the
 * model's missing setting.  ISVD_ERR_GAPS for a row with no observed
 * value, ISVD_ERR_NONFINITE for ±Inf; allocates scratch per call. */
int isvd_model_impute(const struct isvd_model *m, const double *rows, size_t nrows,
                      size_t ld, double *out);

/* ------------------------------------------------------------ monitoring
 * (monitor.c has the definitions in full.)  For a row x with scores
 * c = Vₖᵀ(x − μ): SPE = ‖(x − μ) − Vₖc‖² (the Q statistic) and
 * T² = Σ_{i≤k} c_i²/v_i, v_i = σ_i²/W (W = weight_total).  Rows with gaps
 * are completed as queries complete them; their SPE covers the observed
 * values only. */

/* SPE and T² of nrows rows against the model as it stands (spe and t2 get
 * nrows values each).  ISVD_ERR_NOT_READY before the first row; otherwise
 * the errors of isvd_model_project().  Allocates scratch per call. */
int isvd_model_scores(const struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                      double *spe, double *t2);

/* isvd_model_update() that also scores every row against the model as it
 * stood before the row's block (blocks of max_block rows): the statistics
 * a monitor flags a row by before the row changes the model.  Rows before
 * the model's first get NaN.  The scoring workspace (n·max_block +
 * k·max_block doubles) is allocated on the first call, or beforehand by
 * isvd_model_set_scoring(m, 1) (which also starts the scoring thread,
 * below); then this allocates nothing.  Exact mode finds the top
 * k of R once per block (refining the block before's basis, no SVD of R;
 * see monitor.c). */
int isvd_model_update_scored(struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                             double *spe, double *t2);
int isvd_model_set_scoring(struct isvd_model *m, int on);

/* What isvd_model_tail() tells of a model (see there). */
struct isvd_tail {
	size_t k;          /* the reported rank */
	double theta[3];   /* Σ_{j ≥ k} v_j^p, p = 1, 2, 3 */
	double weight;     /* W */
	double energy;
};

/* isvd_model_update_scored() that also fills *tail (may be NULL) with
 * isvd_model_tail() of the model the first block is scored against — the
 * figures its control limits come from — found with that block's scores
 * (the same basis; in exact mode on the scoring thread, see below).
 *
 * On a model of one thread, each block's scores (its basis and, for the
 * first, the tail) are computed on a second thread while the caller's
 * folds the block: the scorer reads copies of R (exact mode) or V and σ
 * (truncated) and of the mean, taken before the fold, so the scores are
 * those of the serial order bit for bit, and the fold does not wait for
 * them unless they take longer.
 * A block whose basis could not be found (an eigensolver failure) gets NaN
 * scores instead of failing an update whose fold has happened. */
int isvd_model_update_monitored(struct isvd_model *m, const double *rows, size_t nrows,
                                size_t ld, double *spe, double *t2, struct isvd_tail *tail);

/* sin of the largest principal angle between the row spaces of a and b,
 * k × n each with orthonormal rows (row-major, e.g. two isvd_model_factors
 * vt), from ‖b − (b aᵀ) a‖₂ (accurate for small angles). */
int isvd_subspace_sin(const double *a, const double *b, size_t k, size_t n, double *sin_max);

/* Stability of each reported component (count receives k): gap[i] =
 * min over its neighbours j (i ± 1 among the kept components; below the
 * last, the untracked energy per dimension) of |σ_i² − σ_j²|/σ_1²; stable[i]
 * when every such difference exceeds ISVD_STABILITY_FACTOR times the noise
 * in σ² of both (σ²·√(2/W), plus in truncated mode the energy not kept).
 * An unstable component's vector is not determined alone: only its span
 * with the neighbour it is close to is.  gap and stable hold k values (or
 * may be NULL). */
#define ISVD_STABILITY_FACTOR 3.0
int isvd_model_stability(const struct isvd_model *m, double *gap, int *stable, size_t *count);

/* All kept singular values (min(k + extra, n) at most; *r their count), the
 * total weight W and energy (weight_total and energy_total of
 * isvd_model_info, without its O(n·r²) orthogonality check), for
 * statistics over the components beyond k.  sigma, weight, energy may be
 * NULL. */
int isvd_model_kept(const struct isvd_model *m, double *sigma, size_t *r, double *weight,
                    double *energy);

/* What the SPE control limit is computed from: *k the reported rank, and
 * theta[p−1] = Σ_{j ≥ k} v_j^p (p = 1, 2, 3) over the variances v_j =
 * σ_j²/W of the components past the top k — in exact mode all n − k of
 * them, exactly (from R deflated by the top k, ~3n³ flops, no
 * eigensolver); in truncated mode the tracked ones past k plus the energy
 * not tracked spread evenly over the n − r directions left.  weight and
 * energy (may be NULL) as isvd_model_kept().  On a model with scoring on
 * (the engine's, between blocks) it uses, and keeps for the next block's
 * scores, the basis that block is scored against, and allocates nothing;
 * otherwise exact mode takes the SVD of R and allocates 2n² + 64n
 * doubles of scratch. */
int isvd_model_tail(const struct isvd_model *m, size_t *k, double theta[3], double *weight,
                    double *energy);

/* Re-orthogonalises V now (also done automatically every reorth_every rows;
 * a no-op in exact mode, whose V is recomputed from R). */
int isvd_model_reorthogonalize(struct isvd_model *m);

/* Simple accessors. */
size_t isvd_model_dim(const struct isvd_model *m);
size_t isvd_model_rank(const struct isvd_model *m);      /* reported components now (in exact
                                                            mode: after the SVD of R, which
                                                            this may compute) */
uint64_t isvd_model_rows_seen(const struct isvd_model *m);
/* The options the model runs with; max_block is the resolved block size,
 * never 0, and mode the resolved strategy, never AUTO. */
int isvd_model_options(const struct isvd_model *m, struct isvd_options *o);

/* Fills *info; computes the orthogonality error (O(n·r²)). */
int isvd_model_info(const struct isvd_model *m, struct isvd_info *info);

/* Copies out the reported factors.  sigma gets rank values (non-increasing);
 * vt gets rank rows of dim values (row-major, ld = dim): the right singular
 * vectors; mean gets dim values (zeros when centring is off).  Any pointer
 * may be NULL.  *rank (may be NULL) receives the count.  Buffers must hold
 * min(k, n) and min(k, n)·dim values. */
int isvd_model_factors(const struct isvd_model *m, double *sigma, double *vt,
                       double *mean, size_t *rank);

/* Projects nrows rows (row-major, ld ≥ dim) onto the reported factors.
 * coords (may be NULL) receives nrows × rank values row-major (ld = rank);
 * residual (may be NULL) receives ‖(x−μ) − VₖVₖᵀ(x−μ)‖₂ per row.
 * Queries take NaN as a gap whatever the model's missing setting: a row
 * with gaps is first completed, x̂ = isvd_model_impute()'s row (the
 * estimator a fold imputes with), and answered as x̂ would be, except that
 * its residual covers its observed values only; rows without gaps are
 * unaffected.  Returns ISVD_ERR_NOT_READY before the first row,
 * ISVD_ERR_NONFINITE on ±Inf (or magnitudes above ISVD_MAX_MAGNITUDE),
 * ISVD_ERR_GAPS for a row with no observed value.  Allocates scratch
 * proportional to dim per call. */
int isvd_model_project(const struct isvd_model *m, const double *rows, size_t nrows,
                       size_t ld, enum isvd_space space, double *coords, double *residual);

/* Reconstructs nrows rows: out_i = μ + VₖVₖᵀ(x_i − μ), row-major (ld = dim);
 * for a row with gaps, of its completion x̂ (see isvd_model_project).
 * To fill only the gaps, keeping the observed values, use
 * isvd_model_impute(). */
int isvd_model_reconstruct(const struct isvd_model *m, const double *rows, size_t nrows,
                           size_t ld, double *out);

/* A read-only copy of what the readers below use (σ, V, μ, totals,
 * options), for answering queries on another thread while this model keeps
 * updating.  *out is a model that isvd_model_info/factors/project/
 * reconstruct/rank/rows_seen/dim/options accept and that refuses updates,
 * re-orthogonalisation and save (ISVD_ERR_INVALID).  Costs one copy of the
 * n×r basis — in exact mode with rows not yet decomposed, one copy of R
 * instead, whose SVD the snapshot's first reader computes (so a snapshot
 * after every block stays O(n²)).  The caller frees it with
 * isvd_model_destroy(). */
int isvd_model_snapshot(const struct isvd_model *m, struct isvd_model **out);

/* Saved images: magic "ISVDMODL", format version, the complete state in
 * little-endian, and a CRC32C over everything before it.  Loading checks
 * every field and the CRC and never returns a half-loaded model. */
size_t isvd_model_saved_size(const struct isvd_model *m);
/* Writes the image into buf (cap bytes); *len receives its size.
 * ISVD_ERR_TOO_LARGE if cap is too small (nothing meaningful written). */
int isvd_model_save(const struct isvd_model *m, void *buf, size_t cap, size_t *len);
/* Creates a model from an image; *out is set only on success. */
int isvd_model_load(const void *buf, size_t len, struct isvd_model **out);

/* Merging (merge.c): the model of the union of several streams, from the
 * models of each, without their rows.  Rows keep the weights they had in
 * their own model (with forgetting, each input's rows stay as old as they
 * were there); the weights, rows seen, energy and mean combine exactly.
 *   exact      the QR of the stacked triangles [R_1; …; R_P; C] (dtpqrt):
 *              σ and V equal the SVD of all rows to rounding.
 *   truncated  the SVD of the stacked [Σ_1V_1ᵀ; …; Σ_PV_Pᵀ; C], truncated
 *              to k + extra components: as approximate as each input, plus
 *              what this truncation drops.
 * C holds, when the models centre, one mean-correction row per input,
 * √w_i·(μ_i − μ) with μ = Σ w_iμ_i / Σ w_i (for two models their scatter is
 * that of the one row √(w_1w_2/(w_1+w_2))·(μ_1 − μ_2)).  The energy total
 * stays exact (it is tracked apart from the factors), so `info`'s explained
 * energy ratio is exact too.  Models that have seen no rows add nothing.
 *
 * Every input must have the same dimension, mode (resolved: exact or
 * truncated), centring, rank, extra, forgetting factor and rcond:
 * otherwise ISVD_ERR_MISMATCH, and isvd_model_merge_check() names the
 * setting.  The result takes max_block, reorth_every, threads and the
 * missing-value setting of in[0]; rows seen, rows with gaps, values
 * imputed and re-orthogonalisation counts are the inputs' sums.  Inputs
 * are read only (an exact-mode input may compute its cached SVD);
 * snapshots are refused (ISVD_ERR_INVALID).  *out is set only on success;
 * the caller owns it.  Commutative and associative to rounding. */
int isvd_model_merge(const struct isvd_model *const *in, size_t count,
                     struct isvd_model **out);
/* ISVD_OK when a and b may be merged; else ISVD_ERR_MISMATCH with *what
 * (may be NULL) the setting that differs ("dimension", "mode",
 * "centring", "rank", "extra", "forgetting factor", "rcond"), static text. */
int isvd_model_merge_check(const struct isvd_model *a, const struct isvd_model *b,
                           const char **what);

#ifdef __cplusplus
}
#endif
#endif /* ISVD_MODEL_H */
