/* SPDX-License-Identifier: Apache-2.0 */
/* Classification of database errors by SQLSTATE into the failure classes
 * of DESIGN.md: transient (retry, never dead-letter), poison (dead-letter
 * at once) and the rest (retry, dead-letter after max_attempts). */
#include "config.h"

#include <string.h>

#include "bridge/core/failure.h"

enum failure_class
classify_sqlstate(const char *s)
{
	if (s == NULL || strlen(s) != 5)
		return FAILURE_TRANSIENT;
	/* exact codes first */
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || /* serialization, deadlock */
	    strcmp(s, "55P03") == 0 ||                            /* lock_not_available */
	    strcmp(s, "25P03") == 0)                              /* idle_in_transaction_session_timeout */
		return FAILURE_TRANSIENT;
	switch (s[0]) {
	case '0':
		if (s[1] == '8') /* connection exception */
			return FAILURE_TRANSIENT;
		break;
	case '2':
		if (s[1] == '2' || s[1] == '3') /* data exception, integrity constraint */
			return FAILURE_POISON;
		break;
	case '5':
		if (s[1] == '3' || s[1] == '7' || s[1] == '8') /* resources, operator intervention, system */
			return FAILURE_TRANSIENT;
		break;
	case 'P':
		if (strcmp(s, "P0001") == 0 || strcmp(s, "P0004") == 0) /* raise_exception, assert_failure */
			return FAILURE_POISON;
		break;
	default:
		break;
	}
	return FAILURE_RETRY;
}

const char *
failure_class_name(enum failure_class c)
{
	switch (c) {
	case FAILURE_NONE:
		return "none";
	case FAILURE_TRANSIENT:
		return "transient";
	case FAILURE_POISON:
		return "poison";
	case FAILURE_RETRY:
		return "retryable";
	}
	return "?";
}
