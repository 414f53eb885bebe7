/*
 * model.c — the model's life cycle, input checks, accessors and queries.
 *
 * Everything here is independent of the update strategy: it chooses the
 * strategy (upd_choose_mode), validates what enters, hands finite blocks to
 * the strategy (truncated.c or exact.c), and reads the reported top-k
 * factors out of the state for queries — after upd_exact_refresh() in exact
 * mode.  Queries allocate scratch per call (bounded by QUERY_CHUNK rows);
 * updates allocate nothing.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "internal.h"
#include "par.h"

#define AT(a, ld, i, j) ((a)[(size_t)(j) * (ld) + (i)])

/* Rows per chunk of a query: bounds query scratch to O(n·QUERY_CHUNK). */
#define QUERY_CHUNK 256

/* Doubles the workspaces of a model may total before creation refuses with
 * ISVD_ERR_TOO_LARGE (2^34 doubles = 128 GiB). */
#define MAX_TOTAL_DOUBLES ((size_t)1 << 34)

void isvd_options_default(struct isvd_options *o)
{
	memset(o, 0, sizeof *o);
	o->extra = 10;
	o->max_block = 0;  /* auto, see upd_block_size() */
	o->forget = 1.0;
	o->reorth_every = 100000;
	o->rcond = 1e-12;
	o->mode = ISVD_MODE_AUTO;
}

const char *isvd_mode_name(int mode)
{
	switch (mode) {
	case ISVD_MODE_AUTO: return "auto";
	case ISVD_MODE_EXACT: return "exact";
	case ISVD_MODE_TRUNCATED: return "truncated";
	default: return NULL;
	}
}

int upd_validate_options(const struct isvd_options *o)
{
	if (!o)
		return ISVD_ERR_INVALID;
	if (o->dim < 1 || o->dim > ISVD_MAX_DIM)
		return ISVD_ERR_INVALID;
	if (o->rank < 1 || o->rank > ISVD_MAX_RANK || o->extra > ISVD_MAX_RANK)
		return ISVD_ERR_INVALID;
	if (o->max_block > ISVD_MAX_BLOCK)
		return ISVD_ERR_INVALID;
	if (!(o->forget > 0 && o->forget <= 1))  /* also refuses NaN */
		return ISVD_ERR_INVALID;
	if (!(o->rcond >= 0 && o->rcond < 1))
		return ISVD_ERR_INVALID;
	if (o->mode != ISVD_MODE_AUTO && o->mode != ISVD_MODE_EXACT && o->mode != ISVD_MODE_TRUNCATED)
		return ISVD_ERR_INVALID;
	if (o->missing != ISVD_MISSING_REJECT && o->missing != ISVD_MISSING_IMPUTE)
		return ISVD_ERR_INVALID;
	if (o->threads > ISVD_MAX_THREADS)
		return ISVD_ERR_INVALID;
	return ISVD_OK;
}

/*
 * The strategy `auto` resolves to for dimension n, rank k and extra p: the
 * cheaper per row by a cost model fitted (least squares on relative error)
 * to isvd-bench on the 2-core reference machine: centred rows, 10,000 a
 * run, default block sizes, the engine's default threads (2), one BLAS
 * thread, n = 256…1000 and k = 8, 50, 100 (`isvd-bench --mode both`):
 *   exact      ≈ 1.53e-10·n² s per row (dtpqrt's 2n² flops, and the one
 *              SVD of R that reading the factors costs, over 10,000 rows);
 *              measured 8.9–11.3 µs at n = 256, 35–42 at 512, 150–154 at
 *              1000;
 *   truncated  ≈ 6.27e-10·(m+64)³/64 + 2.90e-10·n·(m+64) s per row with
 *              m = min(k + p, n) (the core of a 64-row block, and the
 *              n-sized products), within 15% of the measurements but at
 *              n = 256, k = 8 (17.9 µs measured, 11.5 predicted).
 * The curves cross near n ≈ 290 for k = 8, 490 for k = 50 and 780 for
 * k = 100 (p = 10).  Exact mode also needs ~3n² doubles, so auto never
 * picks it above n = 4096.
 */
static int upd_choose_mode(size_t n, size_t k, size_t p)
{
	if (n > 4096)
		return ISVD_MODE_TRUNCATED;
	const double dn = (double)n;
	const double m = (double)(k + p < n ? k + p : n) + 64.0;
	const double t_exact = 1.53e-10 * dn * dn;
	const double t_trunc = 6.27e-10 * m * m * m / 64.0 + 2.90e-10 * dn * m;
	return t_exact <= t_trunc ? ISVD_MODE_EXACT : ISVD_MODE_TRUNCATED;
}

