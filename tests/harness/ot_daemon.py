# SPDX-License-Identifier: Apache-2.0
"""The daemon under test, run by the oncetest harness in a session of
its own with its output in a log file."""

import os
import re
import signal
import subprocess

from ot_procs import _Proc, _log_tail, _read_text, _register, _tree, wait_until


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
