# SPDX-License-Identifier: Apache-2.0
"""A wide failure still reaches retry.max_attempts (issue 11, path 2).

A trigger raises an unclassified SQLSTATE (XX000) for most events, so that
far more distinct failing events than the old 256-slot attempt table are in
flight at once (batch_size 500). Each failing event must be dead-lettered
after exactly retry.max_attempts attempts, the good events of the same
batches applied exactly once, and the queues drained: nothing is requeued
forever. The same events go to a second route on a quorum queue with
x-delivery-limit (its broker-side dead-letter exchange catches what the
broker drops): nothing may be dropped by the broker, every failing event is
dead-lettered by oncebridge, and the same event ID on the two routes keeps
two separate counts. A few failing events on the quorum queue were returned
twice before oncebridge starts: their x-delivery-count counts as earlier
attempts, so they are dead-lettered at their first failure in oncebridge."""
import json
import re
import time

import obtest
import oncetest as ot

MAX_ATTEMPTS = 3
DELIVERY_LIMIT = 4      # the broker drops after DELIVERY_LIMIT + 1 deliveries (3.10)
N_EVENTS = 500          # per queue
WAIT_S = 25             # bound for everything to settle

t = ot.TAP()
started = time.monotonic()
b = obtest.Bridge("amqp-wide")
b.start_servers()
obtest.applied_table(b.pg)
b.pg.execute("ALTER TABLE applied ADD COLUMN bad boolean NOT NULL DEFAULT false")
b.pg.execute("CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$"
             " BEGIN IF NEW.bad THEN RAISE EXCEPTION 'simulated internal error for %', NEW.event_id"
             " USING ERRCODE = 'XX000'; END IF; RETURN NEW; END $$")
b.pg.execute("CREATE TRIGGER applied_refuse_bad BEFORE INSERT ON applied FOR EACH ROW EXECUTE FUNCTION refuse_bad()")


def route(name, queue):
    return obtest.applied_route(name, queue,
                                sql="INSERT INTO applied (route, event_id, n, bad) VALUES ($1, $2, $3, $4)",
                                params=["route", "event_id", "json:n", "json:bad"])


b.write_config([("10-rabbit.conf", b.amqp_broker(prefetch=1000, batch_size=500, batch_linger_ms=20),
                 [route("wide", "wide-q"), route("wideq", "wide-qq")])],
               retry={"initial_ms": 20, "max_ms": 200, "max_attempts": MAX_ATTEMPTS})
b.rabbit.declare_queue("wide-q", keys=["wide.#"])
# what the broker itself drops at the delivery limit lands in dropped-q
b.rabbit.declare_queue("dropped-q", exchange="amq.direct", keys=["dropped"])
b.rabbit.declare_queue("wide-qq", keys=["wideq.#"],
                       arguments={"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
                                  "x-dead-letter-exchange": "amq.direct",
                                  "x-dead-letter-routing-key": "dropped"})

# failing events returned twice before oncebridge starts (x-delivery-count 2)
worn = ["worn-%d" % i for i in range(5)]
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "wideq.x",
                        "body": json.dumps({"id": e, "n": -1, "bad": True})} for e in worn])
for _ in range(MAX_ATTEMPTS - 1):
    got = ot.wait_until(lambda: b.rabbit.get_messages("wide-qq", max_count=len(worn), ack=False), 10,
                        desc="the worn events")
    obtest.note("returned %d messages, x-delivery-count %s" % (len(got), sorted({(p.headers or {}).get(
        "x-delivery-count") for _, p, _ in got}, key=str)))

# one good event in eight; the same event IDs on both queues
ids = ["w-%04d" % i for i in range(N_EVENTS)]
good = [e for i, e in enumerate(ids) if i % 8 == 0]
bad = [e for i, e in enumerate(ids) if i % 8 != 0]
messages = []
for key in ("wide.x", "wideq.x"):
    for i, e in enumerate(ids):
        messages.append({"exchange": "amq.topic", "routing_key": key,
                         "body": json.dumps({"id": e, "n": i, "bad": i % 8 != 0})})
b.rabbit.publish_many(messages)
obtest.note("%d bad and %d good events on each of wide-q (classic) and wide-qq (quorum, x-delivery-limit %d)"
            % (len(bad), len(good), DELIVERY_LIMIT))

d = b.start()


def dead_ids(consumer):
    return {r[0] for r in b.pg.execute("SELECT event_id FROM oncebridge.dead_letters WHERE consumer = %s",
                                       (consumer,))}


