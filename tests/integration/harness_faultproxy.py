# SPDX-License-Identifier: Apache-2.0
"""Self-test of tests/harness/faultproxy.py against a local echo server:
each mode (pass, latency, blackhole of each direction and both, reset,
clean close), per connection and for all current and future connections,
and the counters. No servers of the suite, a few seconds."""
import socket
import threading
import time

import faultproxy
import oncetest as ot

t = ot.TAP()


class Echo:
    """A threaded echo server that counts what it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.errors = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                self.received += len(data)
                c.sendall(data)
        except OSError as e:
            self.errors.append(e)
        c.close()


def client(proxy):
    n = proxy.connections
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    ot.wait_until(lambda: proxy.connections > n, 5, desc="the proxy accepted")
    return s


def recv_n(s, n, timeout=5):
    s.settimeout(timeout)
    out = b""
    while len(out) < n:
        data = s.recv(n - len(out))
        if not data:
            break
        out += data
    return out


def nothing_within(s, seconds):
    """True when s yields neither data nor EOF within seconds."""
    s.settimeout(seconds)
    try:
        s.recv(1)
    except socket.timeout:
        return True
    return False


echo = Echo()
p = faultproxy.FaultProxy(("127.0.0.1", echo.port))

# ---- pass through
s = client(p)
s.sendall(b"hello")
t.is_(recv_n(s, 5), b"hello", "pass: echoed through the proxy")
t.ok(ot.wait_until(lambda: p.bytes_up == 5 and p.bytes_down == 5, 5), "pass: counters 5 up, 5 down")
t.is_((p.connections, p.active), (1, 1), "pass: one connection accepted, one open")

# ---- latency, each direction
p.latency(300)
t0 = time.monotonic()
s.sendall(b"slow")
got = recv_n(s, 4)
rtt = time.monotonic() - t0
t.ok(got == b"slow" and 0.55 <= rtt < 3, "latency 300 ms: round trip %.2f s (two directions)" % rtt)
p.passthrough()
t0 = time.monotonic()
s.sendall(b"fast")
got = recv_n(s, 4)
t.ok(got == b"fast" and time.monotonic() - t0 < 0.25, "passthrough() ends the latency")

# ---- blackhole both: nothing passes, nothing closes, the buffers fill
p.blackhole()
before = echo.received
s.sendall(b"x" * 1000)
t.ok(nothing_within(s, 0.5), "blackhole: no reply and no EOF")
t.is_(echo.received, before, "blackhole: the server got nothing")
s.setblocking(False)
sent = 0
try:
    for _ in range(100000):
        sent += s.send(b"y" * 65536)
except BlockingIOError:
    pass
t.ok(sent < 64 << 20, "blackhole: the client's writes block once the buffers are full (%d bytes taken)" % sent)
s.setblocking(True)
p.passthrough()
total = 1000 + sent
t.is_(len(recv_n(s, total, timeout=20)), total, "after the blackhole every byte arrives, in full")
t.ok(p.current()[0].closed is False, "the connection survived the blackhole")

# ---- one direction only
p.blackhole("down")
before = echo.received
s.sendall(b"down")
t.ok(ot.wait_until(lambda: echo.received == before + 4, 5), "blackhole down: the server gets the request")
t.ok(nothing_within(s, 0.5), "blackhole down: the reply does not come back")
p.passthrough()
t.is_(recv_n(s, 4), b"down", "blackhole down: the reply comes after passthrough()")
p.blackhole("up")
before = echo.received
s.sendall(b"up!!")
t.ok(nothing_within(s, 0.5) and echo.received == before, "blackhole up: the server gets nothing")
p.passthrough()
t.is_(recv_n(s, 4), b"up!!", "blackhole up: delivered after passthrough()")

# ---- per connection, and future connections
s2 = client(p)
c1, c2 = p.current()
p.blackhole(conn=c1)
s2.sendall(b"two")
t.is_(recv_n(s2, 3), b"two", "a blackhole of one connection leaves another alone")
s.sendall(b"one")
t.ok(nothing_within(s, 0.3), "... while the first is blackholed")
p.passthrough(conn=c1)
t.is_(recv_n(s, 3), b"one", "... until its passthrough()")
p.blackhole()
s3 = client(p)
s3.sendall(b"new")
t.ok(nothing_within(s3, 0.3), "blackhole() without a connection also holds a new one")
p.passthrough()
t.is_(recv_n(s3, 3), b"new", "passthrough() releases it")

# ---- reset and clean close
p.reset(conn=p.conns[0])
s.settimeout(5)
try:
    data = s.recv(10)
    t.ok(False, "reset: the client sees a connection reset", diag="recv gave %r" % data)
except ConnectionResetError:
    t.ok(True, "reset: the client sees a connection reset")
t.ok(p.conns[0].closed and p.conns[0].how_closed == "reset", "reset: counted as reset")
p.close_clean(conn=p.conns[1])
t.is_(recv_n(s2, 1), b"", "close: the client reads a clean EOF")
t.is_(p.active, 1, "one connection left open")
s3.close()
t.ok(ot.wait_until(lambda: p.active == 0, 5), "a client's close closes the proxied connection")
t.is_(p.connections, 3, "three connections accepted in all")

# ---- the server side resets: the client sees a reset too
s4 = client(p)
srv = p.current()[0].server
s4.sendall(b"a")
recv_n(s4, 1)
p.close()
try:
    s4.settimeout(5)
    s4.recv(1)
    t.ok(False, "close(): the proxy's connections are reset")
except ConnectionResetError:
    t.ok(True, "close(): the proxy's connections are reset")
t.ok(srv.fileno() == -1, "close(): the server side is closed too")
raise SystemExit(t.done())
