/*
 * admit.c — the engine's admissibility rule for input values, exported so
 * that the daemon checks pushes with the engine's own rule (isvd_model.h).
 */
#include <math.h>

#include "isvd_model.h"

size_t isvd_first_inadmissible(const double *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabs(x[i]) <= ISVD_MAX_MAGNITUDE))   /* NaN fails every comparison */
			return i;
	return n;
}
