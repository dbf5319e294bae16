/* SPDX-License-Identifier: Apache-2.0 */
/* Loading of the configuration: the main file (database, logging, limits,
 * retry) and every conf.d/ *.conf in sorted order, one broker connection
 * each. Everything is checked here, without network I/O, so that
 * "oncebridge -t" finds all mistakes, each with file, line and key. */
#include "config.h"

#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "adapters/adapter.h"
#include "bridge/config/cfgtable.h"
#include "bridge/core/db.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/daemon/metrics.h"
#include "bridge/config/secret.h"
#include "bridge/config/settings.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"

#define S(f) offsetof(struct settings, f)
#define B(f) offsetof(struct broker, f)
#define R(f) offsetof(struct route, f)

static const struct cfg_key database_keys[] = {
	{ "conninfo", CFG_STRING, S(db_conninfo), true, NULL, 0, 0, 0, 0, NULL,
	    "libpq connection string, e.g. \"host=db.example dbname=app user=oncebridge sslmode=verify-full\"" },
	{ "password_file", CFG_STRING, S(db_password_file), false, NULL, 0, 0, 0, 0, NULL,
	    "file holding the database password (mode 600)" },
	{ "password_env", CFG_STRING, S(db_password_env), false, NULL, 0, 0, 0, 0, NULL,
	    "environment variable holding the database password (containers), instead of password_file" },
	{ "statement_timeout_ms", CFG_INT, S(db_statement_timeout_ms), false, NULL, 10000, 0, 3600000, 0, NULL,
	    "statement_timeout of oncebridge's sessions; 0 disables it" },
	{ "response_timeout_ms", CFG_INT, S(db_response_timeout_ms), false, NULL, 0, 0, 86400000, 0, NULL,
	    "deadline of each database round trip (connect, transaction, COMMIT, relay and retention "
	    "queries): past it the session is closed and the next connect tries the next host; "
	    "0 means statement_timeout_ms plus 5 s (65 s when statement_timeout_ms is 0)" },
	CFG_END
};

static const struct cfg_key limits_keys[] = {
	{ "max_payload", CFG_INT, S(max_payload), false, NULL, 1048576, 1, 268435456, 0, NULL,
	    "largest payload in bytes; larger messages are dead-lettered" },
	{ "max_event_id_length", CFG_INT, S(max_event_id_length), false, NULL, 128, 1, 1024, 0, NULL,
	    "longest event ID in bytes" },
	{ "max_json_depth", CFG_INT, S(max_json_depth), false, NULL, 32, 1, 1000, 0, NULL,
	    "deepest nesting of a JSON payload" },
	{ "max_topic_length", CFG_INT, S(max_topic_length), false, NULL, 1024, 1, 65535, 0, NULL,
	    "longest topic or routing key in bytes" },
	{ "max_headers", CFG_INT, S(max_headers), false, NULL, 128, 0, 65535, 0, NULL,
	    "most headers (or user properties) on one message" },
	{ "dead_letter_payload", CFG_INT, S(dead_letter_payload), false, NULL, 65536, 0, 268435456, 0, NULL,
	    "payload bytes kept per dead letter; a longer payload keeps this prefix with its full size and "
	    "SHA-256, and cannot be replayed" },
	CFG_END
};

static const struct cfg_key retry_keys[] = {
	{ "initial_ms", CFG_INT, S(retry_initial_ms), false, NULL, 200, 1, 3600000, 0, NULL,
	    "first backoff delay after a transient failure" },
	{ "max_ms", CFG_INT, S(retry_max_ms), false, NULL, 30000, 1, 3600000, 0, NULL,
	    "cap of the exponential backoff" },
	{ "max_attempts", CFG_INT, S(max_attempts), false, NULL, 5, 1, 1000, 0, NULL,
	    "a message failing with an unclassified database error this many times is dead-lettered" },
	CFG_END
};

static const struct cfg_key health_keys[] = {
	{ "stall_timeout_ms", CFG_INT, S(stall_timeout_ms), false, NULL, 60000, 100, 86400000, 0, NULL,
	    "a worker whose batch waits this long without a commit is stalled: /health answers 503 and "
	    "the systemd watchdog is no longer pinged; a worker not running or not connected to its "
	    "database or broker this long also makes /health answer 503" },
	CFG_END
};

