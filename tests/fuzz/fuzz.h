/* SPDX-License-Identifier: Apache-2.0 */
/* What every fuzz target defines, for libFuzzer and for the replay driver
 * (tests/fuzz/replay.c) alike. */
#ifndef ONCEBRIDGE_FUZZ_H
#define ONCEBRIDGE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Run the code under test on one input; returns 0. A bug shows as a
 * crash, a sanitizer report or a failed fuzz_assert(). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test, checked on every input. */
#define fuzz_assert(cond) \
	do { \
		if (!(cond)) \
			fuzz_fail(__FILE__, __LINE__, #cond); \
	} while (0)

static inline __attribute__((noreturn)) void
fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what);
	fflush(NULL);
	abort();
}

#endif
