"""`summary` against what the frozen process itself counted: sentinel objects
built at run time (user classes with and without __slots__, dict/list/int
subclasses, floats, ints, strs, small and large bytes), gc.get_objects()
counts per tp_name, pymalloc's allocated bytes (sys._debugmallocstats) and
glibc's in-use bytes (mallinfo2) — for every installed CPython, live and from
a core, with pymalloc, with PYTHONMALLOC=malloc, with -X dev, and without
debug info.
"""

import contextlib
import glob
import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest

import harness
from conftest import python_params

SENTINELS = 2000

# Documented exceptions to "count == count in gc.get_objects()": CPython
# untracks dicts and tuples that hold only atomic values
# (_PyDict_MaybeUntrack, _PyTuple_MaybeUntrack, done lazily by the collector
# and on creation), so such live objects are on no GC list: gc.get_objects()
# misses them, the heap does not. For these the heap count is a lower-bounded
# superset. 3.15 untracks frozensets the same way (of untracked items).
UNTRACKED_OK = {"dict", "tuple", "frozenset"}

MODES = {
    "pymalloc": ([], {}),
    "malloc": ([], {"PYTHONMALLOC": "malloc"}),
    "dev": (["-X", "dev"], {}),
    "debug": ([], {"PYTHONMALLOC": "debug"}),
    "malloc_debug": ([], {"PYTHONMALLOC": "malloc_debug"}),
}
DEBUG_HOOK_MODES = ("dev", "debug", "malloc_debug")
GLIBC_SLACK = 1024


@contextlib.contextmanager
def workload(path, mode, sentinels=SENTINELS):
    """The py_workload under `path` in `mode`; its directory (cores)
    removed after."""
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    argv = [path] + flags + [harness.PY_WORKLOAD, "--sentinels", sentinels]
    with harness.start_stopped(argv, env=env) as t:
        try:
            yield t
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


def last_allocated_bytes(target):
    """'# bytes in allocated blocks' of the workload's last
    sys._debugmallocstats() (None when pymalloc is off)."""
    with open(target.oracle_path + ".last.dms") as f:
        m = re.search(r"^# bytes in allocated blocks\s*=\s*([\d,]+)",
                      f.read(), re.M)
    return int(m.group(1).replace(",", "")) if m else None


def live_counts(report):
    """{tp_name: count} of the live-object rows (python/<type>/-)."""
    return {r["kind"]: r["count"] for r in report["rows"]
            if r["domain"] == "python" and r["detail"] == "-"}


def check_summary(target, where, *extra):
    oracle = target.oracle
    report = harness.cli_json("summary", "--json", *extra, where)
    assert report["python"]["supported"], report["python"]
    assert report["glibc_walked"], "glibc heap not walked: %s" % \
        report["notes"]
    counts = live_counts(report)

    # Sentinel classes: exact.
    for name, n in oracle["sentinels"].items():
        assert counts.get(name) == n, name
    # Sentinel values: at least as many as built (the interpreter has more).
    values = oracle["sentinel_values"]
    assert counts.get("float", 0) >= values["float"]
    assert counts.get("int", 0) >= values["int"]
    assert counts.get("str", 0) >= values["str"]
    assert counts.get("bytes", 0) >= values["bytes_small"] + \
        values["bytes_large"]

    # Every GC-tracked type: the count of gc.get_objects().
    assert oracle["gc_counts_key"] == "tp_name"
    wrong = {}
    for name, n in oracle["gc_counts"].items():
        ours = counts.get(name, 0)
        if ours != n and not (name in UNTRACKED_OK and ours >= n):
            wrong[name] = (n, ours)
    assert not wrong, "tp_name: (gc.get_objects(), ours): %s" % wrong

    # Every in-use allocation in exactly one row: the totals are the
    # allocators' own.
    by_allocator = harness.cli_json("summary", "--json", "--by", "allocator",
                                    *extra, where)
    assert by_allocator["total"] == report["total"]
    assert sum(r["count"] for r in report["rows"]) == report["total"]["count"]
    assert sum(r["bytes"] for r in report["rows"]) == report["total"]["bytes"]
    bytes_by = {r["domain"]: r["bytes"] for r in by_allocator["rows"]}
    mi = oracle["mallinfo2"]
    glibc = sum(v for k, v in bytes_by.items() if k.startswith("glibc"))
    if oracle["version"]["pythonmalloc"] in ("malloc", "malloc_debug"):
        # With every Python object in glibc, the workload's own few lines
        # after its mallinfo2() call (writing the oracle) move a chunk or
        # two; the read cannot be the last act there.
        assert abs(glibc - (mi["uordblks"] + mi["hblkhd"])) <= GLIBC_SLACK
    else:
        assert glibc == mi["uordblks"] + mi["hblkhd"]
    pymalloc = last_allocated_bytes(target)
    assert bytes_by.get("pymalloc", 0) == (pymalloc or 0)
    return report


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_summary_live(python, mode):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, mode) as t:
        report = check_summary(t, t.pid)
        # a pydebug build installs the debug hooks whatever the mode
        # (PYTHONMALLOC=malloc included: malloc_debug)
        assert report["debug_hooks"] == (mode in DEBUG_HOOK_MODES or
                                         t.oracle["version"]["debug_build"])


