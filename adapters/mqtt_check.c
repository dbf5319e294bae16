/* SPDX-License-Identifier: Apache-2.0 */
/* "oncebridge check" for an MQTT broker (the adapter's check_live):
 * connect with each worker's client ID, clean session off and the
 * configured session expiry, exactly as the daemon would, and report
 * whether the broker kept a session. Connecting takes the session over
 * from a running oncebridge with that client ID (the broker disconnects
 * it; it reconnects by itself), and a kept session may hand this probe the
 * messages it holds. paho writes a PUBACK only after messageArrived
 * returns, so the callback never returns: the probe runs in a child
 * process that ends with _exit, which closes the socket without acking,
 * and the broker redelivers those messages to the session's next
 * connection. A session that was not there before is removed again
 * (expiry 0, or a clean connect with MQTT 3.1.1), so that the check
 * leaves the broker as it found it. Client IDs shared by two broker files
 * on one server are reported too, and an MQTT 5 broker that says it has
 * no shared subscriptions while "workers" needs them. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_conn.h"
#include "bridge/config/report.h"
#include "bridge/common/util.h"

#define PROBE_EXTRA_MS 5000 /* beyond connect_timeout_ms, before the child is killed */

/* What the child reports through its pipe. */
struct probe_result {
	int connected;          /* 1 connected, 0 failed */
	int session_present;
	long long expiry_granted; /* MQTT 5: the broker's session expiry, -1 when it kept ours */
	int messages_held;      /* the broker began to resend held messages (left unacked) */
	int shared_available;   /* MQTT 5 CONNACK "Shared Subscription Available": 0, 1; -1 not said */
	char reason[256];       /* why the connect failed */
};

struct probe_ctx {
	volatile int done;      /* 1 connected, -1 failed */
	volatile int got_message;
	struct probe_result res;
};

/* Never returns: returning would let paho ack the message. */
static int
on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct probe_ctx *p = ctx;

	(void)topic;
	(void)topic_len;
	(void)m;
	p->got_message = 1;
	for (;;)
		pause();
	return 0;
}

static void
on_connected(struct probe_ctx *p, int present, const MQTTProperties *props)
{
	p->res.session_present = present;
	p->res.expiry_granted = -1;
	if (props && MQTTProperties_hasProperty((MQTTProperties *)props, MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL))
		p->res.expiry_granted = MQTTProperties_getNumericValue((MQTTProperties *)props,
		    MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL);
	p->res.shared_available = -1;
	if (props && MQTTProperties_hasProperty((MQTTProperties *)props, MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE))
		p->res.shared_available = MQTTProperties_getNumericValue((MQTTProperties *)props,
		    MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE) != 0;
	p->done = 1;
}

static void
on_connect(void *ctx, MQTTAsync_successData *r)
{
	on_connected(ctx, r->alt.connect.sessionPresent, NULL);
}

static void
on_connect5(void *ctx, MQTTAsync_successData5 *r)
{
	on_connected(ctx, r->alt.connect.sessionPresent, &r->properties);
}

static void
on_failure(void *ctx, MQTTAsync_failureData *r)
{
	struct probe_ctx *p = ctx;

	snprintf(p->res.reason, sizeof(p->res.reason), "%s",
	    r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
	p->done = -1;
}

static void
on_failure5(void *ctx, MQTTAsync_failureData5 *r)
{
	struct probe_ctx *p = ctx;

	snprintf(p->res.reason, sizeof(p->res.reason), "%s", r == NULL ? "no reason given"
	    : r->message ? r->message : MQTTReasonCode_toString(r->reasonCode));
	p->done = -1;
}

static void
wait_done(struct probe_ctx *p, int64_t timeout_ms)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	for (int64_t waited = 0; !p->done && waited < timeout_ms; waited += 10)
		nanosleep(&ts, NULL);
}

