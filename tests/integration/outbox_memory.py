# SPDX-License-Identifier: Apache-2.0
"""The ordered outbox relay keeps its window within outbox.max_inflight_bytes
whatever the row sizes: 60 rows of 1 MB and 2 of 3 MB (larger than the
budget of 2 MiB: each goes alone) waiting in the outbox, with batch_size
500, real RabbitMQ. Every row arrives, in outbox order, and the relay's
peak resident set stays below its base plus the budget and one large row,
counted three times (the database result, the message being framed,
allocator slack). Without the budget the relay read every row in one
batch (about 66 MB of payloads held at once). About 20 s."""
import os

import obtest
import oncetest as ot

MB = 1000000
BUDGET = 2 * 1024 * 1024
N_SMALL, N_BIG, BIG = 60, 2, 3 * MB
BASE_KB = 24 * 1024                       # a relay at rest, with libraries and its database session
BOUND_KB = BASE_KB + 3 * (BUDGET + BIG) // 1024

t = ot.TAP()
b = obtest.Bridge("outbox-memory")
b.start_servers()
b.rabbit.declare_queue("q-big", keys=["big.#"])
ids = [r[0] for r in b.pg.execute(
    "SELECT oncebridge.emit('rabbit', 'big.x', jsonb_build_object('n', g, 'pad', repeat('x', CASE WHEN g %% 31 = 0"
    " THEN %s ELSE %s END)), 'ev-' || lpad(g::text, 4, '0')) FROM generate_series(1, %s) AS g ORDER BY g",
    (BIG - 40, MB - 40, N_SMALL + N_BIG))]
t.is_(len(ids), N_SMALL + N_BIG, "%d rows waiting in the outbox, %d of them over the budget" % (len(ids), N_BIG))

b.write_config([("10-rabbit.conf", b.amqp_broker(name="rabbit"), [])])
path = os.path.join(b.confdir, "conf.d", "10-rabbit.conf")
with open(path) as f:
    text = f.read().replace("routes = [  ];\n", "")
with open(path, "w") as f:
    f.write(text + "outbox = { batch_size = 500; max_inflight_bytes = %d; poll_interval_ms = 200; };\n" % BUDGET)
d = b.start()
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") == 0,
              120, interval=0.2, desc="every row published")

hwm = b.peak_rss_kb()  # the relay: the config has no routes
asan = any("libasan" in open("/proc/%d/maps" % p).read() for p in b.worker_pids())
if os.environ.get("ONCEBRIDGE_VALGRIND_DIR") or asan:
    t.skip("relay peak RSS", "the memory tool keeps memory of its own")
else:
    t.ok(hwm < BOUND_KB, "relay peak RSS %d kB < %d kB (base + 3 x (budget + one large row))" % (hwm, BOUND_KB))
msgs = b.rabbit.get_messages("q-big")
got = [p.message_id for _, p, _ in msgs]
first = []
for e in got:
    if e not in first:
        first.append(e)
t.ok(set(got) == set(ids), "every row arrived (%d messages for %d rows)" % (len(got), len(ids)),
     diag="missing: %s" % sorted(set(ids) - set(got))[:10])
t.ok(first == ids, "rows arrived in outbox order")
obtest.note("relay peak RSS %d kB" % hwm)
t.is_(d.terminate(timeout=20), 0, "clean stop")
raise SystemExit(t.done())
