/* SPDX-License-Identifier: Apache-2.0 */
/* AMQP connection setup shared by the consumer and the outbox publisher:
 * the URL (never with a password in it), TLS for amqps:// (amqp_tls.c),
 * login with the password from its file, heartbeats, timeouts (a write
 * deadline of two heartbeats, too) and one channel; and the wording of the
 * broker's errors in our logs. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "adapters/amqp_cfg.h"
#include "adapters/amqp_conn.h"
#include "adapters/amqp_tls.h"
#include "bridge/common/log.h"
#include "bridge/common/repeat.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

static const char *
parse_url(const char *url, struct amqpc_target *t, bool *tls)
{
	struct amqp_connection_info info;
	char *copy;
	const char *scheme_end = strstr(url, "://");
	const char *at = scheme_end ? strchr(scheme_end + 3, '@') : NULL;
	const char *slash = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
	const char *err = NULL;

	if (at && (slash == NULL || at < slash) && memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)))
		return "the URL must not contain a password; put it in password_file";
	copy = xstrdup(url);
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
		err = "not a valid AMQP URL (amqp[s]://[user@]host[:port][/vhost])";
	} else if (t) {
		t->host = xstrdup(info.host);
		t->port = info.port;
		/* "amqp://host/" means the default vhost, as in most clients */
		t->vhost = xstrdup(info.vhost && info.vhost[0] ? info.vhost : "/");
		t->user = at ? xstrdup(info.user) : NULL;
	}
	if (err == NULL && tls)
		*tls = info.ssl != 0;
	free(copy);
	return err;
}

const char *
amqpc_url_error(const char *url, bool *tls)
{
	return parse_url(url, NULL, tls);
}

const char *
amqpc_target_init(struct amqpc_target *t, const struct broker *b)
{
	const char *err;
	bool tls = false;

	memset(t, 0, sizeof(*t));
	err = parse_url(b->url, t, &tls);
	if (err)
		return err;
	t->tls = tls ? b : NULL;
	if (b->user) {
		free(t->user);
		t->user = xstrdup(b->user);
	} else if (t->user == NULL) {
		t->user = xstrdup("guest");
	}
	t->password = b->password ? b->password : "guest";
	t->heartbeat = (int)amqpc_broker_cfg(b)->heartbeat;
	t->timeout_ms = b->connect_timeout_ms;
	return NULL;
}

void
amqpc_target_free(struct amqpc_target *t)
{
	free(t->host);
	free(t->vhost);
	free(t->user);
	memset(t, 0, sizeof(*t));
}

bool
amqpc_reply_ok(amqp_rpc_reply_t r, const char *what)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return true;
	case AMQP_RESPONSE_NONE:
		log_warn("could not %s: missing RPC reply", what);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		log_warn("could not %s: %s", what, amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_t *m = r.reply.decoded;

			log_warn("could not %s: server closed the connection: %u %.*s", what, m->reply_code,
			    (int)m->reply_text.len, (char *)m->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			amqp_channel_close_t *m = r.reply.decoded;

			log_warn("could not %s: server closed the channel: %u %.*s", what, m->reply_code,
			    (int)m->reply_text.len, (char *)m->reply_text.bytes);
		} else {
			log_warn("could not %s: server error, method 0x%08x", what, r.reply.id);
		}
		break;
	}
	return false;
}

bool
amqpc_close_frame(const amqp_frame_t *frame)
{
	if (frame->frame_type != AMQP_FRAME_METHOD)
		return false;
	if (frame->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
		amqp_channel_close_t *m = frame->payload.method.decoded;

		log_warn("the broker closed the channel: %u %.*s", m->reply_code, (int)m->reply_text.len,
		    (char *)m->reply_text.bytes);
		return true;
	}
	if (frame->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
		amqp_connection_close_t *m = frame->payload.method.decoded;

		log_warn("the broker closed the connection: %u %.*s", m->reply_code, (int)m->reply_text.len,
		    (char *)m->reply_text.bytes);
		return true;
	}
	return false;
}

void
amqpc_close(amqp_connection_state_t *conn, bool graceful)
{
	if (*conn == NULL)
		return;
	if (graceful) {
		amqp_channel_close(*conn, AMQPC_CHANNEL, AMQP_REPLY_SUCCESS);
		amqp_connection_close(*conn, AMQP_REPLY_SUCCESS);
	}
	amqp_destroy_connection(*conn);
	*conn = NULL;
}

/* rabbitmq-c checks the heartbeat only while it reads; a write to a broker
 * that stopped reading (or a path that went dark) waits in poll() with no
 * deadline once the socket buffers are full. TCP_USER_TIMEOUT makes the
 * kernel fail the connection when sent data stays unacknowledged, or the
 * peer's window stays closed, for two heartbeat intervals: the same bound
 * rabbitmq-c applies to reads. Without heartbeats the kernel's defaults
 * stay. */
static void
bound_writes(amqp_connection_state_t conn, const struct amqpc_target *t)
{
	int heartbeat = amqp_get_heartbeat(conn);
	unsigned int ms;

	if (heartbeat <= 0)
		return;
	ms = (unsigned int)heartbeat * 2000u;
	if (setsockopt(amqp_get_sockfd(conn), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) < 0)
		log_warn("could not set a write deadline on the connection to %s:%d: %s", t->host, t->port,
		    strerror(errno));
}

amqp_connection_state_t
amqpc_open(const struct amqpc_target *t)
{
	struct timeval tv = { t->timeout_ms / 1000, (t->timeout_ms % 1000) * 1000 };
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = t->tls ? amqpc_tls_socket(conn, t->host, t->tls) : amqp_tcp_socket_new(conn);
	int rc;

	if (sock == NULL) {
		if (!t->tls)
			log_warn("could not create a socket");
		goto fail;
	}
	amqp_set_handshake_timeout(conn, &tv);
	amqp_set_rpc_timeout(conn, &tv);
	rc = amqp_socket_open_noblock(sock, t->host, t->port, &tv);
	if (rc != AMQP_STATUS_OK) {
		const char *why = t->tls ? amqpc_tls_failure() : NULL;

		repeat_fail("broker", NULL, "could not connect to %s:%d%s: %s%s%s", t->host, t->port, t->tls ? " (TLS)" : "",
		    amqp_error_string2(rc), why ? ": " : "", why ? why : "");
		goto fail;
	}
	if (!amqpc_reply_ok(amqp_login(conn, t->vhost, 0, 131072, t->heartbeat, AMQP_SASL_METHOD_PLAIN, t->user,
	    t->password), "log in"))
		goto fail;
	bound_writes(conn, t);
	amqp_channel_open(conn, AMQPC_CHANNEL);
	if (!amqpc_reply_ok(amqp_get_rpc_reply(conn), "open a channel"))
		goto fail;
	return conn;
fail:
	amqpc_close(&conn, false);
	return NULL;
}
