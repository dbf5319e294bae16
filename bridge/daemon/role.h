/* SPDX-License-Identifier: Apache-2.0 */
/* The roles of the supervisor's child processes. The fleet
 * (bridge/daemon/fleet.h) starts, reaps, restarts, signals and retires every
 * child the same way whatever its role; the role says what the child
 * runs and how logs and metrics name it. Depends on nothing. */
#ifndef ONCEBRIDGE_ROLE_H
#define ONCEBRIDGE_ROLE_H

enum role {
	ROLE_CONSUMER,  /* inbound worker: a broker connection into the core (bridge/daemon/worker.c) */
	ROLE_RELAY,     /* outbox relay of a broker (bridge/outbox/relay.c) */
	ROLE_RETENTION, /* pruning of processed_events, one for the daemon (bridge/retention/retention.c) */
};

/* The role's name in log lines and in the role label of metrics. */
static inline const char *
role_name(enum role r)
{
	switch (r) {
	case ROLE_CONSUMER:
		return "worker";
	case ROLE_RELAY:
		return "relay";
	case ROLE_RETENTION:
		return "retention";
	}
	return "?";
}

#endif
