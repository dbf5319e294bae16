/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration as tables: one row per key with its type, default and
 * bounds. A group in a libconfig file is read against a list of tables,
 * each filling its own struct (the core's, or an adapter's own part);
 * unknown keys, wrong types and missing required keys are errors that name
 * the file, line and key. Calls only libconfig and bridge/common/util.h. */
#ifndef ONCEBRIDGE_CFGTABLE_H
#define ONCEBRIDGE_CFGTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "bridge/config/diag.h"

enum cfg_type {
	CFG_STRING,     /* char * */
	CFG_INT,        /* int64_t */
	CFG_BOOL,       /* bool */
	CFG_STRINGS,    /* char ** (NULL-terminated) plus size_t count at count_offset */
	CFG_GROUP,      /* a nested group whose keys (sub) fill the same struct */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t offset;
	bool required;
	const char *def_string;
	int64_t def_int;  /* also the default of CFG_BOOL */
	int64_t min, max; /* CFG_INT bounds, inclusive; min == max == 0: none */
	size_t count_offset;
	const struct cfg_key *sub; /* CFG_GROUP */
	const char *help;          /* one line for the reference docs */
};

#define CFG_END { NULL, 0, 0, false, NULL, 0, 0, 0, 0, NULL, NULL }

/* One table and the struct its offsets point into. A part whose keys are
 * NULL is skipped. */
struct cfg_part {
	const struct cfg_key *keys;
	void *base;
};

/* Apply defaults of every table (NULL-terminated list) to base. */
void cfg_defaults(const struct cfg_key *const *tables, void *base);

/* Read group into base. where names the group in messages ("broker",
 * "routes[2]"). Returns the number of errors added to d. */
int cfg_read_group(const config_setting_t *group, const struct cfg_key *const *tables,
    void *base, const char *file, const char *where, struct diag *d);

/* Free every string a table owns in base. */
void cfg_free(const struct cfg_key *const *tables, void *base);

/* The same for n parts, each table with its own base: one group read
 * against them reports unknown keys, wrong types and missing required
 * keys as one table would, in the order of the parts. */
void cfg_defaults_parts(const struct cfg_part *parts, size_t n);
int cfg_read_parts(const config_setting_t *group, const struct cfg_part *parts, size_t n,
    const char *file, const char *where, struct diag *d);
void cfg_free_parts(const struct cfg_part *parts, size_t n);

/* Line of a setting, or of its nearest parent that has one. */
int cfg_line(const config_setting_t *s);
/* Line of key in group, or of group when the key is absent. */
int cfg_key_line(const config_setting_t *group, const char *key);

#endif
