"""Shared end-to-end test harness for pymortem: finds the interpreters to cover,
runs the `pymortem` CLI, starts workload processes that freeze themselves
(SIGSTOP) after writing an oracle, and takes gcore and kernel cores of them.

Every process started here is killed at the end: Target is a context manager,
and an atexit hook kills whatever is left. Nothing here prints to stdout
except the list of interpreters (once, for the run's record).
"""

import atexit
import contextlib
import ctypes
import errno
import glob
import json
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
TARGETS_DIR = os.path.join(SOURCE_ROOT, "tests", "targets")
PY_WORKLOAD = os.path.join(TARGETS_DIR, "py_workload.py")
CORE_PATTERN = "/proc/sys/kernel/core_pattern"


# ---------------------------------------------------------------- interpreters

def find_pythons():
    """(label, path) of every installed CPython 3.8-3.13 to cover."""
    found = []
    for path in sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python")):
        version = path.split("/")[-3]
        m = re.match(r"3\.(\d+)(?:\.\d+)?(t?)$", version)
        if m and 8 <= int(m.group(1)) <= 13 and os.access(path, os.X_OK):
            found.append((version, path))
    found.sort(key=lambda lp: tuple(int(x) for x in
                                    re.findall(r"\d+", lp[0])))
    if os.access("/usr/bin/python3.11", os.X_OK):
        found.append(("3.11-debian", "/usr/bin/python3.11"))
    return found + chroot_pythons()


CHROOT = os.environ.get("PYMORTEM_CHROOT", "/var/cache/pymortem/sid")
# tests/setup-debian.sh's commands that run one of the chroot's CPythons
# inside it, in the caller's directory (/work and /tmp are the host's there)
CHROOT_BIN = os.path.join(os.path.dirname(CHROOT), "bin")
CHROOT_PYTHONS = ("3.13", "3.13d", "3.14", "3.14d", "3.15", "3.15d")


def chroot_unshared():
    """Why a workload run in the chroot would not find its files at the
    paths the tests give it (None when it would): the repository, the
    temporary directory and /tmp must be the host's inside, at the same
    paths, as tests/setup-debian.sh's bind mounts make them. When one is
    not (a CI run once found none of them shared although setup-debian.sh
    had mounted them), root mounts it here, in the tests' own mount
    namespace; what still differs is named with the evidence (device and
    inode on both sides, the mount table's lines for the chroot)."""
    if not os.path.isdir(CHROOT):
        return "no chroot %s (tests/setup-debian.sh builds it)" % CHROOT
    problems = []
    for path in (SOURCE_ROOT, tempfile.gettempdir(), "/tmp"):
        inside = CHROOT + path
        if _same_file(inside, path):
            continue
        mount_error = ""
        if os.geteuid() == 0:
            os.makedirs(inside, exist_ok=True)
            # A mount an earlier checkout at this path left, its directory
            # since deleted, cannot be mounted over (ENOENT): lazily
            # unmount whatever is there that is not the host's directory.
            for _ in range(8):
                if inside not in _mount_points() or _same_file(inside, path):
                    break
                subprocess.run(["umount", "-l", inside],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if not _same_file(inside, path):
                done = subprocess.run(["mount", "--bind", path, inside],
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE,
                                      universal_newlines=True)
                mount_error = done.stderr.strip().split("\n")[0]
            if _same_file(inside, path):
                continue
        problems.append("%s is not the host's %s (%s against %s)%s" % (
            inside, path, _file_id(inside), _file_id(path),
            "; mount --bind said: " + mount_error if mount_error else ""))
    if not problems:
        return None
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if CHROOT in line]
    except OSError:
        mounts = []
    return "%s; the chroot's mounts: %s (tests/setup-debian.sh bind-mounts " \
           "the repository, /tmp and $TMPDIR there)" % (
               "; ".join(problems), ", ".join(mounts) or "none")


