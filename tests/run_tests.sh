#!/bin/sh
# The one test command: builds pymortem twice (plain, and with ASan+UBSan),
# runs every test suite (unit + e2e) in both builds at once, then with clang
# each libFuzzer target for 20 s (tests/fuzz/run_fuzz.sh, about 2 minutes
# with its build), and ends with one line "N passed, N failed" (", N
# skipped" when any) summed over all of them. The exit
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

build build || status=1
build build-asan -Db_sanitize=address,undefined || status=1

# The two builds' suites run at the same time, one per core (each suite
# runs one test at a time, and an e2e test is mostly one process working:
# the analyser, or the workload building its heap). Their lines are printed
# as they come, each after its build's name; each suite's exit status goes
# to a file, as a pipeline's own is its last command's.
suite() {
	dir=$1
	rm -f "$dir/meson-logs/e2e-junit.xml" "$dir/meson-logs/testlog.json" \
		"$dir/meson-logs/suite-status"
	[ -f "$dir/build.ninja" ] || return 0
	echo "=== meson test -C $dir"
	{
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			meson test -C "$dir" --print-errorlogs 2>&1
		echo $? > "$dir/meson-logs/suite-status"
	} | sed -u "s|^|[$dir] |"
}
suite build &
plain=$!
suite build-asan &
asan=$!
wait $plain
wait $asan
for dir in build build-asan; do
	[ "$(cat "$dir/meson-logs/suite-status" 2>/dev/null)" = 0 ] || status=1
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
failures = []  # printed again at the end: the log's tail is what CI shows
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
                failures.append("%s: unit %s %s" % (d, t["name"], t["result"]))
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
                why = next(c for c in case if c.tag in ("failure", "error"))
                message = (why.get("message") or "").strip().splitlines()
                failures.append("%s: FAILED %s::%s %s" % (
                    d, case.get("classname"), case.get("name"),
                    message[0][:300] if message else ""))
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
            failures.append("fuzz: " + result.strip())
for failure in failures:
    print(failure)
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed else 0)
EOF
rm -f "$fuzz_results"
exit $status