@pytest.mark.parametrize("python", python_params())
def test_summary_gcore(python):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc") as t:
        check_summary(t, t.gcore())


@pytest.mark.parametrize("python", python_params())
def test_summary_kernel_core(python, kernel_cores):
    """A kernel core lacks read-only file pages (static types' tp_name in
    .rodata): they come from the ELF files on disk."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc") as t:
        check_summary(t, t.kernel_core())


@pytest.mark.parametrize("python", python_params())
def test_summary_no_debuginfo(python):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc") as t:
        report = harness.cli_json("summary", "--json", "--no-debuginfo",
                                  t.pid)
        assert report["pymalloc_walked"], report["notes"]
        check_summary(t, t.pid, "--no-debuginfo")


@pytest.mark.parametrize("python", python_params())
def test_summary_all(python):
    """--all adds what the allocators hold unused (pymalloc free blocks,
    unused pools, pool headers, quantization, arena alignment; glibc bins,
    fastbins, top): the rows then add up to pymalloc's arenas (the 'Total'
    of sys._debugmallocstats()) and glibc's heaps (mallinfo2 arena +
    hblkhd)."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc", sentinels=1000) as t:
        r = harness.cli_json("summary", "--json", "--all", "--by",
                             "allocator", t.pid)
        mine = {}
        for x in r["rows"]:
            key = "glibc" if x["domain"].startswith("glibc") else x["domain"]
            mine[key] = mine.get(key, 0) + x["bytes"]
        with open(t.oracle_path + ".last.dms") as f:
            total = int(re.search(r"^Total\s*=\s*([\d,]+)", f.read(),
                                  re.M).group(1).replace(",", ""))
        mi = t.oracle["mallinfo2"]
        assert mine == {"pymalloc": total,
                        "glibc": mi["arena"] + mi["hblkhd"]}
        free = harness.cli_json("summary", "--json", "--free", t.pid)
        used = harness.cli_json("summary", "--json", t.pid)
        assert free["total"]["bytes"] + used["total"]["bytes"] == \
            r["total"]["bytes"]


def arena_header_size(target):
    """Bytes from a thread arena's first heap to its first chunk, from
    glibc's sources (arena.c _int_new_arena): heap_info (0x20 bytes up to
    2.34, 0x30 from 2.35), malloc_state (0x898 on 2.27-2.42; 0x840 on 2.43,
    without fastbins: sizeof in gdb with Debian's libc6-dbg), rounded up so
    that the first chunk's user data is 16-aligned. The glibc is the one
    the target says it runs on."""
    major, minor = target.oracle["version"]["glibc"]
    assert (2, 27) <= (major, minor) <= (2, 43), (major, minor)
    state = 0x840 if minor >= 43 else 0x898
    return ((0x30 if minor >= 35 else 0x20) + state + 15) & ~15


