/* SPDX-License-Identifier: Apache-2.0 */
/* What the metrics and health endpoint say, rendered from the status board
 * and the supervisor's bookkeeping. */
#ifndef ONCEBRIDGE_EXPOSITION_H
#define ONCEBRIDGE_EXPOSITION_H

#include <stdbool.h>

struct fleet;
struct buf;

/* Prometheus text format (version 0.0.4): what the workers, relays and
 * the maintenance process counted; /metrics serves it followed by the
 * build and process metrics below. */
void exposition_metrics(const struct fleet *f, struct buf *out);

/* "ok", or one line per stalled worker; returns whether healthy. */
bool exposition_health(const struct fleet *f, struct buf *out);

/* The rest of /metrics (bridge/daemon/exposition_process.c): the build,
 * and the processes of each role as the kernel sees them. */
void exposition_build_info(struct buf *out);
void exposition_process(const struct fleet *f, struct buf *out);

/* A label name="value" with the value escaped; a metric family's HELP and
 * TYPE lines. */
void exposition_label(struct buf *out, const char *name, const char *value);
void exposition_family(struct buf *out, const char *name, const char *type, const char *help);

#endif
