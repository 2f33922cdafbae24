"""End-to-end tests of the glibc malloc walker (`pymortem malloc-stats`,
`chunks`, `sizes`) on real frozen processes and their cores.

Truth is glibc's own mallinfo2(), captured inside the target right before it
stopped itself: every field of `malloc-stats --json` must equal it, for the
multi-threaded C target and every installed CPython, live and from gcore and
kernel cores, with and without libc's debug file (--no-debuginfo forces the
signature scan). Corrupted targets must still give a report that counts its
problems; a preloaded jemalloc/tcmalloc must be named."""
import collections
import json
import os
import struct
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (tests/e2e/harness.py)

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
          "fsmblks", "uordblks", "fordblks", "keepcost")
PY_TARGET = os.path.join(HERE, "glibc_py_target.py")
PRELOADS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "mimalloc": "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
}


REPO = os.path.dirname(os.path.dirname(HERE))


def build_dir():
    return os.environ.get("PYMORTEM_BUILD", os.path.join(REPO, "build"))


def c_target_path():
    path = os.path.join(build_dir(), "tests", "targets", "glibc_workload")
    if not os.path.exists(path):
        pytest.fail("C target not built: %s" % path)
    return path


def cli_json(report, *args):
    return harness.cli_json(report, "--json", *args)


