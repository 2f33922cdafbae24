"""Buffers of extension objects, attributed to the object that owns them,
against what the frozen process (tests/targets/py_buffers.py) says of its
own objects, for every installed CPython with pymalloc,
PYTHONMALLOC=malloc and -X dev (debug hooks: a header before each
buffer), live and from a gcore core:

- a ctypes instance that must free memory outside itself (_b_needsfree_,
  ctypes.addressof outside the object) has a 'ctypes buffer' at exactly
  addressof, owned by id(obj), holding at least ctypes.sizeof(obj) bytes;
  inline ones, a structure's field (it has a _b_base_) and a from_buffer
  view own none;
- a BytesIO whose __sizeof__ counts its buf (only it holds the bytes
  object) has that bytes object, at the buf pointer it holds, as its
  'bytesio buffer', at least as large as __sizeof__ counts; a shared buf
  (the initial bytes, a getvalue() result) stays a bytes object of its own;
- a Decimal whose __sizeof__ counts a coefficient (alloc * 8 bytes) has
  'decimal digits' at the mpd_t's data pointer, owned by it; inline ones
  own none.

An allocation may hold more than asked: pymalloc rounds to 16 bytes, glibc
to its 16-byte chunk sizes (less 8 for the size word, plus the next chunk's
prev_size word), mmap to pages; so the check is usable >= the process's
size, with usable what the program may store from the buffer's start on
(malloc_usable_size's rule). The ids and sizes are planted in one
process, so the counts are exact: 37 ctypes owners, 9 private BytesIOs,
13 malloc'd coefficients.

Owners whose fields are made wrong in the frozen process keep no buffer
(test_extension_buffers_corrupted): a buffer is attributed only where an
allocation starts exactly at the pointer and holds the size.
"""

import os

import pytest

import harness
from conftest import python_params

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_buffers.py")
MODES = harness.ALLOCATOR_MODES
ALL = 10 ** 9
KINDS = ("ctypes buffer", "bytesio buffer", "decimal digits")


def start(path, mode):
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([path] + flags + [WORKLOAD], env=env)


def usable(o):
    """What the program may store from the listed allocation's address on:
    its block, or its chunk less the header plus the next chunk's
    prev_size word in an arena."""
    room = o["allocation"] + o["size"] - o["header"] - o["address"]
    return room + (8 if o["allocator"] == "glibc" else 0)


def listing(where):
    """{kind: {address: listing}} of the buffer kinds."""
    out = {}
    for kind in KINDS:
        r = harness.cli_json("objects", "--json", "--type", kind, "--limit",
                             ALL, where)
        assert r["shown"] == r["matching"] == len(r["objects"])
        out[kind] = {o["address"]: o for o in r["objects"]}
    return out


def described(where, address):
    return harness.cli_json("describe", "--json", hex(address), where)


