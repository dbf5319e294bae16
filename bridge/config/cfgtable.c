/* SPDX-License-Identifier: Apache-2.0 */
/* The table-driven reader behind every configuration group: defaults,
 * type checks, bounds, unknown and missing keys, with file and line. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/config/cfgtable.h"
#include "bridge/common/util.h"

#define FIELD(base, off, type) ((type *)((char *)(base) + (off)))

static const char *
type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_STRING:
		return "a string";
	case CFG_INT:
		return "an integer";
	case CFG_BOOL:
		return "a boolean (true or false)";
	case CFG_STRINGS:
		return "an array of strings";
	case CFG_GROUP:
		return "a group";
	}
	return "?";
}

int
cfg_line(const config_setting_t *s)
{
	for (; s; s = config_setting_parent(s)) {
		int line = (int)config_setting_source_line(s);

		if (line > 0)
			return line;
	}
	return 0;
}

int
cfg_key_line(const config_setting_t *group, const char *key)
{
	const config_setting_t *s = group ? config_setting_get_member(group, key) : NULL;

	return cfg_line(s ? s : group);
}

static void
table_defaults(const struct cfg_key *t, void *base)
{
	for (const struct cfg_key *k = t; k->name; k++) {
		switch (k->type) {
		case CFG_STRING:
			*FIELD(base, k->offset, char *) = k->def_string ? xstrdup(k->def_string) : NULL;
			break;
		case CFG_INT:
			*FIELD(base, k->offset, int64_t) = k->def_int;
			break;
		case CFG_BOOL:
			*FIELD(base, k->offset, bool) = k->def_int != 0;
			break;
		case CFG_STRINGS:
			*FIELD(base, k->offset, char **) = NULL;
			*FIELD(base, k->count_offset, size_t) = 0;
			break;
		case CFG_GROUP:
			table_defaults(k->sub, base);
			break;
		}
	}
}

void
cfg_defaults(const struct cfg_key *const *tables, void *base)
{
	for (; *tables; tables++)
		table_defaults(*tables, base);
}

void
cfg_defaults_parts(const struct cfg_part *parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (parts[i].keys)
			table_defaults(parts[i].keys, parts[i].base);
}

/* libconfig 1.5 (Debian 12) reads a decimal integer that does not fit in
 * 32 bits, written without the L suffix, as 0 of type int, silently. So an
 * int setting read as 0 is looked up in its file: true when the key's
 * literal there is a number other than 0. */
static bool
int_literal_overflowed(const config_setting_t *s, const char *name)
{
	const char *file = config_setting_source_file(s);
	int line = config_setting_source_line(s), at = 0;
	char text[1024];
	bool overflowed = false;
	FILE *f;

	if (file == NULL || line <= 0 || (f = fopen(file, "r")) == NULL)
		return false;
	while (fgets(text, sizeof(text), f) != NULL)
		if (++at == line) {
			const char *p = strstr(text, name);

			if (p == NULL)
				break;
			p += strlen(name);
			p += strspn(p, " \t=:-+");
			while (*p == '0')
				p++;
			overflowed = isdigit((unsigned char)*p) != 0;
			break;
		}
	fclose(f);
	return overflowed;
}

static const struct cfg_key *
find_key(const struct cfg_part *parts, size_t n, const char *name, void **base)
{
	for (size_t i = 0; i < n; i++) {
		for (const struct cfg_key *k = parts[i].keys; k && k->name; k++) {
			if (strcmp(k->name, name) == 0) {
				*base = parts[i].base;
				return k;
			}
		}
	}
	return NULL;
}

