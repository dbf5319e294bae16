#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Self-test of the oncetest harness; prints TAP.

    /usr/bin/python3 tests/harness/selftest.py

Starts PostgreSQL, RabbitMQ and Mosquitto privately, exercises the API,
restarts and crashes them, and checks in child processes that teardown
leaves nothing running, after an uncaught exception, SIGTERM and bail().
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oncetest as ot                                       # noqa: E402
from oncetest import TAP, wait_until                        # noqa: E402

HERE = os.path.abspath(__file__)


def listen_addrs(port):
    """Local addresses with a TCP socket listening on port."""
    addrs = set()
    for path, v6 in (('/proc/net/tcp', False), ('/proc/net/tcp6', True)):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    ip_hex, port_hex = local.split(':')
                    if state != '0A' or int(port_hex, 16) != port:
                        continue
                    raw = bytes.fromhex(ip_hex)
                    if v6:
                        raw = b''.join(raw[i:i + 4][::-1]
                                       for i in range(0, 16, 4))
                        addrs.add(socket.inet_ntop(socket.AF_INET6, raw))
                    else:
                        addrs.add(socket.inet_ntoa(raw[::-1]))
        except FileNotFoundError:
            pass
    return addrs


def ps_lines():
    out = subprocess.run(['ps', '-eo', 'pid=,pgid=,args='],
                         stdout=subprocess.PIPE, check=True).stdout
    return out.decode('utf-8', 'replace').splitlines()


# --------------------------------------------------------------------------
# child modes (run by the parent in a subprocess)

def child_servers(mode):
    base = ot.make_tmpdir('selftest-child')
    pg, rmq, mq = ot.Postgres(base), ot.RabbitMQ(base), ot.Mosquitto(base)
    t0 = time.monotonic()
    ot.start_all(pg, rmq, mq)
    elapsed = time.monotonic() - t0
    d1 = ot.Daemon(['/bin/sh', '-c', 'sleep 1000 & sleep 1000 & wait'],
                   os.path.join(base, 'd1.log'))
    # a grandchild in a session of its own: not in the daemon's group
    d2 = ot.Daemon(['/bin/sh', '-c', 'setsid sleep 1001 & wait'],
                   os.path.join(base, 'd2.log'))
    conn = pg.connect()           # a backend process, too
    time.sleep(0.3)
    procs = ot._tree([pg.pid, rmq.pid, mq.pid, d1.pid, d2.pid],
                     [rmq.pid, mq.pid, d1.pid, d2.pid])
    print(json.dumps({
        'tmpdir': base, 'node': rmq.node, 'procs': procs,
        'pids': {'postgres': pg.pid, 'rabbitmq': rmq.pid,
                 'mosquitto': mq.pid, 'd1': d1.pid, 'd2': d2.pid},
        'start': {'parallel': elapsed, 'postgres': pg.start_seconds,
                  'rabbitmq': rmq.start_seconds,
                  'mosquitto': mq.start_seconds},
    }), flush=True)
    if mode == 'crash':
        raise RuntimeError('deliberate crash to test teardown')
    time.sleep(600)               # wait for SIGTERM
    conn.close()


def child_tap():
    t = TAP()
    t.ok(True, 'first')
    t.ok(False, 'second # not a directive', diag='why\nit failed')
    t.is_(1, 2, 'third')
    t.is_('a', 'a', 'fourth')
    sys.exit(t.done())


def child_empty_tap():
    sys.exit(TAP().done())


def child_bail():
    base = ot.make_tmpdir('selftest-bail')
    d = ot.Daemon(['sleep', '1000'], os.path.join(base, 'd.log'))
    print(json.dumps({'tmpdir': base, 'procs': ot._tree([d.pid])}),
          flush=True)
    t = TAP()
    t.ok(True, 'before bail')
    t.bail('deliberate bail')
    print('NOT REACHED', flush=True)


# --------------------------------------------------------------------------

