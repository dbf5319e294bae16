# SPDX-License-Identifier: Apache-2.0
"""The dead-letter command against real RabbitMQ and PostgreSQL. Events a
CHECK constraint rejects are dead-lettered (their duplicates published
later count as duplicates, no second dead letter); after the constraint is
fixed, "dead-letters replay --route" applies each of them once, with the
daemon running; a second replay, two replays at once, and a replay after
replayed_at was cleared by hand change nothing; list, show and purge
select by route, reason and ID."""
import json
import re
import subprocess
import threading

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("deadletter-replay")
b.start_servers()
b.pg.execute("CREATE TABLE applied (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL,"
             " n integer CONSTRAINT n_small CHECK (n < 100), at timestamptz NOT NULL DEFAULT clock_timestamp())")


def cli(*args):
    out = subprocess.run([obtest.BIN, "-c", b.config, "dead-letters"] + list(args), capture_output=True,
                         text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def events(prefix, n, bad_every):
    ids, msgs, bad = [], [], []
    for i in range(n):
        e = "%s-%04d" % (prefix, i)
        v = 500 + i if i % bad_every == 0 else i % 100
        ids.append(e)
        if v >= 100:
            bad.append(e)
        msgs.append({"exchange": "amq.topic", "routing_key": "dl.%s" % prefix, "body": json.dumps({"id": e, "n": v}),
                     "headers": {"origin": "test"}})
    return ids, msgs, bad


routes = [obtest.applied_route("r1", "dlq", declare_queue=True, bind_exchange="amq.topic", bind_keys=["dl.#"])]
b.write_config([("10-rabbit.conf", b.amqp_broker(batch_size=50), routes)])
b.rabbit.declare_queue("dlq", keys=["dl.#"])
ids, msgs, bad = events("a", 300, 10)
b.rabbit.publish_many(msgs)
d = b.start()
b.wait_drained("dlq")
# the poison events again: duplicates now, no second dead letter
b.rabbit.publish_many([m for m in msgs if json.loads(m["body"])["id"] in bad])
b.wait_drained("dlq")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), len(bad),
      "%d events dead-lettered once each (the republished copies are duplicates)" % len(bad))

rc, out, err = cli("list", "--route", "r1", "--reason", "N_SMALL")
rows = [l for l in out.splitlines()[1:] if l]
t.ok(rc == 0 and len(rows) == len(bad) and all("23514" in r for r in rows),
     "list --route --reason shows the %d rows with SQLSTATE 23514" % len(bad), diag=out + err)
first_id = rows[0].split("\t")[0]
rc, out, err = cli("show", first_id)
t.ok(rc == 0 and '"id": "a-0000"' in out and "n_small" in out and '"origin": "test"' in out,
     "show prints the payload, the reason and the headers", diag=out + err)
rc, out, err = cli("replay")
t.ok(rc == 2 and "needs IDs or a selection" in err, "replay without a selection is refused", diag=err)

# replay before the fix: dead-lettered again, the old row marked replayed
rc, out, err = cli("replay", first_id)
t.ok(rc == 0 and "dead-lettered again" in out, "replay before the fix dead-letters the event again", diag=out + err)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE replayed_at IS NULL"), len(bad),
      "one unreplayed dead letter per event still")

# the fix, then replay everything of the route with the daemon running
b.pg.execute("ALTER TABLE applied DROP CONSTRAINT n_small")
rc, out, err = cli("replay", "--route", "r1")
m = re.search(r"(\d+) replayed, (\d+) skipped, (\d+) failed", out)
obtest.note(out.strip().splitlines()[-1] if out.strip() else err)
t.ok(rc == 0 and m and int(m.group(1)) == len(bad) and int(m.group(3)) == 0,
     "replay --route applies the %d dead-lettered events" % len(bad), diag=out + err)
obtest.exactly_once(t, b.pg, "r1", ids)

rc, out, err = cli("replay", "--route", "r1")
t.ok(rc == 0 and "0 replayed, 0 skipped, 0 failed" in out, "a second replay finds nothing to do", diag=out + err)
rc, out, err = cli("replay", first_id)
t.ok(rc == 0 and "already replayed" in out, "replaying a replayed ID by name skips it", diag=out + err)
# even with the replay marks cleared by hand the events are not applied twice
b.pg.execute("UPDATE oncebridge.dead_letters SET replayed_at = NULL")
rc, out, err = cli("replay", "--route", "r1")
t.ok(rc == 0 and "had applied event" in out, "a replay with the marks cleared finds the events applied",
     diag=out[-500:] + err)
obtest.exactly_once(t, b.pg, "r1", ids)

# two replays at once of new dead letters: each event once
b.pg.execute("ALTER TABLE applied ADD CONSTRAINT n_small CHECK (n < 100) NOT VALID")
ids2, msgs2, bad2 = events("b", 200, 5)
b.rabbit.publish_many(msgs2)
b.wait_drained("dlq")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE replayed_at IS NULL"), len(bad2),
      "%d new dead letters" % len(bad2))
b.pg.execute("ALTER TABLE applied DROP CONSTRAINT n_small")
results = []
threads = [threading.Thread(target=lambda: results.append(cli("replay", "--reason", "n_small"))) for _ in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()
counts = [re.search(r"(\d+) replayed, (\d+) skipped, (\d+) failed", r[1]) for r in results]
obtest.note("two concurrent replays: %s" % [c.group(0) if c else r[2] for c, r in zip(counts, results)])
t.ok(all(c for c in counts) and sum(int(c.group(1)) for c in counts) == len(bad2),
     "two concurrent replays replay each row once between them")
obtest.exactly_once(t, b.pg, "r1", ids + ids2)

rc, out, err = cli("purge", "--replayed", "--route", "r1")
t.ok(rc == 0 and "dead letters deleted" in out, "purge --replayed deletes the replayed rows", diag=out + err)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters WHERE replayed_at IS NOT NULL"), 0,
      "no replayed rows left")
rc, out, err = cli("list", "--all")
t.is_(len([l for l in out.splitlines()[1:] if l]), b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"),
      "list --all shows what is left")
t.ok(d.alive(), "the daemon ran throughout")
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
