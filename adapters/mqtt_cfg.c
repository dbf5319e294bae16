/* SPDX-License-Identifier: Apache-2.0 */
/* The MQTT adapter's configuration as the core sees it through the
 * adapter hooks: "workers" processes sharing the subscriptions, one
 * message at a time in each, and a redelivery profile. The session is the
 * client ID's, wherever it runs; the broker resends a lost connection's
 * unacked messages first, so a new connection is ready at its first
 * message that is not a resend (or an idle second). The grace is twice
 * the keepalive, plus a second; the broker keeps the session for
 * session_expiry (MQTT 5), forever (3.1.1) or not at all (clean session). */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_conn.h"
#include "adapters/mqtt_topic.h"
#include "bridge/config/tls.h"
#include "bridge/common/util.h"

#define B(f) offsetof(struct mqtt_broker_cfg, f)
#define R(f) offsetof(struct mqtt_route_cfg, f)

const struct cfg_key mqtt_broker_keys[] = {
	{ "client_id", CFG_STRING, B(client_id), true, NULL, 0, 0, 0, 0, NULL,
	    "MQTT: fixed client ID of the persistent session; worker N of several adds \"-N\"" },
	{ "failover_urls", CFG_STRINGS, B(failover_urls), false, NULL, 0, 0, 0, B(n_failover_urls), NULL,
	    "MQTT: more servers of the same broker cluster, tried in order after url (all with url's scheme); "
	    "only for brokers that share sessions between nodes" },
	{ "keepalive", CFG_INT, B(keepalive), false, NULL, 30, 1, 65535, 0, NULL,
	    "MQTT: keepalive in seconds; a transaction should take well under it" },
	{ "mqtt_version", CFG_INT, B(mqtt_version), false, NULL, 5, 4, 5, 0, NULL,
	    "MQTT: protocol version, 4 (3.1.1) or 5" },
	{ "clean_session", CFG_BOOL, B(clean_session), false, NULL, 0, 0, 0, 0, NULL,
	    "MQTT: start a new session on every connect (loses messages; keep false)" },
	{ "session_expiry", CFG_INT, B(session_expiry), false, NULL, 86400, 0, 4294967295LL, 0, NULL,
	    "MQTT 5: seconds the broker keeps the session (and queues messages) while oncebridge is away" },
	{ "qos", CFG_INT, B(qos), false, NULL, 1, 0, 2, 0, NULL,
	    "MQTT: subscription QoS; 1 is the only one that gives the guarantee" },
	{ "workers", CFG_INT, B(workers), false, NULL, 4, 1, 64, 0, NULL,
	    "MQTT: worker processes (sessions CLIENT_ID-N) sharing each route's topic as \"$share/CLIENT_ID/filter\"; "
	    "1: one session with plain subscriptions, strict order per topic" },
	{ "max_inflight_bytes", CFG_INT, B(max_inflight_bytes), false, NULL, 33554432, 1024, 1099511627776LL, 0, NULL,
	    "MQTT 5: payload bytes the broker may send a worker ahead (Receive Maximum: this over limits.max_payload)" },
	CFG_END
};

const struct cfg_key mqtt_route_keys[] = {
	{ "topic", CFG_STRING, R(topic), false, NULL, 0, 0, 0, 0, NULL,
	    "MQTT: topic filter (+ one level, # the rest), or \"$share/GROUP/filter\" (required for mqtt)" },
	CFG_END
};

/* A client ID that looks generated per run (a UUID or a long random-looking
 * hex run) gets a new session on every start and loses what the old one
 * held. */
static bool
looks_random(const char *id)
{
	size_t run = 0, best = 0;
	bool digit = false, alpha = false, best_mixed = false;

	for (const char *p = id;; p++) {
		if (*p && isxdigit((unsigned char)*p)) {
			run++;
			digit |= isdigit((unsigned char)*p) != 0;
			alpha |= isalpha((unsigned char)*p) != 0;
			continue;
		}
		if (run > best) {
			best = run;
			best_mixed = digit && alpha;
		}
		if (*p == '\0')
			break;
		run = 0;
		digit = alpha = false;
	}
	return best >= 12 && best_mixed;
}

/* One server's URL (key "url", or element i of "failover_urls" when uri0
 * is not NULL): valid, with the scheme of the first (paho form uri0), and
 * with a certificate paho can check. Returns paho's form of it (malloc'd)
 * or NULL. Never prints the URL: a mistaken one may hold a password. */
static char *
check_url(const struct broker *b, const char *url, const char *uri0, size_t i, const config_setting_t *group,
    const char *file, struct diag *d)
{
	char *uri = NULL, *where = uri0 ? xasprintf("\"failover_urls\" (element %zu)", i + 1) : xstrdup("\"url\"");
	bool tls = false;
	const char *err = mqtt_url_parse(url, &uri, &tls);
	int line = cfg_key_line(group, uri0 ? "failover_urls" : "url");

	if (err)
		diag_error(d, file, line, "invalid value of key %s in group \"broker\": %s", where, err);
	else if (uri0 && !mqtt_uri_same_scheme(uri0, uri))
		diag_error(d, file, line,
		    "invalid value of key %s in group \"broker\": every server of a broker takes the scheme of key "
		    "\"url\" (paho-mqtt-c 1.3 keeps TLS and WebSockets on from one server to the next)", where);
	else if (tls && b->tls_verify_peer && b->tls_verify_hostname && mqtt_uri_ipv6(uri))
		diag_error(d, file, line,
		    "invalid value of key %s in group \"broker\": paho-mqtt-c 1.3 cannot check a certificate against "
		    "an IPv6 address; use a host name the certificate names", where);
	free(where);
	return uri;
}

