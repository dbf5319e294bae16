# SPDX-License-Identifier: Apache-2.0
"""Structured logs, under systemd and off it. First the daemon runs with
JOURNAL_STREAM naming its stderr, in a private mount namespace whose
/run/systemd/journal is a directory of this test: a real systemd-journald
listens there when the machine has one (in a namespace of its own, its
journal files in the test's directory, read back with journalctl -D and
a field match), else a datagram socket of this test that parses the
journal's native protocol. Its fields are checked - a dead letter
carries ONCEBRIDGE_ROUTE, ONCEBRIDGE_EVENT_ID and ONCEBRIDGE_SQLSTATE with
the role, broker, worker and pid of its process; a database outage
carries ONCEBRIDGE_CONDITION=database, started, continuing and ended.
Then, with log_format = "json" and no journal, every line is one JSON
object with the same fields. The namespaces need root (CI runs as root);
without it that half is skipped."""
import json
import os
import re
import socket
import struct
import subprocess
import threading

import obtest
import oncetest as ot

DEAD_FIELDS = {"role": "worker", "broker": "mosq", "worker": "0", "route": "lj", "sqlstate": "23514"}


JOURNALD = "/lib/systemd/systemd-journald"
# a private /run: tmpfs over /run/systemd (or /run when that is missing),
# with $0 bound as /run/systemd/journal
NAMESPACE = ('set -e; if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; '
             'else mount -t tmpfs tmpfs /run; fi; mkdir -p /run/systemd/journal /run/log; '
             'mount --bind "$0" /run/systemd/journal; ')


class JournalSocket:
    """Stands in for journald's native socket: collects each datagram as a
    dict of fields."""
    real = False

    def __init__(self, dirpath):
        self.dir = os.path.join(dirpath, "journal")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        if os.path.exists(os.path.join(self.dir, "socket")):
            os.unlink(os.path.join(self.dir, "socket"))   # left by a journald that was of no use
        self.sock.bind(os.path.join(self.dir, "socket"))
        self.received = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            data = self.sock.recv(1 << 20)
            self.received.append(parse_entry(data))

    def entries(self, *matches):
        want = dict(m.split("=", 1) for m in matches)
        return [e for e in list(self.received) if all(e.get(k) == v for k, v in want.items())]


class Journald:
    """A real systemd-journald in a mount namespace of its own: its sockets
    in dir, its journal files in logdir, read with journalctl -D."""
    real = True

    def __init__(self, dirpath):
        self.dir = os.path.join(dirpath, "journal")
        self.logdir = os.path.join(dirpath, "journal-files")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.logdir, exist_ok=True)
        script = NAMESPACE + 'mount --bind "$1" /run/log; exec ' + JOURNALD
        self.proc = ot.Daemon(["unshare", "--mount", "sh", "-c", script, self.dir, self.logdir],
                              os.path.join(dirpath, "journald.log"))
        ot.wait_until(lambda: os.path.exists(os.path.join(self.dir, "socket")) or not self.proc.alive(), 10,
                      desc="journald listening")
        if not self.proc.alive():
            raise RuntimeError("journald did not start: " + self.proc.log()[-500:])
        # a probe entry must come back through journalctl, or this journald
        # is of no use here (no machine ID, another layout): stop it
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
                probe.sendto(b"MESSAGE=probe\nLOG_JOURNAL_PROBE=1\n", os.path.join(self.dir, "socket"))
            ot.wait_until(lambda: self.entries("LOG_JOURNAL_PROBE=1"), 10, desc="the probe entry in journalctl")
        except (OSError, TimeoutError):
            self.proc.terminate()
            raise RuntimeError("journalctl -D did not show a probe entry")

    def entries(self, *matches):
        """journalctl's answer to the field matches (KEY=value)."""
        out = subprocess.run(["journalctl", "-D", os.path.join(self.logdir, "journal"), "-o", "json", "--no-pager"]
                             + list(matches), capture_output=True, text=True, timeout=30)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def open_journal(dirpath):
    if os.path.exists(JOURNALD):
        try:
            return Journald(dirpath)
        except (RuntimeError, TimeoutError) as e:
            obtest.note("no real journald here (%s): a test socket stands in" % str(e).strip()[-200:])
    return JournalSocket(dirpath)


