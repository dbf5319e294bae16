# SPDX-License-Identifier: Apache-2.0
"""A three-node RabbitMQ cluster with quorum queues (issue 13). oncebridge
knows the three nodes (url and hosts) and declares its queue as a quorum
queue with a delivery limit. An AMQP stream with 10 % duplicates and some
poison messages is applied while kill -9 takes down the node the worker is
connected to, mid-stream (the node is started again and rejoins), and then
the node that leads the queue; all the while the outbox relay publishes
rows emitted every few milliseconds into a quorum queue of the same
cluster. At the end every event was applied exactly once, every poison
message dead-lettered once, and every outbox row arrived (the reader
dedupes by event ID: none missing). Notes give the recovery times: the
worker consuming on another node, applying again, and the relay caught up
(before the relay reconnected on nothing but nacks, it stalled here for
minutes on a channel RabbitMQ kept nacking after the queue's election).
Real PostgreSQL and RabbitMQ 3.10."""
import json
import re
import threading
import time

import obtest
import oncetest as ot

N1, N2, POISON = 2000, 2000, 10
BATCH, PREFETCH = 100, 300
DELIVERY_LIMIT = 20

t = ot.TAP()
b = obtest.Bridge("amqp-cluster", rabbit=False)
cluster = ot.RabbitCluster(b.dir)
t0 = time.monotonic()
b.pg.start()                  # first: initdb has a deadline, and three booting nodes take the CPU
b.install_schema()
cluster.start()
obtest.note("PostgreSQL and a 3-node RabbitMQ cluster up in %.1f s" % (time.monotonic() - t0))
b.rabbit = cluster.nodes[0]   # url, user and password of the broker file
obtest.applied_table(b.pg)
first = cluster.nodes[0]
first.declare_queue("clw-q", keys=["clout.#"], arguments={"x-queue-type": "quorum"})

route = obtest.slow_route("cl", "cl-q", ["cl.#"], per_event_ms=2.0)
route.update(queue_type="quorum", delivery_limit=DELIVERY_LIMIT)
broker = b.amqp_broker(hosts=["127.0.0.1:%d" % n.port for n in cluster.nodes[1:]], heartbeat=5,
                       batch_size=BATCH, prefetch=PREFETCH)
b.write_config([("10-rabbit.conf", broker, [route])],
               retry={"initial_ms": 100, "max_ms": 1000, "max_attempts": 3})
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write("outbox = { batch_size = 100; poll_interval_ms = 100; confirm_timeout_ms = 3000; };\n")

d = b.start()
ot.wait_until(lambda: "consuming 1 queue" in d.log(), 60, desc="the worker consuming")
info = cluster.queue_info("cl-q")
t.is_(info.get("type"), "quorum", "oncebridge declared its queue as a quorum queue")
t.is_(len(info.get("members", [])), 3, "the quorum queue has a member on each of the three nodes")


def worker_node():
    """The node of the worker's last connection, from the log."""
    ports = re.findall(r"connected to 127\.0\.0\.1:(\d+) \(node \d of 3\), consuming", d.log())
    return cluster.by_port(int(ports[-1]))


def relay_nodes():
    return {int(p) for p in re.findall(r"connected to 127\.0\.0\.1:(\d+) \(node \d of 3\) for publishing", d.log())}


# the outbox: rows emitted every few milliseconds from the start to the end
emitted, stop_emit = [], threading.Event()


def emitter():
    conn = b.pg.connect(autocommit=False)
    cur = conn.cursor()
    i = 0
    while not stop_emit.is_set():
        ids = []
        for _ in range(10):
            cur.execute("SELECT oncebridge.emit('rabbit', %s, %s::jsonb)", ("clout.%d" % (i % 3), json.dumps({"i": i})))
            ids.append(cur.fetchone()[0])
            i += 1
        conn.commit()
        emitted.extend(ids)
        time.sleep(0.02)
    conn.close()


emit_thread = threading.Thread(target=emitter, daemon=True)
emit_thread.start()


def stream(n, prefix, seed):
    ids, msgs = obtest.event_stream(n, dup_ratio=0.1, routing_key="cl." + prefix, seed=seed)
    poison = ["%s-poison-%d" % (prefix, i) for i in range(POISON)]
    for i, e in enumerate(poison):
        msgs.insert((i + 1) * len(msgs) // (POISON + 1),
                    {"exchange": "amq.topic", "routing_key": "cl." + prefix, "body": json.dumps({"id": e, "n": "x"})})
    return ids, poison, msgs


# the relay has caught up: no row older than a second waits, and rows
# emitted since a second after the kill ($1) are being published
OUTBOX_CAUGHT_UP = ("SELECT NOT EXISTS (SELECT 1 FROM oncebridge.outbox WHERE published_at IS NULL"
                    " AND created_at < clock_timestamp() - interval '1 second')"
                    " AND EXISTS (SELECT 1 FROM oncebridge.outbox WHERE published_at IS NOT NULL"
                    " AND created_at > %s::timestamptz + interval '1 second')")


