# SPDX-License-Identifier: Apache-2.0
"""A streaming standby of a private PostgreSQL for the oncetest harness,
and the conninfo that lets libpq fail over between the two."""

import os
import time

from ot_procs import PG_BIN, _run, wait_until
from ot_postgres import Postgres


class Standby(Postgres):
    """A hot standby of primary (a Postgres) in basedir/<name>: a base
    backup with pg_basebackup -R, its own port, data and socket
    directories. sync=True names it in the primary's
    synchronous_standby_names (set after the copy, so that the standby,
    once promoted, does not wait for a standby of its own)."""

    def __init__(self, primary, name='standby', sync=True):
        Postgres.__init__(self, os.path.join(primary.basedir, name), dbname=primary.dbname)
        self.primary = primary
        self.sync = sync
        self.name = name

    def start(self, timeout=60):
        t0 = time.monotonic()
        os.makedirs(self.basedir, exist_ok=True)
        self._chown(self.basedir)
        os.mkdir(self.sockdir, 0o755)
        with open(self.logpath, 'a'):
            pass
        for p in (self.sockdir, self.logpath):
            self._chown(p)
        _run(self._as_pg([PG_BIN + '/pg_basebackup', '-h', self.primary.host, '-p', str(self.primary.port),
                          '-U', 'postgres', '-D', self.datadir, '-R', '-X', 'stream', '-c', 'fast',
                          '-d', 'application_name=%s' % self.name]),
             timeout=timeout, what='pg_basebackup')
        self._initialized = True
        self._write_conf()           # the copy's oncetest.conf names the primary's port
        self._start_server(timeout)
        if self.sync:
            self.primary.execute("ALTER SYSTEM SET synchronous_standby_names = '%s'" % self.name)
            self.primary.execute("SELECT pg_reload_conf()")
        want = 'sync' if self.sync else 'async'
        wait_until(lambda: self.primary.scalar(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", (self.name,)) == want,
            timeout, desc='standby %s streaming (%s)' % (self.name, want))
        self.start_seconds = time.monotonic() - t0
        return self

    def promote(self, timeout=60):
        """pg_ctl promote, and wait until the standby accepts writes."""
        _run(self._as_pg([PG_BIN + '/pg_ctl', '-D', self.datadir, '-w', '-t', str(int(timeout)), '-s',
                          'promote']), timeout=timeout + 10, what='pg_ctl promote')
        wait_until(lambda: self.scalar("SELECT NOT pg_is_in_recovery()"), timeout, desc='promotion')


def failover_conninfo(*servers):
    """A libpq conninfo naming every server, in order, that connects to
    the first one accepting writes (libpq's own failover)."""
    first = servers[0]
    return 'host=%s port=%s dbname=%s user=%s target_session_attrs=read-write' % (
        ','.join(s.host for s in servers), ','.join(str(s.port) for s in servers), first.dbname, first.user)
