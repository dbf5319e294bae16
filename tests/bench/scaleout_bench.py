# SPDX-License-Identifier: Apache-2.0
"""Benchmark of scale-out: 1, 2 and 4 oncebridge instances (separate
daemons, one worker each) as competing consumers of one durable AMQP queue
and of one MQTT shared subscription ($share/GROUP/...), against one
PostgreSQL. Each run drains a preloaded backlog (JSON events, 10 %
duplicates, persistent, fsync on), prints events/s and the speed-up over
one instance, and ends with the exactly-once ledger. Not a pass/fail test.

On a 2-core machine the servers, the load and every instance share the
same two cores, so expect the gain to stop early; the table shows where."""
import os
import shutil
import sys
import time

import obtest
import oncetest as ot

COUNT = int(os.environ.get("BENCH_COUNT", "20000"))
INSTANCES = [int(x) for x in os.environ.get("BENCH_INSTANCES", "1,2,4").split(",")]


def clone_config(b, k, replace=()):
    """A copy of b's configuration directory for instance k, with text
    replacements applied to its broker files; returns the main file."""
    dest = os.path.join(b.dir, "etc-%d" % k)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(b.confdir, dest)
    confd = os.path.join(dest, "conf.d")
    for fn in os.listdir(confd):
        path = os.path.join(confd, fn)
        with open(path) as f:
            text = f.read()
        for old, new in replace:
            text = text.replace(old, new)
        with open(path, "w") as f:
            f.write(text)
    return os.path.join(dest, "oncebridge.conf")


def start_instances(b, configs, tag):
    b.started = time.time()
    return [ot.Daemon(obtest.daemon_argv(c), os.path.join(b.dir, "%s-%d.log" % (tag, k)))
            for k, c in enumerate(configs)]


def drain(b, route, n, daemons):
    c0 = ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench"), 120, interval=0.01,
                       desc="first event")
    t0 = time.time()
    ot.wait_until(lambda: obtest.applied_events(b.pg, route, "bench") >= n, 900, interval=0.05,
                  desc="%s drained" % route)
    # from the first applied event, so that start-up is not counted (unless
    # the whole run was quicker than that first look)
    rate = (n - c0) / (time.time() - t0) if c0 < n else n / (time.time() - b.started)
    for d in daemons:
        d.terminate(timeout=30)
    return rate


def amqp_run(b, n):
    name = "amqp%d" % n
    ids, msgs = obtest.event_stream(COUNT, routing_key="bench." + name, seed=n)
    b.rabbit.declare_queue("q-" + name, keys=["bench." + name])
    route = obtest.applied_route(name, "q-" + name, sql_table="bench")
    b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=500, batch_linger_ms=20,
                                                      prefetch=1000), [route])], log_level="warning")
    b.rabbit.publish_many(msgs)
    daemons = start_instances(b, [clone_config(b, k) for k in range(n)], name)
    rate = drain(b, name, len(ids), daemons)
    obtest.ledger(b.pg, name, ids, table="bench")
    return rate


def mqtt_run(b, n):
    name = "mqtt%d" % n
    topic = "$share/%s/meters/+/reading" % name
    ids, items = obtest.mqtt_stream(COUNT, topic="meters/%d/reading" % n, seed=n, prefix=name)
    route = obtest.mqtt_route(name, topic, sql_table="bench")
    b.write_config([("10.conf", b.mqtt_broker(name="mosq", client_id="scale-%s" % name, mqtt_version=5), [route])])
    configs = [clone_config(b, k, [("scale-%s" % name, "scale-%s-%d" % (name, k))]) for k in range(n)]
    # create the shared-subscription sessions, then let the backlog build
    daemons = start_instances(b, configs, name + "-sub")
    for d in daemons:
        d.wait_log("subscribed to |session resumed", timeout=60)
    for d in daemons:
        d.terminate(timeout=30)
    b.mqtt.publish_many(items, qos=1, protocol=ot.MQTTv5)
    daemons = start_instances(b, configs, name)
    rate = drain(b, name, len(ids), daemons)
    obtest.ledger(b.pg, name, ids, table="bench")
    return rate


def main():
    b = obtest.MQTTBridge("bench-scale")
    b.rabbit = ot.RabbitMQ(b.dir)
    b.start_servers()
    b.pg.execute("CREATE TABLE bench (route text, event_id text, n int)")
    rows = []
    for label, run in (("AMQP, one queue", amqp_run), ("MQTT 5, one $share group", mqtt_run)):
        base = None
        for n in INSTANCES:
            rate = run(b, n)
            base = base or rate
            rows.append((label, n, rate, rate / base))
    print("machine: %d cores; %d events (+10%% duplicate messages) per run, fsync on, one PostgreSQL"
          % (os.cpu_count(), COUNT))
    print("%-28s %10s %14s %10s" % ("path", "instances", "events/s", "speed-up"))
    for label, n, rate, up in rows:
        print("%-28s %10d %14.0f %9.2fx" % (label, n, rate, up))
    return 0


if __name__ == "__main__":
    sys.exit(main())
