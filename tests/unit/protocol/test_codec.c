/*
 * test_codec.c — round trips of every request, reply and snapshot through
 * the protocol codec, both matrix forms, every error code, and the exact
 * bytes of the examples in protocol/PROTOCOL.md.
 */
#include <math.h>

#include "helpers.h"

static const double M23[6] = { 1.0, -2.5, 3.0, 0.25, 1e300, -0.0 };

static void encode_decode_req(const struct isvd_proto_request *in, struct isvd_proto_request *out)
{
	uint8_t *buf;
	size_t len;
	struct isvd_proto_error e;
	assert_int_equal(isvd_proto_request_encode(in, &buf, &len), ISVD_PROTO_OK);
	int rc = dec_req(buf, len, NULL, out, &e);
	if (rc)
		fail_msg("decode: %s", e.message);
	free(buf);
}

static void test_request_roundtrip(void **state)
{
	(void)state;
	/* id is the msgpack encoding of the string "a-17" */
	uint8_t id[] = { 0xa4, 'a', '-', '1', '7' };
	struct isvd_proto_request in = { 0 }, out;

	for (int op = ISVD_OP_PUSH; op < ISVD_OP_COUNT_; op++) {
		memset(&in, 0, sizeof in);
		in.op = (enum isvd_proto_op)op;
		if (op == ISVD_OP_PUSH || op == ISVD_OP_PROJECT || op == ISVD_OP_RECONSTRUCT) {
			in.rows.data = (double *)M23;
			in.rows.rows = 2;
			in.rows.cols = 3;
		}
		if (op % 2) {
			in.id = id;
			in.id_len = sizeof id;
		}
		if (op == ISVD_OP_PUSH) {
			in.client = "loader-3";
			in.has_batch = true;
			in.batch = UINT64_MAX;
			in.has_scores = in.scores = true;
		}
		if (op == ISVD_OP_PROJECT)
			in.space = ISVD_PROTO_SPACE_U;
		if (op == ISVD_OP_RECONSTRUCT)
			in.has_fill = in.fill = true;
		encode_decode_req(&in, &out);
		assert_int_equal(out.op, op);
		assert_int_equal(out.id_len, in.id_len);
		if (in.id)
			assert_memory_equal(out.id, id, sizeof id);
		else
			assert_null(out.id);
		assert_int_equal(out.rows.rows, in.rows.rows);
		assert_int_equal(out.rows.cols, in.rows.cols);
		if (in.rows.data) {
			assert_memory_equal(out.rows.data, M23, sizeof M23);   /* bit-exact, -0.0 too */
			assert_int_equal(out.rows.n_missing, 0);
		}
		if (op == ISVD_OP_PUSH) {
			assert_string_equal(out.client, "loader-3");
			assert_true(out.has_batch);
			assert_true(out.batch == UINT64_MAX);
			assert_true(out.has_scores && out.scores);
		} else {
			assert_null(out.client);
			assert_false(out.has_batch);
		}
		assert_int_equal(out.space, op == ISVD_OP_PROJECT ? ISVD_PROTO_SPACE_U : ISVD_PROTO_SPACE_SCORES);
		assert_int_equal(out.fill, op == ISVD_OP_RECONSTRUCT);
		assert_int_equal(out.has_fill, op == ISVD_OP_RECONSTRUCT);
		req_done(&out);
	}
}

static void test_request_nan_roundtrip(void **state)
{
	(void)state;
	double v[4] = { 1, NAN, 3, NAN };
	struct isvd_proto_request in = { .op = ISVD_OP_PUSH, .rows = { v, 2, 2, 0 } }, out;
	encode_decode_req(&in, &out);
	assert_int_equal(out.rows.n_missing, 2);
	assert_true(isnan(out.rows.data[1]) && isnan(out.rows.data[3]));
	assert_true(out.rows.data[2] == 3);
	req_done(&out);
}

