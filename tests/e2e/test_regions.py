"""End-to-end checks of the memory sources (issue 2): the region list and the
bytes pymortem sees in a live process, a gcore core and a kernel core of the
same frozen CPython process, against /proc/PID/maps and /proc/PID/mem read by
this test itself; and `info` naming the interpreter's version.

Documented differences between a core and the maps it was taken from (each
is checked, not skipped):
- Shared-ness ('s'/'p') is not recorded in cores: only r, w, x are compared.
- Anonymous pseudo paths ([heap], [stack], [vvar], ...) are not in cores:
  a core region's path is null or the same pseudo path.
- gcore (gdb 13) has no PT_LOAD for mappings it does not dump: file-backed
  mappings that are not writable (program text, read-only data, r--s files
  such as glibc's gconv-modules.cache) and the [vvar]/[vvar_vclock] pages.
  Its NT_FILE note lists every file-backed mapping, so each of those must be
  a region all the same, matching maps; only [vvar]/[vvar_vclock] (neither
  dumped nor a file) may be absent. The workload opens an iconv converter
  (--iconv) so that a shared file mapping is there to check, in both cores.
- gcore writes PROT_NONE mappings as readable segments (PF_R, zero-filled)
  and [vsyscall] as r-x: those two perms differences are accepted for gcore.
- Kernel cores contain every mapping (PT_LOAD with p_filesz 0 when not
  dumped): exact match on start, end, rwx, offset and file path.
Digests skip [vvar]/[vvar_vclock] (the kernel's clock page changes by itself)
and compare every other readable mapping that is anonymous or writable.
"""

import os
import re
import shutil

import pytest

import harness
from conftest import python_params

PSEUDO_VOLATILE = ("[vvar]", "[vvar_vclock]")
WORKLOAD_ARGS = ("--sentinels", "300", "--threads", "2",
                 "--big-bytes", str(1 << 20), "--iconv")


def cli_try(*args):
    """(json, None) or (None, error text): the tests report CLI failures as
    their own failures instead of erroring in the fixture."""
    try:
        return harness.cli_json(*args), None
    except Exception as e:  # noqa: BLE001 - reported by the test
        return None, "%s: %s" % (type(e).__name__, e)


def selected_for_digest(region):
    """Readable mappings that are anonymous or writable, minus vvar."""
    perms, path = region["perms"], region["path"]
    return (perms[0] == "r" and (perms[1] == "w" or path is None or
                                 (path.startswith("[")))
            and path not in PSEUDO_VOLATILE)


def shared_file_maps(maps):
    """Shared mappings of files (r--s), e.g. gconv-modules.cache."""
    return [r for r in maps if r["perms"][3] == "s" and r["path"] and
            r["path"].startswith("/")]


def proc_digests(pid, maps):
    out = {}
    for r in maps:
        if selected_for_digest(r):
            out[(r["start"], r["end"])] = harness.mem_digest(pid, r["start"],
                                                             r["end"])
    return out


class Snapshot:
    """Everything observed of one frozen process, in order: live CLI output,
    /proc digests, a gcore core, the same digests again (the process must not
    have changed), then a kernel core (the process dies)."""


