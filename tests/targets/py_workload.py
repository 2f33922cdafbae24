"""Python workload for pymortem's end-to-end tests: builds a heap chosen by argv,
records the interpreter's and glibc's own accounting of it (the oracle), writes
that to $PM_ORACLE_FILE atomically and stops itself with SIGSTOP, forever.

Runs unchanged on CPython 3.8 to 3.13 (pyenv builds and Debian's stripped
/usr/bin/python3.11). Only the standard library is used.

The oracle is captured in one function right before the stop (see
Oracle): the numbers describe the heap as it is at the stop.
"""

import argparse
import array
import collections
import ctypes
import gc
import io
import json
import os
import random
import signal
import string
import sys
import threading
import types

# Everything the workload builds stays reachable from here until the end.
KEEP = []


class SlotsSentinel:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = a
        self.b = b


class PlainSentinel:
    def __init__(self, a, b):
        self.a = a
        self.b = b


class DictSentinel(dict):
    pass


class ListSentinel(list):
    pass


class IntSentinel(int):
    pass


class DequeSentinel(collections.deque):
    pass


class ArraySentinel(array.array):
    pass


class StringIOSentinel(io.StringIO):
    pass


class ODictSentinel(collections.OrderedDict):
    pass


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


SMALL_BYTES = (100, 400)     # bytes objects that pymalloc serves (<= 512)
LARGE_BYTES = (600, 3000)    # bytes objects that go to glibc malloc


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sentinels", type=int, default=1000,
                   help="instances of each sentinel class and value kind")
    p.add_argument("--big-bytes", type=int, default=0,
                   help="one bytes object of this size (>= 128 KiB is mmapped)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads that allocate, then block until the end")
    p.add_argument("--thread-objects", type=int, default=200,
                   help="objects (and large bytes) each thread allocates")
    p.add_argument("--ast-arenas", type=int, default=0,
                   help="compiler arenas (PyArena) made through the C API")
    p.add_argument("--arena-allocs", type=int, default=4,
                   help="allocations of ARENA_ALLOC bytes in each arena")
    p.add_argument("--tracemalloc", action="store_true",
                   help="trace allocations (tracemalloc's hashtables)")
    p.add_argument("--open-files", type=int, default=0,
                   help="binary files kept open for writing (BufferedWriter)")
    p.add_argument("--file-buffering", type=int, default=20000,
                   help="their buffering= (the size of each _io buffer)")
    p.add_argument("--containers", type=int, default=0,
                   help="deques, arrays, StringIOs and OrderedDicts of "
                        "varied sizes (a quarter of each are subclasses)")
    p.add_argument("--doc-classes", type=int, default=0,
                   help="classes with docstrings of distinctive lengths "
                        "(some over 512 bytes) and markers")
    p.add_argument("--module-states", action="store_true",
                   help="import extension modules that keep a module "
                        "state; report PyModule_GetState of every module")
    p.add_argument("--elements", type=int, default=0,
                   help="ElementTree elements with 0 to 9 children, some "
                        "with attributes")
    p.add_argument("--adjacent-arena", metavar="LIB",
                   help="with tests/targets/adjacent_arena.c built as LIB: "
                        "map a pymalloc arena right after a glibc mmapped "
                        "chunk (default allocator only)")
    p.add_argument("--datetimes", type=int, default=0,
                   help="naive and aware datetime.time/datetime objects, "
                        "N of each")
    p.add_argument("--stale-list-items", type=int, default=0,
                   help="one-item lists whose item arrays reuse freed int "
                        "blocks")
    p.add_argument("--str-subclasses", type=int, default=0,
                   help="str subclass instances (separate character data)")
    p.add_argument("--graph", action="store_true",
                   help="objects of every kind the reference graph reads, "
                        "with gc.get_referents/get_referrers of them, "
                        "sentinels on known paths and a thread's local")
    p.add_argument("--leak-refs", type=int, default=0,
                   help="objects given an extra reference (Py_IncRef) and "
                        "dropped")
    p.add_argument("--garbage", type=int, default=0,
                   help="reference cycles left for the collector, made "
                        "right before the stop; gc.collect() runs when "
                        "'<oracle>.collect' appears after a SIGCONT")
    p.add_argument("--hugepage-blocks", type=int, default=0,
                   help="blocks of 5 MiB and some from glibc malloc (ctypes),"
                        " each madvise(MADV_HUGEPAGE)'d as numpy does")
    p.add_argument("--numpy-arrays", type=int, default=0,
                   help="numpy float64 arrays of 5 MiB and some (needs "
                        "numpy; numpy madvises them for huge pages)")
    p.add_argument("--iconv", action="store_true",
                   help="open an iconv converter, as locale and codec code "
                        "in C libraries does: glibc maps its gconv modules "
                        "and the shared (r--s) gconv-modules.cache")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--gc-addresses", action="store_true",
                   help="also write '<oracle>.gc' with 'address tp_name' of "
                        "every object on the GC lists")
    p.add_argument("--oracle", default=os.environ.get("PM_ORACLE_FILE",
                                                      "oracle.json"))
    p.add_argument("--no-stop", action="store_true",
                   help="write the oracle and exit instead of stopping")
    return p.parse_args(argv)


