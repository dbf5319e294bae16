#!/usr/bin/python3
"""oncetest -- integration-test harness for oncebridge.

Runs private PostgreSQL 15, RabbitMQ 3.10 and Mosquitto 2.0 servers on free
loopback ports, with all their state in a temporary directory, plus the
daemon under test, and prints TAP for automake's tap-driver.sh.

Run test scripts with /usr/bin/python3 (Debian's python3-pika,
python3-psycopg2 and python3-paho-mqtt are needed; they are imported lazily).

Every server and Daemon started is torn down at exit -- normal exit, an
uncaught exception, TAP.bail(), SIGTERM, SIGINT or SIGHUP -- by killing its
whole process tree (process group plus descendants: RabbitMQ's
erl_child_setup and PostgreSQL's backends run in sessions of their own).

Environment:
  ONCETEST_KEEP=1    keep the temporary directories (their paths are printed
                     as TAP comments at exit)
  ONCETEST_TMPDIR    where to create them (default: tempfile.gettempdir());
                     must be traversable by the postgres user
"""

import atexit
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    'TAP', 'at_done', 'make_tmpdir', 'free_port', 'wait_until', 'start_all',
    'Postgres', 'RabbitMQ', 'Mosquitto', 'Daemon', 'MQTTv311', 'MQTTv5',
    'make_certs', 'teardown',
]

MQTTv311 = 4        # same values as paho.mqtt.client.MQTTv311 / MQTTv5
MQTTv5 = 5

PG_BIN = '/usr/lib/postgresql/15/bin'
RABBITMQ_BIN = '/usr/lib/rabbitmq/bin'
MOSQUITTO = '/usr/sbin/mosquitto'

_lock = threading.RLock()


def _log_tail(path, lines=40):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode('utf-8', 'replace')
    except OSError as e:
        return '(cannot read %s: %s)' % (path, e)
    return '\n'.join(text.splitlines()[-lines:])


