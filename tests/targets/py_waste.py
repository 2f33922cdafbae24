"""A workload for the waste tests (tests/e2e/test_waste.py): it plants
known waste, writes what it planted to $PM_ORACLE_FILE and stops itself
with SIGSTOP, forever.

Planted: duplicates made at run time (so no code constant is a copy):
40 distinct strs (50 + 5 i copies of value i, one copy of every fourth
value sys.intern'ed), 20 bytes values, 20 ints above 256, 20 floats, 10
tuples (a str, an int, a float: each copy with items of its own) and 10
frozensets of ints, each copy its own object; the oracle has per value its copies (a Counter of
what was built), their id()s and sys.getsizeof. Lists grown by append and
then popped (allocated, read with ctypes at offset 32, far above len),
empty lists, dicts and sets, a dict with most of its keys deleted, and
a list of 20000 floats and one of 5000 ints (each object held by the
list alone), 3000 instances of py_waste_twin.Record (a __dict__; a third of them with
a fourth attribute)."""
import collections
import ctypes
import gc
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_waste_twin import Record  # noqa: E402

N_RECORDS = 3000
STR_COPIES = []
BYTES_COPIES = []
INT_COPIES = []
FLOAT_COPIES = []
TUPLE_COPIES = []
FROZENSET_COPIES = []
LISTS = []
EMPTIES = []
HOLEY = {}
RECORDS = []
BIG_FLOATS = []
BIG_INTS = []


def build():
    interned = []
    for i in range(40):
        for _ in range(50 + 5 * i):
            STR_COPIES.append("".join(["waste-str-", str(i), "-", "q" * (i % 9)]))
    for i in range(20):
        for _ in range(30 + i):
            BYTES_COPIES.append(b"".join([b"waste-bytes-", str(i).encode(), b"!" * i]))
    base = int("7" * 7)
    for i in range(20):
        text = str(base + 7919 * i)
        for _ in range(40 + i):
            INT_COPIES.append(int(text))
    for i in range(20):
        text = "%d.25" % (1000 + i)
        for _ in range(25 + i):
            FLOAT_COPIES.append(float(text))
    base2, base3 = int("5" * 8), int("3" * 9)
    for i in range(10):
        for _ in range(20 + i):
            TUPLE_COPIES.append(("".join(["tuple-item-", str(i)]),
                                 int(str(base2 + i)), float("%d.75" % i)))
    for i in range(10):
        for _ in range(15 + i):
            # at most 4 items: the set's own 8 slots hold them (a fifth
            # added one by one makes it grow a table)
            FROZENSET_COPIES.append(frozenset(int(str(base3 + 100 * i + k))
                                              for k in range(i % 3 + 2)))
    # Every fourth str value: one copy interned (the first built).
    seen = set()
    for s in STR_COPIES:
        i = int(s.split("-")[2])
        if i % 4 == 0 and i not in seen:
            seen.add(i)
            assert sys.intern(s) is s
            interned.append(s)
    for n, keep in ((20000, 10001), (9000, 4600), (3000, 1600), (65536, 33000)):
        lst = []
        for k in range(n):
            lst.append(None)
        while len(lst) > keep:
            lst.pop()
        LISTS.append(lst)
    for _ in range(300):
        EMPTIES.append([])
    for _ in range(200):
        EMPTIES.append({})
    for _ in range(100):
        EMPTIES.append(set())
    BIG_FLOATS.extend(float(i) + 0.1 for i in range(20000))
    base4 = int("9" * 8)
    BIG_INTS.extend(base4 + i for i in range(5000))
    for i in range(N_RECORDS):
        RECORDS.append(Record(i))
    for k in range(1000):
        HOLEY[k * 1000003] = None
    for k in range(900):
        del HOLEY[k * 1000003]
    return interned


LIBC = ctypes.CDLL(None)
LIBC.malloc_usable_size.restype = ctypes.c_size_t
LIBC.malloc_usable_size.argtypes = [ctypes.c_void_p]
PYMALLOC = os.environ.get("PYTHONMALLOC") != "malloc"
# A pydebug build (sys.gettotalrefcount) installs the debug hooks by
# default, -X dev does everywhere: each block gets a 16-byte header and an
# 8-byte trailer (PYTHONMALLOC=malloc in a pydebug build turns them off).
DEBUG_HOOKS = PYMALLOC and (hasattr(sys, "gettotalrefcount") or sys.flags.dev_mode)