def random_str(rng, n):
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def build_sentinels(n, rng):
    """n of each kind; the values come from rng so none is a shared constant."""
    objs = {
        "SlotsSentinel": [SlotsSentinel(i, rng.random()) for i in range(n)],
        "PlainSentinel": [PlainSentinel(i, rng.random()) for i in range(n)],
        "DictSentinel": [DictSentinel(k=i) for i in range(n)],
        "ListSentinel": [ListSentinel((i,)) for i in range(n)],
        "IntSentinel": [IntSentinel(rng.getrandbits(40) | 1 << 40)
                        for _ in range(n)],
    }
    values = {
        "float": [rng.random() * 1e9 for _ in range(n)],
        "int": [rng.getrandbits(62) | 1 << 62 for _ in range(n)],
        "str": [random_str(rng, rng.randint(8, 40)) for _ in range(n)],
        "bytes_small": [os.urandom(rng.randint(*SMALL_BYTES))
                        for _ in range(n)],
        "bytes_large": [os.urandom(rng.randint(*LARGE_BYTES))
                        for _ in range(n)],
    }
    KEEP.append(objs)
    KEEP.append(values)
    # Counted objects of SlotsSentinel/PlainSentinel hold a float each; the
    # class counts are exact, the value-kind counts are lower bounds.
    return {
        "sentinels": {name: len(v) for name, v in objs.items()},
        "sentinel_values": {name: len(v) for name, v in values.items()},
        "sentinel_value_sizes": {"bytes_small": list(SMALL_BYTES),
                                 "bytes_large": list(LARGE_BYTES)},
        "sentinel_addresses": {name: [id(o) for o in v[:16]]
                               for name, v in list(objs.items()) +
                               list(values.items())},
    }


def thread_body(k, count, ready, release):
    rng = random.Random(k)
    mine = [PlainSentinel(k, i) for i in range(count)]
    mine.append([os.urandom(rng.randint(*LARGE_BYTES)) for _ in range(count)])
    KEEP.append(mine)
    ready.release()
    release.wait()


def start_threads(n, count):
    ready = threading.Semaphore(0)
    release = threading.Event()
    threads = []
    for k in range(n):
        t = threading.Thread(target=thread_body, name="worker-%d" % k,
                             args=(k, count, ready, release), daemon=True)
        t.start()
        threads.append(t)
    for _ in threads:
        ready.acquire()
    KEEP.append((threads, release))
    return [{"name": t.name, "ident": t.ident,
             "native_id": getattr(t, "native_id", None)} for t in threads]


ARENA_ALLOC = 20000     # more than an arena block (8 KiB): one block each


def build_ast_arenas(n, allocs):
    """n PyArenas, as the compiler makes them, each with `allocs` large
    allocations; the addresses the C API returned are the oracle."""
    api = ctypes.pythonapi
    new = getattr(api, "_PyArena_New", None) or api.PyArena_New
    alloc = getattr(api, "_PyArena_Malloc", None) or api.PyArena_Malloc
    new.restype = ctypes.c_void_p
    new.argtypes = []
    alloc.restype = ctypes.c_void_p
    alloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    arenas = []
    for _ in range(n):
        arena = new()
        arenas.append({"arena": arena,
                       "allocs": [alloc(arena, ARENA_ALLOC)
                                  for _ in range(allocs)]})
    KEEP.append(arenas)     # never freed: they live until the stop
    return arenas


IO_MARKER = b"PMIOBUF-%08d-"    # 17 bytes, unflushed at each buffer's start


def open_files(n, buffering):
    """n files open for writing, each with IO_MARKER % i written but not
    flushed, so it sits at the start of the file object's buffer; and the
    count of _io buffered objects still open (each holds one buffer): the
    std streams' too, whatever their buffering here is."""
    files = []
    for i in range(n):
        f = open("iofile%d" % i, "wb", buffering=buffering)
        f.write(IO_MARKER % i)
        files.append(f)
    KEEP.append(files)
    kinds = (io.BufferedReader, io.BufferedWriter, io.BufferedRandom)
    open_buffered = sum(1 for o in gc.get_objects()
                        if type(o) in kinds and not o.closed)
    return {"files": n, "buffering": buffering,
            "marker": IO_MARKER.decode(), "open_buffered": open_buffered}


