/*
 * test_notify.c — the sd_notify protocol half of daemon/notify.c: the
 * NOTIFY_SOCKET address forms (path, @abstract, and what is refused), the
 * WATCHDOG_USEC / WATCHDOG_PID rules, and datagrams sent to a socket this
 * test binds itself (abstract and path), an inert notifier without
 * NOTIFY_SOCKET, a message over the size limit refused, and a receiver
 * that never reads making sends fail rather than block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "notify.h"

static void test_address(void **state)
{
	struct sockaddr_un a;
	socklen_t len = 0;
	char longest[sizeof a.sun_path + 2];

	(void)state;
	assert_int_equal(ntf_parse_address("/run/systemd/notify", &a, &len), 0);
	assert_int_equal(a.sun_family, AF_UNIX);
	assert_string_equal(a.sun_path, "/run/systemd/notify");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);

	assert_int_equal(ntf_parse_address("@abc", &a, &len), 0);
	assert_int_equal(a.sun_path[0], '\0');
	assert_memory_equal(a.sun_path + 1, "abc", 3);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 4);   /* no terminator */

	assert_int_equal(ntf_parse_address(NULL, &a, &len), -1);
	assert_int_equal(ntf_parse_address("", &a, &len), -1);
	assert_int_equal(ntf_parse_address("@", &a, &len), -1);
	assert_int_equal(ntf_parse_address("/", &a, &len), -1);
	assert_int_equal(ntf_parse_address("run/notify", &a, &len), -1);
	assert_int_equal(ntf_parse_address("vsock:2:1234", &a, &len), -1);

	/* a path must leave room for its NUL; an abstract name need not */
	memset(longest, 'x', sizeof longest);
	longest[0] = '/';
	longest[sizeof a.sun_path - 1] = '\0';
	assert_int_equal(ntf_parse_address(longest, &a, &len), 0);
	longest[sizeof a.sun_path - 1] = 'x';
	longest[sizeof a.sun_path] = '\0';
	assert_int_equal(ntf_parse_address(longest, &a, &len), -1);
	longest[0] = '@';
	assert_int_equal(ntf_parse_address(longest, &a, &len), 0);
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + sizeof a.sun_path);
	longest[sizeof a.sun_path] = 'x';
	longest[sizeof a.sun_path + 1] = '\0';
	assert_int_equal(ntf_parse_address(longest, &a, &len), -1);
}

static void test_watchdog(void **state)
{
	(void)state;
	assert_int_equal(ntf_parse_watchdog("200000", NULL, 42), 200000);
	assert_int_equal(ntf_parse_watchdog("200000", "42", 42), 200000);
	assert_int_equal(ntf_parse_watchdog("200000", "43", 42), 0);     /* another process's */
	assert_int_equal(ntf_parse_watchdog("200000", "x", 42), 0);
	assert_int_equal(ntf_parse_watchdog(NULL, "42", 42), 0);
	assert_int_equal(ntf_parse_watchdog("0", NULL, 42), 0);
	assert_int_equal(ntf_parse_watchdog("", NULL, 42), 0);
	assert_int_equal(ntf_parse_watchdog("-5", NULL, 42), 0);
	assert_int_equal(ntf_parse_watchdog("20s", NULL, 42), 0);
	assert_int_equal(ntf_parse_watchdog("99999999999999999999999", NULL, 42), 0);
}

/* A datagram socket of this test's, bound at name (a path, or "@abstract"),
 * reads time out after 5 s so that a missing message fails, not hangs. */
static int bind_receiver(const char *name)
{
	struct sockaddr_un a;
	socklen_t len;
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(ntf_parse_address(name, &a, &len), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
	return fd;
}

static void expect_datagram(int fd, const char *want)
{
	char buf[NTF_MAX_MESSAGE + 16];
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void send_and_receive(const char *name)
{
	struct log_sink log;
	struct ntf n;
	char big[NTF_MAX_MESSAGE + 2];
	int fd = bind_receiver(name);

	assert_int_equal(log_open(&log, NULL, CFG_LOG_ERROR, 0, 1000), 0);
	setenv("NOTIFY_SOCKET", name, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	unsetenv("WATCHDOG_PID");
	ntf_init(&n, &log);
	assert_true(ntf_enabled(&n));
	assert_int_equal(ntf_watchdog_period_ms(&n), 100);
	assert_int_equal(ntf_send(&n, "READY=1\nSTATUS=%s", "serving: rank 8"), 0);
	expect_datagram(fd, "READY=1\nSTATUS=serving: rank 8");
	assert_int_equal(ntf_send(&n, "WATCHDOG=1"), 0);
	expect_datagram(fd, "WATCHDOG=1");

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(ntf_send(&n, "STATUS=%s", big), -1);   /* not sent, not cut */
	assert_int_equal(ntf_send(&n, "STOPPING=1"), 0);
	expect_datagram(fd, "STOPPING=1");

	assert_true(ntf_status_changed(&n, "a"));
	assert_false(ntf_status_changed(&n, "a"));
	assert_true(ntf_status_changed(&n, "b"));
	ntf_fini(&n);
	ntf_fini(&n);   /* twice is fine */
	close(fd);
	log_close(&log);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
}

static void test_abstract(void **state)
{
	char name[64];

	(void)state;
	snprintf(name, sizeof name, "@isvd-test-notify-%ld", (long)getpid());
	send_and_receive(name);
}

static void test_path(void **state)
{
	char dir[] = "/tmp/isvd-notify-XXXXXX", name[64];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(name, sizeof name, "%s/notify", dir);
	send_and_receive(name);
	unlink(name);
	rmdir(dir);
}

/* A receiver that never reads: its queue fills, and sending fails (once
 * logged) instead of blocking the event loop. */
static void test_never_blocks(void **state)
{
	struct log_sink log;
	struct ntf n;
	char name[64];
	int fd, failed = 0;

	(void)state;
	snprintf(name, sizeof name, "@isvd-test-notify-full-%ld", (long)getpid());
	fd = bind_receiver(name);
	assert_int_equal(log_open(&log, NULL, CFG_LOG_ERROR, 0, 1000), 0);
	setenv("NOTIFY_SOCKET", name, 1);
	ntf_init(&n, &log);
	for (int i = 0; i < 100000 && !failed; i++)
		failed = ntf_send(&n, "WATCHDOG=1") != 0;
	assert_true(failed);
	assert_true(n.warned);
	ntf_fini(&n);
	close(fd);
	log_close(&log);
	unsetenv("NOTIFY_SOCKET");
}

static void test_inert(void **state)
{
	struct log_sink log;
	struct ntf n;

	(void)state;
	assert_int_equal(log_open(&log, NULL, CFG_LOG_ERROR, 0, 1000), 0);
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "200000", 1);
	ntf_init(&n, &log);
	assert_false(ntf_enabled(&n));
	assert_int_equal(ntf_watchdog_period_ms(&n), 0);   /* nobody to ping */
	assert_int_equal(ntf_send(&n, "READY=1"), 0);
	ntf_fini(&n);

	setenv("NOTIFY_SOCKET", "relative/path", 1);       /* unusable: inert, not fatal */
	ntf_init(&n, &log);
	assert_false(ntf_enabled(&n));
	ntf_fini(&n);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	log_close(&log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_watchdog),
		cmocka_unit_test(test_abstract),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_never_blocks),
		cmocka_unit_test(test_inert),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
