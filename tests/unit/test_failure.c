/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the failure classification by SQLSTATE. */
#include "config.h"

#include "bridge/core/failure.h"
#include "tests/unit/tap.h"

int
main(void)
{
	static const struct { const char *state; enum failure_class want; } cases[] = {
		{ NULL, FAILURE_TRANSIENT },      /* no answer: connection lost */
		{ "", FAILURE_TRANSIENT },
		{ "08006", FAILURE_TRANSIENT },   /* connection_failure */
		{ "08001", FAILURE_TRANSIENT },
		{ "40001", FAILURE_TRANSIENT },   /* serialization_failure */
		{ "40P01", FAILURE_TRANSIENT },   /* deadlock_detected */
		{ "53300", FAILURE_TRANSIENT },   /* too_many_connections */
		{ "57P01", FAILURE_TRANSIENT },   /* admin_shutdown */
		{ "57014", FAILURE_TRANSIENT },   /* query_canceled (statement_timeout) */
		{ "55P03", FAILURE_TRANSIENT },   /* lock_not_available */
		{ "22P02", FAILURE_POISON },      /* invalid_text_representation */
		{ "22001", FAILURE_POISON },      /* string_data_right_truncation */
		{ "23502", FAILURE_POISON },      /* not_null_violation */
		{ "23505", FAILURE_POISON },      /* unique_violation in business SQL */
		{ "P0001", FAILURE_POISON },      /* raise_exception */
		{ "42P01", FAILURE_RETRY },       /* undefined_table: operator mistake */
		{ "42501", FAILURE_RETRY },       /* insufficient_privilege */
		{ "XX000", FAILURE_RETRY },       /* internal_error */
		{ "40002", FAILURE_RETRY },       /* transaction_integrity_constraint_violation */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_str(failure_class_name(classify_sqlstate(cases[i].state)), failure_class_name(cases[i].want),
		    "SQLSTATE %s is %s", cases[i].state ? cases[i].state : "(none)",
		    failure_class_name(cases[i].want));
	return tap_done();
}