/* Form (a): rows of mixed integers and floats, nil for missing, one row as a flat array. */
static void test_matrix_form_a(void **state)
{
	(void)state;
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;

	fr_init(&f);
	msgpack_pack_map(&f.pk, 2);
	fr_str(&f, "rows");
	msgpack_pack_array(&f.pk, 3);
	msgpack_pack_array(&f.pk, 3);
	msgpack_pack_int(&f.pk, -1); msgpack_pack_uint64(&f.pk, 300); msgpack_pack_float(&f.pk, 0.5f);
	msgpack_pack_array(&f.pk, 3);
	msgpack_pack_double(&f.pk, 2.25); msgpack_pack_nil(&f.pk); msgpack_pack_int64(&f.pk, -70000);
	msgpack_pack_array(&f.pk, 3);
	msgpack_pack_double(&f.pk, NAN); msgpack_pack_uint64(&f.pk, 1ull << 40); msgpack_pack_int(&f.pk, 0);
	fr_str(&f, "op");
	fr_str(&f, "push");
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.rows.rows, 3);
	assert_int_equal(req.rows.cols, 3);
	assert_int_equal(req.rows.n_missing, 2);
	const double *d = req.rows.data;
	assert_true(d[0] == -1 && d[1] == 300 && d[2] == 0.5);
	assert_true(d[3] == 2.25 && isnan(d[4]) && d[5] == -70000);
	assert_true(isnan(d[6]) && d[7] == 1099511627776.0 && d[8] == 0);
	req_done(&req);
	fr_fini(&f);

	/* a flat array is one row */
	fr_init(&f);
	msgpack_pack_map(&f.pk, 2);
	fr_str(&f, "op");
	fr_str(&f, "reconstruct");
	fr_str(&f, "rows");
	msgpack_pack_array(&f.pk, 4);
	for (int k = 0; k < 4; k++)
		msgpack_pack_int(&f.pk, k - 2);
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.op, ISVD_OP_RECONSTRUCT);
	assert_int_equal(req.rows.rows, 1);
	assert_int_equal(req.rows.cols, 4);
	assert_true(req.rows.data[0] == -2 && req.rows.data[3] == 1);
	req_done(&req);
	fr_fini(&f);
}

/* Form (b) with f32 data and a NaN (missing) value. */
static void test_matrix_form_b_f32(void **state)
{
	(void)state;
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	/* 1.5f = 0x3fc00000, -2f = 0xc0000000, NaN = 0x7fc00000, 0 */
	const uint8_t data[16] = { 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0,
	                           0x00, 0x00, 0xc0, 0x7f, 0x00, 0x00, 0x00, 0x00 };
	fr_init(&f);
	msgpack_pack_map(&f.pk, 3);
	fr_str(&f, "op");
	fr_str(&f, "project");
	fr_str(&f, "space");
	fr_str(&f, "scores");
	fr_str(&f, "rows");
	msgpack_pack_map(&f.pk, 3);
	fr_str(&f, "data");
	msgpack_pack_bin_with_body(&f.pk, data, sizeof data);
	fr_str(&f, "dtype");
	fr_str(&f, "f32");
	fr_str(&f, "shape");
	msgpack_pack_array(&f.pk, 2);
	msgpack_pack_int(&f.pk, 2);
	msgpack_pack_int(&f.pk, 2);
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.op, ISVD_OP_PROJECT);
	assert_int_equal(req.space, ISVD_PROTO_SPACE_SCORES);
	assert_true(req.rows.data[0] == 1.5 && req.rows.data[1] == -2);
	assert_true(isnan(req.rows.data[2]) && req.rows.data[3] == 0);
	assert_int_equal(req.rows.n_missing, 1);
	req_done(&req);
	fr_fini(&f);
}

/* ------------------------------------------------------------------ replies */

static void fill_reply(struct isvd_proto_reply *r, enum isvd_proto_op op, double *sig, double *vt,
                       double *mean, double *res)
{
	memset(r, 0, sizeof *r);
	r->op = op;
	r->ok = true;
	r->seq = 1234567;
	switch (op) {
	case ISVD_OP_PUSH:
		r->accepted = 3;
		r->duplicate = true;
		if (res) {   /* scores: true */
			r->has_scores = true;
			r->spe = (struct isvd_proto_vec){ res, 3 };
			r->t2 = (struct isvd_proto_vec){ sig, 2 };
		}
		break;
	case ISVD_OP_PING:
		r->version = "0.1.0";
		r->protocol = 1;
		break;
	case ISVD_OP_INFO:
		r->dim = 3; r->rank = 2; r->rank_max = 2; r->rows_seen = 99; r->last_checkpoint_seq = 64;
		if (mean) {   /* the variant with the optional keys */
			r->missing = "impute";
			r->has_gaps = true;
			r->rows_with_gaps = 40;
			r->values_imputed = UINT64_MAX;
		}
		r->sigma = (struct isvd_proto_vec){ sig, 2 };
		r->explained_energy_ratio = 0.75; r->condition_number = 4; r->orthogonality_error = 1e-15;
		r->center = true; r->forget = 0.999; r->uptime_s = 12.5; r->ingest_rows_per_s = 1e5;
		break;
	case ISVD_OP_PROJECT:
		r->coords = (struct isvd_proto_matrix){ vt, 3, 2, 0 };
		r->residual = (struct isvd_proto_vec){ res, 3 };
		if (mean) {   /* rows with gaps: observed counts; monitoring scores */
			r->has_observed = true;
			r->observed = (struct isvd_proto_vec){ mean, 3 };
			r->has_scores = true;
			r->spe = (struct isvd_proto_vec){ res, 3 };
			r->t2 = (struct isvd_proto_vec){ mean, 3 };
		}
		break;
	case ISVD_OP_RECONSTRUCT:
		r->rows = (struct isvd_proto_matrix){ vt, 2, 3, 0 };
		break;
	case ISVD_OP_FACTORS:
		r->sigma = (struct isvd_proto_vec){ sig, 2 };
		r->vt = (struct isvd_proto_matrix){ vt, 2, 3, 0 };
		r->has_mean = mean != NULL;
		r->mean = (struct isvd_proto_vec){ mean, mean ? 3 : 0 };
		break;
	default:
		break;
	}
}

