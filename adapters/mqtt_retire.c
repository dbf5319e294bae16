/* SPDX-License-Identifier: Apache-2.0 */
/* Retiring the MQTT sessions a configuration no longer uses. A broker keeps
 * a persistent session, its subscriptions and its queued messages under a
 * client ID until the session expires. When a setup goes from one session
 * (workers = 1, plain subscriptions) to several on a shared group, the old
 * session would keep a copy of every message; when "workers" goes down,
 * Mosquitto keeps dealing shares to the group members nobody runs any
 * more. Both lose messages once those sessions expire, and hold them back
 * until then.
 *
 * So every worker records its client ID and subscriptions in
 * oncebridge.mqtt_sessions (sql/006_mqtt_sessions.sql) before it connects,
 * and worker 0, once its own session is subscribed (so that the filters
 * have a live subscriber from then on), retires each recorded session of
 * its broker and client_id that the configuration does not use, and the
 * bare client_id when workers > 1 (the session of the old one-worker
 * default, never recorded). Retiring one session:
 *  1. connect as it, clean start off: the broker resends what it held
 *     unacked and delivers what it queued; each message is applied through
 *     the core like any other (a copy the new sessions also got is a
 *     counted duplicate) and acked after COMMIT;
 *  2. once quiet (or after FIRST_DRAIN_MS: a plain subscription of a busy
 *     topic gets a copy of every message and is never quiet), unsubscribe
 *     its filters (recorded, plus the routes' own in both plain and shared
 *     form): nothing new is added to it. Mosquitto 2.0.11 goes on
 *     delivering what it had queued for the session after the UNSUBACK
 *     (tested: 200 queued, an UNSUBSCRIBE right after CONNACK, 200
 *     delivered), as MQTT allows; the first drain is for brokers that
 *     would drop it;
 *  3. once quiet again, DISCONNECT, then connect with a clean start (MQTT
 *     5, session expiry 0) or clean session (3.1.1) and DISCONNECT: the
 *     broker ends the session;
 *  4. delete its row, and its worker's redelivery horizon.
 * A failure leaves the row: worker 0 tries again after its next connect.
 * The old session shares paho's one receive thread with the worker's own,
 * so both apply one message at a time, in turn. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <MQTTAsync.h>

#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_session.h"
#include "bridge/common/log.h"
#include "bridge/common/util.h"
#include "bridge/config/settings.h"
#include "bridge/core/db.h"
#include "bridge/core/roundtrip.h"
#include "bridge/daemon/worker.h"

#define QUIET_MS 1000          /* no message for this long: the session is drained */
#define FIRST_DRAIN_MS 10000   /* at most this long before the unsubscribe (steady traffic is never quiet) */
#define ANSWER_WAIT_MS 10000   /* for a CONNACK beyond connect_timeout_ms, an UNSUBACK */
#define POLL_MS 50

/* A growing list of strings, for filters and client IDs. */
struct strs {
	char **v;
	size_t n;
};

static void
strs_add(struct strs *l, const char *x)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], x) == 0)
			return;
	l->v = xrealloc(l->v, (l->n + 2) * sizeof(char *));
	l->v[l->n++] = xstrdup(x);
	l->v[l->n] = NULL;
}

