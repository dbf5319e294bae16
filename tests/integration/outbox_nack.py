# SPDX-License-Identifier: Apache-2.0
"""The outbox relay against a broker that nacks and one that is away for a
while. RabbitMQ nacks publishes to a full queue (x-max-length with
x-overflow reject-publish): the relay publishes the nacked rows again
until the consuming route has made room, and nothing is lost. Then
RabbitMQ is stopped for several seconds while rows keep being emitted:
the relay waits, reconnects by itself and publishes everything."""
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("outbox-nack")
b.start_servers()
obtest.applied_table(b.pg)

# a slow consumer of a small queue that rejects publishes when full
b.rabbit.declare_queue("full-q", keys=["nack.#"], arguments={"x-max-length": 200, "x-overflow": "reject-publish"})
route = obtest.slow_route("drain", "full-q", ["nack.#"], per_event_ms=1.0)
route["declare_queue"] = False
del route["bind_exchange"], route["bind_keys"]
route["event_id"] = "property:message_id"
b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=50, prefetch=100), [route])])
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write("outbox = { batch_size = 300; poll_interval_ms = 200; confirm_timeout_ms = 3000; };\n")


def emit(first, count):
    return [r[0] for r in b.pg.execute(
        "SELECT oncebridge.emit('rabbit', 'nack.' || g, jsonb_build_object('n', g)) FROM generate_series(%s, %s) AS g",
        (first, first + count - 1))]


N = 3000
ids = emit(1, N)
d = b.start()
obtest.wait_applied(b.pg, "drain", N, timeout=120)
obtest.exactly_once(t, b.pg, "drain", ids)
log = b.logs()
t.ok("the broker nacked" in log, "the broker nacked publishes to the full queue and the relay published them again",
     diag=log[-1500:])

# the broker away for a while, rows emitted meanwhile
b.rabbit.stop()
more = emit(N + 1, 1000)
time.sleep(5)
t.ok(d.alive(), "oncebridge survives the broker being away")
b.rabbit.start()
obtest.wait_applied(b.pg, "drain", N + len(more), timeout=180)
obtest.exactly_once(t, b.pg, "drain", ids + more)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0, "nothing is left unpublished")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
