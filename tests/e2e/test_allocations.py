"""Allocation-level reports (`allocations`, `select`, `describe`, `hexdump`)
against what the frozen process itself knows, for every installed CPython,
live and from a gcore of the same stopped process:

- describe of each sentinel object's address (id(obj) captured in the
  process) names that address as the object and its type;
- the listing's count of each sentinel class equals the number the process
  built, and `select 'kind == "X"'` agrees;
- free glibc chunks (bins, fastbins, tops) add up to mallinfo2's fordblks,
  ordblks, smblks and fsmblks; every tcache/fastbin chunk the glibc walker
  reports is listed as free;
- pymalloc free blocks add up to sys._debugmallocstats()'s available blocks;
- hexdump bytes equal the bytes read through /proc/PID/mem;
- previews of floats and strs equal the values read through /proc/PID/mem;
- the owner of a list's item array / a dict's keys (pointers read through
  /proc/PID/mem) is that list / dict;
- every allocation's [address - header, + size) is exactly its glibc chunk
  (the size word read through /proc/PID/mem) or pymalloc block (its pool's
  size class read there), also where a pymalloc arena is mapped right
  after a glibc mmapped chunk on purpose;
- bad input gives one clear error.
"""

import json
import re
import shutil
import struct

import pytest

import harness
from conftest import python_params

SENTINELS = 300
CLASSES = ("SlotsSentinel", "PlainSentinel", "DictSentinel", "ListSentinel",
           "IntSentinel")
VALUE_TYPES = {"float": "float", "int": "int", "str": "str",
               "bytes_small": "bytes", "bytes_large": "bytes"}
ALL = "1000000000"     # --limit: everything


