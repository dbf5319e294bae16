/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT URLs and TLS, one path for the consumer and the outbox publisher:
 * our URL forms (mqtt://, mqtts://, ws://, wss://, IPv6 addresses in
 * brackets) mapped to paho's, and the list of servers of one broker (key
 * "url" and then "failover_urls") that paho tries in order on a connect
 * (serverURIs).
 * paho-mqtt-c (the "as" library, built with OpenSSL) speaks TLS for an
 * "ssl://" server URI: it verifies the chain against the CA file (or the
 * system's CAs) when enableServerCertAuth is set, and with "verify" checks
 * after the handshake that the certificate names the host (DNS name or IP
 * address). paho reports OpenSSL's errors only through ssl_error_cb; a
 * host name mismatch it does not report at all (the connect just fails),
 * so the failure message says what it may be. */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/mqtt_cfg.h"
#include "adapters/mqtt_conn.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

/* Our URL schemes and paho's: paho 1.3.12 also takes mqtt:// and mqtts://,
 * but the serverURIs list is documented for tcp://, ssl://, ws:// and
 * wss:// only, so those are what it gets, always with a port. A WebSocket
 * URL may have a path (paho's default is "/mqtt"). */
struct scheme {
	const char *ours;
	const char *paho;
	long port;
	bool tls;
	bool ws;
};

static const struct scheme schemes[] = {
	{ "mqtt://", "tcp://", 1883, false, false },
	{ "mqtts://", "ssl://", 8883, true, false },
	{ "ws://", "ws://", 80, false, true },
	{ "wss://", "wss://", 443, true, true },
};

/* The host of [h, end): a name, an IPv4 address or an IPv6 address in
 * brackets. *host_end is set past it (at the port's colon or end). */
static const char *
parse_host(const char *h, const char *end, const char **host_end)
{
	const char *colon;

	if (*h == '[') {
		const char *close = memchr(h, ']', (size_t)(end - h));
		char addr[INET6_ADDRSTRLEN + 1];
		struct in6_addr in6;

		if (close == NULL)
			return "an IPv6 address in the URL lacks its closing \"]\"";
		if ((size_t)(close - h - 1) >= sizeof(addr))
			return "invalid IPv6 address in the URL";
		memcpy(addr, h + 1, (size_t)(close - h - 1));
		addr[close - h - 1] = '\0';
		if (strchr(addr, '%'))
			return "an IPv6 zone index (\"%25eth0\") is not supported by paho-mqtt-c";
		if (inet_pton(AF_INET6, addr, &in6) != 1)
			return "invalid IPv6 address in the URL";
		if (close + 1 != end && close[1] != ':')
			return "an IPv6 address in brackets must be followed by \":port\" or the end of the host";
		*host_end = close + 1;
		return NULL;
	}
	colon = memchr(h, ':', (size_t)(end - h));
	if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
		return "an IPv6 address must be in brackets, e.g. mqtt://[2001:db8::1]:1883";
	*host_end = colon ? colon : end;
	if (*host_end == h)
		return "the URL has no host";
	return NULL;
}

/* A WebSocket path as paho sends it in the GET line: paho finds the port
 * with the last colon of the URI, so a path must not have one. */
static const char *
check_path(const char *path)
{
	for (const char *p = path; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':' || *p == '#')
			return "invalid character in the WebSocket path (no spaces, \":\" or \"#\")";
	return NULL;
}

const char *
mqtt_url_parse(const char *url, char **uri, bool *tls)
{
	const struct scheme *sc = NULL;
	const char *h, *host_end, *end, *err;
	long p;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && sc == NULL; i++)
		if (strncmp(url, schemes[i].ours, strlen(schemes[i].ours)) == 0)
			sc = &schemes[i];
	if (sc == NULL)
		return "not a valid MQTT URL (mqtt://, mqtts://, ws:// or wss://, then host[:port])";
	h = url + strlen(sc->ours);
	end = h + strcspn(h, "/");
	if (memchr(h, '@', (size_t)(end - h)))
		return "the URL must not contain a user or password; use keys \"user\" and \"password_file\"";
	if (!sc->ws && *end && end[1])
		return "an MQTT URL has no path (mqtt://host[:port]); only ws:// and wss:// URLs have one";
	if (sc->ws && (err = check_path(end)) != NULL)
		return err;
	if ((err = parse_host(h, end, &host_end)) != NULL)
		return err;
	p = sc->port;
	if (host_end != end) {
		char *e;

		p = strtol(host_end + 1, &e, 10);
		if (e == host_end + 1 || e != end || p < 1 || p > 65535)
			return "invalid port in the URL";
	}
	if (uri)
		*uri = xasprintf("%s%.*s:%ld%s", sc->paho, (int)(host_end - h), h, p, sc->ws && end[0] && end[1] ? end : "");
	if (tls)
		*tls = sc->tls;
	return NULL;
}