SIO_MARKER = "PMSIO-%08d-"   # at the start of each StringIO's buffer
DEQUE_BLOCK = 528            # sizeof(block): 64 item pointers and 2 links


def build_containers(n, rng):
    """n of each container, a quarter of them instances of subclasses.
    Deques are only appended to (left and right), never popped, so no
    deque keeps a freed block (3.11+ caches those per deque, outside
    __sizeof__). What the process says about them: each array's buffer
    address and byte size (buffer_info()); the StringIO marker; and, from
    gc.get_objects() (deques, StringIOs and OrderedDicts are GC objects),
    totals over every instance in the process, computed later by
    container_truth()."""
    made = {"deques": [], "arrays": [], "stringios": [], "odicts": []}
    for i in range(n):
        sub = i % 4 == 3
        d = (DequeSentinel if sub else collections.deque)(
            range(rng.randint(0, 700)), *(() if i % 5 else (1000,)))
        d.extendleft(range(rng.randint(0, 200)))
        made["deques"].append(d)
        code = "bhilqfd"[i % 7]
        a = (ArraySentinel if sub else array.array)(
            code, [k % 100 for k in range(rng.randint(1, 2000))])
        for k in range(i % 3):
            a.append(k)
        made["arrays"].append(a)
        s = (StringIOSentinel if sub else io.StringIO)(
            SIO_MARKER % i + "y" * rng.randint(0, 5000))
        made["stringios"].append(s)
        od = (ODictSentinel if sub else collections.OrderedDict)(
            (k, k) for k in range(rng.randint(0, 3000) if i % 6 else 0))
        made["odicts"].append(od)
    KEEP.append(made)
    arrays = []
    for a in made["arrays"]:
        address, length = a.buffer_info()
        arrays.append([address, length * a.itemsize])
    return {"n": n, "arrays": arrays, "stringio_marker": SIO_MARKER,
            "array_ids": [id(a) for a in made["arrays"]],
            "deque_ids": [id(d) for d in made["deques"]],
            "odict_ids": [id(od) for od in made["odicts"]]}


def container_truth():
    """Totals over every deque, StringIO and OrderedDict (subclasses
    too) that gc.get_objects() lists, from the objects' own accounting:
    a deque's blocks from its __sizeof__ (basicsize + blocks * 528), an
    OrderedDict's nodes (one per key) and its fast-nodes index from its
    __sizeof__ (dict part + 8 per index slot + 32 per node)."""
    truth = {"deques": 0, "deque_blocks": 0, "stringios_open": 0,
             "odicts": 0, "odict_nodes": 0, "odict_fast_nodes": 0,
             "odict_fast_nodes_bytes": 0}
    for o in gc.get_objects():
        if isinstance(o, collections.deque):
            truth["deques"] += 1
            truth["deque_blocks"] += \
                (o.__sizeof__() - type(o).__basicsize__) // DEQUE_BLOCK
        elif isinstance(o, io.StringIO):
            truth["stringios_open"] += not o.closed
        elif isinstance(o, collections.OrderedDict):
            truth["odicts"] += 1
            truth["odict_nodes"] += len(o)
            fast = o.__sizeof__() - dict.__sizeof__(o) - 32 * len(o)
            truth["odict_fast_nodes"] += fast > 0
            truth["odict_fast_nodes_bytes"] += fast
    del o
    return truth


def interpreter_states():
    """The main interpreter and its thread states, as the C API walks them
    (PyInterpreterState_ThreadHead / PyThreadState_Next), and how many
    threads the threading module counts."""
    api = ctypes.pythonapi
    for name, args in (("PyInterpreterState_Main", []),
                       ("PyInterpreterState_ThreadHead", [ctypes.c_void_p]),
                       ("PyThreadState_Next", [ctypes.c_void_p])):
        getattr(api, name).restype = ctypes.c_void_p
        getattr(api, name).argtypes = args
    interp = api.PyInterpreterState_Main()
    states = []
    ts = api.PyInterpreterState_ThreadHead(interp)
    while ts and len(states) < 10000:
        states.append(ts)
        ts = api.PyThreadState_Next(ts)
    return {"main": interp, "thread_states": states,
            "active_count": threading.active_count()}


def glibc_version():
    """[major, minor] of the glibc this process runs on (gnu_get_libc_version)."""
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    return [int(x) for x in libc.gnu_get_libc_version().decode().split(".")[:2]]


# glibc 2.43 maps a header's worth more after an mmapped chunk; asked once
# at start, not while the heap is being arranged
GLIBC_MMAP_TAIL = 16 if tuple(glibc_version()) >= (2, 43) else 0


