"""Attribution of interpreter structures that no Python object points at,
against what the frozen process itself was told by the C API: compiler
arenas (PyArena, the AST arena of the running script and ones the workload
makes with _PyArena_New/_PyArena_Malloc) and _Py_hashtable_t tables
(tracemalloc's traces table, whose entries tracemalloc counts) — for every
installed CPython, with pymalloc, PYTHONMALLOC=malloc and -X dev.
"""

import os
import shutil

import pytest

import harness
from conftest import python_params

ARENAS = 3
ARENA_ALLOCS = 4
MODES = {
    "pymalloc": ([], {}),
    "malloc": ([], {"PYTHONMALLOC": "malloc"}),
    "dev": (["-X", "dev"], {}),
}
ALL = 10 ** 9


def start(path, mode, *args):
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    argv = [path] + flags + [harness.PY_WORKLOAD, "--sentinels", 200] + \
        list(args)
    return harness.start_stopped(argv, env=env)


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
        try:
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
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


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
        try:
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
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


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
        try:
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
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


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
        try:
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
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)
