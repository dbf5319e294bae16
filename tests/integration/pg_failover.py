# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL failover (issue 13). oncebridge's conninfo names the primary
and its standby with target_session_attrs=read-write; each phase streams
AMQP and MQTT events (10 % duplicates, some poison) while the primary
fails, promotes the standby, and checks the ledger on the new primary
(all phases' events, each once; poison dead-lettered). Each phase's
standby is a fresh copy of the primary of the moment.

1. A hung primary, synchronous standby: the primary's processes are
   stopped (SIGSTOP: a storage freeze, a paused VM). The kernel still
   ACKs and answers keepalive probes: only the deadline on each database
   round trip (database.response_timeout_ms, here its default:
   statement_timeout_ms 2 s plus 5 s) gets the workers and the outbox
   relay off the frozen sessions; their next connect leaves the frozen
   host after connect_timeout (5 s by default) for the new primary. An
   outbox row committed just before the freeze is delivered after it.
2. kill -9 of the primary, synchronous standby.
3. An asynchronous standby: at connect oncebridge logs one warning (not one
   per process) that a failover may lose acked effects. After kill -9 and
   promotion no event is applied twice; events lost, if any, are reported,
   not failed (that is what the warning is about).
Before that, the check at connect by role: a role without pg_monitor
cannot see whether a standby is synchronous and says so, without a
warning."""
import os
import signal
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


f.pg.execute("CREATE ROLE fo_plain LOGIN")
subprocess.run(["psql", "-X", "-q", "-d", f.pg.conninfo, "-v", "role=fo_plain", "-f",
                os.path.join(obtest.SRCDIR, "sql", "oncebridge-grants.sql")], check=True, capture_output=True)
log = cli_log("fo_plain")
t.ok("cannot tell whether a standby" in log and WARNING not in log,
     "a role without pg_monitor: cannot tell, no warning", diag=log)
log = cli_log("postgres")
t.ok("cannot tell" not in log and WARNING not in log, "a superuser sees the synchronous standby: nothing to say",
     diag=log)


def phase(primary, standby, fault, tag, strict=True, respawn=False):
    """Stream, fault the primary mid-stream, promote the standby, check
    the ledger on it. Returns the daemon (still running). respawn: kill -9
    every worker first, so that the ones that meet the fault were forked
    by a supervisor whose own round-trip watchdog already ran."""
    f.configure(database={"conninfo": ot.failover_conninfo(primary, standby), "statement_timeout_ms": 2000})
    d = f.start()
    f.wait_subscribed("mosq")
    if respawn:
        ot.wait_until(lambda: "the database answers; ready" in d.log(), 30, desc="the supervisor's check")
        old = f.worker_pids()
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        ot.wait_until(lambda: len(set(f.worker_pids()) - set(old)) == len(old), 30, desc="workers restarted")
        f.wait_subscribed("mosq", count=2)
    start = obtest.progress(primary)
    total = f.streams(1500, 600, tag=tag)
    at = obtest.wait_progress(primary, start + 400) - start
    workers = f.worker_pids()
    before = f.emit(primary, "fo.out.before" + tag)
    fault(primary)
    t_fault = time.time()
    t.ok(at < total, "%s: the primary failed mid-stream (%d of %d messages applied)" % (tag, at, total))
    standby.promote()
    t_promoted = time.time()
    first = obfailover.first_commit_after(standby, t_promoted, timeout=90)
    if not t.ok(first is not None, "%s: oncebridge applies on the new primary by itself" % tag,
                diag="%d of %d messages applied on the new primary after 90 s"
                % (obtest.progress(standby) - start, total)):
        raise SystemExit(t.done())
    obtest.note("%s: promoted %.1f s after the fault, first commit on the new primary %.1f s after the promotion"
                " (%.1f s after the fault)" % (tag, t_promoted - t_fault, first, first + t_promoted - t_fault))
    lost = f.ledger(t, standby, timeout=120, strict=strict)
    obtest.note("%s: all %d messages settled %.1f s after the fault, %d events lost"
                % (tag, total, time.time() - t_fault, lost))
    if strict:
        t.eventually(lambda: before in f.watched(), 60,
                     "%s: the outbox row committed before the fault was delivered after it" % tag)
    t.is_(f.worker_pids(), workers, "%s: the same worker processes recovered by themselves" % tag)
    return d


# 1. a hung primary
d = phase(f.pg, f.standby, lambda pg: pg.freeze(), "hung", respawn=True)
after = f.emit(f.standby, "fo.out.after")
t.eventually(lambda: after in f.watched(), 60, "hung: an outbox row committed on the new primary is delivered")
t.is_(f.standby.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0,
      "hung: the new primary has no unpublished outbox row")
log = d.log()
t.ok("did not answer within 7000 ms" in log, "hung: the deadline ended the round trips on the frozen primary",
     diag=log[-3000:])
t.ok(WARNING not in log, "no asynchronous-standby warning with a synchronous standby")
t.is_(d.terminate(timeout=30), 0, "clean stop")
f.pg.kill()

# 2. kill -9, synchronous standby
p2 = f.standby
s2 = ot.Standby(p2, name="standby2", sync=True).start()
d = phase(p2, s2, lambda pg: pg.kill(), "kill")
t.is_(d.terminate(timeout=30), 0, "clean stop")

# 3. kill -9, asynchronous standby
s3 = ot.Standby(s2, name="standby3", sync=False).start()
d = phase(s2, s3, lambda pg: pg.kill(), "async", strict=False)
t.is_(d.log().count(WARNING), 1, "async: the asynchronous standby was named in one warning at connect, "
      "not one per process")
t.is_(d.terminate(timeout=30), 0, "clean stop")
raise SystemExit(t.done())