/* a·b, or SIZE_MAX on overflow. */
static size_t mul_sat(size_t a, size_t b)
{
	return (b && a > SIZE_MAX / b) ? SIZE_MAX : a * b;
}

static size_t add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Rows per block when the caller left max_block at 0.  Measured with
 * isvd-bench on the 2-core reference machine: for n ≤ 128 the direct path
 * (QR of the stacked block) gains up to ~1024 rows; above, Brand's core
 * (r + b)³ grows faster than the per-block costs shrink past b ≈ 48–128,
 * flat between 48 and 128 at n = 1000; at n ≥ 4096 the n-sized products
 * dominate and 128 is faster with two BLAS threads and more accurate
 * (fewer truncations per row). */
static size_t upd_block_size(size_t n, int mode)
{
	if (n <= 128)
		return 1024;
	if (mode == ISVD_MODE_EXACT)   /* dtpqrt's cost per row does not depend on
	                                  the block; larger blocks run more of it
	                                  as BLAS-3 */
		return 256;
	return n >= 4096 ? 128 : 64;
}

/* OpenBLAS's thread count, when the BLAS linked is OpenBLAS (a weak
 * reference: other CBLAS libraries leave it NULL). */
extern int openblas_get_num_threads(void) __attribute__((weak));

/* The thread count `threads` resolves to (0 = auto: the machine's cores,
 * at most 2 — the n-sized products of a fold do not scale further on the
 * sizes measured — and 1 when the BLAS runs threads of its own, which would
 * compete with ours for the same cores). */
static size_t resolve_threads(size_t threads)
{
	if (threads)
		return threads;
	if (openblas_get_num_threads && openblas_get_num_threads() > 1)
		return 1;
	const long cores = sysconf(_SC_NPROCESSORS_ONLN);
	return cores >= 2 ? 2 : 1;
}

/* The thread count a model of m's shape runs with `threads` asked for. */
static size_t threads_for(const struct isvd_model *m, size_t threads)
{
	if (m->mode == ISVD_MODE_EXACT)
		return upd_exact_parts(m->n, m->B, resolve_threads(threads));
	return m->n < UPD_PAR_MIN_DIM ? 1 : resolve_threads(threads);
}

/* Doubles each part ≥ 1 of the pool needs in part_buf (0: a workspace
 * query failed). */
static size_t part_len_of(const struct isvd_model *m)
{
	const size_t q = m->B + 1 < m->n ? m->B + 1 : m->n;

	if (m->mode == ISVD_MODE_EXACT)
		return upd_exact_part_len(m);
	return m->m * q + q * q;   /* VᵀY and YᵀY; the core path's bb ≤ q */
}

/* Sizes, allocates and fills the truncated strategy's workspaces. */
static int alloc_truncated(struct isvd_model *m)
{
	const size_t n = m->n, B = m->B, mm = m->m, s = m->s, c = m->c;
	const size_t q = B + 1 < n ? B + 1 : n;  /* residual columns on the core path */

	m->Vnew = calloc(n * mm, sizeof *m->Vnew);
	m->P = calloc(mm * (B + 1), sizeof *m->P);
	m->P2 = calloc(mm * (B + 1), sizeof *m->P2);
	m->R = calloc(q * q, sizeof *m->R);
	m->R2 = calloc(q * q, sizeof *m->R2);
	m->K = calloc(s * c, sizeof *m->K);
	m->tau = calloc(s, sizeof *m->tau);
	m->hv = calloc(B, sizeof *m->hv);
	m->W = calloc(s * mm, sizeof *m->W);
	m->G = calloc(q * mm, sizeof *m->G);
	m->eig_d = calloc(s, sizeof *m->eig_d);
	m->eig_e = calloc(s, sizeof *m->eig_e);
	m->iwork = calloc(upd_truncated_liwork(m), sizeof *m->iwork);
	if (!m->Vnew || !m->P || !m->P2 || !m->R || !m->R2 || !m->K || !m->tau || !m->hv ||
	    !m->W || !m->G || !m->eig_d || !m->eig_e || !m->iwork)
		return ISVD_ERR_NOMEM;
	return upd_truncated_workspace(m);
}

