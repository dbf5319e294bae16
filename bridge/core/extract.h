/* SPDX-License-Identifier: Apache-2.0 */
/* What a worker takes from one message for one route: the limits on
 * untrusted input, the event ID and the business SQL's parameters, or the
 * reason the message is poison. The core (bridge/core/apply.c) and
 * "oncebridge try" (bridge/daemon/try.c) call the same function, so that
 * try shows exactly what a worker would do with a payload. */
#ifndef ONCEBRIDGE_EXTRACT_H
#define ONCEBRIDGE_EXTRACT_H

#include "bridge/core/source.h"

struct route;

struct extraction {
	char *event_id;        /* allocated; NULL when it could not be extracted */
	struct value *values;  /* one per parameter of the route (allocated); NULL when poison */
	char *reason;          /* poison: why (allocated) */
};

/* Extract from the message of v for route r, reading the payload in the
 * route's format. Returns 0, or -1 with ex->reason set (the message is
 * poison for this route). */
int extract_route(const struct route *r, struct msg_view *v, const struct limits *lim, struct extraction *ex);
/* Free what ex still owns. */
void extraction_clear(const struct route *r, struct extraction *ex);

#endif
