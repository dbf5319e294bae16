/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers every file uses: allocation that aborts on OOM, time. */
#ifndef ONCEBRIDGE_UTIL_H
#define ONCEBRIDGE_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* free() and set the pointer to NULL */
#define sfree(p) do { free(p); (p) = NULL; } while (0)

/* Monotonic clock in milliseconds and microseconds. */
int64_t now_ms(void);
int64_t now_us(void);
/* Wall clock in milliseconds since the epoch (for timestamps shown to people). */
int64_t wall_ms(void);

/* Sleep up to ms milliseconds; returns early when *stop becomes non-zero. */
void sleep_ms_unless(int64_t ms, volatile int *stop);

/* Growable byte buffer. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_append(struct buf *b, const void *p, size_t n);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Append s as the next element of a PostgreSQL array literal being built
 * in b ("{" before the first, "," before the others, the element quoted,
 * '"' and '\\' escaped); the caller closes it with "}". */
void buf_array_add(struct buf *b, const char *s);

#endif
