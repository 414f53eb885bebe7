/*
 * encode.c — the field tables of every body, and the encoders that walk them.
 *
 * The tables below are the schema of protocol v1: PROTOCOL.md lists the same
 * keys in the same order.  Encoders write keys in table order after `op`/`ok`
 * and `id`, with the smallest msgpack form for each integer (msgpack-c's
 * packer picks it) and float64 for every float, so equal values give equal
 * bytes: a model publishes the same snapshot bytes wherever it runs.
 *
 * Output is built in a msgpack_sbuffer (malloc/realloc); on success its
 * buffer is handed to the caller, who frees it with free().
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

#define REQ(f)  offsetof(struct isvd_proto_request, f)
#define REP(f)  offsetof(struct isvd_proto_reply, f)
#define SPE(f)  offsetof(struct isvd_proto_spectrum, f)
#define ANO(f)  offsetof(struct isvd_proto_anomaly, f)
#define DRI(f)  offsetof(struct isvd_proto_drift, f)
#define KAF(f)  offsetof(struct isvd_proto_kafka, f)
#define KAP(f)  offsetof(struct isvd_proto_kafka_partition, f)
#define NF      PROTO_NO_FLAG

/* ------------------------------------------------------------ field tables */

static const struct proto_field req_push[] = {
	{ "rows",   FT_MAT, REQ(rows),   NF,             true,  0 },
	{ "client", FT_STR, REQ(client), NF,             false, ISVD_PROTO_MAX_CLIENT },
	{ "batch",  FT_U64, REQ(batch),  REQ(has_batch), false, 0 },
	{ "scores", FT_BOOL, REQ(scores), REQ(has_scores), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field req_project[] = {
	{ "rows",  FT_MAT,   REQ(rows),  NF, true,  0 },
	{ "space", FT_SPACE, REQ(space), NF, false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field req_reconstruct[] = {
	{ "rows", FT_MAT,  REQ(rows), NF,            true,  0 },
	{ "fill", FT_BOOL, REQ(fill), REQ(has_fill), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field no_fields[] = {
	{ NULL, FT_U64, 0, NF, false, 0 },
};

const struct proto_field *const proto_request_fields[ISVD_OP_COUNT_] = {
	[ISVD_OP_NONE]        = NULL,
	[ISVD_OP_PUSH]        = req_push,
	[ISVD_OP_PING]        = no_fields,
	[ISVD_OP_INFO]        = no_fields,
	[ISVD_OP_PROJECT]     = req_project,
	[ISVD_OP_RECONSTRUCT] = req_reconstruct,
	[ISVD_OP_FACTORS]     = no_fields,
	[ISVD_OP_CHECKPOINT]  = no_fields,
	[ISVD_OP_BASELINE]    = no_fields,
};

static const struct proto_field rep_push[] = {
	{ "accepted",  FT_U64,  REP(accepted),  NF, true, 0 },
	{ "seq",       FT_U64,  REP(seq),       NF, true, 0 },
	{ "duplicate", FT_BOOL, REP(duplicate), NF, true, 0 },
	{ "spe",       FT_VEC,  REP(spe),       REP(has_scores), false, 0 },
	{ "t2",        FT_VEC,  REP(t2),        REP(has_scores), false, 0 },
	{ "spe_limit", FT_F64,  REP(spe_limit), REP(has_scores), false, 0 },
	{ "t2_limit",  FT_F64,  REP(t2_limit),  REP(has_scores), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_ping[] = {
	{ "version",  FT_STR, REP(version),  NF, true, 64 },
	{ "protocol", FT_U64, REP(protocol), NF, true, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_info[] = {
	{ "dim",                    FT_U64,  REP(dim),                    NF, true, 0 },
	{ "rank",                   FT_U64,  REP(rank),                   NF, true, 0 },
	{ "rank_max",               FT_U64,  REP(rank_max),               NF, true, 0 },
	{ "rows_seen",              FT_U64,  REP(rows_seen),              NF, true, 0 },
	{ "seq",                    FT_U64,  REP(seq),                    NF, true, 0 },
	{ "sigma",                  FT_VEC,  REP(sigma),                  NF, true, 0 },
	{ "explained_energy_ratio", FT_F64,  REP(explained_energy_ratio), NF, true, 0 },
	{ "condition_number",       FT_F64,  REP(condition_number),       NF, true, 0 },
	{ "orthogonality_error",    FT_F64,  REP(orthogonality_error),    NF, true, 0 },
	{ "center",                 FT_BOOL, REP(center),                 NF, true, 0 },
	{ "forget",                 FT_F64,  REP(forget),                 NF, true, 0 },
	{ "mode",                   FT_STR,  REP(mode),                   NF, false, 16 },
	{ "last_checkpoint_seq",    FT_U64,  REP(last_checkpoint_seq),    NF, true, 0 },
	{ "uptime_s",               FT_F64,  REP(uptime_s),               NF, true, 0 },
	{ "ingest_rows_per_s",      FT_F64,  REP(ingest_rows_per_s),      NF, true, 0 },
	{ "missing",                FT_STR,  REP(missing),                NF, false, 16 },
	{ "rows_with_gaps",         FT_U64,  REP(rows_with_gaps),         REP(has_gaps), false, 0 },
	{ "values_imputed",         FT_U64,  REP(values_imputed),         REP(has_gaps), false, 0 },
	{ "spe_limit",              FT_F64,  REP(spe_limit),              REP(has_monitor), false, 0 },
	{ "t2_limit",               FT_F64,  REP(t2_limit),               REP(has_monitor), false, 0 },
	{ "rows_flagged",           FT_U64,  REP(rows_flagged),           REP(has_monitor), false, 0 },
	{ "anomaly_messages",       FT_U64,  REP(anomaly_messages),       REP(has_monitor), false, 0 },
	{ "anomaly_messages_dropped", FT_U64, REP(anomaly_messages_dropped), REP(has_monitor), false, 0 },
	{ "drift_prev_deg",         FT_F64,  REP(drift_prev_deg),         REP(has_monitor), false, 0 },
	{ "drift_baseline_deg",     FT_F64,  REP(drift_baseline_deg),     REP(has_monitor), false, 0 },
	{ "baseline_seq",           FT_U64,  REP(baseline_seq),           REP(has_monitor), false, 0 },
	{ "gap",                    FT_VEC,  REP(gap),                    REP(has_monitor), false, 0 },
	{ "stable",                 FT_VEC,  REP(stable),                 REP(has_monitor), false, 0 },
	{ "pushers",                FT_PUSHERS, REP(pushers),             REP(has_pushers), false, 0 },
	{ "kafka",                  FT_RAW,  REP(kafka),                  REP(has_kafka), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_project[] = {
	{ "coords",   FT_MAT, REP(coords),   NF, true, 0 },
	{ "residual", FT_VEC, REP(residual), NF,                true,  0 },
	{ "observed", FT_VEC, REP(observed), REP(has_observed), false, 0 },
	{ "spe",      FT_VEC, REP(spe),      REP(has_scores),   false, 0 },
	{ "t2",       FT_VEC, REP(t2),       REP(has_scores),   false, 0 },
	{ "seq",      FT_U64, REP(seq),      NF,                true,  0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_reconstruct[] = {
	{ "rows", FT_MAT, REP(rows), NF, true, 0 },
	{ "seq",  FT_U64, REP(seq),  NF, true, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_factors[] = {
	{ "sigma", FT_VEC,     REP(sigma), NF,            true, 0 },
	{ "vt",    FT_MAT,     REP(vt),    NF,            true, 0 },
	{ "mean",  FT_VEC_NIL, REP(mean),  REP(has_mean), true, 0 },
	{ "seq",   FT_U64,     REP(seq),   NF,            true, 0 },
	{ "stable", FT_VEC,    REP(stable), REP(has_monitor), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
static const struct proto_field rep_checkpoint[] = {
	{ "seq", FT_U64, REP(seq), NF, true, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};

const struct proto_field *const proto_reply_fields[ISVD_OP_COUNT_] = {
	[ISVD_OP_NONE]        = NULL,
	[ISVD_OP_PUSH]        = rep_push,
	[ISVD_OP_PING]        = rep_ping,
	[ISVD_OP_INFO]        = rep_info,
	[ISVD_OP_PROJECT]     = rep_project,
	[ISVD_OP_RECONSTRUCT] = rep_reconstruct,
	[ISVD_OP_FACTORS]     = rep_factors,
	[ISVD_OP_CHECKPOINT]  = rep_checkpoint,
	[ISVD_OP_BASELINE]    = rep_checkpoint,   /* {seq} */
};

const struct proto_field proto_spectrum_fields[] = {
	{ "seq",                    FT_U64, SPE(seq),                    NF, true, 0 },
	{ "rows_seen",              FT_U64, SPE(rows_seen),              NF, true, 0 },
	{ "sigma",                  FT_VEC, SPE(sigma),                  NF, true, 0 },
	{ "explained_energy_ratio", FT_F64, SPE(explained_energy_ratio), NF, true, 0 },
	{ "t",                      FT_F64, SPE(t),                      NF, true, 0 },
	{ "rows_with_gaps",         FT_U64, SPE(rows_with_gaps),  SPE(has_gaps), false, 0 },
	{ "values_imputed",         FT_U64, SPE(values_imputed),  SPE(has_gaps), false, 0 },
	{ "drift_prev_deg",         FT_F64, SPE(drift_prev_deg),     SPE(has_monitor), false, 0 },
	{ "drift_baseline_deg",     FT_F64, SPE(drift_baseline_deg), SPE(has_monitor), false, 0 },
	{ "stable",                 FT_VEC, SPE(stable),             SPE(has_monitor), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};

const struct proto_field proto_anomaly_fields[] = {
	{ "seq",       FT_UVEC, ANO(seq),       NF, true, 0 },
	{ "spe",       FT_VEC,  ANO(spe),       NF, true, 0 },
	{ "t2",        FT_VEC,  ANO(t2),        NF, true, 0 },
	{ "spe_limit", FT_F64,  ANO(spe_limit), NF, true, 0 },
	{ "t2_limit",  FT_F64,  ANO(t2_limit),  NF, true, 0 },
	{ "t",         FT_F64,  ANO(t),         NF, true, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};

const struct proto_field proto_drift_fields[] = {
	{ "seq",           FT_U64,  DRI(seq),           NF, true, 0 },
	{ "angle_deg",     FT_F64,  DRI(angle_deg),     NF, true, 0 },
	{ "threshold_deg", FT_F64,  DRI(threshold_deg), NF, true, 0 },
	{ "baseline_seq",  FT_U64,  DRI(baseline_seq),  NF, true, 0 },
	{ "exceeded",      FT_BOOL, DRI(exceeded),      NF, true, 0 },
	{ "t",             FT_F64,  DRI(t),             NF, true, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};

/* info's `kafka` map, then each entry of its `partitions` array */
const struct proto_field proto_kafka_fields[] = {
	{ "role",               FT_STR, KAF(role),               NF, true,  16 },
	{ "topic",              FT_STR, KAF(topic),              NF, true,  0 },
	{ "changelog_topic",    FT_STR, KAF(changelog_topic),    NF, true,  0 },
	{ "group",              FT_STR, KAF(group),              NF, false, 0 },
	{ "ingest",             FT_STR, KAF(ingest),             NF, true,  0 },
	{ "rows",               FT_U64, KAF(rows),               NF, true,  0 },
	{ "images",             FT_U64, KAF(images),             NF, true,  0 },
	{ "images_failed",      FT_U64, KAF(images_failed),      NF, true,  0 },
	{ "dead_lettered",      FT_U64, KAF(dead_lettered),      KAF(has_shard), false, 0 },
	{ "oldest_image_age_s", FT_F64, KAF(oldest_image_age_s), KAF(has_merge), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};
const struct proto_field proto_kafka_partition_fields[] = {
	{ "partition",     FT_U64, KAP(partition),     NF, true, 0 },
	{ "rows",          FT_U64, KAP(rows),          NF, true, 0 },
	{ "folded_offset", FT_I64, KAP(folded_offset), NF, true, 0 },
	{ "undecodable",   FT_U64, KAP(undecodable),   NF, true, 0 },
	{ "image_offset",  FT_I64, KAP(image_offset),  KAP(has_shard), false, 0 },
	{ "lag",           FT_I64, KAP(lag),           KAP(has_shard), false, 0 },
	{ "image_age_s",   FT_F64, KAP(image_age_s),   KAP(has_merge), false, 0 },
	{ NULL, FT_U64, 0, NF, false, 0 },
};

static const char *const op_names[ISVD_OP_COUNT_] = {
	[ISVD_OP_PUSH] = "push", [ISVD_OP_PING] = "ping", [ISVD_OP_INFO] = "info",
	[ISVD_OP_PROJECT] = "project", [ISVD_OP_RECONSTRUCT] = "reconstruct",
	[ISVD_OP_FACTORS] = "factors", [ISVD_OP_CHECKPOINT] = "checkpoint",
	[ISVD_OP_BASELINE] = "baseline",
};

const char *isvd_proto_op_name(enum isvd_proto_op op)
{
	if ((int)op <= ISVD_OP_NONE || op >= ISVD_OP_COUNT_)
		return NULL;
	return op_names[op];
}

/* ---------------------------------------------------------------- packing */

int proto_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	if (n > UINT32_MAX)
		return -1;
	return msgpack_pack_str_with_body(pk, s, n);
}

int proto_pack_vec(msgpack_packer *pk, const struct isvd_proto_vec *v)
{
	if (v->n > UINT32_MAX || (v->n && !v->v))
		return -1;
	int rc = msgpack_pack_array(pk, v->n);
	for (size_t k = 0; k < v->n && rc == 0; k++)
		rc = msgpack_pack_double(pk, v->v[k]);
	return rc;
}

int proto_pack_matrix(msgpack_packer *pk, const struct isvd_proto_matrix *m)
{
	size_t n = m->rows * m->cols;
	if (m->cols && n / m->cols != m->rows)
		return -1;
	if (n > UINT32_MAX / 8 || (n && !m->data))
		return -1;
	int rc = msgpack_pack_map(pk, 3);
	rc |= proto_pack_str(pk, "shape");
	rc |= msgpack_pack_array(pk, 2);
	rc |= msgpack_pack_uint64(pk, m->rows);
	rc |= msgpack_pack_uint64(pk, m->cols);
	rc |= proto_pack_str(pk, "dtype");
	rc |= proto_pack_str(pk, "f64");
	rc |= proto_pack_str(pk, "data");
	rc |= msgpack_pack_bin(pk, n * 8);
	/* little-endian float64, 512 values per write */
	unsigned char chunk[512 * 8];
	for (size_t k = 0; k < n && rc == 0; ) {
		size_t m_n = n - k < 512 ? n - k : 512;
		for (size_t j = 0; j < m_n; j++) {
			uint64_t u;
			memcpy(&u, &m->data[k + j], sizeof u);
			for (unsigned b = 0; b < 8; b++)
				chunk[j * 8 + b] = (unsigned char)(u >> (8 * b));
		}
		rc = msgpack_pack_bin_body(pk, chunk, m_n * 8);
		k += m_n;
	}
	return rc ? -1 : 0;
}

static const void *at(const void *base, size_t off)
{
	return (const unsigned char *)base + off;
}

static bool flag(const void *base, size_t off)
{
	return off != PROTO_NO_FLAG && *(const bool *)at(base, off);
}

static bool present(const struct proto_field *f, const void *base)
{
	switch (f->type) {
	case FT_STR:   return f->required || *(char *const *)at(base, f->off) != NULL;
	case FT_SPACE: return f->required || *(const enum isvd_proto_space *)at(base, f->off) != ISVD_PROTO_SPACE_SCORES;
	case FT_VEC_NIL: return true;
	default:       return f->required || flag(base, f->flag_off);
	}
}

size_t proto_count_fields(const struct proto_field *table, const void *base)
{
	size_t n = 0;
	for (const struct proto_field *f = table; f->key; f++)
		n += present(f, base);
	return n;
}

int proto_pack_fields(msgpack_packer *pk, const struct proto_field *table, const void *base)
{
	int rc = 0;
	for (const struct proto_field *f = table; f->key && rc == 0; f++) {
		if (!present(f, base))
			continue;
		const void *v = at(base, f->off);
		rc = proto_pack_str(pk, f->key);
		if (rc)
			break;
		switch (f->type) {
		case FT_U64:  rc = msgpack_pack_uint64(pk, *(const uint64_t *)v); break;
		case FT_I64:  rc = msgpack_pack_int64(pk, *(const int64_t *)v); break;
		case FT_RAW: {   /* checked by check_fields(): one whole value */
			const struct isvd_proto_raw *r = v;
			rc = pk->callback(pk->data, (const char *)r->p, r->n);
			break;
		}
		case FT_F64:  rc = msgpack_pack_double(pk, *(const double *)v); break;
		case FT_BOOL: rc = *(const bool *)v ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
		case FT_STR: {
			const char *s = *(char *const *)v;
			rc = s ? proto_pack_str(pk, s) : -1;
			break;
		}
		case FT_VEC:  rc = proto_pack_vec(pk, v); break;
		case FT_UVEC: {
			const struct isvd_proto_uvec *u = v;
			rc = msgpack_pack_array(pk, (uint32_t)u->n);
			for (size_t i = 0; i < u->n && rc == 0; i++)
				rc = msgpack_pack_uint64(pk, u->v[i]);
			break;
		}
		case FT_PUSHERS: {
			const struct isvd_proto_pushers *u = v;
			rc = msgpack_pack_array(pk, (uint32_t)u->n);
			for (size_t i = 0; i < u->n && rc == 0; i++) {
				const struct isvd_proto_pusher *q = &u->v[i];
				rc = msgpack_pack_map(pk, 5);
				rc |= proto_pack_str(pk, "key");
				rc |= proto_pack_str(pk, q->key);
				rc |= proto_pack_str(pk, "pushes");
				rc |= msgpack_pack_uint64(pk, q->pushes);
				rc |= proto_pack_str(pk, "rows");
				rc |= msgpack_pack_uint64(pk, q->rows);
				rc |= proto_pack_str(pk, "limited_pushes");
				rc |= msgpack_pack_uint64(pk, q->limited_pushes);
				rc |= proto_pack_str(pk, "limited_rows");
				rc |= msgpack_pack_uint64(pk, q->limited_rows);
			}
			break;
		}
		case FT_VEC_NIL:
			rc = flag(base, f->flag_off) ? proto_pack_vec(pk, v) : msgpack_pack_nil(pk);
			break;
		case FT_MAT:  rc = proto_pack_matrix(pk, v); break;
		case FT_SPACE:
			rc = proto_pack_str(pk, *(const enum isvd_proto_space *)v == ISVD_PROTO_SPACE_U
			                        ? "u" : "scores");
			break;
		}
	}
	return rc ? -1 : 0;
}

/* Checks that the len bytes at p are exactly one well-formed msgpack value
 * (a request's id, a raw field). */
static bool id_valid(const uint8_t *p, size_t len)
{
	struct proto_rd rd;
	proto_rd_init(&rd, p, len, 64);
	return proto_rd_skip(&rd, 2, NULL) == ISVD_PROTO_OK && proto_rd_left(&rd) == 0;
}

/* Rejects what the packers above would refuse, so that a packer failure
 * afterwards can only mean that memory ran out. */
static int check_fields(const struct proto_field *table, const void *base)
{
	for (const struct proto_field *f = table; f->key; f++) {
		if (!present(f, base))
			continue;
		const void *v = at(base, f->off);
		if (f->type == FT_RAW) {
			const struct isvd_proto_raw *r = v;
			if (!r->p || !id_valid(r->p, r->n))
				return ISVD_PROTO_INVALID;
		}
		if (f->type == FT_STR && !*(char *const *)v)
			return ISVD_PROTO_INVALID;
		if (f->type == FT_UVEC) {
			const struct isvd_proto_uvec *u = v;
			if (u->n > UINT32_MAX || (u->n && !u->v))
				return ISVD_PROTO_INVALID;
		}
		if (f->type == FT_PUSHERS) {
			const struct isvd_proto_pushers *u = v;
			if (u->n > UINT32_MAX || (u->n && !u->v))
				return ISVD_PROTO_INVALID;
			for (size_t i = 0; i < u->n; i++)
				if (!u->v[i].key || strlen(u->v[i].key) > ISVD_PROTO_MAX_CLIENT)
					return ISVD_PROTO_INVALID;
		}
		if (f->type == FT_VEC || (f->type == FT_VEC_NIL && flag(base, f->flag_off))) {
			const struct isvd_proto_vec *x = v;
			if (x->n > UINT32_MAX || (x->n && !x->v))
				return ISVD_PROTO_INVALID;
		}
		if (f->type == FT_MAT) {
			const struct isvd_proto_matrix *m = v;
			size_t n = m->rows * m->cols;
			if ((m->cols && n / m->cols != m->rows) || n > UINT32_MAX / 8 || (n && !m->data))
				return ISVD_PROTO_INVALID;
		}
	}
	return ISVD_PROTO_OK;
}

/* --------------------------------------------------------------- encoders */

/* Hands the finished buffer to the caller, or frees it. */
static int finish(msgpack_sbuffer *sb, int rc, uint8_t **out, size_t *out_len)
{
	if (rc) {
		msgpack_sbuffer_destroy(sb);
		return rc;
	}
	*out_len = sb->size;
	*out = (uint8_t *)msgpack_sbuffer_release(sb);
	msgpack_sbuffer_destroy(sb);
	return ISVD_PROTO_OK;
}

/* Validates what every encoder needs before a byte is written. */
static int check_out(uint8_t **out, size_t *out_len, const uint8_t *id, size_t id_len)
{
	if (!out || !out_len)
		return ISVD_PROTO_INVALID;
	*out = NULL;
	*out_len = 0;
	if (id && !id_valid(id, id_len))
		return ISVD_PROTO_INVALID;
	return ISVD_PROTO_OK;
}

int isvd_proto_request_encode(const struct isvd_proto_request *req, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, req ? req->id : NULL, req ? req->id_len : 0);
	if (rc)
		return rc;
	const char *op = req ? isvd_proto_op_name(req->op) : NULL;
	if (!op)
		return ISVD_PROTO_INVALID;
	const struct proto_field *table = proto_request_fields[req->op];
	if ((rc = check_fields(table, req)))
		return rc;

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, 1 + (req->id != NULL) + proto_count_fields(table, req));
	prc |= proto_pack_str(&pk, "op");
	prc |= proto_pack_str(&pk, op);
	if (req->id) {
		prc |= proto_pack_str(&pk, "id");
		prc |= msgpack_sbuffer_write(&sb, (const char *)req->id, req->id_len);
	}
	if (prc == 0)
		prc = proto_pack_fields(&pk, table, req);
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

/* Opens {ok: …, id?: …} with n more entries to come. */
static int pack_head(msgpack_packer *pk, msgpack_sbuffer *sb, bool ok,
                     const uint8_t *id, size_t id_len, size_t n)
{
	int rc = msgpack_pack_map(pk, 1 + (id != NULL) + n);
	rc |= proto_pack_str(pk, "ok");
	rc |= ok ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	if (id) {
		rc |= proto_pack_str(pk, "id");
		rc |= msgpack_sbuffer_write(sb, (const char *)id, id_len);
	}
	return rc;
}

int isvd_proto_error_encode(const uint8_t *id, size_t id_len, int code, const char *message,
                            uint8_t **out, size_t *out_len)
{
	return isvd_proto_error_encode_retry(id, id_len, code, message, 0, out, out_len);
}

int isvd_proto_error_encode_retry(const uint8_t *id, size_t id_len, int code, const char *message,
                                  uint64_t retry_after_ms, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, id, id_len);
	if (rc)
		return rc;
	if (code <= ISVD_PROTO_OK || code >= ISVD_PROTO_ERR_COUNT_)
		return ISVD_PROTO_INVALID;
	if (!message)
		message = isvd_proto_strerror(code);

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = pack_head(&pk, &sb, false, id, id_len, 1);
	prc |= proto_pack_str(&pk, "error");
	const bool retry = code == ISVD_PROTO_RATE_LIMITED;
	prc |= msgpack_pack_map(&pk, retry ? 3 : 2);
	prc |= proto_pack_str(&pk, "code");
	prc |= proto_pack_str(&pk, isvd_proto_err_name(code));
	prc |= proto_pack_str(&pk, "message");
	prc |= proto_pack_str(&pk, message);
	if (retry) {
		prc |= proto_pack_str(&pk, "retry_after_ms");
		prc |= msgpack_pack_uint64(&pk, retry_after_ms);
	}
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

int isvd_proto_reply_encode(const struct isvd_proto_reply *rep, uint8_t **out, size_t *out_len)
{
	if (!rep)
		return ISVD_PROTO_INVALID;
	if (!rep->ok)
		return isvd_proto_error_encode_retry(rep->id, rep->id_len, rep->error_code,
		                                     rep->error_message, rep->retry_after_ms, out, out_len);
	int rc = check_out(out, out_len, rep->id, rep->id_len);
	if (rc)
		return rc;
	if (!isvd_proto_op_name(rep->op))
		return ISVD_PROTO_INVALID;
	const struct proto_field *table = proto_reply_fields[rep->op];
	if ((rc = check_fields(table, rep)))
		return rc;

	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = pack_head(&pk, &sb, true, rep->id, rep->id_len, proto_count_fields(table, rep));
	if (prc == 0)
		prc = proto_pack_fields(&pk, table, rep);
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

int isvd_proto_spectrum_encode(const struct isvd_proto_spectrum *s, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, NULL, 0);
	if (rc)
		return rc;
	if (!s)
		return ISVD_PROTO_INVALID;
	if ((rc = check_fields(proto_spectrum_fields, s)))
		return rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, proto_count_fields(proto_spectrum_fields, s));
	if (prc == 0)
		prc = proto_pack_fields(&pk, proto_spectrum_fields, s);
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

int isvd_proto_anomaly_encode(const struct isvd_proto_anomaly *a, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, NULL, 0);
	if (rc)
		return rc;
	if (!a || a->spe.n != a->seq.n || a->t2.n != a->seq.n)
		return ISVD_PROTO_INVALID;
	if ((rc = check_fields(proto_anomaly_fields, a)))
		return rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, proto_count_fields(proto_anomaly_fields, a));
	if (prc == 0)
		prc = proto_pack_fields(&pk, proto_anomaly_fields, a);
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

int isvd_proto_drift_encode(const struct isvd_proto_drift *d, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, NULL, 0);
	if (rc)
		return rc;
	if (!d)
		return ISVD_PROTO_INVALID;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, proto_count_fields(proto_drift_fields, d));
	if (prc == 0)
		prc = proto_pack_fields(&pk, proto_drift_fields, d);
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}

int isvd_proto_kafka_encode(const struct isvd_proto_kafka *k, uint8_t **out, size_t *out_len)
{
	int rc = check_out(out, out_len, NULL, 0);
	if (rc)
		return rc;
	if (!k || (k->partitions && !k->part) || k->partitions > UINT32_MAX)
		return ISVD_PROTO_INVALID;
	if ((rc = check_fields(proto_kafka_fields, k)))
		return rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	int prc = msgpack_pack_map(&pk, proto_count_fields(proto_kafka_fields, k) + 1);
	prc |= proto_pack_fields(&pk, proto_kafka_fields, k);
	prc |= proto_pack_str(&pk, "partitions");
	prc |= msgpack_pack_array(&pk, (uint32_t)k->partitions);
	for (size_t i = 0; i < k->partitions && prc == 0; i++) {
		const struct isvd_proto_kafka_partition *p = &k->part[i];
		prc = msgpack_pack_map(&pk, proto_count_fields(proto_kafka_partition_fields, p));
		prc |= proto_pack_fields(&pk, proto_kafka_partition_fields, p);
	}
	return finish(&sb, prc ? ISVD_PROTO_NOMEM : ISVD_PROTO_OK, out, out_len);
}
