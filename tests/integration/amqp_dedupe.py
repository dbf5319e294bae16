# SPDX-License-Identifier: Apache-2.0
"""AMQP into PostgreSQL: every event applied once when its event ID is
published 1-5 times interleaved with other events, for each of three routes
(two on the same queue, one on another queue that takes the event ID from
the AMQP message_id property). Real RabbitMQ and PostgreSQL."""
import json
import random

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("amqp-dedupe")
b.start_servers()
obtest.applied_table(b.pg)

N = 400
rng = random.Random(7)
ids = ["ev-%04d-%s" % (i, rng.getrandbits(32)) for i in range(N)]
copies = {e: rng.randint(1, 5) for e in ids}
messages = []
for e in ids:
    for _ in range(copies[e]):
        messages.append({"exchange": "amq.topic", "routing_key": "ev.meter.%d" % rng.randint(1, 9),
                         "body": json.dumps({"id": e, "n": copies[e]}), "message_id": e})
rng.shuffle(messages)
obtest.note("%d events published as %d messages" % (N, len(messages)))

routes = [
    obtest.applied_route("r1", "q1", declare_queue=True, bind_exchange="amq.topic", bind_keys=["ev.#"]),
    obtest.applied_route("r1b", "q1"),
    obtest.applied_route("r2", "q2", declare_queue=True, bind_exchange="amq.topic", bind_keys=["ev.#"],
                         event_id="property:message_id"),
]
b.write_config([("10-rabbit.conf", b.amqp_broker(), routes)])
b.rabbit.declare_queue("q1", keys=["ev.#"])
b.rabbit.declare_queue("q2", keys=["ev.#"])
b.rabbit.publish_many(messages)
d = b.start()

b.wait_drained("q1")
b.wait_drained("q2")
for r in ("r1", "r1b", "r2"):
    obtest.exactly_once(t, b.pg, r, ids)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events"), 3 * N,
      "processed_events holds a claim for every (route, event)")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "no dead letters")

# the same events again, after they were applied: all duplicates
again = [m for m in messages[: len(messages) // 2]]
b.rabbit.publish_many(again)
b.wait_drained("q1")
b.wait_drained("q2")
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), 3 * N, "republished events change nothing")
t.ok(d.alive(), "oncebridge is still running")

rc = d.terminate(timeout=20)
t.is_(rc, 0, "SIGTERM stops oncebridge with status 0")
log = b.logs()
t.ok("worker stopped" in log, "the worker reports its stop", diag=log[-2000:])
raise SystemExit(t.done())
