/* SPDX-License-Identifier: Apache-2.0 */
/* systemd notifications through libsystemd's sd_notify: READY=1 once the
 * configuration is loaded and PostgreSQL has answered, STATUS= lines for
 * "systemctl status", RELOADING=1/STOPPING=1, and WATCHDOG=1 pings, which
 * the supervisor sends only while no worker is stalled. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "bridge/common/log.h"
#include "bridge/daemon/notify.h"
#include "bridge/common/util.h"

static void
notify_send(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_debug("could not notify systemd: %s", strerror(-rc));
}

void
notify_ready(const char *status)
{
	char *msg = xasprintf("READY=1\nSTATUS=%s", status);

	notify_send(msg);
	free(msg);
}

void
notify_reloading(void)
{
	notify_send("RELOADING=1\nSTATUS=reloading the configuration");
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=stopping: draining the workers");
}

void
notify_status(const char *fmt, ...)
{
	char text[512], *msg;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	msg = xasprintf("STATUS=%s", text);
	notify_send(msg);
	free(msg);
}

void
notify_watchdog(void)
{
	notify_send("WATCHDOG=1");
}

int64_t
notify_watchdog_interval_ms(void)
{
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return 0;
	return (int64_t)(usec / 2000) > 0 ? (int64_t)(usec / 2000) : 1;
}
