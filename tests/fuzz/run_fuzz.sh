#!/bin/sh
# Runs every libFuzzer target for FUZZ_SECONDS (default 20) each, one job,
# in build-fuzz (clang, ASan+UBSan, coverage-guided; set up on first use),
# from the generators' seed corpus (built by the plain build in build/) in
# a fresh corpus directory, with a fixed seed. Writes "PASS target" or
# "FAIL target" per target to RESULTS (argument; default: stdout only); a
# crash leaves its input in build-fuzz/fuzz-artifacts/. tests/run_tests.sh
# runs it; alone: FUZZ_SECONDS=600 tests/fuzz/run_fuzz.sh (FUZZ_JOBS=N:
# build with N jobs)
set -u
cd "$(dirname "$0")/../.." || exit 2
results=${1:-/dev/null}
seconds=${FUZZ_SECONDS:-20}
targets="fuzz_core fuzz_glibc fuzz_pymalloc fuzz_objects"
status=0

fail_all() {
	for t in $targets; do echo "FAIL $t ($1)" >> "$results"; done
	exit 1
}

if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false || fail_all setup
fi
paths=""
for t in $targets; do paths="$paths tests/fuzz/$t"; done
# Only the fuzz targets: the e2e workloads do not link with -Dfuzz=true.
# shellcheck disable=SC2086
meson compile -C build-fuzz ${FUZZ_JOBS:+-j "$FUZZ_JOBS"} $paths || fail_all build

work=$(mktemp -d) || fail_all mktemp
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/core-seeds" "$work/heap-seeds" build-fuzz/fuzz-artifacts
{ build/tests/fuzz/fuzz_core_smoke --write-seed "$work/core-seeds/synthetic.core" &&
  build/tests/fuzz/fuzz_core_smoke --write-seed-no-nt-file "$work/core-seeds/linkmap.core" &&
  build/tests/fuzz/fuzz_glibc_smoke --write-seeds "$work/heap-seeds"; } >/dev/null ||
	echo "fuzz: no seed corpus (is build/ built?); starting from empty inputs"

for t in $targets; do
	seeds=$work/heap-seeds
	[ "$t" = fuzz_core ] && seeds=$work/core-seeds
	mkdir -p "$work/$t"
	echo "=== $t: $seconds s"
	if ASAN_OPTIONS=detect_leaks=1 \
	   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	   "build-fuzz/tests/fuzz/$t" -max_total_time="$seconds" -seed=1 \
		-timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="build-fuzz/fuzz-artifacts/$t-" \
		"$work/$t" "$seeds" > "$work/$t.log" 2>&1; then
		grep -E "INITED|DONE|average_exec_per_sec" "$work/$t.log"
		echo "PASS $t" >> "$results"
	else
		tail -n 60 "$work/$t.log"
		echo "FAIL $t" >> "$results"
		status=1
	fi
done
exit $status
