# SPDX-License-Identifier: Apache-2.0
"""mqtt_tls_proxy -- a TLS-terminating MQTT proxy for oncebridge's tests.

oncebridge connects to the proxy over TLS (server side, a certificate from
oncetest.make_certs); the proxy connects to the broker (Mosquitto) over plain
TCP and relays MQTT both ways, one thread per connection, parsing every
packet. It stands in for a broker that

  - packs what it sends into full TLS records: bytes read from the broker
    are gathered and encrypted 16 KB at a time, so one record carries
    hundreds of small PUBLISH packets (Netty- and Erlang-based brokers batch
    their writes like this);
  - reuses a packet identifier as soon as it is acknowledged: a new QoS 1
    PUBLISH gets the lowest identifier not in use in the session, as MQTT
    allows, while a PUBLISH the broker sends again keeps its identifier.
    The proxy translates identifiers both ways, so Mosquitto (which counts
    up to 65535 before it wraps) behaves like such a broker.

Commands, from the test's thread: stall() stops reading what oncebridge
sends (the accepted socket has a small receive buffer, so oncebridge's writes
go partial once its own send buffer is full), resume() reads again, reset() closes both sides of the current
connection with a TCP RST (SO_LINGER 0).

A PUBACK from oncebridge is counted as stale when its packet identifier
has no unacknowledged PUBLISH on that connection, or, with ack_check, when
the PUBLISH it acknowledges is not committed yet (oncebridge acks only after
COMMIT, so such an ack can only be one left over from an earlier connection
that lands on a reused identifier). A stale PUBACK that names a message the
session still holds is passed on to the broker translated, as a broker that
keeps identifiers per session would take it; one that names nothing is
dropped. first_stale is set at the first one.
"""
import heapq
import select
import socket
import ssl
import struct
import threading
import time

RECORD = 16384          # plaintext bytes per TLS record (TLS's maximum)
BUFFER_LIMIT = 4 << 20  # stop reading the broker past this much unsent
PUBLISH, PUBACK, CONNECT = 3, 4, 1


def _packets(buf):
    """Split complete MQTT packets off the front of buf (a bytearray):
    returns [(type, flags, packet bytes, offset of the variable header)]
    and removes them from buf."""
    out, i = [], 0
    while len(buf) - i >= 2:
        rl, mult, j, complete = 0, 1, i + 1, False
        while j < len(buf) and j - i <= 4:
            b = buf[j]
            rl += (b & 0x7f) * mult
            mult *= 128
            j += 1
            if not b & 0x80:
                complete = True
                break
        if not complete or j + rl > len(buf):
            break
        out.append((buf[i] >> 4, buf[i] & 0x0f, bytes(buf[i:j + rl]), j - i))
        i = j + rl
    del buf[:i]
    return out


def _varint(data, pos):
    """(value, next position) of an MQTT variable byte integer."""
    v, mult = 0, 1
    while True:
        b = data[pos]
        pos += 1
        v += (b & 0x7f) * mult
        mult *= 128
        if not b & 0x80:
            return v, pos


class _Message:
    """A QoS 1 PUBLISH the broker sent and nobody acknowledged yet."""

    def __init__(self, broker_id, payload, conn):
        self.broker_id = broker_id
        self.payload = payload
        self.conn = conn        # the connection it was last sent on


class _Conn:
    def __init__(self, proxy, n, csock, usock):
        self.proxy, self.n = proxy, n
        self.csock, self.usock = csock, usock
        self.inbio, self.outbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = proxy.ctx.wrap_bio(self.inbio, self.outbio, server_side=True)
        self.handshaken = False
        self.version = 4
        self.from_client, self.from_broker = bytearray(), bytearray()
        self.to_client_plain, self.to_client = bytearray(), bytearray()
        self.to_broker = bytearray()
        self.unacked = set()    # packet ids (oncebridge's side) sent on this connection, not acked
        self.reset_requested = False
        self.closed = False
        self.acklog = []