def allocated_size(obj, gc=False):
    """What obj's allocation occupies: with pymalloc its block,
    sys.getsizeof rounded up to 16 (these objects are small and have no GC
    head); with malloc its chunk, malloc_usable_size + the size word (a
    chunk may be up to 16 bytes larger than asked: glibc does not split off
    a remainder too small to be a chunk)."""
    if PYMALLOC:
        size = sys.getsizeof(obj)   # with the GC head of a GC object
        if DEBUG_HOOKS:
            size += 24
        assert size <= 512
        return (size + 15) & ~15
    return LIBC.malloc_usable_size(id(obj) - (16 if gc else 0)) + 8


def chunk_bytes(mem):
    """The bytes of the glibc chunk at user address mem, from its own
    header: the size word; for an mmapped chunk (IS_MMAPPED, 0x2) plus the
    prev_size word, how far into its mapping the chunk starts, rounded up
    to whole pages: the mapping (glibc 2.43's mremap of an mmapped chunk
    leaves a size word 16 bytes short of the pages it maps). With the
    debug hooks (a debug build's default, -X dev) the data is past their
    16-byte header ({size, api id, 7 x 0xfd}), or two for a large
    PyMem_Malloc: the chunk starts before them."""
    for _ in range(2):
        if ctypes.string_at(mem - 7, 7) != b"\xfd" * 7:
            break
        mem -= 16
    size = ctypes.c_size_t.from_address(mem - 8).value
    if size & 2:
        mapped = (size & ~7) + ctypes.c_size_t.from_address(mem - 16).value
        page = os.sysconf("SC_PAGE_SIZE")
        return (mapped + page - 1) // page * page
    return size & ~7


def big_list(lst, kind):
    """A list of numbers: its items buffer (ob_item, a malloc'd chunk: it
    is over 512 bytes; its size from the chunk's own size word, which
    counts an mmapped chunk's whole mapping) and its items' allocations,
    each held by it alone."""
    ob_item = ctypes.c_void_p.from_address(id(lst) + 24).value
    assert all(sys.getrefcount(lst[i]) == 2 for i in range(100))
    return {"id": id(lst), "kind": kind, "len": len(lst),
            "buffer": chunk_bytes(ob_item),
            "items": sum(allocated_size(x) for x in lst)}


def describe(copies, show, gc=False):
    counts = collections.Counter(copies)
    ids = collections.defaultdict(list)
    sizes = collections.defaultdict(list)
    for obj in copies:
        ids[obj].append(id(obj))
        sizes[obj].append(allocated_size(obj, gc))
    return [{"value": show(v), "copies": n, "ids": ids[v], "sizes": sizes[v]}
            for v, n in counts.items()]


def main():
    interned = build()
    interned_values = [s for s in interned]
    oracle = {
        "pid": os.getpid(),
        "python": list(sys.version_info[:3]),
        "pymalloc": PYMALLOC,
        "str": describe(STR_COPIES, lambda v: v),
        "bytes": describe(BYTES_COPIES, lambda v: v.hex()),
        "int": describe(INT_COPIES, lambda v: str(v)),
        "float": describe(FLOAT_COPIES, repr),
        "tuple": describe(TUPLE_COPIES, repr, gc=True),
        "frozenset": describe(FROZENSET_COPIES, repr, gc=True),
        "interned": interned_values,
        "lists": [{"id": id(lst), "len": len(lst),
                   "allocated": ctypes.c_ssize_t.from_address(id(lst) + 32).value}
                  for lst in LISTS],
        "empty": {"list": 300, "dict": 200, "set": 100},
        # each an object alone: no items buffer ([] and set() keep none
        # outside the object, {} shares the interpreter's static empty keys)
        "empty_bytes": sum(allocated_size(o, gc=True) for o in EMPTIES),
        "holey": {"id": id(HOLEY), "len": len(HOLEY)},
        "numeric": [big_list(BIG_FLOATS, "float"), big_list(BIG_INTS, "int")],
        "records": {"class": Record.__qualname__, "n": N_RECORDS,
                    "names": ["alpha", "beta", "gamma", "delta"],
                    "ids": [id(r) for r in RECORDS]},
    }
    path = os.environ["PM_ORACLE_FILE"]
    with open(path + ".tmp", "w") as f:
        json.dump(oracle, f)
    del oracle, interned, interned_values
    gc.collect()
    kill, pid, sig = os.kill, os.getpid(), signal.SIGSTOP
    os.rename(path + ".tmp", path)
    while True:
        kill(pid, sig)


main()
