#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs oncebridge's whole test suite on a Debian 12 machine: installs the
# packages it needs (as root), builds in build/, runs the unit tests and the
# integration tests against private PostgreSQL, RabbitMQ and Mosquitto
# servers, and ends with the line "N passed, N failed, N skipped".
#
# Environment: CONFIGURE_FLAGS adds configure options (for example
# --enable-sanitizer=address,undefined); JOBS sets make's -j (default 2).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh tests/install-deps.sh || exit 1
./autogen.sh > /dev/null 2>&1 || { ./autogen.sh; exit 1; }
mkdir -p build
cd build
# shellcheck disable=SC2086
../configure --enable-werror ${CONFIGURE_FLAGS:-} > configure.out 2>&1 || { tail -30 configure.out; exit 1; }
make -j"${JOBS:-2}" > make.out 2>&1 || { grep -E "error|warning" make.out | head -50; tail -20 make.out; exit 1; }

start=$(date +%s)
make -j"${JOBS:-2}" check > check.out 2>&1
status=$?
grep -E "^(PASS|FAIL|ERROR|XPASS|XFAIL|SKIP):" check.out | grep -v "^PASS" || true

passed=0
failed=0
skipped=0
for trs in $(find tests -name '*.trs' | sort); do
	p=$(grep -c -E '^:test-result: (PASS|XFAIL)' "$trs")
	s=$(grep -c -E '^:test-result: SKIP' "$trs")
	f=$(grep -c -E '^:test-result: (FAIL|XPASS|ERROR)' "$trs")
	passed=$((passed + p))
	skipped=$((skipped + s))
	failed=$((failed + f))
	if [ "$f" -gt 0 ]; then
		log=${trs%.trs}.log
		echo "---- ${log#./} (last 60 lines) ----"
		tail -60 "$log"
	fi
done
echo "test suite took $(( $(date +%s) - start )) s; the slowest tests:"
grep -H '^# took ' $(find tests -name '*.log') 2> /dev/null | sed 's/:# took / /' | sort -k2 -n -r | head -12 |
	awk '{ printf "#   %4d s  %s\n", $2, $1 }' || true
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	# make check failed without a failing test result: count it
	tail -20 check.out
	failed=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
