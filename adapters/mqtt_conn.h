/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT connection settings shared by the consumer (mqtt.c) and the outbox
 * publisher (mqtt_publish.c): the URLs (one server or several of a
 * cluster) and TLS for mqtts:// and wss://. */
#ifndef ONCEBRIDGE_MQTT_CONN_H
#define ONCEBRIDGE_MQTT_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <MQTTAsync.h>

struct broker;

/* Check an mqtt://, mqtts://, ws:// or wss:// URL without I/O (the host a
 * name, an IPv4 address or an IPv6 address in brackets; a path only for
 * WebSockets): NULL when valid, else a static reason. When valid and uri
 * is not NULL, *uri is paho's form of it ("tcp://host:port",
 * "ssl://[::1]:8883", "ws://host:port/path", malloc'd); when tls is not
 * NULL, *tls tells whether it speaks TLS. */
const char *mqtt_url_parse(const char *url, char **uri, bool *tls);

/* Of paho URIs: whether a and b have the same scheme (paho 1.3.12 keeps TLS
 * and WebSockets switched on from one server of a list to the next), and
 * whether the host is an IPv6 address. */
bool mqtt_uri_same_scheme(const char *a, const char *b);
bool mqtt_uri_ipv6(const char *uri);

/* The servers of b in paho's form, "url" first, then "failover_urls"
 * (NULL-terminated, malloc'd; free with mqtt_servers_free); returns their
 * number, 0 after logging an invalid URL. *tls as for mqtt_url_parse. */
size_t mqtt_servers(const struct broker *b, char ***uris, bool *tls);
void mqtt_servers_free(char **uris);
/* "a", "a or b", "a, b or c" (malloc'd), for messages. */
char *mqtt_servers_text(char *const *uris, size_t n);
/* Index in uris of the server paho reports it connected to (paho gives
 * the URI with or without its scheme); 0 when none matches. */
size_t mqtt_uri_index(char *const *uris, size_t n, const char *reported);

/* Fill o (initialized with MQTTAsync_SSLOptions_initializer) from b's
 * "tls" group. The strings point into b. OpenSSL errors paho passes on
 * are logged and set *reported (read it with mqtt_tls_hint). */
void mqtt_tls_options(const struct broker *b, MQTTAsync_SSLOptions *o, bool *reported);

/* What to add to paho's message when a connect failed with code: over TLS
 * a failure below MQTT (code < 0) that OpenSSL did not explain (*reported
 * false) may be a check paho does not report. "" when there is nothing to
 * add. Clears *reported for the next attempt. */
const char *mqtt_tls_hint(bool tls, int code, bool *reported);

#endif