def _mount_points():
    """This namespace's mount points. os.path.ismount cannot see a bind
    mount from the same file system (same device, as its parent)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                           line.split()[4]) for line in f}
    except OSError:
        return set()


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _file_id(path):
    try:
        st = os.stat(path)
    except OSError as e:
        return e.strerror
    return "device %d inode %d" % (st.st_dev, st.st_ino)


def chroot_pythons():
    """(label, command) of the Debian unstable chroot's CPythons, when
    tests/setup-debian.sh made it and PYMORTEM_CHROOT_MATRIX=1 asks for
    them: not yet by default, as the whole suite does not pass with them
    (its glibc 2.43 hblkhd drift, cores needing --sysroot; see issue 11's
    note). test_chroot.py covers them on its own."""
    if os.environ.get("PYMORTEM_CHROOT_MATRIX") != "1" or \
            os.environ.get("PYMORTEM_NO_CHROOT") == "1":
        return []
    if chroot_unshared():
        return []
    found = []
    for name in CHROOT_PYTHONS:
        command = os.path.join(CHROOT_BIN, "python" + name)
        inside = os.path.join(CHROOT, "usr/bin/python" + name)
        if os.access(command, os.X_OK) and os.access(inside, os.X_OK):
            found.append(("%s-sid" % name, command))
    return found


def is_chroot_python(path):
    return bool(path) and os.path.dirname(path) == CHROOT_BIN


PYTHONS = find_pythons()
PYTHON_LABELS = [label for label, _ in PYTHONS]


def covered_summary():
    return "interpreters covered: " + (
        ", ".join("%s (%s)" % lp for lp in PYTHONS) if PYTHONS else "NONE")


# ------------------------------------------------------------------------ CLI

def build_dir():
    return os.path.abspath(os.environ.get("PYMORTEM_BUILD",
                                          os.path.join(SOURCE_ROOT, "build")))


def cli_path():
    """The built `pymortem` executable."""
    if os.environ.get("PYMORTEM_CLI"):
        return os.path.abspath(os.environ["PYMORTEM_CLI"])
    return os.path.join(build_dir(), "cli", "pymortem")


def binding_sanitized():
    """Does the GDB binding link ASan? GDB cannot load it then (GDB 13
    hangs with the ASan runtime preloaded): GDB tests skip, saying so."""
    binding = os.path.join(build_dir(), "gdbplugin", "pymortem", "_pymortem.abi3.so")
    ldd = subprocess.run(["ldd", binding], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, errors="backslashreplace").stdout
    return "libasan" in ldd


def sanitizer_build():
    """Is the built `pymortem` linked with ASan?"""
    try:
        ldd = subprocess.run(["ldd", cli_path()], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True).stdout
    except OSError:
        return False
    return "libasan" in ldd


def adjacent_arena_lib():
    """tests/targets/adjacent_arena.c as built (py_workload --adjacent-arena)."""
    return os.path.join(build_dir(), "tests", "targets", "libadjacent_arena.so")


class CliError(AssertionError):
    pass


def run_cli(*args, check=True, timeout=300, user=None):
    """Runs pymortem with args (str() of each); returns CompletedProcess.
    check: raise CliError with stderr when the exit status is not 0.
    user: run as this user (setpriv), e.g. 'nobody'."""
    args = [str(a) for a in args]
    core_root = next((CORE_SYSROOTS[a] for a in args if a in CORE_SYSROOTS), None)
    if core_root and "--sysroot" not in args and args:
        # a core of a chroot's process: its files are the chroot's
        args = args[:1] + ["--sysroot", core_root] + args[1:]
    argv = [cli_path()] + args
    if user is not None:
        argv = as_user_argv(user) + argv
    if not os.access(cli_path(), os.X_OK):
        raise CliError("pymortem CLI not built: %s (set PYMORTEM_BUILD or "
                       "PYMORTEM_CLI)" % cli_path())
    # Strict UTF-8 on purpose: pymortem escapes target bytes it prints, so
    # undecodable output from it is a bug this makes visible.
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise CliError("%s exited %d\nstderr:\n%s" % (
            " ".join(argv), proc.returncode, proc.stderr))
    return proc


def cli_json(*args, **kwargs):
    """Runs pymortem with args (add --json yourself) and parses stdout."""
    proc = run_cli(*args, **kwargs)
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise CliError("pymortem %s: stdout is not JSON (%s):\n%s" % (
            " ".join(map(str, args)), e, proc.stdout[:2000]))


def as_user_argv(user):
    """A command prefix that runs the rest as user, without privileges."""
    import pwd
    pw = pwd.getpwnam(user)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                "--clear-groups", "--inh-caps=-all", "--"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--"]
    raise RuntimeError("neither setpriv nor runuser is installed")


# ------------------------------------------------------------ /proc helpers

def proc_state(pid):
    """The state letter of /proc/PID/stat, or None when the process is gone
    (or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state = stat[stat.rindex(")") + 2]
    return None if state in "ZX" else state


def thread_states(pid):
    """{tid: state} for every thread of pid."""
    states = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        states[int(tid)] = stat[stat.rindex(")") + 2]
    return states


def is_stopped(pid):
    """Every thread in group-stop ('T'), not merely traced ('t')."""
    states = thread_states(pid)
    return bool(states) and all(s == "T" for s in states.values())


def wait_stopped(pid, timeout=30, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process %d exited with %s before stopping"
                               % (pid, proc.returncode))
        if is_stopped(pid):
            return
        time.sleep(0.02)
    raise TimeoutError("process %d not stopped after %ss: %s"
                       % (pid, timeout, thread_states(pid)))


def read_maps(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read()


def parse_maps(text):
    """/proc/PID/maps text -> list of dicts with the fields of the regions
    JSON: start, end, size, perms, offset, path (None if anonymous)."""
    regions = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if not fields:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        path = fields[5].strip() if len(fields) > 5 else None
        regions.append({"start": start, "end": end, "size": end - start,
                        "perms": fields[1], "offset": int(fields[2], 16),
                        "dev": fields[3], "inode": int(fields[4]),
                        "path": path or None})
    return regions


FNV_OFFSET = 0xcbf29ce484222325
FNV_PRIME = 0x100000001b3


def fnv1a64(data, h=FNV_OFFSET):
    """FNV-1a 64-bit; h lets a caller digest in pieces."""
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a64_fast(data, h=FNV_OFFSET):
    """fnv1a64, via a small C helper when it can be built (pure Python runs
    at ~10 MB/s, too slow for big regions)."""
    fn = _fnv_c()
    if fn is None:
        return fnv1a64(data, h)
    import ctypes
    return fn(ctypes.c_char_p(bytes(data)), len(data), h)


_FNV_LIB = []


def _fnv_c():
    if _FNV_LIB:
        return _FNV_LIB[0]
    fn = None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        import ctypes
        d = tempfile.mkdtemp(prefix="pm-fnv-")
        src = os.path.join(d, "fnv.c")
        with open(src, "w") as f:
            f.write("#include <stddef.h>\n#include <stdint.h>\n"
                    "uint64_t pm_fnv(const unsigned char *p, size_t n,"
                    " uint64_t h) { for (size_t i = 0; i < n; i++) "
                    "{ h ^= p[i]; h *= 0x100000001b3ULL; } return h; }\n")
        lib = os.path.join(d, "fnv.so")
        if subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src]
                          ).returncode == 0:
            fn = ctypes.CDLL(lib).pm_fnv
            fn.restype = ctypes.c_uint64
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
            # Check the helper against the reference implementation.
            sample = bytes(range(256)) * 3
            if fn(sample, len(sample), FNV_OFFSET) != fnv1a64(sample):
                fn = None
        shutil.rmtree(d, ignore_errors=True)
    _FNV_LIB.append(fn)
    return fn


