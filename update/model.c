/*
 * model.c — the model's life cycle, input checks, accessors and queries.
 *
 * Everything here is independent of the update strategy: it validates what
 * enters, hands finite blocks to the strategy (truncated.c), and reads the
 * reported top-k factors out of the state for queries.  Queries allocate
 * scratch per call (bounded by QUERY_CHUNK rows); updates allocate nothing.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"

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
	return ISVD_OK;
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
static size_t upd_block_size(size_t n)
{
	if (n <= 128)
		return 1024;
	return n >= 4096 ? 128 : 64;
}

int upd_alloc(const struct isvd_options *o, struct isvd_model **out)
{
	struct isvd_model *m;
	int err = upd_validate_options(o);

	if (err)
		return err;
	const size_t n = o->dim, B = o->max_block ? o->max_block : upd_block_size(o->dim);
	const size_t kmax = o->rank < n ? o->rank : n;
	const size_t mm = o->rank + o->extra < n ? o->rank + o->extra : n;
	const size_t s = mm + B + 1;
	const size_t c = s < n ? s : n;
	const size_t q = B + 1 < n ? B + 1 : n;  /* residual columns on the core path */
	const size_t tau_len = s;

	/* V, Vnew: 2nm; Y: n(B+1); P, P2: 2m(B+1); K: sc; Kcopy, VT: 2c²; vectors. */
	size_t total = mul_sat(2 * n, mm);
	total = add_sat(total, mul_sat(n, B + 1));
	total = add_sat(total, mul_sat(2 * mm, B + 1));
	total = add_sat(total, mul_sat(2 * q, q));
	total = add_sat(total, mul_sat(s, c));
	total = add_sat(total, mul_sat(2 * c, c));
	total = add_sat(total, 4 * n + s + tau_len + B);
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
	m->center = o->center != 0;
	m->forget = o->forget;
	m->reorth_every = o->reorth_every;
	m->rcond = o->rcond;
	m->strategy = UPD_TRUNCATED;

	m->V = calloc(n * mm, sizeof *m->V);
	m->Vnew = calloc(n * mm, sizeof *m->Vnew);
	m->sigma = calloc(mm, sizeof *m->sigma);
	m->mean = m->center ? calloc(n, sizeof *m->mean) : NULL;
	m->Y = calloc(n * (B + 1), sizeof *m->Y);
	m->P = calloc(mm * (B + 1), sizeof *m->P);
	m->P2 = calloc(mm * (B + 1), sizeof *m->P2);
	m->R = calloc(q * q, sizeof *m->R);
	m->R2 = calloc(q * q, sizeof *m->R2);
	m->K = calloc(s * c, sizeof *m->K);
	m->Kcopy = calloc(c * c, sizeof *m->Kcopy);
	m->VT = calloc(c * c, sizeof *m->VT);
	m->svals = calloc(c, sizeof *m->svals);
	m->tau = calloc(tau_len, sizeof *m->tau);
	m->dw = calloc(B, sizeof *m->dw);
	m->mu_b = calloc(n, sizeof *m->mu_b);
	m->mu_new = calloc(n, sizeof *m->mu_new);
	m->iwork = calloc(8 * c, sizeof *m->iwork);
	if (!m->V || !m->Vnew || !m->sigma || (m->center && !m->mean) || !m->Y || !m->P ||
	    !m->P2 || !m->R || !m->R2 || !m->K || !m->Kcopy || !m->VT || !m->svals || !m->tau || !m->dw ||
	    !m->mu_b || !m->mu_new || !m->iwork) {
		err = ISVD_ERR_NOMEM;
		goto fail;
	}
	err = upd_truncated_workspace(m);
	if (err)
		goto fail;
	m->work = calloc(m->lwork, sizeof *m->work);
	if (!m->work) {
		err = ISVD_ERR_NOMEM;
		goto fail;
	}
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
	free(m);
}

void upd_sign_normalise(struct isvd_model *m)
{
	for (size_t j = 0; j < m->r; j++) {
		double *v = m->V + j * m->n;
		size_t best = 0;
		for (size_t i = 1; i < m->n; i++)
			if (fabs(v[i]) > fabs(v[best]))
				best = i;
		if (v[best] < 0)
			for (size_t i = 0; i < m->n; i++)
				v[i] = -v[i];
	}
}