bool
mqtt_uri_same_scheme(const char *a, const char *b)
{
	size_t n = strcspn(a, ":");

	return strncmp(a, b, n + 3) == 0;
}

bool
mqtt_uri_ipv6(const char *uri)
{
	return strstr(uri, "://[") != NULL;
}

size_t
mqtt_uri_index(char *const *uris, size_t n, const char *reported)
{
	for (size_t i = 0; reported && i < n; i++) {
		const char *bare = strstr(uris[i], "://");

		if (strcmp(uris[i], reported) == 0 || (bare && strcmp(bare + 3, reported) == 0))
			return i;
	}
	return 0;
}

size_t
mqtt_servers(const struct broker *b, char ***uris, bool *tls)
{
	const struct mqtt_broker_cfg *c = mqtt_broker_cfg(b);
	size_t n = 1 + c->n_failover_urls;

	*uris = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		const char *url = i == 0 ? b->url : c->failover_urls[i - 1];
		const char *err = mqtt_url_parse(url, &(*uris)[i], i == 0 ? tls : NULL);

		if (err) {
			log_error("invalid value of key \"%s\": %s", i == 0 ? "url" : "failover_urls", err);
			mqtt_servers_free(*uris);
			*uris = NULL;
			return 0;
		}
	}
	return n;
}

void
mqtt_servers_free(char **uris)
{
	for (size_t i = 0; uris && uris[i]; i++)
		free(uris[i]);
	free(uris);
}

char *
mqtt_servers_text(char *const *uris, size_t n)
{
	struct buf t = { 0 };

	for (size_t i = 0; i < n; i++)
		buf_appendf(&t, "%s%s", i ? (i + 1 == n ? " or " : ", ") : "", uris[i]);
	return t.data ? t.data : xstrdup("");
}

/* OpenSSL's error queue, one line per call: keep the reason and any
 * detail, drop the thread id, code, function and source position. */
static int
on_ssl_error(const char *str, size_t len, void *ctx)
{
	const char *p = str, *end = str + len;
	const char *field[9];
	int n = 0;

	__atomic_store_n((bool *)ctx, true, __ATOMIC_SEQ_CST);
	while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		end = str + --len;
	/* "TID:error:CODE:LIB:FUNC:REASON:FILE:LINE:DATA" */
	field[n++] = p;
	while (n < 9 && (p = memchr(p, ':', (size_t)(end - p))) != NULL)
		field[n++] = ++p;
	if (n == 9 && strncmp(field[1], "error:", 6) == 0) {
		int reason_len = (int)(field[6] - field[5] - 1);

		log_warn("TLS error: %.*s%s%.*s", reason_len, field[5], end > field[8] ? ": " : "",
		    (int)(end - field[8]), field[8]);
	} else {
		log_warn("TLS error: %.*s", (int)len, str);
	}
	return 1;
}

void
mqtt_tls_options(const struct broker *b, MQTTAsync_SSLOptions *o, bool *reported)
{
	o->trustStore = b->tls_ca_file;      /* NULL: the system's CAs */
	o->keyStore = b->tls_cert_file;
	o->privateKey = b->tls_key_file;
	o->enableServerCertAuth = b->tls_verify_peer;
	/* a name on a certificate nobody checked proves nothing */
	o->verify = b->tls_verify_peer && b->tls_verify_hostname;
	/* paho 1.3.12 built with OpenSSL 1.1 or newer ignores this and lets
	 * OpenSSL negotiate; Debian 12's OpenSSL 3 refuses TLS 1.0 and 1.1 at
	 * paho's security level 1 anyway */
	o->sslVersion = MQTT_SSL_VERSION_TLS_1_2;
	o->ssl_error_cb = on_ssl_error;
	o->ssl_error_context = reported; /* paho's threads write it */
}

const char *
mqtt_tls_hint(bool tls, int code, bool *reported)
{
	if (!tls || __atomic_exchange_n(reported, false, __ATOMIC_SEQ_CST) || code >= 0)
		return "";
	return " (over TLS this is also how paho-mqtt-c reports a certificate that does not name the host, or a "
	       "client certificate the broker refused or wanted; the broker's log tells which)";
}
