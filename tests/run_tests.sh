#!/bin/sh
# The one test command: builds pymortem twice (plain, and with ASan+UBSan),
# runs every test suite (unit + e2e) in both builds, then with clang each
# libFuzzer target for 20 s (tests/fuzz/run_fuzz.sh, about 2 minutes with
# its build), and ends with one line "N passed, N failed" (", N skipped"
# when any) summed over all of them. The exit
# status is non-zero when anything failed.
set -u
cd "$(dirname "$0")/.." || exit 2

status=0
build() {
	dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" || return 1
	fi
	meson compile -C "$dir"
}

for dir in build build-asan; do
	if [ "$dir" = build-asan ]; then
		build "$dir" -Db_sanitize=address,undefined || status=1
	else
		build "$dir" || status=1
	fi
	rm -f "$dir/meson-logs/e2e-junit.xml" "$dir/meson-logs/testlog.json"
	if [ -f "$dir/build.ninja" ]; then
		echo "=== meson test -C $dir"
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			meson test -C "$dir" --print-errorlogs || status=1
	fi
done

# libFuzzer (needs clang): each target for 20 s, one test each.
fuzz_results=$(mktemp) || exit 2
if command -v clang >/dev/null 2>&1; then
	echo "=== tests/fuzz/run_fuzz.sh"
	tests/fuzz/run_fuzz.sh "$fuzz_results" || status=1
else
	echo "=== fuzz: clang not found, libFuzzer runs skipped"
	for t in fuzz_core fuzz_glibc fuzz_pymalloc fuzz_objects; do
		echo "SKIP $t" >> "$fuzz_results"
	done
fi

# Count unit tests from meson's log, e2e tests from pytest's JUnit XML and
# libFuzzer runs from run_fuzz.sh's results.
FUZZ_RESULTS=$fuzz_results \
/usr/bin/python3 - build build-asan <<'EOF' || status=1
import json, os, sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for d in sys.argv[1:]:
    logs = os.path.join(d, "meson-logs")
    log = os.path.join(logs, "testlog.json")
    if not os.path.exists(log):
        print("%s: no test log (build failed?)" % d)
        failed += 1
        continue
    e2e_result = None
    with open(log) as f:
        for line in f:
            t = json.loads(line)
            if t["name"].split(" / ")[-1] == "e2e":
                e2e_result = t["result"]
                continue
            if t["result"] == "OK":
                passed += 1
            elif t["result"] in ("SKIP", "EXPECTEDFAIL"):
                skipped += 1
            else:
                failed += 1
    junit = os.path.join(logs, "e2e-junit.xml")
    if e2e_result is None:
        print("%s: the e2e suite did not run" % d)
        failed += 1
    elif not os.path.exists(junit):
        print("%s: e2e ended %s without results" % (d, e2e_result))
        failed += 1
    else:
        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            if kinds & {"failure", "error"}:
                failed += 1
            elif "skipped" in kinds:
                skipped += 1
            else:
                passed += 1
with open(os.environ["FUZZ_RESULTS"]) as f:
    for result in f:
        if result.startswith("PASS "):
            passed += 1
        elif result.startswith("SKIP "):
            skipped += 1
        else:
            failed += 1
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed else 0)
EOF
rm -f "$fuzz_results"
exit $status
