# SPDX-License-Identifier: Apache-2.0
"""RabbitMQ restarted in the middle of a stream (durable queue, persistent
messages): every event applied exactly once, including events published
after the restart; oncebridge reconnects by itself without a restart."""
import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("amqp-rabbit-restart")
b.start_servers()
obtest.applied_table(b.pg)

N = 4000
ids, msgs = obtest.event_stream(N, dup_ratio=0.1, routing_key="rr.ev")
later_ids, later = obtest.event_stream(500, dup_ratio=0.1, routing_key="rr.late", seed=2)
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=100, prefetch=300),
                 [obtest.slow_route("rr", "rr-q", ["rr.#"], per_event_ms=1.0)])])
b.rabbit.declare_queue("rr-q", keys=["rr.#"])
b.rabbit.publish_many(msgs)

d = b.start()
at = obtest.wait_progress(b.pg, N // 4)
workers = b.worker_pids()
b.rabbit.restart()
t.ok(at < N, "RabbitMQ restarted mid-stream (%d of %d applied before)" % (at, N))
b.rabbit.publish_many(later)

b.wait_drained("rr-q", timeout=180)
obtest.exactly_once(t, b.pg, "rr", ids + later_ids)
t.is_(b.worker_pids(), workers, "the same worker process reconnected by itself")
t.ok(b.logs().count("connected to 127.0.0.1") >= 2, "oncebridge reconnected to the broker")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 0, "nothing dead-lettered")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
