# SPDX-License-Identifier: Apache-2.0
"""SIGHUP reload during a steady AMQP stream. A changed route (new business
SQL) is applied from the reload on, every event exactly once across the
change; an unchanged broker's worker keeps running (same pid); a new broker
file starts a worker; a broken configuration is logged and the old one
keeps running; a removed broker file stops its worker. Real RabbitMQ and
PostgreSQL."""
import os
import re
import signal
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("reload-sighup")
b.start_servers()
b.pg.execute("CREATE TABLE applied (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL,"
             " n integer, v text, at timestamptz NOT NULL DEFAULT clock_timestamp())")


def route(name, queue, version, keys, per_event_ms=0.0):
    sleep = " FROM pg_sleep(%g)" % (per_event_ms / 1000.0) if per_event_ms else ""
    return obtest.applied_route(name, queue, declare_queue=True, bind_exchange="amq.topic", bind_keys=keys,
                                sql="INSERT INTO applied (route, event_id, n, v) SELECT $1, $2, $3, '%s'%s"
                                    % (version, sleep))


def config(r1_version, with_b2=True, with_b3=False):
    files = [("10-rabbit.conf", b.amqp_broker("rabbit", batch_size=50, prefetch=200),
              [route("r1", "q1", r1_version, ["one.#"], per_event_ms=1.0)])]
    if with_b2:
        files.append(("20-rabbit2.conf", b.amqp_broker("rabbit2"), [route("r2", "q2", "v1", ["two.#"])]))
    if with_b3:
        files.append(("30-rabbit3.conf", b.amqp_broker("rabbit3"), [route("r3", "q3", "v1", ["three.#"])]))
    b.write_config(files)


def started_pids(broker):
    """pids of the workers the supervisor started for broker, in order."""
    return [int(p) for p in re.findall(r'started worker \d+ for broker "%s" \(pid (\d+)\)' % re.escape(broker),
                                       b.daemon.log())]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def hup():
    os.kill(b.daemon.pid, signal.SIGHUP)


N = 4000
ids1, msgs1 = obtest.event_stream(N, dup_ratio=0.1, routing_key="one.ev")
ids2, msgs2 = obtest.event_stream(300, dup_ratio=0.1, routing_key="two.ev", seed=2)
config("v1")
b.rabbit.declare_queue("q1", keys=["one.#"])
b.rabbit.declare_queue("q2", keys=["two.#"])
b.rabbit.declare_queue("q3", keys=["three.#"])
d = b.start()
b.rabbit.publish_many(msgs1)
b.rabbit.publish_many(msgs2)
obtest.wait_progress(b.pg, 600)
r2_pid = ot.wait_until(lambda: started_pids("rabbit2"), 10, desc="rabbit2 worker")[0]
r1_pid = started_pids("rabbit")[0]

# 1. change route r1's SQL and add a broker file, mid-stream
config("v2", with_b3=True)
hup()
ot.wait_until(lambda: "reloaded configuration" in d.log(), 15, desc="reload logged")
at = b.pg.scalar("SELECT count(*) FROM applied WHERE route = 'r1'")
t.ok(at < N, "the reload came mid-stream (%d of %d events of r1 applied)" % (at, N))
ot.wait_until(lambda: len(started_pids("rabbit")) >= 2, 30, desc="r1's worker restarted")
t.ok(not alive(r1_pid) or r1_pid not in b.worker_pids(), "the changed broker's worker was replaced")
t.ok(alive(r2_pid) and started_pids("rabbit2") == [r2_pid], "the unchanged broker's worker kept running")
t.eventually(lambda: started_pids("rabbit3"), 15, "the new broker file started a worker")
ids3, msgs3 = obtest.event_stream(200, dup_ratio=0.2, routing_key="three.ev", seed=3)
b.rabbit.publish_many(msgs3)
b.wait_drained("q1", timeout=180)
b.wait_drained("q2")
b.wait_drained("q3")
obtest.exactly_once(t, b.pg, "r1", ids1)
obtest.exactly_once(t, b.pg, "r2", ids2)
obtest.exactly_once(t, b.pg, "r3", ids3)
v1 = b.pg.scalar("SELECT count(*) FROM applied WHERE route = 'r1' AND v = 'v1'")
v2 = b.pg.scalar("SELECT count(*) FROM applied WHERE route = 'r1' AND v = 'v2'")
obtest.note("r1: %d events by the old SQL, %d by the new" % (v1, v2))
t.ok(v1 > 0 and v2 > 0 and v1 + v2 == N, "events after the reload ran the new SQL (%d old, %d new)" % (v1, v2))
last_old = b.pg.scalar("SELECT max(at) FROM applied WHERE route = 'r1' AND v = 'v1'")
first_new = b.pg.scalar("SELECT min(at) FROM applied WHERE route = 'r1' AND v = 'v2'")
t.ok(last_old <= first_new, "no old-SQL effect after the first new-SQL effect (one worker at a time)")

# 2. a broken configuration: logged, the old one keeps running
with open(os.path.join(b.confdir, "conf.d", "10-rabbit.conf"), "a") as f:
    f.write("routes = ( { name = \"r1\"; \n")   # a syntax error
pids_before = sorted(b.worker_pids())
hup()
t.eventually(lambda: "keeping the running configuration" in d.log(), 15,
             "a broken configuration is rejected with a log line")
t.ok(re.search(r"10-rabbit\.conf:\d+: .*syntax error", d.log()) is not None,
     "the log names the file and line of the error", diag=d.log()[-1500:])
time.sleep(1)
t.is_(sorted(b.worker_pids()), pids_before, "no worker was restarted")
ids4, msgs4 = obtest.event_stream(300, dup_ratio=0.1, routing_key="one.more", seed=4)
b.rabbit.publish_many(msgs4)
b.wait_drained("q1")
obtest.exactly_once(t, b.pg, "r1", ids1 + ids4)
t.is_(b.pg.scalar("SELECT count(*) FROM applied WHERE route = 'r1' AND v = 'v2' AND event_id LIKE 'one.more-%'"),
      300, "the old (running) configuration still applies new events")

# 3. remove a broker file: its worker drains and stops
config("v2", with_b2=False, with_b3=True)
hup()
t.eventually(lambda: not alive(r2_pid), 20, "a removed broker file stops its worker")
t.ok('worker 0 of broker "rabbit2" was removed' in d.log(), "the log says why")
time.sleep(1)
t.ok(len(started_pids("rabbit2")) == 1, "the removed broker is not restarted")
t.ok(d.alive(), "oncebridge is running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