static const struct cfg_key metrics_keys[] = {
	{ "listen", CFG_STRING, S(metrics_listen), false, NULL, 0, 0, 0, 0, NULL,
	    "address and port of the Prometheus and health endpoint, e.g. \"127.0.0.1:9089\"; "
	    "without it there is no endpoint" },
	CFG_END
};

static const struct cfg_key retention_keys[] = {
	{ "dedupe_window_s", CFG_INT, S(dedupe_window_s), false, NULL, 0, 0, 3153600000LL, 0, NULL,
	    "processed_events rows older than this many seconds are deleted, so a redelivery after it is "
	    "applied again; 0 keeps them forever" },
	{ "batch_size", CFG_INT, S(retention_batch), false, NULL, 5000, 1, 1000000, 0, NULL,
	    "rows deleted per statement (one short transaction each)" },
	{ "interval_s", CFG_INT, S(retention_interval_s), false, NULL, 60, 1, 86400, 0, NULL,
	    "how often pruning looks for expired rows" },
	{ "dead_letter_window_s", CFG_INT, S(dead_letter_window_s), false, NULL, 0, 0, 3153600000LL, 0, NULL,
	    "dead letters older than this many seconds are deleted, replayed or not; 0 keeps them until "
	    "purged" },
	CFG_END
};

static const struct cfg_key main_keys[] = {
	{ "database", CFG_GROUP, 0, true, NULL, 0, 0, 0, 0, database_keys, "the PostgreSQL connection" },
	{ "log_level", CFG_STRING, S(log_level), false, "info", 0, 0, 0, 0, NULL,
	    "error, warning, notice, info or debug" },
	{ "log_format", CFG_STRING, S(log_format), false, "text", 0, 0, 0, 0, NULL,
	    "text or json (one object per line); under systemd the journal gets structured fields either way" },
	{ "log_repeat_interval_s", CFG_INT, S(log_repeat_interval_s), false, NULL, 60, 1, 86400, 0, NULL,
	    "while a condition repeats (database down, broker unreachable), each process logs a summary "
	    "this often, instead of a line per retry" },
	{ "include_dir", CFG_STRING, S(include_dir), false, "conf.d", 0, 0, 0, 0, NULL,
	    "directory of broker files (*.conf), relative to the main file's directory" },
	{ "limits", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, limits_keys, "limits on untrusted input" },
	{ "retry", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, retry_keys, "backoff after failures" },
	{ "shutdown_timeout_ms", CFG_INT, S(shutdown_timeout_ms), false, NULL, 30000, 100, 3600000, 0, NULL,
	    "how long SIGTERM waits for workers to drain before killing them" },
	{ "health", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, health_keys, "when a worker counts as stalled" },
	{ "metrics", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, metrics_keys, "the metrics and health endpoint" },
	{ "retention", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, retention_keys, "pruning of old dedupe keys" },
	CFG_END
};

static const struct cfg_key tls_keys[] = {
	{ "ca_file", CFG_STRING, B(tls_ca_file), false, NULL, 0, 0, 0, 0, NULL,
	    "CA certificates (PEM) that the broker's certificate must chain to; default: the system's" },
	{ "cert_file", CFG_STRING, B(tls_cert_file), false, NULL, 0, 0, 0, 0, NULL,
	    "client certificate (PEM), for brokers that require one; needs key_file" },
	{ "key_file", CFG_STRING, B(tls_key_file), false, NULL, 0, 0, 0, 0, NULL,
	    "private key (PEM, unencrypted) of cert_file; mode 600 like a password file" },
	{ "verify_peer", CFG_BOOL, B(tls_verify_peer), false, NULL, 1, 0, 0, 0, NULL,
	    "check that the broker's certificate chains to a trusted CA (keep true)" },
	{ "verify_hostname", CFG_BOOL, B(tls_verify_hostname), false, NULL, 1, 0, 0, 0, NULL,
	    "check that the broker's certificate names the host of the URL (keep true)" },
	CFG_END
};

