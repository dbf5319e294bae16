/* SPDX-License-Identifier: Apache-2.0 */
/* Diagnostics found while loading configuration, kept in order so that
 * "oncebridge -t" can print every problem at once, each naming its file
 * and line. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>

#include "bridge/config/diag.h"
#include "bridge/common/util.h"

static void
diag_add(struct diag *d, const char *severity, const char *file, int line, const char *fmt, va_list ap)
{
	struct buf b = { 0 };
	char *text;

	if (vasprintf(&text, fmt, ap) < 0)
		abort();
	if (file && line > 0)
		buf_appendf(&b, "%s:%d: %s: %s", file, line, severity, text);
	else if (file)
		buf_appendf(&b, "%s: %s: %s", file, severity, text);
	else
		buf_appendf(&b, "%s: %s", severity, text);
	free(text);
	d->lines = xrealloc(d->lines, (d->n + 1) * sizeof(char *));
	d->lines[d->n++] = b.data;
}

void
diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(d, "error", file, line, fmt, ap);
	va_end(ap);
	d->errors++;
}

void
diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(d, "warning", file, line, fmt, ap);
	va_end(ap);
	d->warnings++;
}

void
diag_print(const struct diag *d, FILE *out)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(out, "%s\n", d->lines[i]);
}

void
diag_free(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	d->lines = NULL;
	d->n = 0;
	d->errors = d->warnings = 0;
}
