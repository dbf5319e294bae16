# SPDX-License-Identifier: Apache-2.0
"""kill -9 of oncebridge in the middle of a stream of thousands of events,
then a restart: every event's effect is present exactly once and the queue
is drained. Then kill -9 of the worker alone: the supervisor restarts it and
again nothing is lost or applied twice."""
import signal

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("amqp-kill9")
b.start_servers()
obtest.applied_table(b.pg)

N = 5000
ids, msgs = obtest.event_stream(N, dup_ratio=0.1, routing_key="k9.ev")
obtest.note("%d events as %d messages" % (N, len(msgs)))
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=100, prefetch=300),
                 [obtest.slow_route("k9", "k9-q", ["k9.#"], per_event_ms=1.0)])])
b.rabbit.declare_queue("k9-q", keys=["k9.#"])
b.rabbit.publish_many(msgs)

# 1. the whole daemon killed with SIGKILL mid-stream
d = b.start()
at = obtest.wait_progress(b.pg, N // 5)
d.kill(signal.SIGKILL)
t.ok(at < N, "oncebridge was killed mid-stream (%d of %d applied)" % (at, N))

# 2. restarted: the worker alone killed mid-stream; the supervisor restarts it
d = b.start()
at2 = obtest.wait_progress(b.pg, at + N // 4)
workers = ot.wait_until(lambda: b.worker_pids(), 10, desc="a worker")
import os
os.kill(workers[0], signal.SIGKILL)
t.ok(at2 < N, "the worker was killed mid-stream (%d of %d applied)" % (at2, N))
ot.wait_until(lambda: [p for p in b.worker_pids() if p not in workers], 15, desc="a new worker")

b.wait_drained("k9-q", timeout=180)
obtest.exactly_once(t, b.pg, "k9", ids)
t.ok("restarting it in" in b.logs(), "the supervisor logged the worker's restart")
t.ok(d.alive(), "oncebridge is running after both kills")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