static const struct cfg_key broker_common_keys[] = {
	{ "name", CFG_STRING, B(name), true, NULL, 0, 0, 0, 0, NULL,
	    "unique name of this broker connection, used in logs and dead letters" },
	{ "type", CFG_STRING, B(type), true, NULL, 0, 0, 0, 0, NULL, "protocol: the name of a registered adapter" },
	{ "url", CFG_STRING, B(url), true, NULL, 0, 0, 0, 0, NULL,
	    "broker address, in the adapter's URL scheme (no password here)" },
	{ "user", CFG_STRING, B(user), false, NULL, 0, 0, 0, 0, NULL, "user name to log in with" },
	{ "password_file", CFG_STRING, B(password_file), false, NULL, 0, 0, 0, 0, NULL,
	    "file holding the broker password (mode 600)" },
	{ "password_env", CFG_STRING, B(password_env), false, NULL, 0, 0, 0, 0, NULL,
	    "environment variable holding the broker password (containers), instead of password_file" },
	{ "connect_timeout_ms", CFG_INT, B(connect_timeout_ms), false, NULL, 10000, 100, 600000, 0, NULL,
	    "timeout of one connection attempt" },
	{ "tls", CFG_GROUP, 0, false, NULL, 0, 0, 0, 0, tls_keys,
	    "TLS to the broker (with a TLS URL of the adapter's scheme)" },
	CFG_END
};

static const struct cfg_key outbox_keys[] = {
	{ "ordered", CFG_BOOL, B(outbox_ordered), false, NULL, 1, 0, 0, 0, NULL,
	    "publish in outbox order with one active relay (the others stand by); false: relays share the work" },
	{ "relays", CFG_INT, B(outbox_relays), false, NULL, 1, 1, 64, 0, NULL,
	    "relay processes for this destination" },
	{ "batch_size", CFG_INT, B(outbox_batch_size), false, NULL, 500, 1, 10000, 0, NULL,
	    "rows claimed and published (all in flight) per round" },
	{ "max_inflight_bytes", CFG_INT, B(outbox_max_inflight_bytes), false, NULL, 33554432, 1024, 1099511627776LL, 0,
	    NULL, "payload bytes a relay holds in flight (read, not yet confirmed); a read stops there" },
	{ "confirm_timeout_ms", CFG_INT, B(outbox_confirm_timeout_ms), false, NULL, 10000, 100, 600000, 0, NULL,
	    "how long to wait for the broker's confirms before republishing" },
	{ "poll_interval_ms", CFG_INT, B(outbox_poll_interval_ms), false, NULL, 1000, 10, 600000, 0, NULL,
	    "look for rows this often even without a notification" },
	{ "retention_s", CFG_INT, B(outbox_retention_s), false, NULL, 604800, 0, 315360000, 0, NULL,
	    "published rows are deleted after this many seconds" },
	{ "stats_interval_s", CFG_INT, B(outbox_stats_interval_s), false, NULL, 60, 1, 86400, 0, NULL,
	    "how often the relay logs pending rows, the oldest one's age and its counts" },
	CFG_END
};

static const struct cfg_key route_common_keys[] = {
	{ "name", CFG_STRING, R(name), true, NULL, 0, 0, 0, 0, NULL,
	    "unique route name; it is the consumer in the dedupe key (consumer, event_id)" },
	{ "event_id", CFG_STRING, R(event_id), true, NULL, 0, 0, 0, 0, NULL,
	    "where the event ID is: \"json:PATH\", \"property:message_id\", \"header:NAME\" or \"payload_hash\"" },
	{ "sql", CFG_STRING, R(sql), true, NULL, 0, 0, 0, 0, NULL,
	    "business SQL run once per event, with parameters $1..$n" },
	{ "params", CFG_STRINGS, R(params), false, NULL, 0, 0, 0, R(n_params), NULL,
	    "source of each parameter $1..$n, e.g. [\"event_id\", \"json:meter\", \"topic_level:2\"]" },
	{ "format", CFG_STRING, R(format_name), false, "json", 0, 0, 0, 0, NULL,
	    "how payloads are decoded for json:/field: paths, payload and the event ID: \"json\", \"cbor\", "
	    "\"msgpack\" or \"sparkplug_b\"" },
	CFG_END
};

