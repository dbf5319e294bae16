/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge check" for an AMQP broker (the adapter's check_live): log
 * in, then learn what RabbitMQ holds without the management API and
 * without changing anything. Each route's queue gets a passive declare
 * (exists, depth); then a declare with the arguments learnt so far, which
 * RabbitMQ answers, when they differ from the queue's, with a
 * PRECONDITION_FAILED naming the first argument that differs and its
 * current value ("inequivalent arg 'x-queue-type' ... current is the value
 * 'quorum' of type 'longstr'"): repeated, that reads durability, type,
 * delivery limit and message TTL, and the declare that finally succeeds
 * equals the queue and changes nothing. Only a queue the passive declare
 * found is declared. Exchanges of bindings and of the outbox get a passive
 * declare. A failed declare closes its channel: each probe opens a fresh
 * one. Bindings cannot be listed over AMQP 0-9-1; the daemon makes those
 * its routes name at start (queue.bind is idempotent). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_conn.h"
#include "bridge/config/report.h"
#include "bridge/common/util.h"

#define MAX_LEARNT_ARGS 16

struct probe {
	amqp_connection_state_t conn;
	amqp_channel_t channel;  /* open channel, 0: none */
	amqp_channel_t next;
	bool lost;               /* the connection is gone */
	char error[512];         /* the last failure, "" when none */
	int code;                /* its AMQP reply code, 0 when none */
};

/* One argument learnt from a PRECONDITION_FAILED. */
struct learnt {
	char *key;
	char *text;   /* the value as RabbitMQ printed it */
	char *type;   /* longstr, long, signedint, bool, ... */
};

struct queue_facts {
	bool durable;
	bool auto_delete;
	struct learnt args[MAX_LEARNT_ARGS];
	size_t n_args;
	bool complete;           /* the last declare succeeded: every argument is known */
	char why_incomplete[512];
};

/* --- probes on fresh channels */

static bool
probe_channel(struct probe *p)
{
	if (p->lost)
		return false;
	if (p->channel)
		return true;
	p->channel = p->next++;
	amqp_channel_open(p->conn, p->channel);
	if (amqp_get_rpc_reply(p->conn).reply_type != AMQP_RESPONSE_NORMAL) {
		snprintf(p->error, sizeof(p->error), "could not open a channel");
		p->lost = true;
		p->channel = 0;
		return false;
	}
	return true;
}

/* The outcome of the last RPC: true when normal; else p->error and
 * p->code are set and the closed channel (or connection) is forgotten. */
static bool
probe_reply(struct probe *p)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(p->conn);

	p->error[0] = '\0';
	p->code = 0;
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
		amqp_channel_close_t *m = r.reply.decoded;
		amqp_channel_close_ok_t ok = { 0 };

		p->code = m->reply_code;
		snprintf(p->error, sizeof(p->error), "%.*s", (int)m->reply_text.len, (char *)m->reply_text.bytes);
		amqp_send_method(p->conn, p->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		p->channel = 0;
		return false;
	}
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
		amqp_connection_close_t *m = r.reply.decoded;

		p->code = m->reply_code;
		snprintf(p->error, sizeof(p->error), "the broker closed the connection: %.*s", (int)m->reply_text.len,
		    (char *)m->reply_text.bytes);
	} else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
		snprintf(p->error, sizeof(p->error), "%s", amqp_error_string2(r.library_error));
	} else {
		snprintf(p->error, sizeof(p->error), "no reply from the broker");
	}
	p->lost = true;
	p->channel = 0;
	return false;
}

static bool
exchange_exists(struct probe *p, const char *name)
{
	if (!probe_channel(p))
		return false;
	amqp_exchange_declare(p->conn, p->channel, amqp_cstring_bytes(name), amqp_cstring_bytes("topic"), 1, 0, 0, 0,
	    amqp_empty_table);
	return probe_reply(p);
}

/* --- learning a queue's arguments */

static void
facts_free(struct queue_facts *f)
{
	for (size_t i = 0; i < f->n_args; i++) {
		free(f->args[i].key);
		free(f->args[i].text);
		free(f->args[i].type);
	}
	f->n_args = 0;
}

static const struct learnt *
facts_arg(const struct queue_facts *f, const char *key)
{
	for (size_t i = 0; i < f->n_args; i++)
		if (strcmp(f->args[i].key, key) == 0)
			return &f->args[i];
	return NULL;
}

/* The text between the quotes after marker in s, or NULL. */
static char *
quoted_after(const char *s, const char *marker)
{
	const char *a = strstr(s, marker), *b;

	if (a == NULL)
		return NULL;
	a += strlen(marker);
	b = strchr(a, '\'');
	return b ? xstrndup(a, (size_t)(b - a)) : NULL;
}

