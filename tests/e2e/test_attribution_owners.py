"""Attribution of buffers that objects own outside any object, against what
the frozen process says through the C API and its own objects: heap types'
docstring copies (tp_doc), extension modules' state (md_state) and
ElementTree elements' extras and children arrays — for every installed
CPython, with pymalloc, PYTHONMALLOC=malloc and -X dev.
"""

import json
import subprocess

import pytest

import harness
from conftest import python_params
from test_attribution import MODES, listed, row, rows_of, start

DOC_CLASSES = 30        # docstrings of 15 to ~1,100 bytes
ELEMENTS = 60
SLACK = 64              # allocator rounding, as the library allows



@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_type_docs(python, mode):
    """Every class the workload made has its docstring in a 'type doc'
    allocation that starts with it: read from /proc/PID/mem, each holds
    exactly one marker, its NUL right after the doc's length, in an
    allocation of doc + 1 bytes (+ rounding); and the 'type doc' count is
    the number of heap types whose own __dict__ holds a str __doc__ (what
    type_new and PyType_FromSpec copied), counted in the process, at most
    2 fewer."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--doc-classes", DOC_CLASSES) as t:
        truth = t.oracle["doc_classes"]
        lengths = truth["lengths"]
        prefix = truth["marker"].split("%")[0].encode()
        docs = listed(t.pid, "type doc")
        seen = []
        for address, (alloc, size) in docs.items():
            room = alloc + size - address
            head = harness.read_mem(t.pid, address,
                                    address + min(room, 40))
            if not head.startswith(prefix):
                continue
            i = int(head[len(prefix):head.index(b":")])
            n = lengths[i]
            assert n + 1 <= room <= n + 1 + SLACK, (i, n, room)
            body = harness.read_mem(t.pid, address, address + n + 1)
            assert body[-1] == 0 and 0 not in body[:-1], i
            seen.append(i)
        assert sorted(seen) == list(range(DOC_CLASSES))
        assert truth["short_doc"] in docs, hex(truth["short_doc"])
        alloc, size = docs[truth["short_doc"]]
        assert 9 <= alloc + size - truth["short_doc"] <= 9 + SLACK
        assert max(lengths) > 512
        rows = rows_of(t.pid)
        assert row(rows, "type doc") == len(docs)
        # The process may count 1-2 more: a heap type's tp_doc can
        # dangle. Seen on 3.9: the pure-Python operator.attrgetter
        # class (replaced by _operator's, still referenced) has a
        # tp_doc pointing at a block on pymalloc's free list (a freed
        # glibc chunk in tcache under PYTHONMALLOC=malloc), its old
        # text still there; a free block is no type's doc.
        assert 0 <= truth["heap_types_with_doc"] - len(docs) <= 2, [
            (hex(ptr), name, bytes(head), harness.read_mem(t.pid, ptr, ptr + len(head)))
            for ptr, name, head, _ in truth["doc_pointers"] if ptr not in docs]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_module_states(python, mode):
    """Every module in sys.modules whose definition asks for state
    (m_size > 0, read through PyModule_GetDef) has a 'module state' at
    exactly the address PyModule_GetState returns, holding m_size bytes
    (+ rounding); modules outside sys.modules may add more."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--module-states") as t:
        truth = [m for m in t.oracle["module_states"] if m["size"] > 0]
        assert len(truth) >= 3, truth
        states = listed(t.pid, "module state")
        for m in truth:
            assert m["address"] in states, m
            alloc, size = states[m["address"]]
            room = alloc + size - m["address"]
            assert m["size"] <= room <= m["size"] + SLACK, (m, room)
        assert row(rows_of(t.pid), "module state") == len(states) >= \
            len(truth)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_elements(python, mode):
    """'element extra' count == the workload's elements with children or
    attributes (the only elements in the process); 'element children' ==
    those with more than the 4 inline child slots."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode, "--elements", ELEMENTS) as t:
        truth = t.oracle["elements"]
        assert truth["type"] == "xml.etree.ElementTree.Element"
        assert truth["extras"] > truth["children_arrays"] > 0
        rows = rows_of(t.pid)
        assert row(rows, "element extra") == truth["extras"]
        assert row(rows, "element children") == truth["children_arrays"]
        assert len(listed(t.pid, "element extra")) == truth["extras"]


LINK_MAP_SCRIPT = r"""
import ctypes, json, os, signal, sys
for name in ("_json", "_decimal", "array", "_struct", "_sqlite3", "_csv",
             "_socket", "select", "_ctypes", "math"):
    try:
        __import__(name)
    except ImportError:
        pass
# The loader's own list, as the process sees it: _r_debug.r_map, l_next.
r_debug = ctypes.addressof(ctypes.c_int.in_dll(ctypes.CDLL(None), "_r_debug"))
maps, m = [], ctypes.c_void_p.from_address(r_debug + 8).value
while m:
    name_ptr = ctypes.c_void_p.from_address(m + 8).value or 0
    name = ctypes.c_char_p.from_address(m + 8).value or b""
    maps.append([m, name_ptr, name.decode("utf-8", "replace")])
    m = ctypes.c_void_p.from_address(m + 24).value
sys.stdout.write(json.dumps(maps) + "\n")
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.parametrize("python", python_params())
def test_link_maps(python):
    """The dynamic loader's link_map of every extension module dlopen'ed
    from lib-dynload (glibc allocations, unlike start-up objects) is an
    'ld.so link_map' at exactly the address in the process's own
    _r_debug.r_map list, its l_name copy a 'link_map name'; nothing else is
    called a link_map."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    proc = subprocess.Popen([path, "-c", LINK_MAP_SCRIPT],
                            stdout=subprocess.PIPE)
    try:
        maps = json.loads(proc.stdout.readline())
        harness.wait_stopped(proc.pid, proc=proc)
        ours = listed(proc.pid, "link_map")
        names = listed(proc.pid, "link_map name")
        chain = {m for m, _, _ in maps}
        assert set(ours) <= chain, sorted(set(ours) - chain)
        dlopened = [(m, n) for m, n, name in maps if "lib-dynload" in name]
        if not label.endswith("debian"):
            assert dlopened, maps   # pyenv builds load these as .so files
        for m, name_ptr in dlopened:
            assert m in ours, hex(m)
            assert name_ptr in names, hex(name_ptr)
        rows = rows_of(proc.pid)
        assert rows[("ld.so", "link_map")]["count"] == len(ours)
    finally:
        proc.kill()
        proc.wait()
