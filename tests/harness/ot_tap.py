# SPDX-License-Identifier: Apache-2.0
"""TAP output for the oncetest harness, with checks that run at the end
of every test (at_done)."""

import sys
import time

from ot_procs import _lock, teardown


# --------------------------------------------------------------------------
# TAP

class TAP:
    """Minimal TAP producer; the plan is printed at the end by done()."""

    def __init__(self, out=None):
        self._started = time.monotonic()
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
        # read by tests/run.sh, which lists the slowest tests
        self._emit('# took %.0f s' % (time.monotonic() - self._started))
        return 0 if (self.n > 0 and self.failed == 0) else 1

    def bail(self, msg):
        self._emit('Bail out! ' + ' '.join(str(msg).split()))
        teardown()
        sys.exit(1)



_done_hooks = []


def at_done(fn):
    """Have TAP.done() call fn(tap) first: checks every test of a kind
    must end with (the daemon's logs, say) without each script asking."""
    _done_hooks.append(fn)
