"""libbz2's memory behind _bz2's BZ2Compressor and BZ2Decompressor objects,
attributed to the object that owns it (lib/cpython_owned_bz2.c), against
what the frozen process (tests/targets/py_compress.py) measured of its own
allocations, for every installed CPython with pymalloc,
PYTHONMALLOC=malloc and -X dev, live and from a gcore core:

- every compressor (levels 1, 5, 9, and a flushed one of level 3) and
  every decompressor (having read a stream of level 1, 5 or 9, part of a
  stream of level 5, the first block of three of a level-1 stream before
  max_length stopped it, or nothing yet) owns, in the rows 'bz2 stream
  state', 'bz2 block arrays', 'bz2 input buffer' (the stopped one's copy
  of the input it has not read) and 'thread lock', exactly the bytes
  glibc counted as
  newly in use (mallinfo2's uordblks + hblkhd) while it was made (and, for
  a decompressor, while it decompressed its first input), less its own
  chunk where PYTHONMALLOC=malloc puts the object in glibc (glibc's
  request2size of its basicsize: at least 32, size + 8 rounded up to 16);
- its stream state is listed at the pointer the process found itself (the
  one word of the object pointing at a block whose first word is the
  object's address + 16), owned by its id;
- the owners of 'bz2 stream state' are exactly the recorded ids, and those
  of 'bz2 block arrays' exactly the ids of the compressors and of the
  decompressors that read a stream header (the fresh one has no arrays).

With pymalloc and -X dev the equality is exact: the workload runs with
glibc's tcache off (a chunk taken from or put into the tcache is 'in use'
to mallinfo2, so small allocations would be missed) and a fixed mmap
threshold of 128 KiB (arrays over it are mmapped, the states are not), and
it makes and drops one of each object before measuring (free lists and
the collector's garbage settled); both sides then count whole chunks,
mmapped ones at their page-rounded size. The data is under 128 KiB, so
no output is an mmapped chunk that grows (the chroot's glibc 2.43 counts
16 bytes too many in hblkhd per mremap), and a stream's block arrays are
as large as its level says whatever the data. The lock (a malloc'd sem_t,
3.8-3.14; 3.15's is an inline PyMutex) is in the process's figure too.
With PYTHONMALLOC=malloc the Python objects that the measuring itself
makes between its two readings (the first reading's int, ...) are glibc
chunks as well: there the process's figure may exceed the owned bytes by
up to MEASURE_NOISE (512) bytes, a few small chunks; every bz2 allocation
is 32 bytes (the lock) or 55 KB and more, and the lock's presence is
checked exactly in the other two modes.

Objects whose state pointer was zeroed, or whose state's strm back-pointer
was made wrong, in the frozen process own nothing in the bz2 rows, and the
other objects keep theirs (test_bz2_buffers_corrupted).
"""

import os

import pytest

import harness
from conftest import python_params

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_compress.py")
MODES = harness.ALLOCATOR_MODES
ALL = 10 ** 9
STATE, ARRAYS, INPUT = "bz2 stream state", "bz2 block arrays", \
    "bz2 input buffer"
LOCK = "thread lock"
KINDS = (STATE, ARRAYS, INPUT, LOCK)
# PYTHONMALLOC=malloc only: the Python objects the measuring itself makes
# (the int of the first reading, ...) are glibc chunks too.
MEASURE_NOISE = 512
TUNABLES = "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=131072"


def start(path, mode, *args):
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    env["GLIBC_TUNABLES"] = TUNABLES
    return harness.start_stopped([path] + flags + [WORKLOAD] + list(args),
                                 env=env)


ZSTATE, ZWINDOW, ZHASH, ZPENDING, ZINPUT = (
    "zlib stream state", "zlib window", "zlib hash chains",
    "zlib pending buffer", "zlib input buffer")
ZKINDS = (ZSTATE, ZWINDOW, ZHASH, ZPENDING, ZINPUT, LOCK)


def listing(where, kinds=KINDS):
    """{kind: {address: listing}} of the bz2 rows (or of kinds)."""
    out = {}
    for kind in kinds:
        r = harness.cli_json("objects", "--json", "--type", kind, "--limit",
                             ALL, where)
        assert r["shown"] == r["matching"] == len(r["objects"])
        out[kind] = {o["address"]: o for o in r["objects"]}
    return out


def owned_bytes(found):
    """{owner id: bytes of its allocations in the rows found lists}."""
    out = {}
    for kind in found:
        for o in found[kind].values():
            out[o["owner"]] = out.get(o["owner"], 0) + o["size"]
    return out


