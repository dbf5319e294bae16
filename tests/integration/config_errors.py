# SPDX-License-Identifier: Apache-2.0
"""oncebridge -t on a table of bad configurations: each error names the
file, the line and the key. No servers needed: -t does no network I/O."""
import os
import subprocess

import obtest
import oncetest as ot

t = ot.TAP()
base = ot.make_tmpdir("config-errors")

MAIN_OK = '''database = { conninfo = "host=127.0.0.1 dbname=x"; };
log_level = "info";
'''

BROKER_OK = '''broker = {
  name = "r1";
  type = "amqp";
  url = "amqp://127.0.0.1:5672/";
};
routes = (
  {
    name = "route-a";
    queue = "q";
    event_id = "json:id";
    sql = "INSERT INTO t (id, v) VALUES ($1, $2)";
    params = [ "event_id", "json:v" ];
  }
);
'''


def run_case(name, main=MAIN_OK, brokers=None, secrets=None):
    d = os.path.join(base, name)
    os.makedirs(os.path.join(d, "conf.d"))
    with open(os.path.join(d, "oncebridge.conf"), "w") as f:
        f.write(main)
    for fn, text in (brokers if brokers is not None else {"10-r1.conf": BROKER_OK}).items():
        with open(os.path.join(d, "conf.d", fn), "w") as f:
            f.write(text)
    for fn, (text, mode) in (secrets or {}).items():
        p = os.path.join(d, fn)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
    out = subprocess.run([obtest.BIN, "-t", "-c", os.path.join(d, "oncebridge.conf")],
                         capture_output=True, text=True, timeout=30)
    return d, out


def expect_error(name, want, **kw):
    """want: (file relative to the case dir, line, text) that must appear as
    FILE:LINE: error: TEXT in the output."""
    d, out = run_case(name, **kw)
    fn, line, text = want
    path = os.path.join(d, fn)
    expected = "%s:%d: error: %s" % (path, line, text) if line else "%s: error: %s" % (path, text)
    t.ok(out.returncode == 1 and expected in out.stderr, "%s: %s" % (name, text),
         diag="exit %d, want line: %s\nstderr:\n%s" % (out.returncode, expected, out.stderr))


d, out = run_case("valid")
t.ok(out.returncode == 0 and "1 broker, 1 route" in out.stdout, "a valid configuration passes -t",
     diag=out.stdout + out.stderr)

expect_error("unknown-main-key", ("oncebridge.conf", 3, 'unknown key "log_levle" in the main file'),
             main=MAIN_OK + 'log_levle = "debug";\n')
expect_error("main-syntax", ("oncebridge.conf", 2, "syntax error: syntax error"),
             main='database = { conninfo = "x"; };\nlog_level = ;\n')
expect_error("missing-database", ("oncebridge.conf", 0, 'missing required key "database" in the main file'),
             main='log_level = "info";\n')
expect_error("missing-conninfo", ("oncebridge.conf", 1, 'missing required key "conninfo" in group "database"'),
             main='database = { password_file = "x"; };\n')
expect_error("wrong-type-main", ("oncebridge.conf", 2, 'key "shutdown_timeout_ms" in the main file must be an integer'),
             main=MAIN_OK.replace('log_level = "info";\n', 'shutdown_timeout_ms = "soon";\n'))
expect_error("bad-log-level", ("oncebridge.conf", 2, 'invalid value "loud" of key "log_level"'),
             main=MAIN_OK.replace('"info"', '"loud"'))
expect_error("out-of-range", ("oncebridge.conf", 3, 'value 0 of key "max_event_id_length" in group "limits" is out of range'),
             main=MAIN_OK + 'limits = { max_event_id_length = 0; };\n')
# libconfig 1.5 reads a decimal over 32 bits without an L suffix as 0
expect_error("int-over-32-bits", ("conf.d/10-r1.conf", 4,
             'value of key "max_inflight_bytes" in group "broker" does not fit in 32 bits: write it with an L suffix'),
             brokers={"10-r1.conf": BROKER_OK.replace('  url = ', '  max_inflight_bytes = 4294967296;\n  url = ')})
