/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the table-driven configuration reader (bridge/config/cfgtable.c):
 * one group read against two tables that fill two structs, as a broker
 * group fills the core's broker and the adapter's own part. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "bridge/config/cfgtable.h"
#include "tests/unit/tap.h"

struct common {
	char *name;
	int64_t timeout;
};

struct own {
	int64_t window;
	bool flag;
	char **keys;
	size_t n_keys;
	char *needed;
};

#define C(f) offsetof(struct common, f)
#define O(f) offsetof(struct own, f)

static const struct cfg_key common_keys[] = {
	{ "name", CFG_STRING, C(name), true, NULL, 0, 0, 0, 0, NULL, "name" },
	{ "timeout", CFG_INT, C(timeout), false, NULL, 10, 1, 100, 0, NULL, "timeout" },
	CFG_END
};

static const struct cfg_key own_keys[] = {
	{ "window", CFG_INT, O(window), false, NULL, 1000, 1, 65535, 0, NULL, "window" },
	{ "flag", CFG_BOOL, O(flag), false, NULL, 1, 0, 0, 0, NULL, "flag" },
	{ "keys", CFG_STRINGS, O(keys), false, NULL, 0, 0, 0, O(n_keys), NULL, "keys" },
	{ "needed", CFG_STRING, O(needed), true, NULL, 0, 0, 0, 0, NULL, "a required key, never given below" },
	CFG_END
};

/* Read text's group "g" against both tables; the diagnostics go to d. */
static int
read_text(const char *text, struct common *c, struct own *o, struct diag *d, bool with_needed)
{
	static const struct cfg_key own_optional[] = {
		{ "window", CFG_INT, O(window), false, NULL, 1000, 1, 65535, 0, NULL, "window" },
		{ "flag", CFG_BOOL, O(flag), false, NULL, 1, 0, 0, 0, NULL, "flag" },
		{ "keys", CFG_STRINGS, O(keys), false, NULL, 0, 0, 0, O(n_keys), NULL, "keys" },
		CFG_END
	};
	struct cfg_part parts[] = { { common_keys, c }, { NULL, NULL }, { with_needed ? own_keys : own_optional, o } };
	config_t cfg;
	int errors = -1;

	memset(c, 0, sizeof(*c));
	memset(o, 0, sizeof(*o));
	config_init(&cfg);
	if (config_read_string(&cfg, text) == CONFIG_TRUE) {
		cfg_defaults_parts(parts, 3);
		errors = cfg_read_parts(config_lookup(&cfg, "g"), parts, 3, "f.conf", "group \"g\"", d);
	}
	config_destroy(&cfg);
	return errors;
}

static void
free_both(struct common *c, struct own *o)
{
	struct cfg_part parts[] = { { common_keys, c }, { own_keys, o } };

	cfg_free_parts(parts, 2);
	ok(c->name == NULL && o->keys == NULL && o->n_keys == 0 && o->needed == NULL,
	    "cfg_free_parts frees and clears both structs");
}

static bool
has_line(const struct diag *d, const char *want)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->lines[i], want) == 0)
			return true;
	return false;
}

int
main(void)
{
	struct common c;
	struct own o;
	struct diag d = { 0 };

	is_int(read_text("g = { name = \"a\";\n window = 7;\n keys = [ \"x\", \"y\" ]; };", &c, &o, &d, false), 0,
	    "a group with keys of both tables reads without errors");
	is_str(c.name, "a", "a key of the first table lands in the first struct");
	is_int(c.timeout, 10, "the first struct gets its defaults");
	is_int(o.window, 7, "a key of the second table lands in the second struct");
	ok(o.flag, "the second struct gets its defaults");
	ok(o.n_keys == 2 && strcmp(o.keys[1], "y") == 0, "a string list lands in the second struct");
	free_both(&c, &o);
	diag_free(&d);

	memset(&d, 0, sizeof(d));
	is_int(read_text("g = {\n name = 1;\n window = 0;\n nope = 1;\n};", &c, &o, &d, true), 4,
	    "a wrong type, a bound, an unknown and a missing key are four errors");
	ok(has_line(&d, "f.conf:2: error: key \"name\" in group \"g\" must be a string"),
	    "a wrong type names file, line and key");
	ok(has_line(&d, "f.conf:3: error: value 0 of key \"window\" in group \"g\" is out of range (1 .. 65535)"),
	    "a value out of bounds in the second table names file, line and key");
	ok(has_line(&d, "f.conf:4: error: unknown key \"nope\" in group \"g\""),
	    "a key in neither table is unknown");
	ok(has_line(&d, "f.conf:1: error: missing required key \"needed\" in group \"g\""),
	    "a required key of the second table is missing");
	free_both(&c, &o);
	diag_free(&d);

	memset(&d, 0, sizeof(d));
	is_int(read_text("g = { window = 9; };", &c, &o, &d, true), 2, "two required keys missing are two errors");
	ok(d.n == 2 && strstr(d.lines[0], "missing required key \"name\"") != NULL &&
	    strstr(d.lines[1], "missing required key \"needed\"") != NULL,
	    "missing keys are reported in the order of the parts");
	free_both(&c, &o);
	diag_free(&d);
	return tap_done();
}
