/* MQTT connection settings shared by the consumer (mqtt.c) and the outbox
 * publisher (mqtt_publish.c): the URL and TLS for mqtts://. */
#ifndef ONCEBRIDGE_MQTT_CONN_H
#define ONCEBRIDGE_MQTT_CONN_H

#include <stdbool.h>

#include <MQTTAsync.h>

struct broker;

/* Check an mqtt:// or mqtts:// URL without I/O: NULL when valid, else a
 * static reason. When valid and uri is not NULL, *uri is paho's form of
 * it ("tcp://host:port" or "ssl://host:port", malloc'd); when tls is not
 * NULL, *tls tells whether it is mqtts://. */
const char *mqtt_url_parse(const char *url, char **uri, bool *tls);

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