def version_info():
    import sysconfig
    return {
        "version": sys.version,
        "version_info": list(sys.version_info[:3]),
        "glibc": glibc_version(),
        "releaselevel": sys.version_info.releaselevel,
        "hexversion": sys.hexversion,
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "dev_mode": bool(getattr(sys.flags, "dev_mode", False)),
        "pythonmalloc": os.environ.get("PYTHONMALLOC"),
        "debug_build": hasattr(sys, "gettotalrefcount"),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
    }


def tp_name(tp, offset):
    """The type's tp_name as the C structure holds it (what a heap walker
    reads), e.g. 'collections.OrderedDict' where __name__ is 'OrderedDict'."""
    raw = ctypes.c_char_p.from_address(id(tp) + offset).value
    return raw.decode("utf-8", "replace") if raw else tp.__name__


NUMBER_FIELDS = ["allocated_blocks"] + ["mallinfo2." + name
                                        for name, _ in Mallinfo2._fields_]
PLACEHOLDER_BASE = 10 ** 19     # 20 digits, as wide as any size_t


class Oracle:
    """Writes the oracle so that nothing allocated by glibc malloc, and no
    pymalloc block, differs between the moment the numbers are read and the
    stop. The JSON text (big: gc counts) is written first with 20-digit
    placeholders for the numbers; then the numbers are read and written over
    the placeholders in place ("%20d", still valid JSON); only small,
    short-lived pymalloc objects are made after the reading. The
    sys._debugmallocstats() text goes to its own file (the harness inlines it
    as "debugmallocstats"), written by C code straight to the file."""

    def __init__(self, path):
        self.path = path
        self.libc = ctypes.CDLL(None)
        self.mallinfo2 = self.libc.mallinfo2
        self.mallinfo2.restype = Mallinfo2
        self.mallinfo2.argtypes = []
        self.mi = Mallinfo2()
        self.blocks = ctypes.c_ssize_t(0)
        self.offsets = (ctypes.c_long * len(NUMBER_FIELDS))()
        self.names = [sys.intern(f[10:]) for f in NUMBER_FIELDS]
        # tp_name follows PyVarObject's header: sizeof(PyObject) + ob_size.
        self.tp_name_offset = object.__basicsize__ + 8

    def gc_counts(self):
        counts = {}
        objs = gc.get_objects()
        for o in objs:
            name = tp_name(type(o), self.tp_name_offset)
            counts[name] = counts.get(name, 0) + 1
        total = len(objs)
        del objs, o
        return counts, total

    def write_gc_addresses(self, path):
        # Listed before the file objects exist, so they are not in it.
        # (A loop, not a comprehension: before 3.12 one would close over
        # self and make a cell object before the listing.)
        offset = self.tp_name_offset
        objs = gc.get_objects()
        lines = []
        for o in objs:
            lines.append("0x%x %s\n" % (id(o), tp_name(type(o), offset)))
        del objs, o
        text = "".join(lines)
        del lines
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def write_text(self, path, doc):
        """Writes doc with placeholders to path+'.tmp'; returns the open fd
        and fills self.offsets with the placeholders' byte offsets."""
        doc["allocated_blocks"] = PLACEHOLDER_BASE
        doc["mallinfo2"] = {}
        for k, field in enumerate(NUMBER_FIELDS):
            if field.startswith("mallinfo2."):
                doc["mallinfo2"][field[10:]] = PLACEHOLDER_BASE + k
        text = json.dumps(doc).encode()
        for k in range(len(NUMBER_FIELDS)):
            self.offsets[k] = text.index(b"%d" % (PLACEHOLDER_BASE + k))
        fd = os.open(path + ".tmp", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view):]
        del view, text
        return fd

    def finish(self, path, doc, gc_addresses):
        """The whole capture; returns right before the stop."""
        gc.collect()
        counts, total = self.gc_counts()
        doc["gc_counts"] = counts
        doc["gc_counts_key"] = "tp_name"
        doc["gc_total"] = total
        doc["debugmallocstats_file"] = path + ".dms"
        if gc_addresses:
            doc["gc_objects_file"] = path + ".gc"
            self.write_gc_addresses(doc["gc_objects_file"])
        fd = self.write_text(path, doc)
        dms = os.open(path + ".dms", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                      0o644)
        tmp, final = (path + ".tmp").encode(), path.encode()
        self.keep = (tmp, final)
        # No cyclic garbage may be freed after the counts: collect it now.
        gc.collect()
        # -- from here on only small temporaries --
        sys.stderr.flush()
        r = self.mallinfo2()
        ctypes.memmove(ctypes.addressof(self.mi), ctypes.addressof(r),
                       ctypes.sizeof(Mallinfo2))
        del r
        saved = os.dup(2)
        os.dup2(dms, 2)
        sys._debugmallocstats()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(dms)
        self.blocks.value = sys.getallocatedblocks()
        os.pwrite(fd, b"%20d" % self.blocks.value, self.offsets[0])
        for k in range(1, len(NUMBER_FIELDS)):
            os.pwrite(fd, b"%20d" % getattr(self.mi, self.names[k]),
                      self.offsets[k])
        os.close(fd)
        os.rename(tmp, final)


