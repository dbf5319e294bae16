# SPDX-License-Identifier: Apache-2.0
"""Network faults between oncebridge and PostgreSQL, through
tests/harness/faultproxy.py: every database session (an AMQP worker with a
stream of 10 % duplicates and poison messages, an outbox relay, retention)
goes through one proxy; database.response_timeout_ms is 3 s. A deferred
trigger makes each batch's COMMIT take about 0.2 s, so that a fault in the
middle of the stream usually meets a COMMIT in flight. One fault at a time
hits every session open at that moment, while new sessions pass:

  commit     blackhole (both directions, nothing closes) mid-stream: the
             COMMIT in flight has an unknown outcome for oncebridge (it
             never reached the server)
  answer     blackhole of the server's direction only, mid-stream: the
             COMMIT in flight commits, its answer is lost (the redelivered
             batch must meet its claims)
  idle       blackhole between batches: the stream has drained; the next
             batch and the next outbox rows meet the dead sessions
  reset      a TCP RST mid-stream

After each, the same processes must be back at work by themselves; the
ledger at the end is exact (every event once, poison dead-lettered once,
every outbox row published and received). Prints the time to detect and to
recover of each fault (see netfault.py)."""
import json

import faultproxy
import netfault
import obtest
import oncetest as ot

WAVE = 800
POISON_EVERY = 250
RESPONSE_TIMEOUT_MS = 3000

t = ot.TAP()
b = obtest.Bridge("net-pg")
b.start_servers()
obtest.applied_table(b.pg)
b.pg.execute("CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
             " $$BEGIN PERFORM pg_sleep(0.002); RETURN NULL; END$$")
b.pg.execute("CREATE CONSTRAINT TRIGGER applied_slow_commit AFTER INSERT ON applied"
             " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()")
b.rabbit.declare_queue("out-q", keys=["out.#"])
pgp = faultproxy.FaultProxy(("127.0.0.1", b.pg.port))
conninfo = "host=127.0.0.1 port=%d dbname=oncetest user=postgres" % pgp.port
broker = b.amqp_broker(name="rabbit", heartbeat=10, batch_size=100, prefetch=300)
route = obtest.applied_route("np", "np-q", declare_queue=True, bind_exchange="amq.topic", bind_keys=["np.#"])
b.write_config([("10-rabbit.conf", broker, [route])],
               database={"conninfo": conninfo, "statement_timeout_ms": 2000,
                         "response_timeout_ms": RESPONSE_TIMEOUT_MS})
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write("outbox = { batch_size = 100; poll_interval_ms = 200; };\n")
b.rabbit.declare_queue("np-q", keys=["np.#"])

all_ids, poison, emitted, probes = [], [], [], []


def applied():
    return obtest.progress(b.pg)


def wave(k, wait=True):
    """Publish a wave of the inbound stream (duplicates, a few poison
    messages) and emit outbox rows; with wait, return when the worker is
    applying it."""
    ids, msgs = obtest.event_stream(WAVE, dup_ratio=0.1, routing_key="np.w%d" % k, seed=k)
    for i in range(0, len(msgs), POISON_EVERY):
        poison.append("np.w%d-poison-%d" % (k, i))
        msgs.insert(i, {"exchange": "amq.topic", "routing_key": "np.w%d" % k,
                        "body": json.dumps({"id": poison[-1], "n": "not a number"})})
    all_ids.extend(ids)
    at = applied()
    b.rabbit.publish_many(msgs)
    emitted.extend(r[0] for r in b.pg.execute(
        "SELECT oncebridge.emit('rabbit', 'out.w%d', jsonb_build_object('n', g)) FROM generate_series(1, 300) AS g"
        % k))
    if wait:
        ot.wait_until(lambda: applied() >= at + 300, 120, interval=0.01, desc="wave %d under way" % k)


def probe_events():
    """New events right after a fault; true once all are applied."""
    probes.append(1)
    ids, msgs = obtest.event_stream(20, dup_ratio=0, routing_key="np.probe%d" % len(probes), seed=len(probes))
    b.rabbit.publish_many(msgs)
    all_ids.extend(ids)
    return lambda: b.pg.scalar("SELECT count(DISTINCT event_id) FROM applied WHERE event_id = ANY(%s)", (ids,)) == 20


def probe_rows():
    """New outbox rows right after a fault; true once all are published."""
    ids = [r[0] for r in b.pg.execute("SELECT oncebridge.emit('rabbit', 'out.probe', jsonb_build_object('n', g))"
                                      " FROM generate_series(1, 5) AS g")]
    emitted.extend(ids)
    return lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE event_id = ANY(%s)"
                               " AND published_at IS NOT NULL", (ids,)) == 5


d = b.start()
wave(0)
ot.wait_until(lambda: obtest.applied_events(b.pg, "np") >= len(all_ids), 120, interval=0.2, desc="wave 0 applied")
workers = sorted(b.worker_pids())
procs = {"worker": (pgp, probe_events, applied), "relay": (pgp, probe_rows)}
results = {}

wave(1)
results["commit"] = netfault.measure("commit", procs, netfault.blackhole_conns("both"))
ot.wait_until(lambda: obtest.applied_events(b.pg, "np") >= len(all_ids), 120, interval=0.2, desc="wave 1 applied")
wave(2)
results["answer"] = netfault.measure("answer", procs, netfault.blackhole_conns("down"))
ot.wait_until(lambda: obtest.applied_events(b.pg, "np") >= len(all_ids), 120, interval=0.2, desc="wave 2 applied")
netfault.blackhole_conns("both")(pgp, pgp.current())
wave(3, wait=False)
results["idle"] = netfault.measure("idle", procs, lambda p, conns: None)
wave(4)
results["reset"] = netfault.measure("reset", procs, netfault.reset_conns)

for name, r in results.items():
    for who in ("worker", "relay"):
        t.ok(who in r, "%s: the %s is back at work by itself" % (name, who))
log = b.logs()
t.ok("database.response_timeout_ms" in log, "the round-trip deadline dropped the blackholed sessions")

ot.wait_until(lambda: obtest.applied_events(b.pg, "np") >= len(all_ids), 180, interval=0.5,
              desc="every event applied")
b.wait_drained("np-q", timeout=120)
obtest.exactly_once(t, b.pg, "np", all_ids)
dead = b.pg.execute("SELECT event_id FROM oncebridge.dead_letters ORDER BY event_id")
t.is_([r[0] for r in dead], sorted(poison), "every poison message dead-lettered once (%d)" % len(poison))
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") == 0, 120,
              interval=0.5, desc="every outbox row published")
seen = set()
ch_conn = b.rabbit.connection()
ch = ch_conn.channel()


def take():
    while True:
        method, props, _body = ch.basic_get("out-q", auto_ack=True)
        if method is None:
            return set(emitted) <= seen
        seen.add(props.message_id)


ot.wait_until(take, 60, interval=0.2, desc="every outbox row received")
ch_conn.close()
t.ok(set(emitted) <= seen, "every outbox row arrived (%d)" % len(emitted))
t.is_(sorted(b.worker_pids()), workers, "the same worker and relay processes all along")
t.is_(d.terminate(timeout=20), 0, "clean stop")
pgp.close()
raise SystemExit(t.done())