expect_error("unknown-broker-key", ("conf.d/10-r1.conf", 4, 'unknown key "prefetchh" in group "broker"'),
             brokers={"10-r1.conf": BROKER_OK.replace('  url = ', '  prefetchh = 10;\n  url = ')})
expect_error("broker-wrong-type", ("conf.d/10-r1.conf", 4, 'key "prefetch" in group "broker" must be an integer'),
             brokers={"10-r1.conf": BROKER_OK.replace('  url = ', '  prefetch = "many";\n  url = ')})
expect_error("broker-missing-url", ("conf.d/10-r1.conf", 1, 'missing required key "url" in group "broker"'),
             brokers={"10-r1.conf": BROKER_OK.replace('  url = "amqp://127.0.0.1:5672/";\n', '')})
expect_error("unknown-type", ("conf.d/10-r1.conf", 3, 'unknown broker type "kafka"'),
             brokers={"10-r1.conf": BROKER_OK.replace('"amqp"', '"kafka"')})
expect_error("password-in-url", ("conf.d/10-r1.conf", 4,
             'invalid value of key "url" in group "broker": the URL must not contain a password; put it in password_file'),
             brokers={"10-r1.conf": BROKER_OK.replace('amqp://127', 'amqp://u:secret@127')})
expect_error("route-missing-sql", ("conf.d/10-r1.conf", 7, 'missing required key "sql" in routes[1]'),
             brokers={"10-r1.conf": BROKER_OK.replace('    sql = "INSERT INTO t (id, v) VALUES ($1, $2)";\n', '')})
expect_error("route-unknown-key", ("conf.d/10-r1.conf", 12, 'unknown key "topic" in routes[1]'),
             brokers={"10-r1.conf": BROKER_OK.replace('    params =', '    topic = "a/b";\n    params =')})
expect_error("route-bad-source", ("conf.d/10-r1.conf", 12,
             'invalid parameter $2 in key "params" of route "route-a": unknown source "jsn"'),
             brokers={"10-r1.conf": BROKER_OK.replace('"json:v"', '"jsn:v"')})
expect_error("route-bad-event-id", ("conf.d/10-r1.conf", 10,
             'invalid value of key "event_id" in route "route-a": "payload" cannot be used as an event ID source'),
             brokers={"10-r1.conf": BROKER_OK.replace('"json:id"', '"payload"')})
expect_error("param-count", ("conf.d/10-r1.conf", 11,
             'key "sql" of route "route-a" uses parameters up to $2 but key "params" lists 1'),
             brokers={"10-r1.conf": BROKER_OK.replace('[ "event_id", "json:v" ]', '[ "event_id" ]')})
expect_error("amqp-route-needs-queue", ("conf.d/10-r1.conf", 7, 'missing required key "queue" in route "route-a"'),
             brokers={"10-r1.conf": BROKER_OK.replace('    queue = "q";\n', '')})
expect_error("bad-match", ("conf.d/10-r1.conf", 10, 'invalid value of key "match" in route "route-a"'),
             brokers={"10-r1.conf": BROKER_OK.replace('    queue = "q";\n', '    queue = "q";\n    match = "a.b#";\n')})
expect_error("broker-syntax", ("conf.d/10-r1.conf", 2, "syntax error"),
             brokers={"10-r1.conf": BROKER_OK.replace('name = "r1";', 'name = r1;')})
expect_error("no-routes", ("conf.d/10-r1.conf", 0, 'missing key "routes"'),
             brokers={"10-r1.conf": BROKER_OK.split("routes =")[0]})
expect_error("duplicate-route", ("conf.d/20-r2.conf", 7, 'route name "route-a" is already used in'),
             brokers={"10-r1.conf": BROKER_OK, "20-r2.conf": BROKER_OK.replace('"r1"', '"r2"')})
