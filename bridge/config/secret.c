/* SPDX-License-Identifier: Apache-2.0 */
/* Reading of secret files with the permission check OpenSMTPD's
 * check_file_secrecy() made familiar: refuse what others could read. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/config/secret.h"
#include "bridge/common/util.h"

#define SECRET_MAX 4096

/* NULL when st (of path) is a file only oncebridge's user or root can
 * read, else why not (malloc'd). */
static char *
secrecy_error(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return xasprintf("secret file \"%s\" is not a regular file", path);
	if (st->st_uid != geteuid() && st->st_uid != 0)
		return xasprintf("secret file \"%s\" must be owned by the user oncebridge runs as or by root", path);
	if (st->st_mode & (S_IRWXG | S_IRWXO))
		return xasprintf("secret file \"%s\" has group or world access; fix it with \"chmod 600 %s\"",
		    path, path);
	return NULL;
}

int
secret_check(const char *path, char **err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		*err = xasprintf("could not open secret file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0)
		*err = xasprintf("could not stat secret file \"%s\": %s", path, strerror(errno));
	else
		*err = secrecy_error(path, &st);
	close(fd);
	return *err ? -1 : 0;
}

char *
secret_read(const char *path, char **err)
{
	struct stat st;
	char buf[SECRET_MAX + 1];
	ssize_t n;
	size_t len = 0;
	char *secret = NULL;
	/* O_NONBLOCK: opening a named pipe would otherwise wait for a writer,
	 * and "oncebridge -t" would hang before refusing it below */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		*err = xasprintf("could not open secret file \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err = xasprintf("could not stat secret file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	if ((*err = secrecy_error(path, &st)) != NULL)
		goto out;
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0) {
		*err = xasprintf("could not read secret file \"%s\": %s", path, strerror(errno));
		goto out;
	}
	if (len == sizeof(buf) - 1) {
		*err = xasprintf("secret file \"%s\" is longer than %d bytes", path, SECRET_MAX - 1);
		goto out;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (memchr(buf, '\0', len) != NULL) {
		*err = xasprintf("secret file \"%s\" contains a NUL byte", path);
		goto out;
	}
	if (len == 0) {
		*err = xasprintf("secret file \"%s\" is empty", path);
		goto out;
	}
	secret = xstrndup(buf, len);
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return secret;
}
