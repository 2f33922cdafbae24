"""Region labels from the allocator walks, checked against the allocators' own
counts in the same frozen process: the pymalloc arenas that `regions` finds
number "# arenas allocated current" of sys._debugmallocstats(), and the glibc
mmapped chunks number mallinfo2().hblks with hblkhd bytes. The kernel merges
neighbouring anonymous mmaps, so one region may hold both kinds; and splits a
chunk's mapping where the program madvises part of it (numpy's big arrays):
every piece is labelled, and every chunk counted in the reports."""
import os
import re

import pytest

import harness

# A bytes object over the mmap threshold becomes a glibc mmapped chunk that the
# kernel is free to place next to pymalloc arenas.
WORKLOAD = ("--sentinels", "3000", "--big-bytes", str(1 << 20))


def arenas_current(debugmallocstats):
    m = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", debugmallocstats)
    assert m, "no arena count in sys._debugmallocstats():\n" + debugmallocstats
    return int(m.group(1).replace(",", ""))


def area_totals(regions_doc, label):
    count = size = 0
    for region in regions_doc["regions"]:
        for area in region["areas"]:
            if area["label"] == label:
                count += area["count"]
                size += area["bytes"]
    return count, size


@pytest.fixture(scope="module", params=harness.PYTHONS, ids=lambda p: p[0])
def labelled(request):
    label, python = request.param
    with harness.start_python(python, *WORKLOAD) as t:
        yield t, harness.cli_json("regions", "--json", t.pid)


def test_pymalloc_arenas_labelled(labelled):
    t, doc = labelled
    want = arenas_current(t.oracle["debugmallocstats"])
    count, size = area_totals(doc, "pymalloc arena")
    assert count == want, (count, want)
    arena_size = 256 << 10 if t.oracle["version"]["version_info"][:2] < [3, 10] \
        else 1 << 20
    assert size == want * arena_size


def test_mmapped_chunks_labelled(labelled):
    t, doc = labelled
    mi = t.oracle["mallinfo2"]
    assert mi["hblks"] > 0, "the workload made no mmapped chunk: the test is empty"
    assert area_totals(doc, "glibc mmapped chunk") == (mi["hblks"], mi["hblkhd"])


def test_mixed_regions_name_every_kind(labelled):
    """A region holding several kinds lists each one in its label."""
    t, doc = labelled
    for region in doc["regions"]:
        for area in region["areas"]:
            assert area["label"] in region["label"], region


HUGEPAGE_BLOCKS = 6
NUMPY_ARRAYS = 8
NUMPY_PYTHON = "/usr/bin/python3.11"    # Debian's, with Debian's python3-numpy


def maps_pieces(maps, start, end):
    """The /proc/PID/maps entries that [start, end) reaches into, clipped."""
    return [(max(m["start"], start), min(m["end"], end)) for m in maps
            if m["start"] < end and m["end"] > start]


def check_split_chunks(t, blocks, where):
    """blocks: the process's pointers with malloc_usable_size (an mmapped
    chunk is usable + 16 bytes from the pointer - 16), each split by the
    kernel into several /proc/PID/maps entries. Every one of them is an
    mmapped chunk there, every piece of it a region labelled so;
    malloc-stats' and summary's mmapped totals are mallinfo2's."""
    assert blocks, "the workload made no split blocks: the test is empty"
    maps = t.maps
    # glibc 2.43 maps 16 bytes more after an mmapped chunk and its
    # malloc_usable_size is the chunk's size less 8: the mapping from the
    # pointer - 16 is usable + 24 there.
    extent = 24 if tuple(t.oracle["version"]["glibc"]) >= (2, 43) else 16
    for b in blocks:
        pieces = maps_pieces(maps, b["user"] - 16, b["user"] - 16 + b["usable"] + extent)
        assert len(pieces) >= 2, ("not split by the kernel", b, pieces)
        # the mapping ends there: the next page is not part of it
        assert (b["user"] - 16 + b["usable"] + extent) % 4096 == 0, (b, extent)
    mi = t.oracle["mallinfo2"]
    stats = harness.cli_json("malloc-stats", "--json", where)
    assert (stats["hblks"], stats["hblkhd"]) == (mi["hblks"], mi["hblkhd"]), \
        stats.get("warnings")
    by = harness.cli_json("summary", "--json", "--by", "allocator", where)
    glibc = sum(r["bytes"] for r in by["rows"]
                if r["domain"].startswith("glibc"))
    assert glibc == mi["uordblks"] + mi["hblkhd"]
    # numpy's arrays are attributed to them: "numpy data" (cpython_numpy.c).
    mmapped = harness.cli_json("select", "--json", "--limit", 10 ** 6,
                               "--query", 'domain == "glibc mmap" or '
                               'kind == "numpy data"', where)
    starts = {a["address"]: a["size"] for a in mmapped["allocations"]}
    for b in blocks:
        assert starts.get(b["user"]) == b["usable"] + extent, b
    doc = harness.cli_json("regions", "--json", where)
    for b in blocks:
        for lo, hi in maps_pieces(maps, b["user"] - 16, b["user"] + b["usable"]):
            region = next(r for r in doc["regions"] if r["start"] <= lo < r["end"])
            areas = [a for a in region["areas"]
                     if a["label"] == "glibc mmapped chunk"]
            assert areas and areas[0]["bytes"] >= hi - lo, region
    assert area_totals(doc, "glibc mmapped chunk")[1] == mi["hblkhd"]


@pytest.mark.parametrize("python", [p for _, p in harness.PYTHONS],
                         ids=[label for label, _ in harness.PYTHONS])
def test_hugepage_blocks_labelled(python):
    """glibc blocks over 4 MiB madvised for huge pages (through ctypes, as
    numpy does), live and from a gcore core."""
    with harness.start_python(python, "--sentinels", "200",
                              "--hugepage-blocks", HUGEPAGE_BLOCKS) as t:
        blocks = t.oracle["hugepage_blocks"]
        assert len(blocks) == HUGEPAGE_BLOCKS
        check_split_chunks(t, blocks, t.pid)
        check_split_chunks(t, blocks, t.gcore())


def test_numpy_arrays_labelled():
    """numpy's own arrays over 4 MiB (Debian's python3-numpy: tests/
    setup-debian.sh installs it), live and from a kernel core."""
    if not os.access(NUMPY_PYTHON, os.X_OK):
        pytest.fail("%s is not installed" % NUMPY_PYTHON)
    with harness.start_python(NUMPY_PYTHON, "--sentinels", "200",
                              "--numpy-arrays", NUMPY_ARRAYS) as t:
        arrays = t.oracle["numpy_arrays"]
        assert len(arrays) == NUMPY_ARRAYS
        assert all(a["usable"] >= a["nbytes"] for a in arrays)
        check_split_chunks(t, arrays, t.pid)
        check_split_chunks(t, arrays, t.kernel_core())
