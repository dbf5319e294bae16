# SPDX-License-Identifier: Apache-2.0
"""Dead letters cannot fill the database. A flood of 1 MB poison messages
(invalid JSON, as a misbehaving or hostile publisher on a shared broker
sends) with good events in between: each dead letter keeps at most
limits.dead_letter_payload bytes of its payload plus the full size and the
SHA-256 of the whole payload, so the table grows by about the cap per
message; the good events are applied once; a truncated dead letter is
refused by replay; retention.dead_letter_window_s deletes expired dead
letters and keeps the others. FLOOD sets the number of poison messages
(300 here; the issue's figure, 20 000, is a long run: FLOOD=20000)."""
import hashlib
import json
import os
import subprocess

import obtest
import oncetest as ot

FLOOD = int(os.environ.get("FLOOD", "300"))
CAP = 1024
SIZE = 1000 * 1000

t = ot.TAP()
b = obtest.Bridge("dl-cap")
b.start_servers()
b.pg.execute("CREATE TABLE readings (event_id text PRIMARY KEY, kwh numeric NOT NULL)")
routes = [{
    "name": "readings", "queue": "cap-q", "declare_queue": True, "bind_exchange": "amq.topic",
    "bind_keys": ["meters.#"], "event_id": "json:id",
    "sql": "INSERT INTO readings (event_id, kwh) VALUES ($1, $2)", "params": ["event_id", "json:kwh"],
}]
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=50, prefetch=100), routes)],
               limits={"dead_letter_payload": CAP},
               retention={"dead_letter_window_s": 3600, "interval_s": 1})
b.rabbit.declare_queue("cap-q", keys=["meters.#"])


def poison(i):
    head = ("not json %d " % i).encode()
    return head + bytes([0x41 + i % 26]) * (SIZE - len(head))


def cli(*args):
    p = subprocess.run([obtest.BIN, "-c", b.config, "dead-letters"] + list(args), capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


size0 = b.pg.scalar("SELECT pg_total_relation_size('oncebridge.dead_letters')")
d = b.start()
sent = 0
digests = {}
while sent < FLOOD:
    chunk = []
    for i in range(sent, min(sent + 50, FLOOD)):
        body = poison(i)
        digests[i] = hashlib.sha256(body).hexdigest()
        chunk.append({"exchange": "amq.topic", "routing_key": "meters.flood", "body": body})
        chunk.append({"exchange": "amq.topic", "routing_key": "meters.good",
                      "body": json.dumps({"id": "good-%d" % i, "kwh": i})})
    b.rabbit.publish_many(chunk, timeout=300)
    sent += len(chunk) // 2
b.wait_drained("cap-q", timeout=600)

t.is_(b.pg.scalar("SELECT count(*) FROM readings"), FLOOD, "every good event between the poison was applied")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'readings'"), FLOOD,
      "each once")
rows = b.pg.execute("SELECT id, octet_length(payload), payload_size, encode(payload_sha256, 'hex'),"
                    " convert_from(substring(payload from 1 for 20), 'UTF8') FROM oncebridge.dead_letters"
                    " WHERE reason LIKE '%invalid JSON%' ORDER BY id")
t.is_(len(rows), FLOOD, "every poison message has one dead letter")
t.ok(all(r[1] == CAP and r[2] == SIZE for r in rows),
     "each keeps %d of its %d bytes, with its full size" % (CAP, SIZE), diag=str([r[:3] for r in rows[:3]]))
bad_hash = [r[0] for r in rows if r[3] != digests.get(int(r[4].split()[2]))]
t.ok(not bad_hash, "each stores the SHA-256 of the whole payload", diag="wrong: %s" % bad_hash[:5])
size1 = b.pg.scalar("SELECT pg_total_relation_size('oncebridge.dead_letters')")
grown = size1 - size0
t.diag("dead_letters grew by %d bytes for %d dead letters of %d-byte payloads (%.0f bytes each; cap %d)"
       % (grown, FLOOD, SIZE, grown / max(FLOOD, 1), CAP))
# the cap, plus the row's other columns and its index entries
t.ok(grown <= FLOOD * (CAP + 1024), "the table grew by at most the cap plus 1 KiB of row overhead per message",
     diag="grew %d bytes" % grown)

first = rows[0][0]
rc, out, err = cli("show", str(first))
t.ok(rc == 0 and ("payload_sha256: %s" % rows[0][3]) in out and ("payload_kept: %d" % CAP) in out,
     "dead-letters show names the kept size and the full payload's SHA-256", diag=out[:400] + err)
rc, out, err = cli("replay", str(first))
t.ok(rc == 0 and "cannot be replayed" in out, "a truncated dead letter is not replayed", diag=out + err)

# retention: dead letters older than the window go, the others stay
old = [r[0] for r in rows[: len(rows) // 2]]
b.pg.execute("UPDATE oncebridge.dead_letters SET created_at = now() - interval '2 hours' WHERE id = ANY(%s)",
             (old,))
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE id = ANY(%s)", (old,)) == 0,
              60, desc="expired dead letters pruned")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE id = ANY(%s)", (old,)), 0,
      "retention deleted the %d dead letters older than retention.dead_letter_window_s" % len(old))
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), FLOOD - len(old), "and kept the newer ones")
t.ok("pruned %d dead letters older than 3600 s" % len(old) in b.logs(),
     "the retention process logged what it pruned")
t.ok(d.alive(), "oncebridge is still running")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
