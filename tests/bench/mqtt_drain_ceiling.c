/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark baseline: a plain paho MQTTAsync QoS 1 subscriber draining a
 * persistent session, no database: the broker's delivery ceiling that the
 * MQTT path is compared against. Run it once to create the session
 * (COUNT 0), publish, then again to drain.
 *
 * usage: mqtt_drain_ceiling URI CLIENT_ID FILTER COUNT
 * prints: "<messages> <seconds> <messages per second>" */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

static volatile long received;
static volatile int subscribed, failed;
static double first;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
on_message(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
	(void)ctx;
	(void)len;
	if (received++ == 0)
		first = now();
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void
on_subscribe(void *ctx, MQTTAsync_successData5 *r)
{
	(void)ctx;
	(void)r;
	subscribed = 1;
}

static void
on_failure(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)ctx;
	(void)r;
	failed = 1;
}

static void
on_connect(void *ctx, MQTTAsync_successData5 *r)
{
	MQTTAsync client = ctx;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;

	(void)r;
	ro.onSuccess5 = on_subscribe;
	ro.onFailure5 = on_failure;
	ro.context = client;
	if (MQTTAsync_subscribe(client, getenv("CEILING_FILTER"), 1, &ro) != MQTTASYNC_SUCCESS)
		failed = 1;
}

int
main(int argc, char **argv)
{
	MQTTAsync client;
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty expiry;
	long count;
	double t1;

	if (argc != 5) {
		fprintf(stderr, "usage: %s URI CLIENT_ID FILTER COUNT\n", argv[0]);
		return 2;
	}
	setenv("CEILING_FILTER", argv[3], 1);
	count = atol(argv[4]);
	if (MQTTAsync_createWithOptions(&client, argv[1], argv[2], MQTTCLIENT_PERSISTENCE_NONE, NULL, &co) != 0)
		return 1;
	MQTTAsync_setCallbacks(client, client, NULL, on_message, NULL);
	expiry.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	expiry.value.integer4 = 3600;
	MQTTProperties_add(&props, &expiry);
	opts.cleanstart = 0;
	opts.connectProperties = &props;
	opts.MQTTVersion = MQTTVERSION_5;
	opts.keepAliveInterval = 30;
	opts.onSuccess5 = on_connect;
	opts.onFailure5 = on_failure;
	opts.context = client;
	if (MQTTAsync_connect(client, &opts) != MQTTASYNC_SUCCESS)
		return 1;
	while (!subscribed && !failed)
		usleep(1000);
	while (received < count && !failed)
		usleep(1000);
	t1 = now();
	if (failed)
		return 1;
	if (count > 0)
		printf("%ld %.3f %.0f\n", received, t1 - first, (double)received / (t1 - first));
	MQTTAsync_disconnect(client, NULL);
	usleep(200000);
	MQTTAsync_destroy(&client);
	MQTTProperties_free(&props);
	return 0;
}
