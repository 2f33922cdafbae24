"""End-to-end checks of the core-file source specifically (lib/source_core.c),
beyond the region/digest comparison of test_regions.py, on a gcore and a
kernel core of the same frozen CPython process, for every interpreter:

- bytes the core does not hold (read-only file-backed mappings: the kernel
  saves only their ELF header page, gcore leaves most out; among them the
  shared r--s gconv-modules.cache) are read from the files on disk: their
  digests equal /proc/PID/mem's, read by this test;
- pseudo paths ([heap], [stack], [vdso], [vvar], [vvar_vclock], [vsyscall])
  given to anonymous regions equal the maps' for the same range, both ways;
- threads: the core's thread ids are /proc/PID/task's; for gcore (taken
  while the process stays stopped) each thread's sp and pc equal the last
  two fields of /proc/PID/task/TID/syscall.
Truths are captured while the process is stopped, before its cores."""

import os
import struct

import pytest

harness = pytest.importorskip("harness")
from conftest import python_params  # noqa: E402

PSEUDO = ("[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]",
          "[vsyscall]")
# The kernel's clock pages change by themselves and /proc/PID/mem refuses
# them; [vsyscall] is not readable through /proc/PID/mem either.
UNREADABLE = ("[vvar]", "[vvar_vclock]", "[vsyscall]")


def proc_threads(pid):
    """{tid: (sp, pc)} from /proc/PID/task/TID/syscall (None if the kernel
    says 'running')."""
    threads = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
            fields = f.read().split()
        regs = None
        if len(fields) >= 3 and fields[0] != "running":
            regs = (int(fields[-2], 16), int(fields[-1], 16))
        threads[int(tid)] = regs
    return threads


def file_backed_readonly(maps):
    return [m for m in maps
            if m["path"] and m["path"].startswith("/") and
            m["perms"][0] == "r" and m["perms"][1] != "w"]


def cut_before_notes(core):
    """A copy of a gcore core cut where its notes start (gcore writes them
    last, so a full disk loses them first)."""
    with open(core, "rb") as f:
        data = f.read()
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    notes = [struct.unpack_from("<Q", data, phoff + 56 * i + 8)[0]
             for i in range(phnum)
             if struct.unpack_from("<I", data, phoff + 56 * i)[0] == 4]
    assert notes and max(notes) > len(data) // 2, "gcore's notes are not last"
    path = core + ".cut"
    with open(path, "wb") as f:
        f.write(data[:min(notes)])
    return path


@pytest.fixture(scope="module", params=python_params())
def frozen(request):
    label, python = request.param
    if python is None:
        pytest.fail("no CPython interpreter found")
    # --iconv: glibc's gconv modules and its shared (r--s) cache file are
    # mapped too, file-backed bytes no core holds.
    with harness.start_python(python, "--threads", "2", "--iconv") as t:
        truth = {"maps": t.maps, "threads": proc_threads(t.pid), "sysroot": t.sysroot}
        with open("/proc/%d/comm" % t.pid) as f:
            truth["comm"] = f.read().strip()
        truth["file_digests"] = {}
        for m in file_backed_readonly(t.maps):
            truth["file_digests"][(m["start"], m["end"])] = \
                harness.mem_digest(t.pid, m["start"], m["end"])
        truth["pid"] = t.pid
        gcore = t.gcore()
        cores = {"gcore": gcore, "cut": cut_before_notes(gcore),
                 "kernel": t.kernel_core()}
        if t.sysroot:   # the cut copy is of the same process's root
            harness.CORE_SYSROOTS[cores["cut"]] = t.sysroot
        out = {}
        for kind, path in cores.items():
            out[kind] = {
                "regions": harness.cli_json("regions", "--json", path)["regions"],
                "info": harness.cli_json("info", "--json", path),
                "digest": harness.cli_json("digest", "--json", path)["regions"],
            }
            os.unlink(path)     # cores are big; the JSON is all we need
        yield label, truth, out


KINDS = ("gcore", "kernel")


