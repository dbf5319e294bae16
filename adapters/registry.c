/* SPDX-License-Identifier: Apache-2.0 */
/* The static list of broker protocols, looked up by the broker's "type",
 * and the few a test program registers beside it (adapter_register). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"

#define EXTRA_MAX 4

const struct adapter *const adapters[] = {
	&amqpc_adapter,
	&mqtt_adapter,
	NULL,
};

static const struct adapter *extra[EXTRA_MAX];

void
adapter_register(const struct adapter *a)
{
	for (size_t i = 0; i < EXTRA_MAX; i++) {
		if (extra[i] == a)
			return;
		if (extra[i] == NULL) {
			extra[i] = a;
			return;
		}
	}
	abort(); /* a test program registering more than it needs */
}

const struct adapter *
adapter_find(const char *name)
{
	for (size_t i = 0; adapters[i]; i++)
		if (strcmp(adapters[i]->name, name) == 0)
			return adapters[i];
	for (size_t i = 0; i < EXTRA_MAX && extra[i]; i++)
		if (strcmp(extra[i]->name, name) == 0)
			return extra[i];
	return NULL;
}