/*
 * ISVD_OK when every one of nrows rows (ld apart) is finite and small enough
 * that nothing computed from them can overflow: the squares of the call's
 * values (×4 for centring, which can double a difference), summed over the
 * call and added to the energy already held, must stay below DBL_MAX/4.
 * In practice that admits |x| up to about 1e150 for any realistic call;
 * beyond it the call is refused as ISVD_ERR_NONFINITE, whole.
 */
static int check_rows(const struct isvd_model *m, const double *rows, size_t nrows, size_t ld)
{
	double amax = 0;

	if (nrows == 0)
		return ISVD_OK;
	if (!rows)
		return ISVD_ERR_INVALID;
	if (ld < m->n)
		return ISVD_ERR_DIM;
	for (size_t i = 0; i < nrows; i++) {
		const double *x = rows + i * ld;
		for (size_t j = 0; j < m->n; j++) {
			const double a = fabs(x[j]);
			if (!(a <= DBL_MAX))  /* NaN or ±Inf */
				return ISVD_ERR_NONFINITE;
			amax = a > amax ? a : amax;
		}
	}
	if (amax > 1e154)  /* amax² itself would overflow */
		return ISVD_ERR_NONFINITE;
	const double need = 4.0 * (double)m->n * (double)nrows * amax * amax;
	if (!(m->energy + need < DBL_MAX / 4))
		return ISVD_ERR_NONFINITE;
	return ISVD_OK;
}

int isvd_model_update(struct isvd_model *m, const double *rows, size_t nrows, size_t ld)
{
	int err;

	if (!m)
		return ISVD_ERR_INVALID;
	err = check_rows(m, rows, nrows, ld);
	if (err)
		return err;
	for (size_t i = 0; i < nrows; i += m->B) {
		const size_t b = nrows - i < m->B ? nrows - i : m->B;
		err = upd_truncated_fold(m, rows + i * ld, b, ld);
		if (err)
			return err;
	}
	return ISVD_OK;
}

int isvd_model_reorthogonalize(struct isvd_model *m)
{
	if (!m)
		return ISVD_ERR_INVALID;
	return upd_reorthogonalise(m);
}

size_t isvd_model_dim(const struct isvd_model *m) { return m ? m->n : 0; }

size_t isvd_model_rank(const struct isvd_model *m)
{
	if (!m)
		return 0;
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
	return ISVD_OK;
}

int isvd_model_info(const struct isvd_model *m, struct isvd_info *info)
{
	if (!m || !info)
		return ISVD_ERR_INVALID;
	const size_t kr = isvd_model_rank(m);

	memset(info, 0, sizeof *info);
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
 * (column-major n × c), scores = Vₖᵀxc, then either the residual
 * ‖xc − Vₖ scores‖ or the reconstruction μ + Vₖ scores.
 */
static int project_rows(const struct isvd_model *m, const double *rows, size_t nrows,
                        size_t ld, enum isvd_space space, double *coords,
                        double *residual, double *recon)
{
	const size_t n = m->n, kr = isvd_model_rank(m);
	double *xc = NULL, *sc = NULL;
	int err;

	if (m->rows_seen == 0)
		return ISVD_ERR_NOT_READY;
	if (space != ISVD_SPACE_SCORES && space != ISVD_SPACE_U)
		return ISVD_ERR_INVALID;
	err = check_rows(m, rows, nrows, ld);
	if (err || nrows == 0)
		return err;
	const size_t chunk = nrows < QUERY_CHUNK ? nrows : QUERY_CHUNK;
	xc = malloc(n * chunk * sizeof *xc);
	sc = malloc((kr ? kr : 1) * chunk * sizeof *sc);
	if (!xc || !sc) {
		err = ISVD_ERR_NOMEM;
		goto out;
	}
	for (size_t i0 = 0; i0 < nrows; i0 += chunk) {
		const size_t c = nrows - i0 < chunk ? nrows - i0 : chunk;
		for (size_t i = 0; i < c; i++) {
			const double *x = rows + (i0 + i) * ld;
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
			for (size_t i = 0; i < c; i++)
				residual[i0 + i] = norm2(xc + i * n, n);
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
