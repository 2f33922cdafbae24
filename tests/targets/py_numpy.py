"""numpy (and pandas) arrays for tests/e2e/test_numpy.py: makes arrays of
many dtypes and shapes, views of them, an object array, a memmap, and with
--pandas a DataFrame; writes what the process itself knows of each array
to the oracle ($PM_ORACLE_FILE) and stops itself, forever.

For every array: id(arr), __array_interface__['data'][0], nbytes, the
OWNDATA flag, and the PyArrayObject fields read at their offsets from
id(arr) with ctypes (data, nd, dimensions, strides, flags): the process's
own truth of where its fields point. "unavailable" (exit 3) when numpy
cannot be imported.

  --pandas     a DataFrame of ROWS rows: float, int, str (object) and
               category columns; its blocks' arrays are recorded as
               "blocks"
  --rows N     the DataFrame's rows (default 1000000)

With numpy 2, a StringDType array too, and where its strings live
("strings": its descr's allocator, arena buffer, heap strings).
"""

import ctypes
import json
import os
import signal
import sys
import threading
import types

try:
    import numpy as np
except ImportError:
    sys.stderr.write("numpy unavailable\n")
    sys.exit(3)

KEEP = []


def fields(arr):
    """PyArrayObject_fields as the process has them (numpy/ndarraytypes.h:
    data at 16, nd at 24, dimensions at 32, strides at 40, flags at 64)."""
    base = id(arr)
    word = lambda off: ctypes.c_uint64.from_address(base + off).value
    return {"data": word(16),
            "nd": ctypes.c_int.from_address(base + 24).value,
            "dimensions": word(32), "strides": word(40),
            "flags": ctypes.c_int.from_address(base + 64).value}


def record(name, arr):
    KEEP.append(arr)
    f = fields(arr)
    assert f["data"] == arr.__array_interface__["data"][0] or arr.nbytes == 0
    return {"name": name, "id": id(arr), "type": type(arr).__name__,
            "data": arr.__array_interface__["data"][0],
            "nbytes": int(arr.nbytes), "owndata": bool(arr.flags.owndata),
            "nd": arr.ndim, "fields": f,
            "base": id(arr.base) if arr.base is not None else 0}


def numpy_arrays(workdir):
    out = []
    dtypes = ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4",
              "f8", "c8", "c16", "?", "M8[s]", "m8[ms]", "U7", "S5",
              "f8,i4"]
    for k, dt in enumerate(dtypes):
        for n in (1, 3, 17, 100, 1000, 5000):
            out.append(record("%s[%d]" % (dt, n), np.zeros(n, dtype=dt)))
    out.append(record("2d", np.arange(600, dtype="f8").reshape(20, 30).copy()))
    out.append(record("3d", np.ones((4, 5, 6), dtype="i4")))
    out.append(record("fortran", np.ones((7, 9), dtype="f4", order="F")))
    out.append(record("0d", np.array(3.5)))
    out.append(record("0d object", np.array(None, dtype=object)))
    out.append(record("empty", np.empty(0)))
    out.append(record("empty 2d", np.empty((0, 5), dtype="i2")))
    big = np.arange(1 << 20, dtype="f8")           # 8 MiB: mmapped
    out.append(record("big", big))
    out.append(record("big 2d", np.ones((1500, 1000), dtype="f4")))
    base = np.arange(4000, dtype="i8")
    out.append(record("base", base))
    out.append(record("slice", base[10:2000:3]))
    out.append(record("view", base.view("u4")))
    out.append(record("reshape", base.reshape(40, 100)))
    mat = np.arange(1200, dtype="f4").reshape(30, 40).copy()
    out.append(record("matrix base", mat))
    out.append(record("transpose", mat.T))
    out.append(record("column", mat[:, 3]))
    out.append(record("broadcast", np.broadcast_to(mat[0], (10, 40))))
    strs = ["str %d" % i * (1 + i % 5) for i in range(3000)]
    objs = np.array(strs, dtype=object)
    out.append(record("object", objs))
    out.append(record("object mixed", np.array([1, "a", None, 2.5, (1, 2)],
                                               dtype=object)))
    out.append(record("subclass matrix", np.matrix(np.ones((6, 6)))))
    path = os.path.join(workdir, "memmap.bin")
    mm = np.memmap(path, dtype="f8", mode="w+", shape=(5000,))
    mm[:] = 1.0
    out.append(record("memmap", mm))
    out.append(record("from memmap", np.array(mm)))
    out.append(record("forged cell", forged_object(types.CellType)))
    out.append(record("forged lock", forged_object(type(threading.Lock()))))
    return out