/* Sizes, allocates and fills the exact strategy's workspaces. */
static int alloc_exact(struct isvd_model *m)
{
	const size_t n = m->n, B = m->B;

	m->Rt = calloc(n * n, sizeof *m->Rt);
	m->K = calloc(n * n, sizeof *m->K);
	m->Bt = calloc((B + 1) * n, sizeof *m->Bt);
	m->Tq = calloc(m->nb * n, sizeof *m->Tq);
	m->hv = calloc(B, sizeof *m->hv);
	m->iwork = calloc(8 * m->c, sizeof *m->iwork);
	if (!m->Rt || !m->K || !m->Bt || !m->Tq || !m->hv || !m->iwork)
		return ISVD_ERR_NOMEM;
	return upd_exact_workspace(m);
}

int upd_alloc(const struct isvd_options *o, struct isvd_model **out)
{
	struct isvd_model *m;
	int err = upd_validate_options(o);

	if (err)
		return err;
	const size_t n = o->dim;
	const int mode = o->mode == ISVD_MODE_AUTO ? upd_choose_mode(n, o->rank, o->extra) : o->mode;
	const size_t B = o->max_block ? o->max_block : upd_block_size(n, mode);
	const size_t kmax = o->rank < n ? o->rank : n;
	const size_t mm = o->rank + o->extra < n ? o->rank + o->extra : n;
	const size_t s = mm + B + 1;
	const size_t c = mode == ISVD_MODE_EXACT ? n : (s < n ? s : n);
	const size_t q = B + 1 < n ? B + 1 : n;

	/* V: nm; Y: n(B+1); Kcopy, VT: 2c²; vectors; then per strategy —
	 * truncated: Vnew nm, P, P2 2m(B+1), R, R2 2q², K sc;
	 * exact: Rt, K 2n², Bt n(B+1), Tq nb·n. */
	size_t total = mul_sat(n, mm);
	total = add_sat(total, mul_sat(n, B + 1));
	total = add_sat(total, mul_sat(2 * c, c));
	total = add_sat(total, 4 * n + s + s + B);
	if (mode == ISVD_MODE_EXACT) {
		total = add_sat(total, mul_sat(2 * n, n));
		total = add_sat(total, mul_sat(n, B + 1));
		total = add_sat(total, mul_sat(32, n));
	} else {
		total = add_sat(total, mul_sat(n, mm));
		total = add_sat(total, mul_sat(2 * mm, B + 1));
		total = add_sat(total, mul_sat(2 * q, q));
		total = add_sat(total, mul_sat(s, c));
		total = add_sat(total, mul_sat(s + q, mm));      /* W, G */
		total = add_sat(total, mul_sat(2, s) + 2 * B + 1); /* eig_d, eig_e, hv */
		total = add_sat(total, mul_sat(2 * (q + 1), mm + q + 1));  /* part_buf, ≤ 2 parts */
	}
	if (total > MAX_TOTAL_DOUBLES)
		return ISVD_ERR_TOO_LARGE;

	m = calloc(1, sizeof *m);
	if (!m)
		return ISVD_ERR_NOMEM;
	m->n = n;
	m->k = o->rank;
	m->p = o->extra;
	m->kmax = kmax;
	m->m = mm;
	m->B = B;
	m->s = s;
	m->c = c;
	m->nb = n < 32 ? n : 32;
	m->center = o->center != 0;
	m->forget = o->forget;
	m->reorth_every = o->reorth_every;
	m->rcond = o->rcond;
	m->mode = mode;
	m->eig_max_cond = UPD_EIG_MAX_COND;
	m->threads = 1;   /* no pool yet: isvd_model_set_threads() below */

	m->V = calloc(n * mm, sizeof *m->V);
	m->sigma = calloc(mm, sizeof *m->sigma);
	m->mean = m->center ? calloc(n, sizeof *m->mean) : NULL;
	m->Y = calloc(n * (B + 1), sizeof *m->Y);
	m->Kcopy = calloc(c * c, sizeof *m->Kcopy);
	m->VT = calloc(c * c, sizeof *m->VT);
	m->svals = calloc(c, sizeof *m->svals);
	m->dw = calloc(B, sizeof *m->dw);
	m->mu_b = calloc(n, sizeof *m->mu_b);
	m->mu_new = calloc(n, sizeof *m->mu_new);
	if (!m->V || !m->sigma || (m->center && !m->mean) || !m->Y || !m->Kcopy || !m->VT ||
	    !m->svals || !m->dw || !m->mu_b || !m->mu_new) {
		err = ISVD_ERR_NOMEM;
		goto fail;
	}
	err = mode == ISVD_MODE_EXACT ? alloc_exact(m) : alloc_truncated(m);
	if (err)
		goto fail;
	m->work = calloc(m->lwork, sizeof *m->work);
	if (!m->work) {
		err = ISVD_ERR_NOMEM;
		goto fail;
	}
	if ((err = isvd_model_set_threads(m, o->threads)) ||
	    (err = isvd_model_set_missing(m, o->missing)))
		goto fail;
	*out = m;
	return ISVD_OK;
fail:
	isvd_model_destroy(m);
	return err;
}

