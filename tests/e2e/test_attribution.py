"""Attribution of interpreter structures that no Python object points at,
against what the frozen process itself was told by the C API: compiler
arenas (PyArena, the AST arena of the running script and ones the workload
makes with _PyArena_New/_PyArena_Malloc) and _Py_hashtable_t tables
(tracemalloc's traces table, whose entries tracemalloc counts) — for every
installed CPython, with pymalloc, PYTHONMALLOC=malloc and -X dev.
"""


import pytest

import harness
from conftest import python_params

ARENAS = 3
ARENA_ALLOCS = 4
MODES = harness.ALLOCATOR_MODES
ALL = 10 ** 9


def start(path, mode, *args):
    return harness.start_workload(path, mode, 200, *args)


def listed(pid, kind):
    """{data address: (allocation, size)} of the allocations of `kind`."""
    r = harness.cli_json("objects", "--json", "--type", kind, "--limit", ALL,
                         pid)
    assert r["shown"] == r["matching"] == len(r["objects"])
    return {o["address"]: (o["allocation"], o["size"]) for o in r["objects"]}


def containing(allocs, address):
    """The data address of the listed allocation holding address."""
    for start, (alloc, size) in allocs.items():
        if alloc <= address < alloc + size:
            return start
    return None


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_ast_arenas(python, mode):
    """Every arena that _PyArena_New returned is an 'AST arena' at exactly
    that address; every pointer _PyArena_Malloc returned (larger than a
    block, so one block each) is in its own 'AST arena block'; the script's
    own AST arena (alive while it runs) is found too; none of it is left
    'unknown'."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--ast-arenas", ARENAS,
               "--arena-allocs", ARENA_ALLOCS) as t:
        made = t.oracle["ast_arenas"]
        assert len(made) == ARENAS
        arenas = listed(t.pid, "AST arena")
        blocks = listed(t.pid, "AST arena block")
        for arena in made:
            assert arena["arena"] in arenas, hex(arena["arena"])
        holders = [containing(blocks, p) for arena in made
                   for p in arena["allocs"]]
        assert None not in holders, "pointers outside AST arena blocks"
        assert len(set(holders)) == ARENAS * ARENA_ALLOCS
        # The running script's AST: one more arena, with more blocks.
        assert len(arenas) >= ARENAS + 1
        assert len(blocks) > ARENAS * (ARENA_ALLOCS + 1)
        report = harness.cli_json("summary", "--json", t.pid)
        rows = {(r["domain"], r["kind"]): r for r in report["rows"]}
        assert rows[("cpython", "AST arena block")]["count"] == len(blocks)
        assert rows[("cpython", "AST arena")]["count"] == len(arenas)
        assert sum(r["bytes"] for r in report["rows"]) == \
            report["total"]["bytes"]


@pytest.mark.parametrize("python", python_params())
def test_hashtables_tracemalloc(python):
    """With tracemalloc on, its tables (traces, tracebacks, filenames: three
    _Py_hashtable_t at least) are found with their bucket arrays, and their
    entries include one per traced block: at least what
    tracemalloc._get_traces() counted (a few blocks come and go during the
    capture: 10% slack on a count of thousands)."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, "pymalloc", "--tracemalloc") as t:
        traces = t.oracle["tracemalloc_traces"]
        assert traces > 1000
        report = harness.cli_json("summary", "--json", t.pid)
        rows = {(r["domain"], r["kind"]): r["count"]
                for r in report["rows"]}
        assert rows.get(("cpython", "hashtable"), 0) >= 3
        assert rows[("cpython", "hashtable buckets")] == \
            rows[("cpython", "hashtable")]
        assert rows.get(("cpython", "hashtable entry"), 0) >= \
            traces * 0.9
        tables = listed(t.pid, "hashtable")
        for start_, (alloc, size) in tables.items():
            assert alloc <= start_ < alloc + size


