# SPDX-License-Identifier: Apache-2.0
"""faultproxy -- a fault-injecting TCP proxy for oncebridge's tests.

A FaultProxy listens on a free loopback port and forwards every accepted
connection to a target (host, port). On command from the test, for one
connection or for all current and future ones, it can

  - pass through (the default);
  - add latency: each chunk it reads is written on N ms later, in each
    direction;
  - blackhole one direction or both ("up" is client to server, "down" is
    server to client): it stops reading and writing that direction without
    closing anything, so the kernel goes on ACKing what fits in the socket
    buffers and then advertises a zero window -- a frozen peer, a stalled
    middlebox, a half-open path;
  - reset the current connections (SO_LINGER 0, then close: a TCP RST to
    both sides);
  - close the current connections cleanly (a FIN to both sides).

Counters: bytes forwarded each way, connections accepted, connections open.

One thread runs a selectors loop over every socket; the test's commands are
handed to it through a queue and a wake-up pipe and take effect before the
call returns, so a test can rely on "after blackhole(), nothing passes".
Standard library only.

    proxy = FaultProxy(("127.0.0.1", pg.port))
    ... point the client at proxy.port ...
    proxy.blackhole()            # all connections, now and later
    proxy.passthrough()
    proxy.reset()
    proxy.close()                # stop the proxy itself
"""
import collections
import os
import queue
import selectors
import socket
import struct
import threading
import time

UP, DOWN = "up", "down"
CHUNK = 65536
PENDING_LIMIT = 256 * 1024   # stop reading a direction past this much unsent


class _Mode:
    def __init__(self, hole=(), latency_ms=0):
        self.hole = set(hole)
        self.latency_ms = latency_ms

    def copy(self):
        return _Mode(self.hole, self.latency_ms)


class _Direction:
    """One direction of a connection: read src, write dst."""

    def __init__(self, name, src, dst):
        self.name, self.src, self.dst = name, src, dst
        self.pending = collections.deque()   # [read time, bytes]
        self.pending_bytes = 0
        self.eof = False        # src said FIN
        self.shut = False       # FIN passed on to dst
        self.bytes = 0


class Connection:
    """One proxied connection. Read its counters from the test; change it
    through the proxy's methods (conn=...)."""

    def __init__(self, proxy, num, client, server, mode):
        self.proxy, self.num = proxy, num
        self.client, self.server = client, server
        self.mode = mode
        self.dirs = {UP: _Direction(UP, client, server), DOWN: _Direction(DOWN, server, client)}
        self.closed = False
        self.how_closed = None

    @property
    def bytes_up(self):
        return self.dirs[UP].bytes

    @property
    def bytes_down(self):
        return self.dirs[DOWN].bytes

    def __repr__(self):
        return "<Connection %d up=%d down=%d hole=%s latency=%d%s>" % (
            self.num, self.bytes_up, self.bytes_down, sorted(self.mode.hole), self.mode.latency_ms,
            " closed(%s)" % self.how_closed if self.closed else "")


