# SPDX-License-Identifier: Apache-2.0
"""netfault -- inject a network fault through faultproxy proxies and time
how long oncebridge takes to notice it and to be back at work.

    procs = {"worker": (proxy_a, probe_events), "relay": (proxy_b, probe_rows)}
    res = measure("blackhole", procs, blackhole_conns("both"))
    # res["worker"] == (seconds to detect or None, seconds to recover)

The fault hits the connections open at that moment; new connections pass
(a half-open connection on a healthy network), unless the fault changes the
proxy's default (latency() without conn). Right after the injection each
probe function is called: it sends new work (events to apply, rows to
publish) and returns a predicate that is true once that work is done.
Detected: a new connection replaced the faulted one (None when none did,
as under latency). Recovered: the probe's work is done, and for a fault
without heal() on a new connection (work done on a half-dead connection,
whose acks are lost, does not count)."""
import time

import obtest

def blackhole_conns(direction):
    """A fault: blackhole direction ("up", "down", "both") of the
    connections open now."""
    def inject(p, conns):
        for c in conns:
            p.blackhole(direction, conn=c)
    return inject


def reset_conns(p, conns):
    """A fault: RST the connections open now."""
    for c in conns:
        p.reset(conn=c)


def measure(name, procs, inject, heal=None, heal_after=0, timeout=40):
    """Inject a fault into every open connection of each proxy in procs
    ({who: (proxy, probe[, count])}), heal it after heal_after seconds when
    heal is given; return {who: (detect s or None, recover s)} for those
    that recovered within timeout, and print one line each. With count (a
    function: rows done so far), the line also says when the count first
    moved after the detection (resumed: the first work on the new
    connection, ahead of the backlog the probe waits behind)."""
    last = {who: max([c.num for c in v[0].current()] or [0]) for who, v in procs.items()}
    t0 = time.monotonic()
    for v in procs.values():
        inject(v[0], v[0].current())
    done = {who: v[1]() for who, v in procs.items()}
    res, detected, resumed, healed = {}, {}, {}, False
    while len(res) < len(procs) and time.monotonic() - t0 < timeout:
        now = time.monotonic() - t0
        if heal and not healed and now >= heal_after:
            for v in procs.values():
                heal(v[0])
            healed = True
        for who, v in procs.items():
            count = v[2] if len(v) > 2 else None
            if who not in detected and v[0].connections > last[who]:
                detected[who] = (now, count() if count else 0)
            elif count and who in detected and who not in resumed and count() > detected[who][1]:
                resumed[who] = now
            if who not in res and (heal or who in detected) and done[who]():
                res[who] = (detected[who][0] if who in detected else None, now)
        time.sleep(0.05)
    if heal and not healed:
        for v in procs.values():
            heal(v[0])
    for who in procs:
        det = detected[who][0] if who in detected else None
        rec = res[who][1] if who in res else None
        obtest.note("%-10s %-6s detected %s,%s recovered %s" % (
            name, who, "-" if det is None else "%.1f s" % det,
            " resumed %.1f s," % resumed[who] if who in resumed else "",
            "-" if rec is None else "%.1f s" % rec))
    return res
