"""Extension objects whose storage is an allocation of its own, for
tests/e2e/test_buffers.py: ctypes instances (Structures, Unions, Arrays of
many sizes, inline ones, ones sharing others' memory), io.BytesIO objects
(private buffers, shared ones, an exported one, a closed one) and
decimal.Decimal objects (inline coefficients and malloc'd ones, from
strings and from arithmetic). Writes what the process itself says of each
to the oracle ($PM_ORACLE_FILE) and stops itself, forever.

Each record has the object's id() and the process's own truth of its
buffer:
  ctypes   ctypes.addressof(obj) (b_ptr) and ctypes.sizeof(obj) (b_size),
           _b_needsfree_ and _b_base_; it owns a buffer when it must free
           it and addressof lies outside the object (its inline b_value is
           inside it)
  BytesIO  its buf pointer (read with ctypes at bytesio.buf, offset 16),
           and __sizeof__() less the type's basicsize: what bytesio_sizeof
           counts of a buf only the BytesIO holds (PyBytesObject_SIZE +
           ob_size; 0 when it is shared or gone), checked here against
           ob_size read with ctypes
  Decimal  its coefficient pointer and alloc read with ctypes (mpd_t.data
           at 64, alloc at 56), len(as_tuple().digits), and __sizeof__()
           less the basicsize: dec_sizeof's alloc * 8 of a malloc'd
           coefficient (0 while inline)
"""

import ctypes
import decimal
import io
import json
import os
import signal
import sys

KEEP = []


def word(address):
    return ctypes.c_uint64.from_address(address).value


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double),
                ("z", ctypes.c_double)]


class Odd(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 17)]


class Record(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int64), ("name", ctypes.c_char * 600),
                ("values", ctypes.c_double * 8)]


class SubRecord(Record):
    pass


class Either(ctypes.Union):
    _fields_ = [("text", ctypes.c_char * 100), ("number", ctypes.c_int)]


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_int)]


def ctypes_record(name, obj):
    KEEP.append(obj)
    address, size = ctypes.addressof(obj), ctypes.sizeof(obj)
    inside = id(obj) <= address < id(obj) + type(obj).__basicsize__
    return {"name": name, "id": id(obj), "address": address, "size": size,
            "needsfree": obj._b_needsfree_,
            "base": id(obj._b_base_) if obj._b_base_ is not None else 0,
            "owns": bool(obj._b_needsfree_) and not inside}


def ctypes_objects():
    out = []
    for i in range(3):
        out.append(ctypes_record("point", Point(1.0, 2.0, i)))
        out.append(ctypes_record("odd", Odd(b"x" * 16)))
        out.append(ctypes_record("union", Either(b"u" * 99)))
        out.append(ctypes_record("int[10]", (ctypes.c_int * 10)(*range(10))))
        out.append(ctypes_record("double[64]", (ctypes.c_double * 64)()))
        out.append(ctypes_record("char[513]", (ctypes.c_char * 513)()))
        out.append(ctypes_record("record", Record(i)))
        out.append(ctypes_record("subrecord", SubRecord(i)))
        out.append(ctypes_record("ubyte[5000]", (ctypes.c_ubyte * 5000)()))
        out.append(ctypes_record("string buffer",
                                 ctypes.create_string_buffer(1000)))
        grown = ctypes.create_string_buffer(100)
        ctypes.resize(grown, 3000 + i)
        out.append(ctypes_record("resized", grown))
        out.append(ctypes_record("copy", Record.from_buffer_copy(
            bytes(ctypes.sizeof(Record)))))
        # Inline (b_size fits in b_value) or another's memory: no buffer.
        out.append(ctypes_record("c_int", ctypes.c_int(i)))
        out.append(ctypes_record("pair", Pair(1, 2)))
        out.append(ctypes_record("double[2]", (ctypes.c_double * 2)()))
        record = Record(i)
        KEEP.append(record)
        out.append(ctypes_record("field of record", record.values))
        backing = bytearray(300)
        KEEP.append(backing)
        out.append(ctypes_record("from_buffer",
                                 (ctypes.c_char * 300).from_buffer(backing)))
    # Over glibc's mmap threshold: an mmapped chunk of its own.
    out.append(ctypes_record("char[300000]", (ctypes.c_char * 300000)()))
    return out


class SubBytesIO(io.BytesIO):
    pass


def bytesio_record(name, bio):
    KEEP.append(bio)
    buf = word(id(bio) + 16)
    private = bio.__sizeof__() - type(bio).__basicsize__
    if private:
        # PyVarObject's ob_size at 16; PyBytesObject_SIZE is 33.
        assert private == bytes.__basicsize__ + word(buf + 16), name
    return {"name": name, "id": id(bio), "buf": buf, "private": private}


def bytesio_objects():
    out = []
    for n in (100, 1000, 10000, 300000):
        bio = io.BytesIO()
        bio.write(b"PMBIO%06d-" % n + b"b" * n)
        out.append(bytesio_record("written %d" % n, bio))
        sub = SubBytesIO()
        sub.write(b"s" * n)
        out.append(bytesio_record("subclass %d" % n, sub))
    exported = io.BytesIO(b"e" * 2000)
    exported.write(b"E")                # its own copy now
    view = exported.getbuffer()
    KEEP.append(view)
    out.append(bytesio_record("exported", exported))
    # Shared: the initial bytes (kept here too), a getvalue() result.
    initial = b"i" * 5000
    KEEP.append(initial)
    out.append(bytesio_record("initial", io.BytesIO(initial)))
    got = io.BytesIO()
    got.write(b"g" * 3000)
    KEEP.append(got.getvalue())
    out.append(bytesio_record("getvalue", got))
    out.append(bytesio_record("empty", io.BytesIO()))
    closed = io.BytesIO()
    closed.write(b"c" * 700)
    closed.close()
    out.append(bytesio_record("closed", closed))
    return out


class SubDecimal(decimal.Decimal):
    pass


def decimal_record(name, d):
    KEEP.append(d)
    base = id(d)
    return {"name": name, "id": base, "data": word(base + 64),
            "alloc": word(base + 56), "flags": word(base + 24) & 0xff,
            "digits": len(d.as_tuple().digits),
            "sizeof_extra": d.__sizeof__() - type(d).__basicsize__}


def decimal_objects():
    D = decimal.Decimal
    out = []
    ctx = decimal.Context(prec=5000)
    for n in (20, 76, 77, 100, 1000, 10000, 60000):
        out.append(decimal_record("%d digits" % n, D("7" * n)))
    out.append(decimal_record("negative exponent", D("-" + "3" * 300 + "E-50")))
    out.append(decimal_record("subclass", SubDecimal("9" * 500)))
    out.append(decimal_record("from int", D(3 ** 4000)))
    big = D("1" * 2000)
    out.append(decimal_record("product", ctx.multiply(big, big)))
    out.append(decimal_record("quotient", ctx.divide(D(1), D(7))))
    out.append(decimal_record("power", ctx.power(D(2), 10000)))
    out.append(decimal_record("sum", ctx.add(big, D(1))))
    # Over glibc's mmap threshold (a million digits: 52632 words).
    out.append(decimal_record("million digits", D("5" * 1000000)))
    return out


def main():
    path = os.environ["PM_ORACLE_FILE"]
    doc = {"version": list(sys.version_info[:3]), "pid": os.getpid(),
           "ctypes": ctypes_objects(), "bytesio": bytesio_objects(),
           "decimal": decimal_objects()}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    while True:
        os.kill(os.getpid(), signal.SIGSTOP)


main()
