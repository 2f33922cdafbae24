"""Processes in another root (a chroot, as a container's): Debian unstable's
glibc 2.43 and CPython 3.13, 3.14 and 3.15, each run inside the chroot that
tests/setup-debian.sh builds (PYMORTEM_CHROOT, default
/var/cache/pymortem/sid) and analysed live from outside.

Truth, taken inside the frozen process: mallinfo2() of the chroot's glibc,
sys._debugmallocstats()'s allocated bytes, and gc.get_objects() counts of
the workload's own classes. glibc 2.43 counts 16 bytes too many in
mp_.mmapped_mem (mallinfo2's hblkhd) each time it resizes an mmapped chunk
with mremap; the workload measures that itself (mallinfo2 around three
reallocs of its own, whose mapping sizes it knows), and pymortem reports the
mappings, with a warning naming the difference.

The rest of the e2e suite runs its workloads under these CPythons too
(harness.chroot_pythons): here, what is particular to the chroot.
"""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest

import harness

CHROOT = os.environ.get("PYMORTEM_CHROOT", "/var/cache/pymortem/sid")
PYTHONS = ["python3.13", "python3.14", "python3.15"]
FIELDS = ("arena", "ordblks", "smblks", "hblks", "usmblks", "fsmblks",
          "uordblks", "fordblks", "keepcost")
REALLOCS = 3

WORKLOAD = r"""
import ctypes, gc, json, os, signal, sys, threading
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
        "fordblks keepcost").split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = libc.realloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
def mallinfo():
    m = libc.mallinfo2()
    return {f: getattr(m, f) for f, _ in Mallinfo2._fields_}
class ChrootSentinel:
    def __init__(self, i):
        self.i = i
class ChrootOther:
    pass
keep = [ChrootSentinel(i) for i in range(3000)] + [ChrootOther() for _ in range(500)]
data = [bytes(700 + i % 3000) for i in range(6000)]
del data[::4]
big = [bytearray(300000) for _ in range(3)]
ready, done = threading.Event(), threading.Event()
def worker():
    mine = [bytes(200) for _ in range(800)]
    ready.set()
    done.wait()
thread = threading.Thread(target=worker)
thread.start()
ready.wait()
# No collection from here on: one could free objects between the numbers
# below and the stop (seen on 3.15d: 80 bytes fewer in use than reported).
gc.disable()
# Three reallocs of an mmapped chunk of our own, each to a new page count.
page = os.sysconf("SC_PAGESIZE")
def mapping(n):   # glibc 2.43: the request, a chunk header at each end, pages
    return (n + 16 + 16 + page - 1) // page * page
sizes = [200000, 500000, 900000, 1500000]
before = mallinfo()
p = libc.malloc(sizes[0])
after_malloc = mallinfo()
for n in sizes[1:]:
    p = libc.realloc(p, n)
after = mallinfo()
counts = {}
for o in gc.get_objects():
    name = type(o).__name__
    if name.startswith("Chroot"):
        counts[name] = counts.get(name, 0) + 1
oracle = os.environ["PM_ORACLE_FILE"]
doc = {"sentinels": counts, "version": sys.version.split()[0],
       "runtime": ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime")),
       "threads": threading.active_count(), "abiflags": sys.abiflags,
       "realloc_growth": after["hblkhd"] - after_malloc["hblkhd"],
       "realloc_mappings": mapping(sizes[-1]) - mapping(sizes[0])}
with open(oracle, "w") as f:
    json.dump(doc, f)
# The last numbers, with nothing allocated or freed after them: the raw
# mallinfo2 struct written from its own buffer, then _debugmallocstats()
# to stderr (unbuffered: glibc allocates nothing for it), then the stop,
# one call bound beforehand: no Python code runs between the pymalloc
# figures and the stop (a write after them once freed 80 bytes, 3.13d).
kill, pid, sig = os.kill, os.getpid(), signal.SIGSTOP   # no int made after
dms = os.open(oracle + ".dms", os.O_WRONLY | os.O_CREAT, 0o644)
raw = os.open(oracle + ".mallinfo2", os.O_WRONLY | os.O_CREAT, 0o644)
debugmallocstats = sys._debugmallocstats
m = libc.mallinfo2()
os.write(raw, m)
os.dup2(dms, 2)
debugmallocstats()
kill(pid, sig)
done.set()
"""