/* Connect with client ID id (clean false, or true to remove a session). */
static int
probe_connect(const struct broker *b, MQTTAsync client, struct probe_ctx *p, bool clean)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_connectOptions opts5 = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_connectOptions *o = c->mqtt_version == 5 ? &opts5 : &opts;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty expiry = { .identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL };
	bool tls = false, reported = false;
	int rc;

	mqtt_url_parse(b->url, NULL, &tls);
	mqtt_tls_options(b, &ssl, &reported);
	o->keepAliveInterval = (int)c->keepalive;
	o->connectTimeout = (int)((b->connect_timeout_ms + 999) / 1000);
	o->context = p;
	o->username = b->user;
	o->password = b->password;
	o->ssl = tls ? &ssl : NULL;
	if (c->mqtt_version == 5) {
		o->cleanstart = clean;
		expiry.value.integer4 = (unsigned int)c->session_expiry;
		MQTTProperties_add(&props, &expiry);
		o->connectProperties = &props;
		o->onSuccess5 = on_connect5;
		o->onFailure5 = on_failure5;
	} else {
		o->cleansession = clean;
		o->onSuccess = on_connect;
		o->onFailure = on_failure;
	}
	p->done = 0;
	rc = MQTTAsync_connect(client, o);
	if (rc == MQTTASYNC_SUCCESS)
		wait_done(p, b->connect_timeout_ms + 1000);
	else
		snprintf(p->res.reason, sizeof(p->res.reason), "%s", MQTTAsync_strerror(rc));
	MQTTProperties_free(&props);
	return p->done == 1 ? 0 : -1;
}

/* Remove the session the probe made: expiry 0 on disconnect (MQTT 5), a
 * clean connect (3.1.1). */
static void
probe_forget(const struct broker *b, MQTTAsync client, struct probe_ctx *p)
{
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
	MQTTProperty zero = { .identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL };

	if (mqtt_broker_cfg(b)->mqtt_version == 5) {
		zero.value.integer4 = 0;
		MQTTProperties_add(&d.properties, &zero);
		MQTTAsync_disconnect(client, &d);
		MQTTProperties_free(&d.properties);
	} else {
		MQTTAsync_disconnectOptions d4 = MQTTAsync_disconnectOptions_initializer;

		MQTTAsync_disconnect(client, &d4);
		usleep(200 * 1000);
		if (probe_connect(b, client, p, true) == 0)
			MQTTAsync_disconnect(client, &d4);
	}
	usleep(200 * 1000);
}

/* The child: connect, report, and end without acking anything. */
static void __attribute__((noreturn))
probe_child(const struct broker *b, const char *uri, const char *id, int fd)
{
	static struct probe_ctx p;
	MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
	MQTTAsync client;
	int version = mqtt_broker_cfg(b)->mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
	ssize_t w;

	copts.MQTTVersion = version;
	if (MQTTAsync_createWithOptions(&client, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts) !=
	    MQTTASYNC_SUCCESS || MQTTAsync_setCallbacks(client, &p, NULL, on_message, NULL) != MQTTASYNC_SUCCESS) {
		snprintf(p.res.reason, sizeof(p.res.reason), "could not create an MQTT client");
		w = write(fd, &p.res, sizeof(p.res));
		_exit(w == (ssize_t)sizeof(p.res) ? 0 : 1);
	}
	p.res.connected = probe_connect(b, client, &p, false) == 0;
	if (p.res.connected && p.res.session_present)
		usleep(300 * 1000); /* held messages come at once: count them as seen */
	p.res.messages_held = p.got_message;
	w = write(fd, &p.res, sizeof(p.res));
	if (p.res.connected && !p.res.session_present && !p.got_message)
		probe_forget(b, client, &p);
	_exit(w == (ssize_t)sizeof(p.res) ? 0 : 1); /* no MQTTAsync_destroy: it could ack */
}

/* Run the probe of id in a child; false when it gave no answer. */
static bool
probe_run(const struct broker *b, const char *uri, const char *id, struct probe_result *res)
{
	int fds[2], status;
	struct pollfd pfd;
	pid_t pid;
	bool ok = false;

	memset(res, 0, sizeof(*res));
	if (pipe(fds) < 0)
		return false;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		probe_child(b, uri, id, fds[1]);
	}
	close(fds[1]);
	if (pid > 0) {
		pfd.fd = fds[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)(b->connect_timeout_ms + PROBE_EXTRA_MS)) == 1)
			ok = read(fds[0], res, sizeof(*res)) == (ssize_t)sizeof(*res);
		if (!ok)
			kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	close(fds[0]);
	return ok;
}

/* The client ID of worker index of b, as adapters/mqtt.c names it. */
static char *
worker_client_id(const struct broker *b, int index)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);

	return c->workers > 1 ? xasprintf("%s-%d", c->client_id, index) : xstrdup(c->client_id);
}

