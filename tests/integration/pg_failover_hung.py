"""A hung primary (issue 13): the primary's processes are stopped (SIGSTOP:
a storage freeze, a paused VM) in the middle of an AMQP and an MQTT stream
with 10 % duplicates and poison, and its synchronous standby is promoted.
The kernel still ACKs and answers keepalive probes, so only the deadline on
each database round trip (database.response_timeout_ms, here the default:
statement_timeout_ms 2 s plus 5 s) gets the workers and the outbox relay
off the frozen sessions; their next connect skips the frozen host after
connect_timeout (5 s by default) and finds the new primary. On the new
primary every event is applied exactly once, every poison message
dead-lettered, and an outbox row committed just before the freeze is
delivered after it."""
import time

import obfailover
import obtest
import oncetest as ot

t = ot.TAP()
f = obfailover.Failover("pg-failover-hung", sync=True)
f.start_servers()
f.configure()
d = f.start()
f.wait_subscribed("mosq")
total = f.streams(2000, 1000)
at = obtest.wait_progress(f.pg, 600)
workers = f.worker_pids()
before = f.emit(f.pg, "fo.out.before")
frozen = f.pg.freeze()
t_freeze = time.time()
t.ok(at < total, "the primary froze mid-stream (%d of %d messages applied, %d processes stopped)"
     % (at, total, len(frozen)))
f.standby.promote()
t_promoted = time.time()
obtest.note("standby promoted %.1f s after the freeze" % (t_promoted - t_freeze))

first = obfailover.first_commit_after(f.standby, t_promoted, timeout=90)
if not t.ok(first is not None, "oncebridge applies on the new primary by itself",
            diag="%d of %d messages applied on the new primary after 90 s" % (obtest.progress(f.standby), total)):
    raise SystemExit(t.done())
obtest.note("first commit on the new primary %.1f s after the promotion (%.1f s after the freeze)"
            % (first, first + t_promoted - t_freeze))
f.ledger(t, f.standby, timeout=120)
drained = time.time() - t_freeze
obtest.note("all %d messages settled %.1f s after the freeze" % (total, drained))
after = f.emit(f.standby, "fo.out.after")
t.eventually(lambda: {before, after} <= f.watched(), 60,
             "the outbox row committed before the freeze and one committed after were both delivered")
t.is_(f.standby.scalar("SELECT count(*) FROM oncebridge.outbox WHERE published_at IS NULL"), 0,
      "the new primary has no unpublished outbox row")
log = f.logs()
t.ok("did not answer within" in log, "the deadline ended a round trip on the frozen primary", diag=log[-3000:])
t.is_(f.worker_pids(), workers, "the same worker processes recovered by themselves")
t.ok(d.alive(), "oncebridge kept running")
f.pg.thaw()
t.is_(d.terminate(timeout=30), 0, "clean stop")
raise SystemExit(t.done())
