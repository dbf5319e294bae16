# SPDX-License-Identifier: Apache-2.0
"""Dedupe retention while a stream flows: processed_events rows older than
retention.dedupe_window_s are deleted (in batches of retention.batch_size)
and only those; rows inside the window, including the stream's own, stay;
the stream keeps being applied exactly once with no long pause. The
configuration check warns when the window is shorter than an MQTT 5
session_expiry. Real Mosquitto and PostgreSQL."""
import re
import subprocess
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.MQTTBridge("retention-prune")
b.start_servers()
obtest.applied_table(b.pg)
DAY = 86400
OLD, RECENT = 200000, 20000


def config(window):
    return b.write_config([("10-mosq.conf", b.mqtt_broker("mosq", session_expiry=DAY),
                            [obtest.mqtt_slow_route("r1", "dev/#", per_event_ms=2.0)])],
                          retention={"dedupe_window_s": window, "batch_size": 5000, "interval_s": 1})


# the configuration check warns about a window shorter than the session expiry
config(3600)
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True)
t.is_(out.returncode, 0, "a short window is only a warning")
t.ok(re.search(r'warning: retention.dedupe_window_s \(3600 s\) is shorter than session_expiry \(86400 s\) '
               r'of broker "mosq"', out.stderr), "oncebridge -t warns about it", diag=out.stderr)
config(DAY)
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True)
t.ok("dedupe_window_s" not in out.stderr, "no warning when the window covers the session expiry",
     diag=out.stderr)

d = b.start()
b.wait_subscribed("mosq")
ids, items = obtest.mqtt_stream(4000, topic="dev/1/reading", dup_ratio=0.1)
pub = obtest.publish_in_background(b.mqtt, items, protocol=ot.MQTTv5)
obtest.wait_progress(b.pg, 300)

# expired keys of other routes, keys inside the window, and some of the
# stream's own keys made old
b.pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
             " SELECT 'old-route', 'o-' || g, now() - interval '2 days' - g * interval '1 ms'"
             " FROM generate_series(1, %d) g" % OLD)
b.pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
             " SELECT 'recent-route', 'r-' || g, now() - interval '23 hours' FROM generate_series(1, %d) g" % RECENT)
backdated = b.pg.execute("UPDATE oncebridge.processed_events SET processed_at = now() - interval '25 hours'"
                         " WHERE consumer = 'r1' AND event_id IN (SELECT event_id FROM oncebridge.processed_events"
                         " WHERE consumer = 'r1' ORDER BY event_id LIMIT 100) RETURNING event_id")
backdated = set(r[0] for r in backdated)
inserted_at = time.monotonic()
applied_before = obtest.progress(b.pg)

ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events"
                                  " WHERE processed_at < now() - interval '1 day'") == 0,
              60, interval=0.2, desc="expired rows pruned")
took = time.monotonic() - inserted_at
applied_during = obtest.progress(b.pg) - applied_before
obtest.note("pruned %d expired rows in about %.1f s while %d events were applied" % (OLD + 100, took, applied_during))
t.ok(applied_during > 0, "the stream kept flowing during pruning (%d events applied)" % applied_during)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'old-route'"), 0,
      "every expired row of another route is gone")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'recent-route'"), RECENT,
      "rows inside the window stay (%d)" % RECENT)
gone = b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'r1' AND event_id = ANY(%s)",
                   (list(backdated),))
t.is_(gone, 0, "the stream's own keys made older than the window are gone (%d)" % len(backdated))

pub.join(120)
t.ok(pub.error is None, "publisher finished", diag=str(pub.error))
obtest.wait_applied(b.pg, "r1", len(ids), timeout=180)
obtest.exactly_once(t, b.pg, "r1", ids)
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'r1'"),
      len(ids) - len(backdated), "the stream's other keys stay")
gaps = b.pg.scalar("SELECT max(gap) FROM (SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) AS gap"
                   " FROM applied) x")
obtest.note("longest pause between two applied events: %.3f s" % gaps)
t.ok(gaps < 2.0, "no long pause in the stream (longest %.3f s)" % gaps)
log = d.log()
m = re.findall(r"retention: pruned (\d+) processed_events rows", log)
t.ok(m and sum(int(x) for x in m) == OLD + len(backdated), "the retention process logged what it pruned",
     diag=str(m))
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