static void same_vec(const struct isvd_proto_vec *a, const struct isvd_proto_vec *b)
{
	assert_int_equal(a->n, b->n);
	if (a->n)
		assert_memory_equal(a->v, b->v, a->n * sizeof *a->v);
}

static void same_mat(const struct isvd_proto_matrix *a, const struct isvd_proto_matrix *b)
{
	assert_int_equal(a->rows, b->rows);
	assert_int_equal(a->cols, b->cols);
	if (a->rows && a->cols)
		assert_memory_equal(a->data, b->data, a->rows * a->cols * sizeof *a->data);
}

static void test_reply_roundtrip(void **state)
{
	(void)state;
	double sig[2] = { 10, 2.5 }, vt[6] = { 0.6, 0.8, 0, 0, 0, 1 }, mean[3] = { 1, 2, 3 },
	       res[3] = { 0, 0.5, 1e-9 };
	uint8_t id[] = { 0x92, 0x01, 0xa1, 'x' };   /* [1, "x"] */

	for (int op = ISVD_OP_PUSH; op < ISVD_OP_COUNT_; op++) {
		for (int variant = 0; variant < 2; variant++) {
			struct isvd_proto_reply in, out;
			struct isvd_proto_error e;
			uint8_t *buf, *buf2;
			size_t len, len2;
			fill_reply(&in, (enum isvd_proto_op)op, sig, vt, variant ? mean : NULL, res);
			if (variant) {
				in.id = id;
				in.id_len = sizeof id;
			}
			assert_int_equal(isvd_proto_reply_encode(&in, &buf, &len), ISVD_PROTO_OK);
			if (dec_rep(buf, len, (enum isvd_proto_op)op, &out, &e))
				fail_msg("op %d: %s", op, e.message);
			assert_true(out.ok);
			assert_int_equal(out.id_len, in.id_len);
			if (in.id)
				assert_memory_equal(out.id, id, sizeof id);
			assert_true(out.seq == (op == ISVD_OP_PING ? 0 : in.seq) || op == ISVD_OP_PING);
			assert_true(out.accepted == in.accepted && out.duplicate == in.duplicate);
			if (in.version)
				assert_string_equal(out.version, in.version);
			assert_true(out.protocol == in.protocol && out.dim == in.dim && out.rank == in.rank);
			assert_true(out.rank_max == in.rank_max && out.rows_seen == in.rows_seen);
			assert_true(out.last_checkpoint_seq == in.last_checkpoint_seq);
			assert_true(out.explained_energy_ratio == in.explained_energy_ratio);
			assert_true(out.condition_number == in.condition_number);
			assert_true(out.orthogonality_error == in.orthogonality_error);
			assert_true(out.center == in.center && out.forget == in.forget);
			assert_true(out.uptime_s == in.uptime_s && out.ingest_rows_per_s == in.ingest_rows_per_s);
			same_vec(&out.sigma, &in.sigma);
			same_vec(&out.residual, &in.residual);
			same_vec(&out.observed, &in.observed);
			same_vec(&out.spe, &in.spe);
			same_vec(&out.t2, &in.t2);
			assert_int_equal(out.has_scores, in.has_scores);
			assert_int_equal(out.has_observed, in.has_observed);
			assert_int_equal(out.has_gaps, in.has_gaps);
			assert_true(out.rows_with_gaps == in.rows_with_gaps);
			assert_true(out.values_imputed == in.values_imputed);
			if (in.missing)
				assert_string_equal(out.missing, in.missing);
			else
				assert_null(out.missing);
			same_vec(&out.mean, &in.mean);
			assert_int_equal(out.has_mean, in.has_mean);
			same_mat(&out.coords, &in.coords);
			same_mat(&out.rows, &in.rows);
			same_mat(&out.vt, &in.vt);
			/* re-encoding the decoded reply gives the same bytes */
			assert_int_equal(isvd_proto_reply_encode(&out, &buf2, &len2), ISVD_PROTO_OK);
			assert_int_equal(len2, len);
			assert_memory_equal(buf2, buf, len);
			free(buf2);
			rep_done(&out);
			/* every proper prefix is refused */
			for (size_t n = 0; n < len; n++) {
				struct isvd_proto_reply cut;
				assert_int_equal(dec_rep(buf, n, (enum isvd_proto_op)op, &cut, &e),
				                 ISVD_PROTO_BAD_REQUEST);
				rep_done(&cut);
			}
			free(buf);
		}
	}
}

