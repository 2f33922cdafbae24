#!/usr/bin/env python3
"""Benchmark of the glibc walker (not a test): a C target with a few million
chunks, then `pymortem malloc-stats` timed on the live process and on a
gcore of it, next to the time it takes just to read the same bytes (the
process's mappings through /proc/PID/mem, the core file from disk).

usage: tests/bench/bench_glibc.py [--chunks N] [--build DIR]"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def read_file(path):
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return n
            n += len(block)


def read_process(pid):
    n = 0
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or line.rstrip().endswith("[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            for a in range(start, end, 1 << 20):
                try:
                    mem.seek(a)
                    n += len(mem.read(min(1 << 20, end - a)))
                except OSError:
                    break
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=3_000_000)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    opts = ap.parse_args()
    os.environ["PYMORTEM_BUILD"] = os.path.abspath(opts.build)
    import harness
    target = os.path.join(opts.build, "tests", "targets", "glibc_workload")
    with harness.start_stopped([target, "--small-chunks", str(opts.chunks)],
                               timeout=600) as t:
        want = t.oracle["mallinfo2"]
        sources = [("live", str(t.pid), lambda: read_process(t.pid))]
        core = t.gcore()
        sources.append(("gcore", core, lambda: read_file(core)))
        for name, where, read_bytes in sources:
            secs, proc = timed(lambda: harness.run_cli(
                "malloc-stats", "--json", where, check=False, timeout=1800))
            if proc.returncode != 0:
                print("%-6s malloc-stats failed: %s" % (name,
                                                        proc.stderr.strip()))
                continue
            report = json.loads(proc.stdout)
            exact = all(report[k] == want[k] for k in want)
            rsecs, nbytes = timed(read_bytes)
            print("%-6s %10d chunks in %6.2f s = %8.0f chunks/s "
                  "(mallinfo2 %s); reading %d MiB: %.2f s" % (
                      name, report["chunks"], secs, report["chunks"] / secs,
                      "exact" if exact else "DIFFERS", nbytes >> 20, rsecs))


if __name__ == "__main__":
    main()