expect_error("duplicate-broker", ("conf.d/20-r2.conf", 1, 'broker name "r1" is already used in'),
             brokers={"10-r1.conf": BROKER_OK, "20-r2.conf": BROKER_OK.replace('route-a', 'route-b')})
expect_error("no-broker-files", ("oncebridge.conf", 0, 'no broker files (*.conf) in'), brokers={})
expect_error("secret-world-readable", ("conf.d/10-r1.conf", 4,
             'key "password_file": secret file "%s" has group or world access; fix it with "chmod 600'
             % os.path.join(base, "secret-world-readable", "conf.d", "rabbit.pw")),
             brokers={"10-r1.conf": BROKER_OK.replace('  url =', '  password_file = "rabbit.pw";\n  url =')},
             secrets={"conf.d/rabbit.pw": ("guest\n", 0o644)})
expect_error("secret-missing", ("oncebridge.conf", 1, 'key "password_file": could not open secret file'),
             main='database = { conninfo = "dbname=x"; password_file = "nope.pw"; };\n')
expect_error("password-in-conninfo", ("oncebridge.conf", 1,
             'key "conninfo" in group "database" must not hold a password; put it in password_file or password_env'),
             main='database = { conninfo = "host=db dbname=x password=hunter2-in-conninfo"; };\n')
d, out = run_case("password-in-conninfo-not-echoed",
                  main='database = { conninfo = "host=db dbname=x password=hunter2-in-conninfo"; };\n')
t.ok("hunter2" not in out.stdout + out.stderr, "the refused password is not echoed", diag=out.stderr)
expect_error("secret-file-and-env", ("conf.d/10-r1.conf", 5,
             'keys "password_file" and "password_env" of "broker" cannot be used together'),
             brokers={"10-r1.conf": BROKER_OK.replace('  url =', '  password_file = "rabbit.pw";\n'
                                                      '  password_env = "RABBIT_PW";\n  url =')},
             secrets={"conf.d/rabbit.pw": ("guest\n", 0o600)})
expect_error("secret-env-unset", ("oncebridge.conf", 2,
             'key "password_env": environment variable "ONCEBRIDGE_TEST_UNSET_PW" is not set or empty'),
             main='database = { conninfo = "dbname=x";\n  password_env = "ONCEBRIDGE_TEST_UNSET_PW"; };\n')

# TLS to brokers: the "tls" group
pki = ot.make_certs(base)
AMQPS = BROKER_OK.replace('"amqp://127.0.0.1:5672/"', '"amqps://127.0.0.1:5671/"')


def with_tls(broker, *lines):
    """broker text with a tls group (one key per line) before the url: the
    group is on line 4, its keys on lines 5, 6, ..."""
    return broker.replace('  url =', '  tls = {\n%s  };\n  url =' % "".join("    %s\n" % x for x in lines))


expect_error("tls-without-tls-url", ("conf.d/10-r1.conf", 4,
             'group "tls" in group "broker" needs a TLS URL (amqps:// or mqtts:// or wss://) in key "url"'),
             brokers={"10-r1.conf": with_tls(BROKER_OK, 'ca_file = "%s";' % pki.ca)})
expect_error("tls-mqtt-without-tls-url", ("conf.d/10-m1.conf", 5,
             'group "tls" in group "broker" needs a TLS URL (amqps:// or mqtts:// or wss://) in key "url"'),
             brokers={"10-m1.conf": with_tls(BROKER_OK.replace('"amqp"', '"mqtt"').replace(
                 '"amqp://127.0.0.1:5672/"', '"mqtt://127.0.0.1"').replace('    queue = "q";', '    topic = "a/#";').replace(
                 '  url =', '  client_id = "ob-1";\n  url ='), 'verify_peer = true;')})
