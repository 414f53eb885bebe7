/*
 * reply.c — encoding and sending replies on a ROUTER socket (reply.h).
 */
#include "reply.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "isvd_model.h"

int rpl_recv_frames(struct log_sink *log, void *sock, zmq_msg_t *frames, size_t max, size_t *n)
{
	size_t k = 0;

	for (;;) {
		zmq_msg_init(&frames[k]);
		if (zmq_msg_recv(&frames[k], sock, k == 0 ? ZMQ_DONTWAIT : 0) < 0) {
			const int en = errno;
			for (size_t i = 0; i <= k; i++)
				zmq_msg_close(&frames[i]);
			if (k == 0 && (en == EAGAIN || en == EINTR))
				return 0;
			log_msg(log, CFG_LOG_ERROR, "zmq_msg_recv: %s", zmq_strerror(en));
			return -1;
		}
		const int more = zmq_msg_more(&frames[k]);
		k++;
		if (!more)
			break;
		if (k == max) {   /* drain and drop */
			zmq_msg_t t;
			zmq_msg_init(&t);
			while (zmq_msg_recv(&t, sock, 0) >= 0 && zmq_msg_more(&t))
				;
			zmq_msg_close(&t);
			for (size_t i = 0; i < k; i++)
				zmq_msg_close(&frames[i]);
			log_refused(log, "dropped a message of more than %zu frames", max);
			return -1;
		}
	}
	*n = k;
	return 1;
}

