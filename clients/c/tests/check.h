/*
 * check.h — what the two C check programs (client_check.c,
 * producer_check.c) share: the CHECK macro and its count of failures, the
 * deterministic row values both send, and the command-line options that
 * set libisvd's client (check.c).
 */
#ifndef ISVD_CHECK_H
#define ISVD_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "isvd/client.h"

/* Checks that did not hold so far; a program exits 0 only while it is 0. */
extern int failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                        \
		if (!(cond)) {                                                          \
			fprintf(stderr, "check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                       \
			fputc('\n', stderr);                                                \
			failures++;                                                         \
		}                                                                       \
	} while (0)

/* Value j of the g-th row overall (g from 1): sin(0.37·g·(j+1) + j), so a
 * test can recompute what was sent. */
double value(uint64_t g, size_t j);

/* A decimal count from the command line. */
size_t num(const char *s);

/* Sets the client option a (--ingest, --query, --publish, --timeout-ms,
 * --retries) to v: 1, or 0 when a is none of them. */
int client_option(struct isvd_client_options *o, const char *a, const char *v);

#endif
