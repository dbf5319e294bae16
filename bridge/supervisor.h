/* The supervisor process: one worker per broker connection. */
#ifndef ONCEBRIDGE_SUPERVISOR_H
#define ONCEBRIDGE_SUPERVISOR_H

struct settings;

/* Start a worker per broker, restart crashed ones with backoff, drain on
 * SIGTERM/SIGINT. Returns the process exit status. */
int supervisor_run(const struct settings *s);

#endif
