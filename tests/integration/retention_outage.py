# SPDX-License-Identifier: Apache-2.0
"""Retention across a broker outage longer than the dedupe window: an event
committed but not acked (the ack is lost when the link to RabbitMQ is cut
right after COMMIT) keeps its key while the worker is cut off for longer
than retention.dedupe_window_s, so that its redelivery after the link comes
back is a counted duplicate, not a second effect. Pruning only waits: keys
claimed before the outage go once the worker has reconnected and settled
its redeliveries, and "oncebridge -t" says how AMQP routes are treated.
A small TCP proxy between oncebridge and RabbitMQ cuts the link. Real
RabbitMQ and PostgreSQL."""
import json
import re
import socket
import subprocess
import threading
import time

import obtest
import oncetest as ot

WINDOW, INTERVAL = 2, 1


class Proxy:
    """TCP proxy to RabbitMQ. mode "pass" forwards both ways; "drop_up"
    forwards only broker-to-client bytes (the client's acks are lost);
    cut() closes every connection and refuses new ones until restore()."""

    def __init__(self, port):
        self.target = port
        self.mode = "pass"
        self.down = False
        self.lock = threading.Lock()
        self.conns = []
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.lsock.accept()
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream and self.mode == "drop_up":
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self):
        self.mode = "pass"
        self.down = False


def event(eid, n):
    return {"exchange": "amq.topic", "routing_key": "ro.ev", "body": json.dumps({"id": eid, "n": n})}


def has_key(eid):
    return b.pg.scalar("SELECT count(*) FROM oncebridge.processed_events WHERE consumer = 'ro' AND event_id = %s",
                       (eid,)) == 1


t = ot.TAP()
t0 = time.monotonic()
b = obtest.Bridge("retention-outage")
b.start_servers()
obtest.applied_table(b.pg)
proxy = Proxy(b.rabbit.port)
broker = b.amqp_broker(url="amqp://%s@127.0.0.1:%d/" % (b.rabbit.user, proxy.port), heartbeat=2,
                       batch_size=10, prefetch=10)
b.write_config([("10-rabbit.conf", broker, [obtest.applied_route("ro", "ro-q")])],
               retention={"dedupe_window_s": WINDOW, "batch_size": 1000, "interval_s": INTERVAL})
b.rabbit.declare_queue("ro-q", keys=["ro.#"])

out = subprocess.run([obtest.BIN, "-t", "-c", b.config], capture_output=True, text=True)
t.is_(out.returncode, 0, "the configuration is valid")
t.ok(re.search(r'warning: .*retention.dedupe_window_s \(2 s\).*broker "rabbit".*only delays pruning', out.stderr),
     "oncebridge -t explains the window for an AMQP broker", diag=out.stderr)

d = b.start()
# while the link is up, keys older than the window are pruned
b.rabbit.publish_many([event("warm-up", 0)])
obtest.wait_progress(b.pg, 1, timeout=60)
ot.wait_until(lambda: not has_key("warm-up"), 30, interval=0.2, desc="warm-up key pruned while connected")
t.ok(True, "a key older than the window is pruned while the worker is connected")

# the ack of "lost-ack" never reaches the broker: the link is cut after COMMIT
proxy.mode = "drop_up"
b.rabbit.publish_many([event("lost-ack", 1)])
ot.wait_until(lambda: b.pg.scalar("SELECT count(*) FROM applied WHERE event_id = 'lost-ack'") == 1, 30,
              interval=0.02, desc="lost-ack committed")
proxy.cut()
cut_at = time.monotonic()
t.ok(has_key("lost-ack"), "the event is committed and its key claimed when the link is cut")


def outage_long_enough():
    if not has_key("lost-ack"):
        return True     # pruned during the outage: the old behaviour
    held = re.search(r'retention: pruning of route "ro" is held back', d.log())
    return held and time.monotonic() - cut_at > WINDOW + 3 * INTERVAL


ot.wait_until(outage_long_enough, 30, interval=0.2, desc="outage longer than the window")
outage = time.monotonic() - cut_at
kept = has_key("lost-ack")
obtest.note("link down for %.1f s with a window of %d s; key %s" % (outage, WINDOW, "kept" if kept else "pruned"))
t.ok(kept, "the key of the unacked event survives an outage longer than the window (%.1f s)" % outage)

proxy.restore()
b.wait_drained("ro-q", timeout=60)
time.sleep(1.0)   # a late second application would show
obtest.exactly_once(t, b.pg, "ro", ["warm-up", "lost-ack"])
t.ok(re.search(r"connected to 127\.0\.0\.1.*\n(.*\n)*.*connected to 127\.0\.0\.1", d.log()),
     "the worker reconnected after the outage")

# pruning resumes once the reconnected worker has settled its redeliveries
ot.wait_until(lambda: not has_key("lost-ack"), 40, interval=0.2, desc="lost-ack key pruned after the outage")
t.ok(True, "the held key is pruned after the worker reconnected and settled its redelivery")

t.is_(d.terminate(timeout=20), 0, "clean stop")
m = re.search(r"worker stopped: (\d+) received, (\d+) applied, (\d+) duplicates", d.log())
obtest.note("worker counters: %s" % (m.group(0) if m else "none"))
t.ok(m and int(m.group(2)) == 2 and int(m.group(3)) == 1,
     "the redelivery was counted as a duplicate, not applied (2 applied, 1 duplicate)",
     diag=m.group(0) if m else d.log()[-2000:])
t.ok(not obtest.log_errors(b.logs()), "no crash reports in the log")
obtest.note("wall time %.1f s" % (time.monotonic() - t0))
raise SystemExit(t.done())