/* "url" and "failover_urls"; *tls tells whether they speak TLS. Returns
 * false when one is invalid. */
static bool
check_urls(const struct broker *b, const config_setting_t *group, const char *file, struct diag *d, bool *tls)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	int errors = d->errors;
	char *uri0 = check_url(b, b->url, NULL, 0, group, file, d);

	if (uri0 == NULL)
		return false;
	for (size_t i = 0; i < c->n_failover_urls; i++)
		free(check_url(b, c->failover_urls[i], uri0, i, group, file, d));
	mqtt_url_parse(b->url, NULL, tls);
	free(uri0);
	return d->errors == errors;
}

void
mqtt_check(const struct broker *b, const config_setting_t *group, const config_setting_t *routes,
    const char *file, struct diag *d)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	bool tls = false;

	if (check_urls(b, group, file, d, &tls))
		tls_check(b, tls, group, file, d);
	if (c->client_id && c->client_id[0] == '\0')
		diag_error(d, file, cfg_key_line(group, "client_id"),
		    "key \"client_id\" is empty: a persistent session needs a fixed client ID");
	else if (c->client_id && looks_random(c->client_id))
		diag_warn(d, file, cfg_key_line(group, "client_id"),
		    "client ID \"%s\" looks generated: the persistent session is only resumed when every start "
		    "uses the same client ID", c->client_id);
	if (c->qos == 0)
		diag_warn(d, file, cfg_key_line(group, "qos"),
		    "qos 0: the broker does not redeliver, so messages are lost when oncebridge or the connection fails");
	if (c->qos == 2)
		diag_error(d, file, cfg_key_line(group, "qos"),
		    "qos 2 is not supported: paho-mqtt-c 1.3 loses QoS 2 messages in some cases; use qos 1");
	if (c->clean_session)
		diag_warn(d, file, cfg_key_line(group, "clean_session"),
		    "clean_session is true: messages published while oncebridge is disconnected are lost");
	if (!c->clean_session && c->mqtt_version == 5 && c->session_expiry == 0)
		diag_warn(d, file, cfg_key_line(group, "session_expiry"),
		    "session_expiry is 0: with MQTT 5 the session ends at every disconnect and messages are lost");
	for (size_t i = 0; i < b->n_routes; i++) {
		const struct route *r = &b->routes[i];
		const char *topic = mqtt_route_cfg(r)->topic;
		const config_setting_t *g = config_setting_get_elem(routes, (unsigned)i);

		if (topic == NULL) {
			diag_error(d, file, r->line, "missing required key \"topic\" in route \"%s\"", r->name);
			continue;
		}
		if (mqtt_filter_error(topic))
			diag_error(d, file, cfg_key_line(g, "topic"), "invalid value of key \"topic\" in route \"%s\": %s",
			    r->name, mqtt_filter_error(topic));
		if (mqtt_workers(b) > 1 && r->format_name && strcmp(r->format_name, "sparkplug_b") == 0)
			diag_warn(d, file, cfg_key_line(g, "format"),
			    "route \"%s\" reads Sparkplug B with %d workers: a data message may be applied before the birth "
			    "that defines its aliases and be dead-lettered; set workers = 1 to keep each edge node's order",
			    r->name, mqtt_workers(b));
	}
}

void
mqtt_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);

	if (c->mqtt_version == 5 && !c->clean_session && c->session_expiry > window_s)
		diag_warn(d, main_file, 0,
		    "retention.dedupe_window_s (%lld s) is shorter than session_expiry (%lld s) of broker \"%s\" "
		    "in \"%s\": a message the broker holds longer than the window is applied again",
		    (long long)window_s, (long long)c->session_expiry, b->name, b->file);
}

int
mqtt_workers(const struct broker *b)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);

	return c->workers > 1 ? (int)c->workers : 1;
}

char *
mqtt_worker_client_id(const struct broker *b, int index)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);

	return c->workers > 1 ? xasprintf("%s-%d", c->client_id, index) : xstrdup(c->client_id);
}

char *
mqtt_subscription(const struct broker *b, const char *topic)
{
	char *group, *sub;

	if (mqtt_workers(b) <= 1 || strncmp(topic, "$share/", 7) == 0)
		return xstrdup(topic);
	group = xstrdup(mqtt_broker_cfg(b)->client_id);
	for (char *p = group; *p != '\0'; p++)
		if (*p == '/' || *p == '+' || *p == '#')
			*p = '_';
	sub = xasprintf("$share/%s/%s", group, topic);
	free(group);
	return sub;
}

/* One message at a time (inside messageArrived), on each route, and one
 * more. */
int64_t
mqtt_in_flight(const struct broker *b)
{
	return (int64_t)(b->n_routes > 0 ? b->n_routes : 1) + 1;
}

void
mqtt_redelivery(const struct broker *b, int index, struct redelivery *out)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);

	out->worker = c->workers > 1 ? xasprintf("mqtt:%s-%d", c->client_id, index) : xasprintf("mqtt:%s", c->client_id);
	out->grace_ms = 2 * c->keepalive * 1000 + 1000;
	out->ready_after_ms = 0;
	out->ready_deliveries = -1;
	if (c->clean_session)
		out->hold_s = 0;
	else if (c->mqtt_version == 5)
		out->hold_s = c->session_expiry;
	else
		out->hold_s = -1;
}
