"""Region labels from the allocator walks, checked against the allocators' own
counts in the same frozen process: the pymalloc arenas that `regions` finds
number "# arenas allocated current" of sys._debugmallocstats(), and the glibc
mmapped chunks number mallinfo2().hblks with hblkhd bytes. The kernel merges
neighbouring anonymous mmaps, so one region may hold both kinds."""
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