expect_error("tls-ca-missing", ("conf.d/10-r1.conf", 5,
             'invalid value of key "ca_file" in group "tls": could not open file "%s": No such file or directory'
             % os.path.join(base, "tls-ca-missing", "conf.d", "nope.pem")),
             brokers={"10-r1.conf": with_tls(AMQPS, 'ca_file = "nope.pem";')})
expect_error("tls-ca-not-pem", ("conf.d/10-r1.conf", 5,
             'invalid value of key "ca_file" in group "tls": file "%s" holds no PEM certificate'
             % os.path.join(base, "tls-ca-not-pem", "conf.d", "ca.txt")),
             brokers={"10-r1.conf": with_tls(AMQPS, 'ca_file = "ca.txt";')}, secrets={"conf.d/ca.txt": ("hello\n", 0o644)})
expect_error("tls-cert-without-key", ("conf.d/10-r1.conf", 6,
             'key "cert_file" in group "tls" needs key "key_file" (the certificate\'s private key)'),
             brokers={"10-r1.conf": with_tls(AMQPS, 'ca_file = "%s";' % pki.ca, 'cert_file = "%s";' % pki.client[0])})
expect_error("tls-key-without-cert", ("conf.d/10-r1.conf", 5,
             'key "key_file" in group "tls" needs key "cert_file" (the client certificate)'),
             brokers={"10-r1.conf": with_tls(AMQPS, 'key_file = "%s";' % pki.client[1])})
expect_error("tls-key-readable", ("conf.d/10-r1.conf", 6,
             'key "key_file" in group "tls": secret file "%s" has group or world access; fix it with "chmod 600'
             % os.path.join(base, "tls-key-readable", "conf.d", "client.key")),
             brokers={"10-r1.conf": with_tls(AMQPS, 'cert_file = "%s";' % pki.client[0], 'key_file = "client.key";')},
             secrets={"conf.d/client.key": (open(pki.client[1]).read(), 0o640)})
expect_error("tls-unknown-key", ("conf.d/10-r1.conf", 5, 'unknown key "verify" in group "tls"'),
             brokers={"10-r1.conf": with_tls(AMQPS, 'verify = false;')})
expect_error("tls-wrong-type", ("conf.d/10-r1.conf", 5, 'key "verify_peer" in group "tls" must be a boolean (true or false)'),
             brokers={"10-r1.conf": with_tls(AMQPS, 'verify_peer = "no";')})
expect_error("bad-conninfo", ("oncebridge.conf", 1,
             'invalid value of key "conninfo" in group "database": missing "=" after "dbname" in connection info string'),
             main='database = { conninfo = "host=127.0.0.1 dbname"; };\n')

d, out = run_case("tls-ok", brokers={"10-r1.conf": with_tls(
    AMQPS, 'ca_file = "%s";' % pki.ca, 'cert_file = "%s";' % pki.client[0], 'key_file = "%s";' % pki.client[1],
    'verify_peer = false;')})
path = os.path.join(d, "conf.d", "10-r1.conf")
t.ok(out.returncode == 0 and '%s:8: warning: TLS peer verification is off for broker "r1" (verify_peer = false)' % path
     in out.stderr, "a complete tls group passes; verify_peer = false warns with file and line", diag=out.stderr)
# the Sparkplug example without its "workers = 1": births may be overtaken
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf", "sparkplug",
                       "sparkplug.conf")) as f:
    sparkplug = f.read()
several = sparkplug.replace("  workers = 1;\n", "")
line = [n for n, text in enumerate(several.splitlines(), 1) if text.strip().startswith("format =")][0]
d, out = run_case("sparkplug-workers", brokers={"10-sp.conf": several})
t.ok(out.returncode == 0 and '10-sp.conf:%d: warning: route "sparkplug-metrics" reads Sparkplug B with 4 workers' % line
     in out.stderr,
     "Sparkplug B on several MQTT workers warns with file and line", diag=out.stderr)
