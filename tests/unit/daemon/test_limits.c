/*
 * test_limits.c — the control limits (daemon/limits.c) are calibrated:
 * rows drawn from the distribution the model describes exceed them as
 * often as the confidence says.  SPE of such a row is Σ λ_j z_j² over the
 * directions beyond k; T² is Σ_{i≤k} z_i² (for a large N, where the F
 * limit tends to the χ²_k quantile).  Also the edges: no weight, exactly
 * low-rank data, too few rows for T².
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "limits.h"

static uint64_t state = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
	state += 0x9e3779b97f4a7c15ull;   /* splitmix64 */
	uint64_t z = state;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
	return sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform());
}

enum { N = 40, R = 12, K = 4, SAMPLES = 400000 };

/* Fraction of SAMPLES simulated rows over the limits, at confidence c.
 * Variances 16, 9, 4, 2.5 on the top 4; then (steep = 0) 0.9 … 0.2 on the
 * kept 8 beyond and 0.05 per dimension on the 28 not kept, or (steep = 1)
 * 4, 1 and six of 0.5 kept beyond and 0.001 not kept (a tail where
 * Jackson–Mudholkar's h₀ < 0 and their formula has no answer). */
static void simulate(double c, int steep, double *spe_frac, double *t2_frac)
{
	double var[N], theta[3] = { 0, 0, 0 };
	const double w = 1e6;
	double energy = 0;
	for (size_t j = 0; j < N; j++) {
		var[j] = j == 0 ? 16 : j == 1 ? 9 : j == 2 ? 4 : j == 3 ? 2.5
		       : steep ? (j == 4 ? 4 : j == 5 ? 1 : j < R ? 0.5 : 0.001)
		       : j < R ? 0.9 - 0.1 * (double)(j - K) : 0.05;
		energy += var[j] * w;
		if (j >= K)
			for (int p = 0; p < 3; p++)
				theta[p] += pow(var[j], p + 1);
	}
	struct mon_limits lim;
	mon_limits(c, K, theta, energy, w, &lim);
	assert_true(isfinite(lim.spe) && isfinite(lim.t2));
	size_t over_spe = 0, over_t2 = 0;
	for (size_t s = 0; s < SAMPLES; s++) {
		double spe = 0, t2 = 0;
		for (size_t j = 0; j < N; j++) {
			const double z = normal();
			if (j < K)
				t2 += z * z;
			else
				spe += var[j] * z * z;
		}
		over_spe += spe > lim.spe;
		over_t2 += t2 > lim.t2;
	}
	*spe_frac = (double)over_spe / SAMPLES;
	*t2_frac = (double)over_t2 / SAMPLES;
}

static void test_calibrated(void **unused)
{
	(void)unused;
	const double conf[] = { 0.95, 0.99, 0.999 };
	for (int steep = 0; steep <= 1; steep++)
		for (size_t i = 0; i < 3; i++) {
			double fs, ft;
			simulate(conf[i], steep, &fs, &ft);
			const double a = 1 - conf[i];
			print_message("%s tail, confidence %.3f: SPE over %.5f, T2 over %.5f (nominal "
			              "%.5f)\n", steep ? "steep" : "flat", conf[i], fs, ft, a);
			/* SPE: a three-moment approximation, observed within
			 * 0.9α–1.3α (the log above); the issue asks for [0.5α, 2α]
			 * at 0.99; held to [0.75α, 1.5α] at every level.  T² is
			 * exact here but for sampling (5% at α = 0.001). */
			assert_true(fs >= 0.75 * a && fs <= 1.5 * a);
			assert_true(fabs(ft - a) <= 0.15 * a);
		}
}

static void test_edges(void **unused)
{
	(void)unused;
	struct mon_limits lim;
	const double one[3] = { 1, 1, 1 }, none[3] = { 0, 0, 0 }, two[3] = { 5, 17, 65 };
	mon_limits(0.99, 2, one, 14, 0, &lim);                  /* no weight */
	assert_true(isinf(lim.spe) && isinf(lim.t2));
	mon_limits(0.99, 2, one, 14, 3, &lim);                  /* N = 3 ≤ k + 1 */
	assert_true(isinf(lim.t2) && isfinite(lim.spe));
	/* exactly rank 2: nothing beyond k, the floor */
	mon_limits(0.99, 2, none, 13, 100, &lim);
	assert_true(lim.spe > 0 && lim.spe <= 1e-12 * 13 / 100 * 1.0000001);
	mon_limits(1.5, 2, one, 14, 100, &lim);                 /* bad confidence */
	assert_true(isinf(lim.spe) && isinf(lim.t2));
	/* higher confidence, higher limits (variances 4 and 1 beyond k = 1) */
	struct mon_limits a, b;
	mon_limits(0.95, 1, two, 20, 100, &a);
	mon_limits(0.999, 1, two, 20, 100, &b);
	assert_true(b.spe > a.spe && b.t2 > a.t2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calibrated),
		cmocka_unit_test(test_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
