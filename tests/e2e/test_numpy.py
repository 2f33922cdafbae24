"""numpy's memory, against what the frozen process says of its own arrays
(tests/targets/py_numpy.py under Debian's /usr/bin/python3.11 and its
numpy): every array that owns its data (OWNDATA) has it in a "numpy data"
allocation that starts at __array_interface__['data'][0], holds nbytes and
is owned by id(arr); every array with dimensions has its dims/strides
block (the pointers ctypes read from its PyArrayObject fields) as "numpy
dims/strides", owned by it; views own no data, and their data lies in what
their base owns (or outside the heap: a memmap). A pandas DataFrame's
blocks are such arrays. Almost nothing is left unknown. Live and from a
gcore core.
"""

import os
import subprocess

import pytest

import harness

SYSTEM_PYTHON = "/usr/bin/python3.11"
# The Debian unstable chroot's interpreters with its numpy 2.x and pandas
# 2.x (tests/setup-debian.sh installs them), covered in every run, not only
# with PYMORTEM_CHROOT_MATRIX=1: the same checks on numpy's 2.x layout.
CHROOT_PYTHONS = ("3.14", "3.15")
WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", "targets", "py_numpy.py")
ALL = 10 ** 9
UNKNOWN_MAX = 0.02      # of the bytes summary counts