def in_root(path, sysroot):
    """A path of the host's /proc/PID/maps as a process in sysroot (None:
    the host's root) names it in its own root, as a core's notes do:
    without the chroot's directory."""
    root = sysroot.rstrip("/") + "/" if sysroot else None
    if root and path and path.startswith(root):
        return path[len(root) - 1:]
    return path


def smaps(pid):
    """pid's mappings as /proc/PID/smaps lists them, in address order: each
    {"start", "end", "anonymous" (no path), "Rss", "Swap" (kB), "flags"
    (the set of VmFlags)}."""
    out = []
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            head = parts[0]
            if "-" in head and not head.endswith(":"):
                a, b = head.split("-")
                out.append({"start": int(a, 16), "end": int(b, 16),
                            "anonymous": len(parts) < 6, "Rss": 0,
                            "Swap": 0, "flags": set()})
            elif out and head in ("Rss:", "Swap:"):
                out[-1][head[:-1]] = int(parts[1])
            elif out and head == "VmFlags:":
                out[-1]["flags"] = set(parts[1:])
    return out


def guarded_mappings(pid):
    """[start, end) of pid's mappings with guard regions (smaps VmFlags
    "gu": madvise MADV_GUARD_INSTALL, as glibc 2.43 makes a thread stack's
    guard page inside the stack's mapping)."""
    return [(m["start"], m["end"]) for m in smaps(pid) if "gu" in m["flags"]]