def capture_and_stop(path, info, gc_addresses, no_stop, garbage=0):
    """Captures the oracle and stops at once, forever. With garbage, that
    many reference cycles are made after the capture (gc is disabled),
    their count written to <oracle>.garbage; after each resume a
    <oracle>.collect file makes the process collect them (py_graph)."""
    kill, pid, sig = os.kill, os.getpid(), signal.SIGSTOP
    oracle = Oracle(path)
    gc.collect()
    gc.disable()
    # Warm-up: the first run fills caches (imports, zombie frames, ctypes
    # call machinery, free lists) that the real one then reuses.
    oracle.finish(path + ".warmup", dict(info), gc_addresses)
    doc = dict(info)
    doc["pid"] = pid
    # sys._debugmallocstats() once more as the very last act, into
    # <oracle>.last.dms: finish() still runs a little Python after its own
    # reading (writing the numbers, renaming the file), which can move a few
    # pymalloc blocks; between this reading and the stop only C calls with
    # small cached ints run. Tests that compare pymalloc block for block use
    # this one. The file and dup are made before finish(), so nothing
    # allocated for them is in or after any reading.
    last_dms = os.open(path + ".last.dms",
                       os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved_err = os.dup(2)
    dup2, debugmallocstats = os.dup2, sys._debugmallocstats
    oracle.finish(path, doc, gc_addresses)
    dup2(last_dms, 2)
    debugmallocstats()
    dup2(saved_err, 2)
    if garbage:
        import py_graph
        made = py_graph.make_garbage(garbage)
        with open(path + ".garbage", "w") as f:
            f.write("%d\n" % made)
    if no_stop:
        return
    while True:
        kill(pid, sig)
        if garbage:
            py_graph.garbage_service(path + ".collect", path + ".collected")


TP_DOC = 176    # PyTypeObject.tp_doc, 3.8-3.15
DOC_MARKER = "pymortem-doc-%d:"


def build_doc_classes(n):
    """n classes made by type_new, each with a docstring that starts
    with its marker and is 1 + 37 * i bytes longer (up to over 512): its
    copy is the heap type's tp_doc. Also what the process says of every
    heap type: how many hold a str __doc__ in their own dict (tp_doc set
    from it, or it set from tp_doc by PyType_FromSpec) without a NUL."""
    docs = []
    for i in range(n):
        doc = DOC_MARKER % i + "d" * (1 + 37 * i)
        KEEP.append(type("DocClass%d" % i, (), {"__doc__": doc}))
        docs.append(doc)
    # A doc of 8 bytes: its copy of 9 is followed at once by the debug
    # hooks' 0xfd trailer, which once read as a second debug header.
    short = type("ShortDocClass", (), {"__doc__": "8 bytes!"})
    KEEP.append(short)
    short_doc = ctypes.c_void_p.from_address(id(short) + TP_DOC).value
    heap = 0
    pointers = []
    for t in gc.get_objects():
        if isinstance(t, type) and t.__flags__ & (1 << 9):
            doc = t.__dict__.get("__doc__")
            # A __doc__ assigned after the class was made (3.14's
            # dataclasses in _colorize) leaves tp_doc NULL: no copy.
            tp_doc = ctypes.c_void_p.from_address(id(t) + TP_DOC).value
            if isinstance(doc, str) and "\0" not in doc and tp_doc is not None:
                heap += 1
                head = doc.encode("utf-8", "surrogatepass")[:32]
                pointers.append([tp_doc, t.__qualname__, list(head), id(t)])
    return {"marker": DOC_MARKER, "lengths": [len(d) for d in docs],
            "heap_types_with_doc": heap, "doc_pointers": pointers,
            "short_doc": short_doc}


def module_states():
    """Imports extension modules that keep state (m_size > 0) and reports,
    for every module object in sys.modules, what the C API says:
    PyModule_GetState and its definition's m_size (PyModuleDef as declared
    in moduleobject.h)."""
    for name in ("_decimal", "array", "_json", "_csv", "_struct",
                 "_pickle", "_random", "_datetime", "_socket", "_queue"):
        try:
            KEEP.append(__import__(name))
        except ImportError:
            pass

    class ModuleDef(ctypes.Structure):
        _fields_ = [("ob_refcnt", ctypes.c_ssize_t),
                    ("ob_type", ctypes.c_void_p),
                    ("m_init", ctypes.c_void_p),
                    ("m_index", ctypes.c_ssize_t),
                    ("m_copy", ctypes.c_void_p),
                    ("m_name", ctypes.c_char_p),
                    ("m_doc", ctypes.c_char_p),
                    ("m_size", ctypes.c_ssize_t)]
    api = ctypes.pythonapi
    api.PyModule_GetState.restype = ctypes.c_void_p
    api.PyModule_GetState.argtypes = [ctypes.py_object]
    api.PyModule_GetDef.restype = ctypes.POINTER(ModuleDef)
    api.PyModule_GetDef.argtypes = [ctypes.py_object]
    states = []
    for name, m in list(sys.modules.items()):
        if not isinstance(m, types.ModuleType):
            continue
        state = api.PyModule_GetState(m)
        d = api.PyModule_GetDef(m)
        if state and d:
            states.append({"name": name, "address": state,
                           "size": d.contents.m_size})
    return states


def open_iconv():
    """An iconv converter kept open (glibc's iconv_open maps the gconv
    modules and its cache file, MAP_SHARED). What the process says: the
    maps lines of that cache."""
    libc = ctypes.CDLL(None)
    libc.iconv_open.restype = ctypes.c_void_p
    libc.iconv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    handle = libc.iconv_open(b"UTF-16", b"ISO-8859-1")
    if handle in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "iconv_open failed")
    KEEP.append(handle)
    with open("/proc/self/maps") as f:
        return [line.rstrip("\n") for line in f if "gconv-modules" in line]