static int
read_value(const config_setting_t *s, const struct cfg_key *k, void *base, const char *file,
    const char *where, struct diag *d)
{
	int type = config_setting_type(s);
	int line = cfg_line(s);

	switch (k->type) {
	case CFG_STRING: {
		const char *v = config_setting_get_string(s);

		if (type != CONFIG_TYPE_STRING || v == NULL)
			goto wrong_type;
		free(*FIELD(base, k->offset, char *));
		*FIELD(base, k->offset, char *) = xstrdup(v);
		return 0;
	}
	case CFG_INT: {
		int64_t v;

		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			goto wrong_type;
		v = config_setting_get_int64(s);
		if (type == CONFIG_TYPE_INT && v == 0 && int_literal_overflowed(s, k->name)) {
			diag_error(d, file, line,
			    "value of key \"%s\" in %s does not fit in 32 bits: write it with an L suffix, e.g. 4294967296L "
			    "(libconfig reads it as 0 otherwise)", k->name, where);
			return 1;
		}
		if ((k->min || k->max) && (v < k->min || v > k->max)) {
			diag_error(d, file, line,
			    "value %lld of key \"%s\" in %s is out of range (%lld .. %lld)",
			    (long long)v, k->name, where, (long long)k->min, (long long)k->max);
			return 1;
		}
		*FIELD(base, k->offset, int64_t) = v;
		return 0;
	}
	case CFG_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			goto wrong_type;
		*FIELD(base, k->offset, bool) = config_setting_get_bool(s) != 0;
		return 0;
	case CFG_STRINGS: {
		int n, errors = 0;
		char **list;

		if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
			goto wrong_type;
		n = config_setting_length(s);
		list = xcalloc((size_t)n + 1, sizeof(char *));
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			const char *v = e ? config_setting_get_string(e) : NULL;

			if (v == NULL) {
				diag_error(d, file, line, "element %d of key \"%s\" in %s must be a string",
				    i + 1, k->name, where);
				errors++;
				v = "";
			}
			list[i] = xstrdup(v);
		}
		*FIELD(base, k->offset, char **) = list;
		*FIELD(base, k->count_offset, size_t) = (size_t)n;
		return errors;
	}
	case CFG_GROUP: {
		const struct cfg_key *const sub[] = { k->sub, NULL };
		char *subwhere;
		int errors;

		if (type != CONFIG_TYPE_GROUP)
			goto wrong_type;
		subwhere = xasprintf("group \"%s\"", k->name);
		errors = cfg_read_group(s, sub, base, file, subwhere, d);
		free(subwhere);
		return errors;
	}
	}
wrong_type:
	diag_error(d, file, line, "key \"%s\" in %s must be %s", k->name, where, type_name(k->type));
	return 1;
}

static bool
key_present(const config_setting_t *group, const struct cfg_key *k)
{
	return config_setting_get_member(group, k->name) != NULL;
}

int
cfg_read_parts(const config_setting_t *group, const struct cfg_part *parts, size_t n_parts,
    const char *file, const char *where, struct diag *d)
{
	int errors = 0;
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		void *base = NULL;
		const struct cfg_key *k = name ? find_key(parts, n_parts, name, &base) : NULL;

		if (k == NULL) {
			diag_error(d, file, cfg_line(s), "unknown key \"%s\" in %s", name ? name : "?", where);
			errors++;
			continue;
		}
		errors += read_value(s, k, base, file, where, d);
	}
	for (size_t p = 0; p < n_parts; p++) {
		for (const struct cfg_key *k = parts[p].keys; k && k->name; k++) {
			if (k->required && !key_present(group, k)) {
				diag_error(d, file, cfg_line(group), "missing required key \"%s\" in %s",
				    k->name, where);
				errors++;
			}
		}
	}
	return errors;
}

int
cfg_read_group(const config_setting_t *group, const struct cfg_key *const *tables, void *base,
    const char *file, const char *where, struct diag *d)
{
	size_t n = 0;
	struct cfg_part *parts;
	int errors;

	while (tables[n])
		n++;
	parts = xcalloc(n + 1, sizeof(*parts));
	for (size_t i = 0; i < n; i++)
		parts[i] = (struct cfg_part){ tables[i], base };
	errors = cfg_read_parts(group, parts, n, file, where, d);
	free(parts);
	return errors;
}

static void
table_free(const struct cfg_key *t, void *base)
{
	for (const struct cfg_key *k = t; k->name; k++) {
		switch (k->type) {
		case CFG_STRING:
			sfree(*FIELD(base, k->offset, char *));
			break;
		case CFG_STRINGS: {
			char **list = *FIELD(base, k->offset, char **);

			for (size_t i = 0; list && list[i]; i++)
				free(list[i]);
			free(list);
			*FIELD(base, k->offset, char **) = NULL;
			*FIELD(base, k->count_offset, size_t) = 0;
			break;
		}
		case CFG_GROUP:
			table_free(k->sub, base);
			break;
		default:
			break;
		}
	}
}

void
cfg_free(const struct cfg_key *const *tables, void *base)
{
	for (; *tables; tables++)
		table_free(*tables, base);
}

void
cfg_free_parts(const struct cfg_part *parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (parts[i].keys && parts[i].base)
			table_free(parts[i].keys, parts[i].base);
}
