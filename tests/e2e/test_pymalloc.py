"""pymalloc-stats against sys._debugmallocstats() of the same frozen process:
every size-class row and every summary line, for every installed CPython,
live and from a gcore core, with and without debug info, with the debug
allocator hooks (-X dev) and with pymalloc switched off (PYTHONMALLOC=malloc).
"""

import contextlib
import os
import re
import shutil
import struct

import pytest

import harness
from conftest import python_params

# Lines of the oracle text -> keys of our JSON (per allocator state).
SUMMARY_LINES = {
    "# arenas allocated total": "arenas allocated total",
    "# arenas reclaimed": "arenas reclaimed",
    "# arenas highwater mark": "arenas highwater mark",
    "# arenas allocated current": "arenas allocated current",
    "# bytes in allocated blocks": "bytes in allocated blocks",
    "# bytes in available blocks": "bytes in available blocks",
    "# bytes lost to pool headers": "bytes lost to pool headers",
    "# bytes lost to quantization": "bytes lost to quantization",
    "# bytes lost to arena alignment": "bytes lost to arena alignment",
    "Total": "total",
}
# Counters that live in variables a symbol-free run cannot locate (Debian's
# stripped 3.11 has no debug file for them; 3.8-3.11 --no-debuginfo): they
# must then be reported as null ("unknown"), never as a wrong number.
COUNTERS = ("arenas allocated total", "arenas reclaimed",
            "arenas highwater mark")


def parse_debugmallocstats(text):
    """The pymalloc part of sys._debugmallocstats(): class rows and the
    'label = number' lines up to the first 'Total' (later sections, e.g. the
    3.10+ arena map, have their own)."""
    rows = [tuple(int(x) for x in m) for m in re.findall(
        r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)]
    lines = {}
    for label, value in re.findall(r"^([^=\n]+?)\s*=\s*([\d,]+)\s*$", text,
                                   re.M):
        label = label.strip()
        m = re.match(r"(\d+) unused pools \* (\d+) bytes", label)
        if m:
            lines["unused pools"] = int(m.group(1))
            lines["pool size"] = int(m.group(2))
            continue
        m = re.match(r"(\d+) arenas \* (\d+) bytes/arena", label)
        if m:
            lines["arena size"] = int(m.group(2))
            continue
        if label not in lines:
            lines[label] = int(value.replace(",", ""))
        if label == "Total":
            break
    return rows, lines


def last_debugmallocstats(target):
    """The workload's final sys._debugmallocstats() text, taken after the
    rest of the oracle with only C calls between it and the stop."""
    with open(target.oracle_path + ".last.dms") as f:
        return f.read()


def check_stats(target, report, symbol_free):
    """Asserts report (pymalloc-stats --json) equals the oracle's text."""
    text = last_debugmallocstats(target)
    rows, lines = parse_debugmallocstats(text)
    assert rows, "oracle has no pymalloc class rows:\n" + text[:2000]
    assert report["found"], report.get("missing")
    state = report["states"][0]
    mine = [(c["class"], c["size"], c["num pools"], c["blocks in use"],
             c["avail blocks"]) for c in state["classes"]]
    assert mine == rows
    assert report["pool_size"] == lines["pool size"]
    assert report["arena_size"] == lines["arena size"]
    assert state["unused pools"] == lines["unused pools"]
    for label, key in SUMMARY_LINES.items():
        if key in COUNTERS and state[key] is None:
            assert symbol_free, "%s unknown although symbols were there " \
                "(found by %s)" % (key, report["how"])
            continue
        assert state[key] == lines[label], label
    assert report["problems"] == 0, report.get("warnings")


@contextlib.contextmanager
def workload(argv, env=None):
    """harness.start_stopped(argv), and its directory (cores) removed after."""
    with harness.start_stopped(argv, env=env) as t:
        try:
            yield t
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


def is_symbol_free(label, no_debuginfo):
    return label == "3.11-debian" or no_debuginfo


def run_stats(target, *extra):
    return harness.cli_json("pymalloc-stats", "--json", *extra, target)


@pytest.mark.parametrize("source", ["live", "gcore"])
@pytest.mark.parametrize("no_debuginfo", [False, True],
                         ids=["symbols", "no-debuginfo"])
@pytest.mark.parametrize("python", python_params())
def test_pymalloc_stats_equal_debugmallocstats(python, no_debuginfo, source):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    extra = ["--no-debuginfo"] if no_debuginfo else []
    with workload([path, harness.PY_WORKLOAD, "--sentinels", 3000]) as t:
        where = t.pid if source == "live" else t.gcore()
        report = run_stats(where, *extra)
        if no_debuginfo:
            assert report["how"] != "symbols"
        check_stats(t, report, is_symbol_free(label, no_debuginfo))
        check_radix_nodes(t, where, extra)