def build_elements(n):
    """n C ElementTree elements (xml.etree.ElementTree.Element is the
    _elementtree type), element i with i % 10 children (each child a leaf
    without extra) and, every third, an attribute. What the process says:
    how many have an extra (children or attributes: keys() does not create
    one, .attrib would) and how many outgrew the 4 inline child slots."""
    from xml.etree import ElementTree as ET
    made = []
    for i in range(n):
        e = ET.Element("pm%d" % i, {"k": str(i)} if i % 3 == 0 else {})
        for k in range(i % 10):
            e.append(ET.Element("c"))
        made.append(e)
    KEEP.append(made)
    return {"type": type(made[0]).__module__ + "." + type(made[0]).__name__,
            "extras": sum(1 for e in made if len(e) or e.keys()),
            "children_arrays": sum(1 for e in made if len(e) > 4)}


def build_datetimes(n):
    """n each of naive and aware datetime.time and datetime.datetime (the
    naive ones are allocated without their tzinfo field), and the ids of
    every instance of the two exact types that a GC object refers to:
    those and the classes' constants (min, max, ...), and any others."""
    import datetime
    tz = datetime.timezone(datetime.timedelta(hours=2))
    made = []
    for i in range(n):
        made.append(datetime.time(i % 24, i % 60, i % 60, i))
        made.append(datetime.time(i % 24, i % 60, 1, i, tzinfo=tz))
        made.append(datetime.datetime(2000 + i % 50, 1 + i % 12, 1, 0, 0, 0, i))
        made.append(datetime.datetime(2000 + i % 50, 1 + i % 12, 2,
                                      tzinfo=tz))
    KEEP.append(made)
    # Every instance any GC object refers to (the workload's, the classes'
    # constants in their dicts, module globals anywhere).
    names = {datetime.time: "datetime.time",
             datetime.datetime: "datetime.datetime"}
    ids = {name: set() for name in names.values()}
    for holder in gc.get_objects():
        for obj in gc.get_referents(holder):
            if type(obj) in names:
                ids[names[type(obj)]].add(id(obj))
    return {name: sorted(v) for name, v in ids.items()}


def build_stale_list_items(n):
    """n one-item lists whose item arrays (4 slots, 32 bytes) reuse the
    block of an int just freed: past the item pointer the block still holds
    the int's header. What the process says: each list's id, its item
    array's address (ob_item, read with ctypes) and whether word 1 of that
    array still is &PyLong_Type (the stale header)."""
    base = 1 << 40
    lists = []
    for i in range(n):
        v = base + i        # a 32-byte int
        del v               # its block heads the pool's free list
        lst = []
        lst.append(None)    # the 4-slot array takes that block
        lists.append(lst)
    KEEP.append(lists)
    int_type = id(int)
    out = []
    for lst in lists:
        items = ctypes.c_size_t.from_address(id(lst) + 24).value
        stale = ctypes.c_size_t.from_address(items + 8).value == int_type
        out.append([id(lst), items, stale])
    return out


class StrSubclass(str):
    pass


STR_MARKER = "pmstr-%06d-"


