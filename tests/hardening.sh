#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The hardening checks CI runs after the test suite (tests/run.sh, which
# must have built build/ first):
#
#  1. cppcheck (warning, performance and portability checks) on the C code:
#     no findings;
#  2. clang's static analyzer (scan-build, its default checkers) over a
#     clang build of the daemon: no bugs;
#  3. the integration suite, less the benchmark smoke run, the package
#     install and the long fault scenarios (listed below), under
#     AddressSanitizer + UndefinedBehaviorSanitizer +
#     LeakSanitizer (-fno-sanitize-recover=all) in build-asan/;
#  4. the core scenarios with the daemon and every worker under valgrind's
#     memcheck: an invalid access or a definite leak fails the run;
#  5. the fuzz corpora under the sanitizers (they run in 3's make check).
#
# Ends with the line "N passed, N failed, N skipped". Environment: JOBS
# (make -j).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
passed=0
failed=0
skipped=0

check() { # check DESCRIPTION COMMAND...: one pass or fail
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "ok - $what"
	else
		failed=$((failed + 1))
		echo "not ok - $what"
		echo "$out" | tail -40 | sed 's/^/# /'
	fi
}

count_trs() { # add the results of the .trs files under $1
	local trs p s f
	for trs in $(find "$1" -name '*.trs' | sort); do
		p=$(grep -c -E '^:test-result: (PASS|XFAIL)' "$trs")
		s=$(grep -c -E '^:test-result: SKIP' "$trs")
		f=$(grep -c -E '^:test-result: (FAIL|XPASS|ERROR)' "$trs")
		passed=$((passed + p))
		skipped=$((skipped + s))
		failed=$((failed + f))
		if [ "$f" -gt 0 ]; then
			echo "---- ${trs%.trs}.log (last 60 lines) ----"
			tail -60 "${trs%.trs}.log"
		fi
	done
}

results_of() { # results_of TRS: how many test points it records (0 if none)
	if [ -f "$1" ]; then grep -c -E '^:test-result: ' "$1"; else echo 0; fi
}

# every test of the list ran under the sanitizers and reported at least as
# many points as in the normal build: a program that did not build, or a
# test that stopped early, cannot pass as "no sanitizer report"
compare_results() { # compare_results TESTS...
	local t want got bad=0
	for t in "$@"; do
		t=${t%.py} # automake names a script's results without its suffix
		want=$(results_of "build/$t.trs")
		got=$(results_of "build-asan/$t.trs")
		if [ "$got" -eq 0 ] || [ "$got" -lt "$want" ]; then
			echo "$t: $got results under the sanitizers, $want in the normal build"
			bad=1
		fi
	done
	return $bad
}

start=$(date +%s)

# 1. cppcheck
check "cppcheck: no findings" \
	cppcheck --quiet --enable=warning,performance,portability --std=c11 --error-exitcode=1 \
	--inline-suppr -D__GNUC__ -I . -I build \
	--suppress='preprocessorErrorDirective:build/bridge/core/sparkplug_b.pb-c.h' bridge adapters

# 2. scan-build
scan() {
	rm -rf build-scan && mkdir build-scan && cd build-scan || return 1
	../configure CC=clang > configure.out 2>&1 || { tail -20 configure.out; return 1; }
	scan-build -o report --status-bugs make -j"${JOBS:-2}" oncebridge
}
check "scan-build: no bugs" bash -c "$(declare -f scan); scan"

