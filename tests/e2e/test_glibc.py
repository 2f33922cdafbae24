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


def glibc_minor():
    """This machine's glibc (the targets run on it): 2.<minor>."""
    major, minor = map(int, os.confstr("CS_GNU_LIBC_VERSION").split()[1]
                       .split(".")[:2])
    assert major == 2 and 27 <= minor <= 42, (major, minor)
    return minor


def heap_info_size():
    """sizeof(heap_info), arena.c: four words up to 2.34; 2.35 adds
    pagesize and 8 bytes of pad (sizeof + 2 * SIZE_SZ is 16-aligned)."""
    return 0x30 if glibc_minor() >= 35 else 0x20


def arena_header_size():
    """Bytes from a thread arena's first heap to its first chunk, from
    glibc's sources (arena.c _int_new_arena: heap_info, then malloc_state,
    0x898 bytes on 2.27-2.42, then the top chunk placed so that its user
    data is 16-aligned): 2,256 on 2.35+, 2,240 before."""
    return (heap_info_size() + 0x898 + 15) & ~15


def summary_totals(where):
    """summary --by allocator: (its TOTAL bytes, the bytes of every glibc
    allocator row); and the plain summary's rows."""
    by = cli_json("summary", "--by", "allocator", str(where))
    rows = cli_json("summary", str(where))["rows"]
    glibc = sum(r["bytes"] for r in by["rows"]
                if r["domain"].startswith("glibc"))
    return by["total"]["bytes"], glibc, rows


def glibc_rows(rows, kind, detail=None):
    """(count, bytes) of the summary's glibc rows of that kind (and detail)."""
    picked = [r for r in rows if r["domain"] == "glibc" and r["kind"] == kind
              and (detail is None or r["detail"] == detail)]
    return (sum(r["count"] for r in picked), sum(r["bytes"] for r in picked))


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("threads", [0, 1, 3])
def test_c_target_summary_total(threads, source):
    """Every byte mallinfo2 counts in use is in one summary row: TOTAL ==
    uordblks + hblkhd, with 0, 1 and 3 thread arenas, whose headers
    (heap_info + malloc_state, not chunks, but inside the arena's
    system_mem) are rows of their own, one per thread arena (each thread's
    first malloc made one: threads < 8 * cores), as big as glibc's sources
    say. The memalign'd mmapped chunks' leads count in hblkhd too."""
    with harness.start_stopped([c_target_path(), "--threads",
                                str(threads)]) as t:
        where = t.pid if source == "live" else core_of(t, source)
        total, glibc, rows = summary_totals(where)
        mi = t.oracle["mallinfo2"]
        assert total == glibc == mi["uordblks"] + mi["hblkhd"], (
            total, mi["uordblks"] + mi["hblkhd"])
        arenas = {a["arena"] for a in t.oracle["thread_arenas"]}
        assert len(arenas) == threads and 0 not in arenas
        assert glibc_rows(rows, "arena header", "heap_info + malloc_state") \
            == (threads, threads * arena_header_size())
        assert glibc_rows(rows, "memalign padding")[0] > 0


def test_c_target_multi_heap_total():
    """A thread arena with a second heap: the older heap ends with a
    fencepost (32 bytes, sysmalloc), the newer starts with a heap_info;
    both are in use for mallinfo2, and in the summary."""
    with harness.start_stopped([c_target_path(), "--threads", "2",
                                "--multi-heap"]) as t:
        stats = malloc_stats(t.pid, False)
        assert_mallinfo_equal(stats, t.oracle)
        later_heaps = sum(a["heaps"] - 1 for a in stats["arenas"]
                          if not a["main"])
        assert later_heaps >= 1
        for a in stats["arenas"]:
            assert a["header_bytes"] == (0 if a["main"] else
                                         arena_header_size() +
                                         heap_info_size() *
                                         (a["heaps"] - 1)), a
        for where in (t.pid, t.gcore()):
            total, glibc, rows = summary_totals(where)
            mi = t.oracle["mallinfo2"]
            assert total == glibc == mi["uordblks"] + mi["hblkhd"]
            assert glibc_rows(rows, "arena header", "heap_info")[0] == \
                later_heaps
            assert glibc_rows(rows, "heap fencepost") == \
                (later_heaps, 32 * later_heaps)


