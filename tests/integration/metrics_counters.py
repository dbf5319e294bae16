# SPDX-License-Identifier: Apache-2.0
"""The Prometheus endpoint after an AMQP run with duplicates and poison
messages: /metrics parses as Prometheus text format (every sample typed,
counters named *_total, histogram buckets cumulative), and its counters
match the rows in the database: applied events per route = business rows,
dead-lettered per route = dead_letters rows, received = acked = messages
published, applied + duplicates + dead-lettered = messages per route,
commit-latency and batch-size histograms count every batch. A second
broker with 40 routes has per-route series for every one of them (there
was a cap of 32 per broker). The dead letters waiting match the table by
route and class once the maintenance process has counted them; the
last-applied timestamps, build info and per-role process metrics are
there. Real RabbitMQ and PostgreSQL."""
import json
import random
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("metrics-counters")
b.start_servers()
obtest.applied_table(b.pg)
port = ot.free_port()

N = 500
ids, msgs = obtest.event_stream(N, dup_ratio=0.3, routing_key="mx.ev", seed=5)
rng = random.Random(9)
poison = []
for i in range(7):
    poison.append({"exchange": "amq.topic", "routing_key": "mx.bad", "body": '{"id": "bad-json-%d", ' % i})
    poison.append({"exchange": "amq.topic", "routing_key": "mx.bad", "body": json.dumps({"n": i})})
    # a data error in the business SQL (22P02): n is not an integer
    poison.append({"exchange": "amq.topic", "routing_key": "mx.bad",
                   "body": json.dumps({"id": "bad-n-%d" % i, "n": "not a number"})})
stream = msgs + poison
rng.shuffle(stream)
M = len(stream)
obtest.note("%d events as %d messages, %d of them poison" % (N, M, len(poison)))

routes = [obtest.applied_route("r1", "mq", declare_queue=True, bind_exchange="amq.topic", bind_keys=["mx.#"]),
          obtest.applied_route("r1b", "mq")]
# a second broker with more routes than the old cap of 32, each route
# taking the two events published with its own routing key
WIDE = 40
wide = [obtest.applied_route("w%02d" % i, "wq", match="wide.%d" % i) for i in range(WIDE)]
wide[0].update(declare_queue=True, bind_exchange="amq.topic", bind_keys=["wide.#"])
b.write_config([("10-rabbit.conf", b.amqp_broker("rabbit", batch_size=50), routes),
                ("20-wide.conf", b.amqp_broker("wide"), wide)],
               metrics={"listen": "127.0.0.1:%d" % port})
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write('outbox = { poll_interval_ms = 200; };\n')
b.rabbit.declare_queue("mq", keys=["mx.#"])
b.rabbit.declare_queue("obq", keys=["ob.#"])
b.rabbit.declare_queue("wq", keys=["wide.#"])
b.rabbit.publish_many(stream)
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "wide.%d" % i,
                        "body": json.dumps({"id": "wide-%d-%d" % (i, k), "n": k})}
                       for i in range(WIDE) for k in range(2)])
started = time.time()
d = b.start()
b.wait_drained("mq")
b.wait_drained("wq")
ot.wait_until(lambda: obtest.http_get("http://127.0.0.1:%d/metrics" % port)[0] == 200, 10, desc="metrics")

status, text = obtest.http_get("http://127.0.0.1:%d/metrics" % port)
t.is_(status, 200, "GET /metrics answers 200")
try:
    s = obtest.parse_prometheus(text)
    t.ok(True, "/metrics parses as Prometheus text format (%d samples)" % len(s))
except ValueError as e:
    s = {}
    t.ok(False, "/metrics parses as Prometheus text format", diag=str(e))


def m(name, **labels):
    return obtest.metric(s, name, **labels)


t.is_(m("oncebridge_messages_received_total", broker="rabbit"), float(M), "received = messages published (%d)" % M)
t.is_(m("oncebridge_messages_acked_total", broker="rabbit"), float(M), "acked = messages published")
t.is_(m("oncebridge_dead_letters_total", broker="rabbit"),
      float(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters")), "dead letters = rows in dead_letters")
for r in ("r1", "r1b"):
    applied = b.pg.scalar("SELECT count(*) FROM applied WHERE route = %s", (r,))
    dead = b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE consumer = %s", (r,))
    a = m("oncebridge_events_applied_total", broker="rabbit", route=r)
    dl = m("oncebridge_events_dead_lettered_total", broker="rabbit", route=r)
    dup = m("oncebridge_events_duplicate_total", broker="rabbit", route=r)
    obtest.note("route %s: applied %s (rows %d), duplicates %s, dead-lettered %s (rows %d)" % (r, a, applied, dup, dl, dead))
    t.is_(a, float(applied), "route %s: applied = business rows (%d)" % (r, applied))
    t.is_(dl, float(dead), "route %s: dead-lettered = dead_letters rows (%d)" % (r, dead))
    t.is_(dup, float(len(msgs) - N), "route %s: duplicates = copies published (%d)" % (r, len(msgs) - N))
    t.is_((a or 0) + (dl or 0) + (dup or 0), float(M), "route %s: applied + duplicates + dead-lettered = messages" % r)
batches = m("oncebridge_batches_total", broker="rabbit")
t.is_(m("oncebridge_commit_duration_seconds_count", broker="rabbit"), batches, "commit histogram counts every batch")
t.is_(m("oncebridge_batch_size_messages_count", broker="rabbit"), batches,
      "batch-size histogram counts every batch")
t.is_(m("oncebridge_batch_size_messages_sum", broker="rabbit"), float(M), "batch sizes add up to the messages")
buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s.items()
                 if k[0] == "oncebridge_commit_duration_seconds_bucket" and dict(k[1])["broker"] == "rabbit")
t.ok(buckets and all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1))
     and buckets[-1][1] == batches, "commit buckets are cumulative, +Inf = count")
