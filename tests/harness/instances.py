# SPDX-License-Identifier: Apache-2.0
"""Several oncebridge instances -- separate daemons, as on separate hosts,
each with its own configuration directory -- as competing consumers of one
durable AMQP queue and one MQTT shared subscription ($share/GROUP/...),
against one PostgreSQL, with kill -9 of a whole instance (supervisor and
workers, as a host crash) rotating among them while a stream with 10 %
duplicates and a few poison messages is applied. Each killed instance is
started again at once, as systemd would.

One scenario, two sizes: tests/integration/several_instances.py (a few
thousand events, in make check) and tests/soak/instances_soak.py (make
soak: 100 000 events by default, plus the faults it passes in, such as a
PostgreSQL failover or a broker node loss).

run() returns the figures: events, faults injected, time, missing, doubled,
and whether every poison message has exactly one dead letter."""
import json
import os
import random
import shutil
import threading
import time

import obtest
import oncetest as ot

QUEUE = "inst-q"
GROUP = "inst"


class Instances:
    """count instances of oncebridge on b's servers (an obtest.MQTTBridge
    with b.rabbit set), one configuration directory each."""

    def __init__(self, b, count=3):
        self.b = b
        self.count = count
        self.daemons = [None] * count
        self.runs = [0] * count
        self.configs = []
        self.kills = 0
        ot.at_done(self._check_logs)

    def configure(self, per_event_ms=0.0, batch_size=200, main_overrides=None, amqp_overrides=None,
                  queue_arguments=None):
        """Broker files for both routes; each instance gets a copy whose
        MQTT client ID ends in its number (a session of its own in the
        shared group). amqp_overrides: more keys of the AMQP broker
        (e.g. "hosts" of a cluster); queue_arguments: of the queue's
        declaration (e.g. {"x-queue-type": "quorum"})."""
        b = self.b
        b.rabbit.declare_queue(QUEUE, keys=["inst.#"], arguments=queue_arguments)
        sleep = " FROM pg_sleep(%g)" % (per_event_ms / 1000.0) if per_event_ms else ""
        sql = "INSERT INTO applied (route, event_id, n) SELECT $1, $2, $3" + sleep
        amqp = obtest.applied_route("inst-amqp", QUEUE, sql=sql)
        mqtt = obtest.mqtt_route("inst-mqtt", "$share/%s/inst/+/reading" % GROUP, sql=sql)
        b.write_config([
            ("10-rabbit.conf", b.amqp_broker(name="rabbit", batch_size=batch_size, prefetch=2 * batch_size,
                                             **(amqp_overrides or {})), [amqp]),
            ("20-mosq.conf", b.mqtt_broker(name="mosq", client_id="ob-inst", mqtt_version=5), [mqtt]),
        ], **(main_overrides or {}))
        self.configs = [self._clone(k) for k in range(self.count)]

    def _clone(self, k):
        dest = os.path.join(self.b.dir, "etc-%d" % k)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.b.confdir, dest)
        path = os.path.join(dest, "conf.d", "20-mosq.conf")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('"ob-inst"', '"ob-inst-%d"' % k))
        return os.path.join(dest, "oncebridge.conf")

    def logpath(self, k, run):
        return os.path.join(self.b.dir, "instance-%d-%d.log" % (k, run))

    def start(self, k):
        self.runs[k] += 1
        self.daemons[k] = ot.Daemon(obtest.daemon_argv(self.configs[k]), self.logpath(k, self.runs[k]))
        return self.daemons[k]

    def wait_ready(self, k, timeout=90):
        d = self.daemons[k]
        d.wait_log(r"broker rabbit: connected to .*consuming", timeout=timeout)
        d.wait_log(r"broker mosq: (subscribed to |connected to .*session resumed)", timeout=timeout)

    def kill(self, k):
        """kill -9 of instance k's supervisor and workers, then start it
        again."""
        self.daemons[k].kill()
        self.kills += 1
        return self.start(k)

    def stop_all(self):
        return [d.terminate(timeout=30) for d in self.daemons if d]

    def logs(self):
        text = ""
        for k in range(self.count):
            for run in range(1, self.runs[k] + 1):
                p = self.logpath(k, run)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        text += f.read()
        return text

    def _check_logs(self, t):
        if any(self.runs):
            bad = obtest.log_errors(self.logs())
            t.ok(not bad, "the instances' logs show no sanitizer report, crash or unexpected process exit",
                 diag="\n".join(bad[:20]))


def streams(n, poison, seed=1):
    """The AMQP and the MQTT stream: n events each, 10 % published twice,
    and poison events (a business SQL data error: "n" is not an integer)
    spread through them. Returns (amqp ids, amqp messages, mqtt ids, mqtt
    items, poison ids)."""
    rng = random.Random(seed)
    aids, amsgs = obtest.event_stream(n, dup_ratio=0.1, routing_key="inst.a", seed=seed)
    mids, mitems = obtest.mqtt_stream(n, topic="inst/m/reading", dup_ratio=0.1, seed=seed + 1, prefix="inst.m")
    bad = []
    for i in range(poison):
        ea, em = "inst.a-poison-%d" % i, "inst.m-poison-%d" % i
        bad += [ea, em]
        amsgs.insert(rng.randrange(len(amsgs)), {"exchange": "amq.topic", "routing_key": "inst.a",
                                                  "body": json.dumps({"id": ea, "n": "not a number"})})
        mitems.insert(rng.randrange(len(mitems)), ("inst/m/reading", json.dumps({"id": em, "n": "x"})))
    return aids, amsgs, mids, mitems, bad


