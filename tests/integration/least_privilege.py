# SPDX-License-Identifier: Apache-2.0
"""Least privilege: oncebridge runs as a PostgreSQL role that has only
what sql/oncebridge-grants.sql gives it plus INSERT on the business table,
logging in with a password (scram-sha-256) taken from an environment
variable, as is the RabbitMQ password. Claims, duplicates, a dead letter,
retention and the outbox relay all work with those grants, and the role
can do nothing else. The daemon refuses to start as root without
--allow-root. Real PostgreSQL and RabbitMQ."""
import os
import re
import subprocess
import time

import obtest
import oncetest as ot

t = ot.TAP()
b = obtest.Bridge("least-privilege")
b.start_servers()
obtest.applied_table(b.pg)
b.pg.execute("ALTER TABLE applied ADD CONSTRAINT n_not_negative CHECK (n >= 0)")
ROLE, PASSWORD = "ob_app", "lp-db-secret-5b1e"

# the role: grants from the shipped file, INSERT on the business table
b.pg.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, PASSWORD))
out = subprocess.run(["psql", "-X", "-q", "-d", b.pg.conninfo, "-v", "role=" + ROLE, "-f",
                      os.path.join(obtest.SRCDIR, "sql", "oncebridge-grants.sql")],
                     capture_output=True, text=True, timeout=60)
t.is_(out.returncode, 0, "sql/oncebridge-grants.sql applies") or t.diag(out.stderr)
b.pg.execute("GRANT INSERT ON applied TO %s" % ROLE)
b.pg.execute("GRANT USAGE ON SEQUENCE applied_id_seq TO %s" % ROLE)
# the role must log in with its password: scram before the harness's trust
hba = os.path.join(b.pg.datadir, "pg_hba.conf")
with open(hba, "r+") as f:
    rest = f.read()
    f.seek(0)
    f.write("host all %s 127.0.0.1/32 scram-sha-256\n" % ROLE + rest)
b.pg.execute("SELECT pg_reload_conf()")
time.sleep(0.5)

b.rabbit.declare_queue("lp-in", keys=["lp.in"])
b.rabbit.declare_queue("lp-out", keys=["lp.out"])
broker = b.amqp_broker(name="rabbit", password_env="OB_TEST_RABBIT_PASSWORD")
del broker["password_file"]
os.unlink(os.path.join(b.confdir, "rabbit.password"))
b.write_config([("10-rabbit.conf", broker, [obtest.applied_route("lp", "lp-in")])],
               database={"conninfo": b.pg.conninfo.replace("user=postgres", "user=" + ROLE),
                         "password_env": "OB_TEST_DB_PASSWORD"},
               retention={"dedupe_window_s": 86400, "batch_size": 1000, "interval_s": 1})
t.ok("user=" + ROLE in open(b.config).read(), "the configuration logs in as %s" % ROLE)
with open(os.path.join(b.confdir, "conf.d", "10-rabbit.conf"), "a") as f:
    f.write("outbox = { batch_size = 100; poll_interval_ms = 100; };\n")
env = {"OB_TEST_DB_PASSWORD": PASSWORD, "OB_TEST_RABBIT_PASSWORD": b.rabbit.password}

# -t with a variable unset names the key, its file and line
bare = {k: v for k, v in os.environ.items() if not k.startswith("OB_TEST_")}
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True, timeout=30, env=bare)
t.ok(out.returncode == 1 and re.search(r'oncebridge\.conf:\d+: error: key "password_env": environment variable '
                                       r'"OB_TEST_DB_PASSWORD" is not set or empty', out.stderr),
     "-t without the database's variable: an error naming file, line and key", diag=out.stderr)
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True, timeout=30,
                     env=dict(bare, OB_TEST_DB_PASSWORD=PASSWORD))
t.ok(out.returncode == 1 and re.search(r'10-rabbit\.conf:\d+: error: key "password_env": environment variable '
                                       r'"OB_TEST_RABBIT_PASSWORD" is not set or empty', out.stderr),
     "-t without the broker's variable: an error naming file, line and key", diag=out.stderr)