@pytest.fixture(scope="module", params=python_params())
def snap(request, kernel_cores):
    label, python = request.param
    if python is None:
        pytest.fail("no CPython 3.8-3.13 installed: nothing to test")
    s = Snapshot()
    s.label = label
    s.chroot = harness.is_chroot_python(python)
    with harness.start_python(python, *WORKLOAD_ARGS) as t:
        s.pid, s.oracle, s.maps = t.pid, t.oracle, t.maps
        s.maps_again = harness.parse_maps(harness.read_maps(t.pid))
        s.dont_dump, s.untouched = unsaved_mappings(t.pid)
        s.live_regions = cli_try("regions", "--json", t.pid)
        s.live_digest = cli_try("digest", "--json", t.pid)
        s.live_info = cli_try("info", "--json", t.pid)
        s.mem_digests = proc_digests(t.pid, s.maps)
        s.shared_digests = {(r["start"], r["end"]): harness.mem_digest(
            t.pid, r["start"], r["end"]) for r in shared_file_maps(s.maps)}
        s.gcore = t.gcore()
        s.mem_digests_after_gcore = proc_digests(t.pid, s.maps)
        s.maps_after_gcore = harness.parse_maps(harness.read_maps(t.pid))
        s.kernel_core = t.kernel_core()
        s.workdir = t.workdir
    s.cores = {"gcore": s.gcore, "kernel": s.kernel_core}
    s.core_regions = {k: cli_try("regions", "--json", p)
                      for k, p in s.cores.items()}
    s.core_digest = {k: cli_try("digest", "--json", p)
                     for k, p in s.cores.items()}
    s.core_info = {k: cli_try("info", "--json", p) for k, p in s.cores.items()}
    yield s
    shutil.rmtree(s.workdir, ignore_errors=True)


def unsaved_mappings(pid):
    """(start, end) of the mappings no kernel core holds bytes of, from
    smaps: those flagged "dd" (MADV_DONTDUMP, as glibc 2.41+'s getrandom
    state pages; GDB leaves them out too), and anonymous ones never touched
    (no page at all: Rss and Swap 0), which the kernel skips. Returns
    (dont_dump, untouched)."""
    dont_dump, untouched = set(), set()
    for m in harness.smaps(pid):
        span = (m["start"], m["end"])
        if "dd" in m["flags"]:
            dont_dump.add(span)
        elif m["anonymous"] and not m["Rss"] and not m["Swap"]:
            untouched.add(span)
    return dont_dump, untouched


def in_root(snap, path):
    return harness.in_root(path, harness.CHROOT if snap.chroot else None)


def need(result, what):
    value, error = result
    if error is not None:
        pytest.fail("%s failed: %s" % (what, error))
    return value


def fmt(region):
    return "%x-%x %s %x %s" % (region["start"], region["end"],
                               region["perms"], region["offset"],
                               region.get("path"))


# ------------------------------------------------------------------ live

def test_process_stayed_frozen(snap):
    """The premise of every comparison below: gcore did not change it."""
    assert snap.maps_again == snap.maps
    assert snap.maps_after_gcore == snap.maps
    changed = [fmt({"start": a, "end": b, "perms": "", "offset": 0})
               for (a, b), d in snap.mem_digests.items()
               if snap.mem_digests_after_gcore[(a, b)] != d]
    assert not changed, "memory changed across gcore: %s" % changed


def check_schema(doc):
    assert isinstance(doc.get("regions"), list) and doc["regions"]
    for r in doc["regions"]:
        for key in ("start", "end", "size", "offset"):
            assert type(r.get(key)) is int, (key, r)
        assert r["size"] == r["end"] - r["start"], r
        assert re.fullmatch(r"[r-][w-][x-][ps]", r.get("perms", "")), r
        assert r.get("path") is None or isinstance(r["path"], str), r
        assert isinstance(r.get("label"), str) and r["label"], r


def test_live_regions_equal_maps(snap):
    doc = need(snap.live_regions, "pymortem regions --json PID")
    check_schema(doc)
    got = [fmt(r) for r in doc["regions"]]
    want = [fmt(r) for r in snap.maps]
    assert got == want


# ------------------------------------------------------------------ cores

def test_cores_are_elf_cores(snap):
    """Sanity of the inputs themselves, independent of pymortem."""
    for kind, path in snap.cores.items():
        segs = harness.elf_core_segments(path)
        assert segs, "%s core %s has no PT_LOAD" % (kind, path)


def gcore_perms_ok(maps_perms, core_perms, path):
    if maps_perms[:3] == core_perms[:3]:
        return True
    if maps_perms[:3] == "---" and core_perms[:3] == "r--":
        return True
    return path == "[vsyscall]" and core_perms[:3] == "r-x"


