/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP endpoint for Prometheus (/metrics) and health checks
 * (/health), served by libmicrohttpd from the supervisor's own loop. */
#ifndef ONCEBRIDGE_METRICS_H
#define ONCEBRIDGE_METRICS_H

#include <stdint.h>

struct fleet;
struct metrics;

/* The port when metrics.listen names none: on no list of the Prometheus
 * project's default port allocations (core 9090-9094, exporters from 9100,
 * nor the ports outside those ranges), so not postgres_exporter's 9187. */
#define METRICS_DEFAULT_PORT "9089"

/* Parse "host:port", "[v6]:port", "host" or "[v6]" (the default port);
 * 0 when valid, else -1 with *err set (to free). */
int metrics_check_listen(const char *listen, char **err);

/* Listen on listen (checked by metrics_check_listen); NULL after logging
 * why (oncebridge runs on without the endpoint). */
struct metrics *metrics_start(const char *listen, const struct fleet *f);
void metrics_stop(struct metrics *m);

/* Serve requests for up to ms milliseconds (less when a signal comes);
 * with m NULL just sleep. */
void metrics_wait(struct metrics *m, int64_t ms);

/* In a forked worker: close the listening socket inherited from the
 * supervisor. */
void metrics_close_in_child(struct metrics *m);

#endif
