/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark baseline: a plain rabbitmq-c publisher with publisher confirms
 * and a window of messages in flight, no database. It measures the
 * broker's publish-with-confirm ceiling that the outbox relay is compared
 * against.
 *
 * usage: amqp_publish_ceiling HOST PORT COUNT SIZE WINDOW EXCHANGE ROUTING_KEY [RATE [ID_PREFIX]]
 * prints: "<messages> <seconds> <messages per second>"
 *
 * With RATE, it publishes at RATE messages/s instead of as fast as it can
 * (the same pacing the relay's latency run sees: a group of messages every
 * 2.5 ms) and prints the publish-to-confirm latency too:
 * "<messages> <seconds> <messages per second> <p50 ms> <p99 ms>".
 * With ID_PREFIX too, each body is JSON of about SIZE bytes,
 * {"id": "ID_PREFIX-N", "n": N, "t": <publish time, Unix seconds>, "pad": ...},
 * so that a consumer can measure publish-to-COMMIT latency without a load
 * generator of its own eating the cores. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "adapters/amqp_conn.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for confirms until at most max_pending remain; returns the new
 * confirmed count or -1. */
static long
wait_confirms(amqp_connection_state_t conn, long sent, long confirmed, long max_pending)
{
	while (sent - confirmed > max_pending) {
		amqp_frame_t frame;
		int rc = amqp_simple_wait_frame(conn, &frame);

		if (rc != AMQP_STATUS_OK)
			return -1;
		if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *ack = frame.payload.method.decoded;

			confirmed = ack->multiple ? (long)ack->delivery_tag : confirmed + 1;
		} else if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			fprintf(stderr, "nack\n");
			return -1;
		}
		amqp_maybe_release_buffers(conn);
	}
	return confirmed;
}

static int
by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Paced publishing: groups of messages every 2.5 ms at rate messages/s;
 * latency[i] gets the publish-to-confirm time of message i+1 in ms. */
/* Properties like the outbox relay's messages (adapters/amqp_publish.c):
 * persistent, a message_id and the same ID in the header "event_id", so
 * that the broker does the same work per message. id must outlive the
 * publish. */
static void
relay_like(amqp_basic_properties_t *props, amqp_table_entry_t *header, const char *id)
{
	memset(props, 0, sizeof(*props));
	props->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
	props->delivery_mode = 2;
	props->message_id = amqp_cstring_bytes(id);
	header->key = amqp_cstring_bytes("event_id");
	header->value.kind = AMQP_FIELD_KIND_UTF8;
	header->value.value.bytes = amqp_cstring_bytes(id);
	props->headers.num_entries = 1;
	props->headers.entries = header;
}

static double
wall_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The JSON body of message n, padded to about size bytes. */
static amqp_bytes_t
json_body(char *buf, size_t cap, long size, const char *prefix, long n)
{
	int len = snprintf(buf, cap, "{\"id\": \"%s-%ld\", \"n\": %ld, \"t\": %.6f, \"pad\": \"", prefix, n, n,
	    wall_clock());

	while (len < size - 2 && (size_t)len < cap - 3)
		buf[len++] = 'x';
	buf[len++] = '"';
	buf[len++] = '}';
	return (amqp_bytes_t){ (size_t)len, buf };
}