d, out = run_case("sparkplug-one-worker", brokers={"10-sp.conf": sparkplug})
t.ok(out.returncode == 0 and "Sparkplug B" not in out.stderr, "the Sparkplug example (workers = 1) does not warn",
     diag=out.stderr)
d, out = run_case("sslmode-require", main=MAIN_OK.replace('dbname=x"', 'dbname=x sslmode=require"'))
t.ok(out.returncode == 0 and ':1: warning: sslmode "require" in key "conninfo" does not check' in out.stderr,
     "sslmode=require in the conninfo warns", diag=out.stderr)
d, out = run_case("response-timeout", main=MAIN_OK.replace('dbname=x";', 'dbname=x";\n  statement_timeout_ms = 8000;'
                                                             '\n  response_timeout_ms = 5000;'))
t.ok(out.returncode == 0 and ':3: warning: key "response_timeout_ms" in group "database" is not above '
     '"statement_timeout_ms"' in out.stderr, "a response_timeout_ms not above statement_timeout_ms warns",
     diag=out.stderr)

# several mistakes at once are all reported
d, out = run_case("many", main=MAIN_OK + 'bogus = 1;\n',
                  brokers={"10-r1.conf": BROKER_OK.replace('"json:v"', '"jsn:v"')})
t.ok(out.returncode == 1 and "error" in out.stderr and "bogus" in out.stderr,
     "errors of the main file stop before broker files and are reported", diag=out.stderr)
d, out = run_case("many-broker", brokers={"10-r1.conf": BROKER_OK.replace('"json:v"', '"jsn:v"').replace('"json:id"', '"payload"')})
t.ok(out.returncode == 1 and out.stderr.count(": error: ") == 2, "two route errors in one file are both reported",
     diag=out.stderr)

# a good secret file is accepted
d, out = run_case("secret-ok", brokers={"10-r1.conf": BROKER_OK.replace('  url =', '  password_file = "rabbit.pw";\n  url =')},
                  secrets={"conf.d/rabbit.pw": ("guest\n", 0o600)})
t.ok(out.returncode == 0, "a secret file with mode 600 is accepted", diag=out.stderr)
t.ok("guest" not in out.stdout + out.stderr, "the secret does not appear in the output")

# a relative path in a broker file is relative to that file's directory
# (conf.d/), not the main file's: a file left where earlier builds looked
# is named in a warning before the error
d, out = run_case("secret-old-location",
                  brokers={"10-r1.conf": BROKER_OK.replace('  url =', '  password_file = "rabbit.pw";\n  url =')},
                  secrets={"rabbit.pw": ("guest\n", 0o600)})
conf = os.path.join(d, "conf.d", "10-r1.conf")
t.ok(out.returncode == 1 and
     '%s:4: warning: key "password_file": "%s" does not exist; a relative path in a broker file is relative to '
     'that file\'s directory, and "%s" (relative to the main file) is not read'
     % (conf, os.path.join(d, "conf.d", "rabbit.pw"), os.path.join(d, "rabbit.pw")) in out.stderr and
     '%s:4: error: key "password_file": could not open secret file' % conf in out.stderr,
     "a relative password_file in conf.d/ is not looked up next to the main file, and a warning says so",
     diag=out.stderr)
d, out = run_case("secret-parent", brokers={"10-r1.conf": BROKER_OK.replace(
                  '  url =', '  password_file = "../rabbit.pw";\n  tls = { ca_file = "%s"; };\n  url =' % pki.ca)
                  .replace('"amqp://', '"amqps://')},
                  secrets={"rabbit.pw": ("guest\n", 0o600)})
t.ok(out.returncode == 0 and "warning" not in out.stderr, "\"../rabbit.pw\" in conf.d/ names the file next to the main file",
     diag=out.stderr)