def run_child(mode, timeout=180):
    p = subprocess.Popen([sys.executable, HERE, '--child', mode],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p


def check_teardown(t, mode):
    p = run_child(mode)
    line = p.stdout.readline()
    try:
        info = json.loads(line)
    except ValueError:
        p.kill()
        out, err = p.communicate()
        t.ok(False, '%s child reported its servers' % mode,
             diag=(line + out + err).decode('utf-8', 'replace'))
        return None
    t.ok(len(info['procs']) >= 12,
         '%s child: process trees found (%d processes)'
         % (mode, len(info['procs'])), diag=repr(info['procs']))
    if mode == 'sigterm':
        p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(120)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    err = p.stderr.read().decode('utf-8', 'replace')
    p.stdout.close()
    p.stderr.close()
    if mode == 'crash':
        t.ok(rc == 1 and 'deliberate crash' in err,
             'crash child exited 1 with its traceback', diag='rc=%s\n%s'
             % (rc, err))
    else:
        t.is_(rc, 128 + signal.SIGTERM, 'SIGTERM child exited 143')
    left = [int(pid) for pid, st in info['procs'].items()
            if ot._same_proc(int(pid), st)]
    t.ok(not left, '%s child: no process of its trees left' % mode,
         diag='\n'.join(l for l in ps_lines()
                        if int(l.split()[0]) in left))
    marks = [info['tmpdir'], info['node'].split('@')[0]]
    bad = [l for l in ps_lines() if any(m in l for m in marks)]
    t.ok(not bad, '%s child: ps shows nothing of it' % mode,
         diag='\n'.join(bad))
    t.ok(not os.path.exists(info['tmpdir']),
         '%s child: tmpdir removed' % mode)
    return info


def main():
    t = TAP()
    t0_all = time.monotonic()

    # ---- TAP itself
    r = subprocess.run([sys.executable, HERE, '--child', 'tap'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    want = ['ok 1 - first',
            'not ok 2 - second \\# not a directive', '# why', '# it failed',
            'not ok 3 - third', "# got:  1", "# want: 2",
            'ok 4 - fourth', '1..4']
    t.is_(r.stdout.decode().splitlines(), want, 'TAP output format')
    t.is_(r.returncode, 1, 'TAP done() returns 1 after a failure')
    r = subprocess.run([sys.executable, HERE, '--child', 'empty'],
                       stdout=subprocess.PIPE)
    t.ok(r.returncode == 1 and r.stdout == b'1..0\n',
         'TAP done() with no tests: "1..0", status 1')
    p = run_child('bail')
    info = json.loads(p.stdout.readline())
    out = p.stdout.read()        # the same buffered reader as readline()
    p.wait(60)
    out += p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    t.ok(p.returncode == 1 and b'Bail out! deliberate bail' in out and
         b'NOT REACHED' not in out, 'bail() prints "Bail out!" and exits 1',
         diag='rc=%s\n%s' % (p.returncode, out.decode()))
    t.ok(not [x for x, st in info['procs'].items()
              if ot._same_proc(int(x), st)] and
         not os.path.exists(info['tmpdir']),
         'bail() tears down first (daemon gone, tmpdir removed)')

    # ---- small helpers
    ports = [ot.free_port() for _ in range(200)]
    t.is_(len(set(ports)), 200, 'free_port never repeats')
    t.ok(not set(ports) & {5432, 5672, 25672, 1883, 4369},
         'free_port avoids the default ports')
    t.is_(wait_until(lambda: 42, 1), 42, 'wait_until returns the value')
    try:
        wait_until(lambda: 0, 0.3, 0.05, desc='the impossible')
        t.ok(False, 'wait_until raises TimeoutError')
    except TimeoutError as e:
        t.ok('the impossible' in str(e), 'wait_until raises TimeoutError',
             diag=str(e))
    base = ot.make_tmpdir('selftest')
    t.is_(oct(os.stat(base).st_mode & 0o777), '0o755', 'tmpdir mode 0755')

    pg = ot.Postgres(base)
    rmq = ot.RabbitMQ(base)
    mq = ot.Mosquitto(base)
    t.is_(pg.conninfo, 'host=127.0.0.1 port=%d dbname=oncetest user=postgres'
          % pg.port, 'Postgres.conninfo')
    t.is_(rmq.url, 'amqp://127.0.0.1:%d/' % rmq.port, 'RabbitMQ.url')
    t.ok(len({pg.port, rmq.port, rmq.dist_port, mq.port}) == 4,
         'distinct ports')

    # ---- start (one after the other, to time each alone)
    try:
        pg.start()
        mq.start()
        rmq.start()
    except Exception as e:
        t.bail('cannot start servers: %s' % e)
    t.diag('start: postgres %.2fs (initdb+start+createdb), mosquitto %.2fs, '
           'rabbitmq %.2fs' % (pg.start_seconds, mq.start_seconds,
                               rmq.start_seconds))
    for name, port in (('postgres', pg.port), ('rabbitmq amqp', rmq.port),
                       ('rabbitmq dist', rmq.dist_port),
                       ('mosquitto', mq.port)):
        t.is_(listen_addrs(port), {'127.0.0.1'},
              '%s listens on 127.0.0.1 only' % name)

    # ---- PostgreSQL
    t.is_(pg.scalar('SELECT 1'), 1, 'postgres: SELECT 1')
    t.is_(pg.scalar('SHOW fsync'), 'on', 'postgres: fsync on')
    t.is_(pg.scalar('SELECT current_database()'), 'oncetest',
          'postgres: database oncetest')
    pg.execute('CREATE TABLE kv (k text PRIMARY KEY, v int)')
    pg.execute('INSERT INTO kv VALUES (%s, %s), (%s, %s)', ('a', 1, 'b', 2))
    t.is_(pg.execute('SELECT k, v FROM kv ORDER BY k'), [('a', 1), ('b', 2)],
          'postgres: execute with params')
    sqlfile = os.path.join(base, 'ok.sql')
    with open(sqlfile, 'w') as f:
        f.write('CREATE TABLE fromfile (id int);\n'
                'INSERT INTO fromfile SELECT generate_series(1, 10);\n')
    pg.run_psql_file(sqlfile)
    t.is_(pg.scalar('SELECT count(*) FROM fromfile'), 10,
          'postgres: run_psql_file')
    with open(sqlfile, 'w') as f:
        f.write('SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 2;\n')
    try:
        pg.run_psql_file(sqlfile)
        t.ok(False, 'postgres: run_psql_file raises on error')
    except RuntimeError as e:
        t.ok('no_such_table' in str(e),
             'postgres: run_psql_file raises on error, with the output',
             diag=str(e))
    pg.execute("INSERT INTO kv VALUES ('c', 3)")
    pg.stop('immediate')
    t.ok(not pg.running(), 'postgres: stopped -m immediate')
    pg.start_again()
    t.diag('postgres start_again after immediate stop (crash recovery): '
           '%.2fs' % pg.start_seconds)
    t.is_(pg.scalar('SELECT sum(v) FROM kv'), 6,
          'postgres: committed rows survive -m immediate, auto-reconnect')
    pg.stop('fast')
    pg.start_again()
    t.is_(pg.scalar('SELECT count(*) FROM kv'), 3,
          'postgres: stop -m fast + start_again')

    # ---- RabbitMQ
    rmq.declare_queue('selftest.q1', keys=['sel.one'])
    rmq.declare_queue('selftest.q2', keys=['sel.many.#'])
    rmq.publish('amq.topic', 'sel.one', 'hello', message_id='m-1',
                headers={'h': 'v'})
    t.is_(rmq.queue_counts('selftest.q1'), (1, 0),
          'rabbitmq: declared queue got the published message')
    try:
        rmq.publish('amq.topic', 'nobody.home', 'lost')
        t.ok(False, 'rabbitmq: unroutable publish raises')
    except Exception as e:
        t.ok('Unroutable' in type(e).__name__,
             'rabbitmq: unroutable publish raises', diag=repr(e))
    n = 5000
    items = [{'exchange': 'amq.topic', 'routing_key': 'sel.many.%d' % (i % 7),
              'body': 'message %d' % i, 'message_id': 'id-%d' % i,
              'headers': {'seq': i}} for i in range(n)]
    t1 = time.monotonic()
    rmq.publish_many(items)
    dt = time.monotonic() - t1
    t.diag('rabbitmq: publish_many of %d persistent confirmed messages: '
           '%.2fs' % (n, dt))
    t.ok(dt < 10, 'rabbitmq: publish_many is fast enough (%.2fs)' % dt)
    t.is_(rmq.queue_counts('selftest.q2'), (n, 0),
          'rabbitmq: all %d arrived' % n)
    conn = rmq.connection()
    ch = conn.channel()
    method, _props, _body = ch.basic_get('selftest.q1', auto_ack=False)
    t.is_(rmq.queue_counts('selftest.q1'), (0, 1),
          'rabbitmq: queue_counts sees an unacked message')
    conn.close()
    t.is_(wait_until(lambda: rmq.queue_counts('selftest.q1') == (1, 0) and
                     (1, 0), 10), (1, 0),
          'rabbitmq: requeued when the channel closed')
    try:
        rmq.queue_counts('no.such.queue')
        t.ok(False, 'rabbitmq: queue_counts of a missing queue raises')
    except LookupError:
        t.ok(True, 'rabbitmq: queue_counts of a missing queue raises')

    rmq.declare_queue('selftest.quorum', keys=['sel.quorum'],
                      arguments={'x-queue-type': 'quorum'})
    rmq.publish('amq.topic', 'sel.quorum', 'q')
    t.ok(wait_until(lambda: rmq.queue_counts('selftest.quorum') == (1, 0),
                    15, 0.2), 'rabbitmq: quorum queue works')
    old_pid = rmq.pid
    t1 = time.monotonic()
    rmq.restart()
    t.diag('rabbitmq: restart (graceful stop + start): %.2fs, start alone '
           '%.2fs' % (time.monotonic() - t1, rmq.start_seconds))
    t.ok(rmq.pid != old_pid and rmq.running(), 'rabbitmq: restarted')
    t.is_(rmq.queue_counts('selftest.q1'), (1, 0),
          'rabbitmq: durable queue + persistent message survive restart')
    t.is_(rmq.queue_counts('selftest.q2'), (n, 0),
          'rabbitmq: %d persistent messages survive restart' % n)
    t.ok(wait_until(lambda: rmq.queue_counts('selftest.quorum') == (1, 0),
                    15, 0.2), 'rabbitmq: quorum queue message survives restart')
    msgs = rmq.get_messages('selftest.q1')
    t.ok(len(msgs) == 1 and msgs[0][0] == b'hello' and
         msgs[0][1].message_id == 'm-1' and
         msgs[0][1].headers == {'h': 'v'} and msgs[0][1].delivery_mode == 2,
         'rabbitmq: body, message_id, headers, delivery_mode kept',
         diag=repr(msgs))
    some = rmq.get_messages('selftest.q2', max_count=3)
    t.is_([m[1].message_id for m in some], ['id-0', 'id-1', 'id-2'],
          'rabbitmq: get_messages in order')
    rmq.publish('amq.topic', 'sel.one', 'before kill', message_id='m-2')
    tree = ot._tree([rmq.pid], [rmq.pid])
    rmq.kill()
    t.ok(not rmq.running() and not [p for p, s in tree.items()
                                    if ot._same_proc(p, s)],
         'rabbitmq: kill() leaves no process of the node')
    t1 = time.monotonic()
    rmq.start()
    t.diag('rabbitmq: start after SIGKILL: %.2fs' % (time.monotonic() - t1))
    t.is_(rmq.queue_counts('selftest.q1'), (1, 0),
          'rabbitmq: confirmed persistent message survives SIGKILL')

    # ---- Mosquitto
    sub = mq.subscribe('sel/#', qos=1, client_id='selftest-sub', clean=False)
    t.ok(mq.wait_log(r'selftest-sub 1 sel/#$', 5),
         'mosquitto: log shows the subscription')
    sent = [('sel/a', 'msg %d' % i) for i in range(500)]
    t1 = time.monotonic()
    t.is_(mq.publish_many(sent, qos=1), 500,
          'mosquitto: 500 QoS 1 publishes acknowledged')
    t.diag('mosquitto: publish_many 500 QoS 1: %.2fs'
           % (time.monotonic() - t1))
    sub.wait_count(500, 10)
    t.is_(sorted(sub.payloads()), sorted(p.encode() for _, p in sent),
          'mosquitto: subscriber got them all')
    sub5 = mq.subscribe('sel5/#', qos=1, protocol=ot.MQTTv5)
    mq.publish_many([('sel5/x', b'v5')], qos=1, protocol=ot.MQTTv5,
                    properties={'UserProperty': [('k', 'v')],
                                'ContentType': 'text/plain'})
    sub5.wait_count(1, 10)
    m = sub5.messages[0]
    t.ok(m.payload == b'v5' and
         getattr(m.properties, 'UserProperty', None) == [('k', 'v')] and
         getattr(m.properties, 'ContentType', None) == 'text/plain',
         'mosquitto: MQTT 5 publish with properties',
         diag=repr(m))
    sub5.close()
    # queued for an offline persistent session, across a graceful restart
    sub.disconnect()
    mq.publish_many([('sel/p', 'queued %d' % i) for i in range(50)])
    t1 = time.monotonic()
    mq.restart()
    t.diag('mosquitto: restart: %.2fs, start alone %.2fs'
           % (time.monotonic() - t1, mq.start_seconds))
    t.ok(os.path.exists(os.path.join(mq.datadir, 'mosquitto.db')),
         'mosquitto: persistence file written')
    sub.connect()
    sub.wait_count(550, 10)
    t.is_(len(sub.messages), 550,
          'mosquitto: queued messages survive a restart')
    # ... and a SIGKILL after the autosave
    sub.disconnect()
    mq.publish_many([('sel/k', 'autosaved %d' % i) for i in range(20)])
    time.sleep(2.5)                    # autosave_interval 1
    mq.kill()
    t.ok(not mq.running(), 'mosquitto: killed')
    mq.start()
    sub.connect()
    sub.wait_count(570, 10)
    t.is_(len(sub.messages), 570,
          'mosquitto: autosaved messages survive SIGKILL')
    sub.close()

    # ---- Daemon
    log1 = os.path.join(base, 'd1.log')
    d = ot.Daemon(['/bin/sh', '-c', 'echo started; '
                   'trap "echo got-term; exit 3" TERM; '
                   'sleep 1000 & wait'], log1)
    t.ok(d.wait_log('^started$', 5) and d.alive(), 'daemon: started, log')
    t.is_(os.getpgid(d.pid), d.pid, 'daemon: own process group')
    t.is_(os.getsid(d.pid), d.pid, 'daemon: own session')
    tree = ot._tree([d.pid], [d.pid])
    t.is_(d.terminate(5), 3, 'daemon: terminate() returns the exit code')
    t.ok('got-term' in d.log(), 'daemon: got SIGTERM')
    t.ok(not [p for p, s in tree.items() if ot._same_proc(p, s)],
         'daemon: children killed after terminate()')
    d = ot.Daemon(['/bin/sh', '-c', 'setsid sleep 1001 & sleep 1000 & wait'],
                  os.path.join(base, 'd2.log'))
    wait_until(lambda: len(ot._tree([d.pid])) >= 3, 5)
    tree = ot._tree([d.pid], [d.pid])
    t.is_(d.kill(), -signal.SIGKILL, 'daemon: kill() returns -9')
    t.ok(not [p for p, s in tree.items() if ot._same_proc(p, s)],
         'daemon: kill() also gets a grandchild in its own session')
    d = ot.Daemon(['/bin/sh', '-c', 'trap "" TERM; echo ignoring; '
                   'sleep 1000 & wait; wait'], os.path.join(base, 'd3.log'))
    d.wait_log('ignoring', 5)
    t1 = time.monotonic()
    t.is_(d.terminate(1), -signal.SIGKILL,
          'daemon: terminate() SIGKILLs after the timeout')
    t.ok(time.monotonic() - t1 < 5, 'daemon: ... promptly')
    d = ot.Daemon(['/bin/sh', '-c', 'echo "X=$ONCETEST_X"'],
                  os.path.join(base, 'd4.log'), env={'ONCETEST_X': 42})
    t.is_(d.wait(10), 0, 'daemon: wait() returns the status')
    t.ok('X=42' in d.log(), 'daemon: env is added to the environment')

    # ---- teardown in child processes
    check_teardown(t, 'crash')
    info = check_teardown(t, 'sigterm')
    if info:
        s = info['start']
        t.diag('parallel start of all three in a child: %.2fs (postgres '
               '%.2fs, rabbitmq %.2fs, mosquitto %.2fs)'
               % (s['parallel'], s['postgres'], s['rabbitmq'],
                  s['mosquitto']))
    t.diag('selftest took %.1fs' % (time.monotonic() - t0_all))
    return t.done()


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--child':
        mode = sys.argv[2]
        if mode in ('crash', 'sigterm'):
            child_servers(mode)
        elif mode == 'tap':
            child_tap()
        elif mode == 'empty':
            child_empty_tap()
        elif mode == 'bail':
            child_bail()
        sys.exit(0)
    sys.exit(main())
