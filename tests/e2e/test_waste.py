"""End-to-end tests of `pymortem waste` (issue 14) on a frozen workload
(tests/targets/py_waste.py) under every installed CPython, with pymalloc
and with PYTHONMALLOC=malloc, live and from a gcore core.

Truth comes from the process itself, never from pymortem: the workload
records, for every value it planted, how many copies it built
(collections.Counter), their id()s and allocation sizes; for its lists len()
and ob_item's allocated (ctypes at offset 32); which strs it interned.
Tuples and frozensets are equal when their items are (equal values, or
the same object). The interpreter holds duplicates of its own, so the planted values are
checked one by one: their copies must equal the Counter exactly, the
bytes their allocations' sizes as the workload measured them (pymalloc:
sys.getsizeof rounded up to its 16-byte classes; malloc:
malloc_usable_size + 8, the chunk, which glibc may leave up to 16 bytes
above the request when the remainder could not be a chunk), the saving
all copies but the one kept. __slots__: the workload's class and its
slotted twin are measured in a second process (sys._debugmallocstats'
bytes in allocated blocks before and after making as many instances)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from conftest import python_params  # noqa: E402

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_waste.py")
TWIN = os.path.join(harness.TARGETS_DIR, "py_waste_twin.py")
MODES = ("pymalloc", "malloc")
TOP = 100000


def expected_preview(kind, value):
    if kind == "str":
        return "'%s'" % value
    if kind == "bytes":
        return "b'%s'" % bytes.fromhex(value).decode("ascii")
    return value


def findings(doc, name, kind=None):
    return [f for f in doc["findings"]
            if f["finding"] == name and (kind is None or f["type"] == kind)]


def start(python, mode):
    _, env = harness.ALLOCATOR_MODES[mode]
    env = dict(os.environ, **env)
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([python, WORKLOAD], env=env)


def check_duplicates(doc, oracle):
    interned = set(oracle["interned"])
    for kind in ("str", "bytes", "int", "float"):
        found = findings(doc, "duplicates", kind)
        assert len(found) == 1, kind
        f = found[0]
        by_value = {v["value"]: v for v in f["values"]}
        assert len(f["values"]) == f["duplicated_values"], kind
        assert sum(v["copies"] for v in f["values"]) == f["copies"]
        assert sum(v["saving"] for v in f["values"]) == f["saving"]
        for planted in oracle[kind]:
            preview = expected_preview(kind, planted["value"])
            got = by_value.get(preview)
            assert got is not None, (kind, preview)
            assert got["copies"] == planted["copies"], (kind, preview)
            sizes = planted["sizes"]
            assert got["bytes"] == sum(sizes), (kind, preview)
            ids = set(planted["ids"])
            size_of = dict(zip(planted["ids"], sizes))
            # the saving: every copy but the one kept (the first example)
            kept = got["examples"][0]["address"]
            assert got["saving"] == sum(sizes) - size_of[kept], (kind, preview)
            assert all(e["address"] in ids for e in got["examples"]), (kind, preview)
            first = got["examples"][0]
            assert first["path"].startswith("sys.modules['__main__'].__dict__["), first
            if kind == "str":
                want = 1 if planted["value"] in interned else 0
                assert got["interned"] == want, preview
                if want:
                    # the copy kept is the interned one: the first built
                    assert first["address"] == planted["ids"][0], preview
            else:
                assert got["interned"] == 0
    for kind in ("tuple", "frozenset"):
        found = findings(doc, "duplicates", kind)
        assert len(found) == 1, kind
        f = found[0]
        for planted in oracle[kind]:
            ids = set(planted["ids"])
            got = [v for v in f["values"] if v["examples"][0]["address"] in ids]
            assert len(got) == 1, (kind, planted["value"])
            got = got[0]
            assert all(e["address"] in ids for e in got["examples"])
            assert got["copies"] == planted["copies"], (kind, planted["value"])
            size_of = dict(zip(planted["ids"], planted["sizes"]))
            assert got["bytes"] == sum(planted["sizes"])
            assert got["saving"] == got["bytes"] - size_of[got["examples"][0]["address"]]
            if kind == "tuple":
                # items in order, each shown as its value
                assert got["value"] == planted["value"]
            else:
                assert got["value"].startswith("frozenset({")
                assert sorted(got["value"][11:-2].split(", ")) == \
                    sorted(planted["value"][11:-2].split(", "))
    return True


def check_containers(doc, oracle):
    lists = findings(doc, "over-allocation", "list")
    assert len(lists) == 1
    by_addr = {e["address"]: e for e in lists[0]["examples"]}
    for planted in oracle["lists"]:
        e = by_addr.get(planted["id"])
        assert e is not None, planted
        assert e["used"] == planted["len"]
        assert e["capacity"] == planted["allocated"]
        assert e["bytes"] == (planted["allocated"] - planted["len"]) * 8
    # the planted lists are LISTS' items: one holder for the four
    holders = {o["holder"]: o for o in lists[0]["owners"]}
    held = holders["sys.modules['__main__'].__dict__['LISTS'][i]"]
    assert held["count"] == len(oracle["lists"])
    assert held["unused"] == sum((p["allocated"] - p["len"]) * 8 for p in oracle["lists"])
    assert lists[0]["unused"] >= sum((p["allocated"] - p["len"]) * 8
                                     for p in oracle["lists"])
    dicts = findings(doc, "over-allocation", "dict")
    assert len(dicts) == 1
    holey = [e for e in dicts[0]["examples"] if e["address"] == oracle["holey"]["id"]]
    assert holey and holey[0]["used"] == oracle["holey"]["len"]
    assert holey[0]["path"] == "sys.modules['__main__'].__dict__['HOLEY']"
    # a dict of 1000 entries with 900 deleted: at least those 900 entries
    assert dicts[0]["deleted"] >= 900 * 16
    empty = findings(doc, "empty")
    assert len(empty) == 1
    for kind, n in oracle["empty"].items():
        assert empty[0]["by_type"][kind]["count"] >= n, kind
    # the planted empty containers are EMPTIES' items: one holder
    holders = {o["holder"]: o for o in empty[0]["owners"]}
    held = holders["sys.modules['__main__'].__dict__['EMPTIES'][i]"]
    assert held["count"] == sum(oracle["empty"].values())
    assert held["bytes"] == oracle["empty_bytes"]


def twin_bytes(python, cls, n):
    """What n instances of cls take in a second process (pymalloc's bytes
    in allocated blocks before and after making them), with the allocator
    the workload's pymalloc mode has: a debug build's default adds the
    debug hooks' header and trailer to each block (pymalloc_debug)."""
    debug_build = subprocess.run(
        [python, "-c", "import sys; print(hasattr(sys, 'gettotalrefcount'))"],
        stdout=subprocess.PIPE, universal_newlines=True, check=True,
        timeout=60).stdout.strip() == "True"
    proc = subprocess.run([python, TWIN, cls, str(n)], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True, timeout=120,
                          env=dict(os.environ, PYTHONMALLOC="pymalloc_debug"
                                   if debug_build else "pymalloc"))
    return json.loads(proc.stdout)["bytes"]


