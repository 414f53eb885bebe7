/*
 * replay.c — runs a libFuzzer target's LLVMFuzzerTestOneInput over files,
 * without libFuzzer: the seed corpus and the kept regressions become a
 * normal test (built by meson with the project's compiler, sanitizers
 * included when the build has them).
 *
 *   fuzz_replay_TARGET PATH...   each PATH a file, or a directory whose
 *                                files (not starting with '.') are run
 *
 * Exit 0 when every input ran (a failure aborts, as under the fuzzer); 1
 * when a path cannot be read.  Prints how many inputs ran.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, size_t *count)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;

	if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		perror(path);
		if (f)
			fclose(f);
		return 1;
	}
	buf = malloc((size_t)len + 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		perror(path);
		free(buf);
		fclose(f);
		return 1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	(*count)++;
	return 0;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	int bad = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			perror(argv[i]);
			bad = 1;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad |= run_file(argv[i], &count);
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		if (!d) {
			perror(argv[i]);
			bad = 1;
			continue;
		}
		while ((e = readdir(d)) != NULL) {
			char path[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
				bad |= run_file(path, &count);
		}
		closedir(d);
	}
	printf("replayed %zu inputs\n", count);
	return bad;
}
