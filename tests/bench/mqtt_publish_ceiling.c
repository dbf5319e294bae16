/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark baseline: a plain paho MQTTAsync QoS 1 publisher (MQTT 5) with
 * a window of PUBLISHes in flight, no database. It measures the broker's
 * publish-and-PUBACK ceiling that the outbox relay to MQTT is compared
 * against. Each message carries the user property "event_id", as the
 * relay's do (adapters/mqtt_publish.c), so that the broker does the same
 * work per message.
 *
 * usage: mqtt_publish_ceiling URI COUNT SIZE WINDOW TOPIC [RATE]
 * prints: "<messages> <seconds> <messages per second>"
 *
 * With RATE, it publishes at RATE messages/s instead of as fast as it can
 * (a group of messages every 2.5 ms, as amqp_publish_ceiling does) and
 * prints the publish-to-PUBACK latency too:
 * "<messages> <seconds> <messages per second> <p50 ms> <p99 ms>". */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long confirmed, failed_sends;
static int connected; /* 0 pending, 1 connected, -1 failed */
static double *sent_at, *latency;
static long *slots;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_connect(void *ctx, MQTTAsync_successData5 *r)
{
	(void)ctx;
	(void)r;
	pthread_mutex_lock(&mu);
	connected = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void
on_connect_failure(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)ctx;
	(void)r;
	pthread_mutex_lock(&mu);
	connected = -1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void
on_sent(void *ctx, MQTTAsync_successData5 *r)
{
	long i = *(long *)ctx;
	double t = now();

	pthread_mutex_lock(&mu);
	latency[i] = (t - sent_at[i]) * 1000.0;
	if (r && r->reasonCode >= 0x80)
		failed_sends++;
	confirmed++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void
on_send_failure(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)ctx;
	(void)r;
	pthread_mutex_lock(&mu);
	failed_sends++;
	confirmed++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int
on_message(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
	(void)ctx;
	(void)len;
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* Publish message i; its context is slots[i]. */
static int
send_one(MQTTAsync client, const char *topic, char *body, long size, long i)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	MQTTProperty prop;
	char id[64];
	int rc;

	snprintf(id, sizeof(id), "ceiling-%ld", i);
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
	prop.value.data.data = "event_id";
	prop.value.data.len = 8;
	prop.value.value.data = id;
	prop.value.value.len = (int)strlen(id);
	MQTTProperties_add(&msg.properties, &prop);
	msg.payload = body;
	msg.payloadlen = (int)size;
	msg.qos = 1;
	slots[i] = i;
	ro.context = &slots[i];
	ro.onSuccess5 = on_sent;
	ro.onFailure5 = on_send_failure;
	pthread_mutex_lock(&mu);
	sent_at[i] = now();
	pthread_mutex_unlock(&mu);
	rc = MQTTAsync_sendMessage(client, topic, &msg, &ro);
	MQTTProperties_free(&msg.properties);
	if (rc != MQTTASYNC_SUCCESS)
		fprintf(stderr, "could not publish: %s\n", MQTTAsync_strerror(rc));
	return rc == MQTTASYNC_SUCCESS ? 0 : -1;
}

/* Wait until at most max_pending of sent are unconfirmed. */
static void
wait_confirms(long sent, long max_pending)
{
	pthread_mutex_lock(&mu);
	while (sent - confirmed > max_pending)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static int
by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* As fast as the window lets, or at rate messages/s (groups every 2.5 ms)
 * when rate > 0. */
static int
publish(MQTTAsync client, const char *topic, char *body, long size, long count, long window, double rate)
{
	double start = now(), tick = 0.0025;
	long per_tick = rate > 0 ? lround(fmax(1.0, rate * tick)) : 1;

	if (rate > 0)
		tick = (double)per_tick / rate;
	for (long sent = 0; sent < count; sent++) {
		if (rate > 0 && sent % per_tick == 0) {
			double left = start + (double)(sent / per_tick) * tick - now();

			if (left > 0)
				usleep((useconds_t)(left * 1e6));
		}
		wait_confirms(sent, window - 1);
		if (send_one(client, topic, body, size, sent) < 0)
			return -1;
	}
	wait_confirms(count, 0);
	return 0;
}

static int
connect_client(MQTTAsync client, long window)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;

	opts.cleanstart = 1;
	opts.MQTTVersion = MQTTVERSION_5;
	opts.keepAliveInterval = 30;
	opts.maxInflight = (int)window;
	opts.onSuccess5 = on_connect;
	opts.onFailure5 = on_connect_failure;
	if (MQTTAsync_connect(client, &opts) != MQTTASYNC_SUCCESS)
		return -1;
	pthread_mutex_lock(&mu);
	while (connected == 0)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return connected > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	MQTTAsync client;
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	long count, size, window;
	double rate, t0, t1;
	char *body;
	int rc = 1;

	if (argc < 6 || argc > 7) {
		fprintf(stderr, "usage: %s URI COUNT SIZE WINDOW TOPIC [RATE]\n", argv[0]);
		return 2;
	}
	count = atol(argv[2]);
	size = atol(argv[3]);
	window = atol(argv[4]);
	rate = argc == 7 ? atof(argv[6]) : 0.0;
	if (count < 1 || size < 0 || window < 1)
		return 2;
	body = malloc((size_t)size + 1);
	memset(body, 'x', (size_t)size);
	sent_at = calloc((size_t)count, sizeof(double));
	latency = calloc((size_t)count, sizeof(double));
	slots = calloc((size_t)count, sizeof(long));
	co.MQTTVersion = MQTTVERSION_5;
	co.maxBufferedMessages = (int)window + 16; /* paho refuses sends past this (100 by default) */
	if (MQTTAsync_createWithOptions(&client, argv[1], "bench-publish-ceiling", MQTTCLIENT_PERSISTENCE_NONE, NULL,
	        &co) != MQTTASYNC_SUCCESS)
		return 1;
	MQTTAsync_setCallbacks(client, NULL, NULL, on_message, NULL);
	if (connect_client(client, window) < 0) {
		fprintf(stderr, "could not connect to %s\n", argv[1]);
		goto out;
	}
	t0 = now();
	if (publish(client, argv[5], body, size, count, window, rate) < 0)
		goto out;
	t1 = now();
	if (failed_sends) {
		fprintf(stderr, "%ld publishes refused or failed\n", failed_sends);
		goto out;
	}
	if (rate > 0) {
		qsort(latency, (size_t)count, sizeof(double), by_value);
		printf("%ld %.3f %.0f %.1f %.1f\n", count, t1 - t0, (double)count / (t1 - t0), latency[count / 2],
		    latency[(long)((double)count * 0.99)]);
	} else {
		printf("%ld %.3f %.0f\n", count, t1 - t0, (double)count / (t1 - t0));
	}
	rc = 0;
	MQTTAsync_disconnect(client, NULL);
	usleep(100000);
out:
	MQTTAsync_destroy(&client);
	free(body);
	free(sent_at);
	free(latency);
	free(slots);
	return rc;
}