const struct broker *
settings_find_broker(const struct settings *s, const char *name)
{
	for (size_t i = 0; i < s->n_brokers; i++)
		if (s->brokers[i].name && strcmp(s->brokers[i].name, name) == 0)
			return &s->brokers[i];
	return NULL;
}

struct limits
settings_limits(const struct settings *s)
{
	struct limits l = {
		.max_payload = (size_t)s->max_payload,
		.max_event_id_length = (size_t)s->max_event_id_length,
		.max_json_depth = (int)s->max_json_depth,
		.max_topic_length = (size_t)s->max_topic_length,
		.max_headers = (size_t)s->max_headers,
		.dead_letter_payload = (size_t)s->dead_letter_payload,
	};
	return l;
}

/* path resolved against the directory of the file that names it
 * (the main file, or a broker file in conf.d), unless absolute */
static char *
resolve_path(const char *namedin, const char *p)
{
	char *copy, *dir, *res;

	if (p[0] == '/')
		return xstrdup(p);
	copy = xstrdup(namedin);
	dir = dirname(copy);
	res = xasprintf("%s/%s", dir, p);
	free(copy);
	return res;
}

int
sql_max_placeholder(const char *sql)
{
	int max = 0;

	for (const char *p = sql; *p; p++) {
		if (*p == '\'' || *p == '"') {
			char q = *p;

			for (p++; *p && *p != q; p++)
				;
			if (!*p)
				break;
		} else if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
			if (!*p)
				break;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *e = strstr(p + 2, "*/");

			if (e == NULL)
				break;
			p = e + 1;
		} else if (p[0] == '$' && p[1] >= '1' && p[1] <= '9' &&
		    (p == sql || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
		    (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= '0' && p[-1] <= '9')))) {
			int n = (int)strtol(p + 1, NULL, 10);

			if (n > max)
				max = n;
		}
	}
	return max;
}

/* A relative path of a broker file that names no file, but one exists
 * where earlier builds looked (relative to the main file's directory):
 * say so, before the error it leads to. */
static void
warn_moved_path(const struct settings *s, const char *file, int line, const char *key, const char *rel,
    const char *path, struct diag *d)
{
	char *old;

	if (rel[0] == '/' || strcmp(file, s->path) == 0 || access(path, F_OK) == 0)
		return;
	old = resolve_path(s->path, rel);
	if (access(old, F_OK) == 0)
		diag_warn(d, file, line,
		    "key \"%s\": \"%s\" does not exist; a relative path in a broker file is relative to "
		    "that file's directory, and \"%s\" (relative to the main file) is not read", key, path, old);
	free(old);
}

/* The password of group (e.g. "database"), from its password_file or
 * its password_env, never both; a relative password_file is relative to
 * the directory of cfgfile. */
static void
load_secret(const struct settings *s, char **file, const char *env, char **secret, const config_t *cfg,
    const char *cfgfile, const char *group, struct diag *d)
{
	char key[64], *err = NULL, *path;

	snprintf(key, sizeof(key), "%s.%s", group, env ? "password_env" : "password_file");
	if (*file && env) {
		diag_error(d, cfgfile, cfg_line(config_lookup(cfg, key)),
		    "keys \"password_file\" and \"password_env\" of \"%s\" cannot be used together", group);
		return;
	}
	if (env) {
		const char *value = getenv(env);

		if (value == NULL || value[0] == '\0')
			diag_error(d, cfgfile, cfg_line(config_lookup(cfg, key)),
			    "key \"password_env\": environment variable \"%s\" is not set or empty", env);
		else
			*secret = xstrdup(value);
		return;
	}
	if (*file == NULL)
		return;
	path = resolve_path(cfgfile, *file);
	warn_moved_path(s, cfgfile, cfg_line(config_lookup(cfg, key)), "password_file", *file, path, d);
	free(*file);
	*file = path;
	*secret = secret_read(path, &err);
	if (*secret == NULL) {
		diag_error(d, cfgfile, cfg_line(config_lookup(cfg, key)), "key \"password_file\": %s", err);
		free(err);
	}
}