t.is_(m("oncebridge_worker_up", broker="rabbit", role="worker", index="0"), 1.0, "worker_up is 1")
t.is_(m("oncebridge_database_connected", broker="rabbit", index="0"), 1.0, "database_connected is 1")
t.is_(m("oncebridge_broker_connected", broker="rabbit", index="0"), 1.0, "broker_connected is 1")
t.is_(m("oncebridge_worker_restarts_total", broker="rabbit", role="worker", index="0"), 0.0, "no restarts")

# every route of the wide broker has its series, the last ones included
wide_applied = [m("oncebridge_events_applied_total", broker="wide", route="w%02d" % i) for i in range(WIDE)]
t.is_(wide_applied, [2.0] * WIDE, "each of the %d routes of broker wide has applied_total 2" % WIDE)
last = [m("oncebridge_route_last_applied_timestamp_seconds", broker="wide", route="w%02d" % i) for i in range(WIDE)]
t.ok(all(v is not None and started - 1 <= v <= time.time() + 1 for v in last),
     "each route's last-applied timestamp is a time of this run", diag=str(last))
t.ok(m("oncebridge_route_last_applied_timestamp_seconds", broker="rabbit", route="r1") is not None,
     "route r1 has a last-applied timestamp")
info = [dict(k[1]) for k in s if k[0] == "oncebridge_build_info"]
t.ok(len(info) == 1 and info[0].get("version") and info[0].get("libpq") and "amqp_library" in info[0]
     and "mqtt_library" in info[0], "build_info has the version and the libraries", diag=str(info))
roles = set(dict(k[1])["role"] for k in s if k[0] == "oncebridge_process_resident_memory_bytes")
t.is_(sorted(roles), ["relay", "retention", "supervisor", "worker"], "process metrics for every role")
t.ok(all(v > 0 for k, v in s.items() if k[0] in ("oncebridge_process_resident_memory_bytes",
                                                   "oncebridge_process_open_fds",
                                                   "oncebridge_process_start_time_seconds")),
     "resident memory, open descriptors and start times are positive")


# the dead letters waiting, once the maintenance process has counted them
# (every 10 s), match the table by route and class
def waiting():
    x = obtest.parse_prometheus(obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1])
    got = {(dict(k[1]).get("route", ""), dict(k[1])["class"]): v for k, v in x.items()
           if k[0] == "oncebridge_dead_letters_waiting" and dict(k[1])["broker"] == "rabbit"}
    return got if sum(got.values()) == M_dead else None


M_dead = b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters")
got = t.eventually(waiting, 25, "oncebridge_dead_letters_waiting adds up to the %d dead letters" % M_dead,
                   interval=0.5) or {}
rows = b.pg.execute("SELECT coalesce(consumer, ''), CASE WHEN consumer IS NULL THEN 'unrouted'"
                    " WHEN sqlstate IS NOT NULL THEN 'sql_error' ELSE 'invalid' END, count(*)"
                    " FROM oncebridge.dead_letters GROUP BY 1, 2")
want = {(r, "invalid"): 0.0 for r in ("r1", "r1b")}
want.update({(r, "sql_error"): 0.0 for r in ("r1", "r1b")})
want[("", "unrouted")] = 0.0
want.update({(r, c): float(n) for r, c, n in rows})
t.is_(got, want, "dead letters waiting by route and class = the table's rows")

# the outbox: rows emitted, published and confirmed, none waiting
b.pg.execute("SELECT oncebridge.emit('rabbit', 'ob.e' || g, jsonb_build_object('n', g)) FROM generate_series(1, 40) g")


def outbox_done():
    x = obtest.parse_prometheus(obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1])
    ok = (obtest.metric(x, "oncebridge_outbox_confirmed_total", broker="rabbit", index="0") == 40.0
          and obtest.metric(x, "oncebridge_outbox_pending", broker="rabbit") == 0.0)
    return x if ok else None


x = ot.wait_until(outbox_done, 20, interval=0.5, desc="outbox metrics: 40 confirmed, none pending")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0,
      "outbox: with oncebridge_outbox_pending 0, no row of the table is unpublished")
t.is_(obtest.metric(x, "oncebridge_outbox_published_total", broker="rabbit", index="0"), 40.0,
      "outbox: published_total 40")
t.is_(obtest.metric(x, "oncebridge_outbox_relay_active", broker="rabbit", index="0"), 1.0, "the relay is active")
t.is_(obtest.http_get("http://127.0.0.1:%d/health" % port), (200, "ok\n"), "/health is 200 ok")
t.is_(obtest.http_get("http://127.0.0.1:%d/nothing" % port)[0], 404, "an unknown path is 404")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
