# SPDX-License-Identifier: Apache-2.0
"""Decoder cost per message: the same documents encoded as JSON, CBOR
(python3-cbor2) and MessagePack (python3-msgpack), each decoded by the
route's decoder (tests/bench/decode_bench), three interleaved runs; prints
the median nanoseconds per message and the ratio to JSON. A small telemetry
reading and a 100-metric batch."""
import json
import os
import statistics
import subprocess
import tempfile

import cbor2
import msgpack

BIN = os.path.join(os.path.dirname(os.environ.get("ONCEBRIDGE_BIN", "build/oncebridge")), "tests", "bench",
                   "decode_bench")
small = {"id": "0190c1e2-7b3a-7c4e-9a51-3f2d1e0b9c8a", "device": "meter-0042", "ts": 1732867200123,
         "kwh": 1234.567, "ok": True, "tags": ["north", "b2"]}
batch = {"id": "0190c1e2-7b3a-7c4e-9a51-3f2d1e0b9c8b", "edge": "plant-7", "ts": 1732867200123,
         "metrics": [{"name": "sensor/%d/temp" % i, "alias": i, "type": "Double", "value": 20.0 + i / 7,
                      "ts": 1732867200123 + i} for i in range(100)]}
enc = {"json": lambda d: json.dumps(d, separators=(",", ":")).encode(), "cbor": cbor2.dumps,
       "msgpack": lambda d: msgpack.packb(d, use_bin_type=True)}
with tempfile.TemporaryDirectory() as tmp:
    print("%-8s %-8s %8s %12s %9s" % ("document", "format", "bytes", "ns/message", "vs JSON"))
    for name, doc, iters in (("reading", small, 200000), ("batch", batch, 5000)):
        times = {f: [] for f in enc}
        sizes = {}
        for f in enc:
            with open(os.path.join(tmp, name + "." + f), "wb") as out:
                out.write(enc[f](doc))
        for _ in range(3):
            for f in enc:
                out = subprocess.run([BIN, os.path.join(tmp, name + "." + f), f, str(iters)], capture_output=True,
                                     text=True, check=True).stdout.split()
                sizes[f] = int(out[1])
                times[f].append(float(out[2]))
        base = statistics.median(times["json"])
        for f in enc:
            m = statistics.median(times[f])
            print("%-8s %-8s %8d %12.0f %8.2fx" % (name, f, sizes[f], m, m / base))
