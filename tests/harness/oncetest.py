#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
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

The harness lives in one module per job (ot_tap, ot_procs, ot_certs,
ot_postgres, ot_standby, ot_rabbitmq, ot_rabbitcluster, ot_mosquitto, ot_daemon); this module gathers
what tests use, so that they import oncetest alone.
"""

from ot_procs import (  # noqa: F401
    MQTTv311, MQTTv5, _same_proc, _tree, free_port, make_tmpdir, start_all, teardown, wait_until)
from ot_tap import TAP, at_done  # noqa: F401
from ot_certs import make_certs  # noqa: F401
from ot_postgres import Postgres  # noqa: F401
from ot_standby import Standby, failover_conninfo  # noqa: F401
from ot_rabbitmq import RabbitMQ  # noqa: F401
from ot_rabbitcluster import RabbitCluster  # noqa: F401
from ot_mosquitto import Mosquitto  # noqa: F401
from ot_daemon import Daemon  # noqa: F401

__all__ = [
    'TAP', 'at_done', 'make_tmpdir', 'free_port', 'wait_until', 'start_all',
    'Postgres', 'Standby', 'failover_conninfo', 'RabbitMQ', 'RabbitCluster', 'Mosquitto', 'Daemon',
    'MQTTv311', 'MQTTv5',
    'make_certs', 'teardown',
]