def forged_object(tp):
    """An array whose data holds, where an object of type tp would start
    (past its GC head and pre-header, all zero: untracked), a refcount
    and tp: what a stale header reads as when numpy's calloc zeroes only
    the bytes it asked for, as a lock's 32 bytes into a reused 64-byte
    chunk. The array owns its data all the same."""
    offset = 0
    if tp.__flags__ & (1 << 14):                # Py_TPFLAGS_HAVE_GC
        offset += 16
    if sys.version_info >= (3, 12) and tp.__flags__ & (3 << 3):
        offset += 16                            # MANAGED_DICT, _WEAKREF
    arr = np.zeros(6, dtype="i8")
    arr[offset // 8], arr[offset // 8 + 1] = 1, id(tp)
    return arr


def string_arrays():
    """numpy 2's StringDType: an array of short (in the element), medium
    and long strings (in its descr's arena), two elements then replaced by
    longer strings (each a heap allocation of its own) and one by NA.
    Where each lives is read with ctypes from the process's own structs
    (PyArray_StringDTypeObject.allocator at 136, npy_string_allocator's
    arena size and buffer at 32 and 40, a packed string's address and
    size), and checked against the strings' own bytes there: the layout
    is confirmed by the contents, not assumed."""
    from numpy.dtypes import StringDType
    word = lambda addr: ctypes.c_uint64.from_address(addr).value
    strs = ["s%d" % i + "x" * (i % 300) for i in range(20000)]
    arr = np.array(strs, dtype=StringDType(na_object=None))
    arr[0] = "heap " * 100
    arr[3] = "longer than before " * 30
    arr[5] = None
    strs[0], strs[3] = arr[0], arr[3]
    descr = word(id(arr) + 56)
    assert descr == id(arr.dtype)
    allocator = word(descr + 136)
    arena_size, arena = word(allocator + 32), word(allocator + 40)
    data = arr.__array_interface__["data"][0]
    heap = []
    for i in (0, 3, 20, 299):       # heap, heap, medium, long (arena)
        offset = word(data + 16 * i)
        size_flags = word(data + 16 * i + 8)
        size, flags = size_flags & ((1 << 56) - 1), size_flags >> 56
        where = offset if flags & 0x20 else arena + offset
        assert ctypes.string_at(where, size) == strs[i].encode(), i
        if flags & 0x20:
            heap.append({"address": where, "size": size})
        else:
            assert arena <= where and where + size <= arena + arena_size
    assert len(heap) == 2
    return [record("stringdtype", arr)], {
        "id": id(arr), "allocator": allocator, "arena": arena,
        "arena_size": arena_size, "heap": heap}


def dataframe(rows):
    import pandas as pd
    n = rows
    df = pd.DataFrame({
        "f": np.arange(n, dtype="f8") / 3,
        "g": np.ones(n, dtype="f8"),
        "i": np.arange(n, dtype="i8"),
        "s": np.array(["name %d" % (i % 50000) for i in range(n)],
                      dtype=object),
        "c": pd.Categorical(["cat %d" % (i % 7) for i in range(n)]),
    })
    KEEP.append(df)
    blocks = []
    for b in df._mgr.blocks:
        v = b.values
        if isinstance(v, np.ndarray):
            owner = v
            # A block's array may be a view of the one that owns the data.
            for _ in range(8):
                if owner.flags.owndata or not isinstance(owner.base, np.ndarray):
                    break
                owner = owner.base
            blocks.append(dict(record("block %s" % v.dtype, v),
                               owner=record("owner", owner)))
        else:       # a Categorical: its codes (and categories) are arrays
            codes = v.codes
            blocks.append(dict(record("codes", codes),
                               owner=record("owner", codes if codes.flags.owndata
                                            else codes.base)))
    return blocks


def main():
    args = sys.argv[1:]
    path = os.environ["PM_ORACLE_FILE"]
    workdir = os.path.dirname(path) or "."
    doc = {"numpy": np.__version__, "pid": os.getpid()}
    if "--pandas" in args:
        rows = 1000000
        if "--rows" in args:
            rows = int(args[args.index("--rows") + 1])
        doc["blocks"] = dataframe(rows)
    else:
        doc["arrays"] = numpy_arrays(workdir)
        if int(np.__version__.split(".")[0]) >= 2:
            arrays, doc["strings"] = string_arrays()
            doc["arrays"] += arrays
        # numpy's dtype classes (numpy.dtype[float64], ...): PyMem_Malloc'd
        # copies of static types.
        doc["dtype_classes"] = sorted({id(type(np.dtype(c)))
                                       for c in "?bhilqBHILQefdgFDGSUVOMm"})
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    while True:
        os.kill(os.getpid(), signal.SIGSTOP)


main()
