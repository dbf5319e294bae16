# SPDX-License-Identifier: Apache-2.0
"""The shipped Grafana dashboard and alerting rules against a real
Prometheus (Debian's binary, on loopback, a temp config and storage,
scrape interval 1 s) scraping a live oncebridge during a stream: AMQP and
MQTT routes with duplicates and poison, and the outbox relaying to
RabbitMQ. Every panel query of the dashboard (Grafana's variables
substituted: $instance, $broker, $route as ".*", $__rate_interval as 5s)
returns data over the stream, and every metric the dashboard and the rules
name exists in a scrape of /metrics, which promtool check metrics
passes (names, types, units, HELP). The rules file loads in Prometheus
(rule_files) and its rule group evaluates without errors."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse

import obtest
import oncetest as ot
from ot_procs import _Proc, _register

t = ot.TAP()
src = os.environ.get("ONCEBRIDGE_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(src, "packaging", "grafana", "oncebridge-dashboard.json")
RULES = os.path.join(src, "packaging", "prometheus", "oncebridge-alerts.yml")


class Prometheus(_Proc):
    """Debian's prometheus on a free loopback port, scraping target every
    second, with the rules loaded; torn down with the other servers."""

    def __init__(self, dirpath, target):
        self.dir = os.path.join(dirpath, "prometheus")
        os.makedirs(self.dir, exist_ok=True)
        self.port = ot.free_port()
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: oncebridge\n    static_configs:\n"
                    "      - targets: ['%s']\n" % (RULES, target))
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")

    def start(self):
        argv = [shutil.which("prometheus"), "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
                "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"]
        self._popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._set_pid(self._popen.pid)
        _register(self)
        ot.wait_until(self.ready, 30, desc="prometheus ready")
        if not self.running():
            raise RuntimeError("prometheus exited: %s" % open(self.log.name).read()[-2000:])

    def ready(self):
        if not self.running():
            return True
        try:
            return obtest.http_get("http://127.0.0.1:%d/-/ready" % self.port)[0] == 200
        except OSError:
            return False

    def api(self, path, **params):
        status, body = obtest.http_get("http://127.0.0.1:%d/api/v1/%s?%s"
                                       % (self.port, path, urllib.parse.urlencode(params)), timeout=10)
        return json.loads(body) if status == 200 else {"status": "error", "error": body}


t0 = time.monotonic()
b = obtest.MQTTBridge("prom-dashboard")
b.rabbit = ot.RabbitMQ(b.dir)
b.start_servers()
obtest.note("servers up after %.1f s" % (time.monotonic() - t0))
obtest.applied_table(b.pg)
port = ot.free_port()
amqp_routes = [obtest.applied_route("pd-amqp", "pdq", declare_queue=True, bind_exchange="amq.topic",
                                    bind_keys=["pd.#"])]
mqtt_routes = [obtest.mqtt_route("pd-mqtt", "pd/+/reading")]
b.write_config([("10-rabbit.conf", b.amqp_broker("rabbit", batch_size=20), amqp_routes),
                ("20-mosq.conf", b.mqtt_broker("mosq"), mqtt_routes)],
               metrics={"listen": "127.0.0.1:%d" % port})
with open(b.config.replace("oncebridge.conf", "conf.d/10-rabbit.conf"), "a") as f:
    f.write('outbox = { poll_interval_ms = 200; };\n')
b.rabbit.declare_queue("pdq", keys=["pd.#"])
b.rabbit.declare_queue("pd-out", keys=["pdout.#"])
prom = Prometheus(b.dir, "127.0.0.1:%d" % port)
d = b.start()
prom.start()
b.wait_subscribed("mosq")
obtest.note("oncebridge and prometheus up after %.1f s" % (time.monotonic() - t0))


def scraped(q):
    r = prom.api("query", query=q)
    return r.get("status") == "success" and r["data"]["result"]


# the stream starts once Prometheus scrapes oncebridge, so that its rates
# see the commits happen
t.eventually(lambda: scraped('count_over_time(up{job="oncebridge"}[1m]) >= 3 and up{job="oncebridge"} == 1'), 30,
             "Prometheus scrapes oncebridge")
start = time.time()

# the stream, in four waves 1.5 s apart so that rates have data
N = 600
ids, msgs = obtest.event_stream(N, dup_ratio=0.2, routing_key="pd.ev", seed=16)
poison = [{"exchange": "amq.topic", "routing_key": "pd.bad", "body": '{"id": "bad-%d", ' % i} for i in range(5)]
poison += [{"exchange": "amq.topic", "routing_key": "pd.bad", "body": json.dumps({"id": "badn-%d" % i, "n": "x"})}
           for i in range(5)]
mids, mitems = obtest.mqtt_stream(300, topic="pd/1/reading", dup_ratio=0.2, seed=17)
mitems += [("pd/1/reading", '{"no id": 1}'), ("pd/1/reading", "not json")]
W = 4
for w in range(W):
    b.rabbit.publish_many(msgs[w::W] + poison[w::W])
    b.mqtt.publish_many(mitems[w::W], protocol=ot.MQTTv5)
    b.pg.execute("SELECT oncebridge.emit('rabbit', 'pdout.e' || g, jsonb_build_object('n', g))"
                 " FROM generate_series(%d, %d) g" % (w * 15 + 1, w * 15 + 15))
    time.sleep(1.5)
obtest.wait_applied(b.pg, "pd-amqp", N, timeout=60)
obtest.wait_applied(b.pg, "pd-mqtt", 300, timeout=60)
obtest.note("stream applied after %.1f s" % (time.monotonic() - t0))
obtest.exactly_once(t, b.pg, "pd-amqp", ids)
obtest.exactly_once(t, b.pg, "pd-mqtt", mids)

# the maintenance process counts dead letters every 10 s: wait for a count
# that includes the poison, and for the outbox to be relayed
t.eventually(lambda: scraped('sum(oncebridge_dead_letters_waiting) >= 12'), 30,
             "Prometheus sees the dead letters waiting (12 poison)")
t.eventually(lambda: scraped('sum(oncebridge_outbox_confirmed_total) >= 60'), 30,
             "Prometheus sees the 60 outbox rows confirmed")
time.sleep(2)  # a few more scrapes after the stream
end = time.time()
obtest.note("queries start after %.1f s" % (time.monotonic() - t0))

with open(DASHBOARD) as f:
    dash = json.load(f)
subst = [("$__rate_interval", "5s"), ("$__range", "1m"), ("$__interval", "1s"),
         ("$instance", ".*"), ("$broker", ".*"), ("$route", ".*")]
queries = []
for p in dash["panels"]:
    for tg in p.get("targets", []):
        q = tg["expr"]
        for k, v in subst:
            q = q.replace(k, v)
        queries.append((p["title"], q))
t.ok(len(queries) >= 20, "the dashboard has %d panel queries" % len(queries))
for title, q in queries:
    r = prom.api("query_range", query=q, start="%.3f" % start, end="%.3f" % end, step="1")
    ok = r.get("status") == "success" and any(
        any(v[1] not in ("NaN", "+Inf", "-Inf") for v in s["values"]) for s in r["data"]["result"])
    t.ok(ok, "panel \"%s\" has data: %s" % (title, q), diag=json.dumps(r)[:500])
for v in dash["templating"]["list"]:
    if v["type"] == "query":
        m = re.match(r"label_values\((.*), (\w+)\)$", v["query"]["query"])
        sel = m.group(1).replace("$instance", ".*").replace("$broker", ".*")
        r = prom.api("series", **{"match[]": sel, "start": "%.3f" % start, "end": "%.3f" % end})
        t.ok(r.get("status") == "success" and any(m.group(2) in s for s in r["data"]),
             "variable $%s has values" % v["name"])

# every metric the dashboard and the rules name exists in a scrape
text = obtest.http_get("http://127.0.0.1:%d/metrics" % port)[1]
names = set(k[0] for k in obtest.parse_prometheus(text))
with open(RULES) as f:
    rules_text = f.read()
named = set(re.findall(r"\boncebridge_[a-z_]+", json.dumps(dash) + rules_text))
missing = sorted(n for n in named if n not in names)
t.ok(not missing, "each of the %d metrics the dashboard and rules name is in a scrape" % len(named),
     diag="missing: %s" % missing)
# Prometheus's own lint of names, types, units and HELP texts
lint = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                      timeout=60)
t.ok(lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(),
     "promtool check metrics finds nothing to say of a scrape", diag=lint.stdout + lint.stderr)
r = prom.api("rules")
groups = r.get("data", {}).get("groups", []) if r.get("status") == "success" else []
t.ok(groups and all(rule.get("health") == "ok" for g in groups for rule in g["rules"]),
     "Prometheus loaded the %d alerting rules and evaluates them without error"
     % sum(len(g["rules"]) for g in groups), diag=json.dumps(r)[:800])
t.is_(d.terminate(timeout=20), 0, "clean stop")
obtest.note("run time %.1f s" % (time.monotonic() - t0))
raise SystemExit(t.done())
