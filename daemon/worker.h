/*
 * worker.h — one background thread that runs one job at a time: isvdd's
 * engine thread.
 *
 * The event loop (ingest.c) hands a block of rows to the engine with
 * wrk_submit() and goes on receiving, decoding and logging the next block;
 * it learns that the job ended either by polling wrk_fd() (readable once
 * the job has ended) or by blocking in wrk_wait().  Only one job is ever in
 * flight: wrk_submit() on a busy worker is a programming error.
 *
 *   loop:    wrk_submit(job) ──► … receive / log the next block … ──► wrk_wait()
 *   thread:            └──► fn(ctx, job) ──► done, wrk_fd() readable ─┘
 *
 * Memory: everything the job touches belongs to the thread from
 * wrk_submit() until wrk_wait() returns it; the mutex orders the two.
 */
#ifndef ISVDD_WORKER_H
#define ISVDD_WORKER_H


struct wrk;

/* Starts a thread that will call fn(ctx, job) for every submitted job.
 * Returns 0 and sets *out, or an errno value. */
int wrk_create(void (*fn)(void *ctx, void *job), void *ctx, struct wrk **out);

/* Hands job to the thread.  The worker must be idle (no job submitted since
 * the last wrk_wait()). */
void wrk_submit(struct wrk *w, void *job);

/* Blocks until the submitted job has run and returns it (NULL when none
 * was submitted); the worker is idle afterwards. */
void *wrk_wait(struct wrk *w);

/* A file descriptor that polls readable while a finished job waits for
 * wrk_wait() (for zmq_poll's fd items). */
int wrk_fd(const struct wrk *w);

/* Waits for a job in flight, stops and joins the thread, frees everything.
 * wrk_destroy(NULL) is a no-op. */
void wrk_destroy(struct wrk *w);

#endif /* ISVDD_WORKER_H */
