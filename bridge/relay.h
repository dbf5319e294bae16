/* The outbox relay: publishes committed outbox rows to one broker. */
#ifndef ONCEBRIDGE_RELAY_H
#define ONCEBRIDGE_RELAY_H

struct worker;

/* Relay until w->stop is set; returns the worker's exit status. */
int relay_run(struct worker *w);

#endif
