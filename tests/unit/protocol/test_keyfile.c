/*
 * test_keyfile.c — the CURVE key file reader the daemon and libisvd share
 * (protocol/keyfile.c): what it accepts, and each refusal with its kind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "isvd_keyfile.h"

#define KEY "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"

static char dir[] = "/tmp/isvd-test-keyfile-XXXXXX";
static char path[128];

static void put(const char *text, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static int rd(bool secret, bool private_mode, char z85[41], char *why)
{
	return isvd_key_file_read(path, secret, private_mode, z85, why, 256);
}

static void test_accepts(void **state)
{
	char z85[41], why[256];
	const char *secret = "# isvd CURVE secret key: keep it private\n  " KEY "  \r\n\n";

	(void)state;
	put(KEY "\n", strlen(KEY) + 1, 0644);
	assert_int_equal(rd(false, false, z85, why), ISVD_KEY_OK);
	assert_string_equal(z85, KEY);
	put(secret, strlen(secret), 0600);
	assert_int_equal(rd(true, true, z85, why), ISVD_KEY_OK);
	assert_string_equal(z85, KEY);
}

static void refused(const char *text, size_t len, mode_t mode, bool secret, bool private_mode,
                    int want, const char *says)
{
	char z85[41], why[256] = "";

	put(text, len, mode);
	assert_int_equal(rd(secret, private_mode, z85, why), want);
	if (!strstr(why, says))
		fail_msg("'%s' does not say '%s'", why, says);
}

static void test_refusals(void **state)
{
	char big[ISVD_KEY_FILE_MAX + 10];
	const char *secret = "# secret key\n" KEY "\n";
	const char nul[] = KEY "\n\0\n";

	(void)state;
	refused("", 0, 0644, false, false, ISVD_KEY_INVALID, "no key in the file");
	refused("# only a comment\n", 17, 0644, false, false, ISVD_KEY_INVALID, "no key");
	refused(KEY "\n" KEY "\n", 82, 0644, false, false, ISVD_KEY_INVALID, "more than one key line");
	refused("abc\n", 4, 0644, false, false, ISVD_KEY_INVALID, "40");
	refused(KEY "x\n", 42, 0644, false, false, ISVD_KEY_INVALID, "characters long");
	refused("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"\n", 41, 0644, false, false,
	        ISVD_KEY_INVALID, "character 40 of the key is not Z85");
	refused(nul, sizeof nul - 1, 0644, false, false, ISVD_KEY_INVALID, "NUL byte");
	memset(big, '#', sizeof big);
	refused(big, ISVD_KEY_FILE_MAX + 1, 0644, false, false, ISVD_KEY_INVALID, "larger than");
	refused(secret, strlen(secret), 0644, false, false, ISVD_KEY_INVALID, "secret key file");
	refused(secret, strlen(secret), 0640, true, true, ISVD_KEY_INVALID, "(mode 0640)");
	/* the mode rule only when asked for */
	refused(secret, strlen(secret), 0640, true, false, ISVD_KEY_OK, "");
	/* not a regular file; no file */
	char z85[41], why[256];
	assert_int_equal(isvd_key_file_read(dir, false, false, z85, why, sizeof why), ISVD_KEY_INVALID);
	assert_non_null(strstr(why, "not a regular file"));
	assert_int_equal(isvd_key_file_read("/nonexistent/isvd.key", false, false, z85, why, sizeof why),
	                 ISVD_KEY_IO);
	assert_non_null(strstr(why, "cannot open"));
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof path, "%s/k", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
