# SPDX-License-Identifier: Apache-2.0
"""The shipped Prometheus alerting rules (packaging/prometheus/) pass
promtool check rules, and their unit tests (oncebridge-alerts.test.yml:
each alert fires when it should, at the time its "for" allows, and not on
the near misses) pass promtool test rules. promtool is Debian's, from the
prometheus package."""
import os
import shutil
import subprocess

import oncetest as ot

t = ot.TAP()
src = os.environ.get("ONCEBRIDGE_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
rules = os.path.join(src, "packaging", "prometheus", "oncebridge-alerts.yml")
tests = os.path.join(src, "tests", "prometheus", "oncebridge-alerts.test.yml")
promtool = shutil.which("promtool")
t.ok(promtool, "promtool is installed (Debian package prometheus)")
if promtool:
    out = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True, timeout=60)
    t.ok(out.returncode == 0, "promtool check rules passes", diag=out.stdout + out.stderr)
    t.ok("SUCCESS: 7 rules found" in out.stdout, "the seven alerts are there", diag=out.stdout)
    out = subprocess.run([promtool, "test", "rules", os.path.basename(tests)], cwd=os.path.dirname(tests),
                         capture_output=True, text=True, timeout=60)
    t.ok(out.returncode == 0, "promtool test rules passes", diag=out.stdout + out.stderr)
raise SystemExit(t.done())