def close(got, measured):
    """Equal up to what the measurement itself allocates (the class's
    shared keys, a few blocks): 1 KiB."""
    return abs(got - measured) <= 1024


def check_slots(doc, oracle, python):
    found = findings(doc, "slots")
    assert len(found) == 1
    rec = oracle["records"]
    rows = [c for c in found[0]["classes"] if c["class"] == rec["class"]]
    assert len(rows) == 1
    row = rows[0]
    assert row["instances"] == rec["n"]
    assert row["names"] == len(rec["names"])
    assert sorted(row["slots"].split(", ")) == sorted(rec["names"])
    # a third of the instances have a fourth attribute: two name sets
    assert row["name_sets"] == 2
    assert row["commonest_set"] == rec["n"] - (rec["n"] + 2) // 3
    assert row["example"]["address"] in set(rec["ids"])
    assert row["example"]["path"].startswith(
        "sys.modules['__main__'].__dict__['RECORDS'][")
    if oracle["pymalloc"]:
        now = twin_bytes(python, "Record", rec["n"])
        slotted = twin_bytes(python, "SlottedRecord", rec["n"])
        assert close(row["bytes_now"], now), (row, now)
        assert close(row["bytes_slotted"], slotted), (row, slotted)
        assert close(row["saving"], now - slotted), (row, now, slotted)
    else:
        # each a GC object of 16 + 16 + 4 * 8 bytes: a 64 + 8 -> 80-byte chunk
        assert row["bytes_slotted"] == rec["n"] * 80


def check_numeric(doc, oracle):
    """A list of floats (ints) as an array: 8 bytes an item instead of the
    items buffer and the objects."""
    for planted in oracle["numeric"]:
        found = findings(doc, "numeric-lists", planted["kind"])
        assert len(found) == 1, planted["kind"]
        ex = [e for e in found[0]["examples"] if e["address"] == planted["id"]]
        assert len(ex) == 1, planted["kind"]
        assert ex[0]["used"] == planted["len"]
        assert ex[0]["bytes"] == planted["buffer"] + planted["items"] - 8 * planted["len"]
        assert ex[0]["path"].startswith("sys.modules['__main__'].__dict__['BIG_")


