# SPDX-License-Identifier: Apache-2.0
"""oncebridge-specific test helpers on top of oncetest: write configs,
install the schema, start the daemon, count what it applied."""
import os
import re
import signal
import subprocess
import time

import oncetest as ot

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("ONCEBRIDGE_SRCDIR", os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("ONCEBRIDGE_BIN", os.path.join(SRCDIR, "oncebridge"))


def lc_value(v, indent):
    """Render a Python value as libconfig text."""
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, dict):
        inner = "".join("%s  %s = %s;\n" % (pad, k, lc_value(x, indent + 1)) for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, list):
        if all(isinstance(x, str) for x in v):
            return "[ " + ", ".join(lc_value(x, indent) for x in v) + " ]"
        return "(\n" + ",\n".join(pad + "  " + lc_value(x, indent + 1) for x in v) + "\n" + pad + ")"
    raise TypeError(type(v))


def lc_file(settings):
    return "".join("%s = %s;\n" % (k, lc_value(v, 0)) for k, v in settings.items())


def write_secret(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def daemon_argv(config):
    """The command line of the daemon under test; the suite runs as root in
    CI, which oncebridge refuses without --allow-root. With
    ONCEBRIDGE_VALGRIND_DIR set, the daemon and its workers run under
    valgrind's memcheck, one log per process in that directory (empty when
    clean: tests/hardening.sh checks them)."""
    argv = [BIN, "-c", config] + (["--allow-root"] if os.geteuid() == 0 else [])
    vgdir = os.environ.get("ONCEBRIDGE_VALGRIND_DIR")
    if vgdir:
        os.makedirs(vgdir, exist_ok=True)
        argv = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=definite",
                "--errors-for-leak-kinds=definite", "--num-callers=30",
                "--suppressions=" + os.path.join(SRCDIR, "tests", "valgrind.supp"),
                "--log-file=" + os.path.join(vgdir, "vg.%p.log")] + argv
    return argv


