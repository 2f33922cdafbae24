#!/usr/bin/env python3
"""Times the reference graph and retained sizes next to `summary` on gcore
cores of processes holding 1M and 8M objects (bench_summary.py's mixed
workload), and measures each run's peak memory: the time ratios graph /
summary and retained / summary, and the extra bytes per object the graph
and the dominator tree take on top of the analysis, in one run.

usage: bench_graph.py [--python PATH] [--sizes 1000000,8000000] [--repeat 3]
                      (PYMORTEM_BUILD / PYMORTEM_CLI as the e2e harness)
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from bench_summary import WORKLOAD, bench_args  # noqa: E402


def run(report, where):
    """Wall seconds, CPU seconds (user + system) and peak RSS (bytes) of one
    CLI run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([harness.cli_path(), report, where],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError("pymortem %s failed: %s" % (report, proc.stderr.read()))
    return dt, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


REPORTS = ("digest", "summary", "graph", "retained")


def best(where, repeat):
    """{report: (best wall, best CPU, peak RSS)}: the reports run in turn,
    repeat rounds, so that a slower spell of a shared machine falls on all
    of them rather than on one. Also, under "paired", the median over the
    rounds of each round's retained / summary wall time: a shared machine's
    speed drifts by tens of percent from minute to minute, and the two
    runs of one round see the same spell."""
    runs = {r: [] for r in REPORTS}
    for _ in range(repeat):
        for r in REPORTS:
            runs[r].append(run(r, where))
    out = {r: (min(x[0] for x in v), min(x[1] for x in v), max(x[2] for x in v))
           for r, v in runs.items()}
    ratios = sorted(t[0] / s[0] for t, s in zip(runs["retained"], runs["summary"]))
    out["paired"] = ratios[len(ratios) // 2]
    return out


def bench_one(python, n, repeat):
    workdir = harness.tempfile.mkdtemp(prefix="pm-bench-")
    script = os.path.join(workdir, "bench_workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    row = {"objects_requested": n}
    with harness.start_stopped([python, script, n], timeout=3600) as t:
        try:
            core = t.gcore()
            t.kill()
            # The text form's first line has the counts ("reference graph:
            # N objects (...), M references, ..."); its JSON lists them all.
            line = harness.run_cli("graph", core, timeout=7200).stdout.split("\n")[0]
            words = line.replace(",", "").split()
            nodes = int(words[2])
            edges = int(words[words.index("references") - 1])
            b = best(core, repeat)
            (read_t, read_c, _), (summary_t, summary_c, summary_m), \
                (graph_t, graph_c, graph_m), (retained_t, retained_c, retained_m) = \
                (b[r] for r in REPORTS)
            row.update({
                "objects": nodes, "references": edges,
                "read_s": round(read_t, 2),
                "summary_s": round(summary_t, 2),
                "graph_s": round(graph_t, 2),
                "retained_s": round(retained_t, 2),
                "summary_over_read": round(summary_t / read_t, 2),
                "retained_over_read": round(retained_t / read_t, 2),
                "graph_over_summary": round(graph_t / summary_t, 2),
                "retained_over_summary": round(retained_t / summary_t, 2),
                "retained_over_summary_cpu": round(retained_c / summary_c, 2),
                "retained_over_summary_paired": round(b["paired"], 2),
                "summary_mb": summary_m >> 20,
                "graph_extra_b_per_object": round((graph_m - summary_m) / nodes, 1),
                "retained_extra_b_per_object":
                    round((retained_m - summary_m) / nodes, 1),
                "tree_extra_b_per_object":
                    round((retained_m - graph_m) / nodes, 1),
            })
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    return row


def main():
    args = bench_args(__doc__, "1000000,8000000", 3)
    rows = [bench_one(args.python, int(n), args.repeat)
            for n in args.sizes.split(",")]
    if args.json:
        print(json.dumps({"python": args.python, "runs": rows}, indent=1))
        return
    cols = list(rows[0])
    print("python %s, cli %s, from gcore cores, best of %d rounds"
          % (args.python, harness.cli_path(), args.repeat))
    print("  ".join(cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(len(c)) for c in cols))
    print("read: `digest` (every readable byte of the core, hashed); "
          "graph: build the reference graph (and its roots); retained: the "
          "graph, the dominator tree and the list; _s: wall seconds, _cpu: "
          "user + system; _paired: the median of the rounds' own ratios; extra bytes per object: peak RSS over summary's "
          "(tree: over graph's), per graph node")


if __name__ == "__main__":
    main()
