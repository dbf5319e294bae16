/* What the metrics and health endpoint say, rendered from the status board
 * and the supervisor's bookkeeping. */
#ifndef ONCEBRIDGE_EXPOSITION_H
#define ONCEBRIDGE_EXPOSITION_H

#include <stdbool.h>

struct fleet;
struct buf;

/* Prometheus text format (version 0.0.4). */
void exposition_metrics(const struct fleet *f, struct buf *out);

/* "ok", or one line per stalled worker; returns whether healthy. */
bool exposition_health(const struct fleet *f, struct buf *out);

#endif
