"""PostgreSQL failover (issue 13), with oncebridge's conninfo naming the
primary and its standby with target_session_attrs=read-write.

1. A synchronous standby: kill -9 of the primary in the middle of an AMQP
   and an MQTT stream with 10 % duplicates and poison, then the standby is
   promoted. oncebridge follows by itself (same worker processes); on the
   new primary every event is applied exactly once, every poison message
   dead-lettered, an outbox row committed before the crash delivered. No
   warning about asynchronous standbys.
2. An asynchronous standby of the new primary: at connect oncebridge logs
   one warning (not one per process) that a failover may lose acked
   effects. kill -9 and promotion again: no event applied twice; events
   lost, if any, are reported, not failed (that is what the warning is
   about)."""
import os
import subprocess
import time

import obfailover
import obtest
import oncetest as ot

WARNING = "none is synchronous"

t = ot.TAP()
f = obfailover.Failover("pg-failover", sync=True)
f.start_servers()


def cli_log(user):
    """What "oncebridge dead-letters list" logs connecting as user."""
    f.configure(database={"conninfo": ot.failover_conninfo(f.pg, f.standby).replace("user=postgres", "user=" + user)})
    out = subprocess.run([obtest.BIN, "-c", f.config, "dead-letters", "list"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


# 0. the check at connect, by role: a synchronous standby whose sync_state
# this role cannot see (no pg_monitor) is "cannot tell", not a warning
f.pg.execute("CREATE ROLE fo_plain LOGIN")
subprocess.run(["psql", "-X", "-q", "-d", f.pg.conninfo, "-v", "role=fo_plain", "-f",
                os.path.join(obtest.SRCDIR, "sql", "oncebridge-grants.sql")], check=True, capture_output=True)
log = cli_log("fo_plain")
t.ok("cannot tell whether a standby" in log and WARNING not in log,
     "a role without pg_monitor: cannot tell, no warning", diag=log)
log = cli_log("postgres")
t.ok("cannot tell" not in log and WARNING not in log, "a superuser sees the synchronous standby: nothing to say",
     diag=log)

f.configure()
d = f.start()
f.wait_subscribed("mosq")
total = f.streams(1500, 600)
at = obtest.wait_progress(f.pg, 400)
workers = f.worker_pids()
before = f.emit(f.pg, "fo.out.before")
f.pg.kill()
t_fault = time.time()
t.ok(at < total, "the primary was killed mid-stream (%d of %d messages applied)" % (at, total))
f.standby.promote()
t_promoted = time.time()
first = obfailover.first_commit_after(f.standby, t_promoted, timeout=60)
t.ok(first is not None, "oncebridge applies on the new primary by itself")
obtest.note("synchronous standby, kill -9: promoted %.1f s after the crash, first commit on the new primary "
            "%.1f s after the promotion" % (t_promoted - t_fault, first or -1))
f.ledger(t, f.standby, timeout=120)
obtest.note("all %d messages settled %.1f s after the crash" % (total, time.time() - t_fault))
t.eventually(lambda: before in f.watched(), 30, "the outbox row committed before the crash was delivered")
t.is_(f.worker_pids(), workers, "the same worker processes followed the failover by themselves")
t.ok(WARNING not in f.logs(), "no asynchronous-standby warning with a synchronous standby")
t.is_(d.terminate(timeout=30), 0, "clean stop")

# 2. an asynchronous standby of the new primary
primary = f.standby
s2 = ot.Standby(primary, name="standby2", sync=False).start()
f.base = (obtest.progress(primary), primary.scalar("SELECT count(*) FROM oncebridge.dead_letters"))
f.configure(database={"conninfo": ot.failover_conninfo(primary, s2), "statement_timeout_ms": 2000})
d = f.start()
f.wait_subscribed("mosq")
t.eventually(lambda: WARNING in d.log(), 30, "the asynchronous standby is named in a warning at connect")
total = f.streams(1500, 600, tag="b")
at = obtest.wait_progress(primary, f.base[0] + 400)
primary.kill()
t_fault = time.time()
s2.promote()
first = obfailover.first_commit_after(s2, time.time(), timeout=60)
t.ok(first is not None, "oncebridge applies on the promoted asynchronous standby by itself")
lost = f.ledger(t, s2, timeout=60, strict=False)
obtest.note("asynchronous standby, kill -9 at %d of %d messages: %d events lost (acked, not on the standby)"
            % (at - f.base[0], total, lost))
t.is_(d.log().count(WARNING), 1, "one warning per daemon run, not one per process")
t.is_(d.terminate(timeout=30), 0, "clean stop")
raise SystemExit(t.done())