static bool
shares_client_id(const struct broker *a, const struct broker *b)
{
	bool shared = false;

	for (int i = 0; i < mqtt_workers(a) && !shared; i++) {
		char *x = worker_client_id(a, i);

		for (int k = 0; k < mqtt_workers(b) && !shared; k++) {
			char *y = worker_client_id(b, k);

			shared = strcmp(x, y) == 0;
			free(y);
		}
		free(x);
	}
	return shared;
}

/* A client ID that another broker file uses on the same server. */
static void
check_duplicates(const struct settings *s, const struct broker *b, const char *uri, struct report *r)
{
	for (size_t i = 0; i < s->n_brokers; i++) {
		const struct broker *o = &s->brokers[i];
		char *ouri = NULL;

		if (o == b || o->adapter != b->adapter || mqtt_url_parse(o->url, &ouri, NULL) != NULL)
			continue;
		if (strcmp(uri, ouri) == 0 && shares_client_id(b, o)) {
			char *subj = report_subject("%s key \"client_id\" (broker \"%s\")", b->file, b->name);

			report_add(r, CHECK_ERROR, subj, "give every broker file its own client_id",
			    "client ID \"%s\" is also used by broker \"%s\" in \"%s\" on the same server: the two "
			    "connections take the session from each other and split its messages", mqtt_broker_cfg(b)->client_id,
			    o->name, o->file);
			free(subj);
		}
		free(ouri);
	}
}

static void
report_probe(const struct settings *s, const struct broker *b, const char *id, const struct probe_result *p,
    struct report *r)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	char *subj = report_subject("session \"%s\" (%s key \"client_id\")", id, b->file);

	if (!p->connected) {
		report_add(r, CHECK_ERROR, subj, "check url, user, password and TLS, and that the broker runs",
		    "could not connect to broker \"%s\": %s", b->name, p->reason);
		goto out;
	}
	report_add(r, CHECK_OK, subj, NULL, "%s%s (connecting took the session over: a running oncebridge with this "
	    "client ID was disconnected and reconnects; nothing was acked)",
	    p->session_present ? "session present: the broker kept oncebridge's session" :
	    "no session yet: the first start makes it, and the broker keeps messages for it from then on",
	    p->messages_held ? ", with messages held for it" : "");
	if (p->shared_available == 0 && mqtt_workers(b) > 1) {
		char *ksubj = report_subject("%s key \"workers\" (broker \"%s\")", b->file, b->name);

		report_add(r, CHECK_ERROR, ksubj, "set workers = 1 (one session, plain subscriptions, strict order per topic)",
		    "the broker does not support shared subscriptions (CONNACK \"Shared Subscription Available\" 0), "
		    "which workers = %lld needs", (long long)c->workers);
		free(ksubj);
	}
	if (c->mqtt_version == 5 && !c->clean_session && p->expiry_granted >= 0 && p->expiry_granted < c->session_expiry)
		report_add(r, CHECK_WARNING, subj, "raise the broker's limit on session expiry, or lower session_expiry",
		    "the broker keeps the session only %lld s, not session_expiry (%lld s): an outage longer than that "
		    "loses the messages it held", p->expiry_granted, (long long)c->session_expiry);
	if (c->mqtt_version == 5 && !c->clean_session && s->dedupe_window_s > 0) {
		long long horizon = p->expiry_granted >= 0 ? p->expiry_granted : (long long)c->session_expiry;

		if (horizon <= s->dedupe_window_s)
			report_add(r, CHECK_OK, subj, NULL, "redelivery horizon %lld s (session expiry) is within "
			    "retention.dedupe_window_s (%lld s)", horizon, (long long)s->dedupe_window_s);
	}
out:
	free(subj);
}

void
mqtt_check_live(const struct settings *s, const struct broker *b, struct report *r)
{
	char *uri = NULL;
	const char *err = mqtt_url_parse(b->url, &uri, NULL);

	if (err) {
		char *subj = report_subject("broker \"%s\" (%s key \"url\")", b->name, b->file);

		report_add(r, CHECK_ERROR, subj, NULL, "invalid url: %s", err);
		free(subj);
		return;
	}
	check_duplicates(s, b, uri, r);
	for (int i = 0; i < mqtt_workers(b); i++) {
		char *id = worker_client_id(b, i);
		struct probe_result p;

		if (!probe_run(b, uri, id, &p)) {
			memset(&p, 0, sizeof(p));
			snprintf(p.reason, sizeof(p.reason), "no answer within %lld ms",
			    (long long)(b->connect_timeout_ms + PROBE_EXTRA_MS));
		}
		report_probe(s, b, id, &p, r);
		free(id);
	}
	free(uri);
}