def check_totals(target, where, threads):
    """TOTAL is the allocators' own in-use total, exactly: mallinfo2's
    uordblks + hblkhd (which count each thread arena's header: heap_info
    and malloc_state, inside its system_mem) plus pymalloc's allocated
    bytes; the headers are a row of their own, one per thread (each
    thread's first malloc made its arena: threads < 8 * cores)."""
    by = harness.cli_json("summary", "--json", "--by", "allocator", where)
    rows = harness.cli_json("summary", "--json", where)["rows"]
    mi = target.oracle["mallinfo2"]
    glibc = sum(r["bytes"] for r in by["rows"]
                if r["domain"].startswith("glibc"))
    pymalloc = last_allocated_bytes(target) or 0
    assert glibc == mi["uordblks"] + mi["hblkhd"], (
        glibc - mi["uordblks"] - mi["hblkhd"], by["rows"])
    assert by["total"]["bytes"] == mi["uordblks"] + mi["hblkhd"] + pymalloc
    headers = [r for r in rows if (r["domain"], r["kind"], r["detail"]) ==
               ("glibc", "arena header", "heap_info + malloc_state")]
    assert (sum(r["count"] for r in headers),
            sum(r["bytes"] for r in headers)) == (
        threads, threads * arena_header_size(target))


@pytest.mark.parametrize("threads", [0, 1, 3])
@pytest.mark.parametrize("python", python_params())
def test_summary_threads_total(python, threads, kernel_cores):
    """With 0, 1 and 3 threads that allocate (each in its own glibc
    arena), live, from a gcore core and (3 threads) from a kernel core."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    argv = [path, harness.PY_WORKLOAD, "--sentinels", 300, "--threads",
            threads]
    with harness.start_stopped(argv, env=env) as t:
        try:
            assert len(t.oracle["threads"]) == threads
            check_totals(t, t.pid, threads)
            check_totals(t, t.gcore(), threads)
            if threads == 3:
                check_totals(t, t.kernel_core(), threads)
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


def test_summary_groupings():
    """--by and --top change the rows, never the total."""
    label, path = harness.PYTHONS[-1] if harness.PYTHONS else (None, None)
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc", sentinels=500) as t:
        base = harness.cli_json("summary", "--json", t.pid)
        for by in ("type", "size", "region", "allocator"):
            r = harness.cli_json("summary", "--json", "--by", by, t.pid)
            assert r["total"] == base["total"], by
            assert sum(x["bytes"] for x in r["rows"]) == r["total"]["bytes"]
            assert [x["bytes"] for x in r["rows"]] == \
                sorted((x["bytes"] for x in r["rows"]), reverse=True)
        region = harness.cli_json("summary", "--json", "--by", "region", t.pid)
        arena_bytes = sum(x["bytes"] for x in region["rows"]
                          if x["kind"] == "pymalloc arena")
        assert arena_bytes == last_allocated_bytes(t)
        top = harness.cli_json("summary", "--json", "--top", 5, t.pid)
        assert len(top["rows"]) == 5 and top["total"] == base["total"]
        assert top["rows"] == base["rows"][:5]
        text = harness.run_cli("summary", "--top", 5, t.pid).stdout
        assert re.search(r"^TOTAL\s", text, re.M)
        assert_rows_not_shown(t, top, text, len(base["rows"]), "--top 0")
        # Without --top (or with --top 0): every row, nothing left out.
        assert base["rows_not_shown"] == {"rows": 0, "count": 0, "bytes": 0}
        assert harness.cli_json("summary", "--json", "--top", 0, t.pid) == base
        assert "more row" not in harness.run_cli("summary", t.pid).stdout
        bad = harness.run_cli("summary", "--by", "colour", t.pid, check=False)
        assert bad.returncode != 0 and "colour" in bad.stderr


def parse_grouped(text):
    return int(text.replace(",", ""))


def assert_rows_not_shown(target, report, text, nrows, all_rows_option):
    """The rows a --top left out are added up in rows_not_shown and in the
    text's last line, so that with the rows shown they make TOTAL; and
    TOTAL is the allocators' own in-use bytes (mallinfo2's uordblks +
    hblkhd and pymalloc's allocated blocks, read in the process)."""
    shown = report["rows"]
    hidden = report["rows_not_shown"]
    total = report["total"]
    assert hidden["rows"] == nrows - len(shown) > 0
    assert sum(r["count"] for r in shown) + hidden["count"] == total["count"]
    assert sum(r["bytes"] for r in shown) + hidden["bytes"] == total["bytes"]
    mi = target.oracle["mallinfo2"]
    assert total["bytes"] == mi["uordblks"] + mi["hblkhd"] + \
        (last_allocated_bytes(target) or 0)
    lines = text.rstrip("\n").splitlines()
    # Summary's closing lines (leak suspects, what was inferred) may follow.
    while lines and lines[-1].startswith(("leak suspect: ", "inferred owners: ")):
        lines.pop()
    m = re.fullmatch(r"(\d+) more rows: ([\d,]+) allocations, ([\d,]+) bytes "
                     r"\((\S+(?: \d+)?) to show them\)", lines[-1])
    assert m, lines[-1]
    assert (int(m.group(1)), parse_grouped(m.group(2)),
            parse_grouped(m.group(3))) == (hidden["rows"], hidden["count"],
                                           hidden["bytes"])
    assert m.group(4) == all_rows_option
    assert lines[-2].startswith("TOTAL")
    return m