def build_str_subclasses(n):
    """n instances of a str subclass (their characters are an allocation of
    their own), a quarter each ASCII, Latin-1, UCS-2 and UCS-4, each
    starting with its marker. What the process says: id, text length,
    character width, and for the ASCII ones the data's address (their UTF-8
    form is the data itself: PyUnicode_AsUTF8AndSize)."""
    utf8 = ctypes.pythonapi.PyUnicode_AsUTF8AndSize
    utf8.restype = ctypes.c_void_p
    utf8.argtypes = [ctypes.py_object, ctypes.c_void_p]
    extra = ("x", "\xe9", "\u20ac", "\U0001f600")
    made, out = [], []
    for i in range(n):
        s = StrSubclass(STR_MARKER % i + extra[i % 4] * (i % 50 + 1))
        made.append(s)
        width = max(1 if ord(c) < 256 else 2 if ord(c) < 65536 else 4
                    for c in s)
        out.append({"id": id(s), "length": len(s), "width": width,
                    "ascii": s.isascii(),
                    "data": utf8(s, None) if s.isascii() else None})
    KEEP.append(made)
    return {"marker": STR_MARKER, "strs": out}


class ArenaAllocator(ctypes.Structure):
    """PyObjectArenaAllocator (Include/cpython/objimpl.h)."""
    _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p),
                ("free", ctypes.c_void_p)]


