# SPDX-License-Identifier: Apache-2.0
"""The core against a real PostgreSQL without any broker: C programs
(tests/unit/pg_core_*.c) feed messages to core_apply through the null
adapter (adapters/null.h) and check per message what became of it -
claims, duplicates within and across batches, every failure class,
savepoint isolation, dead-letter rows and their replay. This script
starts the server, creates the business tables and the fault trigger the
programs use, writes a configuration with one null broker and relays each
program's TAP points."""
import os
import subprocess

import obtest
import oncetest as ot

SCHEMA = [
    # every application of an event adds a row: twice shows as two rows
    "CREATE TABLE applied (id bigserial PRIMARY KEY, route text NOT NULL, event_id text NOT NULL, n integer)",
    # a business table with its own unique key, for a real 23505
    "CREATE TABLE uniq (k text PRIMARY KEY, event_id text NOT NULL)",
    # a row that a test locks from another session
    "CREATE TABLE lockme (id integer PRIMARY KEY)",
    "INSERT INTO lockme VALUES (1)",
    # faults injected into the business SQL of one (route, event):
    # a SQLSTATE to raise, or 'kill' to terminate the session itself
    "CREATE TABLE faults (route text NOT NULL, event_id text NOT NULL, sqlstate text NOT NULL,"
    " PRIMARY KEY (route, event_id))",
    """CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE s text;
    BEGIN
        SELECT f.sqlstate INTO s FROM faults f WHERE f.route = NEW.route AND f.event_id = NEW.event_id;
        IF s = 'kill' THEN
            PERFORM pg_terminate_backend(pg_backend_pid());
            PERFORM pg_sleep(5);
        ELSIF s IS NOT NULL THEN
            RAISE EXCEPTION 'injected fault % for event %', s, NEW.event_id USING ERRCODE = s;
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER applied_fault BEFORE INSERT ON applied FOR EACH ROW EXECUTE FUNCTION inject_fault()",
]

INSERT_APPLIED = "INSERT INTO applied (route, event_id, n) VALUES ($1, $2, $3)"
LOCKED = "INSERT INTO applied (route, event_id, n) SELECT $1, $2, id FROM lockme WHERE id = 1 FOR UPDATE"


def route(name, source, sql=INSERT_APPLIED, params=("route", "event_id", "json:n")):
    return {"name": name, "source": source, "event_id": "json:id", "sql": sql, "params": list(params)}


ROUTES = [
    route("r_main", "q.main"),
    route("r_a", "q.both"),
    route("r_b", "q.both"),
    route("r_uniq", "q.uniq", "INSERT INTO uniq (k, event_id) VALUES ($1, $2)", ("json:k", "event_id")),
    route("r_nowait", "q.nowait", LOCKED + " NOWAIT", ("route", "event_id")),
    route("r_wait", "q.wait", LOCKED, ("route", "event_id")),
]

t = ot.TAP()
b = obtest.Bridge("core-null", rabbit=False)
b.start_servers()
for stmt in SCHEMA:
    b.pg.execute(stmt)
broker = {"name": "mem", "type": "null", "url": "null:", "batch_size": 50}
b.write_config([("10-mem.conf", broker, ROUTES)],
               database={"conninfo": b.pg.conninfo, "statement_timeout_ms": 1000},
               limits={"max_payload": 1024})

PROGRAMS = ("pg_core_apply", "pg_core_failures", "pg_core_replay")
bindir = os.path.join(os.path.dirname(obtest.BIN), "tests", "unit")
for name in PROGRAMS:
    out = subprocess.run([os.path.join(bindir, name), b.config], capture_output=True, text=True, timeout=120)
    # relay the program's own TAP points as ours
    for line in out.stdout.splitlines():
        if line.startswith("ok ") or line.startswith("not ok "):
            desc = line.split(" - ", 1)[1] if " - " in line else line
            t.ok(line.startswith("ok "), "%s: %s" % (name, desc))
        elif line.startswith("#"):
            t.diag(line[1:].strip())
    t.is_(out.returncode, 0, "%s exits with status 0" % name)
    if out.returncode != 0:
        t.diag(out.stderr[-3000:])
raise SystemExit(t.done())