def _rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    def __init__(self, target, host="127.0.0.1", port=0, rcvbuf=None):
        """target: (host, port) to forward to. rcvbuf: SO_RCVBUF of the
        accepted sockets, to make a blackhole fill the buffers sooner."""
        self.target = target
        self.host = host
        self.default = _Mode()
        self.conns = []           # every connection ever accepted, in order
        self._cmds = queue.Queue()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._lsock.bind((host, port))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="faultproxy:%d" % self.port, daemon=True)
        self._thread.start()

    # ---- counters

    @property
    def connections(self):
        """Connections accepted so far."""
        return len(self.conns)

    @property
    def active(self):
        """Connections open now."""
        return sum(1 for c in self.conns if not c.closed)

    @property
    def bytes_up(self):
        return sum(c.bytes_up for c in self.conns)

    @property
    def bytes_down(self):
        return sum(c.bytes_down for c in self.conns)

    def current(self):
        """The open connections."""
        return [c for c in self.conns if not c.closed]

    # ---- commands (run in the proxy's thread; return when in effect)

    def _do(self, fn):
        done = threading.Event()
        box = {}

        def run():
            try:
                box["v"] = fn()
            except BaseException as e:     # handed back to the caller
                box["e"] = e
            done.set()
        self._cmds.put(run)
        os.write(self._wake_w, b"x")
        if not done.wait(10):
            raise RuntimeError("faultproxy: command not run in 10 s")
        if "e" in box:
            raise box["e"]
        return box.get("v")

    def _targets(self, conn):
        return [conn] if conn is not None else self.current()

    def _set_mode(self, conn, change):
        def run():
            if conn is None:
                change(self.default)
            for c in self._targets(conn):
                change(c.mode)
        self._do(run)

    def passthrough(self, conn=None):
        """Forward everything again, at once: no blackhole, no latency."""
        def change(m):
            m.hole.clear()
            m.latency_ms = 0
        self._set_mode(conn, change)

    def blackhole(self, direction="both", conn=None):
        """Stop forwarding "up", "down" or "both" directions, without
        closing. Without conn: every connection, now and later."""
        dirs = {UP, DOWN} if direction == "both" else {direction}
        if not dirs <= {UP, DOWN}:
            raise ValueError("direction must be up, down or both")
        self._set_mode(conn, lambda m: m.hole.update(dirs))

    def latency(self, ms, conn=None):
        """Delay each chunk by ms in each direction (0: none)."""
        def change(m):
            m.latency_ms = ms
        self._set_mode(conn, change)

    def reset(self, conn=None):
        """RST the current connections (or conn) on both sides."""
        self._do(lambda: [self._close(c, "reset") for c in self._targets(conn)])

    def close_clean(self, conn=None):
        """FIN the current connections (or conn) on both sides."""
        self._do(lambda: [self._close(c, "closed") for c in self._targets(conn)])

    def close(self):
        """Stop the proxy: reset every connection, stop listening."""
        if not self._running:
            return
        self._do(self._shutdown)
        self._thread.join(10)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the loop

    def _shutdown(self):
        for c in self.current():
            self._close(c, "reset")
        self._sel.close()
        self._lsock.close()
        self._running = False

    def _close(self, c, how):
        if c.closed:
            return
        c.closed, c.how_closed = True, how
        for s in (c.client, c.server):
            if s.fileno() >= 0:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            if how == "reset":
                _rst(s)
            else:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self):
        try:
            client, _ = self._lsock.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _rst(client)
            return
        for s in (client, server):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns.append(Connection(self, len(self.conns) + 1, client, server, self.default.copy()))

    def _interest(self, c, now):
        """Register what c's sockets wait for; returns the next due time of
        a delayed chunk, or None."""
        want = {c.client: 0, c.server: 0}
        due = None
        for d in c.dirs.values():
            if d.name in c.mode.hole:
                continue
            if not d.eof and d.pending_bytes < PENDING_LIMIT:
                want[d.src] |= selectors.EVENT_READ
            if d.pending:
                at = d.pending[0][0] + c.mode.latency_ms / 1000.0
                if at <= now:
                    want[d.dst] |= selectors.EVENT_WRITE
                elif due is None or at < due:
                    due = at
        for s, ev in want.items():
            self._register(s, ev, c)
        return due

    def _register(self, s, ev, c):
        try:
            key = self._sel.get_key(s)
        except KeyError:
            key = None
        if ev == 0:
            if key:
                self._sel.unregister(s)
        elif key is None:
            self._sel.register(s, ev, c)
        elif key.events != ev:
            self._sel.modify(s, ev, c)

    def _pump(self, c, sock, events):
        for d in c.dirs.values():
            if c.closed:
                return
            if events & selectors.EVENT_READ and d.src is sock:
                self._read(c, d)
            if events & selectors.EVENT_WRITE and d.dst is sock:
                self._write(c, d)

    def _read(self, c, d):
        try:
            data = d.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(c, "reset")     # a reset on one side resets the other
            return
        if not data:
            d.eof = True
        else:
            d.pending.append([time.monotonic(), data])
            d.pending_bytes += len(data)
        self._maybe_shut(c, d)

    def _write(self, c, d):
        now = time.monotonic()
        while d.pending and d.pending[0][0] + c.mode.latency_ms / 1000.0 <= now:
            data = d.pending[0][1]
            try:
                n = d.dst.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(c, "reset")
                return
            d.bytes += n
            d.pending_bytes -= n
            if n < len(data):
                d.pending[0][1] = data[n:]
                return
            d.pending.popleft()
        self._maybe_shut(c, d)

    def _maybe_shut(self, c, d):
        if d.eof and not d.pending and not d.shut:
            d.shut = True
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if all(x.shut for x in c.dirs.values()):
            self._close(c, "closed")

    def _loop(self):
        self._sel.register(self._lsock, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while self._running:
            now = time.monotonic()
            due = None
            for c in self.current():
                at = self._interest(c, now)
                if at is not None and (due is None or at < due):
                    due = at
            timeout = 0.5 if due is None else max(0.0, min(0.5, due - now))
            for key, events in self._sel.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    os.read(self._wake_r, 4096)
                    while not self._cmds.empty():
                        self._cmds.get()()
                    if not self._running:
                        return
                elif not key.data.closed:
                    self._pump(key.data, key.fileobj, events)
