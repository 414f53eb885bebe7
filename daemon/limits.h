/*
 * limits.h — control limits for the anomaly statistics the engine
 * computes per row (update/monitor.c: SPE and Hotelling's T² over the top k
 * components).  A row is flagged when either statistic exceeds its limit.
 *
 *   SPE limit: SPE of a row the model describes is Σ λ_j z_j² over the
 *   directions beyond k, with λ_j their variances (isvd_model_tail(): in
 *   exact mode all n − k of them, exactly; in truncated mode the kept
 *   components k < j ≤ r (σ_j²/W) and the energy not kept at all, spread
 *   evenly over the n − r dimensions left).  With θ_p = Σ λ_j^p, its limit is the
 *   quantile of a + b·χ²_ν matching SPE's first three cumulants
 *   (Pearson 1959): b = θ₃/θ₂, ν = θ₂³/θ₃², a = θ₁ − bν.  (The issue asked
 *   for Jackson & Mudholkar's normal approximation; measured on simulated
 *   rows, JM flagged 0.94α, 0.85α and 0.60α at α = 0.05, 0.01, 0.001 for a
 *   flat tail and is undefined (h₀ < 0) for a tail of a few dominant
 *   variances, where this one flagged 0.92α–1.31α in every case tried —
 *   tests/unit/daemon/test_limits.c.)
 *   With no variance beyond k (exactly low-rank data) the limit is a floor
 *   of 1e-12 × the total variance, so rounding is not an anomaly.
 *   T² limit, from the F distribution with k and N − k degrees of freedom
 *   (N = the total weight W, the rows seen when nothing is forgotten):
 *     limit = k(N − 1)(N + 1)/(N(N − k)) · F⁻¹_{k, N−k}(confidence);
 *   none (infinite) while N ≤ k + 1.
 * The quantiles come from GSL (gsl_cdf_ugaussian_Pinv, gsl_cdf_fdist_Pinv).
 */
#ifndef ISVDD_LIMITS_H
#define ISVDD_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "isvd_model.h"

/* The rows before anything is flagged: monitor.warmup_rows, or 10·rank. */
uint64_t mon_warmup(const struct cfg *cfg);

struct mon_limits {
	double spe;   /* > 0; INFINITY when none can be given yet */
	double t2;
};

/* Limits at confidence ∈ (0, 1) for a model reporting k components, with
 * theta[p−1] = Σ λ_j^p over the variances beyond them (isvd_model_tail),
 * total energy (weighted centred scatter trace) and total weight. */
void mon_limits(double confidence, size_t k, const double theta[3], double energy, double weight,
                struct mon_limits *out);

/* The limits model m's rows are held to now, under cfg's monitor.*: both
 * INFINITY during warm-up (fewer than mon_warmup() rows, or no model),
 * else monitor.spe_limit / t2_limit where set and mon_limits() from m's
 * spectrum where not.  The engine thread (a block's) and the query thread
 * (info's, on a snapshot) both ask this. */
void mon_model_limits(const struct cfg *cfg, const struct isvd_model *m, struct mon_limits *out);
/* The same from a model's tail figures (isvd_model_update_monitored's, of
 * the model before a block) and the rows it had seen. */
void mon_tail_limits(const struct cfg *cfg, uint64_t rows_seen, const struct isvd_tail *t,
                     struct mon_limits *out);

#endif