def inferred_buffers(where):
    """Every 'inferred buffer' allocation's listing."""
    return harness.cli_json("objects", "--json", "--type", "inferred buffer",
                            "--limit", ALL, where)["objects"]


def owners(found, kind):
    return {o["owner"] for o in found[kind].values()}


def object_chunk(mode, basicsize):
    """The glibc chunk of the object itself in the process's figure."""
    if mode != "malloc":
        return 0        # pymalloc's arenas are mmapped apart from malloc
    return max(32, (basicsize + 8 + 15) // 16 * 16)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_bz2_buffers(python, mode):
    label, path = python
    assert path, "no CPython found"
    with start(path, mode) as t:
        truth = t.oracle["bz2"]
        assert len(truth) == 10
        assert [r["eof"] for r in truth if r["kind"] == "decompressor"] == \
            [True, True, True, False, False, False]
        ids = {r["id"] for r in truth}
        with_arrays = {r["id"] for r in truth if r["level"]}
        for where in (t.pid, t.gcore()):
            found = listing(where)
            assert owners(found, STATE) == ids
            assert owners(found, ARRAYS) == with_arrays
            # The zlib and lzma objects' locks are theirs
            # (test_zlib_buffers, test_lzma_buffers).
            other_ids = {r["id"] for r in t.oracle["zlib"] + t.oracle["lzma"]}
            assert owners(found, LOCK) - other_ids <= ids
            assert owners(found, INPUT) == {
                r["id"] for r in truth if r["name"].endswith("max_length")}
            by_owner = owned_bytes(found)
            for r in truth:
                excess = r["delta"] - object_chunk(mode, r["basicsize"]) - \
                    by_owner.get(r["id"], 0)
                assert 0 <= excess <= (MEASURE_NOISE if mode == "malloc"
                                       else 0), (r["name"], excess)
                state = found[STATE].get(r["state"])
                assert state is not None and state["owner"] == r["id"], \
                    r["name"]
            d = harness.cli_json("describe", "--json", hex(truth[0]["state"]),
                                 where)
            assert d["allocation"]["kind"] == STATE
            assert d["owner"]["address"] == truth[0]["id"]
            r = harness.cli_json("summary", "--json", "--by", "owner", where)
            assert sum(x["bytes"] for x in r["rows"]) == r["total"]["bytes"]
            rows = {(x["domain"], x["kind"], x["detail"]): x for x in r["rows"]}
            assert rows[("cpython", STATE, "_bz2.BZ2Compressor")]["count"] == 4
            assert rows[("cpython", STATE, "_bz2.BZ2Decompressor")][
                "count"] == 6
            # Three arrays per compressor; one per decompressor that read
            # a header (CPython never asks for libbz2's small mode).
            assert rows[("cpython", ARRAYS, "_bz2.BZ2Compressor")][
                "count"] == 12
            assert rows[("cpython", ARRAYS, "_bz2.BZ2Decompressor")][
                "count"] == 5


@pytest.mark.parametrize("python", python_params())
def test_bz2_buffers_corrupted(python):
    """Two compressors and two decompressors made wrong by the process
    itself before it stopped (py_compress.py corrupt): a state pointer
    zeroed, a state's strm back-pointer moved 8 bytes. They own nothing in
    the bz2 rows (the lock is not the stream's: it stays), the others keep
    everything, live and from a core."""
    label, path = python
    assert path, "no CPython found"
    with start(path, "pymalloc", "corrupt") as t:
        truth = t.oracle["bz2"]
        bad = {r["id"] for r in truth if r["corrupted"]}
        assert len(bad) == 4
        good = [r for r in truth if not r["corrupted"]]
        for where in (t.pid, t.gcore()):
            found = listing(where)
            assert owners(found, STATE) == {r["id"] for r in good}
            assert owners(found, ARRAYS) == {r["id"] for r in good
                                             if r["level"]}
            by_owner = owned_bytes(found)
            for r in good:
                assert by_owner[r["id"]] == r["delta"], r["name"]
            for r in truth:
                if r["corrupted"] == "strm":
                    d = harness.cli_json("describe", "--json",
                                         hex(r["state"]), where)
                    assert d["allocation"]["kind"] != STATE, r["name"]


def zlib_expected(r):
    """What a zlib record's object owns, by kind (the counts of its
    allocations), from how it was made: a compressor's state, window, two
    hash chains and pending buffer until it is finished; a decompressor's
    state, and its window once it has read data, until a _ZlibDecompressor
    reaches the stream's end (it ends the stream then); the process found
    the state word itself where one is left."""
    name = r["name"]
    ended = name.endswith("finished") or (
        r["kind"] == "_ZlibDecompressor" and r["eof"])
    assert (r["state_offset"] is None) == ended, name
    want = {}
    if r["kind"] == "compress" and not ended:
        want = {ZSTATE: 1, ZWINDOW: 1, ZHASH: 2, ZPENDING: 1}
    elif not ended:
        want = {ZSTATE: 1}
        if not name.endswith("fresh"):
            want[ZWINDOW] = 1
    if name.endswith("max_length"):
        want[ZINPUT] = 1
    return want


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_zlib_buffers(python, mode):
    """zlib's memory behind zlib.Compress, zlib.Decompress and 3.12+'s
    _ZlibDecompressor (lib/cpython_owned_zlib.c): each object owns, in the
    zlib rows and 'thread lock' (its lock, 3.8-3.14), exactly the bytes
    glibc counted as newly in use while it was made (and fed), less its
    own chunk under PYTHONMALLOC=malloc (the same measure and the same
    allowance as the bz2 objects'); what it owns is what its making says
    (a finished compressor nothing but its lock, a fresh decompressor no
    window); its state is listed at the pointer the process found itself,
    owned by its id; none of it is left to the inference. (3.8's
    compressor under PYTHONMALLOC=malloc gets the chunk of a bytes object
    freed just before as its window, the stale bytes header still at its
    start: the window is still the compressor's.)"""
    label, path = python
    assert path, "no CPython found"
    with start(path, mode) as t:
        truth = t.oracle["zlib"]
        assert len(truth) == 10 + 2 * (t.oracle["version"][:2] >= [3, 12])
        locked = t.oracle["version"][:2] <= [3, 14]
        for where in (t.pid, t.gcore()):
            found = listing(where, ZKINDS)
            by_owner = owned_bytes(found)
            inferred = inferred_buffers(where)
            ids = {r["id"] for r in truth}
            assert not [o for o in inferred if o["owner"] in ids], where
            for r in truth:
                counts = {}
                for kind in ZKINDS:
                    n = sum(o["owner"] == r["id"] for o in found[kind].values())
                    if n:
                        counts[kind] = n
                want = zlib_expected(r)
                if locked:
                    want[LOCK] = 1
                assert counts == want, (r["name"], counts, want)
                excess = r["delta"] - object_chunk(mode, r["basicsize"]) - \
                    by_owner.get(r["id"], 0)
                assert 0 <= excess <= (MEASURE_NOISE if mode == "malloc"
                                       else 0), (r["name"], excess)
                if r["state"]:
                    state = found[ZSTATE].get(r["state"])
                    assert state is not None and state["owner"] == r["id"], \
                        r["name"]
            r = harness.cli_json("summary", "--json", "--by", "owner", where)
            assert sum(x["bytes"] for x in r["rows"]) == r["total"]["bytes"]
            rows = {(x["domain"], x["kind"], x["detail"]): x for x in r["rows"]}
            assert rows[("cpython", ZSTATE, "zlib.Compress")]["count"] == 6
            assert rows[("cpython", ZHASH, "zlib.Compress")]["count"] == 12
            assert rows[("cpython", ZSTATE, "zlib.Decompress")]["count"] == 3


@pytest.mark.parametrize("python", python_params())
def test_zlib_buffers_corrupted(python):
    """A compressor and a decompressor whose state pointer the process
    zeroed, and two whose state's strm back-pointer it moved 8 bytes, own
    nothing in the zlib rows; the others keep theirs, live and from a
    core."""
    label, path = python
    assert path, "no CPython found"
    with start(path, "pymalloc", "corrupt") as t:
        truth = t.oracle["zlib"]
        bad = {r["id"] for r in truth if r["corrupted"]}
        assert len(bad) == 4
        for where in (t.pid, t.gcore()):
            found = listing(where, ZKINDS[:-1])
            owners_now = {o["owner"] for kind in found
                          for o in found[kind].values()}
            assert not owners_now & bad
            by_owner = owned_bytes(found)
            for r in truth:
                if not r["corrupted"] and zlib_expected(r):
                    assert by_owner.get(r["id"]), r["name"]
                if r["corrupted"] == "strm":
                    d = harness.cli_json("describe", "--json",
                                         hex(r["state"]), where)
                    assert d["allocation"]["kind"] != ZSTATE, r["name"]


LSTATE, LINPUT = "lzma stream state", "lzma input buffer"
LKINDS = (LSTATE, LINPUT, LOCK)
# The share of what the lzma objects' making added that they own, precise
# and inferred together, at least, with pymalloc and -X dev: the inference
# gives up on an allocation that a stale word elsewhere also points at
# (3.8's pymalloc run leaves one above a flushed compressor's match
# finder, a word in the unused tail of a 32-byte chunk: 24% of the whole),
# and says nothing rather than guess. Not checked with
# PYTHONMALLOC=malloc, where every Python object's chunk may hold such
# words, so that which trees are left varies with the run's layout.
LZMA_COVERED_MIN = 0.6


def lzma_owned(where, truth):
    """The lzma rows' listing, and {owner id: bytes owned} over them and
    the inferred buffers."""
    found = listing(where, LKINDS)
    by_owner = owned_bytes(found)
    inferred = inferred_buffers(where)
    ids = {r["id"] for r in truth}
    for o in inferred:
        if o["owner"] in ids:
            by_owner[o["owner"]] = by_owner.get(o["owner"], 0) + o["size"]
    return found, by_owner


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_lzma_buffers(python, mode):
    """liblzma's memory behind _lzma's LZMACompressor and LZMADecompressor
    (lib/cpython_owned_lzma.c, and the inference from the stream state on,
    lib/cpython_inferred.c): each object owns exactly one 'lzma stream
    state', listed at the pointer the process found itself (the word after
    the lzma_stream's allocator field, the one word of the object pointing
    at its own lzma_allocator), its lock (3.8-3.14) and, stopped by
    max_length, its 'lzma input buffer'; what it owns, precise and
    inferred, never exceeds the bytes glibc counted as newly in use while
    it was made and fed (the bz2 objects' measure and allowance), and adds
    up to at least LZMA_COVERED_MIN of them over all objects (not checked
    under PYTHONMALLOC=malloc)."""
    label, path = python
    assert path, "no CPython found"
    with start(path, mode) as t:
        truth = t.oracle["lzma"]
        assert len(truth) == 7
        locked = t.oracle["version"][:2] <= [3, 14]
        for where in (t.pid, t.gcore()):
            found, by_owner = lzma_owned(where, truth)
            covered = measured = 0
            for r in truth:
                counts = {}
                for kind in LKINDS:
                    n = sum(o["owner"] == r["id"] for o in found[kind].values())
                    if n:
                        counts[kind] = n
                want = {LSTATE: 1}
                if locked:
                    want[LOCK] = 1
                if r["input"]:
                    want[LINPUT] = 1
                assert counts == want, (r["name"], counts, want)
                state = found[LSTATE].get(r["state"])
                assert state is not None and state["owner"] == r["id"], \
                    r["name"]
                made = r["delta"] - object_chunk(mode, r["basicsize"])
                excess = made - by_owner[r["id"]]
                assert excess >= (-MEASURE_NOISE if mode == "malloc" else 0), \
                    (r["name"], excess)
                covered += by_owner[r["id"]]
                measured += made
            if mode != "malloc":
                assert covered >= LZMA_COVERED_MIN * measured, \
                    (covered, measured)
            r = harness.cli_json("summary", "--json", "--by", "owner", where)
            assert sum(x["bytes"] for x in r["rows"]) == r["total"]["bytes"]
            rows = {(x["domain"], x["kind"], x["detail"]): x for x in r["rows"]}
            assert rows[("cpython", LSTATE, "_lzma.LZMACompressor")][
                "count"] == 4
            assert rows[("cpython", LSTATE, "_lzma.LZMADecompressor")][
                "count"] == 3
            # --precise: the inferred part is unknown, the states stay.
            precise = harness.cli_json("objects", "--json", "--precise",
                                       "--type", LSTATE, "--limit", ALL, where)
            assert {o["owner"] for o in precise["objects"]} == \
                {r["id"] for r in truth}


@pytest.mark.parametrize("python", python_params())
def test_lzma_buffers_corrupted(python):
    """An LZMACompressor whose stream's internal pointer the process
    zeroed owns no stream state; an LZMADecompressor whose stream's
    allocator pointer it moved 8 bytes owns nothing in the lzma rows (no
    state, no lock); the others keep theirs, live and from a core."""
    label, path = python
    assert path, "no CPython found"
    with start(path, "pymalloc", "corrupt") as t:
        truth = t.oracle["lzma"]
        bad = {r["id"]: r["corrupted"] for r in truth if r["corrupted"]}
        assert sorted(bad.values()) == ["allocator", "state"]
        for where in (t.pid, t.gcore()):
            found = listing(where, LKINDS)
            for r in truth:
                owned = {kind for kind in LKINDS
                         if r["id"] in owners(found, kind)}
                if r["corrupted"] == "allocator":
                    assert not owned, r["name"]
                elif r["corrupted"] == "state":
                    assert LSTATE not in owned, r["name"]
                else:
                    assert LSTATE in owned, r["name"]