def _amqp_in_background(rabbit, msgs, chunk=2000):
    """Publish msgs chunk by chunk from a thread, retrying a chunk that
    fails (a broker node restarting); a retried chunk adds duplicates,
    which the ledger tolerates."""
    def run():
        try:
            for i in range(0, len(msgs), chunk):
                for attempt in range(120):
                    try:
                        rabbit.publish_many(msgs[i:i + chunk], timeout=120)
                        break
                    except Exception as e:
                        th.last_retry = e
                        time.sleep(0.5)
                else:
                    raise RuntimeError("could not publish AMQP chunk %d" % i)
        except Exception as e:
            th.error = e
    th = threading.Thread(target=run, daemon=True)
    th.error = None
    th.start()
    return th


def _settled(b, aids, mids, poison):
    applied = b.pg.scalar("SELECT count(DISTINCT (route, event_id)) FROM applied")
    dead = b.pg.scalar("SELECT count(DISTINCT event_id) FROM oncebridge.dead_letters WHERE event_id = ANY(%s)",
                       (poison,))
    return applied >= len(aids) + len(mids) and dead >= len(poison)


def ledger(b, route, ids):
    """(missing, doubled) of route against ids."""
    rows = b.pg.execute("SELECT event_id, count(*) FROM applied WHERE route = %s GROUP BY event_id", (route,))
    counts = {r[0]: r[1] for r in rows}
    expected = set(ids)
    missing = len(expected - set(counts))
    doubled = sum(1 for c in counts.values() if c > 1) + len(set(counts) - expected)
    return missing, doubled


def run(t, b, events, kills, poison=5, faults=(), per_event_ms=0.0, timeout=600, batch_size=200,
        main_overrides=None, **configure):
    """The scenario on b's servers. kills: instance kills spread over the
    stream, rotating among the instances; faults: (fraction, name,
    function(b)) run once when that fraction of the events is applied (a
    fault may replace b.pg: the ledger is read from b.pg at the end).
    main_overrides: keys of the main file (obtest.Bridge.main_config);
    configure: more arguments of Instances.configure. A fault that comes
    due after the whole stream was applied (the stream outran it) is still
    injected, and the ledger waits again. Returns the figures as a dict;
    asserts with t."""
    T0 = time.monotonic()
    inst = Instances(b)
    inst.configure(per_event_ms=per_event_ms, batch_size=batch_size, main_overrides=main_overrides, **configure)
    for k in range(inst.count):
        inst.start(k)
    for k in range(inst.count):
        inst.wait_ready(k)
    aids, amsgs, mids, mitems, bad = streams(events, poison)
    total = len(aids) + len(mids)
    obtest.note("%d instances ready at %.1f s; %d events (%d AMQP + %d MQTT messages with 10 %% duplicates and "
                "%d poison)" % (inst.count, time.monotonic() - T0, total, len(amsgs), len(mitems), len(bad)))
    t1 = time.monotonic()
    pubs = [_amqp_in_background(b.rabbit, amsgs),
            obtest.publish_in_background(b.mqtt, mitems, protocol=ot.MQTTv5, chunk=1000)]
    plan = sorted([((i + 1) / (kills + 1), "kill -9 of instance %d" % (i % inst.count),
                    (lambda k: lambda _b: inst.kill(k))(i % inst.count)) for i in range(kills)]
                  + list(faults), key=lambda f: f[0])
    done = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        applied = b.pg.scalar("SELECT count(*) FROM applied")
        while plan and applied >= plan[0][0] * total:
            frac, name, fn = plan.pop(0)
            obtest.note("%s at %d of %d applied (%.1f s)" % (name, applied, total, time.monotonic() - t1))
            fn(b)
            done.append(name)
            applied = b.pg.scalar("SELECT count(*) FROM applied")
        if not plan and _settled(b, aids, mids, bad):
            break
        time.sleep(0.05 if total < 20000 else 0.5)   # count(*) of a large table costs
    elapsed = time.monotonic() - t1
    for p in pubs:
        p.join(60)
        t.ok(p.error is None, "the stream was published", diag=repr(p.error))
    time.sleep(1.0)   # a late double application would show now
    am, ad = ledger(b, "inst-amqp", aids)
    mm, md = ledger(b, "inst-mqtt", mids)
    t.ok(am == 0 and ad == 0, "AMQP, one queue, %d instances: %d events, %d missing, %d applied twice"
         % (inst.count, len(aids), am, ad))
    t.ok(mm == 0 and md == 0, "MQTT, one $share group, %d instances: %d events, %d missing, %d applied twice"
         % (inst.count, len(mids), mm, md))
    dl = dict(b.pg.execute("SELECT event_id, count(*) FROM oncebridge.dead_letters WHERE event_id = ANY(%s)"
                           " GROUP BY event_id", (bad,)))
    applied_bad = b.pg.scalar("SELECT count(*) FROM applied WHERE event_id = ANY(%s)", (bad,))
    t.ok(len(dl) == len(bad) and all(c == 1 for c in dl.values()) and applied_bad == 0,
         "each of the %d poison messages has exactly one dead letter and no effect" % len(bad),
         diag="dead letters: %r, applied: %d" % (dl, applied_bad))
    t.ok(not plan, "every planned fault was injected (%d of %d)" % (len(done), len(done) + len(plan)),
         diag="left: %r" % [p[1] for p in plan])
    stops = inst.stop_all()
    t.ok(all(s == 0 for s in stops), "every instance stops cleanly", diag=repr(stops))
    figures = {"events": total, "poison": len(bad), "kills": inst.kills, "faults": done,
               "seconds": round(elapsed, 1), "missing": am + mm, "doubled": ad + md}
    obtest.note("figures: " + json.dumps(figures))
    return figures