# 3. the suite under the sanitizers
# Left out, to keep CI within its time: the benchmark smoke run, the
# package install, the long fault scenarios whose subject is timing
# (failover, cluster node loss, network faults, several instances, a 30 s
# outage, a Prometheus scrape) and the scenarios whose C paths another
# test here already drives under the sanitizers (kill -9 and restart,
# wide and transient failures, outbox variants, shared subscriptions,
# grants, the database restart under an MQTT worker), and the memory
# budgets, whose figures the sanitizers' own memory fills. They all run
# once, in the normal build.
asan_skip="bench_smoke package_install pg_failover amqp_cluster net_amqp net_mqtt net_pg several_instances
mqtt_failover log_repeat prometheus_dashboard harness_faultproxy
amqp_kill9 mqtt_kill9 amqp_wide_failure amqp_transient_limit outbox_late_commit outbox_nack bridge_mqtt_amqp
mqtt_shared mqtt_isolation mqtt_stale_puback synchronous_commit retention_outage least_privilege
outbox_memory mqtt_pg_restart memory_budget"
integration=$(sed -n '/^integration_tests = /,/^$/p' Makefile.am | grep -o 'tests/integration/[a-z_0-9]*\.py' |
	grep -v -w -F "$(echo $asan_skip | tr ' ' '\n')" | tr '\n' ' ')
rm -rf build-asan && mkdir build-asan
(
	cd build-asan &&
	../configure --enable-werror --enable-sanitizer=address,undefined > configure.out 2>&1 &&
	make -j"${JOBS:-2}" > make.out 2>&1
) || { failed=$((failed + 1)); echo "not ok - sanitizer build"; tail -30 build-asan/make.out; }
if [ -x build-asan/oncebridge ]; then
	# every instrumented process (daemons, workers, unit tests) reports
	# into sandir, whatever happens to its own log
	sandir=$(mktemp -d /tmp/oncebridge-sanitizers.XXXXXX)
	tests=$(cd build && make -s -f Makefile -f - print-tests <<< 'print-tests: ; @echo $(unit_tests) $(fuzz_tests)')
	tests="$tests $integration"
	(cd build-asan && ASAN_OPTIONS="log_path=$sandir/asan" UBSAN_OPTIONS="log_path=$sandir/ubsan:print_stacktrace=1" \
		make -j"${JOBS:-2}" check TESTS="$tests" > check.out 2>&1)
	status=$?
	count_trs build-asan/tests
	check "sanitizers: make check of the suite under the sanitizers succeeded" \
		bash -c "[ $status -eq 0 ] || { grep -E 'error|Error' build-asan/check.out | tail -20; exit 1; }"
	# shellcheck disable=SC2086
	check "sanitizers: every test ran and reported at least as many results as in the normal build" \
		bash -c "$(declare -f results_of compare_results); compare_results $tests"
	# LeakSanitizer's "Running thread N was not suspended. False leaks are
	# possible." alone is a note, not a finding: a worker forked by a
	# process that had a thread running (the round-trip watchdog) inherits
	# ASan's list of threads, that thread included, though fork() did not
	# copy it. Any other line, a leak report among them, fails.
	check "sanitizers: no report from any process of the suite" \
		bash -c "found=\$(cat $sandir/* 2> /dev/null | grep -v -e '^==[0-9]*==Running thread [0-9]* was not suspended. False leaks are possible.\$' -e '^\$'); if [ -n \"\$found\" ]; then head -60 $sandir/*; exit 1; fi"
	rm -rf "$sandir"
fi

# 4. valgrind on the core scenarios, in the normal build
vgdir=$(mktemp -d /tmp/oncebridge-valgrind.XXXXXX)
for t in amqp_dedupe mqtt_dedupe outbox_amqp hostile_inputs; do
	rm -rf "$vgdir/$t"
	(cd build && ONCEBRIDGE_VALGRIND_DIR="$vgdir/$t" make check TESTS="tests/integration/$t.py" > "$vgdir/$t.out" 2>&1)
	count_trs "build/tests/integration/$t.trs"
	check "valgrind: $t reported its results" test "$(results_of "build/tests/integration/$t.trs")" -gt 0
	logs=$(find "$vgdir/$t" -name 'vg.*.log' 2> /dev/null | wc -l)
	check "valgrind: $t ran the daemon and its workers under memcheck ($logs processes)" test "$logs" -ge 2
	check "valgrind: $t: no invalid access and no definite leak" \
		bash -c "for f in $vgdir/$t/vg.*.log; do if [ -s \"\$f\" ]; then cat \"\$f\"; exit 1; fi; done"
done
rm -rf "$vgdir"

echo "hardening checks took $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
