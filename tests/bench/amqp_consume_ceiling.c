/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark baseline: a plain rabbitmq-c consumer with manual acks
 * (prefetch 1000, basic.ack with multiple every 100 deliveries) draining a
 * durable queue, no database: the broker's delivery ceiling that
 * oncebridge's AMQP path is compared against.
 *
 * usage: amqp_consume_ceiling HOST PORT QUEUE COUNT
 * prints: "<messages> <seconds> <messages per second>" */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
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

int
main(int argc, char **argv)
{
	amqp_connection_state_t conn;
	amqp_socket_t *sock;
	long count, got = 0;
	uint64_t last = 0;
	double t0 = 0, t1;

	if (argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT QUEUE COUNT\n", argv[0]);
		return 2;
	}
	count = atol(argv[4]);
	conn = amqp_new_connection();
	sock = amqp_tcp_socket_new(conn);
	if (amqp_socket_open(sock, argv[1], atoi(argv[2])) != AMQP_STATUS_OK ||
	    amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "could not connect\n");
		return 1;
	}
	amqp_channel_open(conn, 1);
	amqp_basic_qos(conn, 1, 0, 1000, 0);
	amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[3]), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
		return 1;
	while (got < count) {
		amqp_envelope_t env;
		amqp_rpc_reply_t r;

		amqp_maybe_release_buffers(conn);
		r = amqp_consume_message(conn, &env, NULL, 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL)
			return 1;
		if (got == 0)
			t0 = now();
		got++;
		last = env.delivery_tag;
		amqp_destroy_envelope(&env);
		if (got % 100 == 0 && amqp_basic_ack(conn, 1, last, 1) != 0)
			return 1;
	}
	amqp_basic_ack(conn, 1, last, 1);
	t1 = now();
	printf("%ld %.3f %.0f\n", got, t1 - t0, (double)got / (t1 - t0));
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	return 0;
}
