# SPDX-License-Identifier: Apache-2.0
"""Poison messages end in dead_letters with their reason and do not block
the messages behind them: invalid JSON, a missing event ID, an event ID that
is too long, a payload over the limit, a business SQL data error (22xxx) and
constraint violation (23xxx), a message no route matches. A redelivered
poison message is not dead-lettered twice. An unclassified error (missing
function) is retried and dead-lettered after retry.max_attempts."""
import json

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("amqp-poison")
b.start_servers()
b.pg.execute("CREATE TABLE readings (id bigserial PRIMARY KEY, event_id text NOT NULL, meter text NOT NULL,"
             " kwh numeric(10,3) NOT NULL CHECK (kwh >= 0))")
b.pg.execute("CREATE FUNCTION fail_unclassified(e text) RETURNS void LANGUAGE plpgsql AS $$"
             " BEGIN RAISE EXCEPTION 'simulated internal error for %', e USING ERRCODE = 'XX000'; END $$")

routes = [
    {
        "name": "readings",
        "queue": "poison-q",
        "declare_queue": True,
        "bind_exchange": "amq.topic",
        "bind_keys": ["meters.#", "other.#"],
        "match": "meters.#",
        "event_id": "json:id",
        "sql": "INSERT INTO readings (event_id, meter, kwh) VALUES ($1, $2, $3)",
        "params": ["event_id", "json:meter", "json:kwh"],
    },
    {
        "name": "broken",
        "queue": "broken-q",
        "declare_queue": True,
        "bind_exchange": "amq.topic",
        "bind_keys": ["broken.#"],
        "event_id": "json:id",
        "sql": "SELECT fail_unclassified($1)",
        "params": ["event_id"],
    },
]
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=50), routes)],
               limits={"max_payload": 4096, "max_event_id_length": 64})
b.rabbit.declare_queue("poison-q", keys=["meters.#", "other.#"])
b.rabbit.declare_queue("broken-q", keys=["broken.#"])


def good(i):
    return {"exchange": "amq.topic", "routing_key": "meters.m%d" % i,
            "body": json.dumps({"id": "good-%d" % i, "meter": "m%d" % i, "kwh": i})}


poison = [
    ("invalid JSON", {"exchange": "amq.topic", "routing_key": "meters.x", "body": '{"id": "p1", "meter": '},
     "invalid JSON", None),
    ("missing event ID", {"exchange": "amq.topic", "routing_key": "meters.x",
                          "body": json.dumps({"meter": "m", "kwh": 1})}, "missing event ID", None),
    ("event ID too long", {"exchange": "amq.topic", "routing_key": "meters.x",
                           "body": json.dumps({"id": "x" * 100, "meter": "m", "kwh": 1})}, "event ID is too long", None),
    ("payload over the limit", {"exchange": "amq.topic", "routing_key": "meters.x",
                                "body": json.dumps({"id": "big", "meter": "m", "kwh": 1, "pad": "y" * 5000})},
     "exceeds limits.max_payload", None),
    ("data error 22P02", {"exchange": "amq.topic", "routing_key": "meters.x",
                          "body": json.dumps({"id": "p-22", "meter": "m", "kwh": "lots"})}, "business SQL failed", "22P02"),
    ("check violation 23514", {"exchange": "amq.topic", "routing_key": "meters.x",
                               "body": json.dumps({"id": "p-23", "meter": "m", "kwh": -5})}, "business SQL failed", "23514"),
    ("not-null violation 23502", {"exchange": "amq.topic", "routing_key": "meters.x",
                                  "body": json.dumps({"id": "p-null", "kwh": 1})}, "business SQL failed", "23502"),
    ("no route matches", {"exchange": "amq.topic", "routing_key": "other.thing",
                          "body": json.dumps({"id": "p-nr", "meter": "m", "kwh": 1})}, "no route", None),
]

messages = []
for i in range(300):
    messages.append(good(i))
    if i % 37 == 5 and poison:
        messages.append(poison[len(messages) % len(poison)][1])
# every poison message at least once, spread through the stream
for k, p in enumerate(poison):
    messages.insert(20 + k * 31, p[1])
d = b.start()
b.rabbit.publish_many(messages)
b.wait_drained("poison-q")

t.is_(b.pg.scalar("SELECT count(DISTINCT event_id) FROM readings"), 300, "all 300 good events behind the poison were applied")
t.is_(b.pg.scalar("SELECT count(*) FROM readings"), 300, "each once")
for name, msg, reason, sqlstate in poison:
    rows = b.pg.execute("SELECT reason, sqlstate, payload, consumer, topic FROM oncebridge.dead_letters"
                        " WHERE reason LIKE %s AND convert_from(substring(payload from 1 for 4096), 'UTF8') LIKE %s",
                        ("%" + reason + "%", msg["body"][:40].replace("%", "\\%") + "%"))
    ok = len(rows) >= 1 and (sqlstate is None or rows[0][1] == sqlstate)
    t.ok(ok, "%s ends in dead_letters with reason \"%s\"%s" % (name, reason, " and SQLSTATE " + sqlstate if sqlstate else ""),
         diag=str(rows[:2]))

big = b.pg.execute("SELECT length(payload), payload_size FROM oncebridge.dead_letters WHERE reason LIKE '%max_payload%' LIMIT 1")
t.ok(big and big[0][0] == 4096 and big[0][1] > 5000, "an oversized payload is stored truncated with its real size", diag=str(big))
nr = b.pg.execute("SELECT consumer, topic FROM oncebridge.dead_letters WHERE reason LIKE 'no route%' LIMIT 1")
t.ok(nr and nr[0][0] is None and nr[0][1] == "other.thing", "an unrouted message is kept with its routing key", diag=str(nr))

# poison with an event ID, delivered again: no second dead letter
before = b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE event_id = 'p-22'")
b.rabbit.publish_many([poison[4][1], poison[4][1]])
b.wait_drained("poison-q")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE event_id = 'p-22'"), before,
      "a redelivered poison event is not dead-lettered twice")

# an error that is neither poison nor transient: retried, then dead-lettered
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "broken.x", "body": json.dumps({"id": "br-1"})}])
b.wait_drained("broken-q", timeout=60)
rows = b.pg.execute("SELECT reason, sqlstate, attempts FROM oncebridge.dead_letters WHERE event_id = 'br-1'")
t.ok(len(rows) == 1 and rows[0][1] == "XX000" and rows[0][2] == 3,
     "an unclassified error (XX000) is retried 3 times (retry.max_attempts), then dead-lettered", diag=str(rows))
t.ok(d.alive(), "oncebridge is still running")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'broken'"), 1,
      "the dead-lettered event keeps its claim, so a redelivery is a duplicate")
rc = d.terminate(timeout=20)
t.is_(rc, 0, "clean stop")
raise SystemExit(t.done())
