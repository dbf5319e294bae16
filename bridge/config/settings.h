/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration model: the main file and one file per broker
 * connection in conf.d, each broker with its routes. */
#ifndef ONCEBRIDGE_SETTINGS_H
#define ONCEBRIDGE_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bridge/config/diag.h"
#include "bridge/core/source.h"

struct adapter;

struct route {
	char *name;          /* also the dedupe consumer */
	char *event_id;      /* source spec of the event ID */
	char *sql;           /* business SQL with $1..$n */
	char **params;       /* source spec of each $n */
	size_t n_params;
	char *format_name;   /* "json", "cbor", "msgpack", ... */
	void *proto;         /* the adapter's own part (its route_keys), opaque here */
	/* derived */
	enum payload_format format;
	struct source id_source;
	struct source *param_sources;
	int line;
};

struct broker {
	char *name;
	char *type;            /* adapter name (adapters/registry.c) */
	char *url;
	char *user;
	char *password_file;
	char *password_env;    /* or the name of an environment variable */
	char *password;        /* read from password_file or password_env */
	int64_t connect_timeout_ms;
	/* TLS, with a TLS URL of the adapter's (bridge/config/tls.h) */
	char *tls_ca_file;     /* paths resolved against the broker file's directory */
	char *tls_cert_file;
	char *tls_key_file;
	bool tls_verify_peer;
	bool tls_verify_hostname;
	struct route *routes;
	size_t n_routes;
	/* outbox relay to this broker, when the file has an "outbox" group */
	bool outbox;
	bool outbox_ordered;
	int64_t outbox_relays;
	int64_t outbox_batch_size;
	int64_t outbox_max_inflight_bytes;
	int64_t outbox_confirm_timeout_ms;
	int64_t outbox_poll_interval_ms;
	int64_t outbox_retention_s;
	int64_t outbox_stats_interval_s;
	const struct adapter *adapter;
	void *proto;           /* the adapter's own part (its broker_keys and outbox_keys), opaque here */
	char *file;
	int line;
};

struct settings {
	char *path;                 /* main file */
	char *db_conninfo;
	char *db_password_file;
	char *db_password_env;
	char *db_password;
	int64_t db_statement_timeout_ms;
	int64_t db_response_timeout_ms;    /* 0: statement_timeout_ms + 5 s */
	char *log_level;
	char *log_format;             /* "text" or "json" */
	int64_t log_repeat_interval_s; /* summary of a repeated condition */
	char *include_dir;          /* resolved to an absolute or cwd-relative path */
	int64_t max_payload;
	int64_t max_event_id_length;
	int64_t max_json_depth;
	int64_t max_topic_length;
	int64_t max_headers;
	int64_t dead_letter_payload; /* payload bytes kept per dead letter */
	int64_t retry_initial_ms;
	int64_t retry_max_ms;
	int64_t max_attempts;
	int64_t shutdown_timeout_ms;
	int64_t stall_timeout_ms;   /* health: a batch waiting this long is a stall */
	char *metrics_listen;       /* "host:port" of the metrics endpoint, NULL: off */
	int64_t dedupe_window_s;    /* prune processed_events older than this; 0: never */
	int64_t retention_batch;    /* rows per DELETE */
	int64_t retention_interval_s;
	int64_t dead_letter_window_s; /* prune dead_letters older than this; 0: never */
	struct broker *brokers;
	size_t n_brokers;
};

/* Load and check the main file at path and every conf.d/ *.conf, reading
 * secret files but doing no network I/O. Problems go to d; returns NULL
 * when there were errors. */
struct settings *settings_load(const char *path, struct diag *d);
void settings_free(struct settings *s);
/* Set the log level, format and repeat interval of s for this process
 * and the ones it forks from now on. */
void settings_apply_logging(const struct settings *s);

/* The broker named name, or NULL. */
const struct broker *settings_find_broker(const struct settings *s, const char *name);

/* The limits a message is checked against. */
struct limits settings_limits(const struct settings *s);

/* Print every configuration key the tables know, one "SECTION KEY" per
 * line: "main database.conninfo", "broker url", "outbox relays",
 * "route sql", and each adapter's own as "broker:TYPE KEY" or
 * "route:TYPE KEY" (its outbox keys as "outbox KEY"). The documentation
 * check compares them with the man page and the README. */
void settings_list_keys(FILE *out);

/* Highest $n used in sql (outside quotes and comments), 0 if none. */
int sql_max_placeholder(const char *sql);

#endif