def malloc_stats(source, no_debuginfo):
    args = ["malloc-stats", "--json"]
    if no_debuginfo:
        args.append("--no-debuginfo")
    proc = harness.run_cli(*args, str(source), check=False)
    if proc.returncode != 0 and "not supported yet" in proc.stderr:
        pytest.skip("CLI: " + proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_mallinfo_equal(report, oracle):
    want = oracle["mallinfo2"]
    got = {k: report.get(k) for k in FIELDS}
    assert got == {k: want[k] for k in FIELDS}, (
        "malloc-stats differs from mallinfo2():\n got  %s\n want %s\n"
        "warnings: %s" % (got, want, report.get("warnings")))
    assert not report["partial"], report.get("warnings")
    assert report["problems"] == 0, report.get("warnings")
    # per-arena shares add up to the totals
    for k in ("arena", "ordblks", "smblks", "fsmblks", "uordblks",
              "fordblks"):
        assert sum(a[k] for a in report["arenas"]) == report[k], k


def assert_arenas_match_malloc_info(report, oracle):
    """Per arena, against glibc's malloc_info() XML (heaps in the same
    order as the arena ring from main_arena). Its "rest" count is ordblks
    (bin chunks + top); its "rest" size includes flag bits, so it is not
    compared."""
    root = ET.parse(oracle["malloc_info"]).getroot()
    heaps = root.findall("heap")
    assert len(heaps) == len(report["arenas"])
    for heap, arena in zip(heaps, report["arenas"]):
        total = {t.get("type"): t for t in heap.findall("total")}
        system = {t.get("type"): t for t in heap.findall("system")}
        got = (arena["smblks"], arena["fsmblks"], arena["ordblks"],
               arena["arena"])
        want = (int(total["fast"].get("count")),
                int(total["fast"].get("size")),
                int(total["rest"].get("count")),
                int(system["current"].get("size")))
        assert got == want, "arena 0x%x: %s != malloc_info %s" % (
            arena["address"], got, want)
    mmap = next(t for t in root.findall("total") if t.get("type") == "mmap")
    assert (report["hblks"], report["hblkhd"]) == (
        int(mmap.get("count")), int(mmap.get("size")))


def core_of(target, kind):
    return target.gcore() if kind == "gcore" else target.kernel_core()


SOURCES = ["live", "gcore", "kernel"]
DEBUG = [False, True]
DEBUG_IDS = ["debuginfo", "no-debuginfo"]


@pytest.mark.parametrize("no_debuginfo", DEBUG, ids=DEBUG_IDS)
@pytest.mark.parametrize("source", SOURCES)
def test_c_target_mallinfo(source, no_debuginfo):
    with harness.start_stopped([c_target_path(), "--threads", "4"]) as t:
        where = t.pid if source == "live" else core_of(t, source)
        report = malloc_stats(where, no_debuginfo)
        assert_mallinfo_equal(report, t.oracle)
        assert_arenas_match_malloc_info(report, t.oracle)
        # 4 threads, 4 arenas besides main, each thread's tcache found
        assert len(report["arenas"]) == t.oracle["threads"] + 1
        assert report["tcaches"] == t.oracle["threads"] + 1
        assert report["smblks"] > 0 and report["ordblks"] > 5
        assert report["main_arena_source"] == (
            "signature scan" if no_debuginfo else "symbol")


def test_c_target_multi_heap():
    """An arena with two heaps (heap_info chain)."""
    with harness.start_stopped([c_target_path(), "--threads", "2",
                                "--multi-heap"]) as t:
        for nodebug in DEBUG:
            report = malloc_stats(t.pid, nodebug)
            assert_mallinfo_equal(report, t.oracle)
            assert_arenas_match_malloc_info(report, t.oracle)
            assert max(a["heaps"] for a in report["arenas"]) >= 2


def test_c_target_shared_arenas():
    """More threads than glibc's arena limit (8 per CPU): threads share
    arenas, so an arena holds several tcache structs, not only at its start."""
    nthreads = 8 * os.cpu_count() + 1
    assert nthreads <= 64, "the target runs at most 64 threads"
    with harness.start_stopped([c_target_path(), "--threads",
                                str(nthreads)]) as t:
        for nodebug in DEBUG:
            report = malloc_stats(t.pid, nodebug)
            assert_mallinfo_equal(report, t.oracle)
            assert_arenas_match_malloc_info(report, t.oracle)
            assert len(report["arenas"]) == 8 * os.cpu_count()
            assert report["tcaches"] == nthreads + 1


TUNABLES = {
    "big-tcache": "glibc.malloc.tcache_count=60",
    "no-tcache": "glibc.malloc.tcache_count=0",
    "no-fastbins": "glibc.malloc.mxfast=0",
    "two-arenas": "glibc.malloc.arena_max=2",
    "low-mmap-threshold": "glibc.malloc.mmap_threshold=4096",
}


@pytest.mark.parametrize("tunable", sorted(TUNABLES))
def test_c_target_tunables(tunable):
    """glibc tunables change counts, limits and thresholds, not layouts."""
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLES[tunable])
    with harness.start_stopped([c_target_path(), "--threads", "3"],
                               env=env) as t:
        for nodebug in DEBUG:
            report = malloc_stats(t.pid, nodebug)
            assert_mallinfo_equal(report, t.oracle)
            assert_arenas_match_malloc_info(report, t.oracle)


def test_c_target_exited_threads():
    """Arenas of threads that exited stay in the ring; their tcaches were
    freed back into them."""
    with harness.start_stopped([c_target_path(), "--threads", "2",
                                "--exited-threads", "3"]) as t:
        for nodebug in DEBUG:
            report = malloc_stats(t.pid, nodebug)
            assert_mallinfo_equal(report, t.oracle)
            assert_arenas_match_malloc_info(report, t.oracle)
            assert report["tcaches"] == 3     # main + 2 live threads


@pytest.mark.parametrize("no_debuginfo", DEBUG, ids=DEBUG_IDS)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("python", [p for _, p in harness.PYTHONS],
                         ids=[label for label, _ in harness.PYTHONS])
def test_python_mallinfo(python, source, no_debuginfo):
    with harness.start_stopped([python, PY_TARGET, "2"]) as t:
        where = t.pid if source == "live" else core_of(t, source)
        report = malloc_stats(where, no_debuginfo)
        assert_mallinfo_equal(report, t.oracle)
        assert report["hblks"] >= 3    # the bytearrays are mmapped


