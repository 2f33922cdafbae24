#!/usr/bin/env python3
"""Times `pymortem summary` on processes holding 100k, 1M and 3M objects,
live and from a gcore core, next to the time it takes to merely read the same
bytes (the target's writable memory through /proc/PID/mem; the core file
from disk), and reports allocations per second and the ratios, in one run.

usage: bench_summary.py [--python PATH] [--sizes 100000,1000000,3000000]
                        [--repeat 3]   (PYMORTEM_BUILD / PYMORTEM_CLI as the
                                        e2e harness)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import harness  # noqa: E402

# A heap of n objects of mixed kinds (user instances and their dicts, floats,
# strs, tuples, lists), then the oracle/stop protocol of the harness.
WORKLOAD = r"""
import gc, json, os, random, signal, sys
n = int(sys.argv[1])
class Item:
    def __init__(self, i, f):
        self.i = i
        self.f = f
rng = random.Random(1)
keep = []
per = 6     # objects made per step (about)
for i in range(n // per):
    f = rng.random()
    keep.append(Item(i + 1000, f))            # instance (+ values), float, int
    keep.append((str(f), [f]))                # tuple, str, list (+ items)
gc.collect()
with open(os.environ["PM_ORACLE_FILE"], "w") as out:
    json.dump({"objects_made": len(keep) * 3, "gc_objects": len(gc.get_objects())}, out)
kill, pid, sig = os.kill, os.getpid(), signal.SIGSTOP
while True:
    kill(pid, sig)
"""


def timed(fn, repeat):
    """Best wall time of repeat runs of fn(), and its last result."""
    best, result = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, result


def read_live_bytes(pid, maps):
    """Reads every writable private mapping through /proc/PID/mem (what the
    analysis could possibly have to look at), returns the byte count."""
    total = 0
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as f:
        for r in maps:
            if "w" not in r["perms"] or r["path"] in ("[vvar]", "[vsyscall]"):
                continue
            f.seek(r["start"])
            left = r["size"]
            while left:
                chunk = f.read(min(left, 1 << 22))
                if not chunk:
                    break
                total += len(chunk)
                left -= len(chunk)
    return total


def read_file_bytes(path):
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                return total
            total += len(chunk)


def summary(where):
    return harness.cli_json("summary", "--json", where, timeout=3600)


def bench_one(python, n, repeat):
    script = os.path.join(harness.tempfile.mkdtemp(prefix="pm-bench-"),
                          "bench_workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    row = {"objects_requested": n}
    with harness.start_stopped([python, script, n], timeout=1800) as t:
        try:
            live_t, report = timed(lambda: summary(t.pid), repeat)
            read_t, nbytes = timed(lambda: read_live_bytes(t.pid, t.maps),
                                   repeat)
            core = t.gcore()
            core_t, core_report = timed(lambda: summary(core), repeat)
            core_read_t, core_bytes = timed(lambda: read_file_bytes(core),
                                            repeat)
            assert core_report["total"] == report["total"]
            allocs = report["total"]["count"]
            row.update({
                "gc_objects": t.oracle["gc_objects"],
                "objects_recognised": report["objects"],
                "allocations": allocs,
                "heap_bytes": report["total"]["bytes"],
                "live_summary_s": round(live_t, 3),
                "live_allocs_per_s": int(allocs / live_t),
                "live_read_bytes": nbytes,
                "live_read_s": round(read_t, 3),
                "live_ratio": round(live_t / read_t, 2),
                "core_bytes": core_bytes,
                "core_summary_s": round(core_t, 3),
                "core_allocs_per_s": int(allocs / core_t),
                "core_read_s": round(core_read_t, 3),
                "core_ratio": round(core_t / core_read_t, 2),
            })
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)
            shutil.rmtree(os.path.dirname(script), ignore_errors=True)
    return row


def bench_args(doc, sizes, repeat):
    """The benchmarks' options: --python, --sizes (objects, comma-separated),
    --repeat (best of), --json."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--python", default=harness.PYTHONS[-2][1]
                   if len(harness.PYTHONS) > 1 else sys.executable)
    p.add_argument("--sizes", default=sizes)
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def main():
    args = bench_args(__doc__, "100000,1000000,3000000", 3)
    rows = [bench_one(args.python, int(n), args.repeat)
            for n in args.sizes.split(",")]
    if args.json:
        print(json.dumps({"python": args.python, "cli": harness.cli_path(),
                          "runs": rows}, indent=1))
        return
    print("python %s, cli %s, best of %d" % (args.python, harness.cli_path(),
                                             args.repeat))
    cols = ["objects_requested", "allocations", "heap_bytes",
            "live_summary_s", "live_allocs_per_s", "live_read_s",
            "live_ratio", "core_summary_s", "core_allocs_per_s",
            "core_read_s", "core_ratio"]
    print("  ".join(c for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(len(c)) for c in cols))
    print("ratio = summary time / time to read the same bytes "
          "(live: writable mappings via /proc/PID/mem; core: the core file)")


if __name__ == "__main__":
    main()