static void
strs_free(struct strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* A PostgreSQL text[] literal of l: {"a","b"}. */
static char *
array_literal(const struct strs *l)
{
	struct buf b = { 0 };

	for (size_t i = 0; i < l->n; i++)
		buf_array_add(&b, l->v[i]);
	buf_append(&b, l->n ? "}" : "{}", l->n ? 1 : 2);
	return b.data;
}

static PGconn *
open_db(struct worker *w)
{
	char appname[96];

	snprintf(appname, sizeof(appname), "oncebridge/%s sessions", w->broker->name);
	return db_open(w->settings, appname);
}

/* Run sql with params; true when it succeeded (a warning names what). */
static bool
run(PGconn *conn, const char *sql, int n, const char *const *params, const char *what, PGresult **out)
{
	PGresult *res = rt_exec_params(conn, sql, n, NULL, params, NULL, NULL, 0);
	bool ok = db_ok_or_warn(conn, res, what);

	if (ok && out)
		*out = res;
	else
		PQclear(res);
	return ok;
}

int
mqtt_retire_record(struct worker *w, const struct mqtt_session *own)
{
	struct strs subs = { 0 };
	PGconn *conn = open_db(w);
	char *filters;
	const char *params[4];
	bool ok;

	if (conn == NULL)
		return -1;
	for (size_t i = 0; i < own->n_filters; i++)
		strs_add(&subs, own->subs[i]);
	filters = array_literal(&subs);
	params[0] = w->broker->name;
	params[1] = mqtt_broker_cfg(w->broker)->client_id;
	params[2] = own->client_id;
	params[3] = filters;
	ok = run(conn,
	    "INSERT INTO oncebridge.mqtt_sessions AS s (broker, family, client_id, filters) "
	    "VALUES ($1, $2, $3, $4::text[]) ON CONFLICT (broker, client_id) DO UPDATE "
	    "SET family = excluded.family, seen_at = now(), "
	    "filters = ARRAY(SELECT DISTINCT unnest(s.filters || excluded.filters))",
	    4, params, "record the MQTT session", NULL);
	free(filters);
	strs_free(&subs);
	PQfinish(conn);
	return ok ? 0 : -1;
}

/* The sessions to retire: recorded ones of this broker and client_id that
 * no worker of the configuration uses (ids[i], with their recorded filters
 * added to filters), and the bare client_id when workers > 1. */
static bool
old_sessions(struct worker *w, PGconn *conn, struct strs *ids, struct strs *filters)
{
	const struct broker *b = w->broker;
	struct strs current = { 0 };
	PGresult *res = NULL;
	const char *params[3];
	char *in_use;
	bool ok;

	for (int i = 0; i < mqtt_workers(b); i++) {
		char *id = mqtt_worker_client_id(b, i);

		strs_add(&current, id);
		free(id);
	}
	in_use = array_literal(&current);
	params[0] = b->name;
	params[1] = mqtt_broker_cfg(b)->client_id;
	params[2] = in_use;
	ok = run(conn,
	    "SELECT client_id, array_to_string(filters, chr(1)) FROM oncebridge.mqtt_sessions "
	    "WHERE broker = $1 AND family = $2 AND client_id <> ALL ($3::text[]) ORDER BY client_id",
	    3, params, "read the MQTT sessions in use", &res);
	for (int r = 0; ok && r < PQntuples(res); r++) {
		char *list = xstrdup(PQgetvalue(res, r, 1)), *save = NULL;

		strs_add(ids, PQgetvalue(res, r, 0));
		for (char *f = strtok_r(list, "\001", &save); f; f = strtok_r(NULL, "\001", &save))
			strs_add(filters, f);
		free(list);
	}
	PQclear(res);
	if (ok && mqtt_workers(b) > 1)
		strs_add(ids, mqtt_broker_cfg(b)->client_id);
	free(in_use);
	strs_free(&current);
	return ok;
}

/* Wait until s is connected (ST_READY); false when it failed or the
 * worker stops. */
static bool
wait_ready(struct worker *w, struct mqtt_session *s)
{
	int64_t deadline = now_ms() + w->broker->connect_timeout_ms + ANSWER_WAIT_MS;

	while (!*w->stop && now_ms() < deadline) {
		enum conn_state st = mqtt_session_state(s);

		if (st == ST_READY)
			return true;
		if (st == ST_LOST)
			return false;
		worker_tick(w);
		sleep_ms_unless(POLL_MS, w->stop);
	}
	return false;
}

/* Let what the session holds flow through the core until nothing came for
 * QUIET_MS, or for at most limit_ms (0: no limit); false when the
 * connection was lost or the worker stops. */
static bool
wait_quiet(struct worker *w, struct mqtt_session *s, int64_t limit_ms)
{
	int64_t deadline = now_ms() + limit_ms;

	while (!*w->stop) {
		if (mqtt_session_state(s) != ST_READY)
			return false;
		if (mqtt_session_quiet(s, QUIET_MS) || (limit_ms > 0 && now_ms() >= deadline))
			return true;
		worker_tick(w);
		sleep_ms_unless(POLL_MS, w->stop);
	}
	return false;
}

static void
set_unsubscribed(struct mqtt_session *s, int v)
{
	pthread_mutex_lock(&s->mu);
	s->unsubscribed = v;
	pthread_mutex_unlock(&s->mu);
}

static int
get_unsubscribed(struct mqtt_session *s)
{
	int v;

	pthread_mutex_lock(&s->mu);
	v = s->unsubscribed;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static void
on_unsubscribe(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	set_unsubscribed(ctx, 1);
}

static void
on_unsubscribe5(void *ctx, MQTTAsync_successData5 *r)
{
	(void)r;
	set_unsubscribed(ctx, 1);
}

static void
on_unsubscribe_failure(void *ctx, MQTTAsync_failureData *r)
{
	(void)r;
	set_unsubscribed(ctx, -1);
}

static void
on_unsubscribe_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	set_unsubscribed(ctx, -1);
}

/* UNSUBSCRIBE filters and wait for the UNSUBACK (a filter the session did
 * not have is fine). */
static bool
unsubscribe(struct worker *w, struct mqtt_session *s, const struct strs *filters)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int64_t deadline = now_ms() + ANSWER_WAIT_MS;

	opts.context = s;
	if (mqtt_broker_cfg(w->broker)->mqtt_version == 5) {
		opts.onSuccess5 = on_unsubscribe5;
		opts.onFailure5 = on_unsubscribe_failure5;
	} else {
		opts.onSuccess = on_unsubscribe;
		opts.onFailure = on_unsubscribe_failure;
	}
	set_unsubscribed(s, 0);
	if (MQTTAsync_unsubscribeMany(s->client, (int)filters->n, filters->v, &opts) != MQTTASYNC_SUCCESS)
		return false;
	while (!*w->stop && now_ms() < deadline && get_unsubscribed(s) == 0) {
		worker_tick(w);
		sleep_ms_unless(POLL_MS, w->stop);
	}
	return get_unsubscribed(s) == 1;
}