out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True, timeout=30,
                     env=dict(bare, **env))
t.is_(out.returncode, 0, "-t with both variables set: valid")

# root is refused without --allow-root, but -t is fine
if os.geteuid() == 0:
    out = subprocess.run([obtest.BIN, "-c", b.config], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, **env))
    t.ok(out.returncode == 1 and "running as root is not permitted" in out.stderr and "--allow-root" in out.stderr,
         "as root without --allow-root the daemon refuses to start", diag=out.stderr)
    out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, **env))
    t.is_(out.returncode, 0, "as root, -t still checks the configuration")
else:
    t.skip("as root without --allow-root the daemon refuses to start", "not running as root")
    t.skip("as root, -t still checks the configuration", "not running as root")

# expired keys for retention to prune (as the superuser)
b.pg.execute("INSERT INTO oncebridge.processed_events (consumer, event_id, processed_at)"
             " SELECT 'old', 'o-' || g, now() - interval '3 days' FROM generate_series(1, 3000) g")
d = b.start(env=env)
ids, msgs = obtest.event_stream(300, routing_key="lp.in")
msgs.append({"exchange": "amq.topic", "routing_key": "lp.in", "body": '{"id": "poison-1", "n": -1}'})
b.rabbit.publish_many(msgs)
for i in range(20):
    b.pg.execute("SELECT oncebridge.emit('rabbit', 'lp.out', %s::jsonb)", ('{"k": %d}' % i,))

obtest.wait_applied(b.pg, "lp", 300)
obtest.exactly_once(t, b.pg, "lp", ids)
dl = b.pg.execute("SELECT sqlstate FROM oncebridge.dead_letters WHERE event_id = 'poison-1'")
t.is_(dl, [("23514",)], "the poison message is a dead letter (23514), written by %s" % ROLE)
pruned = ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events"
                                           " WHERE consumer = 'old'") == 0, 30, desc="old keys pruned")
t.ok(pruned, "retention pruned 3000 expired keys as %s" % ROLE)
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL") == 0,
              30, desc="outbox relayed")
t.is_(b.rabbit.queue_counts("lp-out")[0], 20, "the relay published the 20 outbox rows and marked them")
users = set(r[0] for r in b.pg.execute("SELECT DISTINCT usename FROM pg_stat_activity"
                                        " WHERE application_name LIKE 'oncebridge%%'"))
t.is_(users, {ROLE}, "every oncebridge session is %s" % ROLE)
t.ok("permission denied" not in b.logs(), "no permission error in the daemon log",
     diag="\n".join(ln for ln in b.logs().splitlines() if "permission denied" in ln))
d.terminate(timeout=20)

# ... and the role can do nothing beyond that
os.environ["PGPASSWORD"] = PASSWORD
as_role = b.pg.conninfo.replace("user=postgres", "user=" + ROLE)
for sql in ("SELECT count(*) FROM applied", "DELETE FROM applied", "DROP TABLE applied",
            "UPDATE oncebridge.processed_events SET event_id = 'x'", "SELECT * FROM oncebridge.dead_letters",
            "INSERT INTO oncebridge.schema_migrations VALUES (99, 'x')", "CREATE TABLE oncebridge.mine (x int)"):
    out = subprocess.run(["psql", "-X", "-q", "-d", as_role, "-c", sql], capture_output=True, text=True, timeout=30)
    t.ok(out.returncode != 0 and ("permission denied" in out.stderr or "must be owner" in out.stderr),
         "%s may not: %s" % (ROLE, sql), diag=out.stdout + out.stderr)
t.is_(b.pg.scalar("SELECT count(*) FROM applied"), 300, "the business table holds exactly the 300 events")
t.ok(PASSWORD not in b.logs() and b.rabbit.password not in b.logs(), "neither password appears in the log")
raise SystemExit(t.done())
