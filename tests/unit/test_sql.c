/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the placeholder count behind the params/sql config check. */
#include "config.h"

#include "bridge/config/settings.h"
#include "tests/unit/tap.h"

int
main(void)
{
	is_int(sql_max_placeholder("INSERT INTO t VALUES ($1, $2)"), 2, "two parameters");
	is_int(sql_max_placeholder("SELECT $3, $1"), 3, "highest number counts");
	is_int(sql_max_placeholder("SELECT 1"), 0, "no parameters");
	is_int(sql_max_placeholder("SELECT '$5', $1"), 1, "placeholders in string literals are ignored");
	is_int(sql_max_placeholder("SELECT \"a$9\", $2"), 2, "placeholders in quoted identifiers are ignored");
	is_int(sql_max_placeholder("SELECT $1 -- $7\n"), 1, "placeholders in line comments are ignored");
	is_int(sql_max_placeholder("SELECT /* $8 */ $2"), 2, "placeholders in block comments are ignored");
	is_int(sql_max_placeholder("SELECT $12"), 12, "two-digit parameter");
	is_int(sql_max_placeholder("SELECT a$1"), 0, "$ inside an identifier is not a parameter");
	return tap_done();
}