/* Connect as client_id in mode; NULL when that failed. */
static struct mqtt_session *
connect_as(struct worker *w, const char *client_id, enum session_mode mode)
{
	struct mqtt_session *s = mqtt_session_new(w, client_id, mode);

	if (s == NULL)
		return NULL;
	while (!*w->stop && mqtt_session_connect(s) > 0)
		sleep_ms_unless(POLL_MS, w->stop);
	if (!wait_ready(w, s)) {
		mqtt_session_close(s);
		return NULL;
	}
	return s;
}

/* Steps 1-3 of the file's comment for one client ID: 1 when it was
 * retired, 0 when the broker had no such session (the connect made one,
 * which is ended), -1 when that failed after the session was found, -2
 * when there was nothing at stake: no connect went through (the broker
 * or the worker is busy: the worker's own session tells of the broker's
 * trouble), or the session was empty and only ending it failed. */
static int
retire_one(struct worker *w, const char *client_id, const struct strs *filters)
{
	struct mqtt_session *s = connect_as(w, client_id, SESSION_RESUME);
	bool ok, present;

	if (s == NULL)
		return -2;
	present = mqtt_session_present(s);
	ok = !present || (wait_quiet(w, s, FIRST_DRAIN_MS) && unsubscribe(w, s, filters) && wait_quiet(w, s, 0));
	mqtt_session_close(s);
	if (!ok)
		return -1;
	s = connect_as(w, client_id, SESSION_CLEAN);
	if (s == NULL)
		return present ? -1 : -2; /* nothing was held in it: no news */
	mqtt_session_close(s);
	return present ? 1 : 0;
}

/* The filters an old session may hold: recorded ones, and the routes' own
 * both plain and as this configuration shares them. */
static void
route_filters(const struct mqtt_session *own, struct strs *filters)
{
	for (size_t i = 0; i < own->n_filters; i++) {
		strs_add(filters, own->filters[i]);
		strs_add(filters, own->subs[i]);
	}
}

/* Forget a retired session, and its worker's redelivery horizon
 * (bridge/retention/horizon.c, worker "mqtt:CLIENT_ID"): the broker can
 * redeliver nothing to an ended session, and the row of a worker that
 * never comes back would hold back pruning (for good with MQTT 3.1.1). */
static bool
forget(struct worker *w, const char *client_id)
{
	const char *params[2] = { w->broker->name, client_id };
	PGconn *conn = open_db(w);
	bool ok;

	if (conn == NULL)
		return false;
	ok = run(conn,
	    "WITH h AS (DELETE FROM oncebridge.consumer_horizons WHERE kind = 'mqtt' AND worker = 'mqtt:' || $2) "
	    "DELETE FROM oncebridge.mqtt_sessions WHERE broker = $1 AND client_id = $2", 2, params,
	    "forget the retired MQTT session", NULL);
	PQfinish(conn);
	return ok;
}

int
mqtt_retire_old(struct worker *w, const struct mqtt_session *own)
{
	struct strs ids = { 0 }, filters = { 0 };
	PGconn *conn = open_db(w); /* closed before the retiring: that may take long */
	int failed = 0;
	bool ok;

	if (conn == NULL)
		return -1;
	ok = old_sessions(w, conn, &ids, &filters);
	PQfinish(conn);
	if (!ok)
		return -1;
	route_filters(own, &filters);
	for (size_t i = 0; i < ids.n && !*w->stop; i++) {
		int rc;

		log_debug("retiring the MQTT session \"%s\", if the broker has it", ids.v[i]);
		rc = retire_one(w, ids.v[i], &filters);
		if (rc == -2) {
			log_debug("could not retire the MQTT session \"%s\" (it held nothing, or could not be reached); "
			    "trying again after the next connect", ids.v[i]);
			failed++;
			continue;
		}
		if (rc < 0) {
			log_warn("could not retire the MQTT session \"%s\", which the configuration no longer uses; "
			    "trying again after the next connect", ids.v[i]);
			failed++;
			continue;
		}
		if (!forget(w, ids.v[i]))
			failed++;
		if (rc > 0)
			log_info("retired the MQTT session \"%s\", which the configuration no longer uses: what it held "
			    "is applied, its subscriptions are gone and the broker ended it", ids.v[i]);
	}
	strs_free(&ids);
	strs_free(&filters);
	return failed || *w->stop ? -1 : 0;
}