# prefetch below batch size is a warning, not an error
d, out = run_case("warn-prefetch", brokers={"10-r1.conf": BROKER_OK.replace('  url =', '  prefetch = 10;\n  batch_size = 100;\n  url =')})
t.ok(out.returncode == 0 and ": warning: prefetch (10) is smaller than batch_size (100)" in out.stderr,
     "prefetch below batch_size warns", diag=out.stderr)

# a RabbitMQ cluster: further nodes in "hosts", quorum queues
def with_hosts(*hosts):
    return BROKER_OK.replace('  url =', '  hosts = [ %s ];\n  url =' % ", ".join('"%s"' % h for h in hosts))


def with_queue(*lines):
    """route keys after queue = "q" (line 9): on lines 10, 11, ..."""
    return BROKER_OK.replace('    queue = "q";\n', '    queue = "q";\n' + "".join("    %s\n" % x for x in lines))


d, out = run_case("hosts-ok", brokers={"10-r1.conf": with_hosts("rabbit2", "rabbit3:5673", "[::1]:5674")})
t.ok(out.returncode == 0 and "warning" not in out.stderr, "a cluster's nodes in hosts pass -t", diag=out.stderr)
expect_error("hosts-url", ("conf.d/10-r1.conf", 4, 'invalid value "amqp://rabbit2/" in key "hosts" in group "broker": '
             'give host or host:port; the scheme, user and vhost come from key "url"'),
             brokers={"10-r1.conf": with_hosts("rabbit2", "amqp://rabbit2/")})
expect_error("hosts-port", ("conf.d/10-r1.conf", 4, 'invalid value "rabbit2:70000" in key "hosts" in group "broker": '
             'the port must be a number from 1 to 65535'), brokers={"10-r1.conf": with_hosts("rabbit2:70000")})
expect_error("hosts-ipv6", ("conf.d/10-r1.conf", 4, 'invalid value "::1" in key "hosts" in group "broker": '
             'put an IPv6 address in brackets: [address]:port'), brokers={"10-r1.conf": with_hosts("::1")})
d, out = run_case("quorum-ok", brokers={"10-r1.conf": with_queue(
    'declare_queue = true;', 'queue_type = "quorum";', 'delivery_limit = 50;')})
t.ok(out.returncode == 0 and "warning" not in out.stderr, "a quorum queue with a delivery limit passes -t",
     diag=out.stderr)
expect_error("queue-type-unknown", ("conf.d/10-r1.conf", 11, 'invalid value of key "queue_type" in route "route-a": '
             '"stream" (expected "classic" or "quorum")'),
             brokers={"10-r1.conf": with_queue('declare_queue = true;', 'queue_type = "stream";')})
expect_error("queue-type-undeclared", ("conf.d/10-r1.conf", 10,
             'route "route-a": "queue_type" needs "declare_queue = true"'),
             brokers={"10-r1.conf": with_queue('queue_type = "quorum";')})
expect_error("delivery-limit-classic", ("conf.d/10-r1.conf", 11,
             'route "route-a": "delivery_limit" needs "queue_type = "quorum""'),
             brokers={"10-r1.conf": with_queue('declare_queue = true;', 'delivery_limit = 50;')})
d, out = run_case("delivery-limit-low", main=MAIN_OK + 'retry = { max_attempts = 5; };\n',
                  brokers={"10-r1.conf": with_queue('declare_queue = true;', 'queue_type = "quorum";',
                                                    'delivery_limit = 5;')})
t.ok(out.returncode == 0 and '%s:7: warning: route "route-a": delivery_limit (5) is at or below retry.max_attempts (5) of'
     % os.path.join(d, "conf.d", "10-r1.conf") in out.stderr,
     "a delivery limit within retry.max_attempts warns, naming the route", diag=out.stderr)

# nonexistent main file
out = subprocess.run([obtest.BIN, "-t", "-c", os.path.join(base, "nope.conf")], capture_output=True, text=True)
t.ok(out.returncode == 1 and "could not read configuration file" in out.stderr, "a missing main file is an error",
     diag=out.stderr)

raise SystemExit(t.done())
