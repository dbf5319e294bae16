/* SPDX-License-Identifier: Apache-2.0 */
/* The endpoints of one AMQP broker: "url" names the first node, and each
 * entry of "hosts" one more node of the same cluster (host, host:port or
 * [IPv6 address]:port; the port defaults to the url's). Everything else a
 * connection needs (TLS, vhost, user, password, heartbeat, timeouts) is
 * the url's and the broker's, the same for every node. Opening goes once
 * around the list from the current endpoint, so a dead node costs one
 * failed connect; the caller backs off only when no node answered. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_endpoints.h"
#include "bridge/common/log.h"
#include "bridge/common/util.h"

/* Split spec into host and port (0 when absent). Returns NULL, or why
 * spec is not a host. host is allocated when the result is NULL and host
 * is not NULL. */
static const char *
parse_host(const char *spec, char **host, int *port)
{
	const char *h = spec, *colon, *end;
	size_t hlen;

	*port = 0;
	if (spec[0] == '\0')
		return "an empty host";
	if (strstr(spec, "://") || strpbrk(spec, "/@?#"))
		return "give host or host:port; the scheme, user and vhost come from key \"url\"";
	if (spec[0] == '[') {
		end = strchr(spec, ']');
		if (end == NULL || end == spec + 1)
			return "an IPv6 address in brackets needs a closing \"]\"";
		h = spec + 1;
		hlen = (size_t)(end - h);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return "expected \":port\" after \"]\"";
	} else {
		colon = strchr(spec, ':');
		if (colon && strchr(colon + 1, ':'))
			return "put an IPv6 address in brackets: [address]:port";
		hlen = colon ? (size_t)(colon - spec) : strlen(spec);
		if (hlen == 0)
			return "an empty host";
	}
	if (colon) {
		char *stop;
		long p = strtol(colon + 1, &stop, 10);

		if (colon[1] == '\0' || *stop != '\0' || p < 1 || p > 65535)
			return "the port must be a number from 1 to 65535";
		*port = (int)p;
	}
	if (host)
		*host = xstrndup(h, hlen);
	return NULL;
}

const char *
amqpc_host_error(const char *spec)
{
	int port;

	return parse_host(spec, NULL, &port);
}

const char *
amqpc_endpoints_init(struct amqpc_endpoints *e, const struct broker *b)
{
	const struct amqpc_broker_cfg *c = amqpc_broker_cfg(b);
	const char *err;

	memset(e, 0, sizeof(*e));
	e->targets = xcalloc(c->n_hosts + 1, sizeof(struct amqpc_target));
	err = amqpc_target_init(&e->targets[0], b);
	if (err)
		goto fail;
	e->n = 1;
	for (size_t i = 0; i < c->n_hosts; i++) {
		struct amqpc_target *t = &e->targets[e->n];
		char *host = NULL;
		int port;

		err = parse_host(c->hosts[i], &host, &port);
		if (err)
			goto fail;
		*t = e->targets[0];
		t->host = host;
		t->port = port ? port : e->targets[0].port;
		t->vhost = xstrdup(e->targets[0].vhost);
		t->user = xstrdup(e->targets[0].user);
		e->n++;
	}
	return NULL;
fail:
	amqpc_endpoints_free(e);
	return err;
}

void
amqpc_endpoints_free(struct amqpc_endpoints *e)
{
	for (size_t i = 0; i < e->n; i++)
		amqpc_target_free(&e->targets[i]);
	free(e->targets);
	memset(e, 0, sizeof(*e));
}

amqp_connection_state_t
amqpc_endpoints_open(struct amqpc_endpoints *e)
{
	for (size_t i = 0; i < e->n; i++) {
		amqp_connection_state_t conn = amqpc_open(&e->targets[e->cur % e->n]);

		e->cur %= e->n;
		if (conn) {
			if (e->n > 1)
				snprintf(e->node, sizeof(e->node), " (node %zu of %zu)", e->cur + 1, e->n);
			return conn;
		}
		amqpc_endpoints_next(e);
		if (i + 1 < e->n)
			log_info("trying the next node, %s:%d", e->targets[e->cur].host, e->targets[e->cur].port);
	}
	return NULL;
}

void
amqpc_endpoints_next(struct amqpc_endpoints *e)
{
	if (e->n > 0)
		e->cur = (e->cur + 1) % e->n;
}

const struct amqpc_target *
amqpc_endpoints_current(const struct amqpc_endpoints *e)
{
	return &e->targets[e->cur % e->n];
}

const char *
amqpc_endpoints_node(const struct amqpc_endpoints *e)
{
	return e->node;
}
