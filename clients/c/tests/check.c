/*
 * check.c — the pieces the two C check programs share (check.h).
 */
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int failures;

double value(uint64_t g, size_t j)
{
	return sin(0.37 * (double)g * (double)(j + 1) + (double)j);
}

size_t num(const char *s)
{
	return (size_t)strtoull(s, NULL, 10);
}

int client_option(struct isvd_client_options *o, const char *a, const char *v)
{
	if (!strcmp(a, "--ingest")) o->ingest = v;
	else if (!strcmp(a, "--query")) o->query = v;
	else if (!strcmp(a, "--publish")) o->publish = v;
	else if (!strcmp(a, "--timeout-ms")) o->timeout_ms = (int)num(v);
	else if (!strcmp(a, "--retries")) o->retries = (int)num(v);
	else return 0;
	return 1;
}