/* Apply one "inequivalent arg" message to f; false when it is not one
 * this understands. */
static bool
facts_learn(struct queue_facts *f, const char *msg)
{
	char *key = quoted_after(msg, "inequivalent arg '");
	const char *current = strstr(msg, "current is ");
	bool ok = false;

	if (key == NULL || current == NULL)
		goto out;
	if (strcmp(key, "durable") == 0 || strcmp(key, "auto_delete") == 0) {
		bool *flag = key[0] == 'd' ? &f->durable : &f->auto_delete;

		*flag = strncmp(current, "current is 'true'", 17) == 0;
		ok = true;
	} else if (strncmp(current, "current is the value '", 22) == 0 && f->n_args < MAX_LEARNT_ARGS &&
	    facts_arg(f, key) == NULL) {
		struct learnt *l = &f->args[f->n_args];

		l->text = quoted_after(current, "current is the value '");
		l->type = quoted_after(current, "' of type '");
		if (l->text == NULL || l->type == NULL) {
			free(l->text);
			free(l->type);
			goto out;
		}
		l->key = key;
		key = NULL;
		f->n_args++;
		ok = true;
	}
out:
	free(key);
	return ok;
}

/* The learnt arguments as an AMQP table (entries point into f). */
static bool
facts_table(const struct queue_facts *f, amqp_table_entry_t *e, amqp_table_t *t)
{
	for (size_t i = 0; i < f->n_args; i++) {
		const struct learnt *l = &f->args[i];

		e[i].key = amqp_cstring_bytes(l->key);
		if (strcmp(l->type, "longstr") == 0) {
			e[i].value.kind = AMQP_FIELD_KIND_UTF8;
			e[i].value.value.bytes = amqp_cstring_bytes(l->text);
		} else if (strcmp(l->type, "long") == 0 || strcmp(l->type, "signedint") == 0 ||
		    strcmp(l->type, "short") == 0 || strcmp(l->type, "byte") == 0) {
			e[i].value.kind = AMQP_FIELD_KIND_I64;
			e[i].value.value.i64 = strtoll(l->text, NULL, 10);
		} else if (strcmp(l->type, "bool") == 0) {
			e[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
			e[i].value.value.boolean = strcmp(l->text, "true") == 0;
		} else {
			return false;
		}
	}
	t->num_entries = (int)f->n_args;
	t->entries = e;
	return true;
}

/* Declare the queue with what is known until RabbitMQ accepts it. */
static void
queue_learn(struct probe *p, const char *queue, struct queue_facts *f)
{
	f->durable = true;
	for (int round = 0; round < MAX_LEARNT_ARGS + 3; round++) {
		amqp_table_entry_t entries[MAX_LEARNT_ARGS];
		amqp_table_t table;

		if (!facts_table(f, entries, &table)) {
			snprintf(f->why_incomplete, sizeof(f->why_incomplete), "an argument of a type this check cannot "
			    "repeat");
			return;
		}
		if (!probe_channel(p)) {
			snprintf(f->why_incomplete, sizeof(f->why_incomplete), "%s", p->error);
			return;
		}
		amqp_queue_declare(p->conn, p->channel, amqp_cstring_bytes(queue), 0, f->durable, 0, f->auto_delete, table);
		if (probe_reply(p)) {
			f->complete = true;
			return;
		}
		if (p->code != AMQP_PRECONDITION_FAILED || !facts_learn(f, p->error)) {
			snprintf(f->why_incomplete, sizeof(f->why_incomplete), "%s", p->error);
			return;
		}
	}
	snprintf(f->why_incomplete, sizeof(f->why_incomplete), "too many arguments");
}

/* --- what the facts mean for the guarantee */

static int64_t
arg_int(const struct queue_facts *f, const char *key)
{
	const struct learnt *l = facts_arg(f, key);

	return l ? strtoll(l->text, NULL, 10) : -1;
}

static void
report_type(const struct settings *s, const struct queue_facts *f, const char *subj, struct report *r)
{
	const struct learnt *type = facts_arg(f, "x-queue-type");
	const char *t = type ? type->text : "classic";
	int64_t limit = arg_int(f, "x-delivery-limit");

	if (strcmp(t, "classic") != 0 && strcmp(t, "quorum") != 0) {
		report_add(r, CHECK_WARNING, subj, "consume from a classic or quorum queue",
		    "is a %s queue, which oncebridge does not consume as such", t);
		return;
	}
	if (strcmp(t, "quorum") != 0 || limit < 0) {
		report_add(r, CHECK_OK, subj, NULL, "%s queue%s", t,
		    strcmp(t, "quorum") == 0 ? ", no x-delivery-limit argument (a policy may set one)" : "");
		return;
	}
	if (limit < s->max_attempts) {
		char *fix = xasprintf("declare the queue with x-delivery-limit of at least %lld, or lower "
		    "retry.max_attempts in \"%s\"", (long long)s->max_attempts, s->path);

		report_add(r, CHECK_ERROR, subj, fix, "quorum queue with delivery limit %lld, below retry.max_attempts "
		    "(%lld) in \"%s\": RabbitMQ drops or dead-letters a message that failed %lld times before oncebridge "
		    "gives up on it", (long long)limit, (long long)s->max_attempts, s->path, (long long)limit);
		free(fix);
		return;
	}
	report_add(r, CHECK_OK, subj, NULL, "quorum queue, delivery limit %lld, not below retry.max_attempts (%lld)",
	    (long long)limit, (long long)s->max_attempts);
}

/* Arguments that drop messages, and the horizon against the dedupe window. */
static void
report_losses(const struct settings *s, const struct queue_facts *f, const char *subj, struct report *r)
{
	int64_t ttl = arg_int(f, "x-message-ttl");
	const struct learnt *overflow = facts_arg(f, "x-overflow");
	bool bounded = facts_arg(f, "x-max-length") || facts_arg(f, "x-max-length-bytes");

	if (ttl >= 0)
		report_add(r, CHECK_WARNING, subj, "remove x-message-ttl, or dead-letter expired messages to a queue "
		    "someone watches", "x-message-ttl %lld ms: messages not consumed within it (an outage, a backlog) "
		    "expire and their events are lost", (long long)ttl);
	if (bounded && (overflow == NULL || strcmp(overflow->text, "drop-head") == 0))
		report_add(r, CHECK_WARNING, subj, "set x-overflow to reject-publish, or remove the length limit",
		    "has a length limit that drops the oldest messages when it is full");
	if (s->dedupe_window_s > 0 && ttl >= 0 && ttl / 1000 < s->dedupe_window_s)
		report_add(r, CHECK_OK, subj, NULL, "redelivery horizon %lld s (x-message-ttl) is within "
		    "retention.dedupe_window_s (%lld s)", (long long)(ttl / 1000), (long long)s->dedupe_window_s);
}

static void
report_queue_facts(const struct settings *s, const struct queue_facts *f, const char *subj, struct report *r)
{
	if (!f->complete) {
		report_add(r, CHECK_WARNING, subj, NULL, "could not learn its durability and arguments: %s",
		    f->why_incomplete);
		return;
	}
	if (!f->durable)
		report_add(r, CHECK_ERROR, subj, "delete it and declare it durable (declare_queue = true declares it "
		    "durable)", "is not durable: RabbitMQ loses it and its messages when it restarts");
	else
		report_add(r, CHECK_OK, subj, NULL, "is durable");
	if (f->auto_delete)
		report_add(r, CHECK_WARNING, subj, "declare it without auto-delete",
		    "is auto-delete: it goes, with its messages, when its last consumer does");
	report_type(s, f, subj, r);
	report_losses(s, f, subj, r);
}

/* Whether a route of b before index i consumes queue, or one declares it. */
static bool
queue_seen(const struct broker *b, size_t i, const char *queue, bool *declared)
{
	bool seen = false;

	*declared = false;
	if (queue == NULL)
		return false;
	for (size_t k = 0; k < b->n_routes; k++) {
		const struct amqpc_route_cfg *rc = amqpc_route_cfg(&b->routes[k]);

		if (rc->queue == NULL || strcmp(rc->queue, queue) != 0)
			continue;
		seen |= k < i;
		*declared |= rc->declare_queue;
	}
	return seen;
}

/* Each queue once, under the first route that names it. */
static void
check_route_queue(struct probe *p, const struct settings *s, const struct broker *b, size_t i, struct report *r)
{
	const struct route *rt = &b->routes[i];
	const struct amqpc_route_cfg *rc = amqpc_route_cfg(rt);
	char *subj = report_subject("queue \"%s\" (%s:%d route \"%s\" key \"queue\")", rc->queue, b->file, rt->line,
	    rt->name);
	amqp_queue_declare_ok_t *ok;
	struct queue_facts f = { 0 };
	bool declared;

	if (queue_seen(b, i, rc->queue, &declared) || !probe_channel(p))
		goto out;
	ok = amqp_queue_declare(p->conn, p->channel, amqp_cstring_bytes(rc->queue), 1, 0, 0, 0, amqp_empty_table);
	if (!probe_reply(p)) {
		if (p->code == AMQP_NOT_FOUND && declared)
			report_add(r, CHECK_OK, subj, NULL, "does not exist yet: oncebridge declares it, durable, at start");
		else if (p->code == AMQP_NOT_FOUND)
			report_add(r, CHECK_ERROR, subj, "declare the queue durable on the broker, or set "
			    "declare_queue = true", "does not exist on broker \"%s\"", b->name);
		else
			report_add(r, CHECK_ERROR, subj, NULL, "could not check it: %s", p->error);
		goto out;
	}
	report_add(r, CHECK_OK, subj, NULL, "exists: %u messages ready, %u consumers", ok->message_count,
	    ok->consumer_count);
	queue_learn(p, rc->queue, &f);
	report_queue_facts(s, &f, subj, r);
out:
	facts_free(&f);
	free(subj);
}

static void
check_route_binding(struct probe *p, const struct broker *b, const struct route *rt, struct report *r)
{
	const struct amqpc_route_cfg *rc = amqpc_route_cfg(rt);
	char *subj = report_subject("exchange \"%s\" (%s:%d route \"%s\" key \"bind_exchange\")", rc->bind_exchange,
	    b->file, rt->line, rt->name);

	if (exchange_exists(p, rc->bind_exchange))
		report_add(r, CHECK_OK, subj, NULL, "exists: oncebridge binds queue \"%s\" to it with %zu key%s at start",
		    rc->queue, rc->n_bind_keys, rc->n_bind_keys == 1 ? "" : "s");
	else if (p->code == AMQP_NOT_FOUND)
		report_add(r, CHECK_ERROR, subj, "declare the exchange, or name an existing one in bind_exchange",
		    "does not exist on broker \"%s\": the binding fails and the queue receives nothing", b->name);
	else
		report_add(r, CHECK_ERROR, subj, NULL, "could not check it: %s", p->error);
	free(subj);
}

static void
check_outbox_exchange(struct probe *p, const struct broker *b, struct report *r)
{
	const char *x = amqpc_broker_cfg(b)->outbox_exchange;
	char *subj = report_subject("exchange \"%s\" (%s group \"outbox\" key \"exchange\")", x, b->file);

	if (exchange_exists(p, x))
		report_add(r, CHECK_OK, subj, NULL, "exists: the outbox relay publishes rows that name no exchange to it");
	else if (p->code == AMQP_NOT_FOUND)
		report_add(r, CHECK_ERROR, subj, "declare the exchange, or name an existing one",
		    "does not exist on broker \"%s\": the relay cannot publish", b->name);
	else
		report_add(r, CHECK_ERROR, subj, NULL, "could not check it: %s", p->error);
	free(subj);
}

void
amqpc_check_live(const struct settings *s, const struct broker *b, struct report *r)
{
	struct amqpc_target t = { 0 };
	struct probe p = { 0 };
	char *subj = report_subject("broker \"%s\" (%s key \"url\")", b->name, b->file);
	const char *err = amqpc_target_init(&t, b);

	if (err) {
		report_add(r, CHECK_ERROR, subj, NULL, "invalid url: %s", err);
		goto out;
	}
	p.conn = amqpc_open(&t);
	if (p.conn == NULL) {
		report_add(r, CHECK_ERROR, subj, "check url, user and password, and that RabbitMQ runs",
		    "could not connect to %s:%d or log in as \"%s\" (the reason is logged above)", t.host, t.port, t.user);
		goto out;
	}
	report_add(r, CHECK_OK, subj, NULL, "connected to %s:%d as \"%s\"%s", t.host, t.port, t.user,
	    t.tls ? " over TLS" : "");
	p.channel = AMQPC_CHANNEL;
	p.next = AMQPC_CHANNEL + 1;
	for (size_t i = 0; i < b->n_routes && !p.lost; i++) {
		check_route_queue(&p, s, b, i, r);
		if (amqpc_route_cfg(&b->routes[i])->bind_exchange && !p.lost)
			check_route_binding(&p, b, &b->routes[i], r);
	}
	if (b->outbox && !p.lost)
		check_outbox_exchange(&p, b, r);
	if (p.lost)
		report_add(r, CHECK_ERROR, subj, NULL, "lost the connection while checking: %s", p.error);
	amqp_connection_close(p.conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(p.conn);
out:
	amqpc_target_free(&t);
	free(subj);
}
