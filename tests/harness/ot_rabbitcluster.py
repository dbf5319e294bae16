# SPDX-License-Identifier: Apache-2.0
"""A private three-node RabbitMQ 3.10 cluster on loopback for the oncetest
harness: nodes of ot_rabbitmq.RabbitMQ, each with its own node name, AMQP
port, Erlang distribution port and directory, sharing one Erlang cookie
(in each node's private HOME), joined to the first node by peer discovery
(classic_config) as they boot; and
what a test of a node loss needs: which node leads a quorum queue, which
node a client is connected to, kill -9 of a node and its restart."""

import json
import os
import random
import string
import time

from ot_procs import start_all, wait_until
from ot_rabbitmq import RabbitMQ


class RabbitCluster:
    """nodes RabbitMQ nodes in basedir/rabbit1, rabbit2, ... clustered with
    the first. Each node is a RabbitMQ (url, port, ctl, kill, start, the
    pika helpers); the cluster's own helpers ask any running node."""

    def __init__(self, basedir, nodes=3):
        cookie = ''.join(random.choice(string.ascii_uppercase)
                         for _ in range(20))
        self.nodes = []
        for i in range(nodes):
            node = RabbitMQ(os.path.join(basedir, 'rabbit%d' % (i + 1)))
            home = os.path.join(node.dir, 'home')
            os.makedirs(home, exist_ok=True)
            path = os.path.join(home, '.erlang.cookie')
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o400),
                      'w') as f:
                f.write(cookie)           # RabbitMQ._prepare keeps it
            self.nodes.append(node)
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            # peer discovery joins the node to the first one at its first
            # boot, waiting for it: no stop_app/join_cluster/start_app
            # round trips, each of which boots a CLI VM
            confd = os.path.join(node.dir, 'conf.d')
            os.makedirs(confd, exist_ok=True)
            with open(os.path.join(confd, '10-cluster.conf'), 'w') as f:
                f.write('cluster_formation.peer_discovery_backend = '
                        'classic_config\n'
                        'cluster_formation.classic_config.nodes.1 = %s\n'
                        'cluster_formation.discovery_retry_limit = 240\n'
                        'cluster_formation.discovery_retry_interval = 500\n'
                        % seed.node)
        self.start_seconds = None

    def __repr__(self):
        return '<RabbitCluster %s>' % ' '.join(n.node for n in self.nodes)

    def start(self, timeout=120):
        """Start the first node, then the others at once (a node boots in
        ~8 s on 2 cores, most of it CPU); they join the first as they boot.
        Not all three at once: a node that joined the first while that one
        was still migrating its schema (feature flags) failed to boot with
        schema_integrity_check_failed (once in about ten runs)."""
        t0 = time.monotonic()
        self.nodes[0].start(timeout)
        start_all(*self.nodes[1:])
        wait_until(lambda: len(self.running_nodes()) == len(self.nodes),
                   timeout, 0.5, 'all %d nodes in the cluster'
                   % len(self.nodes))
        self.start_seconds = time.monotonic() - t0
        return self

    # ---- nodes

    def alive(self):
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.running()]

    def by_name(self, name):
        for n in self.nodes:
            if n.node == name:
                return n
        raise LookupError('no node %r in %r' % (name, self))

    def by_port(self, port):
        for n in self.nodes:
            if n.port == port:
                return n
        raise LookupError('no node with AMQP port %d in %r' % (port, self))

    def _ctl_json(self, *args, timeout=30):
        """rabbitmqctl ARGS --formatter json on the first live node."""
        last = None
        for n in self.alive():
            try:
                out = n.ctl('-q', *args, '--formatter', 'json',
                            timeout=timeout)
            except RuntimeError as e:       # node going down: try another
                last = e
                continue
            starts = [i for i in (out.find('['), out.find('{')) if i >= 0]
            start = min(starts) if starts else 0
            try:
                return json.loads(out[start:])
            except ValueError:
                last = RuntimeError('cannot parse rabbitmqctl output:\n'
                                    + out)
        raise last or RuntimeError('no node of %r is running' % self)

    def running_nodes(self):
        """Names of the nodes the cluster says are running."""
        st = self._ctl_json('cluster_status')
        return list(st.get('running_nodes', []))

    def queue_info(self, queue):
        """{type, leader, members, online, messages_ready,
        messages_unacknowledged} of a queue, from list_queues (a quorum
        queue's counts lag by its Ra tick, 0.5 s here)."""
        for r in self._ctl_json('list_queues', 'name', 'type', 'leader',
                                'members', 'online', 'messages_ready',
                                'messages_unacknowledged'):
            if r.get('name') == queue:
                return r
        raise LookupError('queue %r not found' % queue)

    def leader(self, queue):
        """The RabbitMQ node that leads quorum queue queue now."""
        return self.by_name(self.queue_info(queue)['leader'])

    def wait_leader(self, queue, timeout=60, avoid=()):
        """Wait until queue has a leader on a running node not in avoid
        (after a node loss the members elect one); return that node."""
        def found():
            try:
                n = self.leader(queue)
            except (LookupError, KeyError, RuntimeError):
                return None
            return n if n.running() and n not in avoid else None
        return wait_until(found, timeout, 0.5, 'a leader of %s' % queue)

    def wait_members_online(self, queue, timeout=60):
        """Wait until every member of quorum queue queue is online (a
        restarted node rejoined it)."""
        def online():
            try:
                info = self.queue_info(queue)
            except (LookupError, RuntimeError):
                return False
            return (len(info.get('members', [])) == len(self.nodes) and
                    sorted(info.get('online', [])) ==
                    sorted(info.get('members', [])))
        return wait_until(online, timeout, 0.5,
                          'every member of %s online' % queue)

    def kill(self, node):
        """kill -9 a node: the whole VM, at once, as a crash or a power
        loss would."""
        node.kill()

    def restart(self, node, timeout=120):
        """Start a killed node again; it rejoins the cluster from its own
        data directory before rabbitmqctl wait says it is up."""
        return node.start(timeout)

    def urls(self):
        return [n.url for n in self.nodes]