/* The `factors` snapshot is the factors reply without id: same bytes, and a
 * subscriber decodes it with the reply decoder. */
static void test_factors_snapshot(void **state)
{
	(void)state;
	double sig[2] = { 10, 2.5 }, vt[6] = { 0.6, 0.8, 0, 0, 0, 1 }, mean[3] = { 1, 2, 3 };
	struct isvd_proto_reply snap, got;
	struct isvd_proto_error e;
	uint8_t *buf;
	size_t len;
	fill_reply(&snap, ISVD_OP_FACTORS, sig, vt, mean, NULL);
	assert_int_equal(isvd_proto_reply_encode(&snap, &buf, &len), ISVD_PROTO_OK);
	/* {ok: true, sigma, vt, mean, seq}: 5 entries, ok first */
	assert_int_equal(buf[0], 0x85);
	assert_memory_equal(buf + 1, "\xa2ok\xc3\xa5sigma", 10);
	assert_int_equal(dec_rep(buf, len, ISVD_OP_FACTORS, &got, &e), ISVD_PROTO_OK);
	assert_true(got.ok && got.has_mean && got.id == NULL);
	same_mat(&got.vt, &snap.vt);
	same_vec(&got.mean, &snap.mean);
	rep_done(&got);
	free(buf);
}

/* A reply without a result field is refused; a newer daemon's extra keys are skipped. */
static void test_reply_missing_and_extra(void **state)
{
	(void)state;
	struct frame f;
	struct isvd_proto_reply rep;
	struct isvd_proto_error e;

	fr_init(&f);
	msgpack_pack_map(&f.pk, 3);
	fr_str(&f, "ok"); msgpack_pack_true(&f.pk);
	fr_str(&f, "future"); msgpack_pack_array(&f.pk, 1); msgpack_pack_map(&f.pk, 0);
	fr_str(&f, "seq"); msgpack_pack_uint64(&f.pk, 7);
	assert_int_equal(dec_rep(fr_data(&f), f.sb.size, ISVD_OP_CHECKPOINT, &rep, &e), ISVD_PROTO_OK);
	assert_true(rep.seq == 7);
	rep_done(&rep);
	assert_int_equal(dec_rep(fr_data(&f), f.sb.size, ISVD_OP_PUSH, &rep, &e), ISVD_PROTO_BAD_REQUEST);
	assert_non_null(strstr(e.message, "requires key 'accepted'"));
	rep_done(&rep);
	fr_fini(&f);
}

/* Every error code travels by name and comes back as itself. */
static void test_error_replies(void **state)
{
	(void)state;
	uint8_t id[] = { 0x2a };   /* 42 */
	for (int code = ISVD_PROTO_BAD_REQUEST; code < ISVD_PROTO_ERR_COUNT_; code++) {
		uint8_t *buf;
		size_t len;
		struct isvd_proto_reply rep;
		struct isvd_proto_error e;
		char msg[64];
		snprintf(msg, sizeof msg, "failure %d", code);
		assert_int_equal(isvd_proto_error_encode(code % 2 ? id : NULL, 1, code, msg, &buf, &len),
		                 ISVD_PROTO_OK);
		assert_int_equal(dec_rep(buf, len, ISVD_OP_INFO, &rep, &e), ISVD_PROTO_OK);
		assert_false(rep.ok);
		assert_int_equal(rep.error_code, code <= ISVD_PROTO_RATE_LIMITED ? code : ISVD_PROTO_INTERNAL);
		assert_string_equal(rep.error_message, msg);
		assert_int_equal(rep.id_len, code % 2 ? 1 : 0);
		/* an error reply encodes through reply_encode to the same bytes */
		uint8_t *buf2;
		size_t len2;
		rep.error_code = code;
		assert_int_equal(isvd_proto_reply_encode(&rep, &buf2, &len2), ISVD_PROTO_OK);
		assert_int_equal(len2, len);
		assert_memory_equal(buf2, buf, len);
		free(buf2);
		free(buf);
		rep_done(&rep);
	}
	assert_int_equal(isvd_proto_err_from_name("NO_SUCH_CODE", 12), ISVD_PROTO_INTERNAL);
	assert_string_equal(isvd_proto_err_name(ISVD_PROTO_NOMEM), "INTERNAL");
	assert_string_equal(isvd_proto_err_name(999), "INTERNAL");
	assert_string_equal(isvd_proto_strerror(-1), "unknown error");
	for (int code = 0; code < ISVD_PROTO_ERR_COUNT_; code++)
		assert_non_null(isvd_proto_strerror(code));
}

/* info's pushers: encoded in order, decoded back; an entry without `key`,
 * or a counter that is no uint, is BAD_REQUEST. */