void rpl_send_frames(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                     const void *body, size_t len)
{
	for (size_t i = 0; i < nenv; i++) {
		if (zmq_msg_send(&env[i], sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
			log_msg(log, CFG_LOG_DEBUG, "reply dropped: %s", zmq_strerror(errno));
			for (size_t j = i; j < nenv; j++)
				zmq_msg_close(&env[j]);
			return;
		}
	}
	if (zmq_send(sock, body, len, ZMQ_DONTWAIT) < 0)
		log_msg(log, CFG_LOG_DEBUG, "reply dropped: %s", zmq_strerror(errno));
}

void rpl_send_error(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                    const uint8_t *id, size_t id_len, int code, const char *message)
{
	rpl_send_error_retry(log, sock, env, nenv, id, id_len, code, message, 0);
}

void rpl_send_error_retry(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                          const uint8_t *id, size_t id_len, int code, const char *message,
                          uint64_t retry_after_ms)
{
	uint8_t *out = NULL;
	size_t len = 0;

	if (isvd_proto_error_encode_retry(id, id_len, code, message, retry_after_ms, &out, &len)) {
		log_msg(log, CFG_LOG_ERROR, "cannot encode an error reply");
		for (size_t i = 0; i < nenv; i++)
			zmq_msg_close(&env[i]);
		return;
	}
	rpl_send_frames(log, sock, env, nenv, out, len);
	free(out);
}

void rpl_send_ok(struct log_sink *log, void *sock, zmq_msg_t *env, size_t nenv,
                 const struct isvd_proto_reply *rep)
{
	uint8_t *out = NULL;
	size_t len = 0;
	int rc = isvd_proto_reply_encode(rep, &out, &len);

	if (rc) {
		log_msg(log, CFG_LOG_ERROR, "cannot encode a %s reply: %s", isvd_proto_op_name(rep->op),
		        isvd_proto_strerror(rc));
		rpl_send_error(log, sock, env, nenv, rep->id, rep->id_len, ISVD_PROTO_INTERNAL,
		               "the reply could not be encoded");
		return;
	}
	rpl_send_frames(log, sock, env, nenv, out, len);
	free(out);
}

int rpl_err_from_engine(int e)
{
	switch (e) {
	case ISVD_ERR_DIM: return ISVD_PROTO_DIM_MISMATCH;
	case ISVD_ERR_NONFINITE: return ISVD_PROTO_NON_FINITE;
	case ISVD_ERR_GAPS: return ISVD_PROTO_BAD_MATRIX;
	case ISVD_ERR_NOT_READY: return ISVD_PROTO_NOT_READY;
	case ISVD_ERR_TOO_LARGE: return ISVD_PROTO_TOO_LARGE;
	case ISVD_ERR_NOMEM: return ISVD_PROTO_NOMEM;
	default: return ISVD_PROTO_INTERNAL;
	}
}

int rpl_factors(const struct isvd_model *m, bool center, struct isvd_proto_reply *rep)
{
	const size_t n = isvd_model_dim(m), kmax = isvd_model_rank(m);
	size_t k = 0;
	int rc;

	rep->sigma.v = malloc((kmax ? kmax : 1) * sizeof(double));
	rep->vt.data = malloc((kmax ? kmax : 1) * n * sizeof(double));
	rep->mean.v = malloc(n * sizeof(double));
	if (!rep->sigma.v || !rep->vt.data || !rep->mean.v)
		return ISVD_PROTO_NOMEM;
	if ((rc = isvd_model_factors(m, rep->sigma.v, rep->vt.data, rep->mean.v, &k)))
		return rpl_err_from_engine(rc);
	rep->sigma.n = k;
	rep->vt.rows = k;
	rep->vt.cols = n;
	rep->has_mean = center;
	rep->mean.n = center ? n : 0;
	return ISVD_PROTO_OK;
}

void rpl_factors_free(struct isvd_proto_reply *rep)
{
	free(rep->sigma.v);
	free(rep->vt.data);
	free(rep->mean.v);
	free(rep->stable.v);
	rep->sigma.v = rep->vt.data = rep->mean.v = rep->stable.v = NULL;
}

int rpl_stability_vecs(const struct isvd_model *m, struct isvd_proto_vec *gap,
                       struct isvd_proto_vec *stable)
{
	const size_t kmax = isvd_model_rank(m);
	size_t k = 0;
	int rc, *flags = malloc((kmax ? kmax : 1) * sizeof *flags);

	stable->v = malloc((kmax ? kmax : 1) * sizeof(double));
	if (gap)
		gap->v = malloc((kmax ? kmax : 1) * sizeof(double));
	if (!flags || !stable->v || (gap && !gap->v)) {
		free(flags);
		return ISVD_PROTO_NOMEM;
	}
	if ((rc = isvd_model_stability(m, gap ? gap->v : NULL, flags, &k))) {
		free(flags);
		return rpl_err_from_engine(rc);
	}
	for (size_t i = 0; i < k; i++)
		stable->v[i] = flags[i];
	stable->n = k;
	if (gap)
		gap->n = k;
	free(flags);
	return ISVD_PROTO_OK;
}

int rpl_stability(const struct isvd_model *m, struct isvd_proto_reply *rep)
{
	const int code = rpl_stability_vecs(m, NULL, &rep->stable);

	rep->has_monitor = code == ISVD_PROTO_OK;
	return code;
}

/* Where the first missing (NaN) value of m is, for a message. */
static void first_nan(const struct isvd_proto_matrix *m, size_t *row, size_t *col)
{
	for (size_t i = 0; i < m->rows * m->cols; i++)
		if (isnan(m->data[i])) {
			*row = i / m->cols;
			*col = i % m->cols;
			return;
		}
	*row = *col = 0;
}

int rpl_check_values(const struct isvd_proto_matrix *m, bool gaps_ok, char *buf, size_t cap)
{
	const size_t n = m->rows * m->cols;
	size_t r, c, i;

	if (m->n_missing && !gaps_ok) {
		first_nan(m, &r, &c);
		snprintf(buf, cap, "rows: row %zu, column %zu is missing; model.missing is 'reject'", r, c);
		return ISVD_PROTO_NON_FINITE;
	}
	if (!m->n_missing) {
		if ((i = isvd_first_inadmissible(m->data, n)) < n) {
			snprintf(buf, cap, "rows: row %zu, column %zu is %g; magnitudes above %g are refused",
			         i / m->cols, i % m->cols, m->data[i], ISVD_MAX_MAGNITUDE);
			return ISVD_PROTO_NON_FINITE;
		}
		return ISVD_PROTO_OK;
	}
	/* with gaps: the same rule for the observed values, one observed per row */
	for (r = 0; r < m->rows; r++) {
		const double *x = m->data + r * m->cols;
		size_t seen = 0;
		for (c = 0; c < m->cols; c++) {
			if (isnan(x[c]))
				continue;
			seen++;
			if (isvd_first_inadmissible(x + c, 1) == 0) {
				snprintf(buf, cap, "rows: row %zu, column %zu is %g; magnitudes above %g are refused",
				         r, c, x[c], ISVD_MAX_MAGNITUDE);
				return ISVD_PROTO_NON_FINITE;
			}
		}
		if (seen == 0) {
			snprintf(buf, cap, "rows: row %zu has no observed value (all %zu are missing); a row "
			         "with gaps needs at least 1 observed value", r, m->cols);
			return ISVD_PROTO_BAD_MATRIX;
		}
	}
	return ISVD_PROTO_OK;
}
