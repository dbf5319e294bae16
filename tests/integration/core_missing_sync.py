# SPDX-License-Identifier: Apache-2.0
"""The core's pipelined batch transaction when the pipeline sync of its
first round trip never arrives (issue 11, path 5): the open transaction
(BEGIN and the claims) must not survive into the retry, or the retry takes
its own uncommitted claims for duplicates and the events are acked without
being applied. Runs tests/unit/pg_missing_sync (a seam on PQgetResult)
against a real PostgreSQL."""
import os
import subprocess

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("core-missing-sync", rabbit=False)
b.start_servers()
obtest.applied_table(b.pg)
broker = {"name": "rabbit", "type": "amqp", "url": "amqp://127.0.0.1:1/", "batch_size": 10}
b.write_config([("10-rabbit.conf", broker, [obtest.applied_route("r1", "q1")])])

prog = os.path.join(os.path.dirname(obtest.BIN), "tests", "unit", "pg_missing_sync")
out = subprocess.run([prog, b.config], capture_output=True, text=True, timeout=60)
# relay the program's own TAP points as ours
for line in out.stdout.splitlines():
    if line.startswith("ok ") or line.startswith("not ok "):
        desc = line.split(" - ", 1)[1] if " - " in line else line
        t.ok(line.startswith("ok "), desc)
    elif line.startswith("#"):
        t.diag(line[1:].strip())
t.is_(out.returncode, 0, "pg_missing_sync exits with status 0")
if out.returncode != 0:
    t.diag(out.stderr[-2000:])
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events"), 3, "the three claims were committed by the retry")
raise SystemExit(t.done())