int isvd_model_create(const struct isvd_options *o, struct isvd_model **out)
{
	if (!out)
		return ISVD_ERR_INVALID;
	return upd_alloc(o, out);
}

void isvd_model_destroy(struct isvd_model *m)
{
	if (!m)
		return;
	free(m->V);
	free(m->Vnew);
	free(m->sigma);
	free(m->mean);
	free(m->Y);
	free(m->P);
	free(m->P2);
	free(m->R);
	free(m->R2);
	free(m->K);
	free(m->Kcopy);
	free(m->VT);
	free(m->svals);
	free(m->tau);
	free(m->dw);
	free(m->mu_b);
	free(m->mu_new);
	free(m->work);
	free(m->iwork);
	free(m->Rt);
	free(m->Bt);
	free(m->Tq);
	free(m->hv);
	free(m->W);
	free(m->G);
	free(m->eig_d);
	free(m->eig_e);
	free(m->part_buf);
	upd_score_fini(m);   /* its thread first: it may be scoring with the pool's part */
	upd_pool_destroy(m->pool);
	free(m->Xb);
	upd_imp_fini(&m->imp);
	free(m);
}

int isvd_model_set_threads(struct isvd_model *m, size_t threads)
{
	struct upd_pool *pool = NULL;
	double *buf = NULL;

	if (!m || m->frozen || threads > ISVD_MAX_THREADS)
		return ISVD_ERR_INVALID;
	const size_t want = threads_for(m, threads);
	if (want == m->threads)
		return ISVD_OK;
	const size_t len = part_len_of(m);
	if (want > 1) {
		if (len == 0)
			return ISVD_ERR_INVALID;
		buf = calloc((want - 1) * len, sizeof *buf);
		if (!buf || upd_pool_create(want, -1, &pool) != 0) {
			free(buf);
			return ISVD_ERR_NOMEM;
		}
	}
	upd_pool_destroy(m->pool);
	free(m->part_buf);
	m->pool = pool;
	m->part_buf = buf;
	m->part_len = len;
	m->threads = want;
	upd_score_thread(m);   /* scores aside on one thread, split over more */
	return ISVD_OK;
}

int isvd_model_set_missing(struct isvd_model *m, int missing)
{
	if (!m || m->frozen || (missing != ISVD_MISSING_REJECT && missing != ISVD_MISSING_IMPUTE))
		return ISVD_ERR_INVALID;
	if (missing == ISVD_MISSING_IMPUTE && !m->Xb) {
		struct upd_imp w;
		double *xb = malloc(m->B * m->n * sizeof *xb);
		const int exact = m->mode == ISVD_MODE_EXACT;
		const int with_q = exact || m->n <= m->B;
		if (!xb || upd_imp_init(&w, m->n, m->m, with_q, exact, with_q ? 0 : m->B) != ISVD_OK) {
			free(xb);
			return ISVD_ERR_NOMEM;
		}
		m->Xb = xb;
		m->imp = w;
	}
	m->missing = missing;
	return ISVD_OK;
}

