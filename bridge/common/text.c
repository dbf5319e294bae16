/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 validation and sanitizing of untrusted bytes (topics, headers) so
 * that a dead-letter row can always be written. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>

#include "bridge/common/text.h"
#include "bridge/common/util.h"

size_t
utf8_char_len(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (left == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		n = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool
text_is_clean(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = utf8_char_len(u + i, len - i);

		if (n == 0 || (n == 1 && (u[i] < 0x20 || u[i] == 0x7f)))
			return false;
		i += n;
	}
	return true;
}

char *
text_sanitize(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	struct buf b = { 0 };
	size_t i = 0;

	if (s == NULL)
		return NULL;
	buf_append(&b, "", 0);
	while (i < len) {
		size_t n = utf8_char_len(u + i, len - i);

		if (n == 0 || u[i] == 0) {
			buf_appendf(&b, "\\x%02x", u[i]);
			i++;
		} else {
			buf_append(&b, s + i, n);
			i += n;
		}
	}
	return b.data;
}
