/* MQTT URLs and TLS, one path for the consumer and the outbox publisher.
 * paho-mqtt-c (the "as" library, built with OpenSSL) speaks TLS for an
 * "ssl://" server URI: it verifies the chain against the CA file (or the
 * system's CAs) when enableServerCertAuth is set, and with "verify" checks
 * after the handshake that the certificate names the host (DNS name or IP
 * address). paho reports OpenSSL's errors only through ssl_error_cb; a
 * host name mismatch it does not report at all (the connect just fails),
 * so the failure message says what it may be. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "adapters/mqtt_conn.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

const char *
mqtt_url_parse(const char *url, char **uri, bool *tls)
{
	const char *h, *colon, *end;
	bool secure = strncmp(url, "mqtts://", 8) == 0;
	long p = secure ? 8883 : 1883;

	if (!secure && strncmp(url, "mqtt://", 7) != 0)
		return "not a valid MQTT URL (mqtt://host[:port] or mqtts://host[:port])";
	h = url + (secure ? 8 : 7);
	if (strchr(h, '@'))
		return "the URL must not contain a user or password; use keys \"user\" and \"password_file\"";
	end = h + strcspn(h, "/");
	if (*end && end[1])
		return "an MQTT URL has no path (mqtt://host[:port])";
	colon = memchr(h, ':', (size_t)(end - h));
	if (colon) {
		char *e;

		p = strtol(colon + 1, &e, 10);
		if (e == colon + 1 || e != end || p < 1 || p > 65535)
			return "invalid port in the URL";
	} else {
		colon = end;
	}
	if (colon == h)
		return "the URL has no host";
	if (uri)
		*uri = xasprintf("%s://%.*s:%ld", secure ? "ssl" : "tcp", (int)(colon - h), h, p);
	if (tls)
		*tls = secure;
	return NULL;
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
