# SPDX-License-Identifier: Apache-2.0
"""Three oncebridge instances (separate daemons, as on three hosts) as
competing consumers of one AMQP queue and one MQTT $share group, against
one PostgreSQL: a stream of a few thousand events with 10 % duplicates and
poison messages, and kill -9 of a whole instance rotating among the three
(six kills, each instance started again at once). The ledger is exact:
every event applied exactly once, each poison message dead-lettered once.
The long version, with a PostgreSQL failover and a broker node loss, is
"make soak" (tests/soak/instances_soak.py)."""
import time

import instances
import obtest
import oncetest as ot

T0 = time.monotonic()
t = ot.TAP()
b = obtest.MQTTBridge("several-instances")
b.rabbit = ot.RabbitMQ(b.dir)
ot.start_all(b.pg, b.rabbit, b.mqtt)
b.install_schema()
obtest.applied_table(b.pg)
obtest.note("servers up in %.1f s" % (time.monotonic() - T0))
instances.run(t, b, events=1500, kills=6, poison=5, per_event_ms=1.0, batch_size=50, timeout=240)
obtest.note("run time %.1f s" % (time.monotonic() - T0))
raise SystemExit(t.done())