static int
publish_paced(amqp_connection_state_t conn, const char *exchange, const char *key, amqp_bytes_t body,
    long count, double rate, const char *prefix, double *latency)
{
	char json[4096], id[64];
	long size = (long)body.len;
	amqp_basic_properties_t props;
	amqp_table_entry_t header;
	double *sent_at = calloc((size_t)count + 1, sizeof(double));
	double start = now(), tick = 0.0025;
	long per_tick = lround(fmax(1.0, rate * tick)), sent = 0, confirmed = 0;
	int rc = -1;

	tick = (double)per_tick / rate;
	while (confirmed < count) {
		double due = start + (double)(sent / per_tick) * tick, left = due - now();
		amqp_frame_t frame;
		struct timeval tv;
		int st;

		if (sent < count && left <= 0) {
			for (long k = 0; k < per_tick && sent < count; k++) {
				if (prefix)
					body = json_body(json, sizeof(json), size, prefix, sent);
				snprintf(id, sizeof(id), "ceiling-%ld", sent);
				relay_like(&props, &header, id);
				if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), 1, 0,
				        &props, body) != 0)
					goto out;
				sent_at[++sent] = now();
			}
			continue;
		}
		if (sent == count || left > 1)
			left = 1;
		tv.tv_sec = 0;
		tv.tv_usec = (long)(left * 1e6);
		st = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
		if (st == AMQP_STATUS_TIMEOUT)
			continue;
		if (st != AMQP_STATUS_OK)
			goto out;
		if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
			amqp_basic_ack_t *ack = frame.payload.method.decoded;
			long upto = ack->multiple ? (long)ack->delivery_tag : confirmed + 1;
			double t = now();

			for (long tag = confirmed + 1; tag <= upto; tag++)
				latency[tag - 1] = (t - sent_at[tag]) * 1000.0;
			confirmed = upto;
		} else if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
			fprintf(stderr, "nack\n");
			goto out;
		}
		amqp_maybe_release_buffers(conn);
	}
	rc = 0;
out:
	free(sent_at);
	return rc;
}

int
main(int argc, char **argv)
{
	amqp_connection_state_t conn;
	amqp_socket_t *sock;
	amqp_basic_properties_t props;
	long count, size, window, sent = 0, confirmed = 0;
	char *body;
	double t0, t1;

	if (argc < 8 || argc > 10) {
		fprintf(stderr, "usage: %s HOST PORT COUNT SIZE WINDOW EXCHANGE ROUTING_KEY [RATE [ID_PREFIX]]\n", argv[0]);
		return 2;
	}
	count = atol(argv[3]);
	size = atol(argv[4]);
	window = atol(argv[5]);
	body = malloc((size_t)size);
	memset(body, 'x', (size_t)size);
	conn = amqp_new_connection();
	sock = amqp_tcp_socket_new(conn);
	if (amqp_socket_open(sock, argv[1], atoi(argv[2])) != AMQP_STATUS_OK ||
	    amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "could not connect\n");
		return 1;
	}
	amqp_channel_open(conn, 1);
	amqp_confirm_select(conn, 1);
	if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
		return 1;
	t0 = now();
	if (argc >= 9) {
		double *latency = calloc((size_t)count, sizeof(double));
		amqp_bytes_t b = { (size_t)size, body };

		if (publish_paced(conn, argv[6], argv[7], b, count, atof(argv[8]), argc == 10 ? argv[9] : NULL, latency) < 0)
			return 1;
		t1 = now();
		qsort(latency, (size_t)count, sizeof(double), by_value);
		printf("%ld %.3f %.0f %.1f %.1f\n", count, t1 - t0, (double)count / (t1 - t0),
		    latency[count / 2], latency[(long)((double)count * 0.99)]);
		free(latency);
		goto close;
	}
	while (sent < count) {
		amqp_bytes_t b = { (size_t)size, body };

		char id[64];
		amqp_table_entry_t header;

		snprintf(id, sizeof(id), "ceiling-%ld", sent);
		relay_like(&props, &header, id);
		if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(argv[6]), amqp_cstring_bytes(argv[7]), 1, 0, &props, b) != 0)
			return 1;
		sent++;
		confirmed = wait_confirms(conn, sent, confirmed, window - 1);
		if (confirmed < 0)
			return 1;
	}
	confirmed = wait_confirms(conn, sent, confirmed, 0);
	if (confirmed < 0)
		return 1;
	t1 = now();
	printf("%ld %.3f %.0f\n", count, t1 - t0, (double)count / (t1 - t0));
close:
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	free(body);
	return 0;
}