def gcore_may_omit(region):
    """Only what gcore neither dumps nor names in NT_FILE."""
    return region["path"] in PSEUDO_VOLATILE


@pytest.mark.parametrize("kind", ["gcore", "kernel"])
def test_core_regions_match_maps(snap, kind):
    doc = need(snap.core_regions[kind], "pymortem regions --json <%s core>"
               % kind)
    check_schema(doc)
    by_start = {r["start"]: r for r in snap.maps}
    problems = []
    seen = set()
    for r in doc["regions"]:
        m = by_start.get(r["start"])
        if m is None:
            problems.append("core region not in maps: " + fmt(r))
            continue
        seen.add(r["start"])
        if r["end"] != m["end"]:
            problems.append("end differs: core %s, maps %s" % (fmt(r), fmt(m)))
        perms_ok = (gcore_perms_ok(m["perms"], r["perms"], m["path"])
                    if kind == "gcore" else m["perms"][:3] == r["perms"][:3])
        if not perms_ok:
            problems.append("perms differ: core %s, maps %s" % (fmt(r), fmt(m)))
        file_backed = m["path"] is not None and not m["path"].startswith("[")
        if file_backed:
            if r["path"] != in_root(snap, m["path"]) or r["offset"] != m["offset"]:
                problems.append("file differs: core %s, maps %s"
                                % (fmt(r), fmt(m)))
        elif r["path"] not in (None, m["path"]):
            problems.append("path differs: core %s, maps %s" % (fmt(r), fmt(m)))
    for m in snap.maps:
        if m["start"] in seen:
            continue
        if kind == "gcore" and (gcore_may_omit(m) or
                                (m["start"], m["end"]) in snap.dont_dump):
            continue
        problems.append("maps entry missing from the %s core: %s"
                        % (kind, fmt(m)))
    assert not problems, "\n".join(problems)


def test_workload_has_shared_file_mapping(snap):
    """The premise of the shared-mapping checks: the process itself says it
    mapped gconv-modules.cache shared, and maps agrees."""
    said = [line for line in snap.oracle.get("iconv_maps", [])
            if line.split()[1] == "r--s"]
    assert said, snap.oracle.get("iconv_maps")
    assert shared_file_maps(snap.maps), "no r--s file mapping in maps"


@pytest.mark.parametrize("kind", ["gcore", "kernel"])
def test_core_keeps_shared_file_mapping(snap, kind):
    """Every r--s file mapping of maps (none has a PT_LOAD in a gcore; the
    kernel's has no bytes) is a region of the core with its path and
    offset, and its bytes, read from the file, equal /proc/PID/mem's."""
    regions = need(snap.core_regions[kind], "regions --json <%s core>" % kind)
    digests = digest_map(need(snap.core_digest[kind],
                              "digest --json <%s core>" % kind))
    by_range = {(r["start"], r["end"]): r for r in regions["regions"]}
    problems = []
    for m in shared_file_maps(snap.maps):
        rng = (m["start"], m["end"])
        r = by_range.get(rng)
        if r is None:
            problems.append("missing from the %s core: %s" % (kind, fmt(m)))
            continue
        if (r["path"], r["offset"], r["perms"][:3]) != \
                (in_root(snap, m["path"]), m["offset"], m["perms"][:3]):
            problems.append("differs: core %s, maps %s" % (fmt(r), fmt(m)))
        got = digests.get(rng, {})
        if got.get("digest") != snap.shared_digests[rng]:
            problems.append("%s: bytes %s, /proc/PID/mem %s" % (
                fmt(m), got.get("digest") or got.get("error"),
                snap.shared_digests[rng]))
    assert shared_file_maps(snap.maps), "no r--s file mapping to check"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- bytes

def digest_map(doc):
    out = {}
    for r in doc["regions"]:
        assert type(r.get("start")) is int and type(r.get("end")) is int, r
        out[(r["start"], r["end"])] = r
    return out