def kill_and_recover(node, what):
    """kill -9 node mid-stream; returns seconds from the kill until (the
    worker had a new broker connection, or None if it kept its own;
    messages delivered after the kill were applied; the outbox relay
    caught up)."""
    consumed_before = d.log().count("consuming 1 queue")
    moves = node is worker_node()
    k_db = b.pg.scalar("SELECT clock_timestamp()::text")
    at = obtest.progress(b.pg)
    k = time.monotonic()
    cluster.kill(node)
    seen = {} if moves else {"reconnect": None}

    def recovered():
        now = time.monotonic() - k
        if "reconnect" not in seen and d.log().count("consuming 1 queue") > consumed_before:
            seen["reconnect"] = now
        # past what the worker held at the kill (prefetched, and a batch
        # that may commit after it): messages delivered since
        if "applying" not in seen and obtest.progress(b.pg) > at + PREFETCH + BATCH:
            seen["applying"] = now
        if "outbox" not in seen and b.pg.scalar(OUTBOX_CAUGHT_UP, (k_db,)):
            seen["outbox"] = now
        return len(seen) == 3
    ot.wait_until(recovered, 180, interval=0.05, desc="the worker and the relay at work again")
    obtest.note("%s: kill -9 of %s at %d applied; worker %s; applying again after %.2f s; the outbox relay "
                "caught up after %.2f s"
                % (what, node.node, at, "reconnected after %.2f s to %s" % (seen["reconnect"], worker_node().node)
                   if moves else "kept its connection to " + worker_node().node, seen["applying"], seen["outbox"]))
    return seen["reconnect"], seen["applying"], seen["outbox"]


# 1. the node the worker is connected to, mid-stream
ids1, poison1, msgs1 = stream(N1, "a", 1)
first.publish_many(msgs1)
obtest.wait_progress(b.pg, N1 // 4)
a = worker_node()
rec1, app1, out1 = kill_and_recover(a, "the worker's node")
t.ok(rec1 is not None and worker_node() is not a, "the worker moved to another node after kill -9 of its own")
t1 = time.monotonic()
cluster.restart(a)
cluster.wait_members_online("cl-q")
cluster.wait_members_online("clw-q")     # or the next kill leaves it one member of three
obtest.note("%s restarted and back in the queue in %.1f s" % (a.node, time.monotonic() - t1))

# 2. the node that leads the queue now, in the middle of more events
leader = cluster.leader("cl-q")
if leader is a:                 # cannot be: it lost the lead when it died
    leader = cluster.nodes[(cluster.nodes.index(a) + 1) % 3]
w = worker_node()
ids2, poison2, msgs2 = stream(N2, "b", 2)
[n for n in cluster.alive() if n is not leader][0].publish_many(msgs2)
obtest.wait_progress(b.pg, N1 + N2 // 4)
rec2, app2, out2 = kill_and_recover(leader, "the queue leader's node (%s the worker's)"
                              % ("also" if leader is w else "not"))

# the end: every event once, every poison message dead-lettered once
ids, poison = ids1 + ids2, poison1 + poison2
ot.wait_until(lambda: b.pg.scalar("SELECT count(DISTINCT event_id) FROM applied") >= len(ids) and
              b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters") >= len(poison), 180, interval=0.5,
              desc="every event applied or dead-lettered")
survivor = cluster.alive()[0]
info = ot.wait_until(lambda: (lambda i: i if (i["messages_ready"], i["messages_unacknowledged"]) == (0, 0) else None)(
    cluster.queue_info("cl-q")), 60, interval=0.5, desc="cl-q drained")
new_leader = info["leader"]
obtest.exactly_once(t, b.pg, "cl", ids)
dl = b.pg.execute("SELECT event_id, count(*) FROM oncebridge.dead_letters GROUP BY event_id")
t.is_(sorted(r[0] for r in dl), sorted(poison), "every poison message and nothing else dead-lettered")
t.ok(all(r[1] == 1 for r in dl), "each poison message dead-lettered once", diag=repr([r for r in dl if r[1] != 1]))

# the outbox: every row published through the faults and delivered
stop_emit.set()
emit_thread.join()
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") == 0,
              120, interval=0.2, desc="every outbox row published")


def drain(node, queue):
    """The message IDs of everything in queue, consumed with a prefetch
    window and acks of many at once (basic.get on a quorum queue costs two
    Raft commands a message)."""
    conn = node.connection()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=500)
    out, tag, acked = [], None, None
    for method, props, _ in ch.consume(queue, inactivity_timeout=3):
        if method is None:
            break
        out.append(props.message_id)
        tag = method.delivery_tag
        if len(out) % 250 == 0:
            ch.basic_ack(tag, multiple=True)
            acked = tag
    if tag != acked:
        ch.basic_ack(tag, multiple=True)
    ch.cancel()
    conn.close()
    return out


got = drain(survivor, "clw-q")
missing = set(emitted) - set(got)
obtest.note("outbox: %d rows emitted, %d messages read, %d distinct, %d republished copies"
            % (len(emitted), len(got), len(set(got)), len(got) - len(set(got))))
t.ok(not missing, "every outbox row arrived (%d rows)" % len(emitted), diag="missing: %s" % sorted(missing)[:10])
t.ok(len(relay_nodes()) >= 2, "the relay published through more than one node (%d)" % len(relay_nodes()))

obtest.note("recovery: worker's node lost -> reconnected %.2f s, applying %.2f s, outbox %.2f s; leader's node lost "
            "-> %s, applying %.2f s, outbox %.2f s; new leader %s"
            % (rec1, app1, out1, "reconnected %.2f s" % rec2 if rec2 is not None else "connection kept", app2, out2,
               new_leader))
obtest.note("the whole test took %.0f s" % (time.monotonic() - t0))
t.ok(d.alive(), "oncebridge is running after both node losses")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