/* the TLS files of a broker, relative to the directory of its file */
static void
resolve_tls_paths(const struct settings *s, struct broker *b, const config_t *cfg, struct diag *d)
{
	char **files[] = { &b->tls_ca_file, &b->tls_cert_file, &b->tls_key_file };
	const char *keys[] = { "ca_file", "cert_file", "key_file" };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (*files[i]) {
			char *path = resolve_path(b->file, *files[i]);
			char key[32];

			snprintf(key, sizeof(key), "broker.tls.%s", keys[i]);
			warn_moved_path(s, b->file, cfg_line(config_lookup(cfg, key)), keys[i], *files[i], path, d);
			free(*files[i]);
			*files[i] = path;
		}
	}
}

/* An adapter's own part of a broker or route, NULL when it has none. */
static void *
part_new(size_t size)
{
	return size ? xcalloc(1, size) : NULL;
}

/* The tables of a broker group: the core's keys fill b, the adapter's
 * its own part. */
static void
broker_parts(struct broker *b, struct cfg_part parts[2])
{
	parts[0] = (struct cfg_part){ broker_common_keys, b };
	parts[1] = (struct cfg_part){ b->adapter->broker_keys, b->proto };
}

static void
outbox_parts(struct broker *b, struct cfg_part parts[2])
{
	parts[0] = (struct cfg_part){ outbox_keys, b };
	parts[1] = (struct cfg_part){ b->adapter->outbox_keys, b->proto };
}

static void
route_parts(const struct broker *b, struct route *r, struct cfg_part parts[2])
{
	parts[0] = (struct cfg_part){ route_common_keys, r };
	parts[1] = (struct cfg_part){ b->adapter->route_keys, r->proto };
}

static void
check_route(struct broker *b, struct route *r, const config_setting_t *g, const char *file, struct diag *d)
{
	char *err = NULL;
	int max;

	if (payload_format_parse(r->format_name, &r->format) < 0)
		diag_error(d, file, cfg_key_line(g, "format"), "invalid value \"%s\" of key \"format\" in route \"%s\": "
		    "expected %s", r->format_name, r->name, payload_format_list());
	if (source_parse(r->event_id, true, &r->id_source, &err) < 0) {
		diag_error(d, file, cfg_key_line(g, "event_id"), "invalid value of key \"event_id\" in route \"%s\": %s",
		    r->name, err);
		sfree(err);
	}
	r->param_sources = xcalloc(r->n_params + 1, sizeof(struct source));
	for (size_t i = 0; i < r->n_params; i++) {
		if (source_parse(r->params[i], false, &r->param_sources[i], &err) < 0) {
			diag_error(d, file, cfg_key_line(g, "params"),
			    "invalid parameter $%zu in key \"params\" of route \"%s\": %s",
			    i + 1, r->name, err);
			sfree(err);
		}
	}
	max = sql_max_placeholder(r->sql);
	if ((size_t)max != r->n_params)
		diag_error(d, file, cfg_key_line(g, "sql"),
		    "key \"sql\" of route \"%s\" uses parameters up to $%d but key \"params\" lists %zu",
		    r->name, max, r->n_params);
	for (size_t i = 0; i < b->n_routes && &b->routes[i] != r; i++)
		if (b->routes[i].name && strcmp(b->routes[i].name, r->name) == 0)
			diag_error(d, file, cfg_key_line(g, "name"), "route name \"%s\" is used twice in this file", r->name);
}

static void
read_routes(struct broker *b, const config_setting_t *list, const char *file, struct diag *d)
{
	int n;

	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		diag_error(d, file, cfg_line(list),
		    "key \"routes\" must be a list of groups: routes = ( { ... }, { ... } );");
		return;
	}
	n = config_setting_length(list);
	if (n == 0)
		diag_error(d, file, cfg_line(list), "broker \"%s\" has no routes", b->name);
	b->routes = xcalloc((size_t)n + 1, sizeof(struct route));
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct route *r = &b->routes[i];
		char *where = xasprintf("routes[%d]", i + 1);
		struct cfg_part parts[2];

		b->n_routes++;
		r->proto = part_new(b->adapter->route_size);
		route_parts(b, r, parts);
		cfg_defaults_parts(parts, 2);
		r->line = cfg_line(g);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			diag_error(d, file, r->line, "element %d of key \"routes\" must be a group", i + 1);
			free(where);
			continue;
		}
		if (cfg_read_parts(g, parts, 2, file, where, d) == 0)
			check_route(b, r, g, file, d);
		free(where);
	}
}

