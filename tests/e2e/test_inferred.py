"""The inferred owners (lib/cpython_inferred.c) against what a frozen
process says of its own objects: tests/targets/inferred_ext.c, built here
against each interpreter under test, is an extension type whose objects
each malloc a buffer (100..4999 bytes) behind a plain field, a pointer no
precise attribution knows. tests/targets/py_inferred.py makes 300 of them,
one whose buffer was freed with the pointer kept (stale) and two pointing
at one buffer (shared), and reports every id() and buffer address. Live
and from a gcore core:

- every single-owner buffer is listed as an 'inferred buffer' at exactly
  the address the object reports, owner its id(), held at least its size
  (but for the few a stale word in another in-use chunk points at too,
  which the test finds in the process's memory itself: at most 5%),
  in the row 'cpython  inferred buffer  held by inferred_ext.Holder
  (inferred)', apart from every precise row;
- a second buffer that only such a buffer points at (every 10th object's)
  is listed the same, owner the object;
- the shared buffer is no inferred buffer (two holders), and nothing is
  claimed for the stale object;
- with --precise none is inferred: the same buffers are unknown again, the
  rows' totals unchanged, and summary says the inference is off.
"""

import array
import os
import shutil
import subprocess
import tempfile

import pytest

import harness
from conftest import python_params

SOURCE = os.path.join(harness.TARGETS_DIR, "inferred_ext.c")
WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_inferred.py")
KIND = "inferred buffer"
DETAIL = "held by inferred_ext.Holder (inferred)"
MODES = {k: harness.ALLOCATOR_MODES[k] for k in ("pymalloc", "malloc")}
ALL = 10 ** 9


def build_extension(python, where):
    """inferred_ext.so for the interpreter at python, in where; None when
    it has no headers."""
    include = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    flags = []
    if harness.is_chroot_python(python):
        # Built by the host's compiler against the chroot's headers (its
        # pyconfig.h is found through Debian's multiarch wrapper, after
        # the host's own headers): the chroot has no compiler, and the
        # module needs nothing of glibc newer than the host's.
        include = harness.CHROOT + include
        flags = ["-idirafter", os.path.join(harness.CHROOT, "usr/include")]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return None
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-I", include] + flags +
                   ["-o", os.path.join(where, "inferred_ext.so"), SOURCE],
                   check=True)
    return where


def listing(where, *extra):
    r = harness.cli_json("objects", "--json", "--type", KIND, "--limit", ALL,
                         *extra, where)
    assert r["shown"] == r["matching"] == len(r["objects"])
    return {o["address"]: o for o in r["objects"]}


def usable(o):
    room = o["allocation"] + o["size"] - o["header"] - o["address"]
    return room + (8 if o["allocator"] == "glibc" else 0)


def addresses(truth):
    """The oracle with its hex addresses as ints."""
    for rec in truth["single"] + truth["nested"]:
        rec["buffer"] = int(rec["buffer"], 16)
    truth["shared"]["buffer"] = int(truth["shared"]["buffer"], 16)
    truth["stale"]["buffer"] = int(truth["stale"]["buffer"], 16)
    return truth


def words_in_memory(pid, values):
    """{value: how many aligned words of the process's writable memory
    hold it}, read through /proc/PID/mem."""
    counts = dict.fromkeys(values, 0)
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in harness.read_maps(pid).splitlines():
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "rw" not in fields[1] or end - start > 1 << 28:
                continue
            try:
                mem.seek(start)
                words = array.array("Q", mem.read(end - start))
            except OSError:
                continue
            for v in values:
                counts[v] += words.count(v)
    return counts