def size_class_rows(target):
    """{block size: blocks in use} of the class rows of the workload's last
    sys._debugmallocstats()."""
    with open(target.oracle_path + ".last.dms") as f:
        text = f.read()
    return {int(size): int(used) for _, size, _, used, _ in re.findall(
        r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)
        if int(used)}


@pytest.mark.parametrize("mode", ["pymalloc", "malloc"])
@pytest.mark.parametrize("python", python_params())
def test_sizes_by_allocator(python, mode):
    """`sizes` has a row per glibc chunk size and per pymalloc size class:
    the pymalloc rows are sys._debugmallocstats()'s classes (blocks in use
    per block size, the process's own numbers), and the glibc rows add up,
    with the chunks glibc keeps for itself (tcache entries and structs,
    which mallinfo2 counts as in use), to mallinfo2's uordblks + hblkhd.
    With PYTHONMALLOC=malloc there are no pymalloc rows and it says so. A
    --top leaves out rows that its last line adds up."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, mode, sentinels=500) as t:
        r = harness.cli_json("sizes", "--json", "--top", 10 ** 6, t.pid)
        rows = r["sizes"]
        assert r["rows_not_shown"] == {"rows": 0, "count": 0, "bytes": 0}
        assert [x["bytes"] for x in rows] == \
            sorted((x["bytes"] for x in rows), reverse=True)
        pymalloc = {x["size"]: x["count"] for x in rows
                    if x["allocator"] == "pymalloc"}
        text = harness.run_cli("sizes", t.pid).stdout
        if mode == "pymalloc":
            assert pymalloc == size_class_rows(t)
            assert r["pymalloc"]["bytes"] == last_allocated_bytes(t)
            assert "pymalloc: %s blocks in use" % format(
                r["pymalloc"]["count"], ",") in text
        else:
            assert pymalloc == {}
            assert not r["pymalloc"].get("in_use"), r["pymalloc"]
            assert "pymalloc: not in use" in text
        glibc = [x for x in rows if x["allocator"] == "glibc"]
        assert sum(x["bytes"] for x in glibc) == r["glibc"]["bytes"]
        assert sum(x["count"] for x in glibc) == r["glibc"]["count"]
        chunks = harness.cli_json("chunks", "--json", t.pid)["chunks"]
        kept = sum(c["size"] for c in chunks
                   if c["state"] in ("free-tcache", "tcache-struct"))
        mi = t.oracle["mallinfo2"]
        mine = r["glibc"]["bytes"] + kept
        if mode == "malloc":
            # (see check_summary: the oracle's last lines move a chunk)
            assert abs(mine - (mi["uordblks"] + mi["hblkhd"])) <= GLIBC_SLACK
        else:
            assert mine == mi["uordblks"] + mi["hblkhd"]
        top = harness.cli_json("sizes", "--json", "--top", 5, t.pid)
        assert top["sizes"] == rows[:5]
        assert top["rows_not_shown"] == {
            "rows": len(rows) - 5,
            "count": sum(x["count"] for x in rows[5:]),
            "bytes": sum(x["bytes"] for x in rows[5:])}
        # the table's last line, before any warnings (glibc 2.43's
        # hblkhd drift under a pydebug build, say)
        last = harness.run_cli("sizes", "--top", 5, t.pid).stdout \
            .split("\nwarnings (")[0].rstrip("\n").splitlines()[-1]
        assert last == "%d more rows: %s allocations, %s bytes (--top N to " \
            "show more)" % (len(rows) - 5,
                            format(top["rows_not_shown"]["count"], ","),
                            format(top["rows_not_shown"]["bytes"], ","))


def test_summary_not_python():
    """A process that is not Python: glibc rows only, by size, and a note
    that says why."""
    proc = subprocess.Popen(["/bin/sleep", "300"])
    try:
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGSTOP)
        harness.wait_stopped(proc.pid)
        r = harness.cli_json("summary", "--json", proc.pid)
        assert not r["python"]["found"]
        assert any("not a CPython process" in n for n in r["notes"])
        assert r["rows"] and all(x["domain"].startswith("glibc")
                                 for x in r["rows"])
        # `sizes` says that it has no pymalloc part, and why.
        sizes = harness.cli_json("sizes", "--json", proc.pid)
        assert not sizes["pymalloc"]["found"]
        assert "not a CPython process" in sizes["pymalloc"]["missing"]
        assert sizes["sizes"] and all(x["allocator"] == "glibc"
                                      for x in sizes["sizes"])
        assert "pymalloc: not analysed: not a CPython process" in \
            harness.run_cli("sizes", proc.pid).stdout
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["pymalloc", "malloc"])
@pytest.mark.parametrize("python", python_params())
def test_summary_by_owner(python, mode):
    """--by owner splits the buffers objects own by the owner's type: each
    ListSentinel (made from a 1-tuple) owns one 'list items', each
    DictSentinel (made with one key) its own 'dict keys', and on 3.11/3.12
    each PlainSentinel instance its 'dict values' (3.13 keeps them inline,
    3.8-3.10 in their __dict__, whose buffers are named "__dict__ of
    PlainSentinel"); counts as the process made them. Every
    allocation stays in exactly one row: per kind, the owner rows add up to
    the --by type row, and the totals are equal."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, mode) as t:
        made = t.oracle["sentinels"]
        minor = t.oracle["version"]["version_info"][1]
        by_type = harness.cli_json("summary", "--json", t.pid)
        by_owner = harness.cli_json("summary", "--json", "--by", "owner",
                                    t.pid)
        assert by_owner["by"] == "owner"
        assert by_owner["total"] == by_type["total"]
        rows = {(r["domain"], r["kind"], r["detail"]): r
                for r in by_owner["rows"]}

        def count(kind, owner):
            return rows.get(("cpython", kind, owner), {}).get("count", 0)
        assert count("list items", "ListSentinel") == made["ListSentinel"]
        assert count("dict keys", "DictSentinel") == made["DictSentinel"]
        if minor in (11, 12):
            assert count("dict values", "PlainSentinel") == \
                made["PlainSentinel"]
        if minor <= 10:
            # Each instance's __dict__ is a split dict whose values array
            # the dict owns: named by the instance's class.
            assert count("dict values", "__dict__ of PlainSentinel") == \
                made["PlainSentinel"]
        for r in by_type["rows"]:
            # Inferred buffers have no owner by this split: their rows
            # ("held by T (inferred)") stay as they are.
            split = r["domain"] == "cpython" and r["kind"] != "inferred buffer"
            parts = [o for o in by_owner["rows"]
                     if (o["domain"], o["kind"]) == (r["domain"], r["kind"])
                     and (split or o["detail"] == r["detail"])]
            assert sum(o["count"] for o in parts) == r["count"], r
            assert sum(o["bytes"] for o in parts) == r["bytes"], r


@pytest.mark.parametrize("python", python_params())
def test_summary_corrupt_object(python):
    """An instance whose ob_type is overwritten is no longer counted as its
    class (nor as anything else); every other count and the total stay."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with workload(path, "pymalloc", sentinels=500) as t:
        clean = harness.cli_json("summary", "--json", t.pid)
        victim = t.oracle["sentinel_addresses"]["SlotsSentinel"][3]
        with open("/proc/%d/mem" % t.pid, "r+b", buffering=0) as f:
            f.seek(victim + 8)
            f.write(struct.pack("<Q", 0x10))
        report = harness.cli_json("summary", "--json", t.pid)
        before, after = live_counts(clean), live_counts(report)
        assert after["SlotsSentinel"] == before["SlotsSentinel"] - 1
        assert report["objects"] == clean["objects"] - 1
        assert report["total"] == clean["total"]


@pytest.mark.parametrize("python", python_params())
def test_summary_survives_random_corruption(python):
    """Hundreds of random words overwritten around live objects (pool
    headers, free lists, object headers, GC links): both reports still
    finish with a JSON answer and account for every allocation they walk
    (run it on an ASan build to catch a bad read: it found an address
    overflow in the GC-link check)."""
    import random
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    rng = random.Random(label)
    with workload(path, "pymalloc", sentinels=300) as t:
        addrs = [a for v in t.oracle["sentinel_addresses"].values() for a in v]
        pool_size = harness.cli_json("pymalloc-stats", "--json",
                                     t.pid)["pool_size"]
        with open("/proc/%d/mem" % t.pid, "r+b", buffering=0) as f:
            for k in range(400):
                a = (rng.choice(addrs) + rng.randrange(-65536, 65536)) & ~7
                if k % 2:   # a pool header field
                    a = (a & ~(pool_size - 1)) + rng.randrange(0, 48, 8)
                word = struct.pack("<Q", rng.choice(
                    [0, 1, 0xffffffffffffffff, rng.getrandbits(64),
                     rng.choice(addrs), rng.choice(addrs) + 8]))
                try:
                    f.seek(a)
                    f.write(word)
                except OSError:
                    pass    # not mapped there
        stats = harness.cli_json("pymalloc-stats", "--json", t.pid)
        assert stats["found"]
        report = harness.cli_json("summary", "--json", t.pid)
        assert sum(r["bytes"] for r in report["rows"]) == \
            report["total"]["bytes"]
        assert report["warning_count"] >= len(report["warnings"])


@pytest.mark.parametrize("python", python_params())
def test_summary_survives_random_heap_corruption(python):
    """With every object in glibc chunks (PYTHONMALLOC=malloc) and the
    container chains of --containers (deque blocks, odict nodes, array and
    StringIO buffers): hundreds of random words overwritten over the glibc
    heap (chunk headers, object headers, chain links, buffer pointers).
    Every report still answers (exit 0, a JSON document: an ASan/UBSan
    build turns any bad read into a failure here), accounts for every
    allocation it walks, and says it found problems when glibc's own
    chunk headers were hit."""
    import random
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    rng = random.Random("heap" + label)
    env = dict(os.environ, PYTHONMALLOC="malloc")
    env.pop("MALLOC_PERTURB_", None)
    argv = [path, harness.PY_WORKLOAD, "--sentinels", 200, "--containers", 24]
    with harness.start_stopped(argv, env=env) as t:
        try:
            heap = [r for r in harness.cli_json("regions", "--json", t.pid)
                    ["regions"] if "glibc main heap" in r.get("label", "")]
            assert heap, "no main heap region"
            lo, hi = heap[0]["start"], heap[0]["end"]
            anchors = [a for a, _ in t.oracle["containers"]["arrays"]] + [
                a for v in t.oracle["sentinel_addresses"].values() for a in v]
            with open("/proc/%d/mem" % t.pid, "r+b", buffering=0) as f:
                for k in range(600):
                    if k % 3:
                        a = rng.choice(anchors) + rng.randrange(-4096, 4096)
                    else:
                        a = rng.randrange(lo, hi)
                    a &= ~7
                    word = struct.pack("<Q", rng.choice(
                        [0, 1, 0x21, 0xffffffffffffffff, rng.getrandbits(64),
                         rng.choice(anchors), a + 8, a - 16]))
                    try:
                        f.seek(a)
                        f.write(word)
                    except OSError:
                        pass    # not mapped there
            for report in (["summary"], ["summary", "--by", "allocator"],
                           ["objects", "--limit", 100],
                           ["allocations", "--all", "--limit", 100],
                           ["malloc-stats"], ["pymalloc-stats"]):
                r = harness.cli_json(*(report + ["--json", t.pid]))
                if report[0] == "summary":
                    assert sum(x["bytes"] for x in r["rows"]) == \
                        r["total"]["bytes"]
                    assert r["warning_count"] >= len(r["warnings"])
                    # ~200 random words over the heap hit chunk headers.
                    assert r["warning_count"] > 0
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


FAKE_PYTHON_C = r"""
/* Looks like a CPython to the detector: the symbols it starts from. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
struct { char cookie[8]; uint64_t version, free_threaded; char rest[4096]; }
#ifdef NO_RUNTIME       /* CPython before 3.7 */
    not_a_runtime;
#define _PyRuntime not_a_runtime
#else
    _PyRuntime;
#endif
void Py_Initialize(void) {}
int main(int argc, char **argv)
{
    if (argc > 2) {   /* a 3.13+ _Py_DebugOffsets header */
        memcpy(_PyRuntime.cookie, "xdebugpy", 8);
        _PyRuntime.version = strtoull(argv[1], NULL, 16);
        _PyRuntime.free_threaded = strtoull(argv[2], NULL, 10);
    }
    void *keep = malloc(1000);
    (void)keep;
    for (;;)
        raise(SIGSTOP);
}
"""


@pytest.mark.parametrize("name,args,expect", [
    ("python3.16", [], "CPython 3.16 is not supported (supported: 3.8 to 3.15)"),
    ("python3.7", [], "CPython 3.7 is not supported"),
    ("python2.7", [], "CPython 2.7 is not supported"),
    ("python3.13t", ["0x030d00f0", "1"],
     "free-threaded CPython 3.13t (mimalloc, no pymalloc) is not supported"),
])
def test_summary_unsupported_python(tmp_path, name, args, expect):
    """A Python outside 3.8-3.13 or a free-threaded build: said in the
    output (which version, why), and the summary is glibc only."""
    src = tmp_path / "fake.c"
    src.write_text(FAKE_PYTHON_C)
    exe = tmp_path / name
    defines = ["-DNO_RUNTIME"] if name.startswith("python2") else []
    subprocess.run(["cc", "-rdynamic"] + defines + ["-o", str(exe), str(src)],
                   check=True)
    proc = subprocess.Popen([str(exe)] + args)
    try:
        harness.wait_stopped(proc.pid)
        r = harness.cli_json("summary", "--json", proc.pid)
        assert r["python"]["found"] and not r["python"]["supported"]
        assert expect in r["python"]["unsupported"]
        assert any(expect in n for n in r["notes"])
        assert all(x["domain"].startswith("glibc") for x in r["rows"])
        stats = harness.run_cli("pymalloc-stats", proc.pid).stdout
        assert expect in stats
    finally:
        proc.kill()
        proc.wait()


def old_pythons():
    """Real interpreters outside 3.8-3.13 installed here (pyenv's 2.7, 3.6,
    3.7), as (version, path)."""
    found = []
    for path in sorted(glob.glob("/root/.pyenv/versions/*/bin/python")):
        version = path.split("/")[-3]
        m = re.match(r"(\d+)\.(\d+)\.\d+$", version)
        if m and (int(m.group(1)), int(m.group(2))) < (3, 8):
            found.append(pytest.param(version, path, id=version))
    return found


OLD_PYTHON_CODE = """
import ctypes, os, signal, sys
keep = [str(i) * 3 for i in range(50000)]
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
        "fordblks keepcost").split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2
