/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of MQTT URLs: our forms (mqtt://, mqtts://, ws://, wss://,
 * IPv6 addresses in brackets) mapped to the URIs paho-mqtt-c 1.3 takes,
 * the malformed ones refused, and the helpers for a list of servers. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/mqtt_conn.h"
#include "tests/unit/tap.h"

int
main(void)
{
	static const struct { const char *url, *uri; bool tls; } good[] = {
		{ "mqtt://broker.example", "tcp://broker.example:1883", false },
		{ "mqtt://10.0.0.7:1884", "tcp://10.0.0.7:1884", false },
		{ "mqtt://broker.example/", "tcp://broker.example:1883", false },
		{ "mqtts://broker.example", "ssl://broker.example:8883", true },
		{ "mqtt://[::1]:1883", "tcp://[::1]:1883", false },
		{ "mqtt://[::1]", "tcp://[::1]:1883", false },
		{ "mqtts://[2001:db8::7]:8883", "ssl://[2001:db8::7]:8883", true },
		{ "ws://broker.example", "ws://broker.example:80", false },
		{ "ws://broker.example:8080/mqtt", "ws://broker.example:8080/mqtt", false },
		{ "ws://[::1]:8080/mqtt", "ws://[::1]:8080/mqtt", false },
		{ "ws://broker.example:8080/", "ws://broker.example:8080", false },
		{ "wss://broker.example/mqtt?x=1", "wss://broker.example:443/mqtt?x=1", true },
	};
	static const char *const bad[] = {
		"http://broker.example", "mqtt://", "mqtt://:1883", "mqtt://broker.example:0",
		"mqtt://broker.example:65536", "mqtt://broker.example:x", "mqtt://u:p@broker.example",
		"mqtt://broker.example/topic", "mqtt://::1:1883", "mqtt://[::1", "mqtt://[::1]x:1883",
		"mqtt://[not-v6]:1883", "mqtt://[fe80::1%25eth0]:1883", "ws://broker.example/a:b",
		"ws://broker.example/a b", "ws://broker.example/a#b", "wss://u@broker.example/mqtt",
	};
	char *uris[] = { "tcp://a:1883", "tcp://[::1]:1884", "tcp://c:1883", NULL };
	char *text;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *uri = NULL;
		bool tls = !good[i].tls;
		const char *err = mqtt_url_parse(good[i].url, &uri, &tls);

		ok(err == NULL && uri && strcmp(uri, good[i].uri) == 0 && tls == good[i].tls, "\"%s\" is paho's \"%s\"%s",
		    good[i].url, good[i].uri, good[i].tls ? " over TLS" : "");
		if (err)
			printf("#   error: %s\n", err);
		else if (strcmp(uri, good[i].uri) != 0)
			printf("#   got \"%s\"\n", uri);
		free(uri);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(mqtt_url_parse(bad[i], NULL, NULL) != NULL, "\"%s\" is refused", bad[i]);

	ok(mqtt_uri_same_scheme("tcp://a:1", "tcp://[::1]:2"), "tcp and tcp: same scheme");
	ok(!mqtt_uri_same_scheme("tcp://a:1", "ssl://a:2"), "tcp and ssl: not the same scheme");
	ok(!mqtt_uri_same_scheme("ws://a:1", "wss://a:2"), "ws and wss: not the same scheme");
	ok(mqtt_uri_ipv6("ssl://[::1]:8883") && !mqtt_uri_ipv6("ssl://a:8883"), "an IPv6 host is seen");
	ok(mqtt_uri_index(uris, 3, "[::1]:1884") == 1, "paho's report without a scheme names the second server");
	ok(mqtt_uri_index(uris, 3, "tcp://c:1883") == 2, "paho's report with a scheme names the third server");
	ok(mqtt_uri_index(uris, 3, NULL) == 0, "no report: the first server");
	text = mqtt_servers_text(uris, 3);
	is_str(text, "tcp://a:1883, tcp://[::1]:1884 or tcp://c:1883", "the servers, for messages");
	free(text);
	return tap_done();
}