FILES = 5
BUFFERING = 20000       # each file's buffer: a glibc chunk, under mmap's threshold


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_io_buffers(python, mode):
    """One 'io buffer' per _io buffered object that the frozen process
    counted open (gc.get_objects(), the std streams included), each at the
    data start of its allocation; exactly FILES of them hold BUFFERING bytes
    (glibc rounding, a debug-hook header: less than 64 more), and each of
    those starts, in /proc/PID/mem, with the marker the workload wrote to
    one of its files and did not flush."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--open-files", FILES,
               "--file-buffering", BUFFERING) as t:
        truth = t.oracle["io_buffers"]
        assert truth["files"] == FILES
        assert truth["open_buffered"] >= FILES
        buffers = listed(t.pid, "io buffer")
        assert len(buffers) == truth["open_buffered"]
        report = harness.cli_json("summary", "--json", t.pid)
        rows = {(r["domain"], r["kind"]): r["count"]
                for r in report["rows"]}
        assert rows[("cpython", "io buffer")] == len(buffers)
        files = {a: s for a, (alloc, s) in buffers.items()
                 if BUFFERING < s <= BUFFERING + 64}
        assert len(files) == FILES
        marker = truth["marker"].encode()
        seen = set()
        for address, (alloc, size) in buffers.items():
            assert alloc <= address < alloc + size
        for address in files:
            head = harness.read_mem(t.pid, address,
                                    address + len(marker % 0))
            assert head.startswith(marker.split(b"%")[0]), hex(address)
            seen.add(head)
        assert seen == {marker % i for i in range(FILES)}


THREADS = 4


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_interpreter_and_thread_states(python, mode):
    """The 'thread state' allocations are at the addresses the C API walks
    (PyInterpreterState_ThreadHead/PyThreadState_Next), one per thread the
    threading module counts; all but the main thread's from 3.11 on (that
    one is inside the static main interpreter). Up to 3.10 the main
    interpreter is malloc'd: one 'interpreter state', at
    PyInterpreterState_Main(); none after."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--threads", THREADS) as t:
        truth = t.oracle["interpreter"]
        minor = t.oracle["version"]["version_info"][1]
        api = set(truth["thread_states"])
        assert len(api) == truth["active_count"] == THREADS + 1
        states = listed(t.pid, "thread state")
        assert set(states) <= api
        assert len(states) == len(api) - (1 if minor >= 11 else 0)
        interps = listed(t.pid, "interpreter state")
        assert set(interps) == ({truth["main"]} if minor <= 10 else set())
        report = harness.cli_json("summary", "--json", t.pid)
        rows = {(r["domain"], r["kind"]): r["count"]
                for r in report["rows"]}
        assert rows.get(("cpython", "thread state"), 0) == len(states)
        assert rows.get(("cpython", "interpreter state"), 0) == \
            len(interps)


CONTAINERS = 40


def rows_of(pid):
    report = harness.cli_json("summary", "--json", pid)
    assert sum(r["bytes"] for r in report["rows"]) == report["total"]["bytes"]
    return {(r["domain"], r["kind"]): r for r in report["rows"]}


def row(rows, kind, what="count"):
    return rows.get(("cpython", kind), {}).get(what, 0)


def owner_of(pid, address):
    """The owner `describe` names for the buffer at address, or None."""
    d = harness.cli_json("describe", "--json", hex(address), pid)
    return d["owner"]["address"] if d["owner"] else None


