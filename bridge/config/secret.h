/* SPDX-License-Identifier: Apache-2.0 */
/* Secrets (passwords) come only from files nobody else can read. */
#ifndef ONCEBRIDGE_SECRET_H
#define ONCEBRIDGE_SECRET_H

/* Read the secret in path: a regular file owned by the current user or
 * root, with no permissions for group or others; a trailing newline is
 * dropped. Returns a malloc'd string, or NULL with *err set (malloc'd). */
char *secret_read(const char *path, char **err);

/* The same checks without reading the secret (a private key that a
 * library loads itself): 0, or -1 with *err set (malloc'd). */
int secret_check(const char *path, char **err);

#endif