static void
read_broker_file(struct settings *s, const char *file, struct diag *d)
{
	config_t cfg;
	const config_setting_t *root, *group, *routes, *type;
	struct broker *b;

	config_init(&cfg);
	if (config_read_file(&cfg, file) != CONFIG_TRUE) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			diag_error(d, file, 0, "could not read file: %s", strerror(errno));
		else
			diag_error(d, config_error_file(&cfg) ? config_error_file(&cfg) : file,
			    config_error_line(&cfg), "syntax error: %s", config_error_text(&cfg));
		goto out;
	}
	root = config_root_setting(&cfg);
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(m);

		if (strcmp(name, "broker") != 0 && strcmp(name, "routes") != 0 && strcmp(name, "outbox") != 0)
			diag_error(d, file, cfg_line(m),
			    "unknown key \"%s\" at top level (a broker file holds \"broker\", \"routes\" and \"outbox\")",
			    name);
	}
	group = config_lookup(&cfg, "broker");
	if (group == NULL || config_setting_type(group) != CONFIG_TYPE_GROUP) {
		diag_error(d, file, group ? cfg_line(group) : 0, "missing group \"broker\"");
		goto out;
	}
	s->brokers = xrealloc(s->brokers, (s->n_brokers + 1) * sizeof(struct broker));
	b = &s->brokers[s->n_brokers++];
	memset(b, 0, sizeof(*b));
	b->file = xstrdup(file);
	b->line = cfg_line(group);
	type = config_setting_get_member(group, "type");
	if (type == NULL || config_setting_get_string(type) == NULL) {
		diag_error(d, file, b->line, "missing required key \"type\" in group \"broker\"");
		goto out;
	}
	b->adapter = adapter_find(config_setting_get_string(type));
	if (b->adapter == NULL) {
		struct buf names = { 0 };

		for (size_t i = 0; adapters[i]; i++)
			buf_appendf(&names, "%s\"%s\"", i ? ", " : "", adapters[i]->name);
		diag_error(d, file, cfg_line(type), "unknown broker type \"%s\" (known: %s)",
		    config_setting_get_string(type), names.data);
		buf_free(&names);
		goto out;
	}
	b->proto = part_new(b->adapter->broker_size);
	{
		struct cfg_part parts[2];

		broker_parts(b, parts);
		cfg_defaults_parts(parts, 2);
		if (cfg_read_parts(group, parts, 2, file, "group \"broker\"", d) > 0)
			goto out;
	}
	for (size_t i = 0; i + 1 < s->n_brokers; i++)
		if (s->brokers[i].name && strcmp(s->brokers[i].name, b->name) == 0)
			diag_error(d, file, b->line, "broker name \"%s\" is already used in \"%s\"", b->name,
			    s->brokers[i].file);
	load_secret(s, &b->password_file, b->password_env, &b->password, &cfg, file, "broker", d);
	resolve_tls_paths(s, b, &cfg, d);
	{
		struct cfg_part oparts[2];
		const config_setting_t *outbox = config_lookup(&cfg, "outbox");

		outbox_parts(b, oparts);
		cfg_defaults_parts(oparts, 2);
		if (outbox && config_setting_type(outbox) != CONFIG_TYPE_GROUP) {
			diag_error(d, file, cfg_line(outbox), "key \"outbox\" must be a group");
		} else if (outbox) {
			b->outbox = true;
			cfg_read_parts(outbox, oparts, 2, file, "group \"outbox\"", d);
			if (b->adapter->publisher_open == NULL)
				diag_error(d, file, cfg_line(outbox), "broker type \"%s\" cannot publish an outbox yet",
				    b->adapter->name);
		}
	}
	routes = config_lookup(&cfg, "routes");
	if (routes == NULL && !b->outbox)
		diag_error(d, file, 0,
		    "missing key \"routes\": a broker file needs at least one route or an \"outbox\" group");
	else if (routes)
		read_routes(b, routes, file, d);
	if (d->errors == 0)
		b->adapter->check(b, group, routes, file, d);
out:
	config_destroy(&cfg);
}