int isvd_model_snapshot(const struct isvd_model *m, struct isvd_model **out)
{
	struct isvd_model *s;
	size_t cols;

	if (!m || !out)
		return ISVD_ERR_INVALID;
	/* Exact mode with new rows: copy R and leave its SVD to the snapshot's
	 * first reader (upd_exact_refresh on the copy), so that taking a
	 * snapshot after every block costs an n² copy, not an n³ SVD. */
	const int lazy = m->mode == ISVD_MODE_EXACT && m->stale;
	/* R goes along in exact mode even when its SVD is fresh: the tail of
	 * the spectrum past the kept values (isvd_model_tail) is read from it */
	const int keep_r = m->mode == ISVD_MODE_EXACT && m->Rt;
	if (!(s = calloc(1, sizeof *s)))
		return ISVD_ERR_NOMEM;
	/* the scalars (options, totals, r); then the arrays readers use */
	*s = *m;
	s->V = s->Vnew = s->sigma = s->mean = s->Y = s->P = s->P2 = s->R = s->R2 = NULL;
	s->K = s->Kcopy = s->VT = s->svals = s->tau = s->dw = s->mu_b = s->mu_new = NULL;
	s->work = s->Rt = s->Bt = s->Tq = NULL;
	s->hv = s->W = s->G = s->eig_d = s->eig_e = s->part_buf = NULL;
	s->pool = NULL;
	s->threads = 1;
	s->Xb = NULL;
	memset(&s->imp, 0, sizeof s->imp);
	s->score_x = s->score_c = NULL;
	memset(&s->score_eig, 0, sizeof s->score_eig);
	s->sq = s->sy = s->sb = s->sw = s->stau = s->swork = NULL;
	s->sq_ok = 0;
	s->sbasis_ok = 0;
	s->sbV = s->sbsigma = NULL;
	s->stail = NULL;
	s->spool = NULL;
	s->sRt = s->sV = s->ssigma = s->smean = NULL;
	s->iwork = NULL;
	s->stale = lazy;
	s->frozen = 1;
	cols = lazy ? m->m : m->r;
	s->V = malloc((cols ? cols : 1) * m->n * sizeof *s->V);
	s->sigma = malloc((cols ? cols : 1) * sizeof *s->sigma);
	s->mean = m->center ? malloc(m->n * sizeof *s->mean) : NULL;
	s->Rt = keep_r ? malloc(m->n * m->n * sizeof *s->Rt) : NULL;
	if (!s->V || !s->sigma || (m->center && !s->mean) || (keep_r && !s->Rt)) {
		isvd_model_destroy(s);
		return ISVD_ERR_NOMEM;
	}
	if (keep_r)
		memcpy(s->Rt, m->Rt, m->n * m->n * sizeof *s->Rt);
	if (!lazy) {
		memcpy(s->V, m->V, m->r * m->n * sizeof *s->V);
		memcpy(s->sigma, m->sigma, m->r * sizeof *s->sigma);
	}
	if (m->center)
		memcpy(s->mean, m->mean, m->n * sizeof *s->mean);
	*out = s;
	return ISVD_OK;
}

/* Readers of σ, V and r take a const model; in exact mode they first bring
 * the cached SVD of R up to date.  Models are never defined const (they are
 * heap objects from create/load), so writing the cache through this cast is
 * well defined; it is why even const calls must be serialised (see the
 * header). */
static int refresh(const struct isvd_model *m)
{
	if (m->mode != ISVD_MODE_EXACT || !m->stale)
		return ISVD_OK;
	return upd_exact_refresh((struct isvd_model *)m);
}

int upd_refresh(const struct isvd_model *m)
{
	return refresh(m);
}

void upd_sign_normalise(struct isvd_model *m)
{
	for (size_t j = 0; j < m->r; j++) {
		double *v = m->V + j * m->n;
		/* idamax: the first index of the largest |v_i|, as the convention
		 * asks (lowest index on ties), vectorised by the BLAS */
		const size_t best = cblas_idamax((int)m->n, v, 1);
		if (v[best] < 0)
			cblas_dscal((int)m->n, -1.0, v, 1);
	}
}

/*
 * ISVD_OK when every one of nrows rows (ld apart) is finite and small enough
 * that nothing computed from them can overflow: the squares of the call's
 * values (×4 for centring, which can double a difference), summed over the
 * call and added to the energy already held, must stay below DBL_MAX/4.
 * Every value must be admissible (|x| ≤ ISVD_MAX_MAGNITUDE, the rule
 * isvd_first_inadmissible() exports); beyond it, or when the call's
 * squares would overflow the energy, the call is refused as
 * ISVD_ERR_NONFINITE, whole.  With
 * gaps = 1 a NaN is a gap, not an error (±Inf still is), and a row without
 * an observed value is ISVD_ERR_GAPS; *has_gaps (may be NULL) tells whether
 * any row had one.
 */
static int check_rows_gaps(const struct isvd_model *m, const double *rows, size_t nrows,
                           size_t ld, int gaps, int *has_gaps)
{
	double amax = 0;
	int any = 0;

	if (has_gaps)
		*has_gaps = 0;
	if (nrows == 0)
		return ISVD_OK;
	if (!rows)
		return ISVD_ERR_INVALID;
	if (ld < m->n)
		return ISVD_ERR_DIM;
	for (size_t i = 0; i < nrows; i++) {
		const double *x = rows + i * ld;
		size_t seen = 0;
		for (size_t j = 0; j < m->n; j++) {
			const double a = fabs(x[j]);
			if (!(a <= DBL_MAX)) {   /* NaN or ±Inf */
				if (!gaps || !isnan(x[j]))
					return ISVD_ERR_NONFINITE;
				any = 1;
				continue;
			}
			seen++;
			amax = a > amax ? a : amax;
		}
		if (seen == 0)
			return ISVD_ERR_GAPS;
	}
	if (amax > ISVD_MAX_MAGNITUDE)  /* the exported rule, isvd_first_inadmissible() */
		return ISVD_ERR_NONFINITE;
	const double need = 4.0 * (double)m->n * (double)nrows * amax * amax;
	if (!(m->energy + need < DBL_MAX / 4))
		return ISVD_ERR_NONFINITE;
	if (has_gaps)
		*has_gaps = any;
	return ISVD_OK;
}

