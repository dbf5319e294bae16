/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 checks and making untrusted bytes safe to store as text. */
#ifndef ONCEBRIDGE_TEXT_H
#define ONCEBRIDGE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 character at s (at most left bytes), or 0. */
size_t utf8_char_len(const unsigned char *s, size_t left);

/* True when s[0..len) is valid UTF-8 without control characters. */
bool text_is_clean(const char *s, size_t len);

/* A NUL-terminated copy of s[0..len) that PostgreSQL accepts as text and
 * jsonb: invalid UTF-8 bytes and NUL become "\xNN". NULL stays NULL. */
char *text_sanitize(const char *s, size_t len);

#endif
