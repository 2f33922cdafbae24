"""bz2, zlib and lzma compressors and decompressors, for
tests/e2e/test_compress_buffers.py: BZ2Compressor objects at levels 1, 5
and 9, BZ2Decompressor objects that have decompressed a stream of levels
1, 5 and 9 (at least one block read), one that has only read part of a
stream, and a fresh one (no block read, so no block arrays); zlib
compressors of several levels, window sizes and memory levels (zlib, gzip
and raw streams; one with a stream flushed, one finished), zlib
decompressors fresh (no window yet) and having read a stream, and 3.12+'s
_ZlibDecompressor, one stopped by max_length (its copy of the input
kept); lzma compressors (xz, one flushed with a CRC32 check, .lzma and
raw with a delta filter, small dictionaries) and decompressors (fresh,
having read a stream, stopped by max_length). Writes what the process
itself says of each to the oracle
($PM_ORACLE_FILE) and stops itself, forever.

Each record has the object's id() and the memory its making caused,
taken from glibc's own books: mallinfo2()'s uordblks + hblkhd (bytes in
use in chunks, and in mmapped chunks) after less before the compressor's
creation, or the decompressor's creation and its first decompress call
(the output is dropped before the second reading). Those bytes are what
libbz2 allocated through CPython's BZ2_Malloc (PyMem_RawMalloc: glibc
malloc in every allocator mode) and the object's lock (PyThread_type_lock,
a malloc'd sem_t, where the object holds one), plus the object's own
allocation where PYTHONMALLOC=malloc puts objects in glibc; lock_delta is
the same measure of a PyThread_allocate_lock alone (_thread.allocate_lock()
less its object), object_delta of an object of the same basicsize.

argv[1] == "corrupt": after the records are taken, the stream-state
pointer of one compressor and one decompressor is zeroed, and the strm
back-pointer of a second pair's state is made wrong, by ctypes.memmove;
the record says which (corrupted: "state" or "strm"); one lzma
compressor's stream internal pointer is zeroed and one decompressor's
stream allocator pointer moved (corrupted: "state" or "allocator"). The state field is
found without knowing the layout: it is the only word of the object that
points at a malloc'd block whose first word is the object's address + 16
(libbz2's strm back-pointer to the bz_stream inside the object).
"""

import bz2
import ctypes
import gc
import json
import lzma
import os
import random
import signal
import sys
import zlib

KEEP = []
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
          "fsmblks", "uordblks", "fordblks", "keepcost")


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2


def in_use():
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def word(address):
    return ctypes.c_uint64.from_address(address).value


def readable():
    """[start, end) of the process's readable mappings, now (not the
    kernel's [vvar] and [vsyscall] pages)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if fields[1][0] != "r" or fields[-1] in ("[vvar]", "[vsyscall]"):
                continue
            out.append(tuple(int(x, 16) for x in fields[0].split("-")))
    return out


def pointed_word(address):
    """The word at an address an object's field holds, read through
    /proc/self/mem: None where the kernel refuses it (a guard page inside
    a readable mapping, glibc 2.43's thread stacks: a load there would
    crash the process)."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        data = os.pread(fd, 8, address)
    except OSError:
        return None
    finally:
        os.close(fd)
    return int.from_bytes(data, "little") if len(data) == 8 else None


def state_field(obj):
    """The offset of the word in obj pointing at a block whose first word
    is id(obj) + 16, when exactly one does (None otherwise)."""
    maps = readable()
    base = id(obj)
    found = []
    for off in range(16, type(obj).__basicsize__ - 7, 8):
        v = word(base + off)
        if v & 7 or not any(lo <= v and v + 8 <= hi for lo, hi in maps):
            continue
        if pointed_word(v) == base + 16:
            found.append(off)
    return found[0] if len(found) == 1 else None


def measured(make):
    """(object, bytes in use that make() added), with the collector's
    garbage gone first so that nothing else is freed meanwhile."""
    gc.collect()
    gc.disable()
    before = in_use()
    obj = make()
    after = in_use()
    gc.enable()
    return obj, after - before


def record(name, kind, obj, delta, extra=None):
    KEEP.append(obj)
    off = state_field(obj)
    rec = {"name": name, "kind": kind, "id": id(obj), "delta": delta,
           "basicsize": type(obj).__basicsize__, "state_offset": off,
           "state": word(id(obj) + off) if off is not None else 0,
           "corrupted": None,
           "eof": getattr(obj, "eof", None)}
    rec.update(extra or {})
    return rec


def decompressed(data, upto=None, max_length=-1):
    def make():
        d = bz2.BZ2Decompressor()
        out = d.decompress(data if upto is None else data[:upto], max_length)
        assert out or upto is not None
        del out
        return d
    return make


def compressor(level, data=None):
    def make():
        c = bz2.BZ2Compressor(level)
        if data is not None:
            c.compress(data)
            c.flush()
        return c
    return make