def chroot_python(name):
    path = os.path.join(CHROOT, "usr/bin", name)
    if not os.path.exists(path):
        pytest.skip("no %s in the Debian unstable chroot %s (tests/setup-debian.sh "
                    "builds it)" % (name, CHROOT))
    if not os.path.exists(os.path.join(CHROOT, "proc/self")):
        pytest.skip("%s/proc is not mounted (tests/setup-debian.sh mounts it)" % CHROOT)
    return "/usr/bin/" + name


class ChrootTarget:
    """The workload running in the chroot, stopped after writing its
    oracle (inside the chroot's /tmp, read from outside)."""

    def __init__(self, python):
        self.inside = tempfile.mkdtemp(prefix="pm-chroot-", dir=os.path.join(CHROOT, "tmp"))
        rel = "/tmp/" + os.path.basename(self.inside)
        with open(os.path.join(self.inside, "workload.py"), "w") as f:
            f.write(WORKLOAD)
        env = {"PATH": "/usr/bin:/bin", "PM_ORACLE_FILE": rel + "/oracle.json"}
        self.oracle_path = os.path.join(self.inside, "oracle.json")
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        # Its cwd is its own dir there: a kernel core lands in it.
        with open(os.path.join(self.inside, "stderr"), "w") as err:
            self.proc = subprocess.Popen(
                [chroot, CHROOT, "/bin/sh", "-c", 'cd "$1" && exec "$2" workload.py',
                 "sh", rel, python],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err, preexec_fn=harness._child_setup)
        deadline = time.monotonic() + 120
        while not (os.path.exists(self.oracle_path + ".mallinfo2") and
                   harness.is_stopped(self.proc.pid)):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s: %s" % (
                    python, self.proc.returncode,
                    open(os.path.join(self.inside, "stderr")).read()))
            if time.monotonic() > deadline:
                raise TimeoutError("%s did not stop" % python)
            time.sleep(0.02)
        with open(self.oracle_path) as f:
            self.oracle = json.load(f)
        with open(self.oracle_path + ".mallinfo2", "rb") as f:
            raw = f.read()
        self.oracle["mallinfo2"] = dict(zip(
            ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
             "uordblks", "fordblks", "keepcost"), struct.unpack("<10Q", raw)))
        self.pid = self.proc.pid

    def pymalloc_arenas(self):
        """'# arenas allocated current' of sys._debugmallocstats()."""
        with open(self.oracle_path + ".dms") as f:
            m = re.search(r"^# arenas allocated current\s*=\s*([\d,]+)", f.read(), re.M)
        return int(m.group(1).replace(",", ""))

    def kernel_core(self):
        """The kernel's core of it (SIGABRT to the main thread, then
        SIGCONT), written in its dir inside the chroot: the files it names
        are paths of the chroot's own."""
        harness._tgkill(self.pid, self.pid, signal.SIGABRT)
        os.kill(self.pid, signal.SIGCONT)
        self.proc.wait(timeout=120)
        assert self.proc.returncode == -signal.SIGABRT, self.proc.returncode
        for name in ("core.%d" % self.pid, "core"):
            path = os.path.join(self.inside, name)
            if os.path.exists(path):
                return path
        raise RuntimeError("no kernel core in %s: %s" % (self.inside, os.listdir(self.inside)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.inside, ignore_errors=True)


def mmapped_drift(report):
    """The bytes glibc 2.43's mp_.mmapped_mem is over the mappings, as
    pymortem's warning gives them (0 without the warning)."""
    return harness.mremap_drift(report)


@pytest.mark.parametrize("name", PYTHONS)
def test_chroot_malloc_stats(name):
    """malloc-stats of a chroot process equals its own glibc 2.43's
    mallinfo2(), hblkhd less the mremap drift the process itself shows."""
    python = chroot_python(name)
    with ChrootTarget(python) as t:
        mi = t.oracle["mallinfo2"]
        # glibc's own numbers first: each realloc that moved to new pages
        # added 16 bytes more than the mappings grew.
        assert t.oracle["realloc_growth"] == t.oracle["realloc_mappings"] + 16 * REALLOCS
        proc = harness.run_cli("malloc-stats", "--json", str(t.pid))
        report = json.loads(proc.stdout)
        assert report["glibc_version"] == "2.43", report["glibc_version"]
        assert {k: report[k] for k in FIELDS} == {k: mi[k] for k in FIELDS}, report.get("warnings")
        drift = mmapped_drift(report)
        assert drift >= 16 * REALLOCS and drift % 16 == 0, report.get("warnings")
        assert report["hblkhd"] + drift == mi["hblkhd"]
        assert not report["partial"], report.get("warnings")
        assert report["hblks"] >= 4     # three bytearrays and our chunk


@pytest.mark.parametrize("name", ["python3.13", "python3.13d", "python3.14", "python3.14d",
                                  "python3.15", "python3.15d"])
def test_chroot_summary(name):
    """CPython 3.13, 3.14 and 3.15 from Debian unstable on glibc 2.43, and
    their pydebug builds (python3.X-dbg): TOTAL is all the memory both allocators hold
    (mallinfo2's arena bytes, its hblkhd less the drift, and pymalloc's
    arenas of 1 MiB, as many as sys._debugmallocstats() says), the
    workload's classes have the counts gc.get_objects() gave, and each
    thread but the main one (whose state the interpreter state holds) has
    its thread state."""
    python = chroot_python(name)
    with ChrootTarget(python) as t:
        assert ("d" in t.oracle["abiflags"]) == name.endswith("d")
        mi = t.oracle["mallinfo2"]
        stats = harness.cli_json("malloc-stats", "--json", t.pid)
        doc = harness.cli_json("summary", "--json", "--all", t.pid)
        assert doc["total"]["bytes"] == (mi["arena"] + mi["hblkhd"] - mmapped_drift(stats)
                                         + t.pymalloc_arenas() * (1 << 20))
        counts = {r["kind"]: r["count"] for r in doc["rows"]
                  if r["domain"] == "python" and r["detail"] == "-"}
        for cls, n in t.oracle["sentinels"].items():
            assert counts.get(cls) == n, (cls, counts.get(cls), n)
        states = sum(r["count"] for r in doc["rows"]
                     if r["domain"] == "cpython" and r["kind"] == "thread state")
        assert states == t.oracle["threads"] - 1, (states, t.oracle["threads"])
        assert not [w for w in doc.get("warnings", []) if "obmalloc" in w["message"]], \
            doc.get("warnings")
        # The main interpreter is where _PyRuntime.interpreters.main says
        # (3.13.18's moved 72 bytes from 3.13.0's): its allocator state is
        # found without a scan, and _debugmallocstats' blocks agree.
        pm = harness.cli_json("pymalloc-stats", "--json", t.pid)
        assert pm["how"] == "_PyRuntime offsets", pm["how"]
        with open(t.oracle_path + ".dms") as f:
            dms = f.read()
        in_use = int(re.search(r"^# bytes in allocated blocks\s*=\s*([\d,]+)", dms,
                               re.M).group(1).replace(",", ""))
        assert sum(c["blocks in use"] * c["size"] for st in pm["states"]
                   for c in st["classes"]) == in_use


@pytest.mark.parametrize("debuginfo", [True, False], ids=["debuginfo", "no-debuginfo"])
@pytest.mark.parametrize("name", ["python3.13", "python3.14", "python3.15"])
def test_chroot_kernel_core_sysroot(name, debuginfo):
    """A kernel core of a chroot's process names the files by its own root:
    from the host, without --sysroot, the report says which file differs
    and how to give them; with --sysroot it equals the live report and the
    process's mallinfo2(), and its summary has the workload's classes with
    gc.get_objects()'s counts. With --no-debuginfo (the chroot's debug
    files and .symtab ignored, as where no -dbg package is installed) the
    same, from exported symbols, _Py_DebugOffsets and glibc's arena found
    by its signature."""
    python = chroot_python(name)
    nodebug = [] if debuginfo else ["--no-debuginfo"]
    with harness.core_pattern_core(), ChrootTarget(python) as t:
        mi = t.oracle["mallinfo2"]
        live = harness.cli_json("malloc-stats", "--json", t.pid)
        core = t.kernel_core()
        proc = harness.run_cli("summary", core)
        assert "/usr/lib/x86_64-linux-gnu/libc.so.6 differs from the mapped file " \
            "(build-id differs) (a core of a process in another root: give its files " \
            "with --sysroot)" in proc.stdout, proc.stdout[-2000:]
        report = harness.cli_json("malloc-stats", "--json", "--sysroot", CHROOT, *nodebug, core)
        assert report["main_arena_source"] == ("symbol" if debuginfo else "signature scan"), \
            report["main_arena_source"]
        assert {k: report[k] for k in FIELDS + ("hblkhd",)} == \
            {k: live[k] for k in FIELDS + ("hblkhd",)}
        assert {k: report[k] for k in FIELDS} == {k: mi[k] for k in FIELDS}
        assert report["hblkhd"] + mmapped_drift(report) == mi["hblkhd"]
        doc = harness.cli_json("summary", "--json", "--all", "--sysroot", CHROOT, *nodebug, core)
        counts = {r["kind"]: r["count"] for r in doc["rows"]
                  if r["domain"] == "python" and r["detail"] == "-"}
        for cls, n in t.oracle["sentinels"].items():
            assert counts.get(cls) == n, (cls, counts.get(cls), n)


def test_chroot_kernel_core_gdb_sysroot():
    """GDB: `set sysroot` to the chroot, then the kernel core of its process
    with its executable: `heap arenas --json` equals the CLI malloc-stats's with
    --sysroot (GDB's sysroot is given to the library)."""
    from test_gdb import gdb_drive, gdb_env
    gdb_env()   # skips in a sanitizer build, saying why
    python = chroot_python("python3.13")
    with harness.core_pattern_core(), ChrootTarget(python) as t:
        core = t.kernel_core()
        want = harness.cli_json("malloc-stats", "--json", "--sysroot", CHROOT, core)
        results = gdb_drive([os.path.join(CHROOT, python.lstrip("/")), core],
                            [("cmd", "heap arenas --json")],
                            setup=["set sysroot " + CHROOT])
        got = results["heap arenas --json"]
        assert "output" in got, got
        assert json.loads(got["output"]) == want


def test_chroot_gdb18_plugin():
    """The plugin loads in Debian unstable's GDB 18 (whose Python is 3.13,
    newer than Debian 12's: the binding's stable ABI), run in the chroot
    and attached to a process there; `heap summary --all --json` equals the
    CLI's summary from outside."""
    from test_gdb import gdb_env
    gdb_env()   # skips in a sanitizer build, saying why
    if not os.path.exists(os.path.join(CHROOT, "usr/bin/gdb")):
        pytest.skip("no gdb in the chroot %s (tests/setup-debian.sh installs it)" % CHROOT)
    python = chroot_python("python3.13")
    plugin = tempfile.mkdtemp(prefix="pm-gdbplugin-", dir=os.path.join(CHROOT, "tmp"))
    try:
        built = os.path.join(harness.build_dir(), "gdbplugin")
        shutil.copy(os.path.join(built, "pymortem-gdb.py"), plugin)
        os.mkdir(os.path.join(plugin, "pymortem"))
        for name in os.listdir(os.path.join(built, "pymortem")):
            if name.endswith(".py") or name.endswith(".so"):
                shutil.copy(os.path.join(built, "pymortem", name),
                            os.path.join(plugin, "pymortem"))
        inside = "/tmp/" + os.path.basename(plugin)
        with ChrootTarget(python) as t:
            chroot = shutil.which("chroot") or "/usr/sbin/chroot"
            proc = subprocess.run(
                [chroot, CHROOT, "/usr/bin/gdb", "-nx", "-q", "-batch",
                 "-ex", "source %s/pymortem-gdb.py" % inside,
                 "-ex", "heap summary --all --json", "-p", str(t.pid)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                universal_newlines=True, errors="backslashreplace")
            out = proc.stdout
            assert "\n{" in out, (out[-1500:], proc.stderr[-1500:])
            got = json.loads(out[out.index("\n{") + 1:out.rindex("}") + 1])
            assert got == harness.cli_json("summary", "--json", t.pid)
            assert "GNU gdb (Debian 18" in subprocess.run(
                [chroot, CHROOT, "/usr/bin/gdb", "--version"], stdout=subprocess.PIPE,
                universal_newlines=True).stdout
    finally:
        shutil.rmtree(plugin, ignore_errors=True)


def test_chroot_debug_offsets_moved_field():
    """A release whose interpreter state moved a field is refused by name:
    in a kernel core of a 3.14 process, _Py_DebugOffsets'
    interpreter_state.next (at 64 in 3.14's struct) is made 8 larger; the
    summary then says which field differs and what the core gives, and
    still gives glibc's rows. The unpatched core is analysed."""
    python = chroot_python("python3.14")
    with harness.core_pattern_core(), ChrootTarget(python) as t:
        core = t.kernel_core()
        runtime = t.oracle["runtime"]
        assert harness.cli_json("summary", "--json", "--sysroot", CHROOT, core)["python"][
            "supported"]
        seg = next(s for s in harness.elf_core_segments(core)
                   if s["start"] <= runtime + 64 < s["start"] + s["filesz"])
        at = seg["offset"] + runtime + 64 - seg["start"]
        with open(core, "r+b") as f:
            f.seek(at)
            published, = struct.unpack("<Q", f.read(8))
            f.seek(at)
            f.write(struct.pack("<Q", published + 8))
        proc = harness.run_cli("summary", "--sysroot", CHROOT, core)
        want = ("CPython %s is not supported yet: its _Py_DebugOffsets give "
                "interpreter_state.next = %d where pymortem's 3.14 table has %d"
                % (t.oracle["version"], published + 8, published))
        assert want in proc.stdout, proc.stdout[:800]
        assert "glibc" in proc.stdout


def thread_stacks(pid):
    """(start, end) of the mappings holding the stack pointer of each of
    pid's threads but the main one, from /proc/PID/task/TID/syscall and
    /proc/PID/maps."""
    maps = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            a, b = line.split()[0].split("-")
            maps.append((int(a, 16), int(b, 16)))
    stacks = []
    for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
        if tid == pid:
            continue
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            sp = int(f.read().split()[-2], 16)
        stacks += [m for m in maps if m[0] <= sp < m[1]]
    return stacks


def refused_pages(pid, start, end):
    """Offsets of the pages of [start, end) /proc/PID/mem answers EIO for."""
    out = []
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as f:
        for at in range(start, end, 4096):
            try:
                f.seek(at)
                f.read(4096)
            except OSError:
                out.append(at - start)
    return out


@pytest.mark.parametrize("name", PYTHONS)
def test_chroot_thread_stack_guard_page(name):
    """glibc 2.43 installs a thread stack's guard page inside the stack's
    own mapping (MADV_GUARD_INSTALL; smaps flags it "gu"), and /proc/PID/mem
    refuses that page (EIO). Live, `digest` reads the stack with the guard
    page as zeros and equals the digest of the bytes /proc/PID/mem gives
    (the refused page as zeros); a core from the chroot's GDB 18 holds the
    same bytes and is not partial; the host's GDB 13 gcore writes zeros for
    the whole stack, and every report then says first, as partial input,
    that exactly those stacks are missing."""
    python = chroot_python(name)
    with ChrootTarget(python) as t:
        assert t.oracle["threads"] == 2
        stacks = thread_stacks(t.pid)
        assert len(stacks) == 1, stacks
        guarded = harness.guarded_mappings(t.pid)
        for start, end in stacks:
            assert (start, end) in guarded, (hex(start), guarded)
            assert refused_pages(t.pid, start, end) == [0]
        live = {(d["start"], d["end"]): d for d in
                harness.cli_json("digest", "--json", t.pid)["regions"]}
        for start, end in stacks:
            assert live[(start, end)].get("digest") == \
                harness.mem_digest(t.pid, start, end), live[(start, end)]
        cores = {}
        inside = "/tmp/" + os.path.basename(t.inside)     # t.inside, in the chroot
        for gdb, command, where in (("gdb18", ["chroot", CHROOT, "/usr/bin/gcore"], inside),
                                    ("gdb13", ["gcore"], t.inside)):
            prefix = os.path.join(t.inside, gdb)
            subprocess.run(command + ["-o", os.path.join(where, gdb), str(t.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=300)
            assert harness.is_stopped(t.pid)
            cores[gdb] = "%s.%d" % (prefix, t.pid)
        doc = harness.cli_json("digest", "--json", "--sysroot", CHROOT, cores["gdb18"])
        assert doc["partial_reasons"] == []
        got = {(d["start"], d["end"]): d for d in doc["regions"]}
        for start, end in stacks:
            assert got[(start, end)].get("digest") == live[(start, end)]["digest"]
        for report in ("digest", "summary"):
            doc = harness.cli_json(report, "--json", "--sysroot", CHROOT, cores["gdb13"])
            zeroed = [p for p in doc["partial_reasons"] if p["reason"] == "stack-zeroed"]
            assert len(zeroed) == 1, doc["partial_reasons"]
            assert [(r["start"], r["end"]) for r in zeroed[0]["ranges"]] == stacks
        text = harness.run_cli("summary", "--sysroot", CHROOT, cores["gdb13"]).stdout
        assert text.startswith("partial: 1 thread stack in this core holds only zeros"), \
            text[:300]


def test_chroot_mmapped_chunks_merged_into_a_thread_heap():
    """Under glibc 2.43 the kernel merges the mappings of mmapped chunks
    made right below a thread arena's heap into the heap's own region (its
    heaps no longer differ from them in flags); tests/targets/glibc_workload
    (--mmapped-below-heap, run in the chroot against its glibc) makes that
    layout, which the process checks in its maps. Every mmapped chunk is
    found there, live and in GDB 18's core: malloc-stats equals mallinfo2()
    and the chunks are at the addresses malloc returned."""
    workload = os.path.join(harness.build_dir(), "tests", "targets", "glibc_workload")
    if not os.path.exists(os.path.join(CHROOT, "proc/self")):
        pytest.fail("%s/proc is not mounted (tests/setup-debian.sh mounts it)" % CHROOT)
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    with harness.start_stopped([chroot, CHROOT, workload, "--threads", "1",
                                "--mmapped-below-heap", "3"]) as t:
        truth = t.oracle
        heap, users = truth["below_heap"], truth["below_user"]
        assert heap and len(users) == 3
        with open("/proc/%d/maps" % t.pid) as f:
            spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f]
        merged = [s for s in spans if s[0] <= min(users) and heap < s[1]]
        assert merged and merged[0][0] < heap, \
            "premise: the chunks' mappings and the heap are one region: %s" % merged
        prefix = os.path.join(t.workdir, "gdb18")
        subprocess.run([chroot, CHROOT, "/usr/bin/gcore", "-o", prefix, str(t.pid)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=300)
        assert harness.is_stopped(t.pid)
        core = "%s.%d" % (prefix, t.pid)
        mi = truth["mallinfo2"]
        for where in ([str(t.pid)], ["--sysroot", CHROOT, core]):
            report = harness.cli_json("malloc-stats", "--json", *where)
            assert {k: report[k] for k in FIELDS + ("hblkhd",)} == \
                {k: mi[k] for k in FIELDS + ("hblkhd",)}, (where, report.get("warnings"))
            chunks = harness.cli_json("chunks", "--json", *where)["chunks"]
            found = {c["address"] for c in chunks if c["state"] == "mmapped"}
            assert {u - 16 for u in users} <= found, (where, sorted(found))
