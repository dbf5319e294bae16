/* SPDX-License-Identifier: Apache-2.0 */
/* The supervisor's view of its child processes, whatever their role
 * (bridge/daemon/role.h): inbound workers, outbox relays and the retention
 * process. Shared by the supervisor loop (bridge/daemon/supervisor.c), which
 * starts, reaps, restarts and signals them, configuration reload
 * (bridge/daemon/reload.c) and the metrics and health endpoint
 * (bridge/daemon/exposition.c). */
#ifndef ONCEBRIDGE_FLEET_H
#define ONCEBRIDGE_FLEET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "bridge/common/backoff.h"
#include "bridge/daemon/board.h"
#include "bridge/daemon/role.h"

struct settings;
struct broker;

/* SHA-256 of what a child's configuration was made of (bridge/daemon/reload.c) */
#define FLEET_FINGERPRINT_LEN 32

struct child {
	enum role role;
	char *name;           /* broker name, owned; "" for a role without a broker */
	const struct broker *broker; /* in fleet->settings; NULL once retiring or without a broker */
	unsigned char fingerprint[FLEET_FINGERPRINT_LEN];
	int index;            /* number within its broker and role, 0-based */
	int slot;             /* status board slot, -1 when none was free */
	pid_t pid;            /* 0 when not running */
	bool retiring;        /* stopped by a reload: not restarted, removed when reaped */
	bool stall_logged;
	int64_t down_since_ms; /* not running or not connected since; 0: up */
	int64_t started_ms;
	int64_t restart_at_ms;
	uint64_t restarts;
	struct backoff backoff;
};

struct fleet {
	struct settings *settings;
	struct child *children;
	size_t n;
	struct board board;
};

/* Inbound worker and relay processes a broker needs. */
int fleet_broker_workers(const struct broker *b);
int fleet_broker_relays(const struct broker *b);

/* Add a child (not started) of role for broker b (NULL for retention),
 * made of fingerprint (NULL: none, it is replaced on every reload). */
struct child *fleet_add(struct fleet *f, enum role role, const struct broker *b, int index,
    const unsigned char *fingerprint);
/* Ask c to drain and leave for good (SIGTERM); it is removed once reaped. */
void fleet_retire(struct fleet *f, struct child *c);
/* Drop retiring children that have ended. */
void fleet_prune(struct fleet *f);
void fleet_free(struct fleet *f);
struct child *fleet_find_pid(struct fleet *f, pid_t pid);
/* Whether a retiring child that c takes over from is still running: one of
 * the same broker, or the retention process before another. */
bool fleet_retiring_running(const struct fleet *f, const struct child *c);

/* Milliseconds c has been stalled (0 when it is not), as health.stall_timeout_ms sees it. */
int64_t fleet_stalled_ms(const struct fleet *f, const struct child *c, int64_t now);
bool fleet_is_stalled(const struct fleet *f, const struct child *c, int64_t now);

/* Track whether c runs and (a worker) is connected to its database and
 * broker; call it often. The retention process is not tracked. */
void fleet_track_up(struct fleet *f, struct child *c, int64_t now);
/* What c lacks (static text) when it has been down for at least
 * health.stall_timeout_ms, else NULL; *ms is for how long. */
const char *fleet_down(const struct fleet *f, const struct child *c, int64_t now, int64_t *ms);

#endif