@pytest.fixture(scope="module", params=python_params())
def target(request):
    label, path = request.param
    if path is None:
        pytest.fail("no CPython 3.8-3.13 installed: nothing to test")
    t = harness.start_python(path, "--sentinels", SENTINELS)
    yield t
    t.kill()
    shutil.rmtree(t.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def core(target):
    return target.gcore()


@pytest.fixture(params=["live", "core"])
def where(request, target, core):
    return str(target.pid) if request.param == "live" else core


def minor(target):
    return target.oracle["version"]["version_info"][1]


def dms_numbers(target):
    """(available blocks, available bytes) from the last
    sys._debugmallocstats() of the workload, or None without pymalloc."""
    with open(target.oracle_path + ".last.dms") as f:
        text = f.read()
    m = re.search(r"^# bytes in available blocks\s*=\s*([\d,]+)", text, re.M)
    if not m:
        return None
    blocks = 0
    for line in text.splitlines():
        cols = line.split()
        if len(cols) == 5 and all(c.isdigit() for c in cols):
            blocks += int(cols[4])
    return blocks, int(m.group(1).replace(",", ""))


def select(where, query, *extra):
    return harness.cli_json("select", "--json", "--query", query,
                            "--limit", ALL, *extra, where)


def test_describe_sentinels(target, where):
    addresses = target.oracle["sentinel_addresses"]
    expected = dict(VALUE_TYPES, **{c: c for c in CLASSES})
    for kind, type_name in expected.items():
        for addr in addresses[kind][:6]:
            for delta in (0, 8):
                d = harness.cli_json("describe", "--json", "--address",
                                     hex(addr + delta), where)
                assert d["address"] == addr + delta
                assert d["object"] is not None, (kind, hex(addr), d)
                assert d["object"]["address"] == addr, (kind, hex(addr), d)
                assert d["object"]["type"] == type_name, (kind, d)
                assert d["object"]["offset"] == delta
                assert d["allocation"]["state"] == "used"
                a = d["allocation"]
                assert a["address"] <= addr + delta < a["address"] + a["size"]
                assert d["region"]["start"] <= addr < d["region"]["end"]
                # Contained in exactly one allocator structure.
                assert (d["pool"] is None) != (d["chunk"] is None), d
                if d["pool"]:
                    assert d["pool"]["place"].endswith("(used)")
                    assert d["pool"]["block"] == a["address"]
                else:
                    assert d["chunk"]["address"] + 16 == a["address"]


def test_sentinel_counts(target, where):
    for name in CLASSES:
        want = target.oracle["sentinels"][name]
        listed = harness.cli_json("allocations", "--json", "--used", "--type",
                                  name, "--limit", "5", where)
        assert listed["matching"] == want, (name, listed["matching"], want)
        assert listed["shown"] == min(5, want)
        assert all(a["kind"] == name and a["state"] == "used"
                   for a in listed["allocations"])
        chosen = select(where, 'kind == "%s"' % name)
        assert chosen["matching"] == want, (name, chosen["matching"])
        assert chosen["matching_bytes"] == listed["matching_bytes"]
        # Objects the process built are among those listed.
        listed_objects = {a["object"] for a in chosen["allocations"]}
        assert set(target.oracle["sentinel_addresses"][name]) <= listed_objects


def test_value_kinds_at_least(target, where):
    lo, _ = target.oracle["sentinel_value_sizes"]["bytes_large"]
    n = target.oracle["sentinel_values"]["bytes_large"]
    # bytes of >= 600 payload bytes: 33 + 600 bytes of object at least.
    chosen = select(where, 'kind == "bytes" and size >= %d' % (lo + 33))
    assert chosen["matching"] >= n
    floats = select(where, 'kind == "float" and state == "used"')
    assert floats["matching"] >= target.oracle["sentinel_values"]["float"]


def test_free_chunks_match_mallinfo2(target, where):
    mi = target.oracle["mallinfo2"]
    free = select(where, 'domain == "glibc" and state == "free" and '
                         'not detail == "tcache"')
    assert free["matching_bytes"] == mi["fordblks"]
    assert free["matching"] == mi["ordblks"] + mi["smblks"]
    fast = select(where, 'detail == "fastbin" and kind == "free chunk"')
    assert fast["matching"] == mi["smblks"]
    assert fast["matching_bytes"] == mi["fsmblks"]
    listed = harness.cli_json("allocations", "--json", "--free", "--limit",
                              ALL, where)
    assert listed["matching_bytes"] >= mi["fordblks"]
    free_at = {(a["address"], a["detail"]) for a in listed["allocations"]}
    chunks = harness.cli_json("chunks", "--free", "--json", where)["chunks"]
    walker = {(c["address"] + 16, c["state"][5:]) for c in chunks
              if c["state"] in ("free-tcache", "free-fastbin")}
    assert walker, "no tcache/fastbin chunk in the process"
    assert walker <= free_at


def test_free_blocks_match_debugmallocstats(target, where):
    dms = dms_numbers(target)
    assert dms, "the workload runs with pymalloc: its stats must be there"
    blocks = select(where, 'domain == "pymalloc" and kind == "free block"')
    assert (blocks["matching"], blocks["matching_bytes"]) == dms
    assert all(a["state"] == "free" for a in blocks["allocations"][:100])


def test_hexdump_equals_proc_mem(target, where):
    addresses = target.oracle["sentinel_addresses"]
    for addr, length in ((addresses["str"][0], 64),
                         (addresses["bytes_large"][0], 1000),
                         (addresses["PlainSentinel"][1] - 32, 48),
                         (addresses["float"][2] + 3, 5)):
        truth = harness.read_mem(target.pid, addr, addr + length)
        d = harness.cli_json("hexdump", "--json", "--address", hex(addr),
                             "--length", length, where)
        assert d["address"] == addr and d["length"] == length
        assert bytes.fromhex(d["hex"]) == truth, hex(addr)
    text = harness.run_cli("hexdump", "--address", hex(addresses["str"][0]),
                           "--length", 32, where).stdout
    first = harness.read_mem(target.pid, addresses["str"][0],
                             addresses["str"][0] + 16)
    assert " ".join("%02x" % b for b in first[:8]) in text


def test_previews_equal_proc_mem(target, where):
    addresses = target.oracle["sentinel_addresses"]
    ascii_size = 48 if minor(target) <= 11 else 40
    for addr in addresses["float"][:8]:
        value, = struct.unpack("<d", harness.read_mem(target.pid, addr + 16,
                                                      addr + 24))
        d = harness.cli_json("describe", "--json", "--address", hex(addr), where)
        assert float(d["allocation"]["preview"]) == value
    for addr in addresses["int"][:8]:
        word, = struct.unpack("<q", harness.read_mem(target.pid, addr + 16,
                                                     addr + 24))
        ndigits = word >> 3 if minor(target) >= 12 else abs(word)
        digits = struct.unpack("<%dI" % ndigits, harness.read_mem(
            target.pid, addr + 24, addr + 24 + 4 * ndigits))
        value = sum(d << (30 * i) for i, d in enumerate(digits))
        assert value >> 62 == 1     # the workload's ints: 2^62 | 62 bits
        d = harness.cli_json("describe", "--json", "--address", hex(addr), where)
        assert d["allocation"]["preview"] == str(value)
    for addr in addresses["str"][:8]:
        length, = struct.unpack("<q", harness.read_mem(target.pid, addr + 16,
                                                       addr + 24))
        text = harness.read_mem(target.pid, addr + ascii_size,
                                addr + ascii_size + length).decode("ascii")
        d = harness.cli_json("describe", "--json", "--address", hex(addr), where)
        want = '"%s"' % text[:32] + ("..." if length > 32 else "")
        assert d["allocation"]["preview"] == want


def test_owners(target, where):
    addresses = target.oracle["sentinel_addresses"]
    owned = []
    for lst in addresses["ListSentinel"][:4]:
        items, = struct.unpack("<Q", harness.read_mem(target.pid, lst + 24,
                                                      lst + 32))
        owned.append((items, lst, "list items"))
    for dct in addresses["DictSentinel"][:4]:
        keys, = struct.unpack("<Q", harness.read_mem(target.pid, dct + 32,
                                                     dct + 40))
        owned.append((keys, dct, "dict keys"))
    for buf, owner, kind in owned:
        d = harness.cli_json("describe", "--json", "--address", hex(buf), where)
        assert d["allocation"]["kind"] == kind, d
        assert d["allocation"]["address"] <= buf
        if d["allocation"]["address"] != buf:
            continue    # a shared keys object (in a bigger allocation)
        assert d["owner"] is not None, d
        assert d["owner"]["address"] == owner, (hex(buf), d["owner"])


def test_errors(target, where):
    bad = harness.run_cli("describe", "--address", "0x10", where, check=False)
    assert bad.returncode == 1
    assert "0x10 is in no region" in bad.stderr
    bad = harness.run_cli("select", "--query", 'kind == "str" and size >',
                          where, check=False)
    assert bad.returncode == 1
    assert "column 25" in bad.stderr and "expected a number" in bad.stderr
    bad = harness.run_cli("hexdump", "--address", "0x10", where, check=False)
    assert bad.returncode == 1 and "no region" in bad.stderr
    addr = target.oracle["sentinel_addresses"]["str"][0]
    bad = harness.run_cli("hexdump", "--address", hex(addr), "--length",
                          "1000000", where, check=False)
    assert bad.returncode == 1 and "more than 65536" in bad.stderr
    bad = harness.run_cli("describe", where, check=False)
    assert bad.returncode == 1 and "needs an address" in bad.stderr
    bad = harness.run_cli("select", where, check=False)
    assert bad.returncode == 1 and "needs a query" in bad.stderr


def glibc_target_path():
    import os
    path = os.path.join(harness.build_dir(), "tests", "targets",
                        "glibc_workload")
    if not os.path.exists(path):
        pytest.fail("C target not built: %s" % path)
    return path


@pytest.mark.parametrize("mode", ["live", "core"])
def test_free_chunks_of_c_program(mode):
    """A multi-threaded C program leaves chunks in tcache, fastbins, bins and
    several arenas' tops: the free listing adds up to mallinfo2, with
    fastbins really present, and the program is said to have no Python."""
    with harness.start_stopped([glibc_target_path(), "--threads", "2"]) as t:
        where = str(t.pid) if mode == "live" else t.gcore()
        mi = t.oracle["mallinfo2"]
        assert mi["smblks"] > 0, "the C workload must leave fastbin chunks"
        free = select(where, 'domain == "glibc" and state == "free" and '
                             'detail != "tcache"')
        assert free["matching_bytes"] == mi["fordblks"]
        assert free["matching"] == mi["ordblks"] + mi["smblks"]
        fast = select(where, 'detail == "fastbin"')
        assert (fast["matching"], fast["matching_bytes"]) == \
            (mi["smblks"], mi["fsmblks"])
        tops = select(where, 'detail == "top"')
        arenas = harness.cli_json("malloc-stats", "--json", where)["arenas"]
        assert tops["matching"] == len(arenas)
        assert tops["allocations"][0]["kind"] == "free chunk"
        used = harness.cli_json("allocations", "--json", "--used", where)
        assert any("no Python" in n for n in used["notes"]), used["notes"]
        assert used["matching"] > 0
        assert all(a["domain"] == "glibc" for a in used["allocations"])


def pool_size_of(target):
    """POOL_SIZE of the workload's CPython (the reference's table)."""
    return 4096 if minor(target) <= 9 else 16384


def mmapped_tail(target):
    """Bytes glibc leaves mapped after an mmapped chunk's size (2.43: a
    header's worth, so the mapping is the chunk's size + 16)."""
    return 16 if tuple(target.oracle["version"]["glibc"]) >= (2, 43) else 0


def check_allocations_in_place(pid, allocations, pool_size, tail=0):
    """Every allocation lies in its own chunk or block, as the process's
    memory says: a glibc chunk's size word (read through /proc/PID/mem)
    is the allocation's size (an mmapped one's, IS_MMAPPED set, plus the
    glibc's tail after it) and its range starts at the chunk's header;
    a pymalloc block is one slot of its pool's size class (the pool
    header's szidx). No two allocations overlap."""
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        def word(addr, fmt="<Q"):
            mem.seek(addr)
            return struct.unpack(fmt, mem.read(struct.calcsize(fmt)))[0]
        end = 0
        for a in allocations:
            start = a["address"] - a["header"]
            assert start >= end, ("overlaps the one before", a)
            end = start + a["size"]
            if a["allocator"] == "glibc" and a["header"]:
                assert a["header"] == 16, a
                size_word = word(a["address"] - 8)
                assert (size_word & ~7) + (tail if size_word & 2 else 0) == a["size"], a
            elif a["allocator"] == "glibc":
                # glibc's own bytes outside chunks (a thread arena's
                # heap header, a memalign lead): test_glibc checks them.
                assert a["domain"] == "glibc", a
            else:
                pool = a["address"] & ~(pool_size - 1)
                szidx = word(pool + 36, "<I")
                block = (szidx + 1) * 16
                assert a["size"] == block, (a, szidx)
                assert (a["address"] - pool - 48) % block == 0, a
                assert a["address"] + block <= pool + pool_size, a


def test_allocations_in_their_chunks(target, where):
    """The listing's ranges are the chunks and blocks the process's own
    memory describes, used and free."""
    listed = harness.cli_json("allocations", "--all", "--json", "--limit",
                              ALL, where)["allocations"]
    assert len(listed) > SENTINELS * 5
    check_allocations_in_place(target.pid, listed, pool_size_of(target),
                               mmapped_tail(target))


@pytest.mark.parametrize("python", python_params())
def test_arena_right_after_mmapped_chunk(python):
    """A pymalloc arena mapped exactly at a glibc mmapped chunk's end (the
    kernel merges the two into one mapping): the chunk's allocation ends
    where the process says its chunk ends, and nothing in the arena is
    described as the chunk's (it was, 16 bytes into the arena: the first
    pool's header read as "bytes (offset 600016)")."""
    label, path = python
    if path is None:
        pytest.fail("no CPython 3.8-3.13 installed: nothing to test")
    if label.endswith("d-sid"):
        pytest.skip("%s: a pydebug build's placement of the chunk below the spacer "
                    "is not arranged yet" % label)
    lib = harness.adjacent_arena_lib()
    with harness.start_python(path, "--sentinels", 100,
                              "--adjacent-arena", lib) as t:
        placed = t.oracle["adjacent_arena"]
        arena, obj = placed["arena"], placed["object"]
        assert arena == placed["chunk_end"]
        pool_size = pool_size_of(t)
        first_pool = -(-arena // pool_size) * pool_size
        for where in (str(t.pid), t.gcore()):
            d = harness.cli_json("describe", "--json", "--address",
                                 hex(obj), where)
            a = d["allocation"]
            assert (d["object"]["address"], d["object"]["type"]) == \
                (obj, "bytes")
            assert a["address"] - a["header"] == placed["chunk"]
            assert a["address"] - a["header"] + a["size"] == arena
            for addr in (arena, arena + 8, first_pool + 8, first_pool + 40):
                d = harness.cli_json("describe", "--json", "--address",
                                     hex(addr), where)
                assert d["allocation"] is None, (hex(addr), d["allocation"])
            d = harness.cli_json("describe", "--json", "--address",
                                 hex(first_pool + 8), where)
            assert d["pool"]["address"] == first_pool
            assert d["pool"]["place"] == "pool header"
            listed = harness.cli_json("allocations", "--all", "--json",
                                      "--limit", ALL, where)["allocations"]
            check_allocations_in_place(t.pid, listed, pool_size, mmapped_tail(t))


def test_describe_free_places(target, where):
    """A tcache'd chunk and a free pymalloc block are described as free, in
    the glibc chunk / pool block that the walkers' own listings give; a pool
    header is no allocation."""
    chunks = harness.cli_json("chunks", "--free", "--json", where)["chunks"]
    tcache = next(c for c in chunks if c["state"] == "free-tcache")
    d = harness.cli_json("describe", "--json", "--address",
                         hex(tcache["address"] + 16), where)
    assert d["chunk"]["address"] == tcache["address"]
    assert d["chunk"]["state"] == "free-tcache"
    assert (d["allocation"]["state"], d["allocation"]["kind"],
            d["allocation"]["detail"]) == ("free", "free chunk", "tcache")
    assert d["object"] is None and d["owner"] is None
    header = harness.cli_json("describe", "--json", "--address",
                              hex(tcache["address"] + 8), where)
    assert header["chunk"]["address"] == tcache["address"]
    assert header["allocation"] is None
    block = harness.cli_json("select", "--json", "--query",
                             'kind == "free block"', "--limit", "1",
                             where)["allocations"][0]
    d = harness.cli_json("describe", "--json", "--address",
                         hex(block["address"] + 4), where)
    assert d["pool"]["block"] == block["address"]
    assert d["pool"]["place"].endswith("(free)")
    assert d["allocation"]["state"] == "free" and d["object"] is None
    pool = harness.cli_json("describe", "--json", "--address",
                            hex(d["pool"]["address"] + 8), where)
    assert pool["pool"]["place"] == "pool header"
    assert pool["allocation"] is None


@pytest.mark.parametrize("python", python_params())
def test_kernel_core(python, kernel_cores):
    """From a kernel core (SIGABRT) the same truths hold: sentinel classes
    counted exactly, sentinel objects described at their ids, free chunks
    adding up to mallinfo2."""
    label, path = python
    if path is None:
        pytest.fail("no CPython 3.8-3.13 installed: nothing to test")
    with harness.start_python(path, "--sentinels", 100) as t:
        oracle = t.oracle
        core = t.kernel_core()
        for name in CLASSES:
            chosen = select(core, 'kind == "%s" and state == "used"' % name)
            assert chosen["matching"] == oracle["sentinels"][name], name
            addr = oracle["sentinel_addresses"][name][3]
            d = harness.cli_json("describe", "--json", "--address", hex(addr),
                                 core)
            assert (d["object"]["address"], d["object"]["type"]) == (addr, name)
        mi = oracle["mallinfo2"]
        free = select(core, 'domain == "glibc" and state == "free" and '
                            'detail != "tcache"')
        assert free["matching_bytes"] == mi["fordblks"]


def test_gdb_commands_equal_cli():
    """heap describe/select/hexdump/used inside GDB print what the CLI
    prints for the same stopped process (the GDB layer only maps commands
    to these reports)."""
    from test_gdb import gdb_drive
    label, path = harness.PYTHONS[-1]
    with harness.start_python(path, "--sentinels", 100) as t:
        addr = t.oracle["sentinel_addresses"]["PlainSentinel"][0]
        pairs = [
            ("heap describe %d --json" % addr,
             ["describe", "--address", hex(addr)]),
            ("heap hexdump %d 64 --json" % addr,
             ["hexdump", "--address", hex(addr), "--length", "64"]),
            ('heap select --limit 3 --json kind == "PlainSentinel"',
             ["select", "--query", 'kind == "PlainSentinel"', "--limit", "3"]),
            ("heap free --limit 4 --json", ["allocations", "--free",
                                            "--limit", "4"]),
        ]
        results = gdb_drive(["-p", t.pid], [("cmd", c) for c, _ in pairs])
        t.ensure_stopped()
        for cmd, cli in pairs:
            assert "output" in results[cmd], results[cmd]
            got = json.loads(results[cmd]["output"])
            assert got == harness.cli_json("--json", *cli, t.pid), cmd
        chosen = json.loads(results[pairs[2][0]]["output"])
        assert chosen["matching"] == 100


def test_positional_operands(target, where):
    """`select QUERY`, `describe ADDR`, `hexdump ADDR LEN` before the target
    (as the GDB commands take them) print what the option forms print."""
    addr = hex(target.oracle["sentinel_addresses"]["str"][0])
    query = 'kind == "str" and size > 100'
    pairs = [
        (["select", "--json", query], ["select", "--json", "--query", query]),
        (["describe", "--json", addr], ["describe", "--json", "--address", addr]),
        (["hexdump", "--json", addr, "48"],
         ["hexdump", "--json", "--address", addr, "--length", "48"]),
    ]
    for positional, options in pairs:
        assert harness.cli_json(*positional, where) == \
            harness.cli_json(*options, where), positional[0]
    for argv, says in ((["summary", "extra"], "summary takes no operand"),
                       (["hexdump", "0xzz"], "needs a number for ADDR, not '0xzz'"),
                       (["describe", addr, "8"], "takes one ADDR"),
                       ([], "which report?")):
        bad = harness.run_cli(*argv, where, check=False)
        if not argv:
            bad = harness.run_cli(check=False)
        assert bad.returncode == 2, (argv, bad.returncode)
        assert says in bad.stderr, (argv, bad.stderr)
        assert "Traceback" not in bad.stderr and not bad.stdout
