/*
 * block.c — a block of rows as the matrix rows it adds, for both strategies.
 *
 * DESIGN
 * - Weights: the newest row of a block has weight 1, the one before λ, …;
 *   a row's matrix row is scaled by sqrt(weight), and old rows by λ^{b/2}
 *   (the strategies apply that to Σ or to R).  This makes the result
 *   independent of how rows are grouped into blocks.
 * - Centring (Ross, Lim, Lin & Yang 2008, with weights): with W_a the old
 *   total weight scaled by λ^b, W_b the block's weight and μ_b its weighted
 *   mean, the block rows are centred on μ_b and one more row
 *   sqrt(W_a·W_b/(W_a+W_b))·(μ_b − μ_a) is appended.  The scatter of the
 *   result equals the scatter about the new mean exactly.
 * - Centring without a dependent column: the centred, weighted block Yc
 *   (n × b) satisfies Yc·u = 0 for u = √w/‖√w‖ (its columns' weighted sum
 *   is zero), so together with the mean-correction column its b + 1
 *   columns have rank ≤ b, and a Cholesky of their Gram matrix fails or is
 *   ill-conditioned — which once sent about half the blocks to the slow
 *   Householder QR.  Instead Yc is multiplied by the Householder reflection
 *   H (symmetric, orthogonal) that maps u to −e_{b−1}: Yc·H has the same
 *   scatter (Yc H Hᵀ Ycᵀ = Yc Ycᵀ) and its last column is Yc·u·(−1) = 0, so
 *   the first b − 1 columns carry the block's whole scatter and the last
 *   slot takes the mean-correction column: b independent columns, not
 *   b + 1 dependent ones.  H = I − β v vᵀ with v = u + e_{b−1}, which never
 *   cancels because every u_i > 0.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"

/*
 * Fills m->Y (n × bb, column-major) with the weighted, centred (and, when
 * centring, reflected) block and computes the totals the block would
 * produce.  Enters: b ≤ B finite rows.  Leaves: *bb_out columns in Y (b
 * without centring; b − 1, plus one mean-correction column when rows came
 * before, with centring), m->mu_new,
 * *w_new, *e_new and *lam_b = λ^b.  Touches no state.
 */
void upd_weigh_block(struct isvd_model *m, const double *rows, size_t b, size_t ld,
                     size_t *bb_out, double *w_new, double *e_new, double *lam_b)
{
	const size_t n = m->n;
	double w = 1, wb = 0, e = 0;
	size_t bb = b;

	/* Row i of the block is b-1-i rows old at the end of the block. */
	for (size_t i = b; i-- > 0;) {
		m->dw[i] = sqrt(w);
		wb += w;
		w *= m->forget;
	}
	*lam_b = w;
	const double wa = w * m->weight;  /* old weight, aged by b rows */

	if (m->center) {
		memset(m->mu_b, 0, n * sizeof *m->mu_b);
		for (size_t i = 0; i < b; i++) {
			const double c = m->dw[i] * m->dw[i] / wb;
			cblas_daxpy((int)n, c, rows + i * ld, 1, m->mu_b, 1);
		}
		for (size_t i = 0; i < b; i++) {
			double *y = m->Y + i * n;
			const double *x = rows + i * ld;
			for (size_t j = 0; j < n; j++)
				y[j] = m->dw[i] * (x[j] - m->mu_b[j]);
		}
		bb = b - 1;
		if (bb > 0) {
			/* Yc ← Yc·H on columns 0 … b−2: y_i −= β v_i z, z = Yc·v. */
			const double su = sqrt(wb);   /* ‖√w‖ */
			double *z = m->mu_new;        /* scratch until mu_new is set */
			double *v = m->hv;
			for (size_t i = 0; i < b; i++)
				v[i] = m->dw[i] / su;
			v[b - 1] += 1.0;
			const double beta = 1.0 / v[b - 1];   /* 2/vᵀv = 1/(1 + u_{b−1}) */
			cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)b, 1.0, m->Y,
			            (int)n, v, 1, 0.0, z, 1);
			for (size_t i = 0; i < bb; i++)
				cblas_daxpy((int)n, -beta * v[i], z, 1, m->Y + i * n, 1);
		}
		const double wt = wa + wb;
		for (size_t j = 0; j < n; j++)
			m->mu_new[j] = (wa * m->mean[j] + wb * m->mu_b[j]) / wt;
		if (wa > 0) {
			const double c = sqrt(wa * wb / wt);
			double *y = m->Y + bb * n;
			for (size_t j = 0; j < n; j++)
				y[j] = c * (m->mu_b[j] - m->mean[j]);
			bb++;
		}
	} else {
		for (size_t i = 0; i < b; i++) {
			double *y = m->Y + i * n;
			const double *x = rows + i * ld;
			for (size_t j = 0; j < n; j++)
				y[j] = m->dw[i] * x[j];
		}
	}
	/* Squared norms by ddot, not dnrm2's scaled loop: check_rows() bounds
	 * every value so that these sums of squares cannot overflow. */
	for (size_t i = 0; i < bb; i++)
		e += cblas_ddot((int)n, m->Y + i * n, 1, m->Y + i * n, 1);
	*bb_out = bb;
	*w_new = wa + wb;
	*e_new = w * m->energy + e;
}
