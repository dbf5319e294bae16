/* SPDX-License-Identifier: Apache-2.0 */
/* The replay driver: runs a fuzz target's LLVMFuzzerTestOneInput on every
 * file of its corpus without libFuzzer, so that "make check" replays the
 * seeds, the inputs libFuzzer kept and the regression inputs of fixed bugs
 * with any compiler (and under --enable-sanitizer with the sanitizers).
 * Each file is one TAP test.
 *
 *   fuzz_NAME [DIR|FILE]...
 *
 * Without arguments the corpus is $ONCEBRIDGE_SRCDIR/tests/fuzz/corpus/NAME
 * (NAME from the program's name). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

struct list {
	char **paths;
	size_t n;
};

static void
add(struct list *l, char *path)
{
	char **p = realloc(l->paths, (l->n + 1) * sizeof(char *));

	if (p == NULL) {
		perror("fuzz replay");
		exit(99);
	}
	l->paths = p;
	l->paths[l->n++] = path;
}

static char *
join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *s = malloc(len);

	if (s == NULL) {
		perror("fuzz replay");
		exit(99);
	}
	snprintf(s, len, "%s/%s", dir, name);
	return s;
}

/* Add path, or each file in it (sorted, no dot files) when a directory. */
static int
collect(struct list *l, const char *path)
{
	struct stat st;
	struct dirent **names;
	int n;

	if (stat(path, &st) < 0) {
		printf("Bail out! could not stat \"%s\": %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		add(l, strdup(path));
		return 0;
	}
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		printf("Bail out! could not read directory \"%s\": %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.')
			add(l, join(path, names[i]->d_name));
		free(names[i]);
	}
	free(names);
	return 0;
}

/* The whole file, in a buffer of exactly its size so that the sanitizers
 * see reads past the end, as under libFuzzer. */
static uint8_t *
slurp(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long len;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		data = malloc(len ? (size_t)len : 1);
		if (data && fread(data, 1, (size_t)len, f) != (size_t)len) {
			free(data);
			data = NULL;
		}
		*size = (size_t)len;
	}
	fclose(f);
	return data;
}

/* the name of a corpus file in a test line: from the target's directory on */
static const char *
shown(const char *path)
{
	const char *p = strstr(path, "/corpus/");

	return p ? p + 8 : path;
}

int
main(int argc, char **argv)
{
	struct list l = { NULL, 0 };
	int failed = 0;

	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			if (collect(&l, argv[i]) < 0)
				return 1;
	} else {
		const char *srcdir = getenv("ONCEBRIDGE_SRCDIR");
		const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
		char *dir;

		if (strncmp(name, "fuzz_", 5) == 0)
			name += 5;
		dir = malloc(strlen(srcdir ? srcdir : ".") + strlen(name) + 32);
		if (dir == NULL)
			return 99;
		sprintf(dir, "%s/tests/fuzz/corpus/%s", srcdir ? srcdir : ".", name);
		if (collect(&l, dir) < 0)
			return 1;
		free(dir);
	}
	printf("1..%zu\n", l.n);
	for (size_t i = 0; i < l.n; i++) {
		size_t size = 0;
		uint8_t *data = slurp(l.paths[i], &size);

		if (data == NULL) {
			printf("not ok %zu - %s: could not read file: %s\n", i + 1, l.paths[i], strerror(errno));
			failed++;
		} else {
			/* the name first: a crash ends the output here */
			printf("# %s\n", l.paths[i]);
			fflush(stdout);
			LLVMFuzzerTestOneInput(data, size);
			printf("ok %zu - %s (%zu bytes)\n", i + 1, shown(l.paths[i]), size);
			free(data);
		}
		free(l.paths[i]);
	}
	free(l.paths);
	return failed ? 1 : 0;
}