def importable(python, module):
    if not os.access(python, os.X_OK):
        return False
    return subprocess.run([python, "-c", "import " + module],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def chroot_missing(version, module):
    """Why the chroot's pythonX.Y cannot run the workload (None when it
    can): its run wrapper, the interpreter inside, its module, or the
    shared paths (/tmp and the repository the same inside) missing."""
    command = os.path.join(harness.CHROOT_BIN, "python" + version)
    inside = os.path.join(harness.CHROOT, "usr/bin/python" + version)
    if not (os.access(command, os.X_OK) and os.access(inside, os.X_OK)):
        return "no %s or %s" % (command, inside)
    unshared = harness.chroot_unshared()
    if unshared:
        return unshared
    if not importable(command, module):
        return "%s cannot import %s" % (command, module)
    return None


def pythons(module):
    """pytest params (interpreter, why it cannot run, or None) that should
    import module: Debian 12's (skipped when it has no numpy) and the
    chroot's 3.14 and 3.15, which FAIL when missing rather than skip (CI
    runs setup-debian.sh first; PYMORTEM_NO_CHROOT=1 is its explicit
    opt-out, and skips them). An ASan build runs one chroot interpreter
    only (for pymortem's own memory errors; each costs a minute there)."""
    params = [pytest.param(
        (SYSTEM_PYTHON, None), id="3.11-debian",
        marks=pytest.mark.skipif(
            not importable(SYSTEM_PYTHON, module),
            reason="%s cannot import %s (tests/setup-debian.sh installs "
                   "python3-%s)" % (SYSTEM_PYTHON, module, module)))]
    versions = CHROOT_PYTHONS[-1:] if harness.sanitizer_build() \
        else CHROOT_PYTHONS
    for v in versions:
        command = os.path.join(harness.CHROOT_BIN, "python" + v)
        marks = []
        if os.environ.get("PYMORTEM_NO_CHROOT") == "1":
            marks = [pytest.mark.skip(reason="PYMORTEM_NO_CHROOT=1")]
            why = None
        else:
            why = chroot_missing(v, module)
            if why:
                why = "%s: %s (tests/setup-debian.sh builds the Debian " \
                      "unstable chroot with python3-numpy and " \
                      "python3-pandas)" % (command, why)
        params.append(pytest.param((command, why), id="%s-sid" % v,
                                   marks=marks))
    return params


MODES = harness.ALLOCATOR_MODES


def start(python, mode, *args, timeout=120):
    """The workload under an interpreter ((path, why it cannot run)) in an
    allocator mode (pymalloc, PYTHONMALLOC=malloc, -X dev: debug hooks,
    whose headers numpy's dims/strides blocks get from PyMem_RawMalloc, not
    its data). A chroot's process has its cores analysed with --sysroot
    (harness.start_stopped)."""
    path, why = python
    if why:
        pytest.fail(why)
    flags, extra_env = MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([path] + flags + [WORKLOAD] + list(args),
                                 env=env, timeout=timeout)


def listed(where, kind):
    """{data address: listing} of the allocations of `kind`."""
    r = harness.cli_json("objects", "--json", "--type", kind, "--limit", ALL,
                         where)
    assert r["shown"] == r["matching"] == len(r["objects"])
    return {o["address"]: o for o in r["objects"]}


def usable(o):
    """What the program may store from the listed allocation's address on:
    its chunk less the header, plus the next chunk's prev_size word in an
    arena (malloc_usable_size)."""
    room = o["allocation"] + o["size"] - o["header"] - o["address"]
    return room + (8 if o["allocator"] == "glibc" else 0)


def unknown_share(where):
    r = harness.cli_json("summary", "--json", where)
    unknown = sum(row["bytes"] for row in r["rows"] if row["kind"] == "unknown")
    return unknown / r["total"]["bytes"], r


def check_owned(arrays, data, dims):
    """The data and dims/strides of each recorded array, as the process
    reported them, are what pymortem attributes to it."""
    for a in arrays:
        name, f = a["name"], a["fields"]
        if a["owndata"]:
            o = data.get(a["data"])
            assert o is not None, (name, hex(a["data"]))
            assert o["owner"] == a["id"], name
            assert usable(o) >= max(a["nbytes"], 1), (name, usable(o))
        else:
            o = data.get(a["data"])
            assert o is None or o["owner"] != a["id"], name
        if a["nd"]:
            assert f["strides"] == f["dimensions"] + 8 * a["nd"], name
            o = dims.get(f["dimensions"])
            assert o is not None, (name, hex(f["dimensions"]))
            assert o["owner"] == a["id"], name
            assert usable(o) >= 16 * a["nd"], name
        else:
            assert f["dimensions"] == 0, name
    owners = {a["id"] for a in arrays if a["owndata"]}
    # Nothing recorded owns data twice; views own none.
    by_owner = [o["owner"] for o in data.values() if o["owner"] in owners]
    assert sorted(by_owner) == sorted(owners)
    views = {a["id"] for a in arrays if not a["owndata"]}
    assert not views & {o["owner"] for o in data.values()}


def check_strings(strings, listing):
    """numpy 2's StringDType array: its descr's allocator struct, its
    arena buffer (at least the size numpy records) and each heap string,
    where the process found them, are "numpy strings" of the array."""
    wanted = [(strings["allocator"], 56), (strings["arena"], strings["arena_size"])]
    wanted += [(h["address"], h["size"]) for h in strings["heap"]]
    for address, size in wanted:
        o = listing.get(address)
        assert o is not None, hex(address)
        assert o["owner"] == strings["id"], hex(address)
        assert usable(o) >= size, (hex(address), usable(o), size)


def item_referrers(pid, where, arr, n=3):
    """The first n items of an object array (read from the process) and,
    for each, the referrers pymortem names that refer to it as an item."""
    words = harness.read_mem(pid, arr["data"], arr["data"] + 8 * n)
    items = [int.from_bytes(words[8 * i:8 * i + 8], "little") for i in range(n)]
    out = []
    for item in items:
        r = harness.cli_json("referrers", "--json", hex(item), where)
        out.append((item, {(x["address"], x["how"]) for x in r["referrers"]
                           if x["kind"] == "item"}))
    return out


def containing(listing, address):
    """The listed allocation whose data holds address (its size counts
    its header: a mapping right after an mmapped chunk, a memmap's, starts
    at allocation + size - header)."""
    for o in listing.values():
        if o["allocation"] <= address < o["allocation"] + o["size"] - o["header"]:
            return o
    return None


@pytest.mark.parametrize("python", pythons("numpy"))
@pytest.mark.parametrize("mode", list(MODES))
def test_numpy_arrays(python, mode):
    """Arrays of 19 dtypes in 6 sizes, 2-d, 3-d, Fortran-ordered, 0-d,
    empty, > 4 MiB (mmapped chunks), a matrix, an object array of strs,
    views (slice, dtype view, reshape, transpose, column, broadcast), a
    memmap and a copy of it."""
    with start(python, mode) as t:
        arrays = t.oracle["arrays"]
        by_name = {a["name"]: a for a in arrays}
        assert by_name["big"]["nbytes"] > 4 << 20
        assert not by_name["memmap"]["owndata"]
        assert by_name["transpose"]["base"] == by_name["matrix base"]["id"]
        for where in (t.pid, t.gcore()):
            data = listed(where, "numpy data")
            dims = listed(where, "numpy dims/strides")
            check_owned(arrays, data, dims)
            assert data[by_name["big"]["data"]]["allocator"] == "glibc mmap"
            # A view's data is inside its base's allocation (the memmap's
            # is in its file's mapping, outside the heap).
            for view, base in (("slice", "base"), ("view", "base"),
                               ("reshape", "base"),
                               ("transpose", "matrix base"),
                               ("column", "matrix base")):
                o = containing(data, by_name[view]["data"])
                assert o is not None and o["owner"] == by_name[base]["id"], view
            assert containing(data, by_name["memmap"]["data"]) is None
            # An object array's items are strs, its pointer array is data,
            # and the array refers to each item.
            objs = by_name["object"]
            strs = listed(where, "str")
            for i, (item, refs) in enumerate(item_referrers(t.pid, where, objs)):
                assert item in strs, i
                assert (objs["id"], "[%d]" % i) in refs, (i, refs)
            if int(t.oracle["numpy"].split(".")[0]) >= 2:
                check_strings(t.oracle["strings"],
                              listed(where, "numpy strings"))
            share, summary = unknown_share(where)
            assert share < UNKNOWN_MAX, share
            rows = {(r["domain"], r["kind"]): r for r in summary["rows"]}
            assert rows[("numpy", "numpy data")]["bytes"] > 14 << 20
            # The dtype classes are objects (at their allocation's start,
            # no GC head), so references to them are to live objects.
            classes = listed(where, "numpy._DTypeMeta")
            assert set(t.oracle["dtype_classes"]) <= set(classes)
            r = harness.cli_json("referrers", "--json",
                                 hex(t.oracle["dtype_classes"][0]), where)
            assert not [w for w in r["warnings"]
                        if "no live object" in w["message"] and
                        int(w["message"].split()[5].rstrip(","), 16)
                        in t.oracle["dtype_classes"]], r["warnings"][:5]


def pandas_params():
    """(python, mode) params of the pandas test: every mode under Debian
    12's interpreter, each mode once under the chroot's (a frame of a
    million rows takes some 17 s a run: all six would double the file's
    time for little more coverage)."""
    out = []
    chroot_modes = {}
    for k, mode in enumerate(MODES):
        chroot_modes.setdefault(k % len(CHROOT_PYTHONS), []).append(mode)
    for k, p in enumerate(pythons("pandas")):
        label, marks = p.id, p.marks
        modes = list(MODES) if k == 0 else chroot_modes.get(k - 1, [])
        if harness.sanitizer_build() and k:
            modes = list(MODES)[:1]
        out += [pytest.param(p.values[0], mode, id="%s-%s" % (mode, label),
                             marks=marks) for mode in modes]
    return out


@pytest.mark.parametrize("python,mode", pandas_params())
def test_pandas_dataframe(python, mode):
    """A DataFrame of a million rows with float, int, str (object) and
    category columns: its blocks' arrays (df._mgr.blocks[i].values, or the
    Categorical's codes) have their data owned by the ndarray that owns
    it (the array itself, or the base it is a view of), and --by owner
    says so: numpy data owned by numpy.ndarray."""
    with start(python, mode, "--pandas", timeout=300) as t:
        blocks = t.oracle["blocks"]
        assert {b["name"] for b in blocks} >= {"block float64", "block int64",
                                               "block object", "codes"}
        for where in (t.pid, t.gcore()):
            data = listed(where, "numpy data")
            dims = listed(where, "numpy dims/strides")
            for b in blocks:
                owner = b["owner"]
                assert owner["owndata"], b["name"]
                check_owned([b, owner] if owner["id"] != b["id"] else [b],
                            data, dims)
                o = containing(data, b["data"])
                assert o is not None and o["owner"] == owner["id"], b["name"]
                assert b["nbytes"] >= 10 ** 6, b["name"]
                if b["name"] == "block object":
                    # A 2-d block (1 column): items [0], [1], ... of the
                    # array that owns them.
                    for i, (_, refs) in enumerate(item_referrers(
                            t.pid, where, b, n=2)):
                        assert (owner["id"], "[%d]" % i) in refs, (i, refs)
            share, _ = unknown_share(where)
            assert share < UNKNOWN_MAX, share
            r = harness.cli_json("summary", "--json", "--by", "owner", where)
            rows = {(r["domain"], r["kind"], r["detail"]): r for r in r["rows"]}
            owned = rows[("numpy", "numpy data", "numpy.ndarray")]
            assert owned["bytes"] >= sum(b["owner"]["nbytes"] for b in blocks)