def test_cut_core_names_shared_objects(frozen):
    """Without NT_FILE (cut off), shared objects are named from ld.so's
    link_map: the same path (canonical) and offset as maps, and their bytes
    (read from the files) equal /proc/PID/mem's."""
    label, truth, out = frozen
    maps = {(m["start"], m["end"]): m for m in truth["maps"]}
    regions = out["cut"]["regions"]
    named = [r for r in regions if r["path"] and r["path"].startswith("/")]
    wrong = ["%x-%x %s+%x, maps: %s" % (
        r["start"], r["end"], r["path"], r["offset"],
        maps.get((r["start"], r["end"]))) for r in named
        if (r["start"], r["end"]) not in maps or
        harness.in_root(maps[(r["start"], r["end"])]["path"], truth["sysroot"]) != r["path"] or
        maps[(r["start"], r["end"])]["offset"] != r["offset"]]
    assert not wrong, "%s:\n%s" % (label, "\n".join(wrong))
    # Not a page a library maps a second time itself (libffi 3.5's
    # trampoline table, mapped again from its file): ld.so's link_map
    # knows only the load segments.
    def mapped_again(m):
        return any(o is not m and o["inode"] == m["inode"] and
                   o["offset"] <= m["offset"] < o["offset"] + o["size"]
                   for o in truth["maps"])
    libs = [m for m in truth["maps"] if m["path"] and ".so" in m["path"] and
            not mapped_again(m)]
    assert libs and len(named) >= len(libs), (
        "%s: %d of %d shared-object mappings named" % (
            label, len(named), len(libs)))
    digests = {(d["start"], d["end"]): d for d in out["cut"]["digest"]}
    bad = ["%x-%x" % rng for rng, want in truth["file_digests"].items()
           if maps[rng]["path"] and ".so" in maps[rng]["path"] and
           not mapped_again(maps[rng]) and
           digests.get(rng, {}).get("digest") != want]
    assert not bad, "%s: bytes differ in %s" % (label, bad)


@pytest.mark.parametrize("kind", KINDS)
def test_file_backed_bytes_from_disk(frozen, kind):
    label, truth, out = frozen
    digests = {(d["start"], d["end"]): d for d in out[kind]["digest"]}
    assert truth["file_digests"], "no read-only file mappings in maps?"
    shared = [m for m in truth["maps"] if m["perms"][3] == "s" and
              (m["start"], m["end"]) in truth["file_digests"]]
    assert shared, "no r--s file mapping (gconv-modules.cache) to check"
    bad = []
    for rng, want in truth["file_digests"].items():
        got = digests.get(rng)
        if got is None:
            bad.append("%x-%x missing from the core's digest" % rng)
        elif got.get("digest") != want:
            bad.append("%x-%x: core %s, /proc/PID/mem %s" % (
                rng + (got.get("digest") or got.get("error"), want)))
    assert not bad, "%s %s:\n%s" % (label, kind, "\n".join(bad))


@pytest.mark.parametrize("kind", KINDS)
def test_pseudo_paths_match_maps(frozen, kind):
    label, truth, out = frozen
    maps = {(m["start"], m["end"]): m["path"] for m in truth["maps"]}
    regions = out[kind]["regions"]
    bad = []
    for r in regions:
        want = maps.get((r["start"], r["end"]))
        if r["path"] in PSEUDO and want != r["path"]:
            bad.append("%x-%x named %s, maps says %s" % (
                r["start"], r["end"], r["path"], want))
    named = {(r["start"], r["end"]): r["path"] for r in regions}
    for rng, path in maps.items():
        if path not in PSEUDO:
            continue
        if rng not in named:
            # gcore does not dump the kernel's clock pages at all.
            if not (kind == "gcore" and path in ("[vvar]", "[vvar_vclock]")):
                bad.append("%s %x-%x missing from the core" % ((path,) + rng))
        elif named[rng] != path:
            bad.append("%x-%x is %s in maps, %s in the core" % (
                rng + (path, named[rng])))
    assert not bad, "%s %s:\n%s" % (label, kind, "\n".join(bad))


@pytest.mark.parametrize("kind", KINDS)
def test_threads_match_proc(frozen, kind):
    label, truth, out = frozen
    info = out[kind]["info"]
    threads = {t["tid"]: t for t in info["threads"]}
    assert set(threads) == set(truth["threads"]), label
    assert info["target"]["pid"] == truth["pid"]
    main = threads[truth["pid"]]
    assert main["name"] == truth["comm"][:15], (main["name"], truth["comm"])
    if kind != "gcore":
        return  # the kernel core is taken after SIGCONT: threads moved
    moved = []
    for tid, regs in truth["threads"].items():
        if regs is None:
            continue
        if (threads[tid]["sp"], threads[tid]["pc"]) != regs:
            moved.append("tid %d: core sp/pc %x/%x, /proc %x/%x" % (
                tid, threads[tid]["sp"], threads[tid]["pc"], regs[0], regs[1]))
    assert not moved, "%s:\n%s" % (label, "\n".join(moved))