def read_mem(pid, start, end):
    """Bytes [start, end) of pid's memory via /proc/PID/mem (raises OSError
    for pages the kernel will not give, e.g. [vvar]). The pages of a guard
    region, which the kernel refuses (EIO) inside a readable mapping, are
    zeros, as in the kernel's core dumps: they hold nothing."""
    guarded = None
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as f:
        chunks, at = [], start
        while at < end:
            try:
                f.seek(at)
                chunk = f.read(min(end - at, 1 << 24))
            except OSError as e:
                if guarded is None:
                    guarded = guarded_mappings(pid)
                if e.errno != errno.EIO or \
                        not any(a <= at < b for a, b in guarded):
                    raise
                chunk = bytes(min(end, (at // 4096 + 1) * 4096) - at)
            if not chunk:
                raise OSError("short read at 0x%x" % at)
            chunks.append(chunk)
            at += len(chunk)
    return b"".join(chunks)


def mem_digest(pid, start, end):
    """'0x%016x' FNV-1a 64 of pid's bytes [start, end), read independently
    of pymortem through /proc/PID/mem."""
    return "0x%016x" % fnv1a64_fast(read_mem(pid, start, end))


# ------------------------------------------------------------- core files

def elf_core_segments(path):
    """PT_LOAD segments of an ELF64 core: list of dicts start, end, perms
    ('rwx' letters or '-'), filesz (bytes saved), offset in the core file."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
            raise ValueError("%s: not an ELF64 file" % path)
        e_phoff, = struct.unpack_from("<Q", ehdr, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(e_phoff)
        table = f.read(e_phentsize * e_phnum)
    segs = []
    for i in range(e_phnum):
        (p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz,
         _) = struct.unpack_from("<IIQQQQQQ", table, i * e_phentsize)
        if p_type != 1:
            continue
        perms = "".join(c if p_flags & bit else "-" for c, bit in
                        (("r", 4), ("w", 2), ("x", 1)))
        segs.append({"start": p_vaddr, "end": p_vaddr + p_memsz,
                     "perms": perms, "filesz": p_filesz, "offset": p_offset})
    return segs


@contextlib.contextmanager
def core_pattern_core():
    """Makes kernel cores land in the crashing process's cwd as 'core' or
    'core.PID' for the duration, restoring the old pattern after. Raises
    RuntimeError (with the reason) if that cannot be arranged."""
    with open(CORE_PATTERN) as f:
        old = f.read().rstrip("\n")
    plain = not old.startswith("|") and "/" not in old
    if plain and old in ("core", "core.%p"):
        yield old
        return
    try:
        with open(CORE_PATTERN, "w") as f:
            f.write("core")
    except OSError as e:
        raise RuntimeError("kernel cores need core_pattern 'core' (it is %r) "
                           "and it cannot be changed: %s" % (old, e))
    try:
        yield "core"
    finally:
        with open(CORE_PATTERN, "w") as f:
            f.write(old)


# ---------------------------------------------------------------- targets

_LIVE = {}  # pid -> Popen of every started process not yet reaped


_WORKDIRS = set()  # temp dirs of started targets (cores are large: removed
                   # when the session ends)


def _remove_workdir(path):
    """Deletes a target's work dir with its cores, unless PM_KEEP_WORKDIRS
    is set (to look at a failure)."""
    if path in _WORKDIRS and not os.environ.get("PM_KEEP_WORKDIRS"):
        _WORKDIRS.discard(path)
        shutil.rmtree(path, ignore_errors=True)


def _kill_all():
    for pid in list(_LIVE):
        _kill(pid)
    for path in list(_WORKDIRS):
        _remove_workdir(path)


atexit.register(_kill_all)


def _kill(pid):
    proc = _LIVE.pop(pid, None)
    if proc is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def _child_setup():
    resource.setrlimit(resource.RLIMIT_CORE,
                       (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.setsid()  # a terminal's SIGINT/SIGTSTP must not reach it


# Cores of processes run in the chroot, with its root: run_cli gives the
# CLI --sysroot for them.
CORE_SYSROOTS = {}


class Target:
    """A workload process that has written its oracle and stopped itself."""

    def __init__(self, proc, workdir, oracle_path):
        self.proc = proc
        self.pid = proc.pid
        self.workdir = workdir
        self.oracle_path = oracle_path
        self.oracle = None
        self.maps_text = None
        self.stdout_path = os.path.join(workdir, "stdout")
        self.stderr_path = os.path.join(workdir, "stderr")
        self.cores = []
        self.sysroot = None     # the chroot it runs in, when it does

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # The work dir (with its cores) outlives the process: tests analyse
        # cores after the target is gone. It goes at the end of the session.
        self.kill()
        return False

    @property
    def maps(self):
        return parse_maps(self.maps_text)

    @property
    def alive(self):
        return proc_state(self.pid) is not None

    def output(self):
        """The target's stdout and stderr so far (for failure messages)."""
        out = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                with open(p, errors="replace") as f:
                    out.append(f.read()[-4000:])
            except OSError:
                out.append("")
        return "stdout:\n%s\nstderr:\n%s" % tuple(out)

    def ensure_stopped(self, timeout=30):
        """Back in group-stop after a debugger detached. The workloads loop
        on SIGSTOP, so a resume stops them again; SIGSTOP here covers a
        process resumed mid-instruction anyway."""
        deadline = time.monotonic() + timeout
        while not is_stopped(self.pid):
            if not self.alive:
                raise RuntimeError("target %d died" % self.pid)
            if time.monotonic() > deadline:
                raise TimeoutError("target %d not stopped: %s" % (
                    self.pid, thread_states(self.pid)))
            if "t" not in thread_states(self.pid).values():
                os.kill(self.pid, signal.SIGSTOP)
            time.sleep(0.02)

    def gcore(self, name="gcore", host_gdb=False):
        """A core of the stopped process by gdb's gcore; it stays stopped.
        Returns the core's path. A process in the chroot gets the chroot's
        GDB 18 (GDB 13 writes zeros for a whole glibc 2.43 thread stack, whose
        guard page it cannot read: test_chroot checks that case with
        host_gdb)."""
        prefix = os.path.join(self.workdir, name)
        gcore = ["gcore"]
        if self.sysroot and not host_gdb:
            gcore = ["chroot", self.sysroot, "/usr/bin/gcore"]
        proc = subprocess.run(gcore + ["-o", prefix, str(self.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True,
                              errors="backslashreplace", timeout=300)
        path = "%s.%d" % (prefix, self.pid)
        if proc.returncode != 0 or not os.path.exists(path):
            raise RuntimeError("gcore failed (%d):\n%s" % (proc.returncode,
                                                           proc.stdout))
        self.ensure_stopped()
        self.cores.append(path)
        if self.sysroot:
            CORE_SYSROOTS[path] = self.sysroot
        return path

    def kernel_core(self, timeout=120):
        """A kernel core: SIGABRT then SIGCONT; the process dies dumping core
        into its cwd (needs core_pattern 'core', see core_pattern_core()).
        Returns the core's path.

        SIGABRT goes to the main thread itself (tgkill): a process-directed
        one may be taken by another thread after SIGCONT, and meanwhile the
        main thread would run on and change the heap before the dump."""
        _tgkill(self.pid, self.pid, signal.SIGABRT)
        os.kill(self.pid, signal.SIGCONT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("target %d did not die of SIGABRT" % self.pid)
        _LIVE.pop(self.pid, None)
        status = self.proc.returncode
        if status != -signal.SIGABRT:
            raise RuntimeError("target %d ended with %s, not SIGABRT"
                               % (self.pid, status))
        for name in ("core.%d" % self.pid, "core"):
            path = os.path.join(self.workdir, name)
            if os.path.exists(path):
                self.cores.append(path)
                if self.sysroot:
                    CORE_SYSROOTS[path] = self.sysroot
                return path
        with open(CORE_PATTERN) as f:
            pattern = f.read().strip()
        raise RuntimeError("no kernel core in %s (core_pattern %r, files %s)"
                           % (self.workdir, pattern, os.listdir(self.workdir)))

    def kill(self):
        _kill(self.pid)


def _tgkill(tgid, tid, sig):
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_tgkill = 234  # x86-64
    if libc.syscall(SYS_tgkill, tgid, tid, int(sig)) != 0:
        raise OSError(ctypes.get_errno(), "tgkill(%d, %d, %d)" % (tgid, tid, sig))


def load_oracle(path):
    """The oracle JSON, with files it names inlined: debugmallocstats_file
    -> 'debugmallocstats' (text)."""
    with open(path) as f:
        oracle = json.load(f)
    dms = oracle.get("debugmallocstats_file")
    if dms and "debugmallocstats" not in oracle:
        with open(dms, errors="replace") as f:
            oracle["debugmallocstats"] = f.read()
    return oracle


# How the workload's allocators are set up: (interpreter flags, environment).
ALLOCATOR_MODES = {
    "pymalloc": ([], {}),
    "malloc": ([], {"PYTHONMALLOC": "malloc"}),
    "dev": (["-X", "dev"], {}),
}


@contextlib.contextmanager
def start_workload(path, mode, sentinels, *args):
    """py_workload.py under the interpreter at path in mode
    (ALLOCATOR_MODES), with `sentinels` sentinel objects and args, stopped;
    killed and its directory removed after."""
    flags, extra_env = ALLOCATOR_MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    argv = [path] + flags + [PY_WORKLOAD, "--sentinels", sentinels] + list(args)
    with start_stopped(argv, env=env) as t:
        try:
            yield t
        finally:
            t.kill()
            shutil.rmtree(t.workdir, ignore_errors=True)


def start_stopped(argv, env=None, timeout=120):
    """Starts argv in a fresh temp dir with core dumps enabled and
    PM_ORACLE_FILE=<dir>/oracle.json; waits until it has stopped itself
    after writing that file. Returns a Target (use it as a context manager).
    """
    workdir = tempfile.mkdtemp(prefix="pm-target-")
    _WORKDIRS.add(workdir)
    oracle_path = os.path.join(workdir, "oracle.json")
    child_env = dict(os.environ if env is None else env)
    if env is None:
        # meson test sets this for its own children; a workload should run
        # with glibc's defaults unless a test asks otherwise.
        child_env.pop("MALLOC_PERTURB_", None)
    child_env["PM_ORACLE_FILE"] = oracle_path
    with open(os.path.join(workdir, "stdout"), "w") as out, \
            open(os.path.join(workdir, "stderr"), "w") as err:
        proc = subprocess.Popen([str(a) for a in argv], cwd=workdir,
                                env=child_env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err,
                                preexec_fn=_child_setup)
    _LIVE[proc.pid] = proc
    target = Target(proc, workdir, oracle_path)
    if is_chroot_python(str(argv[0])):
        target.sysroot = CHROOT
    try:
        deadline = time.monotonic() + timeout
        while not (os.path.exists(oracle_path) and is_stopped(proc.pid)):
            if proc.poll() is not None:
                raise RuntimeError("%s exited with %s before stopping\n%s" % (
                    argv, proc.returncode, target.output()))
            if time.monotonic() > deadline:
                raise TimeoutError("%s did not stop within %ss\n%s" % (
                    argv, timeout, target.output()))
            time.sleep(0.02)
        target.maps_text = read_maps(proc.pid)
        target.oracle = load_oracle(oracle_path)
        if target.sysroot:
            correct_mremap_drift(target)
    except BaseException:
        target.kill()
        raise
    return target


def mremap_drift(report):
    """The bytes glibc 2.43's mp_.mmapped_mem (mallinfo2's hblkhd) is over
    its mmapped chunks' mappings, as a report's warning gives them (0
    without the warning)."""
    for w in report.get("warnings", []):
        m = re.search(r"mp_\.mmapped_mem \(mallinfo2's hblkhd\) is (\d+) bytes above",
                      w["message"] if isinstance(w, dict) else w)
        if m:
            return int(m.group(1))
    return 0


def correct_mremap_drift(target):
    """glibc 2.43 (the chroot's) counts 16 bytes too many in hblkhd per
    mremap of an mmapped chunk, and no process can see how many of its
    reallocs were mremaps: the oracle's hblkhd is taken less the drift
    pymortem reports, which must be a multiple of 16. That warning's
    figure is itself checked against reallocs whose mappings the process
    knows, in test_chroot.test_chroot_malloc_stats."""
    mi = target.oracle.get("mallinfo2")
    if not isinstance(mi, dict) or "hblkhd" not in mi:
        return
    report = cli_json("malloc-stats", "--json", target.pid)
    drift = mremap_drift(report)
    assert drift % 16 == 0 and drift <= mi["hblkhd"], drift
    mi["hblkhd"] -= drift
    target.oracle["mremap_drift"] = drift


def start_python(python, *args, env=None, timeout=120):
    """start_stopped() of py_workload.py under the given interpreter."""
    return start_stopped([python, PY_WORKLOAD] + [str(a) for a in args],
                         env=env, timeout=timeout)