def settled():
    return (len(dead_ids("wide")) >= len(bad) and len(dead_ids("wideq")) >= len(bad) + len(worn)
            and b.pg.scalar("SELECT count(DISTINCT (route, event_id)) FROM applied") >= 2 * len(good))


t0 = time.monotonic()
try:
    ot.wait_until(settled, WAIT_S, interval=0.5, desc="every bad event dead-lettered, every good one applied")
    obtest.note("settled after %.1f s" % (time.monotonic() - t0))
except TimeoutError as e:
    obtest.note(str(e))


def queue_counts():
    """{queue: (ready, unacked)} from one rabbitmqctl call (each costs seconds on a loaded machine)."""
    out = b.rabbit.ctl("-q", "list_queues", "--formatter", "json", "name", "messages_ready",
                       "messages_unacknowledged")
    rows = json.loads(out[out.find("["):])
    return {r["name"]: (int(r["messages_ready"]), int(r["messages_unacknowledged"])) for r in rows}


counts = {}
try:
    ot.wait_until(lambda: counts.update(queue_counts()) or counts["wide-q"] == counts["wide-qq"] == (0, 0),
                  10, interval=0.5, desc="queues wide-q and wide-qq drained")
except TimeoutError as e:
    obtest.note(str(e))

log = b.logs()
seen = [int(x) for x in re.findall(r"\(attempt (\d+) of %d\)" % MAX_ATTEMPTS, log)]
dropped = counts["dropped-q"][0]
obtest.note("retry log lines: %d, highest attempt logged: %s; dead letters: wide %d, wideq %d; "
            "dropped by the broker: %d" % (len(seen), max(seen) if seen else None, len(dead_ids("wide")),
                                           len(dead_ids("wideq")), dropped))

for consumer, queue, failing in (("wide", "wide-q", set(bad)), ("wideq", "wide-qq", set(bad) | set(worn))):
    got = dead_ids(consumer)
    missing = sorted(failing - got)
    t.ok(not missing, "route %s: every one of %d failing events is dead-lettered (%d are)"
         % (consumer, len(failing), len(got)), diag="missing: %s" % missing[:10])
    t.ok(got <= failing, "route %s: only failing events are dead-lettered" % consumer,
         diag=str(sorted(got - failing)[:10]))
    rows = b.pg.execute("SELECT count(*), count(DISTINCT event_id), min(attempts), max(attempts),"
                        " min(sqlstate), max(sqlstate) FROM oncebridge.dead_letters WHERE consumer = %s", (consumer,))
    t.ok(rows[0][0] == rows[0][1] and rows[0][2] == MAX_ATTEMPTS and rows[0][3] == MAX_ATTEMPTS
         and rows[0][4] == rows[0][5] == "XX000",
         "route %s: each dead letter once, after %d attempts, SQLSTATE XX000" % (consumer, MAX_ATTEMPTS), diag=str(rows))
    obtest.exactly_once(t, b.pg, consumer, good)
    ready, unacked = counts[queue]
    t.ok(ready == 0 and unacked == 0, "queue %s is drained: nothing is requeued forever" % queue,
         diag="ready %d, unacked %d" % (ready, unacked))

t.is_(dropped, 0, "the broker dropped nothing at the quorum queue's delivery limit")
rows = b.pg.execute("SELECT event_id, attempts, reason FROM oncebridge.dead_letters WHERE event_id LIKE 'worn-%%'")
retried = [e for e in worn if re.search(r"event ID %s \(attempt" % e, log)]
t.ok(len(rows) == len(worn) and all(r[1] == MAX_ATTEMPTS and "x-delivery-count" in r[2] for r in rows)
     and not retried, "events the broker returned %d times before count those deliveries (x-delivery-count):"
     " dead-lettered at their first failure in oncebridge" % (MAX_ATTEMPTS - 1), diag="%s; retried: %s" % (rows[:2], retried))
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer IN ('wide', 'wideq')"),
      2 * N_EVENTS + len(worn), "every event has its claim on each route")
t.ok(d.alive(), "oncebridge is still running")
rc = d.terminate(timeout=20)
t.is_(rc, 0, "clean stop")
t.ok(not obtest.log_errors(b.logs()), "no crash reports in the log")
obtest.note("wall time %.1f s" % (time.monotonic() - started))
raise SystemExit(t.done())
