/* SPDX-License-Identifier: Apache-2.0 */
/* Collected configuration diagnostics: "FILE:LINE: error: TEXT". */
#ifndef ONCEBRIDGE_DIAG_H
#define ONCEBRIDGE_DIAG_H

#include <stdio.h>

struct diag {
	char **lines;
	size_t n;
	int errors;
	int warnings;
};

void diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_print(const struct diag *d, FILE *out);
void diag_free(struct diag *d);

#endif
