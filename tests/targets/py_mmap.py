"""Workload of tests/e2e/test_mmap_objects.py: makes mmap.mmap objects of
every kind the regions report labels, and one it must not:
  - anonymous (shared, mmap's default) of a page, of a size that is no
    multiple of a page, of 1 MiB and of 3 MiB;
  - anonymous private (MAP_PRIVATE): the kernel merges its mapping with a
    neighbouring anonymous one (often a library's .bss; else two pages
    mapped here by C, ctypes' mmap(2), right next to it), so that its
    region holds more than the object's pages (one that lands between two
    unmergeable neighbours stays open as a "private spare", and another is
    made);
  - of a whole temporary file, and of a window of another at an offset of
    two allocation granules;
  - an instance of a subclass of mmap.mmap;
  - one closed (its data pointer NULL: it holds nothing);
  - with --corrupt, more whose fields it then overwrites (ctypes, in the
    object itself; the process never touches them again and is killed,
    so nothing runs on them): data not page-aligned, data at a page no
    mapping holds, a size larger than any mapping, a file offset that is
    not the mapping's, and two objects given one mapping. pymortem must
    take none of them as an owner (their mappings stay unlabelled).
Writes to the oracle ($PM_ORACLE_FILE), as the process sees them, each
object's id(), its type's tp_name, data address (ctypes.addressof of a c_char
laid over its buffer; the view is dropped at once, so no export is left
behind) and len(); then stops itself, forever."""

import ctypes
import json
import mmap
import os
import signal
import sys
import tempfile


class SubMap(mmap.mmap):
    pass


def data_address(m):
    view = ctypes.c_char.from_buffer(m)
    address = ctypes.addressof(view)
    del view            # releases the export (a held one would block close)
    return address


def map_next_to(m):
    """Two anonymous private pages of C's own (no object's) right after
    the private mmap's mapping, or else right before it: the kernel merges
    them with it into one mapping, larger than the object's. Returns the
    pages' [start, end), or None when neither place was free (then a
    neighbour is there already, which the kernel may have merged)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = mmap.PAGESIZE
    start = data_address(m)
    end = start + (len(m) + page - 1) // page * page
    map_fixed_noreplace = 0x100000
    for at in (end, start - 2 * page):
        got = libc.mmap(at, 2 * page, mmap.PROT_READ | mmap.PROT_WRITE,
                        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | map_fixed_noreplace,
                        -1, 0)
        if got == at:
            return [at, at + 2 * page]
    return None


def maps_entry(address):
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return lo, hi
    return None


def private_merged(objects):
    """A private mmap whose mapping the kernel merged with a neighbour
    (appended to objects as "private"): its own, or two pages of C's put
    next to it. One whose neighbours are both unmergeable stays open (as
    "private spare": it fills that hole) and another is tried. Returns the
    C pages' [start, end) or None."""
    page = mmap.PAGESIZE
    for attempt in range(16):
        m = mmap.mmap(-1, 5 * page + 100, flags=mmap.MAP_PRIVATE)
        m[0:5] = b"hello"
        start = data_address(m)
        end = start + 6 * page
        neighbour = None
        if maps_entry(start) == (start, end):
            neighbour = map_next_to(m)
        if maps_entry(start) != (start, end):
            objects.append(("private", m))
            return neighbour
        objects.append(("private spare %d" % attempt, m))
    return None


KEEP = []      # the corrupted objects: never released (no dealloc runs)


def corrupted(files):
    """The --corrupt objects, as they were before their fields changed."""
    page = mmap.PAGESIZE
    made = []

    def make(what, m):
        made.append({"what": what, "id": id(m), "data": data_address(m),
                     "size": len(m)})
        KEEP.append(m)
        return m

    def poke(m, offset, value):     # mmap_object: data 16, size 24, offset 40
        ctypes.c_uint64.from_address(id(m) + offset).value = value

    m = make("misaligned", mmap.mmap(-1, 2 * page))
    poke(m, 16, made[-1]["data"] + 8)
    m = make("unmapped", mmap.mmap(-1, 2 * page))
    poke(m, 16, page)               # below mmap_min_addr: never mapped
    m = make("too large", mmap.mmap(-1, 2 * page))
    poke(m, 24, 1 << 45)
    f = tempfile.TemporaryFile()
    f.write(b"c" * (4 * page))
    f.flush()
    files.append(f)
    m = make("wrong offset", mmap.mmap(f.fileno(), 2 * page, offset=page))
    poke(m, 40, 2 * page)
    first = make("shared first", mmap.mmap(-1, 3 * page))
    second = make("shared second", mmap.mmap(-1, page))
    poke(second, 16, made[-2]["data"])
    poke(second, 24, 3 * page)
    del first, second
    return made


def tp_name(cls):
    """The C-level tp_name of a type, read from its PyTypeObject (after
    ob_refcnt, ob_type and ob_size in every version): what pymortem reads."""
    return ctypes.c_char_p.from_address(id(cls) + 24).value.decode()


def main():
    granule = mmap.ALLOCATIONGRANULARITY
    files = []
    objects = []
    for size in (mmap.PAGESIZE, 12345, 1 << 20, 3 << 20):
        objects.append(("anonymous %d" % size, mmap.mmap(-1, size)))
    whole = tempfile.TemporaryFile()
    whole.write(b"w" * 20000)
    whole.flush()
    files.append(whole)
    objects.append(("file", mmap.mmap(whole.fileno(), 0)))
    windowed = tempfile.TemporaryFile()
    windowed.write(b"o" * (6 * granule))
    windowed.flush()
    files.append(windowed)
    objects.append(("file at offset", mmap.mmap(windowed.fileno(), 3 * granule,
                                                offset=2 * granule)))
    objects.append(("subclass", SubMap(-1, 40000)))
    for _, m in objects:
        m[0:5] = b"hello"       # touched: resident in the process and cores
    neighbour = private_merged(objects)
    closed = mmap.mmap(-1, 8 * mmap.PAGESIZE)
    closed_data = data_address(closed)
    closed.close()
    corrupt = corrupted(files) if "--corrupt" in sys.argv else []
    doc = {"version": list(sys.version_info[:3]), "pid": os.getpid(),
           "page": mmap.PAGESIZE, "granule": granule,
           "open": [{"what": what, "id": id(m), "type": tp_name(type(m)),
                     "data": data_address(m),
                     "size": len(m)} for what, m in objects],
           "neighbour": neighbour,
           "corrupt": corrupt,
           "closed": {"id": id(closed), "data": closed_data}}
    path = os.environ["PM_ORACLE_FILE"]
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    keep = (objects, closed, files, KEEP)
    while keep:
        os.kill(os.getpid(), signal.SIGSTOP)


main()
