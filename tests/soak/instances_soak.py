# SPDX-License-Identifier: Apache-2.0
"""Soak of several instances (issue 13), run by "make soak": three
oncebridge instances as competing consumers of one AMQP queue and one MQTT
$share group, against a PostgreSQL primary with a synchronous standby
(the conninfo names both, target_session_attrs=read-write), during one run
of EVENTS events per protocol (default 100 000; 10 % duplicates, poison
messages) with these faults, each at a point of the stream:

  - kill -9 of a whole instance, rotating among the three (12 kills);
  - a PostgreSQL failover: kill -9 of the primary, the standby promoted;
  - a broker node loss: kill -9 of the node that leads the quorum queue of
    a three-node RabbitMQ cluster (the broker file names all three: url
    and hosts), started again once another node leads; and a restart of
    Mosquitto (it has no clustering).

Prints the figures (events, faults injected, time, missing, doubled) and
exits non-zero when the ledger is not exact. Not part of make check.

    make soak [SOAK_EVENTS=100000]
    tests/soak/instances_soak.py [EVENTS]      (from the build directory's
                                                environment, as make sets it)
"""
import os
import sys
import threading
import time

import instances
import obtest
import oncetest as ot


def pg_failover(b):
    """kill -9 of the primary, then the standby promoted; the ledger is
    read from the new primary from now on."""
    t0 = time.monotonic()
    b.pg.kill()
    b.standby.promote()
    b.pg = b.standby
    obtest.note("PostgreSQL failover: standby promoted %.1f s after the primary's kill -9" % (time.monotonic() - t0))


def broker_node_loss(b):
    """kill -9 of the RabbitMQ node that leads the quorum queue; the
    members elect another leader, the instances connected to the lost node
    move to another one (key hosts); the node is started again and
    rejoins."""
    t0 = time.monotonic()
    leader = b.cluster.leader(instances.QUEUE)
    b.cluster.kill(leader)
    new = b.cluster.wait_leader(instances.QUEUE, avoid=(leader,))
    obtest.note("RabbitMQ node %s (the queue's leader) killed; %s leads after %.1f s"
                % (leader.node, new.node, time.monotonic() - t0))

    def restart():      # in the background: the instance kills go on meanwhile
        b.cluster.restart(leader)
        obtest.note("node %s back after %.1f s" % (leader.node, time.monotonic() - t0))
    b.node_restart = threading.Thread(target=restart, daemon=True)
    b.node_restart.start()


def mosquitto_restart(b):
    t0 = time.monotonic()
    b.mqtt.stop()
    b.mqtt.start()
    obtest.note("Mosquitto restarted in %.1f s" % (time.monotonic() - t0))


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SOAK_EVENTS", "100000"))
    T0 = time.monotonic()
    t = ot.TAP()
    b = obtest.MQTTBridge("soak-instances")
    b.cluster = ot.RabbitCluster(b.dir)
    b.pg.start()
    b.install_schema()
    obtest.applied_table(b.pg)
    b.standby = ot.Standby(b.pg, sync=True).start()
    ot.start_all(b.cluster, b.mqtt)
    b.rabbit = b.cluster.nodes[0]       # url, user and password of the broker file; the publisher's node
    obtest.note("servers up in %.1f s (primary, synchronous standby, 3 RabbitMQ nodes, Mosquitto)"
                % (time.monotonic() - T0))
    conninfo = ot.failover_conninfo(b.pg, b.standby)
    faults = [(0.35, "PostgreSQL failover (kill -9 of the primary, standby promoted)", pg_failover),
              (0.55, "Mosquitto restart", mosquitto_restart),
              (0.75, "RabbitMQ node loss (kill -9 of the queue leader's node, started again)", broker_node_loss)]
    figures = instances.run(t, b, events=events, kills=12, poison=20, faults=faults, timeout=max(600, events // 20),
                            batch_size=200, main_overrides={"database": {"conninfo": conninfo}},
                            amqp_overrides={"hosts": ["127.0.0.1:%d" % n.port for n in b.cluster.nodes[1:]],
                                            "heartbeat": 5},
                            queue_arguments={"x-queue-type": "quorum"})
    if getattr(b, "node_restart", None):
        b.node_restart.join(300)
    print("soak: %d events (AMQP + MQTT, 10 %% duplicates, %d poison), %d instance kills, faults: %s; "
          "%.0f s; missing %d, doubled %d" % (figures["events"], figures["poison"], figures["kills"],
                                             "; ".join(f for f in figures["faults"] if not f.startswith("kill -9 of")),
                                             figures["seconds"], figures["missing"], figures["doubled"]),
          flush=True)
    obtest.note("run time %.1f s" % (time.monotonic() - T0))
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