def check_envelope(doc, heap_free_lists):
    savings = [f["saving"] for f in doc["findings"]]
    assert savings == sorted(savings, reverse=True)
    assert doc["total_saving"] == sum(savings)
    for f in doc["findings"]:
        assert f["advice"] and f["cost"] >= 0
    # the free lists: what the analysis recognised on them (summary's rows)
    free = findings(doc, "free-lists")
    assert sum(f["cost"] for f in free) == heap_free_lists
    for f in free:
        assert f["saving"] == 0
        assert sum(r["bytes"] for r in f["by_type"]) == f["cost"]


def summary_free_lists(target):
    """The free-list rows of `summary` (a consistency check between two
    reports, not a truth from the process)."""
    rows = harness.cli_json("summary", "--json", target)["rows"]
    return sum(r["bytes"] for r in rows
               if r.get("domain") == "python" and r.get("detail") == "free list")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("python", python_params())
def test_waste(python, mode):
    label, path = python
    if path is None:
        pytest.fail("no CPython found")
    with start(path, mode) as t:
        try:
            oracle = t.oracle
            live = harness.cli_json("waste", "--json", "--top", TOP, t.pid)
            check_envelope(live, summary_free_lists(t.pid))
            check_duplicates(live, oracle)
            check_containers(live, oracle)
            check_slots(live, oracle, path)
            check_numeric(live, oracle)
            text = harness.run_cli("waste", t.pid).stdout
            assert "1. " in text and "advice: " in text
            assert "'waste-str-39-qqq'" in text
            core = t.gcore()
            from_core = harness.cli_json("waste", "--json", "--top", TOP, core)
            live.pop("warnings", None)
            from_core.pop("warnings", None)
            live.pop("warning_count", None)
            from_core.pop("warning_count", None)
            assert from_core == live
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


def test_waste_truncated_core():
    """A core cut short: the report still answers, nothing crashes."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    if path is None:
        pytest.skip("no CPython")
    with start(path, "pymalloc") as t:
        try:
            core = t.gcore()
            size = os.path.getsize(core)
            for cut in (size * 9 // 10, size // 2):
                with open(core, "r+b") as f:
                    f.truncate(cut)
                for args in (("--json",), ()):
                    proc = harness.run_cli("waste", *args, core, check=False)
                    assert proc.returncode in (0, 1), proc.stderr
                    assert "Sanitizer" not in proc.stderr
                    if proc.returncode == 0 and args:
                        json.loads(proc.stdout)
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


GDB = shutil.which("gdb")


@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_heap_waste():
    """`heap waste --json` in GDB gives the CLI's document; the text and
    the help are there."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    if path is None:
        pytest.skip("no CPython")
    if harness.binding_sanitized():
        pytest.skip("sanitizer build: GDB cannot load the binding (as test_gdb.py)")
    plugin = os.path.join(harness.build_dir(), "gdbplugin", "pymortem-gdb.py")
    with start(path, "pymalloc") as t:
        try:
            cli = harness.cli_json("waste", "--json", "--top", 5, t.pid)
            work = t.workdir
            out = os.path.join(work, "gdb-waste.json")
            script = os.path.join(work, "gdb-waste.py")
            with open(script, "w") as f:
                f.write("import gdb, json\n"
                        "res = {}\n"
                        "res['json'] = gdb.execute('heap waste --json --top 5', to_string=True)\n"
                        "res['text'] = gdb.execute('heap waste --top 2', to_string=True)\n"
                        "res['help'] = gdb.execute('help heap waste', to_string=True)\n"
                        "open(%r, 'w').write(json.dumps(res))\n" % out)
            proc = subprocess.run(
                [GDB, "-nx", "-q", "-batch", "-ex", "set sysroot /",
                 "-ex", "source " + plugin, "-ex", "source " + script,
                 "-p", str(t.pid)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True, errors="backslashreplace",
                timeout=300, stdin=subprocess.DEVNULL)
            t.ensure_stopped()
            assert os.path.exists(out), proc.stdout + proc.stderr
            with open(out) as f:
                res = json.load(f)
            doc = json.loads(res["json"])
            for d in (doc, cli):
                d.pop("warnings", None)
                d.pop("warning_count", None)
            assert doc == cli
            assert "advice: " in res["text"]
            assert "heap waste [--top N] [--json]" in res["help"]
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)
