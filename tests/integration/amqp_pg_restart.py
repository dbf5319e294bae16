# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL stopped with pg_ctl stop -m immediate (a crash) in the middle
of a stream and started again a few seconds later: every event applied
exactly once, the queue drained, and oncebridge recovered by itself: the
same worker process, no restart."""
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("amqp-pg-restart")
b.start_servers()
obtest.applied_table(b.pg)

N = 4000
ids, msgs = obtest.event_stream(N, dup_ratio=0.1, routing_key="pg.ev")
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=100, prefetch=300),
                 [obtest.slow_route("pgr", "pgr-q", ["pg.#"], per_event_ms=1.0)])])
b.rabbit.declare_queue("pgr-q", keys=["pg.#"])
b.rabbit.publish_many(msgs)

d = b.start()
at = obtest.wait_progress(b.pg, N // 4)
workers = b.worker_pids()
b.pg.stop(mode="immediate")
t.ok(at < N, "PostgreSQL crashed mid-stream (%d of %d applied)" % (at, N))
time.sleep(4)
t.ok(d.alive(), "oncebridge survives the database outage")
b.pg.start_again()

b.wait_drained("pgr-q", timeout=180)
obtest.exactly_once(t, b.pg, "pgr", ids)
t.is_(b.worker_pids(), workers, "the same worker process recovered by itself")
log = b.logs()
t.ok("could not connect to the database" in log or "could not apply a batch" in log,
     "the outage was noticed and logged", diag=log[-3000:])
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "no event was dead-lettered for a transient failure")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