def all_of_kind(pid, words):
    """Addresses of every live object whose type name has one of `words`
    (the process's other deques/OrderedDicts, e.g. the stdlib's own)."""
    r = harness.cli_json("objects", "--json", "--limit", 10 ** 7, pid)
    return [o["address"] for o in r["objects"] if o["state"] == "live" and
            any(w in o["type"].lower() for w in words)]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_containers(python, mode):
    """Container storage that is not an object, against what the frozen
    process says of its containers (a quarter of each are subclasses):
    - every array's buffer_info() address is an 'array buffer' at exactly
      that address, holding at least len * itemsize bytes;
    - 'deque block' count == the blocks that every deque's __sizeof__
      accounts for (basicsize + 528 per block; the workload's deques never
      pop, so none keeps a cached free block that __sizeof__ leaves out);
    - 'stringio buffer' count == the StringIOs open in gc.get_objects(),
      and, read from /proc/PID/mem, the buffers start (UCS-4) with exactly
      the markers the workload wrote, one each;
    - 'odict node' count == the keys of every OrderedDict; 'odict fast
      nodes' count == the OrderedDicts whose __sizeof__ counts an index,
      each allocation holding at least the bytes __sizeof__ says (at most
      64 more: allocator rounding, a debug-hook header)."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--containers", CONTAINERS) as t:
        truth = t.oracle["containers"]
        assert truth["n"] == CONTAINERS
        rows = rows_of(t.pid)

        arrays = listed(t.pid, "array buffer")
        for address, nbytes in truth["arrays"]:
            assert address in arrays, hex(address)
            alloc, size = arrays[address]
            assert alloc <= address and nbytes <= alloc + size - address
        assert row(rows, "array buffer") == len(arrays) >= CONTAINERS

        assert truth["deque_blocks"] > CONTAINERS
        assert row(rows, "deque block") == truth["deque_blocks"]

        buffers = listed(t.pid, "stringio buffer")
        assert len(buffers) == truth["stringios_open"] >= CONTAINERS
        assert row(rows, "stringio buffer") == len(buffers)
        marker = truth["stringio_marker"]
        width = len(marker % 0) * 4
        seen = []
        for address, (alloc, size) in buffers.items():
            assert alloc <= address < alloc + size
            if alloc + size - address < width:
                continue
            head = harness.read_mem(t.pid, address, address + width)
            text = head.decode("utf-32-le", "replace")
            if text.startswith(marker.split("%")[0]):
                seen.append(text)
        assert sorted(seen) == [marker % i for i in range(CONTAINERS)]

        assert truth["odict_nodes"] > CONTAINERS
        assert row(rows, "odict node") == truth["odict_nodes"]
        fast = listed(t.pid, "odict fast nodes")
        assert len(fast) == truth["odict_fast_nodes"] > 0
        assert row(rows, "odict fast nodes") == len(fast)
        room = sum(alloc + size - address
                   for address, (alloc, size) in fast.items())
        assert truth["odict_fast_nodes_bytes"] <= room <= \
            truth["odict_fast_nodes_bytes"] + 64 * len(fast)

        # describe names each buffer's owner: the object the process
        # made it for (id()), also for blocks deep in a chain.
        for (address, _), owner in list(zip(truth["arrays"],
                                            truth["array_ids"]))[:6]:
            assert owner_of(t.pid, address) == owner, hex(address)
        for kind, ids, words in (
                ("deque block", truth["deque_ids"], ("deque",)),
                ("odict node", truth["odict_ids"],
                 ("ordereddict", "odict"))):
            owners = set(ids) | set(all_of_kind(t.pid, words))
            chain = sorted(listed(t.pid, kind))
            for address in chain[::max(1, len(chain) // 5)][:5]:
                assert owner_of(t.pid, address) in owners, hex(address)


def write_word(pid, address, value):
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as f:
        f.seek(address)
        f.write(value.to_bytes(8, "little"))


def word(pid, address):
    return int.from_bytes(harness.read_mem(pid, address, address + 8),
                          "little")


def middle_link(pid, links, back, forward):
    """A listed chain element whose back and forward links (at those
    offsets) both point at listed elements: not an end of its chain."""
    for address in sorted(links):
        if word(pid, address + back) in links and \
                word(pid, address + forward) in links:
            return address
    return None


@pytest.mark.parametrize("python", python_params())
def test_container_chains_corrupted(python):
    """Chains broken in the frozen process's memory (through /proc/PID/mem)
    are left unknown as a whole and nothing else changes: a deque block in
    the middle of its chain made to link forward to the block before it
    (a cycle), and an OrderedDict node in the middle of its list given a
    wrong prev. Each loses at least its own and both neighbours' (same
    owner) attribution; every other row count is unchanged."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, "pymalloc", "--containers", CONTAINERS) as t:
        before = rows_of(t.pid)
        blocks = listed(t.pid, "deque block")
        block = middle_link(t.pid, blocks, 0, 520)
        assert block, "no deque with 3 blocks"
        left, right = word(t.pid, block), word(t.pid, block + 520)
        nodes = listed(t.pid, "odict node")
        node = middle_link(t.pid, nodes, 24, 16)
        assert node, "no OrderedDict with 3 nodes"
        prev, nxt = word(t.pid, node + 24), word(t.pid, node + 16)
        write_word(t.pid, block + 520, left)
        write_word(t.pid, node + 24, node)
        after = rows_of(t.pid)
        blocks_after = listed(t.pid, "deque block")
        nodes_after = listed(t.pid, "odict node")
        assert not {left, block, right} & set(blocks_after)
        assert not {prev, node, nxt} & set(nodes_after)
        assert set(blocks_after) < set(blocks)
        assert set(nodes_after) < set(nodes)
        assert row(after, "deque block") == len(blocks_after) <= \
            row(before, "deque block") - 3
        assert row(after, "odict node") == len(nodes_after) <= \
            row(before, "odict node") - 3
        for key, r in before.items():
            if key[0] == "python" or key[1] in ("array buffer",
                                               "stringio buffer",
                                               "odict fast nodes"):
                assert after[key]["count"] == r["count"], key