/* Whether any of the b rows (ld apart) has a NaN. */
static int block_has_gaps(const struct isvd_model *m, const double *rows, size_t b, size_t ld)
{
	for (size_t i = 0; i < b; i++)
		if (isvd_row_observed(rows + i * ld, m->n) < m->n)
			return 1;
	return 0;
}

/* The body of update and update_scored: blocks of at most B rows, each
 * completed (gaps), scored against the model before it (spe and t2 not
 * NULL, scoring workspace allocated; tail, if not NULL, for the first) and
 * folded. */
static int update_blocks(struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                         double *spe, double *t2, struct isvd_tail *tail)
{
	int err, gaps;

	if (!m || m->frozen)
		return ISVD_ERR_INVALID;
	err = check_rows_gaps(m, rows, nrows, ld, m->missing == ISVD_MISSING_IMPUTE, &gaps);
	if (err)
		return err;
	for (size_t i = 0; i < nrows; i += m->B) {
		const size_t b = nrows - i < m->B ? nrows - i : m->B;
		const double *x = rows + i * ld;
		size_t xld = ld;
		uint64_t filled = 0, filled_rows = 0;
		if (gaps && block_has_gaps(m, x, b, ld)) {
			/* the block completed from the model before it (missing.c) */
			if ((err = upd_impute_block(m, x, b, ld, &filled, &filled_rows)))
				return err;
			x = m->Xb;
			xld = m->n;
		}
		if (spe)
			err = upd_score_fold(m, x, xld, rows + i * ld, ld, b, spe + i, t2 + i,
			                     i == 0 ? tail : NULL);
		else
			err = m->mode == ISVD_MODE_EXACT ? upd_exact_fold(m, x, b, xld)
			                                 : upd_truncated_fold(m, x, b, xld);
		m->sbasis_ok = 0;   /* the scoring basis was the model's before this block */
		if (err)
			return err;
		m->rows_with_gaps += filled_rows;
		m->values_imputed += filled;
	}
	return ISVD_OK;
}

int isvd_model_update(struct isvd_model *m, const double *rows, size_t nrows, size_t ld)
{
	return update_blocks(m, rows, nrows, ld, NULL, NULL, NULL);
}

int isvd_model_update_scored(struct isvd_model *m, const double *rows, size_t nrows, size_t ld,
                             double *spe, double *t2)
{
	return isvd_model_update_monitored(m, rows, nrows, ld, spe, t2, NULL);
}

int isvd_model_update_monitored(struct isvd_model *m, const double *rows, size_t nrows,
                                size_t ld, double *spe, double *t2, struct isvd_tail *tail)
{
	int err;

	if (!m || (nrows && (!spe || !t2)))
		return ISVD_ERR_INVALID;
	if (!m->score_x && (err = isvd_model_set_scoring(m, 1)))
		return err;
	if (tail && nrows == 0)   /* no block: the model as it stands */
		return isvd_model_tail(m, &tail->k, tail->theta, &tail->weight, &tail->energy);
	return update_blocks(m, rows, nrows, ld, spe, t2, tail);
}

int isvd_model_reorthogonalize(struct isvd_model *m)
{
	if (!m || m->frozen)
		return ISVD_ERR_INVALID;
	if (m->mode == ISVD_MODE_EXACT)
		return ISVD_OK;   /* V is recomputed from R on every read */
	return upd_reorthogonalise(m);
}

size_t isvd_model_dim(const struct isvd_model *m) { return m ? m->n : 0; }

size_t isvd_model_rank(const struct isvd_model *m)
{
	if (!m)
		return 0;
	refresh(m);   /* on failure the last computed rank stands */
	return m->r < m->kmax ? m->r : m->kmax;
}

uint64_t isvd_model_rows_seen(const struct isvd_model *m) { return m ? m->rows_seen : 0; }

int isvd_model_options(const struct isvd_model *m, struct isvd_options *o)
{
	if (!m || !o)
		return ISVD_ERR_INVALID;
	isvd_options_default(o);
	o->dim = m->n;
	o->rank = m->k;
	o->extra = m->p;
	o->max_block = m->B;
	o->center = m->center;
	o->forget = m->forget;
	o->reorth_every = m->reorth_every;
	o->rcond = m->rcond;
	o->mode = m->mode;
	o->threads = m->threads;
	o->missing = m->missing;
	return ISVD_OK;
}