def test_chunk_listing_agrees_with_totals():
    """chunks/sizes are views of the same walk: their sums must match
    mallinfo2's in-use and free bytes."""
    with harness.start_stopped([c_target_path(), "--threads", "3"]) as t:
        chunks = cli_json("chunks", str(t.pid))["chunks"]
        want = t.oracle["mallinfo2"]
        states = {}
        for c in chunks:
            states.setdefault(c["state"], []).append(c["size"])
        bins = states.get("free-bin", []) + states.get("top", [])
        assert len(bins) == want["ordblks"]
        assert sum(bins) + sum(states.get("free-fastbin", [])) == \
            want["fordblks"]
        mm = states.get("mmapped", [])
        assert len(mm) == want["hblks"]
        # memalign'd mmapped chunks start past their mapping's start
        assert sum(mm) < want["hblkhd"]
        assert sorted(c["address"] + 16 for c in chunks
                      if c["state"] == "mmapped") == \
            sorted(t.oracle["mmapped_user"])
        assert len(states.get("free-tcache", [])) > 0
        addrs = [c["address"] for c in chunks]
        assert addrs == sorted(addrs)
        used = cli_json("chunks", "--used", str(t.pid))
        assert used["matched"] == len(states.get("used", [])) + len(mm)
        sizes = cli_json("sizes", "--top", "100000", str(t.pid))
        assert sizes["count"] == used["matched"]
        assert sizes["bytes"] == sum(c["size"] for c in used["chunks"])
        big = cli_json("chunks", "--free", "--min-size", "4096",
                               str(t.pid))
        assert big["matched"] == sum(
            1 for c in chunks if c["size"] >= 4096 and
            c["state"] in ("free-bin", "free-fastbin", "free-tcache", "top"))


def test_region_labels():
    """Regions get labels from the walk; truth from /proc/PID/maps and the
    target's own pointers."""
    with harness.start_stopped([c_target_path(), "--threads", "2"]) as t:
        regions = cli_json("regions", str(t.pid))["regions"]
        stats = cli_json("malloc-stats", str(t.pid))

        def region_of(addr):
            return next(r for r in regions if r["start"] <= addr < r["end"])
        assert "main heap" in region_of(
            stats["arenas"][0]["top"])["label"]
        for arena in stats["arenas"][1:]:
            heap = region_of(arena["address"])
            assert "arena heap" in heap["label"]
            assert "%x" % arena["address"] in heap["label"]
            assert heap["start"] % (64 << 20) == 0
            # The arena's malloc_state sits in its first heap, right after
            # the heap_info header that starts the mapping.
            assert arena["heap_addresses"] == [heap["start"]], arena
            maps_starts = {m["start"] for m in harness.parse_maps(t.maps_text)}
            assert heap["start"] in maps_starts
            after = [r for r in regions if r["start"] == heap["end"]]
            assert after and "arena reserve" in after[0]["label"]
        for user in t.oracle["mmapped_user"]:
            assert "mmapped" in region_of(user)["label"]


# ---- corruption ---------------------------------------------------------

def poke_live(pid, addr, data):
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as f:
        f.seek(addr)
        f.write(data)


