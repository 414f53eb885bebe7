/*
 * kafka_none.c — kafka.h's entry points in an isvdd built without Kafka
 * support (meson -Dkafka=disabled, or librdkafka or jansson missing): a
 * kafka section is a configuration problem, so that `isvdd --check` says
 * so before anything starts.
 */
#include "kafka.h"

#include "isvdd.h"

int kfk_check(const struct cfg *cfg, FILE *errs)
{
	if (!cfg->kafka.on)
		return 0;
	fprintf(errs, "%s:%zu:1: kafka: this isvdd is built without Kafka support (librdkafka and "
	        "jansson; meson -Dkafka=enabled)\n", cfg->path ? cfg->path : "", cfg->kafka.line);
	return 1;
}

const char *kfk_version(void)
{
	return NULL;
}

int kfk_start(struct isvdd *srv, struct kfk **out)
{
	log_msg(srv->log, CFG_LOG_ERROR, "kafka: this isvdd is built without Kafka support");
	return -1;
}

void kfk_stop(struct kfk *k)
{
}

void kfk_destroy(struct kfk *k)
{
}

int kfk_on_checkpoint_request(void *srv, uint64_t *seq, char *why, size_t cap)
{
	snprintf(why, cap, "this isvdd is built without Kafka support");
	return -1;
}