def test_c_target_describe_arena_header():
    """An address inside a thread arena's malloc_state (the arena address
    the thread's own chunk leads to by glibc's arena_for_chunk rule) is in
    the allocation 'glibc arena header' that starts at that heap's start
    (listed in `allocations` too), not in a chunk."""
    with harness.start_stopped([c_target_path(), "--threads", "3"]) as t:
        size = arena_header_size()
        listed = cli_json("select", "--query", 'kind == "arena header"',
                          str(t.pid))["allocations"]
        assert sorted((a["address"], a["size"], a["header"]) for a in
                      listed) == sorted((a["heap"], size, 0) for a in
                                        t.oracle["thread_arenas"])
        for a in t.oracle["thread_arenas"]:
            assert a["heap"] < a["arena"] < a["heap"] + size
            for inside in (a["arena"] + 0x100, a["heap"] + 8,
                           a["heap"] + size - 8):
                d = cli_json("describe", "--address", inside, str(t.pid))
                assert d["chunk"] is None, d
                alloc = d["allocation"]
                assert (alloc["domain"], alloc["kind"], alloc["address"],
                        alloc["size"], alloc["state"]) == (
                    "glibc", "arena header", a["heap"], size, "used"), d
            text = harness.run_cli("describe", "--address", a["arena"] + 0x100,
                                   str(t.pid)).stdout
            assert "glibc arena header" in text, text
            assert "malloc_state of arena 0x%x" % a["arena"] in text, text


def mapping_pieces(maps, start, end):
    """The /proc/PID/maps entries [start, end) reaches into, clipped."""
    return [(max(m["start"], start), min(m["end"], end)) for m in maps
            if m["start"] < end and m["end"] > start]


def check_split_mmapped(where, oracle, maps, blocks, min_pieces):
    """Mmapped chunks whose mapping the kernel split (blocks: the process's
    pointers and malloc_usable_size: an mmapped chunk is usable + 16
    bytes from user - 16): every one is found at that address with that
    size, hblks/hblkhd are mallinfo2's, and every piece of each mapping is
    labelled an mmapped chunk in `regions`."""
    assert blocks, "the workload made no split blocks: the test is empty"
    for b in blocks:
        # the workload did split each mapping (the kernel's own record)
        start, end = b["user"] - 16, b["user"] + b["usable"]
        assert len(mapping_pieces(maps, start, end)) >= min_pieces, b
    stats = cli_json("malloc-stats", str(where))
    mi = oracle["mallinfo2"]
    assert (stats["hblks"], stats["hblkhd"]) == (mi["hblks"], mi["hblkhd"]), \
        stats["warnings"] if "warnings" in stats else stats
    assert not stats["partial"] and stats["problems"] == 0
    chunks = {c["address"]: c["size"] for c in
              cli_json("chunks", str(where))["chunks"]
              if c["state"] == "mmapped"}
    for b in blocks:
        assert chunks.get(b["user"] - 16) == b["usable"] + 16, b
    regions = cli_json("regions", str(where))["regions"]
    for b in blocks:
        start, end = b["user"] - 16, b["user"] + b["usable"]
        for lo, hi in mapping_pieces(maps, start, end):
            r = next(r for r in regions if r["start"] <= lo < r["end"])
            assert "glibc mmapped chunk" in r["label"], r
            area = [x for x in r["areas"] if x["label"] ==
                    "glibc mmapped chunk"]
            assert area and area[0]["bytes"] >= hi - lo, r
    labelled = sum(x["bytes"] for r in regions for x in r["areas"]
                   if x["label"] == "glibc mmapped chunk")
    assert labelled == mi["hblkhd"]


@pytest.mark.parametrize("source", SOURCES)
def test_c_target_split_mmapped(source):
    """madvise(MADV_HUGEPAGE) on most of a block (what numpy does for
    arrays over 4 MiB) splits its chunk's mapping in two; mprotect'd guard
    pages (PROT_NONE, PROT_READ) split it in five."""
    with harness.start_stopped([c_target_path(), "--threads", "2",
                                "--split-mmapped", "5",
                                "--guard-mmapped", "3"]) as t:
        where = t.pid if source == "live" else core_of(t, source)
        blocks = t.oracle["split_mmapped"]
        huge = [b for b in blocks if not b["guards"]]
        guarded = [b for b in blocks if b["guards"]]
        assert len(huge) == 5 and len(guarded) == 3
        check_split_mmapped(where, t.oracle, t.maps, huge, 2)
        check_split_mmapped(where, t.oracle, t.maps, guarded, 5)
        total, glibc, _ = summary_totals(where)
        mi = t.oracle["mallinfo2"]
        assert total == glibc == mi["uordblks"] + mi["hblkhd"]


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