int isvd_model_info(const struct isvd_model *m, struct isvd_info *info)
{
	if (!m || !info)
		return ISVD_ERR_INVALID;
	int err = refresh(m);
	if (err)
		return err;
	const size_t kr = isvd_model_rank(m);

	memset(info, 0, sizeof *info);
	info->mode = m->mode;
	info->dim = m->n;
	info->rank = kr;
	info->rank_max = m->kmax;
	info->rank_internal = m->r;
	info->rows_seen = m->rows_seen;
	info->weight_total = m->weight;
	info->energy_total = m->energy;
	for (size_t i = 0; i < kr; i++)
		info->energy_captured += m->sigma[i] * m->sigma[i];
	if (m->energy > 0) {
		info->explained_energy_ratio = info->energy_captured / m->energy;
		if (info->explained_energy_ratio > 1)  /* rounding */
			info->explained_energy_ratio = 1;
	}
	if (kr > 0)
		info->condition_number = m->sigma[0] / m->sigma[kr - 1];
	info->center = m->center;
	info->forget = m->forget;
	info->reorth_every = m->reorth_every;
	info->reorth_count = m->reorth_count;
	info->missing = m->missing;
	info->rows_with_gaps = m->rows_with_gaps;
	info->values_imputed = m->values_imputed;

	return upd_orthogonality_error(m, &info->orthogonality_error);
}

int upd_orthogonality_error(const struct isvd_model *m, double *out)
{
	const size_t r = m->r;
	double *g, acc = 0;

	*out = 0;
	if (r == 0)
		return ISVD_OK;
	g = malloc(r * r * sizeof *g);
	if (!g)
		return ISVD_ERR_NOMEM;
	cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)r, (int)m->n, 1.0,
	            m->V, (int)m->n, m->V, (int)m->n, 0.0, g, (int)r);
	for (size_t j = 0; j < r; j++)
		for (size_t i = 0; i < r; i++) {
			const double d = AT(g, r, i, j) - (i == j ? 1.0 : 0.0);
			acc += d * d;
		}
	*out = sqrt(acc);
	free(g);
	return ISVD_OK;
}

int isvd_model_factors(const struct isvd_model *m, double *sigma, double *vt,
                       double *mean, size_t *rank)
{
	if (!m)
		return ISVD_ERR_INVALID;
	int err = refresh(m);
	if (err)
		return err;
	const size_t kr = isvd_model_rank(m), n = m->n;

	if (sigma)
		memcpy(sigma, m->sigma, kr * sizeof *sigma);
	if (vt)  /* row i of Vᵀ is column i of V: contiguous in column-major */
		memcpy(vt, m->V, kr * n * sizeof *vt);
	if (mean) {
		if (m->center)
			memcpy(mean, m->mean, n * sizeof *mean);
		else
			memset(mean, 0, n * sizeof *mean);
	}
	if (rank)
		*rank = kr;
	return ISVD_OK;
}

/* ‖x‖₂ of n values, scaled so that no square overflows or underflows
 * whatever the BLAS's dnrm2 does (kernels differ in whether they scale). */
static double norm2(const double *x, size_t n)
{
	double amax = 0, acc = 0;

	for (size_t i = 0; i < n; i++)
		amax = fabs(x[i]) > amax ? fabs(x[i]) : amax;
	if (amax == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const double y = x[i] / amax;
		acc += y * y;
	}
	return amax * sqrt(acc);
}

/*
 * Shared body of project and reconstruct.  For each chunk of rows: xc = x − μ
 * (column-major n × c, zero at gaps), scores = Vₖᵀxc, then either the
 * residual ‖xc − Vₖ scores‖ or the reconstruction μ + Vₖ scores.
 * A row with gaps (NaN) is first completed by the estimator a fold would
 * impute it with (missing.c), then answered as a complete row, except that
 * its residual covers the observed values only; rows without gaps are
 * computed exactly as before gaps existed.
 */
