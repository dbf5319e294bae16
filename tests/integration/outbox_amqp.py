# SPDX-License-Identifier: Apache-2.0
"""The outbox relay to RabbitMQ. Thousands of events emitted from SQL in
committed transactions (and some in rolled-back ones) all arrive, none of
the rolled-back ones do, and each carries its event ID (message_id and the
event_id header). kill -9 of oncebridge mid-publish and a RabbitMQ restart
mid-publish: every committed event arrives at least once, copies carry the
same event ID, and an oncebridge route on the other side (consuming what
the relay publishes) applies each exactly once."""
import json
import signal

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("outbox-amqp")
b.start_servers()
obtest.applied_table(b.pg)
b.rabbit.declare_queue("watch-q", keys=["orders.#"])

route = obtest.applied_route("orders-in", "orders-q", declare_queue=True, bind_exchange="amq.topic",
                             bind_keys=["orders.#"], event_id="property:message_id")
broker = b.amqp_broker(name="rabbit")
b.write_config([("10-rabbit.conf", broker, [route])])
# the relay's settings go into the same broker file
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write('outbox = { batch_size = 200; poll_interval_ms = 500; stats_interval_s = 2; };\n')
b.rabbit.declare_queue("orders-q", keys=["orders.#"])

conn = b.pg.connect(autocommit=False)
emitted = {}   # event ID -> the payload emitted with it


def emit(first, count, per_tx=50, rollback_every=0):
    """Emit events first..first+count-1; every rollback_every-th transaction
    is rolled back. Returns (committed ids, rolled-back ids)."""
    committed, rolled = [], []
    cur = conn.cursor()
    for start in range(first, first + count, per_tx):
        ids = []
        for i in range(start, min(start + per_tx, first + count)):
            cur.execute("SELECT oncebridge.emit('rabbit', %s, %s::jsonb)",
                        ("orders.created.%d" % (i % 7), json.dumps({"order": i})))
            ids.append(cur.fetchone()[0])
            emitted[ids[-1]] = {"order": i}
        if rollback_every and (start // per_tx) % rollback_every == rollback_every - 1:
            conn.rollback()
            rolled += ids
        else:
            conn.commit()
            committed += ids
    return committed, rolled


def emit_bulk(first, count):
    """Emit count events in one transaction; returns their IDs."""
    cur = conn.cursor()
    cur.execute("SELECT oncebridge.emit('rabbit', 'orders.bulk.' || (g %% 7), jsonb_build_object('order', g))"
                " FROM generate_series(%s, %s) AS g", (first, first + count - 1))
    ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


def published():
    return b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NOT NULL")


def watch(expected, timeout=120):
    """Read watch-q until every expected event ID was seen; returns the
    messages as (event_id, header event_id, body)."""
    got = []
    seen = set()
    ch_conn = b.rabbit.connection()
    ch = ch_conn.channel()

    def take():
        while True:
            method, props, body = ch.basic_get("watch-q", auto_ack=True)
            if method is None:
                break
            hdr = (props.headers or {}).get("event_id")
            if isinstance(hdr, bytes):
                hdr = hdr.decode()
            got.append((props.message_id, hdr, body))
            seen.add(props.message_id)
        return expected <= seen

    try:
        ot.wait_until(take, timeout, interval=0.2, desc="%d events on watch-q" % len(expected))
    finally:
        ch_conn.close()
    return got


# 1. committed and rolled-back transactions
committed, rolled = emit(0, 3000, rollback_every=5)
obtest.note("%d events committed, %d rolled back" % (len(committed), len(rolled)))
d = b.start()
got = watch(set(committed))
ids = [g[0] for g in got]
t.ok(set(committed) <= set(ids), "every committed event arrived (%d)" % len(committed))
t.ok(not (set(rolled) & set(ids)), "no rolled-back event arrived")
t.ok(all(g[1] == g[0] for g in got), "each message carries its event ID as message_id and header")
wrong = [g for g in got if json.loads(g[2]) != emitted.get(g[0])]
t.ok(not wrong, "each payload arrives as it was emitted with its event ID", diag=repr(wrong[:5]))
obtest.wait_applied(b.pg, "orders-in", len(committed), timeout=60)
obtest.exactly_once(t, b.pg, "orders-in", committed)

# 2. kill -9 mid-publish
more = emit_bulk(10000, 8000)
ot.wait_until(lambda: published() >= len(committed) + 1000, 60, interval=0.005, desc="publishing under way")
d.kill(signal.SIGKILL)
at = published()
t.ok(at < len(committed) + len(more), "oncebridge killed mid-publish (%d of %d published)"
     % (at, len(committed) + len(more)))
d = b.start()
got = watch(set(more))
ids = [g[0] for g in got]
t.ok(set(more) <= set(ids), "after the kill every committed event arrived at least once")
t.ok(all(g[1] == g[0] for g in got), "republished copies carry the same event ID")
obtest.wait_applied(b.pg, "orders-in", len(committed) + len(more), timeout=90)
obtest.exactly_once(t, b.pg, "orders-in", committed + more)

# 3. RabbitMQ restarted mid-publish
last = emit_bulk(20000, 8000)
ot.wait_until(lambda: published() >= len(committed) + len(more) + 1000, 60, interval=0.005,
              desc="publishing under way")
b.rabbit.restart()
t.ok(published() < len(committed) + len(more) + len(last), "RabbitMQ restarted mid-publish")
got = watch(set(last), timeout=180)
t.ok(set(last) <= {g[0] for g in got}, "after a broker restart every committed event arrived")
obtest.wait_applied(b.pg, "orders-in", len(committed) + len(more) + len(last), timeout=120)
obtest.exactly_once(t, b.pg, "orders-in", committed + more + last)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0,
      "nothing is left unpublished")
t.ok(d.alive(), "oncebridge recovered by itself")
log = b.logs()
t.ok("waiting, oldest" in log, "the relay logs pending rows and the oldest age", diag=log[-1500:])
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
