/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the configuration check behind "oncebridge -t", i.e.
 * settings_load() on a main file and its conf.d/ broker files, with the
 * adapters' own checks and the permission check of password files, but no
 * network or database I/O.
 *
 * The input is up to four files, separated by lines "%%":
 *
 *   main file (DIR/oncebridge.conf)
 *   %%
 *   broker file DIR/conf.d/10.conf
 *   %%
 *   broker file DIR/conf.d/20.conf
 *   %%
 *   password file DIR/secret (mode 600)
 *
 * DIR is a temporary directory that also holds "secret-open" (the same
 * content, mode 644) and "fifo" (a named pipe), for password_file to
 * name; DIR/conf.d holds the same three, since a relative path in a broker
 * file is relative to conf.d. Inputs with libconfig's "@include" are skipped: they may name any
 * file of the machine, and an administrator's include of /dev/zero is not
 * a bug of oncebridge. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/config/diag.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"
#include "tests/fuzz/fuzz.h"

static char *dir;

static void
cleanup(void)
{
	const char *const files[] = { "oncebridge.conf", "conf.d/10.conf", "conf.d/20.conf", "secret",
		"secret-open", "fifo", "conf.d/secret", "conf.d/secret-open", "conf.d/fifo", "conf.d", NULL };

	for (size_t i = 0; files[i]; i++) {
		char *p = xasprintf("%s/%s", dir, files[i]);

		if (unlink(p) < 0)
			rmdir(p);
		free(p);
	}
	rmdir(dir);
	free(dir);
}

static void
setup(void)
{
	char tmpl[] = "/tmp/oncebridge-fuzz-config-XXXXXX";
	char *p;

	if (mkdtemp(tmpl) == NULL) {
		perror("could not create a temporary directory");
		abort();
	}
	dir = xstrdup(tmpl);
	p = xasprintf("%s/conf.d", dir);
	mkdir(p, 0700);
	free(p);
	p = xasprintf("%s/fifo", dir);
	mkfifo(p, 0600);
	free(p);
	p = xasprintf("%s/conf.d/fifo", dir);
	mkfifo(p, 0600);
	free(p);
	atexit(cleanup);
}

/* Write data to DIR/name with mode, or remove the file when data is NULL. */
static void
put(const char *name, const uint8_t *data, size_t size, mode_t mode)
{
	char *p = xasprintf("%s/%s", dir, name);
	int fd;

	unlink(p);
	if (data) {
		fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
		if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size)) {
			perror("could not write a fuzz input file");
			abort();
		}
		fchmod(fd, mode);
		close(fd);
	}
	free(p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "oncebridge.conf", "conf.d/10.conf", "conf.d/20.conf", "secret" };
	const uint8_t *part[4] = { NULL, NULL, NULL, NULL };
	size_t len[4] = { 0, 0, 0, 0 }, n = 0;
	const uint8_t *p = data, *end = data + size;
	struct diag d = { 0 };
	struct settings *s;
	char *path;

	if (memmem(data, size, "@include", 8) != NULL)
		return 0;
	if (dir == NULL)
		setup();
	/* split at lines "%%" */
	while (n < 4) {
		const uint8_t *sep = n < 3 ? memmem(p, (size_t)(end - p), "\n%%\n", 4) : NULL;

		part[n] = p;
		len[n] = sep ? (size_t)(sep - p) + 1 : (size_t)(end - p);
		n++;
		if (sep == NULL)
			break;
		p = sep + 4;
	}
	for (size_t i = 0; i < 4; i++)
		put(names[i], part[i], len[i], 0600);
	put("secret-open", part[3], len[3], 0644);
	put("conf.d/secret", part[3], len[3], 0600);
	put("conf.d/secret-open", part[3], len[3], 0644);

	path = xasprintf("%s/oncebridge.conf", dir);
	s = settings_load(path, &d);
	fuzz_assert((s == NULL) == (d.errors > 0));
	if (s) {
		/* what -t promises of a valid configuration */
		fuzz_assert(s->n_brokers > 0);
		for (size_t i = 0; i < s->n_brokers; i++) {
			fuzz_assert(s->brokers[i].adapter != NULL);
			fuzz_assert(s->brokers[i].n_routes > 0 || s->brokers[i].outbox);
		}
		settings_free(s);
	}
	diag_free(&d);
	free(path);
	return 0;
}