def objects():
    # Under 128 KiB (the mmap threshold the test sets), and so is every
    # output: no mmapped chunk is resized while a measure is taken (the
    # chroot's glibc 2.43 counts 16 bytes too many in hblkhd per mremap).
    # A stream's block arrays are as large as its level says, whatever
    # the data.
    payload = b"".join(b"record %08d: %s\n" % (i, b"abcdefghij" * (i % 7))
                       for i in range(2000))
    assert len(payload) < 100000
    streams = {level: bz2.compress(payload, level) for level in (1, 5, 9)}
    # (name, kind, level of its block arrays (0: none), maker)
    makers = [("compressor %d" % n, "compressor", n, compressor(n))
              for n in (1, 5, 9)]
    # Flushed: its arrays stay until it goes.
    makers.append(("compressor 3 flushed", "compressor", 3,
                   compressor(3, payload)))
    makers += [("decompressor %d" % n, "decompressor", n,
                decompressed(streams[n])) for n in (1, 5, 9)]
    makers.append(("decompressor 5 partial", "decompressor", 5,
                   decompressed(streams[5], 2000)))
    # Stopped at max_length in the first of three blocks: the rest of the
    # input is copied into its input buffer (over pymalloc's 512 bytes).
    rng = random.Random(5)
    noise = bytes(rng.getrandbits(8) for _ in range(250000))
    blocks = bz2.compress(noise, 1)
    assert len(blocks) > 200000
    makers.append(("decompressor 1 max_length", "decompressor", 1,
                   decompressed(blocks, max_length=10)))
    makers.append(("decompressor fresh", "decompressor", 0,
                   bz2.BZ2Decompressor))
    # Once each first: the free lists and the collector settle.
    for _, _, _, make in makers:
        make()
    out = []
    for name, kind, level, make in makers:
        _, noise = measured(lambda: None)
        obj, delta = measured(make)
        out.append(record(name, kind, obj, delta, {"level": level,
                                                   "noise": noise}))
    return out


def measure_all(makers):
    """The records of (name, kind, maker) triples: each maker run once
    first (the free lists and the collector settle), then measured, with
    the measuring's own noise beside it; keep_index is the object's place
    in KEEP."""
    for _, _, make in makers:
        make()
    out = []
    for name, kind, make in makers:
        _, noise_delta = measured(lambda: None)
        obj, delta = measured(make)
        out.append(record(name, kind, obj, delta, {"noise": noise_delta,
                                                   "keep_index": len(KEEP)}))
    return out


def zlib_objects():
    # Small enough that no output buffer is an mmapped chunk that a
    # realloc resizes (3.15's bytes writer does so for larger ones, and
    # glibc 2.43 then counts 16 bytes too many in hblkhd).
    payload = b"".join(b"line %06d %s\n" % (i, b"xyz" * (i % 11))
                       for i in range(1200))
    assert len(payload) < 40000
    stream = zlib.compress(payload)
    raw = zlib.compressobj(6, zlib.DEFLATED, -9)
    raw_stream = raw.compress(payload) + raw.flush()
    rng = random.Random(7)
    noise = zlib.compress(bytes(rng.getrandbits(8) for _ in range(150000)), 0)

    def compressor(level, wbits, memlevel, data=None, mode=None):
        def make():
            c = zlib.compressobj(level, zlib.DEFLATED, wbits, memlevel)
            if data is not None:
                c.compress(data)
                c.flush(mode) if mode is not None else c.flush()
            return c
        return make

    def decompressor(data=None, wbits=15):
        def make():
            d = zlib.decompressobj(wbits)
            if data is not None:
                out = d.decompress(data)
                assert out
                del out
            return d
        return make

    def zlib_decompressor(data, max_length=-1):
        def make():
            d = zlib._ZlibDecompressor()
            out = d.decompress(data, max_length)
            del out
            return d
        return make

    # (name, kind, maker)
    makers = [("zlib compressor %d/%d/%d" % args, "compress", compressor(*args))
              for args in ((6, 15, 8), (1, 9, 1), (9, 12, 9), (6, 31, 8),
                           (6, -10, 5))]
    makers += [("zlib compressor synced", "compress",
                compressor(6, 15, 8, payload, zlib.Z_SYNC_FLUSH)),
               ("zlib compressor finished", "compress",
                compressor(6, 15, 8, payload)),
               ("zlib decompressor fresh", "decompress", decompressor()),
               ("zlib decompressor read", "decompress", decompressor(stream)),
               ("zlib decompressor raw 9", "decompress",
                decompressor(raw_stream[:5000], -9))]
    if hasattr(zlib, "_ZlibDecompressor"):
        makers += [("zlib _ZlibDecompressor read", "_ZlibDecompressor",
                    zlib_decompressor(stream)),
                   ("zlib _ZlibDecompressor max_length", "_ZlibDecompressor",
                    zlib_decompressor(noise, max_length=10))]
    return measure_all(makers)