static void
check_route_names_unique(struct settings *s, struct diag *d)
{
	for (size_t i = 0; i < s->n_brokers; i++)
		for (size_t j = i + 1; j < s->n_brokers; j++)
			for (size_t a = 0; a < s->brokers[i].n_routes; a++)
				for (size_t b = 0; b < s->brokers[j].n_routes; b++)
					if (s->brokers[i].routes[a].name && s->brokers[j].routes[b].name &&
					    strcmp(s->brokers[i].routes[a].name, s->brokers[j].routes[b].name) == 0)
						diag_error(d, s->brokers[j].file, s->brokers[j].routes[b].line,
						    "route name \"%s\" is already used in \"%s\"; the route name is the dedupe consumer and must be unique",
						    s->brokers[j].routes[b].name, s->brokers[i].file);
}

/* A dedupe window shorter than a broker's redelivery horizon lets a
 * redelivered event be applied twice. A worker's own outage is covered
 * (it holds pruning back, bridge/retention/horizon.c); what a broker keeps for
 * longer than the window without having delivered it is not. */
static void
check_dedupe_window(struct settings *s, struct diag *d)
{
	if (s->dedupe_window_s == 0)
		return;
	for (size_t i = 0; i < s->n_brokers; i++) {
		const struct broker *b = &s->brokers[i];

		if (b->adapter && b->n_routes > 0 && b->adapter->check_window)
			b->adapter->check_window(b, s->dedupe_window_s, s->path, d);
	}
}

/* What an adapter checks of a broker against the main file's settings. */
static void
check_against_main(struct settings *s, struct diag *d)
{
	for (size_t i = 0; i < s->n_brokers; i++) {
		const struct broker *b = &s->brokers[i];

		if (b->adapter && b->proto && b->adapter->check_main)
			b->adapter->check_main(b, s, d);
	}
}

static void
read_include_dir(struct settings *s, struct diag *d)
{
	glob_t g;
	char *pattern;
	struct stat st;
	int rc;

	if (stat(s->include_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		diag_error(d, s->path, 0, "include_dir \"%s\" is not a directory", s->include_dir);
		return;
	}
	pattern = xasprintf("%s/*.conf", s->include_dir);
	rc = glob(pattern, 0, NULL, &g); /* glob sorts its result */
	free(pattern);
	if (rc == GLOB_NOMATCH) {
		diag_error(d, s->path, 0, "no broker files (*.conf) in \"%s\"", s->include_dir);
		return;
	}
	if (rc != 0) {
		diag_error(d, s->path, 0, "could not list \"%s\"", s->include_dir);
		return;
	}
	for (size_t i = 0; i < g.gl_pathc; i++)
		read_broker_file(s, g.gl_pathv[i], d);
	globfree(&g);
}

struct settings *
settings_load(const char *path, struct diag *d)
{
	const struct cfg_key *const tables[] = { main_keys, NULL };
	struct settings *s = xcalloc(1, sizeof(*s));
	config_t cfg;
	int errors_before = d->errors;
	char *dir;

	s->path = xstrdup(path);
	cfg_defaults(tables, s);
	config_init(&cfg);
	if (config_read_file(&cfg, path) != CONFIG_TRUE) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			diag_error(d, path, 0, "could not read configuration file: %s", strerror(errno));
		else
			diag_error(d, config_error_file(&cfg) ? config_error_file(&cfg) : path,
			    config_error_line(&cfg), "syntax error: %s", config_error_text(&cfg));
		config_destroy(&cfg);
		goto out;
	}
	cfg_read_group(config_root_setting(&cfg), tables, s, path, "the main file", d);
	if (s->log_level && log_level_from_name(s->log_level) < 0) {
		const config_setting_t *ll = config_lookup(&cfg, "log_level");

		diag_error(d, path, cfg_line(ll),
		    "invalid value \"%s\" of key \"log_level\" (error, warning, notice, info or debug)", s->log_level);
	}
	if (s->log_format && strcmp(s->log_format, "text") != 0 && strcmp(s->log_format, "json") != 0)
		diag_error(d, path, cfg_line(config_lookup(&cfg, "log_format")),
		    "invalid value \"%s\" of key \"log_format\" (text or json)", s->log_format);
	if (s->db_conninfo)
		db_check_conninfo(s->db_conninfo, path, cfg_line(config_lookup(&cfg, "database.conninfo")), d);
	if (s->db_response_timeout_ms > 0 && s->db_response_timeout_ms <= s->db_statement_timeout_ms)
		diag_warn(d, path, cfg_line(config_lookup(&cfg, "database.response_timeout_ms")),
		    "key \"response_timeout_ms\" in group \"database\" is not above \"statement_timeout_ms\": "
		    "a slow statement is cut as a dead database before the server cancels it");
	if (s->retry_initial_ms > s->retry_max_ms)
		diag_error(d, path, cfg_line(config_lookup(&cfg, "retry")),
		    "key \"initial_ms\" of group \"retry\" is larger than \"max_ms\"");
	if (s->metrics_listen) {
		char *err = NULL;

		if (metrics_check_listen(s->metrics_listen, &err) < 0) {
			diag_error(d, path, cfg_line(config_lookup(&cfg, "metrics.listen")),
			    "invalid value of key \"listen\" in group \"metrics\": %s", err);
			free(err);
		}
	}
	load_secret(s, &s->db_password_file, s->db_password_env, &s->db_password, &cfg, path, "database", d);
	config_destroy(&cfg);
	if (d->errors > errors_before)
		goto out;
	dir = resolve_path(path, s->include_dir);
	free(s->include_dir);
	s->include_dir = dir;
	read_include_dir(s, d);
	check_route_names_unique(s, d);
	check_dedupe_window(s, d);
	check_against_main(s, d);
out:
	if (d->errors > errors_before) {
		settings_free(s);
		return NULL;
	}
	return s;
}

