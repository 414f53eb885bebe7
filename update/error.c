/*
 * error.c — the engine's error texts.
 *
 * One row per isvd_err code, in enum order; isvd_strerror() indexes it.
 * The texts are what a daemon log line or a client would show a user, so
 * they say what went wrong, not which function noticed.
 */
#include "isvd_model.h"

static const char *const error_text[ISVD_ERR_COUNT_] = {
	[ISVD_OK]             = "success",
	[ISVD_ERR_INVALID]    = "invalid argument",
	[ISVD_ERR_DIM]        = "row length does not match the model's dimension",
	[ISVD_ERR_NONFINITE]  = "input contains NaN or infinite values, or values so large (about 1e150) that their squares overflow",
	[ISVD_ERR_NOMEM]      = "out of memory",
	[ISVD_ERR_LAPACK]     = "SVD did not converge (gesdd and gesvd both failed)",
	[ISVD_ERR_NOT_READY]  = "the model has seen no rows yet",
	[ISVD_ERR_FORMAT]     = "saved model image has a bad magic, version or field",
	[ISVD_ERR_CORRUPT]    = "saved model image is corrupt (CRC32C mismatch)",
	[ISVD_ERR_TRUNCATED]  = "saved model image or buffer is truncated",
	[ISVD_ERR_TOO_LARGE]  = "size too large",
	[ISVD_ERR_GAPS]       = "a row has no observed value (every value is missing)",
	[ISVD_ERR_MISMATCH]   = "the models cannot be merged: they differ in dimension, mode, centring, rank, extra, forgetting factor or rcond",
};

const char *isvd_strerror(int err)
{
	if (err < 0 || err >= ISVD_ERR_COUNT_ || !error_text[err])
		return "unknown error";
	return error_text[err];
}