static void test_info_pushers(void **state)
{
	(void)state;
	double sig[1] = { 1 };
	struct isvd_proto_pusher pv[2] = { { "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", 500, 5000, 3, 60 },
	                                   { "-", 1, 2, 0, 0 } };
	struct isvd_proto_reply in = { .op = ISVD_OP_INFO, .ok = true, .sigma = { sig, 1 },
	                               .has_pushers = true, .pushers = { pv, 2 } }, out;
	struct isvd_proto_error e;
	uint8_t *buf;
	size_t len;
	assert_int_equal(isvd_proto_reply_encode(&in, &buf, &len), ISVD_PROTO_OK);
	if (dec_rep(buf, len, ISVD_OP_INFO, &out, &e) != ISVD_PROTO_OK)
		fail_msg("%s", e.message);
	assert_true(out.has_pushers);
	assert_int_equal(out.pushers.n, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_string_equal(out.pushers.v[i].key, pv[i].key);
		assert_int_equal(out.pushers.v[i].pushes, pv[i].pushes);
		assert_int_equal(out.pushers.v[i].rows, pv[i].rows);
		assert_int_equal(out.pushers.v[i].limited_pushes, pv[i].limited_pushes);
		assert_int_equal(out.pushers.v[i].limited_rows, pv[i].limited_rows);
	}
	rep_done(&out);
	free(buf);
	/* an empty table (a daemon nobody pushed to yet) */
	in.pushers.n = 0;
	assert_int_equal(isvd_proto_reply_encode(&in, &buf, &len), ISVD_PROTO_OK);
	assert_int_equal(dec_rep(buf, len, ISVD_OP_INFO, &out, &e), ISVD_PROTO_OK);
	assert_true(out.has_pushers);
	assert_int_equal(out.pushers.n, 0);
	rep_done(&out);
	free(buf);
	/* {ok: true, pushers: [{rows: 1}]}: no key */
	static const uint8_t nokey[] = { 0x82, 0xa2, 'o', 'k', 0xc3, 0xa7, 'p', 'u', 's', 'h', 'e', 'r', 's',
	                                 0x91, 0x81, 0xa4, 'r', 'o', 'w', 's', 0x01 };
	assert_int_equal(dec_rep(nokey, sizeof nokey, ISVD_OP_INFO, &out, &e), ISVD_PROTO_BAD_REQUEST);
	assert_non_null(strstr(e.message, "lacks 'key'"));
	rep_done(&out);
	/* {ok: true, pushers: [{key: "k", rows: -1, new: 0}]} */
	static const uint8_t neg[] = { 0x82, 0xa2, 'o', 'k', 0xc3, 0xa7, 'p', 'u', 's', 'h', 'e', 'r', 's',
	                               0x91, 0x83, 0xa3, 'k', 'e', 'y', 0xa1, 'k', 0xa4, 'r', 'o', 'w', 's',
	                               0xff, 0xa3, 'n', 'e', 'w', 0x00 };
	assert_int_equal(dec_rep(neg, sizeof neg, ISVD_OP_INFO, &out, &e), ISVD_PROTO_BAD_REQUEST);
	assert_non_null(strstr(e.message, "'rows'"));
	rep_done(&out);
}

static void test_spectrum_roundtrip(void **state)
{
	(void)state;
	double sig[3] = { 5, 4, 0.125 };
	struct isvd_proto_spectrum in = { .seq = 900, .rows_seen = 1000, .sigma = { sig, 3 },
	                                  .explained_energy_ratio = 0.5, .t = 1767225600.25,
	                                  .has_gaps = true, .rows_with_gaps = 7,
	                                  .values_imputed = 11 }, out;
	struct isvd_proto_error e;
	uint8_t *buf;
	size_t len;
	assert_int_equal(isvd_proto_spectrum_encode(&in, &buf, &len), ISVD_PROTO_OK);
	assert_int_equal(isvd_proto_spectrum_decode(buf, len, NULL, &out, &e), ISVD_PROTO_OK);
	assert_true(out.seq == 900 && out.rows_seen == 1000 && out.t == in.t);
	assert_true(out.explained_energy_ratio == 0.5);
	assert_true(out.has_gaps && out.rows_with_gaps == 7 && out.values_imputed == 11);
	same_vec(&out.sigma, &in.sigma);
	isvd_proto_spectrum_fini(&out);
	assert_int_equal(isvd_proto_spectrum_decode(buf, len - 1, NULL, &out, &e), ISVD_PROTO_BAD_REQUEST);
	isvd_proto_spectrum_fini(&out);
	assert_int_equal(proto_test_live, 0);
	free(buf);
}

/* The examples in PROTOCOL.md, byte for byte. */
static void check_hex(const uint8_t *buf, size_t len, const char *want)
{
	char *got = hexdump(buf, len);
	if (strcmp(got, want) != 0)
		fail_msg("bytes differ\n got: %s\nwant: %s", got, want);
	free(got);
}