static void
route_free(const struct broker *b, struct route *r)
{
	struct cfg_part parts[2];

	source_free(&r->id_source);
	for (size_t i = 0; r->param_sources && i < r->n_params; i++)
		source_free(&r->param_sources[i]);
	free(r->param_sources);
	route_parts(b, r, parts);
	cfg_free_parts(parts, 2);
	free(r->proto);
}

void
settings_free(struct settings *s)
{
	const struct cfg_key *const tables[] = { main_keys, NULL };

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n_brokers; i++) {
		struct broker *b = &s->brokers[i];

		if (b->adapter) {
			struct cfg_part parts[2];

			for (size_t r = 0; r < b->n_routes; r++)
				route_free(b, &b->routes[r]);
			broker_parts(b, parts);
			cfg_free_parts(parts, 2);
			outbox_parts(b, parts);
			cfg_free_parts(parts, 2);
			free(b->proto);
		}
		if (b->password) {
			explicit_bzero(b->password, strlen(b->password));
			free(b->password);
		}
		free(b->routes);
		free(b->file);
	}
	free(s->brokers);
	if (s->db_password) {
		explicit_bzero(s->db_password, strlen(s->db_password));
		free(s->db_password);
	}
	cfg_free(tables, s);
	free(s->path);
	free(s);
}

void
settings_apply_logging(const struct settings *s)
{
	log_set_level(log_level_from_name(s->log_level));
	log_set_format(s->log_format);
	repeat_set_interval(s->log_repeat_interval_s * 1000);
}

static void
list_table(FILE *out, const char *section, const char *prefix, const struct cfg_key *t)
{
	for (; t && t->name; t++) {
		if (t->type == CFG_GROUP) {
			char sub[128];

			snprintf(sub, sizeof(sub), "%s%s.", prefix, t->name);
			list_table(out, section, sub, t->sub);
		} else
			fprintf(out, "%s %s%s\n", section, prefix, t->name);
	}
}

void
settings_list_keys(FILE *out)
{
	list_table(out, "main", "", main_keys);
	list_table(out, "broker", "", broker_common_keys);
	list_table(out, "outbox", "", outbox_keys);
	for (size_t i = 0; adapters[i]; i++)
		list_table(out, "outbox", "", adapters[i]->outbox_keys);
	list_table(out, "route", "", route_common_keys);
	for (size_t i = 0; adapters[i]; i++) {
		char section[64];

		snprintf(section, sizeof(section), "broker:%s", adapters[i]->name);
		list_table(out, section, "", adapters[i]->broker_keys);
		snprintf(section, sizeof(section), "route:%s", adapters[i]->name);
		list_table(out, section, "", adapters[i]->route_keys);
	}
}