def check(where, truth, missed):
    """missed: None (live: found here, each a buffer that the process's
    memory has a second word pointing at), or the set the live run
    missed (a core of the same state: the same)."""
    found = listing(where)
    records = truth["single"] + truth["nested"]
    missing = {rec["buffer"] for rec in records if rec["buffer"] not in found}
    if missed is None:
        # A conservative scan counts stale words too (an in-use chunk's
        # tail past its object, left by a freed allocation): a buffer one
        # of those points at is left unknown, rightly by the rule, and so
        # is a nested one behind it. The process's own memory must show
        # that second word.
        parent = {rec["id"]: rec["buffer"] for rec in truth["single"]}
        seconds = words_in_memory(where, missing)
        for rec in truth["nested"]:
            if rec["buffer"] in missing and parent[rec["id"]] in missing:
                seconds[rec["buffer"]] = 2
        assert all(n >= 2 for n in seconds.values()), seconds
        assert len(missing) <= len(records) // 20, len(missing)
    else:
        assert missing == missed
    for rec in records:
        if rec["buffer"] in missing:
            continue
        o = found[rec["buffer"]]
        assert o["owner"] == rec["id"], hex(rec["buffer"])
        assert o["type"] == KIND
        assert usable(o) >= rec.get("size", 1), (usable(o), rec)
        assert o["allocator"] in ("glibc", "glibc mmap")
    assert truth["shared"]["buffer"] not in found
    owners = {o["owner"] for o in found.values()}
    assert not owners & set(truth["shared"]["ids"])
    assert truth["stale"]["id"] not in owners
    assert truth["stale"]["buffer"] not in found or \
        found[truth["stale"]["buffer"]]["owner"] != truth["stale"]["id"]

    # Its own row, apart from the precise ones; summary says how much.
    r = harness.cli_json("summary", "--json", "--top", 0, where)
    rows = {(x["domain"], x["kind"], x["detail"]): x for x in r["rows"]}
    row = rows[("cpython", KIND, DETAIL)]
    # The tail holder (py_inferred.py) may be one more.
    n = len(records)
    assert n - len(missing) <= row["count"] <= n - len(missing) + 1
    assert row["bytes"] >= sum(rec["size"] for rec in truth["single"]
                               if rec["buffer"] not in missing)
    assert all(x["detail"].endswith("(inferred)") == (x["kind"] == KIND)
               for x in r["rows"])
    assert r["inferred"]["allocations"] >= row["count"]
    assert r["inferred"]["bytes"] >= row["bytes"]
    assert not r["inferred"]["precise"]
    text = harness.run_cli("summary", where).stdout
    assert "inferred owners: %s allocations" % format(
        r["inferred"]["allocations"], ",") in text, text

    # --precise: none inferred, the same memory unknown again.
    p = harness.cli_json("summary", "--json", "--top", 0, "--precise", where)
    assert p["inferred"] == {"allocations": 0, "bytes": 0, "precise": True}
    assert not any(x["kind"] == KIND for x in p["rows"])
    assert p["total"]["bytes"] == r["total"]["bytes"]
    unknown = lambda doc: sum(x["bytes"] for x in doc["rows"]  # noqa: E731
                              if x["kind"] == "unknown")
    assert unknown(p) == unknown(r) + r["inferred"]["bytes"]
    assert listing(where, "--precise") == {}
    assert "inferred owners: off (--precise" in \
        harness.run_cli("summary", "--precise", where).stdout
    return missing


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_inferred_owners(python, mode):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    build = tempfile.mkdtemp(prefix="pm-inferred-ext-")
    try:
        if build_extension(path, build) is None:
            pytest.skip("%s has no C headers" % label)
        flags, extra_env = MODES[mode]
        env = dict(os.environ, **extra_env)
        env.pop("MALLOC_PERTURB_", None)
        with harness.start_stopped([path] + flags + [WORKLOAD, build],
                                   env=env) as t:
            truth = addresses(t.oracle)
            assert len(truth["single"]) == 300
            missed = check(t.pid, truth, None)
            check(t.gcore(), truth, missed)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def test_inferred_owners_gdb():
    """In GDB, `set pymortem precise on` turns the inference off and `off`
    back on (the target reopened each time), on a core of the workload
    under Debian's python3.11."""
    import test_gdb
    path = "/usr/bin/python3.11"
    if not os.access(path, os.X_OK) or shutil.which(test_gdb.GDB) is None:
        pytest.fail("needs %s and GDB" % path)
    build = tempfile.mkdtemp(prefix="pm-inferred-ext-")
    try:
        if build_extension(path, build) is None:
            pytest.fail("python3.11 has no C headers (python3-dev)")
        with harness.start_stopped([path, WORKLOAD, build]) as t:
            truth = addresses(t.oracle)
            core = t.gcore()
            proc = test_gdb.gdb_batch(
                [path, core],
                ["heap summary", "echo ==precise==\\n",
                 "set pymortem precise on", "show pymortem precise",
                 "heap summary", "echo ==again==\\n",
                 "set pymortem precise off", "heap summary"])
            # GDB's own lines come first: from the summary's header on.
            out = proc.stdout[proc.stdout.index("CPython 3."):]
            first, rest = out.split("==precise==\n")
            precise, again = rest.split("==again==\n")
            n = len(truth["single"]) + len(truth["nested"])
            row = [line.split() for line in first.splitlines()
                   if DETAIL in line]
            assert len(row) == 1 and int(row[0][-3].replace(",", "")) >= \
                n - n // 20, first
            assert "inferred owners: " in first and \
                "allocations" in first, first
            assert DETAIL not in precise and \
                "inferred owners: off (--precise" in precise, precise
            assert "only precise attributions: on" in precise, precise
            assert again == first, (again, first)
    finally:
        shutil.rmtree(build, ignore_errors=True)
