/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of what an MQTT worker subscribes and which client ID it
 * uses: with several workers (the default) a plain route topic becomes the
 * shared subscription "$share/CLIENT_ID/filter" (/ + # in the client ID
 * made _), a "$share/..." topic stays as written, and one worker
 * subscribes the plain filter as its bare client ID. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "adapters/mqtt_cfg.h"
#include "tests/unit/tap.h"

/* is_str, then free what the function under test allocated */
static void
is_owned(char *got, const char *want, const char *what)
{
	is_str(got, want, "%s", what);
	free(got);
}

int
main(void)
{
	struct mqtt_broker_cfg c = { .client_id = "ob-sensors", .workers = 4 };
	struct broker b = { .name = "sensors", .proto = &c };

	is_owned(mqtt_subscription(&b, "sensors/#"), "$share/ob-sensors/sensors/#", "4 workers share a plain filter");
	is_owned(mqtt_subscription(&b, "$share/mine/sensors/+/t"), "$share/mine/sensors/+/t",
	    "a $share/ topic is subscribed as written");
	is_owned(mqtt_worker_client_id(&b, 3), "ob-sensors-3", "worker 3 of 4 is CLIENT_ID-3");
	c.client_id = "site/a+b#c";
	is_owned(mqtt_subscription(&b, "x/+"), "$share/site_a_b_c/x/+", "/ + # in the client ID are made _ in the group");
	c.workers = 1;
	c.client_id = "ob-sensors";
	is_owned(mqtt_subscription(&b, "sensors/#"), "sensors/#", "1 worker subscribes the plain filter");
	is_owned(mqtt_worker_client_id(&b, 0), "ob-sensors", "1 worker is the bare client ID");
	ok(mqtt_workers(&b) == 1, "workers = 1: one process");
	return tap_done();
}