static int project_rows(const struct isvd_model *m, const double *rows, size_t nrows,
                        size_t ld, enum isvd_space space, double *coords,
                        double *residual, double *recon)
{
	const size_t n = m->n;
	struct upd_imp w = { 0 };
	size_t kr;
	double *xc = NULL, *sc = NULL, *fill = NULL;
	int err, gaps = 0, have_w = 0;

	if (m->rows_seen == 0)
		return ISVD_ERR_NOT_READY;
	if (space != ISVD_SPACE_SCORES && space != ISVD_SPACE_U)
		return ISVD_ERR_INVALID;
	err = refresh(m);
	if (err)
		return err;
	kr = isvd_model_rank(m);
	err = check_rows_gaps(m, rows, nrows, ld, 1, &gaps);
	if (err || nrows == 0)
		return err;
	const size_t chunk = nrows < QUERY_CHUNK ? nrows : QUERY_CHUNK;
	xc = malloc(n * chunk * sizeof *xc);
	sc = malloc((kr ? kr : 1) * chunk * sizeof *sc);
	if (!xc || !sc) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	if (gaps) {
		if ((err = upd_imp_query_init(m, &w)))
			goto out;
		have_w = 1;
		if (!(fill = malloc(n * sizeof *fill))) {
			err = ISVD_ERR_NOMEM;
			goto out;
		}
	}
	for (size_t i0 = 0; i0 < nrows; i0 += chunk) {
		const size_t c = nrows - i0 < chunk ? nrows - i0 : chunk;
		for (size_t i = 0; i < c; i++) {
			const double *x = rows + (i0 + i) * ld;
			size_t nm = 0;
			if (gaps && (err = upd_imp_fill(m, &w, x, fill, &nm)))
				goto out;
			if (nm)
				x = fill;   /* the completed row */
			for (size_t j = 0; j < n; j++)
				xc[i * n + j] = m->center ? x[j] - m->mean[j] : x[j];
		}
		if (kr > 0)
			cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)kr, (int)c,
			            (int)n, 1.0, m->V, (int)n, xc, (int)n, 0.0, sc, (int)kr);
		if (recon) {
			double *out = recon + i0 * n;
			for (size_t i = 0; i < c; i++)
				for (size_t j = 0; j < n; j++)
					out[i * n + j] = m->center ? m->mean[j] : 0.0;
			if (kr > 0)
				cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)c,
				            (int)kr, 1.0, m->V, (int)n, sc, (int)kr, 1.0, out, (int)n);
			continue;
		}
		if (residual) {
			if (kr > 0)
				cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)c,
				            (int)kr, -1.0, m->V, (int)n, sc, (int)kr, 1.0, xc, (int)n);
			for (size_t i = 0; i < c; i++) {
				const double *x = rows + (i0 + i) * ld;
				for (size_t j = 0; gaps && j < n; j++)
					if (isnan(x[j]))
						xc[i * n + j] = 0.0;   /* over the observed values only */
				residual[i0 + i] = norm2(xc + i * n, n);
			}
		}
		if (coords) {
			for (size_t i = 0; i < c; i++)
				for (size_t j = 0; j < kr; j++) {
					double v = sc[i * kr + j];
					if (space == ISVD_SPACE_U)
						v = m->sigma[j] > m->rcond * m->sigma[0] ? v / m->sigma[j] : 0.0;
					coords[(i0 + i) * kr + j] = v;
				}
		}
	}
out:
	if (have_w)
		upd_imp_fini(&w);
	free(fill);
	free(xc);
	free(sc);
	return err;
}

int isvd_model_project(const struct isvd_model *m, const double *rows, size_t nrows,
                       size_t ld, enum isvd_space space, double *coords, double *residual)
{
	if (!m)
		return ISVD_ERR_INVALID;
	return project_rows(m, rows, nrows, ld, space, coords, residual, NULL);
}

int isvd_model_reconstruct(const struct isvd_model *m, const double *rows, size_t nrows,
                           size_t ld, double *out)
{
	if (!m || (!out && nrows))
		return ISVD_ERR_INVALID;
	return project_rows(m, rows, nrows, ld, ISVD_SPACE_SCORES, NULL, NULL, out);
}

int isvd_model_impute(const struct isvd_model *m, const double *rows, size_t nrows,
                      size_t ld, double *out)
{
	struct upd_imp w;
	int err;

	if (!m || (!out && nrows))
		return ISVD_ERR_INVALID;
	if (m->rows_seen == 0)
		return ISVD_ERR_NOT_READY;
	if ((err = check_rows_gaps(m, rows, nrows, ld, 1, NULL)))
		return err;
	if ((err = refresh(m)))
		return err;
	if (nrows == 0)
		return ISVD_OK;
	if ((err = upd_imp_query_init(m, &w)))
		return err;
	for (size_t i = 0; i < nrows && !err; i++) {
		size_t nm;
		err = upd_imp_fill(m, &w, rows + i * ld, out + i * m->n, &nm);
	}
	upd_imp_fini(&w);
	return err;
}
