#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# oncebridge's main job on a throwaway setup, as root on Debian 12: installs
# what it needs, builds, starts a private PostgreSQL and RabbitMQ in a temp
# dir, runs oncebridge with the sample configuration from conf/, publishes
# sample events (with duplicates and poison) and shows the resulting rows.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh tests/install-deps.sh
if [ ! -x build/oncebridge ]; then
	./autogen.sh > /dev/null 2>&1
	mkdir -p build
	(cd build && ../configure > configure.out 2>&1 && make -j2 > make.out 2>&1)
fi
ONCEBRIDGE_BIN="$top/build/oncebridge" ONCEBRIDGE_SRCDIR="$top" PYTHONPATH="$top/tests/harness" \
	exec /usr/bin/python3 tests/demo.py
