# SPDX-License-Identifier: Apache-2.0
"""No secret appears in a log line, an error or the metrics. A run with a
database password file, a broker password that is wrong at first (so the
login failures are logged), then fixed and reloaded with SIGHUP, events
applied, poison dead-lettered, /metrics and /health scraped, a config check of a secret file
that others can read, and a clean stop; then every log, the scrapes and the
check's output are searched for the three secrets."""
import json
import os
import signal
import subprocess

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("secret-leak")
b.start_servers()
obtest.applied_table(b.pg)

RABBIT_PW = "Rabbit-S3cret-7f2c9e"
WRONG_PW = "Wrong-S3cret-91ab0d"
DB_PW = "Pg-S3cret-55e1b3"
SECRETS = (RABBIT_PW, WRONG_PW, DB_PW)

b.rabbit.ctl("add_user", "obleak", RABBIT_PW)
b.rabbit.ctl("set_permissions", "-p", "/", "obleak", ".*", ".*", ".*")
obtest.write_secret(os.path.join(b.confdir, "db.password"), DB_PW)
port = ot.free_port()
broker = b.amqp_broker(name="rabbit", user="obleak", password_file="../obleak.password")
route = obtest.applied_route("leak", "leak-q", declare_queue=True, bind_exchange="amq.topic", bind_keys=["leak.#"])
b.write_config([("10-rabbit.conf", broker, [route])],
               database={"conninfo": b.pg.conninfo, "password_file": "db.password"},
               metrics={"listen": "127.0.0.1:%d" % port})
obtest.write_secret(os.path.join(b.confdir, "obleak.password"), WRONG_PW)

d = b.start()
ot.wait_until(lambda: "could not log in" in b.logs(), 30, desc="a refused login")
obtest.write_secret(os.path.join(b.confdir, "obleak.password"), RABBIT_PW)
d.kill(signal.SIGHUP)
ot.wait_until(lambda: "consuming 1 queue" in b.logs(), 30, desc="login after the reload")
b.rabbit.declare_queue("leak-q", keys=["leak.#"])
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "leak.x",
                        "body": json.dumps({"id": "leak-%d" % i, "n": i})} for i in range(50)])
# and poison, so that dead letters (reason, SQLSTATE, the database's message)
# exist to be searched: bad JSON, no event ID, a value the column refuses
b.rabbit.publish_many([{"exchange": "amq.topic", "routing_key": "leak.x", "body": body}
                       for body in ('{"id": "leak-bad", ', '{"n": 1}', '{"id": "leak-big", "n": 99999999999}')])
obtest.wait_applied(b.pg, "leak", 50, timeout=60)
b.wait_drained("leak-q")
t.is_(obtest.applied_events(b.pg, "leak"), 50, "50 events applied after the password was fixed and reloaded")
t.is_(b.pg.scalar("SELECT count(*) FROM oncebridge.dead_letters"), 3, "the three poison messages were dead-lettered")
scrapes = obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1] + obtest.http_get("http://127.0.0.1:%d/health" % port)[1]
t.is_(d.terminate(timeout=20), 0, "clean stop")

# a config check that refuses a secret file others can read
os.chmod(os.path.join(b.confdir, "obleak.password"), 0o644)
check = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True)
t.ok(check.returncode == 1 and "obleak.password" in check.stderr, "-t refuses a world-readable secret file",
     diag=check.stderr)

logs = b.logs()
for name, text in (("daemon logs", logs), ("/metrics and /health", scrapes),
                   ("oncebridge -t output", check.stdout + check.stderr)):
    leaked = [s for s in SECRETS if s in text]
    t.ok(not leaked, "no secret in the %s (%d bytes searched)" % (name, len(text)), diag=str(leaked))
dead = " ".join(str(r) for r in b.pg.execute("SELECT d::text FROM oncebridge.dead_letters d"))
leaked = [s for s in SECRETS if s in dead]
t.ok(dead and not leaked, "no secret in the dead letters (%d bytes searched)" % len(dead), diag=str(leaked))
t.ok("could not log in" in logs and "ACCESS_REFUSED" in logs, "the refused login was logged, without the password")
raise SystemExit(t.done())
