/* SPDX-License-Identifier: Apache-2.0 */
/* Bookkeeping of the supervisor's children: which role and broker each
 * one serves, its status board slot, its restarts, and when it counts as
 * stalled. Calls only the status board and the log. */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/daemon/fleet.h"
#include "bridge/common/log.h"
#include "bridge/config/settings.h"
#include "bridge/common/util.h"

#define RESTART_MAX_MS 60000

int
fleet_broker_workers(const struct broker *b)
{
	if (b->n_routes == 0)
		return 0;
	return b->adapter->workers(b);
}

int
fleet_broker_relays(const struct broker *b)
{
	return b->outbox ? (int)b->outbox_relays : 0;
}

struct child *
fleet_add(struct fleet *f, enum role role, const struct broker *b, int index, const unsigned char *fingerprint)
{
	struct child *c;

	f->children = xrealloc(f->children, (f->n + 1) * sizeof(struct child));
	c = &f->children[f->n++];
	memset(c, 0, sizeof(*c));
	c->role = role;
	c->name = xstrdup(b ? b->name : "");
	c->broker = b;
	if (fingerprint)
		memcpy(c->fingerprint, fingerprint, sizeof(c->fingerprint));
	c->index = index;
	c->slot = board_take(&f->board, role == ROLE_CONSUMER && b ? b->n_routes : 0,
	    role == ROLE_RETENTION ? dl_waiting_rows(f->settings) : 0);
	if (b && c->slot < 0)
		log_warn("no counter slot left for broker \"%s\": its metrics and stall detection are off", b->name);
	backoff_init(&c->backoff, 1000, RESTART_MAX_MS);
	return c;
}

void
fleet_retire(struct fleet *f, struct child *c)
{
	(void)f;
	c->retiring = true;
	c->broker = NULL;
	if (c->pid)
		kill(c->pid, SIGTERM);
}

static void
child_free(struct fleet *f, struct child *c)
{
	if (c->slot >= 0)
		board_release(&f->board, c->slot);
	free(c->name);
}

void
fleet_prune(struct fleet *f)
{
	size_t k = 0;

	for (size_t i = 0; i < f->n; i++) {
		if (f->children[i].retiring && f->children[i].pid == 0)
			child_free(f, &f->children[i]);
		else
			f->children[k++] = f->children[i];
	}
	f->n = k;
}

void
fleet_free(struct fleet *f)
{
	for (size_t i = 0; i < f->n; i++)
		child_free(f, &f->children[i]);
	free(f->children);
	f->children = NULL;
	f->n = 0;
}

struct child *
fleet_find_pid(struct fleet *f, pid_t pid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->children[i].pid == pid)
			return &f->children[i];
	return NULL;
}

/* Whether a and b serve the same broker, or are both retention. */
static bool
same_place(const struct child *a, const struct child *b)
{
	if ((a->role == ROLE_RETENTION) != (b->role == ROLE_RETENTION))
		return false;
	return strcmp(a->name, b->name) == 0;
}

bool
fleet_retiring_running(const struct fleet *f, const struct child *c)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->children[i].retiring && f->children[i].pid && same_place(&f->children[i], c))
			return true;
	return false;
}

int64_t
fleet_stalled_ms(const struct fleet *f, const struct child *c, int64_t now)
{
	if (c->pid == 0 || c->retiring || c->slot < 0 || c->role != ROLE_CONSUMER)
		return 0;
	return board_stalled_ms(&f->board, c->slot, now);
}

static const char *
what_is_down(const struct fleet *f, const struct child *c)
{
	const struct core_stats *st;

	if (c->role == ROLE_RETENTION)
		return NULL;
	if (c->pid == 0)
		return "not running";
	if (c->role != ROLE_CONSUMER || c->slot < 0)
		return NULL;
	st = &f->board.slots[c->slot].core;
	if (!st->db_connected)
		return "not connected to the database";
	if (!st->broker_connected)
		return "not connected to the broker";
	return NULL;
}

void
fleet_track_up(struct fleet *f, struct child *c, int64_t now)
{
	if (c->retiring || what_is_down(f, c) == NULL)
		c->down_since_ms = 0;
	else if (c->down_since_ms == 0)
		c->down_since_ms = now;
}

const char *
fleet_down(const struct fleet *f, const struct child *c, int64_t now, int64_t *ms)
{
	if (c->retiring || c->down_since_ms == 0 || now - c->down_since_ms < f->settings->stall_timeout_ms)
		return NULL;
	*ms = now - c->down_since_ms;
	return what_is_down(f, c);
}

bool
fleet_is_stalled(const struct fleet *f, const struct child *c, int64_t now)
{
	return fleet_stalled_ms(f, c, now) >= f->settings->stall_timeout_ms;
}