def _read_text(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return ''


# --------------------------------------------------------------------------
# TAP

class TAP:
    """Minimal TAP producer; the plan is printed at the end by done()."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.n = 0
        self.failed = 0

    def _emit(self, line):
        with _lock:
            self.out.write(line + '\n')
            self.out.flush()

    def diag(self, msg):
        """Print msg as TAP comment lines ("# ...")."""
        lines = str(msg).splitlines() or ['']
        for line in lines:
            self._emit(('# ' + line).rstrip())

    note = diag

    def ok(self, cond, desc, diag=None):
        cond = bool(cond)
        with _lock:
            self.n += 1
            if not cond:
                self.failed += 1
            n = self.n
        desc = ' '.join(str(desc).split()).replace('#', '\\#')
        self._emit('%s %d - %s' % ('ok' if cond else 'not ok', n, desc))
        if not cond and diag is not None:
            self.diag(diag)
        return cond

    def skip(self, desc, reason):
        """A test point that cannot run here, reported as a TAP skip."""
        with _lock:
            self.n += 1
            n = self.n
        self._emit('ok %d - %s # SKIP %s' % (n, ' '.join(str(desc).split()), reason))

    def eventually(self, fn, timeout, desc, interval=0.1):
        """A test point that passes when fn() turns truthy within timeout
        seconds, and fails (and the script goes on) when it does not.
        Returns fn()'s last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() >= deadline:
                self.ok(v, desc, diag='not within %g s' % timeout)
                return v
            time.sleep(interval)

    def is_(self, got, want, desc):
        return self.ok(got == want, desc,
                       diag='got:  %r\nwant: %r' % (got, want))

    def done(self):
        """Run the checks registered with at_done, print the plan; return
        the exit status (0 = all passed, N > 0)."""
        while _done_hooks:
            _done_hooks.pop(0)(self)
        self._emit('1..%d' % self.n)
        return 0 if (self.n > 0 and self.failed == 0) else 1

    def bail(self, msg):
        self._emit('Bail out! ' + ' '.join(str(msg).split()))
        teardown()
        sys.exit(1)


# --------------------------------------------------------------------------
# temporary directories, ports, waiting

_tmpdirs = []


_done_hooks = []


def at_done(fn):
    """Have TAP.done() call fn(tap) first: checks every test of a kind
    must end with (the daemon's logs, say) without each script asking."""
    _done_hooks.append(fn)


def make_tmpdir(name):
    """A fresh directory (mode 0755) removed at exit unless ONCETEST_KEEP=1."""
    safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', name) or 'tmp'
    base = os.environ.get('ONCETEST_TMPDIR') or tempfile.gettempdir()
    path = tempfile.mkdtemp(prefix='oncetest-%s-' % safe, dir=base)
    os.chmod(path, 0o755)
    with _lock:
        _tmpdirs.append(path)
    return path


# Never hand out the well-known ports (other servers on this machine may
# use them), nor the range RabbitMQ's CLI tools listen on (35672-35682).
_AVOID_PORTS = ({1883, 4369, 5432, 5433, 5671, 5672, 8883, 15672, 15692,
                 25672, 61613, 61614} | set(range(35672, 35692)))
_used_ports = set()


def free_port():
    """A currently free 127.0.0.1 TCP port, never the same twice per process."""
    for _ in range(1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        with _lock:
            if port in _used_ports or port in _AVOID_PORTS:
                continue
            _used_ports.add(port)
        return port
    raise RuntimeError('free_port: no free port found')


def wait_until(fn, timeout, interval=0.1, desc=''):
    """Call fn() until it returns a truthy value (returned); raise
    TimeoutError(desc) after timeout seconds. Exceptions from fn propagate."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %gs waiting for %s'
                               % (timeout, desc or getattr(fn, '__name__', fn)))
        time.sleep(interval)


def _port_open(port, host='127.0.0.1'):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_all(*servers):
    """Start several servers in parallel threads; re-raise the first error."""
    errors = []

    def run(s):
        try:
            s.start()
        except BaseException as e:          # noqa: B902 -- re-raised below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(s,), daemon=True)
               for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------
# a throwaway PKI for TLS tests

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::ONCETEST_SAN
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
"""


class Certs:
    """Paths of the files make_certs() wrote; each certificate is a
    (cert, key) pair of PEM files, keys mode 0600."""

    def __init__(self, d):
        self.dir = d

    def __repr__(self):
        return '<Certs %s>' % self.dir


def make_certs(basedir):
    """Make basedir/tls with the openssl command (P-256 keys, valid two
    days): a CA (ca.pem) and an unrelated one (other_ca.pem); certificates
    from the CA for servers -- server (DNS:localhost, IP:127.0.0.1),
    server_ip (IP:127.0.0.1 only), elsewhere (DNS:elsewhere.example only)
    -- and a client certificate (client, CN oncetest-client). Takes well
    under a second."""
    d = os.path.join(basedir, 'tls')
    os.makedirs(d, exist_ok=True)
    cnf = os.path.join(d, 'openssl.cnf')
    with open(cnf, 'w') as f:
        f.write(_OPENSSL_CNF)
    env = dict(os.environ, ONCETEST_SAN='DNS:unused')
    c = Certs(d)

    def key_and_csr(name, cn):
        key, csr = os.path.join(d, name + '.key'), os.path.join(d, name + '.csr')
        _run(['openssl', 'req', '-new', '-config', cnf, '-newkey', 'ec',
              '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
              '-keyout', key, '-subj', '/CN=' + cn, '-out', csr],
             env=env, what='openssl req %s' % name)
        os.chmod(key, 0o600)
        return key, csr

    def ca(name, cn):
        key, csr = key_and_csr(name, cn)
        pem = os.path.join(d, name + '.pem')
        _run(['openssl', 'x509', '-req', '-in', csr, '-signkey', key,
              '-days', '2', '-extfile', cnf, '-extensions', 'ca',
              '-out', pem], env=env, what='openssl x509 %s' % name)
        return pem, key

    def leaf(name, cn, issuer, ext, san=None):
        key, csr = key_and_csr(name, cn)
        pem = os.path.join(d, name + '.pem')
        _run(['openssl', 'x509', '-req', '-in', csr, '-CA', issuer[0],
              '-CAkey', issuer[1], '-set_serial',
              str(random.getrandbits(63)), '-days', '2', '-extfile', cnf,
              '-extensions', ext, '-out', pem],
             env=dict(env, ONCETEST_SAN=san or 'DNS:unused'),
             what='openssl x509 %s' % name)
        return pem, key

    ca_pair = ca('ca', 'oncetest CA')
    c.ca = ca_pair[0]
    c.other_ca = ca('other_ca', 'oncetest unrelated CA')[0]
    c.server = leaf('server', 'localhost', ca_pair, 'server',
                    'DNS:localhost,IP:127.0.0.1')
    c.server_ip = leaf('server_ip', '127.0.0.1', ca_pair, 'server',
                       'IP:127.0.0.1')
    c.elsewhere = leaf('elsewhere', 'elsewhere.example', ca_pair, 'server',
                       'DNS:elsewhere.example')
    c.client = leaf('client', 'oncetest-client', ca_pair, 'client')
    return c


# --------------------------------------------------------------------------
# process trees and teardown

def _proc_stat(pid):
    """(state, ppid, pgid, starttime) of pid, or None if it does not exist."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read().decode('latin-1')
    except (OSError, ValueError):
        return None
    fields = data[data.rfind(')') + 2:].split()
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _all_procs():
    procs = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st:
                procs[int(name)] = st
    return procs


def _tree(roots=(), pgids=()):
    """{pid: starttime} of the roots, the members of the process groups
    pgids, and all their descendants (found by parent pid)."""
    procs = _all_procs()
    children = collections.defaultdict(list)
    for pid, st in procs.items():
        children[st[1]].append(pid)
    me = os.getpid()
    my_pgid = os.getpgrp()
    pgids = {g for g in pgids if g and g > 1 and g != my_pgid}
    stack = [p for p in roots if p and p > 1 and p in procs]
    stack += [p for p, st in procs.items() if st[2] in pgids]
    found = {}
    while stack:
        p = stack.pop()
        if p in found or p == me or p <= 1:
            continue
        found[p] = procs[p][3]
        stack.extend(children.get(p, ()))
    return found


def _same_proc(pid, starttime):
    st = _proc_stat(pid)
    return st is not None and st[3] == starttime and st[0] not in ('Z', 'X')


def _signal_procs(procs, sig):
    for pid, starttime in procs.items():
        if _same_proc(pid, starttime):
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def _kill_tree(roots=(), pgids=(), known=None):
    """SIGSTOP the whole tree (repeatedly, so nothing forks away), then
    SIGKILL it. Also kills the still-running processes in known
    ({pid: starttime} snapshot taken earlier). Returns the killed set."""
    frozen = {}
    for _ in range(20):
        tree = _tree(roots, pgids)
        new = {p: s for p, s in tree.items() if p not in frozen}
        if not new:
            break
        _signal_procs(new, signal.SIGSTOP)
        frozen.update(new)
    if known:
        for p, s in known.items():
            frozen.setdefault(p, s)
    _signal_procs(frozen, signal.SIGKILL)
    for g in pgids:
        if g and g > 1 and g != os.getpgrp():
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
    return frozen


def _wait_gone(procs, timeout):
    """Wait until none of {pid: starttime} runs any more (zombies count as
    gone). Returns the set still running."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: s for p, s in procs.items() if _same_proc(p, s)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


_registry = []
_tearing_down = False
_owner_pid = os.getpid()      # a fork()ed child must not tear down our things


def _register(obj):
    with _lock:
        if obj not in _registry:
            _registry.append(obj)


def teardown():
    """Kill everything started (newest first) and remove the temp dirs.
    Safe to call more than once; runs automatically at exit."""
    global _tearing_down
    if os.getpid() != _owner_pid:
        return
    with _lock:
        if _tearing_down:
            return
        _tearing_down = True
        objs = list(reversed(_registry))
        del _registry[:]
    try:
        for obj in objs:
            try:
                obj._teardown()
            except Exception as e:       # keep going: leave nothing behind
                sys.stderr.write('oncetest: teardown of %r failed: %s\n'
                                 % (obj, e))
        with _lock:
            dirs = list(_tmpdirs)
            del _tmpdirs[:]
        keep = os.environ.get('ONCETEST_KEEP', '') not in ('', '0')
        for d in dirs:
            if keep:
                try:
                    sys.stdout.write('# ONCETEST_KEEP: kept %s\n' % d)
                    sys.stdout.flush()
                except (OSError, ValueError):
                    pass
            else:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        with _lock:
            _tearing_down = False


def _on_signal(signum, frame):
    if os.getpid() != _owner_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _tearing_down:       # already tearing down (atexit): let it finish
        return
    try:
        teardown()
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        os._exit(128 + signum)


atexit.register(teardown)
if threading.current_thread() is threading.main_thread():
    for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(_sig, _on_signal)


def _run(argv, timeout=60, env=None, what=None, check=True, **kw):
    """Run argv, capture output; raise RuntimeError with it on failure."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b'').decode('utf-8', 'replace')
        raise RuntimeError('%s timed out after %ss:\n%s'
                           % (what or argv[0], timeout, out))
    out = r.stdout.decode('utf-8', 'replace')
    if check and r.returncode != 0:
        raise RuntimeError('%s failed (exit %d):\n%s'
                           % (what or ' '.join(argv), r.returncode, out))
    return out


class _Proc:
    """Common code for things that own a process tree."""
    pid = None
    _pid_start = None
    _popen = None
    start_seconds = None      # seconds the last start took

    def _set_pid(self, pid):
        self.pid = pid
        st = _proc_stat(pid)
        self._pid_start = st[3] if st else None

    def running(self):
        if not self.pid:
            return False
        if self._popen is not None and self._popen.pid == self.pid:
            return self._popen.poll() is None
        return (self._pid_start is not None and
                _same_proc(self.pid, self._pid_start))

    def _reap(self, timeout):
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            return self._popen.returncode
        if self.pid:
            wait_until(lambda: not self.running(), timeout, 0.02,
                       'pid %d to exit' % self.pid)
        return None

    def _kill_all(self, known=None):
        """SIGKILL our process tree (plus the snapshot known) and reap."""
        if not self.pid and not known:
            return
        alive = self.running()
        roots = (self.pid,) if alive else ()
        # the group of a child of ours cannot be reused while it has
        # members, so kill it even when the leader is gone
        pgids = (self.pid,) if (alive or self._popen is not None) else ()
        killed = _kill_tree(roots, pgids, known)
        try:
            self._reap(10)
        except TimeoutError:
            pass
        _wait_gone(killed, 10)          # SIGKILL is asynchronous

    def _teardown(self):
        self._kill_all()


# --------------------------------------------------------------------------
# PostgreSQL

class Postgres(_Proc):
    """A private PostgreSQL 15 cluster in basedir/pgdata on 127.0.0.1:port.

    tls: None, or a (cert, key) pair (see make_certs) to turn ssl on with;
    the files are copied into the data directory for the postgres user."""

    def __init__(self, basedir, port=None, dbname='oncetest', tls=None):
        self.basedir = basedir
        self.datadir = os.path.join(basedir, 'pgdata')
        self.sockdir = os.path.join(basedir, 'pgsock')
        self.logpath = os.path.join(basedir, 'postgres.log')
        self.host = '127.0.0.1'
        self.port = port or free_port()
        self.dbname = dbname
        self.user = 'postgres'
        self._conn = None
        self._conn_gen = None
        self._gen = 0
        self._initialized = False
        self._ever_started = False
        self.tls = tls

    def __repr__(self):
        return '<Postgres port=%d pid=%s>' % (self.port, self.pid)

    @property
    def conninfo(self):
        return 'host=%s port=%d dbname=%s user=%s' % (
            self.host, self.port, self.dbname, self.user)

    def _as_pg(self, argv):
        if os.geteuid() == 0:
            return ['runuser', '-u', 'postgres', '--'] + argv
        return argv

    def _chown(self, path):
        if os.geteuid() == 0:
            shutil.chown(path, 'postgres', 'postgres')

    def _write_conf(self):
        path = os.path.join(self.datadir, 'oncetest.conf')
        with open(path, 'w') as f:
            f.write("# generated by oncetest\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = on\n"
                    "log_line_prefix = '%%m [%%p] '\n"
                    % (self.port, self.sockdir))
            if self.tls:
                # the server wants its key owned by its own user, mode 0600
                for src, dst in zip(self.tls, ('server.crt', 'server.key')):
                    shutil.copyfile(src, os.path.join(self.datadir, dst))
                    os.chmod(os.path.join(self.datadir, dst), 0o600)
                    self._chown(os.path.join(self.datadir, dst))
                f.write("ssl = on\n"
                        "ssl_cert_file = 'server.crt'\n"
                        "ssl_key_file = 'server.key'\n")
        self._chown(path)

    def log(self):
        return _read_text(self.logpath)

    def start(self, timeout=60):
        """initdb, start, create the database."""
        if self._initialized:
            raise RuntimeError('Postgres.start: already initialised; '
                               'use start_again()')
        t0 = time.monotonic()
        os.makedirs(self.basedir, exist_ok=True)
        os.mkdir(self.datadir, 0o700)
        os.mkdir(self.sockdir, 0o755)
        with open(self.logpath, 'a'):
            pass
        for p in (self.datadir, self.sockdir, self.logpath):
            self._chown(p)
        _run(self._as_pg([PG_BIN + '/initdb', '-D', self.datadir,
                          '--auth=trust', '-U', 'postgres', '-E', 'UTF8',
                          '--no-locale', '--no-sync']),
             timeout=timeout, what='initdb')
        with open(os.path.join(self.datadir, 'postgresql.conf'), 'a') as f:
            f.write("\ninclude 'oncetest.conf'\n")
        self._initialized = True
        self._write_conf()
        self._start_server(timeout)
        self.execute('CREATE DATABASE "%s"' % self.dbname, dbname='postgres')
        self.start_seconds = time.monotonic() - t0
        return self

    def _start_server(self, timeout):
        for attempt in range(3):
            try:
                _run(self._as_pg([PG_BIN + '/pg_ctl', '-D', self.datadir,
                                  '-l', self.logpath, '-w', '-t',
                                  str(int(timeout)), '-s', 'start']),
                     timeout=timeout + 10, what='pg_ctl start')
                break
            except RuntimeError as e:
                if (not self._ever_started and attempt < 2 and
                        'already in use' in self.log()):
                    self.port = free_port()      # lost a race for the port
                    self._write_conf()
                    continue
                raise RuntimeError('%s\n--- postgres.log:\n%s'
                                   % (e, _log_tail(self.logpath)))
        with open(os.path.join(self.datadir, 'postmaster.pid')) as f:
            self._set_pid(int(f.readline()))
        self._ever_started = True
        self._gen += 1
        _register(self)

    def start_again(self, timeout=60):
        """Start the existing cluster again (same data dir and port)."""
        if self.running():
            raise RuntimeError('Postgres.start_again: still running')
        t0 = time.monotonic()
        self._start_server(timeout)
        self.start_seconds = time.monotonic() - t0
        return self

    def _close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def stop(self, mode='fast', timeout=60):
        """pg_ctl stop -m fast|smart|immediate."""
        self._close()
        self._gen += 1
        if not self.running():
            return
        snapshot = _tree((self.pid,))
        try:
            _run(self._as_pg([PG_BIN + '/pg_ctl', '-D', self.datadir, '-m',
                              mode, '-w', '-t', str(int(timeout)), '-s',
                              'stop']),
                 timeout=timeout + 10, what='pg_ctl stop')
        except RuntimeError:
            self._kill_all(snapshot)
            raise
        if _wait_gone(snapshot, 10):
            self._kill_all(snapshot)

    def kill(self):
        """SIGKILL the postmaster and all its children (a hard crash)."""
        self._close()
        self._gen += 1
        self._kill_all(_tree((self.pid,)) if self.running() else None)

    def _teardown(self):
        self._close()
        if self.running():
            snapshot = _tree((self.pid,))
            try:   # immediate stop also removes the shared memory segment
                _run(self._as_pg([PG_BIN + '/pg_ctl', '-D', self.datadir,
                                  '-m', 'immediate', '-w', '-t', '10', '-s',
                                  'stop']), timeout=15, check=False)
            except RuntimeError:
                pass
            self._kill_all(snapshot)

    def connect(self, dbname=None, autocommit=True):
        """A new psycopg2 connection (the caller closes it)."""
        import psycopg2
        conn = psycopg2.connect(host=self.host, port=self.port,
                                dbname=dbname or self.dbname, user=self.user,
                                connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def execute(self, sql, params=None, dbname=None):
        """Run one statement (autocommit); return its rows as a list of
        tuples ([] when it returns none). Reconnects after a restart."""
        import psycopg2
        if dbname is not None and dbname != self.dbname:
            conn = self.connect(dbname)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            finally:
                conn.close()
        for attempt in (0, 1):
            if self._conn is not None and (self._conn.closed or
                                           self._conn_gen != self._gen):
                self._close()
            if self._conn is None:
                self._conn = self.connect()
                self._conn_gen = self._gen
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchall() if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                # the server went away under us: retry once on a new
                # connection, but only if this one is really dead
                if attempt == 0 and self._conn.closed:
                    self._close()
                    continue
                raise

    def scalar(self, sql, params=None):
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    def run_psql_file(self, path, timeout=120):
        """psql -v ON_ERROR_STOP=1 -f path; returns the output."""
        return _run([PG_BIN + '/psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                     '-d', self.conninfo, '-f', path],
                    timeout=timeout, what='psql -f %s' % path)


# --------------------------------------------------------------------------
# RabbitMQ

def _rabbitmq_slim_home(dest):
    """Make dest a RABBITMQ_HOME of symlinks whose plugins/ holds only the
    applications rabbit itself needs (the transitive closure of the
    .app files' applications/included_applications). rabbit loads every
    module of every loaded application at boot, and each load searches the
    whole code path: with 20 instead of 70 apps on it, the node starts
    ~1.5 s faster. Returns dest, or None if the layout is unexpected."""
    real = os.path.dirname(os.path.dirname(
        os.path.realpath(os.path.join(RABBITMQ_BIN, 'rabbitmq-server'))))
    plugins = os.path.join(real, 'plugins')
    try:
        apps = {}
        for d in os.listdir(plugins):
            m = re.match(r'^(.+?)-[0-9][^/]*$', d)
            if not m:
                continue
            name = m.group(1)
            try:
                with open(os.path.join(plugins, d, 'ebin', name + '.app')) as f:
                    txt = f.read()
            except OSError:
                continue
            deps = set()
            for key in ('applications', 'included_applications'):
                mm = re.search(r'\{\s*%s\s*,\s*\[([^\]]*)\]' % key, txt)
                if mm:
                    deps.update(re.findall(r'[a-z][A-Za-z0-9_@]*',
                                           mm.group(1)))
            apps[name] = (d, deps)
        need, todo = set(), ['rabbit', 'rabbitmq_prelaunch']
        while todo:
            a = todo.pop()
            if a in need or a not in apps:
                continue
            need.add(a)
            todo.extend(apps[a][1])
        if not {'rabbit', 'rabbit_common', 'rabbitmq_prelaunch'} <= need:
            return None
        for sub in ('sbin', 'plugins'):
            os.makedirs(os.path.join(dest, sub), exist_ok=True)
        for f in os.listdir(os.path.join(real, 'sbin')):
            link = os.path.join(dest, 'sbin', f)
            if not os.path.lexists(link):
                os.symlink(os.path.join(real, 'sbin', f), link)
        for sub in ('escript',):
            link = os.path.join(dest, sub)
            if os.path.isdir(os.path.join(real, sub)) and \
                    not os.path.lexists(link):
                os.symlink(os.path.join(real, sub), link)
        for a in need:
            link = os.path.join(dest, 'plugins', apps[a][0])
            if not os.path.lexists(link):
                os.symlink(os.path.join(plugins, apps[a][0]), link)
        return dest
    except OSError:
        return None

class RabbitMQ(_Proc):
    """A private RabbitMQ node; all state in basedir/rabbitmq.

    tls: None, or a dict with cert and key (paths, see make_certs) and
    optionally ca (to verify client certificates against) and
    require_client_cert (bool): adds a TLS listener on tls_port."""

    user = 'guest'
    password = 'guest'

    def __init__(self, basedir, port=None, dist_port=None, tls=None):
        self.basedir = basedir
        self.dir = os.path.join(basedir, 'rabbitmq')
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.node = 'oncetest-%d@localhost' % self.port
        self.host = '127.0.0.1'
        self.pidfile = os.path.join(self.dir, 'rabbitmq.pid')
        self.logpath = os.path.join(self.dir, 'log', 'rabbit.log')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self._prepared = False
        self._ever_started = False
        self._slim = None
        self.tls = tls
        self.tls_port = None

    def __repr__(self):
        return '<RabbitMQ %s pid=%s>' % (self.node, self.pid)

    @property
    def url(self):
        return 'amqp://127.0.0.1:%d/' % self.port

    def _prepare(self):
        d = self.dir
        for sub in ('', 'home', 'mnesia', 'log', 'conf.d', 'plugins-expand'):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, 'rabbitmq-env.conf'), 'w'):
            pass                                # keeps /etc/rabbitmq out
        with open(os.path.join(d, 'enabled_plugins'), 'w') as f:
            f.write('[].\n')
        with open(os.path.join(d, 'rabbitmq.conf'), 'w') as f:
            f.write('# generated by oncetest\n'
                    'listeners.tcp.1 = 127.0.0.1:%d\n'
                    'loopback_users.guest = true\n'
                    'log.console = false\n'
                    'log.file.level = info\n' % self.port)
            if self.tls:
                self.tls_port = self.tls_port or free_port()
                ca = self.tls.get('ca')
                f.write('listeners.ssl.default = 127.0.0.1:%d\n'
                        'ssl_options.certfile = %s\n'
                        'ssl_options.keyfile = %s\n'
                        'ssl_options.versions.1 = tlsv1.2\n'
                        'ssl_options.versions.2 = tlsv1.3\n'
                        % (self.tls_port, self.tls['cert'], self.tls['key']))
                if ca:
                    f.write('ssl_options.cacertfile = %s\n' % ca)
                f.write('ssl_options.verify = %s\n'
                        'ssl_options.fail_if_no_peer_cert = %s\n'
                        % ('verify_peer' if ca else 'verify_none',
                           'true' if self.tls.get('require_client_cert')
                           else 'false'))
        with open(os.path.join(d, 'advanced.config'), 'w') as f:
            # quorum queues report their counts on every Ra tick (default
            # 5 s): a shorter tick makes queue_counts() catch up sooner
            f.write('[{rabbit, [{quorum_tick_interval, 500}]}].\n')
        cookie = os.path.join(d, 'home', '.erlang.cookie')
        if not os.path.exists(cookie):
            with open(os.open(cookie, os.O_WRONLY | os.O_CREAT, 0o400),
                      'w') as f:
                f.write(''.join(random.choice(string.ascii_uppercase)
                                for _ in range(20)))
        if os.environ.get('ONCETEST_RABBITMQ_ALL_PLUGINS', '') in ('', '0'):
            self._slim = _rabbitmq_slim_home(os.path.join(d, 'lib'))
        self._prepared = True

    def env(self):
        """The environment for this node's server and CLI scripts."""
        d = self.dir
        env = dict(os.environ)
        for k in list(env):
            if k.startswith('RABBITMQ_') or k in ('ERL_LIBS', 'NOTIFY_SOCKET'):
                del env[k]
        env.update({
            'HOME': os.path.join(d, 'home'),
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(d, 'rabbitmq-env.conf'),
            'RABBITMQ_CONFIG_FILE': os.path.join(d, 'rabbitmq.conf'),
            'RABBITMQ_CONFIG_FILES': os.path.join(d, 'conf.d'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(d, 'advanced.config'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(d, 'enabled_plugins'),
            'RABBITMQ_PLUGINS_EXPAND_DIR': os.path.join(d, 'plugins-expand'),
            'RABBITMQ_MNESIA_BASE': os.path.join(d, 'mnesia'),
            'RABBITMQ_MNESIA_DIR': os.path.join(d, 'mnesia', 'node'),
            'RABBITMQ_LOG_BASE': os.path.join(d, 'log'),
            'RABBITMQ_LOGS': self.logpath,
            'RABBITMQ_PID_FILE': self.pidfile,
            # unbound schedulers: several nodes may share these 2 cores
            'RABBITMQ_SCHEDULER_BIND_TYPE': 'u',
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-kernel inet_dist_use_interface {127,0,0,1}',
            # makes rabbitmq-server exec the VM instead of keeping a
            # wrapper shell, so our pid is beam.smp's (nothing else changes)
            'RUNNING_UNDER_SYSTEMD': 'true',
        })
        return env

    def log(self):
        return _read_text(self.logpath)

    def ctl(self, *args, timeout=60):
        """Run rabbitmqctl -n NODE args...; return its output."""
        return _run([RABBITMQ_BIN + '/rabbitmqctl', '-n', self.node]
                    + list(args), env=self.env(), timeout=timeout,
                    what='rabbitmqctl ' + ' '.join(args))

    def start(self, timeout=90):
        """Start the node; return when rabbitmqctl wait says it is up."""
        if self.running():
            raise RuntimeError('RabbitMQ.start: already running')
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as e:
                text = str(e).lower()
                if (self._ever_started or attempt == 2 or
                        ('eaddrinuse' not in text and
                         'address already in use' not in text)):
                    raise
                self.port = free_port()         # lost a race for the port
                self.dist_port = free_port()
                self.tls_port = None
                self.node = 'oncetest-%d@localhost' % self.port
                self._prepared = False

    def _start(self, timeout):
        t0 = time.monotonic()
        if not self._prepared:
            self._prepare()
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        env = self.env()
        server_env = dict(env)
        server = RABBITMQ_BIN + '/rabbitmq-server'
        if self._slim:
            server = os.path.join(self._slim, 'sbin', 'rabbitmq-server')
            server_env['RABBITMQ_SCRIPTS_DIR'] = os.path.dirname(server)
            server_env['RABBITMQ_PLUGINS_DIR'] = os.path.join(self._slim,
                                                              'plugins')
        with open(self.stdout_path, 'ab') as out:
            self._popen = subprocess.Popen(
                [server], env=server_env, cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._set_pid(self._popen.pid)
        _register(self)
        deadline = t0 + timeout
        waiter_argv = [RABBITMQ_BIN + '/rabbitmqctl', '-n', self.node, 'wait',
                       '--timeout', str(int(timeout)), self.pidfile]
        # started at once: the CLI VM boots while the node does
        waiter = subprocess.Popen(waiter_argv, env=env,
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        try:
            while True:
                if self._popen.poll() is not None:
                    raise RuntimeError(
                        'RabbitMQ exited (status %s) while starting\n'
                        '--- stdout:\n%s\n--- log:\n%s'
                        % (self._popen.returncode,
                           _log_tail(self.stdout_path),
                           _log_tail(self.logpath)))
                rc = waiter.poll()
                if rc == 0:
                    break
                if rc is not None:
                    out = waiter.stdout.read().decode('utf-8', 'replace')
                    if time.monotonic() + 2 >= deadline:
                        raise RuntimeError('rabbitmqctl wait failed:\n' + out)
                    time.sleep(0.5)
                    waiter = subprocess.Popen(
                        waiter_argv, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                    continue
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        'RabbitMQ did not start within %ss\n--- log:\n%s'
                        % (timeout, _log_tail(self.logpath)))
                time.sleep(0.05)
            wait_until(lambda: _port_open(self.port), 10, 0.05,
                       'RabbitMQ AMQP port %d' % self.port)
        except BaseException:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
            self._kill_all()
            raise
        finally:
            if waiter.stdout:
                waiter.stdout.close()
        try:
            with open(self.pidfile) as f:
                filepid = int(f.read().strip())
            if filepid != self.pid:       # should not happen (see env())
                raise RuntimeError('RabbitMQ pid file says %d, we started %d'
                                   % (filepid, self.pid))
        except (OSError, ValueError):
            pass
        self._ever_started = True
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout=60):
        """Graceful stop (SIGTERM -- the same as rabbitmqctl stop)."""
        if not self.running():
            return
        snapshot = _tree((self.pid,))
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_all(snapshot)      # leftovers (and the VM after timeout)

    def kill(self):
        """SIGKILL the whole node (VM, erl_child_setup, port programs)."""
        self._kill_all()

    def restart(self, timeout=90):
        self.stop()
        return self.start(timeout)

    # ---- AMQP helpers (pika)

    def params(self):
        import pika
        return pika.ConnectionParameters(
            host='127.0.0.1', port=self.port,
            credentials=pika.PlainCredentials(self.user, self.password),
            connection_attempts=1, socket_timeout=10,
            blocked_connection_timeout=60)

    def connection(self):
        """A new pika.BlockingConnection (the caller closes it)."""
        import pika
        return pika.BlockingConnection(self.params())

    def declare_queue(self, name, exchange='amq.topic', keys=(),
                      arguments=None):
        """Declare a durable queue and bind it to exchange with each key."""
        if isinstance(keys, str):
            keys = (keys,)
        conn = self.connection()
        try:
            ch = conn.channel()
            ch.queue_declare(name, durable=True, arguments=arguments)
            for k in keys:
                ch.queue_bind(name, exchange, routing_key=k)
        finally:
            conn.close()

    @staticmethod
    def _props(message_id, headers, extra=None):
        import pika
        kw = dict(delivery_mode=2, message_id=message_id, headers=headers)
        kw.update(extra or {})
        return pika.BasicProperties(**kw)

    @staticmethod
    def _body(body):
        return body.encode('utf-8') if isinstance(body, str) else body

    def publish(self, exchange, routing_key, body, message_id=None,
                headers=None, mandatory=True, properties=None):
        """Publish one persistent message and wait for its confirm. Raises
        (pika UnroutableError) if mandatory and no queue took it."""
        conn = self.connection()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish(exchange, routing_key, self._body(body),
                             self._props(message_id, headers, properties),
                             mandatory=mandatory)
        finally:
            conn.close()

    def publish_many(self, items, mandatory=True, timeout=120):
        """Publish dicts {exchange, routing_key, body, message_id?, headers?,
        properties?} as persistent messages on one connection with publisher
        confirms (pipelined); return when all are confirmed. Raises
        RuntimeError on nacks, returned (unroutable) messages or errors."""
        import pika
        items = list(items)
        n = len(items)
        if n == 0:
            return 0
        st = {'confirmed': 0, 'low': 1, 'nacked': [], 'returned': [],
              'error': None, 'done': False}
        acked = bytearray(n + 2)

        def on_confirm(frame):
            m = frame.method
            tag = m.delivery_tag
            tags = range(st['low'], tag + 1) if m.multiple else (tag,)
            nack = isinstance(m, pika.spec.Basic.Nack)
            for t in tags:
                if 1 <= t <= n and not acked[t]:
                    acked[t] = 1
                    st['confirmed'] += 1
                    if nack:
                        st['nacked'].append(t)
            while st['low'] <= n and acked[st['low']]:
                st['low'] += 1
            if st['confirmed'] >= n:
                st['done'] = True
                conn.close()

        def on_return(ch, method, props, body):
            st['returned'].append((method.exchange, method.routing_key,
                                   props.message_id, method.reply_text))

        def publish_all(ch):
            for it in items:
                ch.basic_publish(it.get('exchange', ''), it['routing_key'],
                                 self._body(it['body']),
                                 self._props(it.get('message_id'),
                                             it.get('headers'),
                                             it.get('properties')),
                                 mandatory=mandatory)

        def on_channel_closed(ch, reason):
            if not st['done']:
                st['error'] = st['error'] or 'channel closed: %s' % (reason,)
                if conn.is_open:
                    conn.close()

        def on_channel(ch):
            ch.add_on_close_callback(on_channel_closed)
            ch.add_on_return_callback(on_return)
            ch.confirm_delivery(on_confirm,
                                callback=lambda _frame: publish_all(ch))

        def on_open_error(c, err):
            st['error'] = 'connection failed: %s' % (err,)
            c.ioloop.stop()

        def on_closed(c, reason):
            if not st['done'] and not st['error']:
                st['error'] = 'connection closed: %s' % (reason,)
            c.ioloop.stop()

        def on_timeout():
            st['error'] = 'timed out after %ss with %d of %d confirmed' % (
                timeout, st['confirmed'], n)
            if conn.is_open:
                conn.close()
            else:
                conn.ioloop.stop()

        conn = pika.SelectConnection(
            self.params(),
            on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
            on_open_error_callback=on_open_error,
            on_close_callback=on_closed)
        timer = conn.ioloop.call_later(timeout, on_timeout)
        try:
            conn.ioloop.start()
        finally:
            try:
                conn.ioloop.remove_timeout(timer)
            except Exception:
                pass
        problems = []
        if st['error']:
            problems.append(st['error'])
        if st['nacked']:
            problems.append('%d nacked (delivery tags %s...)'
                            % (len(st['nacked']), st['nacked'][:5]))
        if st['returned']:
            problems.append('%d returned as unroutable, e.g. %r'
                            % (len(st['returned']), st['returned'][0]))
        if problems:
            raise RuntimeError('publish_many: ' + '; '.join(problems))
        return n

    def queue_counts(self, name, timeout=60):
        """(messages_ready, messages_unacknowledged) of a queue, from
        rabbitmqctl list_queues. Raises LookupError if it does not exist.
        Exact for classic queues; quorum queues report on each Ra tick
        (set to 0.5 s here), so poll them with wait_until."""
        out = self.ctl('-q', 'list_queues', '--formatter', 'json', 'name',
                       'messages_ready', 'messages_unacknowledged',
                       timeout=timeout)
        start = out.find('[')
        try:
            rows = json.loads(out[start:]) if start >= 0 else None
        except ValueError:
            rows = None
        if rows is None:
            raise RuntimeError('cannot parse list_queues output:\n' + out)
        for r in rows:
            if r.get('name') == name:
                return (int(r['messages_ready']),
                        int(r['messages_unacknowledged']))
        raise LookupError('queue %r not found on %s' % (name, self.node))

    def get_messages(self, name, max_count=None, ack=True):
        """basic.get up to max_count messages (all ready ones by default);
        returns a list of (body bytes, pika BasicProperties, redelivered).
        With ack=False they are requeued when the connection closes."""
        msgs = []
        conn = self.connection()
        try:
            ch = conn.channel()
            while max_count is None or len(msgs) < max_count:
                method, props, body = ch.basic_get(name, auto_ack=False)
                if method is None:
                    break
                msgs.append((body, props, method.redelivered))
                if ack:
                    ch.basic_ack(method.delivery_tag)
        finally:
            conn.close()
        return msgs

    def purge(self, name):
        conn = self.connection()
        try:
            conn.channel().queue_purge(name)
        finally:
            conn.close()


# --------------------------------------------------------------------------
# Mosquitto

_Msg = collections.namedtuple('MQTTMessage',
                              'topic payload qos retain dup properties')


def _mqtt_props(p):
    if p is None:
        return None
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    if isinstance(p, Properties):
        return p
    props = Properties(PacketTypes.PUBLISH)
    for k, v in dict(p).items():
        setattr(props, k, v)
    return props


_client_seq = [0]


def _client_id(prefix):
    with _lock:
        _client_seq[0] += 1
        return '%s-%d-%d' % (prefix, os.getpid(), _client_seq[0])


class Mosquitto(_Proc):
    """A private Mosquitto broker; all state in basedir/mosquitto.

    max_inflight: max_inflight_messages (0 = unlimited -- mosquitto.conf(5)
    says so and 2.0.11 honours it, tested: 200 unacked QoS 1 messages went
    out to one client; 20 is the broker's default)."""

    def __init__(self, basedir, port=None, max_inflight=0, extra_conf=''):
        self._tls_listeners = []
        self.basedir = basedir
        self.dir = os.path.join(basedir, 'mosquitto')
        self.datadir = os.path.join(self.dir, 'data')
        self.confpath = os.path.join(self.dir, 'mosquitto.conf')
        self.logpath = os.path.join(self.dir, 'mosquitto.log')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self.host = '127.0.0.1'
        self.port = port or free_port()
        self.max_inflight = max_inflight
        self.extra_conf = extra_conf
        self._ever_started = False

    def __repr__(self):
        return '<Mosquitto port=%d pid=%s>' % (self.port, self.pid)

    def add_tls_listener(self, cert, key, ca=None, require_certificate=False):
        """Before start(): one more listener, speaking TLS with the (cert,
        key) files; with require_certificate, clients must present a
        certificate from ca. Returns its port."""
        port = free_port()
        self._tls_listeners.append((port, cert, key, ca, require_certificate))
        return port

    def _write_conf(self):
        os.makedirs(self.datadir, exist_ok=True)
        lines = [
            '# generated by oncetest',
            'listener %d 127.0.0.1' % self.port,
            'allow_anonymous true',
            'persistence true',
            'persistence_location %s/' % self.datadir,
            'persistence_file mosquitto.db',
            'autosave_interval 1',
            'autosave_on_changes false',
            'max_queued_messages 0',           # 0 = no limit
            'max_queued_bytes 0',
            'max_inflight_messages %d' % self.max_inflight,
            'max_inflight_bytes 0',
            'log_dest file %s' % self.logpath,
            'log_type error', 'log_type warning', 'log_type notice',
            'log_type information', 'log_type subscribe',
            'log_type unsubscribe',
            'connection_messages true',
            'log_timestamp true',
            'log_timestamp_format %Y-%m-%dT%H:%M:%S',
        ]
        if os.geteuid() == 0:
            # else mosquitto switches to user "mosquitto", which cannot
            # write to our directories
            lines.append('user root')
        for port, cert, key, ca, require in self._tls_listeners:
            lines += ['listener %d 127.0.0.1' % port,
                      'certfile %s' % cert, 'keyfile %s' % key,
                      'tls_version tlsv1.2']
            if ca:
                lines.append('cafile %s' % ca)
            lines.append('require_certificate %s'
                         % ('true' if require else 'false'))
        with open(self.confpath, 'w') as f:
            f.write('\n'.join(lines) + '\n' + self.extra_conf + '\n')

    def log(self):
        return _read_text(self.logpath)

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait until the broker log (from offset start) matches regex
        pattern; return the match. E.g. r'^\\S+ bridge-1 1 in/#$' appears
        when client bridge-1 subscribes to in/# at QoS 1."""
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log()[start:]), timeout,
                          0.05, 'mosquitto log to match %r' % pattern)

    def start(self, timeout=30):
        if self.running():
            raise RuntimeError('Mosquitto.start: already running')
        t0 = time.monotonic()
        for attempt in range(3):
            self._write_conf()
            with open(self.stdout_path, 'ab') as out:
                self._popen = subprocess.Popen(
                    [MOSQUITTO, '-c', self.confpath], cwd=self.dir,
                    stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
            self._set_pid(self._popen.pid)
            _register(self)
            deadline = time.monotonic() + timeout
            while self._popen.poll() is None and time.monotonic() < deadline:
                if _port_open(self.port):
                    self._ever_started = True
                    self.start_seconds = time.monotonic() - t0
                    return self
                time.sleep(0.02)
            self._kill_all()
            text = _log_tail(self.stdout_path) + '\n' + _log_tail(self.logpath)
            if (not self._ever_started and attempt < 2 and
                    'already in use' in text):
                self.port = free_port()         # lost a race for the port
                continue
            raise RuntimeError('mosquitto did not start (status %s):\n%s'
                               % (self._popen.returncode, text))

    def stop(self, timeout=30):
        """SIGTERM and wait: mosquitto saves its persistence file on exit."""
        if not self.running():
            return
        snapshot = _tree((self.pid,))
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_all(snapshot)

    def kill(self):
        self._kill_all()

    def restart(self, timeout=30):
        self.stop()
        return self.start(timeout)

    # ---- MQTT helpers (paho)

    def client(self, client_id=None, clean=True, protocol=MQTTv311,
               timeout=10, on_message=None):
        """A connected paho client with its network loop running
        (the caller calls loop_stop() and disconnect())."""
        import paho.mqtt.client as mqtt
        cid = client_id or _client_id('oncetest')
        if protocol == MQTTv5:
            c = mqtt.Client(cid, protocol=MQTTv5)
        else:
            c = mqtt.Client(cid, clean_session=clean, protocol=protocol)
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 2)     # after a broker restart
        if on_message:
            c.on_message = on_message
        connected = threading.Event()
        result = {}

        def on_connect(cl, userdata, flags, rc, properties=None):
            result['rc'] = rc
            connected.set()
        c.on_connect = on_connect
        if protocol == MQTTv5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            props = None
            if not clean:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 0xFFFFFFFF
            c.connect(self.host, self.port, keepalive=60, clean_start=clean,
                      properties=props)
        else:
            c.connect(self.host, self.port, keepalive=60)
        c.loop_start()
        if not connected.wait(timeout) or result.get('rc') != 0:
            c.loop_stop()
            try:
                c.disconnect()
            except Exception:
                pass
            raise RuntimeError('MQTT connect to port %d failed: %r'
                               % (self.port, result.get('rc', 'timeout')))
        return c

    def publish_many(self, topic_and_payload_list, qos=1, properties=None,
                     protocol=MQTTv311, timeout=60, client_id=None,
                     retain=False):
        """Publish (topic, payload[, properties]) items on one connection
        and wait until every one is acknowledged (PUBACK for QoS 1).
        properties: paho Properties or a dict such as
        {'UserProperty': [('k', 'v')], 'ContentType': 'text/plain'}
        (MQTT 5 only). Returns the number published."""
        import paho.mqtt.client as mqtt
        items = list(topic_and_payload_list)
        c = self.client(client_id=client_id or _client_id('oncetest-pub'),
                        protocol=protocol)
        try:
            default_props = _mqtt_props(properties) \
                if protocol == MQTTv5 else None
            infos = []
            for it in items:
                topic, payload = it[0], it[1]
                props = default_props
                if len(it) > 2 and it[2] is not None:
                    props = _mqtt_props(it[2])
                if isinstance(payload, str):
                    payload = payload.encode('utf-8')
                info = c.publish(topic, payload, qos=qos, retain=retain,
                                 properties=props)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise RuntimeError('MQTT publish failed: %s'
                                       % mqtt.error_string(info.rc))
                infos.append(info)
            if qos > 0:
                deadline = time.monotonic() + timeout
                i = 0
                while i < len(infos):
                    if infos[i].is_published():
                        i += 1
                        continue
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            'publish_many: %d of %d acknowledged after %ss'
                            % (sum(x.is_published() for x in infos),
                               len(infos), timeout))
                    time.sleep(0.005)
            return len(infos)
        finally:
            c.disconnect()
            c.loop_stop()

    def subscribe(self, topics, qos=1, client_id=None, clean=True,
                  protocol=MQTTv311, timeout=10):
        """Subscribe and collect messages in the background; see
        MQTTCollector. topics: a filter or a list of filters."""
        return MQTTCollector(self, topics, qos, client_id, clean, protocol,
                             timeout)


class MQTTCollector:
    """A paho subscriber that appends every message received to .messages
    (MQTTMessage(topic, payload, qos, retain, dup, properties)). With
    clean=False the session persists; paho reconnects by itself after a
    broker restart. Call close() (or disconnect(), to keep the session)."""

    def __init__(self, broker, topics, qos=1, client_id=None, clean=True,
                 protocol=MQTTv311, timeout=10):
        if isinstance(topics, str):
            topics = [topics]
        self.messages = []
        self._cond = threading.Condition()
        self.client_id = client_id or _client_id('oncetest-sub')
        self._broker = broker
        self._args = (qos, clean, protocol, timeout, list(topics))
        self._client = None
        self.connect()

    def _on_message(self, client, userdata, m):
        with self._cond:
            self.messages.append(_Msg(m.topic, m.payload, m.qos, m.retain,
                                      bool(m.dup),
                                      getattr(m, 'properties', None)))
            self._cond.notify_all()

    def connect(self):
        qos, clean, protocol, timeout, topics = self._args
        c = self._broker.client(self.client_id, clean, protocol, timeout,
                                on_message=self._on_message)
        subacked = threading.Event()
        c.on_subscribe = lambda *a: subacked.set()
        rc, _mid = c.subscribe([(t, qos) for t in topics])
        if rc != 0 or not subacked.wait(timeout):
            c.loop_stop()
            c.disconnect()
            raise RuntimeError('MQTT subscribe %r failed' % (topics,))
        self._client = c
        return self

    def wait_count(self, n, timeout=30):
        """Wait until at least n messages arrived; return len(messages)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError('got %d of %d MQTT messages after %ss'
                                       % (len(self.messages), n, timeout))
                self._cond.wait(left)
            return len(self.messages)

    def payloads(self):
        with self._cond:
            return [m.payload for m in self.messages]

    def disconnect(self):
        """Disconnect cleanly (a persistent session stays on the broker)."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    close = disconnect


# --------------------------------------------------------------------------
# the daemon under test

class Daemon(_Proc):
    """Runs argv in a new session, stdout+stderr appended to logpath.
    env: None to inherit, else a dict of changes to os.environ (a value of
    None removes the variable)."""

    def __init__(self, argv, logpath, env=None, cwd=None):
        self.argv = list(argv)
        self.logpath = logpath
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
                else:
                    full_env[k] = str(v)
        with open(logpath, 'ab') as out:
            self._popen = subprocess.Popen(
                self.argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._set_pid(self._popen.pid)
        _register(self)

    def __repr__(self):
        return '<Daemon %s pid=%s>' % (os.path.basename(self.argv[0]),
                                       self.pid)

    def alive(self):
        return self._popen.poll() is None

    @property
    def returncode(self):
        return self._popen.poll()

    def kill(self, sig=signal.SIGKILL):
        """Send sig to the daemon's process group. For SIGKILL also kill
        any descendants that left the group, and reap; returns the exit
        status (-9) then, else None."""
        if sig == signal.SIGKILL:
            self._kill_all()       # freezes the tree first: nothing escapes
            return self._popen.returncode
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        return None

    def wait(self, timeout=None):
        """Wait for exit; return the status (negative: killed by signal)."""
        return self._popen.wait(timeout)

    def terminate(self, timeout=10):
        """SIGTERM the daemon, wait up to timeout, then SIGKILL; any other
        processes left in its group are killed. Returns the exit status
        (negative: killed by that signal)."""
        if self._popen.poll() is None:
            snapshot = _tree((self.pid,))
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            self._kill_all(snapshot)
        else:
            self._kill_all()
        return self._popen.returncode

    def log(self):
        return _read_text(self.logpath)

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait until the log (from offset start) matches regex pattern;
        return the match. Raises TimeoutError, or RuntimeError if the
        daemon exits first."""
        rx = re.compile(pattern, re.M)

        def check():
            m = rx.search(self.log()[start:])
            if m:
                return m
            if not self.alive():
                m = rx.search(self.log()[start:])
                if m:
                    return m
                raise RuntimeError('daemon exited (status %s) before its log '
                                   'matched %r; log tail:\n%s'
                                   % (self._popen.returncode, pattern,
                                      _log_tail(self.logpath)))
            return None
        return wait_until(check, timeout, 0.05, 'log to match %r' % pattern)
