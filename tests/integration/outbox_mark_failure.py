# SPDX-License-Identifier: Apache-2.0
"""The ordered relay's marks fail for a while. The relay sends the marks
of confirmed rows with its next read of the outbox and reads their results
only at its next round (bridge/outbox/outbox_marks.c); here a trigger
makes every mark fail for 3 s while 3 000 rows are relayed to RabbitMQ.
A failed mark leaves its rows unpublished, so they are published again:
nothing is lost, the consuming route applies every event exactly once,
every row ends marked, and the relay recovers by itself, in the same
process. About 25 s."""
import re

import obtest
import oncetest as ot

N = 3000

t = ot.TAP()
b = obtest.Bridge("outbox-mark-failure")
b.start_servers()
obtest.applied_table(b.pg)
b.pg.execute("CREATE TABLE mark_fault (until timestamptz NOT NULL)")
b.pg.execute("""CREATE FUNCTION fail_marks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.published_at IS NOT NULL AND EXISTS (SELECT 1 FROM mark_fault WHERE until > clock_timestamp()) THEN
        RAISE EXCEPTION 'injected failure of an outbox mark';
    END IF;
    RETURN NEW;
END $$""")
b.pg.execute("CREATE TRIGGER fail_marks BEFORE UPDATE ON oncebridge.outbox FOR EACH ROW EXECUTE FUNCTION fail_marks()")

b.rabbit.declare_queue("mark-q", keys=["mark.#"])
route = obtest.applied_route("in", "mark-q", event_id="property:message_id")
b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit"), [route])])
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write("outbox = { batch_size = 200; poll_interval_ms = 200; };\n")


def emit(first, count):
    return [r[0] for r in b.pg.execute(
        "SELECT oncebridge.emit('rabbit', 'mark.' || g, jsonb_build_object('n', g)) FROM generate_series(%s, %s) AS g",
        (first, first + count - 1))]


d = b.start()
ids = emit(1, 500)
obtest.wait_applied(b.pg, "in", 500, timeout=60, settle=0)
b.pg.execute("INSERT INTO mark_fault VALUES (clock_timestamp() + interval '3 seconds')")
for k in range(5):
    ids += emit(501 + 500 * k, 500)
obtest.wait_applied(b.pg, "in", N, timeout=120)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") == 0,
              60, interval=0.2, desc="every row marked")
log = b.logs()
t.ok("injected failure of an outbox mark" in log, "marks failed while the fault lasted", diag=log[-1500:])
obtest.exactly_once(t, b.pg, "in", ids)
t.ok(d.alive() and "restarting it in" not in log, "the relay recovered by itself, in the same process")
t.is_(d.terminate(timeout=20), 0, "clean stop")
# the relay's last count (logged when it stops): rows sent, again included
sent = [int(m.group(1)) for m in re.finditer(r"; (\d+) published, \d+ confirmed", b.logs())]
t.ok(sent and sent[-1] > N, "rows whose mark failed were published again (%s sent for %d rows)"
     % (sent[-1] if sent else "none", N))
raise SystemExit(t.done())
