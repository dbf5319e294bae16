# SPDX-License-Identifier: Apache-2.0
"""Processes, temporary directories, ports and waiting for the
oncetest harness: every server and daemon a test starts is registered
here and torn down with its whole process tree at exit."""

import atexit
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


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
# temporary directories, ports, waiting

_tmpdirs = []


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

    def _terminate(self, timeout):
        """SIGTERM, wait up to timeout, then SIGKILL what is left of the
        tree as it was before the signal."""
        if not self.running():
            return
        snapshot = _tree((self.pid,))
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_all(snapshot)

    def _teardown(self):
        self._kill_all()