line = "%d %d\\n"
mi = mallinfo2()
sys.stdout.write(line % (mi.uordblks, mi.hblkhd))
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.parametrize("version,path", old_pythons())
def test_summary_real_old_python(version, path):
    """A real CPython older than 3.8: the report names its version as not
    supported and analyses glibc alone, every in-use chunk still in one row:
    the total is the process's own mallinfo2() in-use bytes."""
    major_minor = ".".join(version.split(".")[:2])
    proc = subprocess.Popen([path, "-c", OLD_PYTHON_CODE],
                            stdout=subprocess.PIPE)
    try:
        uordblks, hblkhd = map(int, proc.stdout.readline().split())
        harness.wait_stopped(proc.pid, proc=proc)
        r = harness.cli_json("summary", "--json", "--by", "allocator",
                             proc.pid)
        expect = "CPython %s is not supported (supported: 3.8 to 3.15)" % (
            major_minor)
        assert r["python"]["found"] and not r["python"]["supported"]
        assert expect in r["python"]["unsupported"]
        assert all(x["domain"].startswith("glibc") for x in r["rows"])
        # The few lines after mallinfo2() (the write) may move a chunk.
        assert abs(r["total"]["bytes"] - (uordblks + hblkhd)) <= GLIBC_SLACK
        assert expect in harness.run_cli("pymalloc-stats", proc.pid).stdout
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["pymalloc", "malloc", "dev"])
@pytest.mark.parametrize("python", python_params())
def test_objects_at_gc_addresses(python, mode):
    """Every object on the interpreter's GC lists (gc.get_objects(), with
    its address and tp_name) is recognised at exactly that address, with
    that type name."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    argv = [path] + flags + [harness.PY_WORKLOAD, "--sentinels", 300,
                             "--gc-addresses"]
    with harness.start_stopped(argv, env=env) as t:
        try:
            with open(t.oracle["gc_objects_file"]) as f:
                expected = {}
                for line in f:
                    address, name = line.rstrip("\n").split(" ", 1)
                    expected[int(address, 16)] = name
            r = harness.cli_json("objects", "--json", "--limit", 10 ** 9,
                                 t.pid)
            assert r["shown"] == r["matching"] == len(r["objects"])
            ours = {o["address"]: o["type"] for o in r["objects"]
                    if o["state"] == "live"}
            missing = {hex(a): n for a, n in expected.items()
                       if ours.get(a) != n}
            assert not missing, "%d of %d GC objects not recognised: %s" % (
                len(missing), len(expected), dict(list(missing.items())[:10]))
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)