class Bridge:
    """A private PostgreSQL (with the oncebridge schema) and RabbitMQ, and
    oncebridge configured against them."""

    def __init__(self, name, rabbit=True):
        self.dir = ot.make_tmpdir(name)
        self.pg = ot.Postgres(self.dir)
        self.rabbit = ot.RabbitMQ(self.dir) if rabbit else None
        self.confdir = os.path.join(self.dir, "etc")
        os.makedirs(os.path.join(self.confdir, "conf.d"), exist_ok=True)
        self.daemon = None
        self.runs = 0
        ot.at_done(self._check_logs)

    def _check_logs(self, t):
        """Every test with a daemon ends with this check of its logs."""
        if self.runs:
            bad = log_errors(self.logs())
            t.ok(not bad, "the daemon's logs show no sanitizer report, crash or unexpected process exit",
                 diag="\n".join(bad[:20]))

    def start_servers(self):
        self.pg.start()
        self.install_schema()
        if self.rabbit:
            self.rabbit.start()

    def install_schema(self):
        env = dict(os.environ, ONCEBRIDGE_SQL_DIR=os.path.join(SRCDIR, "sql"))
        out = subprocess.run(
            [os.path.join(SRCDIR, "sql", "oncebridge-migrate"), "-d", self.pg.conninfo],
            env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("migrations failed: " + out.stdout + out.stderr)

    def main_config(self, **overrides):
        cfg = {
            "database": {"conninfo": self.pg.conninfo},
            "log_level": "info",
            "retry": {"initial_ms": 100, "max_ms": 2000, "max_attempts": 3},
            "shutdown_timeout_ms": 10000,
        }
        cfg.update(overrides)
        return cfg

    def amqp_broker(self, name="rabbit", **overrides):
        write_secret(os.path.join(self.confdir, "rabbit.password"), self.rabbit.password)
        b = {
            "name": name,
            "type": "amqp",
            "url": "amqp://%s@127.0.0.1:%d/" % (self.rabbit.user, self.rabbit.port),
            "password_file": "../rabbit.password",   # relative to conf.d/
            "heartbeat": 10,
            "prefetch": 500,
            "batch_size": 200,
            "batch_linger_ms": 10,
        }
        b.update(overrides)
        return b

    def write_config(self, brokers, **main_overrides):
        """brokers: list of (filename, broker dict, routes list)."""
        path = os.path.join(self.confdir, "oncebridge.conf")
        with open(path, "w") as f:
            f.write(lc_file(self.main_config(**main_overrides)))
        for fn in os.listdir(os.path.join(self.confdir, "conf.d")):
            os.unlink(os.path.join(self.confdir, "conf.d", fn))
        for filename, broker, routes in brokers:
            with open(os.path.join(self.confdir, "conf.d", filename), "w") as f:
                f.write(lc_file({"broker": broker, "routes": routes}))
        self.config = path
        return path

    def start(self, env=None):
        self.runs += 1
        log = os.path.join(self.dir, "oncebridge-%d.log" % self.runs)
        self.daemon = ot.Daemon(daemon_argv(self.config), log, env=env)
        return self.daemon

    def logs(self):
        text = ""
        for i in range(1, self.runs + 1):
            p = os.path.join(self.dir, "oncebridge-%d.log" % i)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    text += f.read()
        return text

    def worker_pids(self):
        """pids of the daemon's worker processes (children of the supervisor)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.daemon.pid)],
                             capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def peak_rss_kb(self):
        """Largest peak RSS (VmHWM) among the daemon's worker processes."""
        peak = 0
        for pid in self.worker_pids():
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        return peak

    def wait_drained(self, queue, timeout=120):
        def drained():
            ready, unacked = self.rabbit.queue_counts(queue)
            return ready == 0 and unacked == 0
        return ot.wait_until(drained, timeout, interval=0.5, desc="queue %s drained" % queue)


def applied_table(pg, name="applied"):
    """A business table where every application of an event adds a row, so
    that a double application shows as two rows."""
    pg.execute("CREATE TABLE %s (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL,"
               " n integer, at timestamptz NOT NULL DEFAULT clock_timestamp())" % name)


def applied_route(name, queue, sql_table="applied", **extra):
    r = {
        "name": name,
        "queue": queue,
        "event_id": "json:id",
        "sql": "INSERT INTO %s (route, event_id, n) VALUES ($1, $2, $3)" % sql_table,
        "params": ["route", "event_id", "json:n"],
    }
    r.update(extra)
    return r


def exactly_once(t, pg, route, expected_ids, table="applied"):
    """Assert that route applied each of expected_ids exactly once."""
    rows = pg.execute("SELECT event_id, count(*) FROM %s WHERE route = %%s GROUP BY event_id" % table, (route,))
    counts = {r[0]: r[1] for r in rows}
    missing = [e for e in expected_ids if e not in counts]
    twice = {e: c for e, c in counts.items() if c > 1}
    extra = [e for e in counts if e not in expected_ids]
    t.ok(not missing, "route %s: no event lost (%d expected, %d applied)" % (route, len(expected_ids), len(counts)),
         diag="missing: %s" % missing[:10])
    t.ok(not twice, "route %s: no event applied twice" % route, diag="twice: %s" % list(twice.items())[:10])
    t.ok(not extra, "route %s: no unexpected event applied" % route, diag="extra: %s" % extra[:10])
    return not missing and not twice and not extra


_EXIT = re.compile(r"(worker|relay|retention process).*(exited with status \d+|was terminated by signal (\d+)"
                   r"|ended with status \d+); restarting it in")


def log_errors(text):
    """Lines of the daemon log that show a bug rather than an injected
    fault: sanitizer reports, and any process of the daemon that ended
    by itself and was restarted (a crash, an abort, an unexpected exit).
    A restart after SIGKILL is the one fault tests inject into workers."""
    bad = []
    for line in text.splitlines():
        if "Sanitizer" in line or "runtime error" in line or "Segmentation" in line:
            bad.append(line)
            continue
        m = _EXIT.search(line)
        if m and m.group(3) != str(signal.SIGKILL.value):
            bad.append(line)
    return bad


def progress(pg, table="applied"):
    return pg.scalar("SELECT count(*) FROM %s" % table)


def note(msg):
    print("# " + msg, flush=True)


def event_stream(n, dup_ratio=0.1, routing_key="ev.s", seed=1):
    """n events as messages, dup_ratio of them published twice, shuffled
    locally so duplicates are interleaved. Returns (ids, messages)."""
    import json
    import random
    rng = random.Random(seed)
    ids = ["%s-%06d" % (routing_key, i) for i in range(n)]
    msgs = []
    for i, e in enumerate(ids):
        m = {"exchange": "amq.topic", "routing_key": routing_key, "body": json.dumps({"id": e, "n": i})}
        msgs.append(m)
        if rng.random() < dup_ratio:
            msgs.append(dict(m))
    # move duplicates a little later in the stream, as a retrying producer would
    for i in range(len(msgs) - 1, 0, -1):
        j = max(0, i - rng.randint(0, 50))
        if rng.random() < 0.3:
            msgs[i], msgs[j] = msgs[j], msgs[i]
    return ids, msgs


def wait_progress(pg, at_least, timeout=120, table="applied"):
    """Wait until at least at_least rows were applied; returns the count."""
    return ot.wait_until(lambda: (lambda c: c if c >= at_least else 0)(progress(pg, table)),
                         timeout, interval=0.02, desc="%d rows applied" % at_least)


def slow_route(name, queue, keys, per_event_ms=1.0):
    """A route whose business SQL takes about per_event_ms per event, so
    that a fault can be injected while the stream is being applied."""
    return applied_route(name, queue, declare_queue=True, bind_exchange="amq.topic", bind_keys=keys,
                         sql="INSERT INTO applied (route, event_id, n) SELECT $1, $2, $3"
                             " FROM pg_sleep(%g)" % (per_event_ms / 1000.0))


# --------------------------------------------------------------------------
# MQTT: a private Mosquitto (persistence on, no queue limit) instead of
# RabbitMQ, and helpers to publish event streams and wait for oncebridge's
# subscriptions.

class MQTTBridge(Bridge):
    """A private PostgreSQL and Mosquitto, and oncebridge configured
    against them."""

    def __init__(self, name, extra_conf=""):
        Bridge.__init__(self, name, rabbit=False)
        self.mqtt = ot.Mosquitto(self.dir, extra_conf=extra_conf)

    def start_servers(self):
        Bridge.start_servers(self)
        self.mqtt.start()

    def mqtt_broker(self, name="mosq", client_id=None, **overrides):
        b = {
            "name": name,
            "type": "mqtt",
            "url": "mqtt://127.0.0.1:%d" % self.mqtt.port,
            "client_id": client_id or "oncebridge-" + name,
            "keepalive": 10,
            "mqtt_version": 5,
            # one session, plain subscriptions: what most tests exercise
            # (kill -9 of the worker, restarts, order); workers=None
            # leaves the key out, for the default (4 on $share/)
            "workers": 1,
        }
        b.update(overrides)
        return {k: v for k, v in b.items() if v is not None}

    def wait_subscribed(self, broker="mosq", count=1, timeout=30):
        """Wait until the current run's log shows count "subscribed to" or
        "session resumed" lines of broker (its persistent session exists:
        from now on the broker queues messages for it). A resumed session
        delivers its backlog before the SUBACK, so "subscribed to" can come
        late."""
        import re
        rx = re.compile(r"broker %s(\[\d+\])?: (subscribed to |connected to .*session resumed)" % re.escape(broker))
        return ot.wait_until(lambda: len(rx.findall(self.daemon.log())) >= count, timeout,
                             interval=0.05, desc="broker %s subscribed %d times" % (broker, count))


def mqtt_route(name, topic, sql_table="applied", **extra):
    r = {
        "name": name,
        "topic": topic,
        "event_id": "json:id",
        "sql": "INSERT INTO %s (route, event_id, n) VALUES ($1, $2, $3)" % sql_table,
        "params": ["route", "event_id", "json:n"],
    }
    r.update(extra)
    return r


def mqtt_slow_route(name, topic, per_event_ms=1.0, **extra):
    """A route whose business SQL takes about per_event_ms per event."""
    return mqtt_route(name, topic, sql="INSERT INTO applied (route, event_id, n) SELECT $1, $2, $3"
                      " FROM pg_sleep(%g)" % (per_event_ms / 1000.0), **extra)


def mqtt_stream(n, topic="dev/1/reading", dup_ratio=0.1, seed=1, prefix=None, user_property=None):
    """n events as (topic, payload[, properties]) items, dup_ratio of them
    published twice, duplicates moved a little later in the stream.
    user_property: also carry the event ID in this MQTT 5 user property.
    Returns (ids, items)."""
    import json
    import random
    rng = random.Random(seed)
    prefix = prefix or topic.replace("/", ".")
    ids = ["%s-%06d" % (prefix, i) for i in range(n)]
    items = []
    for i, e in enumerate(ids):
        body = json.dumps({"id": e, "n": i})
        it = (topic, body, {"UserProperty": [(user_property, e)]}) if user_property else (topic, body)
        items.append(it)
        if rng.random() < dup_ratio:
            items.append(it)
    for i in range(len(items) - 1, 0, -1):
        j = max(0, i - rng.randint(0, 50))
        if rng.random() < 0.3:
            items[i], items[j] = items[j], items[i]
    return ids, items


def applied_events(pg, route, table="applied"):
    return pg.scalar("SELECT count(DISTINCT event_id) FROM %s WHERE route = %%s" % table, (route,))


def ledger(pg, route, expected_ids, table="applied"):
    """The exactly-once ledger a benchmark run ends with: every expected
    event applied once by route, none missing, none twice. Prints one line;
    raises RuntimeError when the ledger does not balance."""
    rows = pg.execute("SELECT event_id, count(*) FROM %s WHERE route = %%s GROUP BY event_id" % table, (route,))
    counts = {r[0]: r[1] for r in rows}
    expected = set(expected_ids)
    missing = len(expected - set(counts))
    twice = sum(1 for c in counts.values() if c > 1)
    extra = len(set(counts) - expected)
    line = "ledger %s: %d events expected, %d applied, %d missing, %d twice, %d unexpected" % (
        route, len(expected), len(counts), missing, twice, extra)
    print(line, flush=True)
    if missing or twice or extra:
        raise RuntimeError(line)


def wait_applied(pg, route, n, timeout=120, settle=1.0, table="applied"):
    """Wait until route applied n distinct events, then a little longer so
    that a late double application would show."""
    ot.wait_until(lambda: applied_events(pg, route, table) >= n, timeout, interval=0.1,
                  desc="route %s applied %d events" % (route, n))
    time.sleep(settle)


def publish_in_background(mqtt, items, protocol=ot.MQTTv311, chunk=500):
    """Publish items from a thread, chunk by chunk (each chunk on a new
    connection, so that a broker restart in between costs nothing). Returns
    the thread; its .error is set if publishing failed."""
    import threading

    def run():
        try:
            for i in range(0, len(items), chunk):
                for attempt in range(30):
                    try:
                        mqtt.publish_many(items[i:i + chunk], protocol=protocol, timeout=60)
                        break
                    except Exception as e:   # broker restarting: publish the chunk again
                        th.last_retry = e
                        time.sleep(0.5)
                else:
                    raise RuntimeError("could not publish chunk %d" % i)
        except Exception as e:
            th.error = e
    th = threading.Thread(target=run, daemon=True)
    th.error = None
    th.start()
    return th


# --------------------------------------------------------------------------
# Runtime: systemd notifications without systemd, and the metrics endpoint.

class NotifyListener:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; a
    thread collects every datagram as (monotonic time, text)."""

    def __init__(self, dirpath):
        import socket
        import threading
        self.path = os.path.join(dirpath, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.lock = threading.Lock()
        th = threading.Thread(target=self._run, daemon=True)
        th.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def env(self, watchdog_usec=None):
        e = {"NOTIFY_SOCKET": self.path}
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        return e

    def lines(self, since=0.0):
        """(time, "KEY=value") of every assignment received after since."""
        with self.lock:
            msgs = list(self.messages)
        return [(t, line) for t, m in msgs if t >= since for line in m.split("\n") if line]

    def has(self, assignment, since=0.0):
        return any(line == assignment for _, line in self.lines(since))

    def count(self, assignment, since=0.0):
        return sum(1 for _, line in self.lines(since) if line == assignment)

    def statuses(self, since=0.0):
        return [line[len("STATUS="):] for _, line in self.lines(since) if line.startswith("STATUS=")]


def http_get(url, timeout=5):
    """(status, body) of a GET."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_prometheus(text):
    """Parse Prometheus text format strictly enough to catch mistakes:
    returns {(name, frozenset(labels.items())): value} and raises ValueError
    on a malformed line, a sample without a TYPE or a TYPE declared twice."""
    import re
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([-+]?([0-9.eE+-]+|Inf|NaN))$')
    lab = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    types, out = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if name in types:
                raise ValueError("TYPE of %s declared twice" % name)
            if typ not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError("bad type: " + line)
            types[name] = typ
            continue
        if line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise ValueError("malformed sample: " + line)
        name, labels = m.group(1), {}
        rest = m.group(3) or ""
        pos = 0
        while pos < len(rest):
            lm = lab.match(rest, pos)
            if not lm:
                raise ValueError("malformed labels: " + line)
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in types and base not in types:
            raise ValueError("sample without TYPE: " + line)
        if types.get(name) == "counter" and not name.endswith("_total"):
            raise ValueError("counter not named *_total: " + name)
        key = (name, frozenset(labels.items()))
        if key in out:
            raise ValueError("duplicate sample: " + line)
        out[key] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))