def check_radix_nodes(target, where, extra):
    """3.10+: summary's "pymalloc radix tree node" row counts the mid and
    bottom nodes the interpreter says it allocated (with and without
    symbols: 3.10/3.11 keep the root in a static variable)."""
    text = last_debugmallocstats(target)
    counts = [int(n) for n in re.findall(
        r"^# arena map (?:mid|bot) nodes\s*=\s*(\d+)", text, re.M)]
    if not counts:
        assert target.oracle["version"]["version_info"][1] < 10, text[-600:]
        return
    rows = harness.cli_json("summary", "--json", *extra, where)["rows"]
    nodes = [r for r in rows if r["kind"] == "pymalloc radix tree node"]
    assert sum(r["count"] for r in nodes) == sum(counts), (nodes, counts)


@pytest.mark.parametrize("python", python_params())
def test_pymalloc_stats_debug_hooks(python):
    """-X dev wraps pymalloc in the debug hooks: the pools are the same,
    found with and without symbols (3.8's arena vector is then found
    behind its debug header); the radix tree's nodes, PyMem_RawCalloc'd
    behind a debug header too, are attributed."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload([path, "-X", "dev", harness.PY_WORKLOAD, "--sentinels",
                   1000]) as t:
        assert t.oracle["version"]["dev_mode"]
        check_stats(t, run_stats(t.pid), is_symbol_free(label, False))
        check_stats(t, run_stats(t.pid, "--no-debuginfo"), True)
        check_radix_nodes(t, t.pid, [])


@pytest.mark.parametrize("python", python_params())
def test_pymalloc_stats_pymalloc_off(python):
    """PYTHONMALLOC=malloc: no pymalloc section in the oracle, and we say
    pymalloc is not in use rather than inventing arenas."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    env = dict(os.environ, PYTHONMALLOC="malloc")
    env.pop("MALLOC_PERTURB_", None)
    with workload([path, harness.PY_WORKLOAD, "--sentinels", 200],
                  env=env) as t:
        rows, _ = parse_debugmallocstats(last_debugmallocstats(t))
        assert rows == []
        report = run_stats(t.pid)
        assert report["found"] and not report["in_use"]
        assert all(not s["classes"] for s in report["states"])
        text = harness.run_cli("pymalloc-stats", t.pid).stdout
        assert "not in use" in text


SUBINTERP_WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_subinterp.py")
# The sub-interpreter's reading is taken inside run_string(): its code
# object, frame and locals are freed after it, so a few dozen small blocks
# differ from the stop; pools and arenas do not move.
SUB_BLOCK_SLACK = 64


def subinterp_pythons():
    found = [p for p in python_params()
             if re.match(r"3\.1[2-9]", p.values[0][0])]
    return found or [pytest.param(("none", None), id="no-python-3.12+")]


@pytest.mark.parametrize("python", subinterp_pythons())
def test_pymalloc_stats_subinterpreter(python):
    label, path = python
    assert path, "no CPython 3.12+ found: sub-interpreters not covered"
    with workload([path, SUBINTERP_WORKLOAD]) as t:
        report = run_stats(t.pid)
        assert len(report["states"]) == 2, report["states"]
        main, sub = report["states"]
        assert main["interpreter"] != sub["interpreter"]
        with open(t.oracle_path + ".main.dms") as f:
            rows, lines = parse_debugmallocstats(f.read())
        assert [(c["class"], c["size"], c["num pools"], c["blocks in use"],
                 c["avail blocks"]) for c in main["classes"]] == rows
        with open(t.oracle_path + ".sub.dms") as f:
            rows, lines = parse_debugmallocstats(f.read())
        mine = {c["class"]: c for c in sub["classes"]}
        assert sorted(mine) == [r[0] for r in rows]
        for cls, size, pools, used, avail in rows:
            assert mine[cls]["num pools"] == pools, cls
            assert abs(mine[cls]["blocks in use"] - used) <= SUB_BLOCK_SLACK
        assert sub["arenas allocated current"] == \
            lines["# arenas allocated current"]


def write_mem(pid, addr, data):
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as f:
        f.seek(addr)
        f.write(data)


@pytest.mark.parametrize("python", python_params())
def test_pymalloc_corrupt_pool(python):
    """A pool whose free list points outside it: a warning with the pool's
    address, the problem counted, and every number that does not depend on
    that free list still equal to the interpreter's."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload([path, harness.PY_WORKLOAD, "--sentinels", 1000]) as t:
        clean = run_stats(t.pid)
        pool_size = clean["pool_size"]
        # A float sentinel lives in a pymalloc block; its pool header is at
        # the pool-aligned address below it.
        obj = t.oracle["sentinel_addresses"]["float"][0]
        pool = obj & ~(pool_size - 1)
        freeblock = struct.unpack("<Q", harness.read_mem(t.pid, pool + 8,
                                                         pool + 16))[0]
        write_mem(t.pid, pool + 8, struct.pack("<Q", 0x4141414141414140))
        report = run_stats(t.pid)
        assert report["problems"] >= 1
        hits = [w for w in report["warnings"]
                if pool <= w.get("address", 0) < pool + pool_size or
                w.get("address") == 0x4141414141414140]
        assert hits, report["warnings"]
        # The header counts are untouched: the table is the same.
        assert report["states"][0]["classes"] == clean["states"][0]["classes"]
        write_mem(t.pid, pool + 8, struct.pack("<Q", freeblock))
        assert run_stats(t.pid)["problems"] == 0