def place_adjacent_arena(lib_path):
    """A glibc mmapped chunk (a bytes object) with a pymalloc arena mapped
    exactly where the chunk's mapping ends. The kernel maps top-down, so a
    fresh chunk lands right below the lowest mapping: a spacer mapping is
    made first, the chunk below it, then the spacer is unmapped and the
    next pymalloc arena is mapped there (adjacent_arena.c). What the
    process saw: the chunk (from its own header word), the arena's
    address, and the bytes object's id."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib = ctypes.CDLL(lib_path)
    lib.adjacent_arena_place.argtypes = [ctypes.c_size_t]
    lib.adjacent_arena_placed.restype = ctypes.c_size_t
    spacer_size = 1 << 20           # >= pymalloc's arena size
    prot_none, map_private_anonymous = 0, 0x22
    kept = []
    # glibc 2.43 maps a header's worth more after an mmapped chunk (asked
    # before the loop: nothing may be allocated between spacer and chunk)
    tail = GLIBC_MMAP_TAIL
    hooks = 16 if hasattr(sys, "gettotalrefcount") else 0
    for _ in range(50):
        spacer = libc.mmap(None, spacer_size, prot_none,
                           map_private_anonymous, -1, 0)
        big = bytes(600000)         # over the mmap threshold
        kept.append(big)
        # (hooks: a pydebug build's debug hooks put {size, api id} first)
        size_word = ctypes.c_size_t.from_address(id(big) - hooks - 8).value
        chunk = id(big) - hooks - 16
        chunk_end = chunk + (size_word & ~7) + tail
        if size_word & 2 and chunk_end == spacer:
            break
        libc.munmap(spacer, spacer_size)
    else:
        raise RuntimeError("no mmapped chunk right below a spacer mapping")
    # Everything ctypes needs is made before the spacer goes, so nothing
    # else is mapped into its place before the arena.
    allocator = ArenaAllocator(None,
                               ctypes.cast(lib.adjacent_arena_alloc,
                                           ctypes.c_void_p),
                               ctypes.cast(lib.adjacent_arena_free,
                                           ctypes.c_void_p))
    allocator_ref = ctypes.byref(allocator)
    set_allocator = ctypes.pythonapi.PyObject_SetArenaAllocator
    place, munmap, placed = lib.adjacent_arena_place, libc.munmap, lib.adjacent_arena_placed
    # Its slots exist already: growing a list would mmap its items array,
    # maybe into the spacer's place, before pymalloc asks for an arena.
    small = [None] * (1 << 22)
    munmap(spacer, spacer_size)
    place(chunk_end)
    set_allocator(allocator_ref)
    for i in range(1 << 22):
        small[i] = b"%d" % i
        if not i & 1023 and placed():
            break
    KEEP.append((kept, small, lib, allocator))
    if not lib.adjacent_arena_placed():
        raise RuntimeError("no pymalloc arena was mapped at the chunk's end")
    return {"chunk": chunk, "chunk_end": chunk_end, "object": id(big),
            "arena": lib.adjacent_arena_placed()}


MADV_HUGEPAGE = 14
HUGEPAGE_BLOCK = (5 << 20) + 4321   # over numpy's 4 MiB madvise threshold


def libc_functions():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.malloc_usable_size.restype = ctypes.c_size_t
    libc.malloc_usable_size.argtypes = [ctypes.c_void_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def build_hugepage_blocks(n):
    """n glibc blocks (mmapped chunks: over the mmap threshold), written
    through and then, as numpy does for arrays over 4 MiB, madvised for huge
    pages from the first page boundary after the pointer to the block's
    end: the kernel splits each chunk's mapping there. What the process
    says: each pointer and its malloc_usable_size()."""
    libc = libc_functions()
    blocks = []
    for i in range(n):
        size = HUGEPAGE_BLOCK + i * 4096
        p = libc.malloc(size)
        if not p:
            sys.exit("malloc(%d) failed" % size)
        ctypes.memset(p, 0x5a, size)
        first = (p + 4095) & ~4095
        if libc.madvise(first, p + size - first, MADV_HUGEPAGE) != 0:
            sys.exit("madvise: errno %d" % ctypes.get_errno())
        blocks.append({"user": p, "usable": libc.malloc_usable_size(p)})
    KEEP.append(blocks)     # never freed
    return blocks


def build_numpy_arrays(n):
    """n numpy arrays over 4 MiB (numpy mallocs their data and madvises it
    for huge pages); what the process says: each data pointer, its size and
    its malloc_usable_size()."""
    import numpy
    libc = libc_functions()
    arrays = [numpy.ones(HUGEPAGE_BLOCK // 8 + 1000 * i) for i in range(n)]
    KEEP.append(arrays)
    return [{"user": a.ctypes.data, "nbytes": a.nbytes,
             "usable": libc.malloc_usable_size(a.ctypes.data)}
            for a in arrays]


def main(argv):
    args = parse_args(argv)
    if args.tracemalloc:
        import tracemalloc
        tracemalloc.start()
    rng = random.Random(args.seed)
    info = {"format": 1, "argv": [sys.executable] + list(argv),
            "version": version_info()}
    if args.graph or args.leak_refs or args.garbage:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.leak_refs:
        # First: the C stack and registers have moved on by the stop.
        import py_graph
        info["leak_refs"] = py_graph.leak_refs(args.leak_refs)
    info.update(build_sentinels(args.sentinels, rng))
    if args.big_bytes:
        big = os.urandom(args.big_bytes)
        KEEP.append(big)
        info["big_bytes"] = {"size": len(big), "address": id(big)}
    if args.adjacent_arena:
        info["adjacent_arena"] = place_adjacent_arena(args.adjacent_arena)
    info["ast_arenas"] = build_ast_arenas(args.ast_arenas, args.arena_allocs)
    info["hugepage_blocks"] = build_hugepage_blocks(args.hugepage_blocks)
    if args.numpy_arrays:
        info["numpy_arrays"] = build_numpy_arrays(args.numpy_arrays)
    info["threads"] = start_threads(args.threads, args.thread_objects)
    info["interpreter"] = interpreter_states()
    info["io_buffers"] = open_files(args.open_files, args.file_buffering)
    if args.containers:
        info["containers"] = build_containers(args.containers, rng)
        info["containers"].update(container_truth())
    if args.module_states:
        info["module_states"] = module_states()
    if args.elements:
        info["elements"] = build_elements(args.elements)
    if args.datetimes:
        info["datetimes"] = build_datetimes(args.datetimes)
    if args.stale_list_items:
        info["stale_list_items"] = build_stale_list_items(args.stale_list_items)
    if args.str_subclasses:
        info["str_subclasses"] = build_str_subclasses(args.str_subclasses)
    if args.graph:
        import py_graph
        objs = py_graph.sample_objects()
        info["graph_paths"] = py_graph.plant_paths()
        info["graph_thread"] = py_graph.thread_local_path()
        retention = py_graph.retention_structures()
        entries = {k: retention[k] for k in ("cache", "tree", "subtree", "a", "b", "leak")}
        retention["dominated"] = py_graph.dominated_in_process(entries)
        info["graph_retention"] = retention
        # Last: nothing the samples refer to changes after this.
        info["graph_referents"] = py_graph.referents_truth(objs)
        info["graph_referrers"] = py_graph.referrers_truth(objs)
        del objs
    if args.iconv:
        info["iconv_maps"] = open_iconv()
    if args.doc_classes:
        # Last: its count of documented heap types covers the others'.
        info["doc_classes"] = build_doc_classes(args.doc_classes)
    if args.tracemalloc:
        # Entries of tracemalloc's traces table(s), one per traced block:
        # counted again as late as possible, the capture moves a few.
        info["tracemalloc_traces"] = len(tracemalloc._get_traces())
    capture_and_stop(os.path.abspath(args.oracle), info, args.gc_addresses,
                     args.no_stop, args.garbage)


if __name__ == "__main__":
    main(sys.argv[1:])