def check_buffers(truth, kind, listed, start_key, size_key, owns):
    """Every record that owns a buffer (owns(record)) has it listed as
    kind at record[start_key], owned by its id, holding at least
    record[size_key] bytes; no other record owns any."""
    owners = {}
    for o in listed.values():
        owners.setdefault(o["owner"], []).append(o)
    planted = 0
    for rec in truth:
        name = rec["name"]
        if not owns(rec):
            assert rec["id"] not in owners, (kind, name)
            continue
        planted += 1
        o = listed.get(rec[start_key])
        assert o is not None, (kind, name, hex(rec[start_key]))
        assert o["owner"] == rec["id"], (kind, name)
        assert usable(o) >= rec[size_key], (kind, name, usable(o))
        assert owners[rec["id"]] == [o], (kind, name)
    return planted


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_extension_buffers(python, mode):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode) as t:
        truth = t.oracle
        for where in (t.pid, t.gcore()):
            found = listing(where)
            n = check_buffers(truth["ctypes"], "ctypes buffer",
                              found["ctypes buffer"], "address", "size",
                              lambda r: r["owns"])
            assert n == 37
            big = next(r for r in truth["ctypes"] if r["name"] == "char[300000]")
            assert found["ctypes buffer"][big["address"]]["allocator"] == \
                "glibc mmap"
            for r in truth["ctypes"]:
                if r["name"] in ("field of record", "from_buffer"):
                    assert not r["needsfree"] and not r["owns"]
            n = check_buffers(truth["bytesio"], "bytesio buffer",
                              found["bytesio buffer"], "buf", "private",
                              lambda r: r["private"] > 0)
            assert n == 9
            for r in truth["bytesio"]:
                if r["name"] in ("initial", "getvalue"):
                    # Shared: the bytes object is an object of its own.
                    d = described(where, r["buf"])
                    assert d["object"]["address"] == r["buf"], r["name"]
                    assert d["allocation"]["kind"] == "bytes", r["name"]
                    assert d["owner"] is None, r["name"]
            n = check_buffers(truth["decimal"], "decimal digits",
                              found["decimal digits"], "data",
                              "sizeof_extra", lambda r: r["sizeof_extra"] > 0)
            assert n == 13
            for r in truth["decimal"]:
                # dec_sizeof counts a coefficient that is not inline
                # (MPD_STATIC_DATA, 32, clear).
                assert r["sizeof_extra"] == \
                    (0 if r["flags"] & 32 else 8 * r["alloc"]), r["name"]
            # describe names the owner, and the totals still add up with
            # the rows split by owner type.
            for kind, rec, key in (
                    ("ctypes buffer", truth["ctypes"][0], "address"),
                    ("bytesio buffer", truth["bytesio"][0], "buf"),
                    ("decimal digits", truth["decimal"][-1], "data")):
                d = described(where, rec[key])
                assert d["allocation"]["kind"] == kind
                assert d["owner"]["address"] == rec["id"], kind
            r = harness.cli_json("summary", "--json", "--by", "owner", where)
            assert sum(x["bytes"] for x in r["rows"]) == r["total"]["bytes"]
            rows = {(x["domain"], x["kind"], x["detail"]): x for x in r["rows"]}
            assert rows[("cpython", "decimal digits", "decimal.Decimal")][
                "count"] == 12
            assert rows[("cpython", "bytesio buffer", "_io.BytesIO")][
                "count"] == 5


def write_word(pid, address, value):
    with open("/proc/%d/mem" % pid, "r+b", buffering=0) as f:
        f.seek(address)
        f.write(value.to_bytes(8, "little"))


def read_word(pid, address):
    return int.from_bytes(harness.read_mem(pid, address, address + 8),
                          "little")


def named(records, name):
    return next(r for r in records if r["name"] == name)


@pytest.mark.parametrize("python", python_params())
def test_extension_buffers_corrupted(python):
    """Owners' fields made wrong in the frozen process (through
    /proc/PID/mem) lose their buffer and nothing else changes: a ctypes
    b_size beyond its allocation, a b_ptr 16 bytes into it, a Decimal's
    alloc doubled, another's MPD_STATIC_DATA flag set, and a BytesIO's
    bytes given a second reference (shared: it stays a bytes object)."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, "pymalloc") as t:
        pid, truth = t.pid, t.oracle
        before = listing(pid)
        sized = named(truth["ctypes"], "ubyte[5000]")
        moved = named(truth["ctypes"], "record")
        grown = named(truth["decimal"], "10000 digits")
        flagged = named(truth["decimal"], "1000 digits")
        shared = named(truth["bytesio"], "written 1000")
        write_word(pid, sized["id"] + 40, 1 << 20)
        write_word(pid, moved["id"] + 16, moved["address"] + 16)
        write_word(pid, grown["id"] + 56, 2 * grown["alloc"])
        write_word(pid, flagged["id"] + 24, flagged["flags"] | 32)
        refcnt = read_word(pid, shared["buf"])
        write_word(pid, shared["buf"], refcnt + 1)
        after = listing(pid)
        lost = {"ctypes buffer": {sized["address"], moved["address"]},
                "decimal digits": {grown["data"], flagged["data"]},
                "bytesio buffer": {shared["buf"]}}
        for kind in KINDS:
            assert lost[kind] <= set(before[kind]), kind
            assert set(after[kind]) == set(before[kind]) - lost[kind], kind
            for address, o in after[kind].items():
                assert o["owner"] == before[kind][address]["owner"]
        d = described(pid, shared["buf"])
        assert d["allocation"]["kind"] == "bytes" and d["owner"] is None
