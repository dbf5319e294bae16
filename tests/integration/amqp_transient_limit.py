# SPDX-License-Identifier: Apache-2.0
"""Transient database failures must not use up a quorum queue's delivery
limit (a loss path found while closing issue 11). While the business table
is locked, every batch fails with a statement timeout (57014: transient,
never dead-lettered). If each failure gave the batch back to the broker,
every return would raise the message's x-delivery-count, and a quorum
queue with x-delivery-limit would drop it (here into a broker-side
dead-letter queue): neither applied nor in oncebridge.dead_letters. The
worker must instead hold the batch and retry it in place while the
database answers, keeping its broker connection alive with heartbeats
(heartbeat 2 s, the table locked for 6 s). Real RabbitMQ and PostgreSQL."""
import json
import time

import obtest
import oncetest as ot

DELIVERY_LIMIT = 2
N = 100
LOCK_S = 6

t = ot.TAP()
b = obtest.Bridge("amqp-transient-limit")
b.start_servers()
obtest.applied_table(b.pg)
b.rabbit.declare_queue("dropped-q", exchange="amq.direct", keys=["dropped"])
b.rabbit.declare_queue("tl-q", keys=["tl.#"],
                       arguments={"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                                  "x-dead-letter-exchange": "amq.direct",
                                  "x-dead-letter-routing-key": "dropped"})
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=50, prefetch=100, heartbeat=2),
                 [obtest.applied_route("tl", "tl-q")])],
               database={"conninfo": b.pg.conninfo, "statement_timeout_ms": 300},
               retry={"initial_ms": 100, "max_ms": 400, "max_attempts": 3})
d = b.start()
ot.wait_until(lambda: "consuming 1 queue" in d.log(), 30, desc="the worker consuming")

# lock the business table, then publish: every batch times out
lock = b.pg.connect(autocommit=False)
lock.cursor().execute("LOCK TABLE applied IN ACCESS EXCLUSIVE MODE")
ids = ["tl-%04d" % i for i in range(N)]
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "tl.x", "body": json.dumps({"id": e, "n": i})}
                       for i, e in enumerate(ids)])
t0 = time.monotonic()
ot.wait_until(lambda: d.log().count("canceling statement due to statement timeout") >= 3, 20,
              desc="three batches timed out")
time.sleep(max(0.0, LOCK_S - (time.monotonic() - t0)))
failures = d.log().count("canceling statement due to statement timeout")
lock.rollback()
lock.close()
obtest.note("%d transient failures while the table was locked for %d s" % (failures, LOCK_S))
t.ok(failures > DELIVERY_LIMIT, "more transient failures (%d) than the queue's delivery limit (%d)"
     % (failures, DELIVERY_LIMIT))

b.wait_drained("tl-q", timeout=60)
obtest.exactly_once(t, b.pg, "tl", ids)
t.is_(b.rabbit.queue_counts("dropped-q")[0], 0, "the broker dropped nothing at the delivery limit")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "nothing dead-lettered for a transient failure")
t.is_(d.log().count("consuming 1 queue"), 1,
      "one broker connection throughout: heartbeats kept it while the batch was held (heartbeat 2 s, %d s)" % LOCK_S)
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
