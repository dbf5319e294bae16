/* The static list of broker protocols, looked up by the broker's "type". */
#include "config.h"

#include <string.h>

#include "adapters/adapter.h"

const struct adapter *const adapters[] = {
	&amqpc_adapter,
	&mqtt_adapter,
	NULL,
};

const struct adapter *
adapter_find(const char *name)
{
	for (size_t i = 0; adapters[i]; i++)
		if (strcmp(adapters[i]->name, name) == 0)
			return adapters[i];
	return NULL;
}
