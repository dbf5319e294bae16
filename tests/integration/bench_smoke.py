# SPDX-License-Identifier: Apache-2.0
"""The benchmark suite (make bench) in a short version, so that it cannot
rot: every script of tests/bench/ runs with tiny counts against its own
private servers, must exit 0, print its table, and end its exactly-once
ledgers balanced. The figures themselves are not checked: this is not a
timed test."""
import os
import re
import subprocess
import sys
import time

import oncetest as ot

SRCDIR = os.environ.get("ONCEBRIDGE_SRCDIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# script, environment, table header word, number of ledger lines expected
RUNS = [
    ("amqp_bench.py", {"BENCH_COUNT": "800", "BENCH_SECONDS": "1", "BENCH_ROUNDS": "1"}, "CPU us per message, oncebridge", 4),
    ("mqtt_bench.py", {"BENCH_COUNT": "300", "BENCH_WORKERS": "1,2", "BENCH_ROUNDS": "1", "BENCH_OOB_COUNT": "300",
                       "BENCH_SECONDS": "1"}, "oncebridge MQTT, 1 worker", 3),
    ("outbox_bench.py", {"BENCH_COUNT": "500", "BENCH_SECONDS": "1", "BENCH_ROUNDS": "1"}, "outbox relay -> MQTT", 3),
    ("scaleout_bench.py", {"BENCH_COUNT": "300", "BENCH_INSTANCES": "1,2"}, "speed-up", 4),
    ("rss_bench.py", {"BENCH_RSS_COUNT": "2000"}, "RSS change", 1),
    ("msgsize_bench.py", {"BENCH_MSGSIZE_BYTES": "2000000", "BENCH_MSGSIZE_MAX_COUNT": "300"}, "worker peak MB", 3),
    ("dedupe_bench.py", {"BENCH_DEDUPE_SIZES": "1000,3000", "BENCH_COUNT": "1000", "BENCH_ROUNDS": "1",
                         "BENCH_DEDUPE_BUFFERS": "64MB", "BENCH_DEDUPE_KINDS": "random"}, "shared_buffers = 64MB", 0),
    ("retention_bench.py", {"BENCH_SIZES": "2000,4000", "BENCH_SECONDS": "0.5"}, "claims/s while pruning", 0),
]

BALANCED = re.compile(r"^ledger .*: (\d+) \w+ (expected|emitted),.* 0 (missing|not published)", re.M)


def main():
    t = ot.TAP()
    for script, env, header, ledgers in RUNS:
        t0 = time.time()
        out = subprocess.run([sys.executable, os.path.join(SRCDIR, "tests", "bench", script)],
                             env=dict(os.environ, **env), capture_output=True, text=True, timeout=600)
        text = out.stdout + out.stderr
        t.ok(out.returncode == 0, "%s exits 0 (%.0f s)" % (script, time.time() - t0), diag=text[-3000:])
        t.ok(header in out.stdout, "%s prints its table" % script, diag=out.stdout[-2000:])
        if ledgers:
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ledger ")]
            balanced = [m for m in BALANCED.finditer(out.stdout) if int(m.group(1)) > 0]
            t.ok(len(lines) == ledgers and len(balanced) == ledgers,
                 "%s ends with %d balanced exactly-once ledgers" % (script, ledgers), diag="\n".join(lines))
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