def lzma_stream_state(obj):
    """liblzma's lzma_internal of an _lzma object, found the way the
    public lzma_stream struct lays it out: the word after the stream's
    allocator field, the one word of the object pointing at the object's
    own lzma_allocator (id + 16). (offset of the allocator field, state);
    (None, 0) unless exactly one word does."""
    base = id(obj)
    found = [off for off in range(16, type(obj).__basicsize__ - 15, 8)
             if word(base + off) == base + 16]
    if len(found) != 1:
        return None, 0
    return found[0], word(base + found[0] + 8)


def lzma_objects():
    # Small dictionaries: each object's tree is a few MB (preset 6's
    # would be 94 MB), and its large arrays are mmapped chunks made once.
    payload = b"".join(b"entry %06d %s\n" % (i, b"lmn" * (i % 13))
                       for i in range(1500))
    small = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16}]
    stream = lzma.compress(payload, filters=small)
    rng = random.Random(11)
    noise = lzma.compress(bytes(rng.getrandbits(8) for _ in range(150000)),
                          filters=small)

    def compressor(data=None, **kwargs):
        def make():
            c = lzma.LZMACompressor(**kwargs)
            if data is not None:
                c.compress(data)
                c.flush()
            return c
        return make

    def decompressor(data=None, max_length=-1, **kwargs):
        def make():
            d = lzma.LZMADecompressor(**kwargs)
            if data is not None:
                out = d.decompress(data, max_length)
                assert out
                del out
            return d
        return make

    # (name, kind, maker)
    makers = [
        ("lzma compressor xz", "compressor", compressor(filters=small)),
        ("lzma compressor xz crc32 flushed", "compressor",
         compressor(payload, filters=small, check=lzma.CHECK_CRC32)),
        ("lzma compressor alone", "compressor",
         compressor(format=lzma.FORMAT_ALONE,
                    filters=[{"id": lzma.FILTER_LZMA1,
                              "dict_size": 1 << 16}])),
        ("lzma compressor raw delta", "compressor",
         compressor(payload[:5000], format=lzma.FORMAT_RAW,
                    filters=[{"id": lzma.FILTER_DELTA, "dist": 4}] + small)),
        ("lzma decompressor fresh", "decompressor", decompressor()),
        ("lzma decompressor read", "decompressor", decompressor(stream)),
        ("lzma decompressor max_length", "decompressor",
         decompressor(noise, max_length=10)),
    ]
    out = measure_all(makers)
    for rec in out:
        obj = KEEP[rec["keep_index"]]
        rec["allocator_offset"], rec["state"] = lzma_stream_state(obj)
        rec["input"] = bool(rec["kind"] == "decompressor" and
                            not obj.needs_input and not obj.eof)
    return out


def corrupt(records):
    """Zeroes the state pointer of one of each kind; makes the strm
    back-pointer of another of each kind point 8 bytes off."""
    picks = (("compressor 5", "state"), ("decompressor 5", "state"),
             ("compressor 1", "strm"), ("decompressor 9", "strm"),
             ("zlib compressor 1/9/1", "state"),
             ("zlib decompressor read", "state"),
             ("zlib compressor 9/12/9", "strm"),
             ("zlib decompressor fresh", "strm"),
             ("lzma compressor alone", "state"),
             ("lzma decompressor read", "allocator"))
    for name, what in picks:
        rec = next(r for r in records if r["name"] == name)
        if name.startswith("lzma"):
            # The stream's internal pointer zeroed, or its allocator
            # pointer made 8 bytes off.
            off = rec["allocator_offset"]
            assert off is not None, name
            bad = ctypes.c_uint64(0 if what == "state" else rec["id"] + 24)
            ctypes.memmove(rec["id"] + off + (8 if what == "state" else 0),
                           ctypes.addressof(bad), 8)
        elif what == "state":
            zero = ctypes.c_uint64(0)
            ctypes.memmove(rec["id"] + rec["state_offset"],
                           ctypes.addressof(zero), 8)
        else:
            wrong = ctypes.c_uint64(rec["id"] + 24)
            ctypes.memmove(rec["state"], ctypes.addressof(wrong), 8)
        rec["corrupted"] = what


def main():
    path = os.environ["PM_ORACLE_FILE"]
    records = objects()
    zlib_records = zlib_objects()
    lzma_records = lzma_objects()
    if sys.argv[1:] == ["corrupt"]:
        corrupt(records + zlib_records + lzma_records)
    doc = {"version": list(sys.version_info[:3]), "pid": os.getpid(),
           "bz2": records, "zlib": zlib_records, "lzma": lzma_records}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    while True:
        os.kill(os.getpid(), signal.SIGSTOP)


main()