static void test_protocol_md_examples(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	uint8_t id7[] = { 0x07 };

	struct isvd_proto_request ping = { .op = ISVD_OP_PING, .id = id7, .id_len = 1 };
	assert_int_equal(isvd_proto_request_encode(&ping, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "82 a2 6f 70 a4 70 69 6e 67 a2 69 64 07");
	free(buf);

	struct isvd_proto_reply pong = { .op = ISVD_OP_PING, .ok = true, .id = id7, .id_len = 1,
	                                 .version = "0.1.0", .protocol = 1 };
	assert_int_equal(isvd_proto_reply_encode(&pong, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "84 a2 6f 6b c3 a2 69 64 07 a7 76 65 72 73 69 6f 6e a5 30 2e 31 2e 30 "
	                    "a8 70 72 6f 74 6f 63 6f 6c 01");
	free(buf);

	double rows[2] = { 1.5, -2 };
	struct isvd_proto_request push = { .op = ISVD_OP_PUSH, .rows = { rows, 1, 2, 0 },
	                                   .client = "c1", .has_batch = true, .batch = 5 };
	assert_int_equal(isvd_proto_request_encode(&push, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "84 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 83 a5 73 68 61 70 65 92 01 02 "
	                    "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 10 "
	                    "00 00 00 00 00 00 f8 3f 00 00 00 00 00 00 00 c0 "
	                    "a6 63 6c 69 65 6e 74 a2 63 31 a5 62 61 74 63 68 05");
	free(buf);

	struct isvd_proto_reply pushed = { .op = ISVD_OP_PUSH, .ok = true, .accepted = 1, .seq = 1001 };
	assert_int_equal(isvd_proto_reply_encode(&pushed, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "84 a2 6f 6b c3 a8 61 63 63 65 70 74 65 64 01 a3 73 65 71 cd 03 e9 "
	                    "a9 64 75 70 6c 69 63 61 74 65 c2");
	free(buf);

	assert_int_equal(isvd_proto_error_encode(id7, 1, ISVD_PROTO_UNKNOWN_OP, "unknown op 'pong'",
	                                         &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "83 a2 6f 6b c2 a2 69 64 07 a5 65 72 72 6f 72 82 a4 63 6f 64 65 "
	                    "aa 55 4e 4b 4e 4f 57 4e 5f 4f 50 a7 6d 65 73 73 61 67 65 "
	                    "b1 75 6e 6b 6e 6f 77 6e 20 6f 70 20 27 70 6f 6e 67 27");
	free(buf);

	/* RATE_LIMITED carries retry_after_ms, the third key of the error map;
	 * a decoder that does not know it skips it (the map's unknown keys) */
	assert_int_equal(isvd_proto_error_encode_retry(id7, 1, ISVD_PROTO_RATE_LIMITED,
	                                               "resend after 250 ms", 250, &buf, &len),
	                 ISVD_PROTO_OK);
	check_hex(buf, len, "83 a2 6f 6b c2 a2 69 64 07 a5 65 72 72 6f 72 83 a4 63 6f 64 65 "
	                    "ac 52 41 54 45 5f 4c 49 4d 49 54 45 44 a7 6d 65 73 73 61 67 65 "
	                    "b3 72 65 73 65 6e 64 20 61 66 74 65 72 20 32 35 30 20 6d 73 "
	                    "ae 72 65 74 72 79 5f 61 66 74 65 72 5f 6d 73 cc fa");
	{
		struct isvd_proto_reply r;
		struct isvd_proto_error e;
		assert_int_equal(dec_rep(buf, len, ISVD_OP_PUSH, &r, &e), ISVD_PROTO_OK);
		assert_false(r.ok);
		assert_int_equal(r.error_code, ISVD_PROTO_RATE_LIMITED);
		assert_int_equal(r.retry_after_ms, 250);
		rep_done(&r);
	}
	free(buf);
	/* retry_after_ms goes with RATE_LIMITED only */
	assert_int_equal(isvd_proto_error_encode_retry(id7, 1, ISVD_PROTO_UNKNOWN_OP, "unknown op 'pong'",
	                                               250, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "83 a2 6f 6b c2 a2 69 64 07 a5 65 72 72 6f 72 82 a4 63 6f 64 65 "
	                    "aa 55 4e 4b 4e 4f 57 4e 5f 4f 50 a7 6d 65 73 73 61 67 65 "
	                    "b1 75 6e 6b 6e 6f 77 6e 20 6f 70 20 27 70 6f 6e 67 27");
	free(buf);

	/* gap filling: a reconstruct with a NaN in form (b), and a project reply
	 * for a row with gaps */
	double gapped[3] = { 1, NAN, 2 };
	struct isvd_proto_request fillreq = { .op = ISVD_OP_RECONSTRUCT, .rows = { gapped, 1, 3, 0 },
	                                      .has_fill = true, .fill = true };
	assert_int_equal(isvd_proto_request_encode(&fillreq, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "83 a2 6f 70 ab 72 65 63 6f 6e 73 74 72 75 63 74 "
	                    "a4 72 6f 77 73 83 a5 73 68 61 70 65 92 01 03 "
	                    "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 18 "
	                    "00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 f8 7f 00 00 00 00 00 00 00 40 "
	                    "a4 66 69 6c 6c c3");
	free(buf);
	double two = 2, half = 0.5;
	struct isvd_proto_reply projected = { .op = ISVD_OP_PROJECT, .ok = true,
	                                      .coords = { &two, 1, 1, 0 }, .residual = { &half, 1 },
	                                      .has_observed = true, .observed = { &two, 1 }, .seq = 7 };
	assert_int_equal(isvd_proto_reply_encode(&projected, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "85 a2 6f 6b c3 a6 63 6f 6f 72 64 73 83 a5 73 68 61 70 65 92 01 01 "
	                    "a5 64 74 79 70 65 a3 66 36 34 a4 64 61 74 61 c4 08 "
	                    "00 00 00 00 00 00 00 40 "
	                    "a8 72 65 73 69 64 75 61 6c 91 cb 3f e0 00 00 00 00 00 00 "
	                    "a8 6f 62 73 65 72 76 65 64 91 cb 40 00 00 00 00 00 00 00 "
	                    "a3 73 65 71 07");
	free(buf);

	/* an anomaly message */
	uint64_t aseq[2] = { 7, 9 };
	double aspe[2] = { 12.5, 0.25 }, at2[2] = { 1, 99 };
	struct isvd_proto_anomaly an = { { aseq, 2 }, { aspe, 2 }, { at2, 2 }, 3.5, 20, 1700000000.5 };
	assert_int_equal(isvd_proto_anomaly_encode(&an, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "86 a3 73 65 71 92 07 09 a3 73 70 65 92 cb 40 29 00 00 00 00 00 00 "
	                    "cb 3f d0 00 00 00 00 00 00 a2 74 32 92 cb 3f f0 00 00 00 00 00 00 "
	                    "cb 40 58 c0 00 00 00 00 00 a9 73 70 65 5f 6c 69 6d 69 74 "
	                    "cb 40 0c 00 00 00 00 00 00 a8 74 32 5f 6c 69 6d 69 74 "
	                    "cb 40 34 00 00 00 00 00 00 a1 74 cb 41 d9 54 fc 40 20 00 00");
	free(buf);

	/* the form (a) example decodes to [[1, 2.5], [NaN, -3]] */
	struct frame f;
	struct isvd_proto_request req;
	struct isvd_proto_error e;
	fr_init(&f);
	fr_hex(&f, "82 a2 6f 70 a4 70 75 73 68 a4 72 6f 77 73 92 92 01 cb 40 04 00 00 00 00 00 00 92 c0 fd");
	assert_int_equal(dec_req(fr_data(&f), f.sb.size, NULL, &req, &e), ISVD_PROTO_OK);
	assert_int_equal(req.rows.rows, 2);
	assert_int_equal(req.rows.cols, 2);
	assert_true(req.rows.data[0] == 1 && req.rows.data[1] == 2.5);
	assert_true(isnan(req.rows.data[2]) && req.rows.data[3] == -3);
	req_done(&req);
	fr_fini(&f);

	double sig[2] = { 3, 0.5 };
	struct isvd_proto_spectrum sp = { .seq = 1001, .rows_seen = 1001, .sigma = { sig, 2 },
	                                  .explained_energy_ratio = 0.75, .t = 1700000000.5 };
	assert_int_equal(isvd_proto_spectrum_encode(&sp, &buf, &len), ISVD_PROTO_OK);
	check_hex(buf, len, "85 a3 73 65 71 cd 03 e9 a9 72 6f 77 73 5f 73 65 65 6e cd 03 e9 "
	                    "a5 73 69 67 6d 61 92 cb 40 08 00 00 00 00 00 00 cb 3f e0 00 00 00 00 00 00 "
	                    "b6 65 78 70 6c 61 69 6e 65 64 5f 65 6e 65 72 67 79 5f 72 61 74 69 6f "
	                    "cb 3f e8 00 00 00 00 00 00 a1 74 cb 41 d9 54 fc 40 20 00 00");
	free(buf);
}

/* The anomaly topic: seq as unsigned integers, the statistics, the limits. */
static void test_anomaly_roundtrip(void **state)
{
	(void)state;
	uint64_t seq[2] = { 7, UINT64_MAX };
	double spe[2] = { 12.5, 0.25 }, t2[2] = { 1, 99 };
	struct isvd_proto_anomaly in = { { seq, 2 }, { spe, 2 }, { t2, 2 }, 3.5, 20.0, 1767225600.5 };
	struct isvd_proto_anomaly out;
	struct isvd_proto_error e;
	uint8_t *buf;
	size_t len;
	assert_int_equal(isvd_proto_anomaly_encode(&in, &buf, &len), ISVD_PROTO_OK);
	assert_int_equal(isvd_proto_anomaly_decode(buf, len, NULL, &out, &e), ISVD_PROTO_OK);
	assert_int_equal(out.seq.n, 2);
	assert_true(out.seq.v[0] == 7 && out.seq.v[1] == UINT64_MAX);
	same_vec(&out.spe, &in.spe);
	same_vec(&out.t2, &in.t2);
	assert_true(out.spe_limit == 3.5 && out.t2_limit == 20.0 && out.t == in.t);
	isvd_proto_anomaly_fini(&out);
	for (size_t n = 0; n < len; n++) {   /* every proper prefix is refused */
		assert_int_equal(isvd_proto_anomaly_decode(buf, n, NULL, &out, &e), ISVD_PROTO_BAD_REQUEST);
		isvd_proto_anomaly_fini(&out);
	}
	free(buf);
	in.t2.n = 1;   /* lengths must agree */
	assert_int_equal(isvd_proto_anomaly_encode(&in, &buf, &len), ISVD_PROTO_INVALID);
	assert_int_equal(proto_test_live, 0);
}

/* Encoders refuse inconsistent structures instead of writing garbage. */
static void test_encode_invalid(void **state)
{
	(void)state;
	uint8_t *buf = (uint8_t *)"x";
	size_t len = 1;
	uint8_t bad_id[] = { 0x92, 0x01 };   /* array of 2 with one element */
	struct isvd_proto_request req = { .op = ISVD_OP_PING, .id = bad_id, .id_len = sizeof bad_id };
	assert_int_equal(isvd_proto_request_encode(&req, &buf, &len), ISVD_PROTO_INVALID);
	assert_null(buf);
	req = (struct isvd_proto_request){ .op = ISVD_OP_COUNT_ };
	assert_int_equal(isvd_proto_request_encode(&req, &buf, &len), ISVD_PROTO_INVALID);
	req = (struct isvd_proto_request){ .op = ISVD_OP_PUSH, .rows = { NULL, 2, 2, 0 } };
	assert_int_equal(isvd_proto_request_encode(&req, &buf, &len), ISVD_PROTO_INVALID);
	req.rows = (struct isvd_proto_matrix){ (double *)M23, SIZE_MAX / 2, 4, 0 };
	assert_int_equal(isvd_proto_request_encode(&req, &buf, &len), ISVD_PROTO_INVALID);
	struct isvd_proto_reply rep = { .op = ISVD_OP_PING, .ok = true };   /* version NULL */
	assert_int_equal(isvd_proto_reply_encode(&rep, &buf, &len), ISVD_PROTO_INVALID);
	assert_int_equal(isvd_proto_error_encode(NULL, 0, ISVD_PROTO_OK, "no", &buf, &len),
	                 ISVD_PROTO_INVALID);
	assert_int_equal(isvd_proto_request_encode(NULL, &buf, &len), ISVD_PROTO_INVALID);
	assert_null(isvd_proto_op_name(ISVD_OP_NONE));
	assert_string_equal(isvd_proto_op_name(ISVD_OP_CHECKPOINT), "checkpoint");
}

/* Equal models publish equal bytes: encoding is a pure function of the values. */
static void test_encoding_deterministic(void **state)
{
	(void)state;
	double sig[2] = { 10, 2.5 }, vt[6] = { 0.6, 0.8, 0, 0, 0, 1 };
	struct isvd_proto_reply a, b;
	uint8_t *x, *y;
	size_t nx, ny;
	fill_reply(&a, ISVD_OP_FACTORS, sig, vt, NULL, NULL);
	fill_reply(&b, ISVD_OP_FACTORS, sig, vt, NULL, NULL);
	b.error_message = (char *)"ignored when ok";
	assert_int_equal(isvd_proto_reply_encode(&a, &x, &nx), ISVD_PROTO_OK);
	assert_int_equal(isvd_proto_reply_encode(&b, &y, &ny), ISVD_PROTO_OK);
	assert_int_equal(nx, ny);
	assert_memory_equal(x, y, nx);
	free(x);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_anomaly_roundtrip),
		cmocka_unit_test(test_request_nan_roundtrip),
		cmocka_unit_test(test_matrix_form_a),
		cmocka_unit_test(test_matrix_form_b_f32),
		cmocka_unit_test(test_reply_roundtrip),
		cmocka_unit_test(test_factors_snapshot),
		cmocka_unit_test(test_reply_missing_and_extra),
		cmocka_unit_test(test_error_replies),
		cmocka_unit_test(test_info_pushers),
		cmocka_unit_test(test_spectrum_roundtrip),
		cmocka_unit_test(test_protocol_md_examples),
		cmocka_unit_test(test_encode_invalid),
		cmocka_unit_test(test_encoding_deterministic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