def other_thread_stacks(snap):
    """Regions holding the stack of a thread other than the main one."""
    info = need(snap.live_info, "pymortem info --json PID")
    sps = [t["sp"] for t in info["threads"] if t["tid"] != snap.pid]
    return {(start, end) for (start, end) in snap.mem_digests
            if any(start <= sp < end for sp in sps)}


def compare_digests(snap, doc, source, volatile=()):
    """Every selected region's digest from `source` equals the one taken from
    /proc/PID/mem; regions in `volatile` need only be readable."""
    got = digest_map(doc)
    problems = []
    for (start, end), want in sorted(snap.mem_digests.items()):
        r = got.get((start, end))
        where = "%x-%x" % (start, end)
        if source.endswith("core") and (start, end) in snap.dont_dump:
            # MADV_DONTDUMP: GDB leaves the mapping out, the kernel keeps
            # it without bytes, and pymortem says so.
            if r is not None and "not saved in the core" not in r.get("error", ""):
                problems.append("%s (dont-dump): %s gives %r" % (where, source, r))
            continue
        if source == "kernel core" and (start, end) in snap.untouched and r and \
                "not saved in the core" in r.get("error", ""):
            continue        # never touched: no page to dump (zeros)
        if r is None:
            problems.append("%s: no digest from %s" % (where, source))
        elif "digest" not in r:
            problems.append("%s: %s says %r" % (where, source, r.get("error")))
        elif not re.fullmatch(r"0x[0-9a-fA-F]{1,16}", str(r["digest"])):
            problems.append("%s: %s digest %r is not '0x<hex>'"
                            % (where, source, r["digest"]))
        elif int(r["digest"], 16) != int(want, 16) and \
                (start, end) not in volatile:
            problems.append("%s: %s digest %s, /proc/PID/mem %s"
                            % (where, source, r["digest"], want))
    assert snap.mem_digests, "no region selected: the test would be empty"
    assert not problems, "\n".join(problems)


def test_live_digest_equals_proc_mem(snap):
    doc = need(snap.live_digest, "pymortem digest --json PID")
    compare_digests(snap, doc, "live pymortem")


@pytest.mark.parametrize("kind", ["gcore", "kernel"])
def test_core_digest_equals_proc_mem(snap, kind):
    doc = need(snap.core_digest[kind], "pymortem digest --json <%s core>"
               % kind)
    # A kernel core is written after SIGCONT: the main thread dumps at once,
    # but the other threads wake too and may run on their own stacks (a
    # timed wait recomputing its timeout) until the dump stops them. Their
    # stacks must be readable from the core, not equal.
    volatile = other_thread_stacks(snap) if kind == "kernel" else set()
    compare_digests(snap, doc, "%s core" % kind, volatile)


def test_digest_reference_is_fnv1a64():
    """The test's own digest is FNV-1a 64 (published test vectors)."""
    assert harness.fnv1a64(b"") == 0xcbf29ce484222325
    assert harness.fnv1a64(b"a") == 0xaf63dc4c8601ec8c
    assert harness.fnv1a64(b"foobar") == 0x85944171f73967e8
    assert harness.fnv1a64_fast(b"foobar") == 0x85944171f73967e8


# ------------------------------------------------------------------ info

@pytest.mark.parametrize("kind", ["live", "gcore", "kernel"])
def test_info_names_python_version(snap, kind):
    result = snap.live_info if kind == "live" else snap.core_info[kind]
    info = need(result, "pymortem info --json <%s>" % kind)
    want = "%d.%d.%d" % tuple(snap.oracle["version"]["version_info"])
    python = info["python"]
    assert python["is_python"] and python["supported"], python
    assert python["version"] == want, (python, want)
    # PY_VERSION_HEX is read from Py_Version, which exists from 3.11 on;
    # before that the version comes from the banner and hexversion is 0.
    if tuple(snap.oracle["version"]["version_info"][:2]) >= (3, 11):
        assert python["hexversion"] == snap.oracle["version"]["hexversion"], python
    else:
        assert python["hexversion"] in (0, snap.oracle["version"]["hexversion"])