def parse_entry(data):
    """KEY=value lines, or KEY, a little-endian 64-bit length and the bytes
    for a value with a newline in it."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k, n = line, struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            v = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[k.decode()] = v.decode(errors="replace")
    return fields


def start_in_namespace(b, journal):
    """Start the daemon as systemd would: stderr is the journal stream
    (JOURNAL_STREAM), and /run/systemd/journal is journal.dir."""
    b.runs += 1
    log = os.path.join(b.dir, "oncebridge-%d.log" % b.runs)
    open(log, "ab").close()
    st = os.stat(log)
    argv = ["unshare", "--mount", "sh", "-c", NAMESPACE + 'exec "$@"', journal.dir] + obtest.daemon_argv(b.config)
    b.daemon = ot.Daemon(argv, log, env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    return b.daemon


def outage(b, seen, publish):
    """Stop PostgreSQL until seen("started") and seen("continuing") hold,
    with a message waiting for it; then start it and wait for seen("ended")."""
    b.pg.stop()
    publish()
    ok = ot.wait_until(lambda: seen("started") and seen("continuing"), 30, desc="outage logged")
    b.pg.start_again()
    ot.wait_until(lambda: seen("ended"), 30, desc="end of outage logged")
    return ok


t = ot.TAP()
b = obtest.MQTTBridge("log-journal")
b.start_servers()
b.pg.execute("CREATE TABLE applied (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL,"
             " n integer CHECK (n >= 0))")
brokers = [("10-mosq.conf", b.mqtt_broker(mqtt_version=4), [obtest.mqtt_route("lj", "lj/+/reading")])]


def event(eid, n):
    return ("lj/dev/reading", json.dumps({"id": eid, "n": n}))


can_unshare = os.geteuid() == 0 and subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0
if not can_unshare:
    for what in ("dead letter fields in the journal", "outage fields in the journal", "nothing on stderr"):
        t.skip(what, "a private mount namespace needs root")
else:
    j = open_journal(b.dir)
    obtest.note("journal: %s" % ("a real systemd-journald, read with journalctl -D" if j.real else "a test socket"))
    b.write_config(brokers, log_repeat_interval_s=1)
    d = start_in_namespace(b, j)
    ot.wait_until(lambda: any("subscribed to" in e.get("MESSAGE", "") for e in j.entries("ONCEBRIDGE_ROLE=worker")),
                  30, desc="subscribed (journal)")
    b.mqtt.publish_many([event("ok-1", 1), event("bad-1", -1)])
    ot.wait_until(lambda: j.entries("ONCEBRIDGE_EVENT_ID=bad-1"), 30, desc="dead letter in the journal")
    dead = [e for e in j.entries("ONCEBRIDGE_ROUTE=lj") if "dead-lettered" in e.get("MESSAGE", "")]
    want = dict(("ONCEBRIDGE_" + k.upper(), v) for k, v in DEAD_FIELDS.items())
    want.update(ONCEBRIDGE_EVENT_ID="bad-1", PRIORITY="4", SYSLOG_IDENTIFIER="oncebridge")
    t.ok(len(dead) == 1 and all(dead[0].get(k) == v for k, v in want.items()) and
         int(dead[0].get("ONCEBRIDGE_PID", 0)) in b.worker_pids() and
         dead[0].get("_PID", dead[0]["ONCEBRIDGE_PID"]) == dead[0]["ONCEBRIDGE_PID"],
         "a dead letter's journal entry, selected by ONCEBRIDGE_ROUTE=lj, carries route, event ID, SQLSTATE, "
         "role, broker, worker and pid", diag="%r" % dead)

    def jseen(state):
        return j.entries("ONCEBRIDGE_CONDITION=database", "ONCEBRIDGE_CONDITION_STATE=" + state,
                         "ONCEBRIDGE_ROLE=worker")
    outage(b, jseen, lambda: b.mqtt.publish_many([event("ok-2", 2)]))
    started, ended = jseen("started")[0], jseen("ended")[-1]
    t.ok(started["PRIORITY"] == "4" and started["ONCEBRIDGE_BROKER"] == "mosq" and
         "could not connect to the database" in started["MESSAGE"] and
         int(ended["ONCEBRIDGE_ATTEMPTS"]) >= 2 and int(ended["ONCEBRIDGE_DURATION_MS"]) >= 1000 and
         ended["PRIORITY"] == "5",
         "a database outage: ONCEBRIDGE_CONDITION=database started, continuing, ended (attempts %s, %s ms)"
         % (ended.get("ONCEBRIDGE_ATTEMPTS"), ended.get("ONCEBRIDGE_DURATION_MS")),
         diag="%r\n%r" % (started, ended))
    obtest.wait_applied(b.pg, "lj", 2, settle=0.2)
    t.is_(d.terminate(timeout=20), 0, "clean stop (journal)")
    t.ok("dead-lettered" not in d.log() and "could not connect" not in d.log(),
         "with the journal there, nothing of this went to stderr", diag=d.log()[-2000:])
    obtest.note("%d journal entries of oncebridge; fields of the dead letter: %s"
                % (len(j.entries("SYSLOG_IDENTIFIER=oncebridge")), sorted(k for k in dead[0] if not k.startswith("_"))))

# log_format = "json", no journal
b.write_config(brokers, log_repeat_interval_s=1, log_format="json")
d = b.start(env={"JOURNAL_STREAM": None})
b.wait_subscribed()
b.mqtt.publish_many([event("ok-3", 3), event("bad-2", -2)])


def objects():
    out = []
    for line in d.log().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"unparsed": line})
    return out


dead = ot.wait_until(lambda: [o for o in objects() if "dead-lettered" in o.get("message", "")], 30,
                     desc="dead letter in the JSON log")[0]
want = dict(DEAD_FIELDS, event_id="bad-2", level="warning")
want["worker"] = 0
t.ok(all(dead.get(k) == v for k, v in want.items()) and dead.get("pid") in b.worker_pids() and
     re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", dead.get("time", "")),
     "a dead letter's JSON line carries time, level, route, event ID, SQLSTATE, role, broker, worker and pid",
     diag="%r" % dead)


def oseen(state):
    return [o for o in objects() if o.get("condition") == "database" and o.get("condition_state") == state
            and o.get("role") == "worker"]


outage(b, oseen, lambda: b.mqtt.publish_many([event("ok-4", 4)]))
ended = oseen("ended")[-1]
t.ok(ended["level"] == "notice" and ended["attempts"] >= 2 and ended["duration_ms"] >= 1000,
     "a database outage in JSON: condition database started, continuing, ended", diag="%r" % ended)
obtest.wait_applied(b.pg, "lj", 4, settle=0.2)
t.is_(d.terminate(timeout=20), 0, "clean stop (JSON)")
bad = [o["unparsed"] for o in objects() if "unparsed" in o]
t.ok(not bad and len(objects()) > 10, "every one of the %d lines is a JSON object" % len(objects()),
     diag="\n".join(bad[:10]))
roles = {o.get("role") for o in objects()}
t.ok({"supervisor", "worker"} <= roles, "lines name their process's role (%s)" % sorted(r for r in roles if r))
raise SystemExit(t.done())
