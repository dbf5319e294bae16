# SPDX-License-Identifier: Apache-2.0
"""Where the cores go during a benchmark: CPU seconds (user + system) of
the processes a harness started, grouped as oncebridge, PostgreSQL's
backend serving oncebridge, the rest of PostgreSQL, RabbitMQ, Mosquitto,
and this script's finished children (the ceiling programs). Processes are
found by the harness's temp directory in their command line, and their
descendants; read before and after a run, so a process that ends within
the run (a PostgreSQL backend) is missed: keep the measured ones alive."""
import os
import resource

TICK = os.sysconf("SC_CLK_TCK")


def _procs():
    procs = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        procs[int(p)] = (stat[stat.index("(") + 1:stat.rindex(")")], int(rest[1]),
                         (int(rest[11]) + int(rest[12])) / TICK, cmd)
    return procs


def sample(tag, backend_pids=()):
    """CPU seconds so far per group for the processes whose command line
    holds tag (the harness's temp directory), and their descendants."""
    procs = _procs()
    keep = {p for p, v in procs.items() if tag.encode() in v[3]}
    grew = True
    while grew:
        grew = False
        for p, v in procs.items():
            if p not in keep and v[1] in keep:
                keep.add(p)
                grew = True
    out = {}
    for p in keep:
        comm, _, cpu, _ = procs[p]
        if comm.startswith("oncebridge"):
            group = "oncebridge"
        elif comm.startswith("postgres"):
            group = "PostgreSQL backend" if p in backend_pids else "PostgreSQL other"
        elif comm in ("beam.smp", "erl_child_setup", "epmd", "inet_gethost"):
            group = "RabbitMQ"
        elif comm.startswith("mosquitto"):
            group = "Mosquitto"
        else:
            continue
        out[group] = out.get(group, 0.0) + cpu
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["ceiling program"] = r.ru_utime + r.ru_stime
    return out


def per_message(before, after, messages):
    """Microseconds of CPU per message per group between two samples."""
    return {k: 1e6 * (after.get(k, 0.0) - before.get(k, 0.0)) / messages
            for k in set(before) | set(after) if after.get(k, 0.0) - before.get(k, 0.0) > 0}


def fmt(us):
    order = ["RabbitMQ", "Mosquitto", "PostgreSQL backend", "PostgreSQL other", "oncebridge", "ceiling program"]
    parts = ["%s %.1f" % (k, us[k]) for k in order if k in us]
    return "%s; all %.1f" % (", ".join(parts), sum(us.values()))
