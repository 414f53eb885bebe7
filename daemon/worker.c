/*
 * worker.c — a one-job background thread (see worker.h).
 *
 * DESIGN
 *   A mutex and a condition variable carry the job from the loop to the
 *   thread and the end of the job back; a non-blocking pipe, written once
 *   per finished job and emptied by wrk_wait(), lets the loop sleep in
 *   zmq_poll() on its sockets and the job's end at once.
 *
 * INVARIANTS (under mu)
 *   job != NULL from wrk_submit() until wrk_wait() returns it; done is true
 *   once fn has returned for it.  The pipe holds at most one byte, written
 *   when done became true and read when wrk_wait() takes the job.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct wrk {
	void (*fn)(void *ctx, void *job);
	void *ctx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;           /* job submitted, job done, or stop */
	void *job;
	bool done, stop;
	int pipe[2];                 /* [0] polled by the loop, [1] written by the thread */
};

static void *run(void *arg)
{
	struct wrk *w = arg;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && !(w->job && !w->done))
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop && !(w->job && !w->done))
			break;
		void *job = w->job;
		pthread_mutex_unlock(&w->mu);
		w->fn(w->ctx, job);
		pthread_mutex_lock(&w->mu);
		w->done = true;
		pthread_cond_broadcast(&w->cv);
		const char b = 1;
		while (write(w->pipe[1], &b, 1) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int wrk_create(void (*fn)(void *ctx, void *job), void *ctx, struct wrk **out)
{
	struct wrk *w = calloc(1, sizeof *w);
	int err;

	if (!w)
		return ENOMEM;
	w->fn = fn;
	w->ctx = ctx;
	if (pipe(w->pipe) < 0) {
		err = errno;
		free(w);
		return err;
	}
	fcntl(w->pipe[0], F_SETFL, O_NONBLOCK);
	fcntl(w->pipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(w->pipe[1], F_SETFD, FD_CLOEXEC);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if ((err = pthread_create(&w->thread, NULL, run, w))) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		close(w->pipe[0]);
		close(w->pipe[1]);
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

void wrk_submit(struct wrk *w, void *job)
{
	pthread_mutex_lock(&w->mu);
	w->job = job;
	w->done = false;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void *wrk_wait(struct wrk *w)
{
	void *job;
	char b;

	pthread_mutex_lock(&w->mu);
	while (w->job && !w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	job = w->job;
	w->job = NULL;
	w->done = false;
	pthread_mutex_unlock(&w->mu);
	if (job)
		while (read(w->pipe[0], &b, 1) < 0 && errno == EINTR)
			;
	return job;
}

int wrk_fd(const struct wrk *w)
{
	return w->pipe[0];
}

void wrk_destroy(struct wrk *w)
{
	if (!w)
		return;
	wrk_wait(w);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	close(w->pipe[0]);
	close(w->pipe[1]);
	free(w);
}
