/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target of the payload decoder in bridge/core/decode_cbor.c (the checks
 * are in fuzz_decode.h). */
#include "config.h"

#define FUZZ_FORMAT FORMAT_CBOR
#include "tests/fuzz/fuzz_decode.h"