def check_survives(where, no_debuginfo=False, heap_readable=True):
    args = ["malloc-stats", "--json"] + (["--no-debuginfo"]
                                         if no_debuginfo else [])
    proc = harness.run_cli(*args, str(where), check=False)
    if proc.returncode != 0 and "not supported yet" in proc.stderr:
        pytest.skip("CLI: " + proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["partial"] is True
    assert report["problems"] > 0
    assert report["warning_count"] > 0
    if heap_readable:   # the damage is located; the rest is reported
        assert any("address" in w for w in report["warnings"])
        assert report["arena"] > 0 and len(report["arenas"]) >= 2
    return report


def used_chunks(pid, n):
    chunks = cli_json("chunks", "--used", str(pid))["chunks"]
    heap = [c for c in chunks if c["arena"] != "mmapped"]
    step = max(1, len(heap) // (n + 1))
    return heap[step::step][:n]


def tcache_chunk(pid):
    chunks = cli_json("chunks", "--free", str(pid))["chunks"]
    return next(c for c in chunks if c["state"] == "free-tcache")


@pytest.mark.parametrize("no_debuginfo", DEBUG, ids=DEBUG_IDS)
def test_corrupt_sizes_live(no_debuginfo):
    with harness.start_stopped([c_target_path()]) as t:
        for c in used_chunks(t.pid, 5):
            poke_live(t.pid, c["address"] + 8, struct.pack("<Q", 0x7777777))
        check_survives(t.pid, no_debuginfo)


def test_corrupt_tcache_loop_live():
    with harness.start_stopped([c_target_path()]) as t:
        c = tcache_chunk(t.pid)
        user = c["address"] + 16
        # safe-linked pointer to itself: a one-element loop
        poke_live(t.pid, user, struct.pack("<Q", (user >> 12) ^ user))
        report = check_survives(t.pid)
        assert any("loop" in w["message"] or "tcache" in w["message"]
                   for w in report["warnings"])


def test_corrupt_bin_pointer_live():
    """A bin's forward pointer into unmapped memory, a fastbin loop."""
    with harness.start_stopped([c_target_path()]) as t:
        chunks = cli_json("chunks", "--free", str(t.pid))["chunks"]
        binned = next(c for c in chunks if c["state"] == "free-bin")
        fast = next(c for c in chunks if c["state"] == "free-fastbin")
        poke_live(t.pid, binned["address"] + 16,
                  struct.pack("<Q", 0xdead0000))
        fd = fast["address"] + 16
        poke_live(t.pid, fd, struct.pack("<Q", (fd >> 12) ^ fast["address"]))
        report = check_survives(t.pid)
        text = " ".join(w["message"] for w in report["warnings"])
        assert "0xdead0000" in text and "fastbin" in text


def test_corrupt_heap_info_loop_live():
    """A thread arena's newest heap_info points back at itself."""
    with harness.start_stopped([c_target_path(), "--threads", "2",
                                "--multi-heap"]) as t:
        stats = cli_json("malloc-stats", str(t.pid))
        arena = max(stats["arenas"], key=lambda a: a["heaps"])
        heap = arena["top"] & ~((64 << 20) - 1)
        poke_live(t.pid, heap + 8, struct.pack("<Q", heap))
        report = check_survives(t.pid)
        assert any("loops" in w["message"] for w in report["warnings"])


def core_segments(path):
    """(vaddr, offset, filesz) of each PT_LOAD of an ELF64 core."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    segs = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize)
        if p_type == 1:
            segs.append((p_vaddr, p_offset, p_filesz))
    return segs


def poke_core(path, addr, data):
    for vaddr, off, size in core_segments(path):
        if vaddr <= addr and addr + len(data) <= vaddr + size:
            with open(path, "r+b") as f:
                f.seek(off + addr - vaddr)
                f.write(data)
            return
    raise AssertionError("0x%x not in the core's segments" % addr)


def test_corrupt_core_copies(tmp_path):
    with harness.start_stopped([c_target_path()]) as t:
        victims = used_chunks(t.pid, 5)
        tc = tcache_chunk(t.pid)
        core = t.gcore()
        malloc_stats(core, False)   # skips if cores are unsupported
        data = open(core, "rb").read()
        segs = core_segments(core)
    sized = tmp_path / "sizes.core"
    looped = tmp_path / "loop.core"
    cut = tmp_path / "truncated.core"
    for p in (sized, looped):
        p.write_bytes(data)
    for c in victims:
        poke_core(str(sized), c["address"] + 8, struct.pack("<Q", 0x123456))
    user = tc["address"] + 16
    poke_core(str(looped), user, struct.pack("<Q", (user >> 12) ^ user))
    # cut a third into the main heap's segment: the rest of the heap and
    # everything after it are gone
    heap = next(s for s in segs if s[0] <= victims[0]["address"] < s[0] + s[2])
    cut.write_bytes(data[:heap[1] + heap[2] // 3])
    for p in (sized, looped):
        for nodebug in DEBUG:
            check_survives(p, nodebug)
    # libc's data lies beyond the cut (mappings are dumped in address
    # order): the report must say that main_arena is missing
    for nodebug in DEBUG:
        report = check_survives(cut, nodebug, heap_readable=False)
        assert any("main_arena" in w["message"] for w in report["warnings"])


# ---- other allocators ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRELOADS))
def test_preloaded_allocator_is_named(name):
    lib = PRELOADS[name]
    if not os.path.exists(lib):
        pytest.fail("%s is not installed (%s)" % (name, lib))
    python = harness.PYTHONS[0][1]
    env = dict(os.environ, LD_PRELOAD=lib)
    with harness.start_stopped([python, PY_TARGET, "1"], env=env) as t:
        for nodebug in DEBUG:
            args = ["malloc-stats"] + (["--no-debuginfo"] if nodebug else [])
            text = harness.run_cli(*args, str(t.pid)).stdout
            lines = [ln for ln in text.splitlines() if name in ln]
            # Said first (its memory is in no figure), then where glibc's
            # figures would be.
            assert len(lines) == 2 and text.startswith("partial: ") and \
                lines[0] in text.splitlines()[0] and \
                "not in use" in lines[1], text
            js = cli_json("malloc-stats", str(t.pid))
            assert name in js["other_allocator"]


def writable_total(maps):
    return sum(m["size"] for m in maps if m["perms"][1] == "w")


@pytest.mark.parametrize("name", sorted(PRELOADS))
def test_preloaded_allocator_unaccounted_memory(name):
    """With another allocator, summary says FIRST (text and JSON) how much
    of the process's writable memory it does not account for: the writable
    mappings' total, which must be /proc/PID/maps' own, minus its TOTAL;
    TOTAL is marked with it. Live, and (jemalloc) from a gcore."""
    lib = PRELOADS[name]
    if not os.path.exists(lib):
        pytest.fail("%s is not installed (%s)" % (name, lib))
    python = harness.PYTHONS[0][1]
    env = dict(os.environ, LD_PRELOAD=lib)
    with harness.start_stopped([python, PY_TARGET, "1"], env=env) as t:
        writable = writable_total(t.maps)
        sources = [str(t.pid)] + ([t.gcore()] if name == "jemalloc" else [])
        for source in sources:
            doc = json.loads(harness.run_cli("summary", "--json",
                                             source).stdout,
                             object_pairs_hook=collections.OrderedDict)
            assert list(doc)[0] == "partial_reasons", list(doc)[:3]
            reasons = {p["reason"]: p for p in doc["partial_reasons"]}
            assert name in reasons["other-allocator"]["message"], reasons
            total = doc["total"]["bytes"]
            assert doc["writable_bytes"] == writable, (source, writable)
            assert doc["unaccounted_bytes"] == writable - total
            assert reasons["unaccounted"]["missing_bytes"] == writable - total
            assert total < writable
            text = harness.run_cli("summary", source).stdout.splitlines()
            figure = "{:,} of {:,} writable bytes ({:.1f}%) not accounted " \
                     "for".format(writable - total, writable,
                                  100.0 * (writable - total) / writable)
            head = [ln for ln in text if ln.startswith("partial: ")]
            assert text[:len(head)] == head and len(head) == 2, text[:4]
            assert "accounts for {:,} of the process's {:,} writable " \
                "bytes".format(total, writable) in head[1], head
            tot = [ln for ln in text if ln.startswith("TOTAL")]
            assert len(tot) == 1 and tot[0].endswith(figure), (tot, figure)
            assert doc["total"]["partial"].endswith(figure)
