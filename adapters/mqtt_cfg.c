/* The MQTT adapter's configuration as the core sees it through the
 * adapter hooks: "workers" processes sharing the subscriptions, one
 * message at a time in each, and a redelivery profile. The session is the
 * client ID's, wherever it runs; the broker resends a lost connection's
 * unacked messages first, so a new connection is ready at its first
 * message that is not a resend (or an idle second). The grace is twice
 * the keepalive, plus a second; the broker keeps the session for
 * session_expiry (MQTT 5), forever (3.1.1) or not at all (clean session). */
#include "config.h"

#include "adapters/mqtt_cfg.h"
#include "bridge/util.h"

void
mqtt_check_window(const struct broker *b, int64_t window_s, const char *main_file, struct diag *d)
{
	if (b->mqtt_version == 5 && !b->clean_session && b->session_expiry > window_s)
		diag_warn(d, main_file, 0,
		    "retention.dedupe_window_s (%lld s) is shorter than session_expiry (%lld s) of broker \"%s\" "
		    "in \"%s\": a message the broker holds longer than the window is applied again",
		    (long long)window_s, (long long)b->session_expiry, b->name, b->file);
}

int
mqtt_workers(const struct broker *b)
{
	return b->workers > 1 ? (int)b->workers : 1;
}

/* One message at a time (inside messageArrived), on each route, and one
 * more. */
int64_t
mqtt_in_flight(const struct broker *b)
{
	return (int64_t)(b->n_routes > 0 ? b->n_routes : 1) + 1;
}

void
mqtt_redelivery(const struct broker *b, int index, struct redelivery *out)
{
	out->worker = b->workers > 1 ? xasprintf("mqtt:%s-%d", b->client_id, index)
				     : xasprintf("mqtt:%s", b->client_id);
	out->grace_ms = 2 * b->keepalive * 1000 + 1000;
	out->ready_after_ms = 0;
	out->ready_deliveries = -1;
	if (b->clean_session)
		out->hold_s = 0;
	else if (b->mqtt_version == 5)
		out->hold_s = b->session_expiry;
	else
		out->hold_s = -1;
}
