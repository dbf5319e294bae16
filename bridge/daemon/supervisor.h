/* SPDX-License-Identifier: Apache-2.0 */
/* The supervisor process: one worker per broker connection. */
#ifndef ONCEBRIDGE_SUPERVISOR_H
#define ONCEBRIDGE_SUPERVISOR_H

struct settings;

/* Start a worker per broker, restart crashed ones with backoff, reload on
 * SIGHUP (replacing *s), drain on SIGTERM/SIGINT. Returns the process exit
 * status; *s is then the configuration last in use. */
int supervisor_run(struct settings **s);

#endif