class MQTTTLSProxy:
    def __init__(self, broker_port, cert, key, broker_host='127.0.0.1', rcvbuf=2048, ack_check=None):
        """ack_check(payloads) -> set of indexes of payloads whose message
        is not committed; called from the proxy's threads."""
        self.broker = (broker_host, broker_port)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ack_check = ack_check
        self.lock = threading.Lock()
        self.stalled = False
        self.conns = []         # every connection, in order
        self.current = None
        # the session: oncebridge's packet id -> _Message, the broker's id -> ours
        self.by_id, self.by_broker_id = {}, {}
        self.free_ids, self.next_id = [], 1
        self.published = 0      # QoS 1 PUBLISH packets sent to oncebridge
        self.acked = 0          # PUBACKs that acknowledged one of them in time
        self.stale = []         # (connection number, packet id, why, payload or None)
        self.first_stale = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted sockets; set before listen so that the
        # window scale of the handshake follows it
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---- commands

    def stall(self):
        """Stop reading what oncebridge sends."""
        with self.lock:
            self.stalled = True

    def resume(self):
        with self.lock:
            self.stalled = False

    def reset(self, timeout=5):
        """RST both sides of the current connection and wait until done."""
        with self.lock:
            c = self.current
            if c:
                c.reset_requested = True
        deadline = time.monotonic() + timeout
        while c and not c.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        return c is not None and c.closed

    def connections(self):
        with self.lock:
            return len(self.conns)

    def outstanding(self):
        """PUBLISH packets of the current connection not acknowledged yet."""
        with self.lock:
            return len(self.current.unacked) if self.current else 0

    def session_outstanding(self):
        """Messages of the session sent to oncebridge and not acknowledged."""
        with self.lock:
            return len(self.by_id)

    def close(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                c.reset_requested = True

    # ---- relaying

    def _accept(self):
        while not self.stopping:
            try:
                csock, _ = self.lsock.accept()
            except OSError:
                return
            try:
                usock = socket.create_connection(self.broker, timeout=5)
            except OSError:
                self._rst(csock)
                continue
            for s in (csock, usock):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                c = _Conn(self, len(self.conns) + 1, csock, usock)
                if self.current:
                    self.current.reset_requested = True
                self.conns.append(c)
                self.current = c
            threading.Thread(target=self._relay, args=(c,), daemon=True).start()

    @staticmethod
    def _rst(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        except OSError:
            pass
        s.close()

    def _relay(self, c):
        try:
            while not c.reset_requested and not c.closed:
                self._step(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self._rst(c.csock)
            self._rst(c.usock)
            with self.lock:
                c.closed = True
                if self.current is c:
                    self.current = None

    def _step(self, c):
        with self.lock:
            stalled = self.stalled
        rlist = [] if stalled else [c.csock]
        if len(c.to_client_plain) + len(c.to_client) < BUFFER_LIMIT:
            rlist.append(c.usock)
        wlist = ([c.csock] if c.to_client else []) + ([c.usock] if c.to_broker else [])
        r, w, _ = select.select(rlist, wlist, [], 0.02)
        if c.reset_requested:
            return
        if c.csock in r:
            data = c.csock.recv(65536)
            if not data:
                c.closed = True
                return
            c.inbio.write(data)
            self._from_client(c)
        broker_read = False
        if c.usock in r:
            data = c.usock.recv(65536)
            if not data:
                c.closed = True
                return
            c.from_broker += data
            broker_read = True
            self._from_broker(c)
        # gather: send a part-filled record only when the broker paused
        self._encrypt(c, flush=not broker_read)
        if c.csock in w and c.to_client:
            n = c.csock.send(c.to_client)
            del c.to_client[:n]
        if c.usock in w and c.to_broker:
            n = c.usock.send(c.to_broker)
            del c.to_broker[:n]

    def _tls_out(self, c):
        data = c.outbio.read()
        if data:
            c.to_client += data

    def _from_client(self, c):
        if not c.handshaken:
            try:
                c.tls.do_handshake()
                c.handshaken = True
            except ssl.SSLWantReadError:
                pass
            self._tls_out(c)
            if not c.handshaken:
                return
        while True:
            try:
                data = c.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                c.closed = True
                break
            if not data:
                break
            c.from_client += data
        self._tls_out(c)
        acks = []
        for typ, flags, pkt, vh in _packets(c.from_client):
            if typ == CONNECT:
                c.version = pkt[vh + 6]     # after the protocol name "MQTT"
            if typ == PUBACK:
                acks.append((struct.unpack('>H', pkt[vh:vh + 2])[0], pkt, vh))
            else:
                c.to_broker += pkt
        if acks:
            self._acks(c, acks)

    def _acks(self, c, acks):
        with self.lock:
            known = [(pid, pkt, vh, self.by_id.get(pid)) for pid, pkt, vh in acks]
        late = set()
        if self.ack_check:
            candidates = [i for i, (pid, _, _, m) in enumerate(known) if m is not None]
            if candidates:
                bad = self.ack_check([known[i][3].payload for i in candidates])
                late = {candidates[i] for i in bad}
        with self.lock:
            for i, (pid, pkt, vh, m) in enumerate(known):
                c.acklog.append(pid)
                why = None
                if pid not in c.unacked:
                    why = 'no unacknowledged PUBLISH with this id on this connection'
                elif i in late:
                    why = 'acknowledges a message that is not committed'
                if why:
                    self.stale.append((c.n, pid, why, m.payload if m else None))
                    self.first_stale.set()
                else:
                    self.acked += 1
                c.unacked.discard(pid)
                if m is None or self.by_id.get(pid) is not m:
                    continue    # names nothing the session holds: dropped
                del self.by_id[pid]
                del self.by_broker_id[m.broker_id]
                heapq.heappush(self.free_ids, pid)
                c.to_broker += pkt[:vh] + struct.pack('>H', m.broker_id) + pkt[vh + 2:]

    def _new_id(self):
        if self.free_ids:
            return heapq.heappop(self.free_ids)
        self.next_id += 1
        return self.next_id - 1

    def _from_broker(self, c):
        for typ, flags, pkt, vh in _packets(c.from_broker):
            if typ != PUBLISH or (flags >> 1) & 3 != 1:
                c.to_client_plain += pkt
                continue
            tlen = struct.unpack('>H', pkt[vh:vh + 2])[0]
            at = vh + 2 + tlen
            bid = struct.unpack('>H', pkt[at:at + 2])[0]
            start = at + 2
            if c.version == 5:
                plen, start = _varint(pkt, start)
                start += plen
            with self.lock:
                pid = self.by_broker_id.get(bid)
                if pid is None:
                    pid = self._new_id()
                    self.by_broker_id[bid] = pid
                    self.by_id[pid] = _Message(bid, pkt[start:], c.n)
                self.by_id[pid].conn = c.n
                c.unacked.add(pid)
                self.published += 1
            c.to_client_plain += pkt[:at] + struct.pack('>H', pid) + pkt[at + 2:]

    def _encrypt(self, c, flush):
        if not c.handshaken:
            return
        while c.to_client_plain and len(c.to_client) < 4 * RECORD:
            if len(c.to_client_plain) < RECORD and not flush:
                break
            chunk = bytes(c.to_client_plain[:RECORD])
            c.tls.write(chunk)
            del c.to_client_plain[:len(chunk)]
            self._tls_out(c)
