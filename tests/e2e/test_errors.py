"""End-to-end checks of pymortem's failures (issue 2): each bad input gives one
clear line on stderr naming what was wrong and a non-zero exit status; no
crash, no traceback, no sanitizer report. A truncated core may instead be
analysed with a warning.

Not covered here: a real 32-bit core. gcc -m32 has no 32-bit libc on this
machine, so no i386 process can be run; test_32bit_core uses a hand-built
ELF32 core header instead (the unit tests cover 32-bit input too).
"""

import collections
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

import pytest

import harness

REPORT = "regions"
BAD_OUTPUT = re.compile(r"Traceback|AddressSanitizer|runtime error:|"
                        r"LeakSanitizer|Segmentation|core dumped|Aborted")


@pytest.fixture(scope="module")
def scratch():
    d = tempfile.mkdtemp(prefix="pm-errors-")
    os.chmod(d, 0o755)  # the permission test runs the CLI as nobody
    yield d
    shutil.rmtree(d, ignore_errors=True)


def check_clean_failure(proc, names, keywords):
    """Non-zero exit (not a signal), exactly one non-empty stderr line that
    names the input and matches one of the keywords."""
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert 0 < proc.returncode < 128, (
        "exit status %d (want a plain failure)\nstderr: %s"
        % (proc.returncode, proc.stderr))
    assert not BAD_OUTPUT.search(proc.stderr + proc.stdout), proc.stderr
    assert len(lines) == 1, "want one stderr line, got:\n" + proc.stderr
    line = lines[0]
    assert any(str(n) in line for n in names), (
        "the message should name %s: %r" % (names, line))
    reason = line
    for n in names:  # a path like ".../empty" must not pass as the reason
        reason = reason.replace(str(n), "")
    assert re.search(keywords, reason, re.I), (
        "the message should say why (%s): %r" % (keywords, line))
    assert proc.stdout.strip() == "", "stdout on failure: %r" % proc.stdout


def dead_pid():
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert harness.proc_state(proc.pid) is None
    return proc.pid


def test_no_such_pid():
    pid = dead_pid()
    proc = harness.run_cli(REPORT, "--json", pid, check=False)
    check_clean_failure(proc, [pid], r"no such process|not found|"
                        r"does not exist|no process")


def test_zombie_pid():
    """A child that exited and that its parent (this test) has not waited
    for: as root ptrace refuses it with EPERM, which must not read as
    "permission denied". The truth: /proc says Z, and its parent is us."""
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while harness.proc_state(child.pid) is not None:
            assert time.monotonic() < deadline, "child did not exit"
            time.sleep(0.01)
        with open("/proc/%d/stat" % child.pid) as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        for report in ("summary", "regions"):
            proc = harness.run_cli(report, child.pid, check=False)
            check_clean_failure(proc, [child.pid], r"exited")
            line = proc.stderr.strip()
            assert "reaped" in line and "(pid %d)" % os.getpid() in line, line
            assert not re.search(r"permission|debugger", line, re.I), line
    finally:
        child.wait()


# A running process with a million objects: `summary` takes about a second
# on it, so a kill right after pymortem has frozen it lands mid-analysis.
BIG_HEAP_TARGET = r"""
import sys, time
objects = [[i, str(i)] for i in range(1_000_000)]
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def tracer_pid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def has_open(holder, path):
    """Whether process `holder` has `path` open (its /proc fd links)."""
    try:
        fds = os.listdir("/proc/%d/fd" % holder)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (holder, fd)) == path:
                return True
        except OSError:
            pass
    return False


def kill_when_analysed(target, analyser, timeout=60):
    """SIGKILLs target once analyser has frozen it (TracerPid) and opened
    its memory (the library's /proc/PID/mem): deterministic, the analysis
    has started. Returns whether analyser was still running then."""
    mem = "/proc/%d/mem" % target.pid
    deadline = time.monotonic() + timeout
    while not (tracer_pid(target.pid) == analyser.pid and
               has_open(analyser.pid, mem)):
        if analyser.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.001)
    running = analyser.poll() is None
    target.kill()
    return running


def start_big_heap():
    python = harness.PYTHONS[-1][1]
    target = subprocess.Popen([python, "-c", BIG_HEAP_TARGET],
                              stdout=subprocess.PIPE, universal_newlines=True,
                              errors="backslashreplace")
    assert target.stdout.readline().strip() == "ready"
    return target


@pytest.mark.parametrize("report", ["summary", "allocations"])
def test_target_killed_mid_analysis(report):
    """The target dies (SIGKILL) while pymortem analyses it: one clear
    error naming the process and that it exited, a non-zero exit, no
    report (stdout empty) and no flood of warnings. The truth that it
    died during the analysis: pymortem had frozen it (TracerPid) and
    opened its memory, and was still running when the kill was sent."""
    target = start_big_heap()
    try:
        cli = subprocess.Popen([harness.cli_path(), report, str(target.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True,
                               errors="backslashreplace")
        running = kill_when_analysed(target, cli)
        out, err = cli.communicate(timeout=120)
        target.wait(timeout=30)
        assert target.returncode == -signal.SIGKILL
        assert running, "pymortem finished before the kill (%d): the heap " \
            "is too small for this test\n%s" % (cli.returncode, err)
        proc = subprocess.CompletedProcess(cli.args, cli.returncode, out, err)
        check_clean_failure(proc, [target.pid], r"exited during the analysis")
    finally:
        target.kill()
        target.wait()


def test_no_such_file(scratch):
    path = os.path.join(scratch, "does-not-exist")
    proc = harness.run_cli(REPORT, path, check=False)
    check_clean_failure(proc, [path], r"no such file|not found|"
                        r"does not exist")


def test_permission_denied_pid():
    """As 'nobody', a root-owned process may not be read."""
    with harness.start_python(harness.PYTHONS[0][1], "--sentinels", "1") as t:
        proc = harness.run_cli(REPORT, t.pid, check=False, user="nobody")
        check_clean_failure(proc, [t.pid], r"permission|not permitted|"
                            r"access")


def test_permission_denied_file(scratch):
    path = os.path.join(scratch, "private-core")
    with open(path, "wb") as f:
        f.write(b"\x7fELF" + b"\0" * 60)
    os.chmod(path, 0o600)
    proc = harness.run_cli(REPORT, path, check=False, user="nobody")
    check_clean_failure(proc, [path], r"permission|not permitted|access")


def test_not_elf(scratch):
    path = os.path.join(scratch, "text-file")
    with open(path, "w") as f:
        f.write("this is not an ELF file\n" * 20)
    proc = harness.run_cli(REPORT, path, check=False)
    check_clean_failure(proc, [path], r"not an? ELF|ELF")


def test_elf_not_core():
    path = "/bin/ls"
    proc = harness.run_cli(REPORT, path, check=False)
    check_clean_failure(proc, [path], r"not a core|no core|executable|shared object")


def test_empty_file(scratch):
    path = os.path.join(scratch, "empty")
    open(path, "w").close()
    proc = harness.run_cli(REPORT, path, check=False)
    check_clean_failure(proc, [path], r"empty|too small|truncated|not an? ELF")


def test_directory(scratch):
    proc = harness.run_cli(REPORT, scratch, check=False)
    check_clean_failure(proc, [scratch], r"directory|not a (regular )?file")


def elf32_core():
    """A minimal ELF32 i386 core: header, one PT_NOTE, one PT_LOAD."""
    ehdr_size, phdr_size = 52, 32
    data_off = ehdr_size + 2 * phdr_size
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 4, 3, 1, 0, ehdr_size, 0, 0,
                               ehdr_size, phdr_size, 2, 0, 0, 0)
    note = struct.pack("<III", 5, 4, 1) + b"CORE\0\0\0\0" + b"\0" * 4
    load = b"\xab" * 4096
    phdrs = struct.pack("<IIIIIIII", 4, data_off, 0, 0, len(note), 0, 0, 4)
    phdrs += struct.pack("<IIIIIIII", 1, data_off + len(note), 0x08048000, 0,
                         len(load), len(load), 6, 4096)
    return ehdr + phdrs + note + load


def test_32bit_core(scratch):
    path = os.path.join(scratch, "core32")
    with open(path, "wb") as f:
        f.write(elf32_core())
    proc = harness.run_cli(REPORT, path, check=False)
    check_clean_failure(proc, [path], r"32-bit|32 bit|ELFCLASS32|ELF class")


# ------------------------------------------------------- truncated cores

Cores = collections.namedtuple("Cores", "gcore kernel maps")


@pytest.fixture(scope="module")
def real_cores(scratch, kernel_cores):
    """A gcore and a kernel core of one process, and its maps."""
    gcore = os.path.join(scratch, "whole-core")
    kernel = os.path.join(scratch, "whole-kernel-core")
    with harness.start_python(harness.PYTHONS[0][1], "--sentinels", "50") as t:
        maps = t.maps
        shutil.move(t.gcore(), gcore)
        shutil.move(t.kernel_core(), kernel)
    return Cores(gcore, kernel, maps)


@pytest.fixture(scope="module")
def real_core(real_cores):
    return real_cores.gcore


def test_whole_core_is_accepted(real_core):
    """The baseline for the truncated copies: the intact core is analysed."""
    harness.cli_json(REPORT, "--json", real_core)


@pytest.mark.parametrize("keep", ["half", "headers-only", "mid-phdrs"])
def test_truncated_core(real_core, scratch, keep):
    """A truncated copy is analysed with a warning (and no crash) or refused
    with one clear line."""
    size = os.path.getsize(real_core)
    with open(real_core, "rb") as f:
        data = f.read()
    e_phoff, = struct.unpack_from("<Q", data, 32)
    cut = {"half": size // 2, "headers-only": 64,
           "mid-phdrs": e_phoff + 56 * 3 + 20}[keep]
    path = os.path.join(scratch, "core-" + keep)
    with open(path, "wb") as f:
        f.write(data[:cut])
    proc = harness.run_cli(REPORT, "--json", path, check=False)
    assert not BAD_OUTPUT.search(proc.stderr + proc.stdout), proc.stderr
    assert proc.returncode >= 0 and proc.returncode < 128, proc.returncode
    if proc.returncode == 0:
        assert re.search(r"truncat|missing|short|not saved|warning",
                         proc.stderr, re.I), (
            "a truncated core was analysed without any warning:\n%s"
            % proc.stderr)
        harness.cli_json(REPORT, "--json", path)  # stdout is valid JSON
    else:
        check_clean_failure(proc, [path], r"truncat|short|too small|"
                            r"corrupt|invalid|beyond|end of file")


def phdr_truth(path, size):
    """What the core's own program headers say is missing when only its
    first `size` bytes are kept: (bytes the headers describe, PT_LOADs that
    promise bytes, [(start, end, missing)] of those that lose some, whether
    a PT_NOTE is cut)."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phnum, = struct.unpack_from("<H", ehdr, 56)
        f.seek(phoff)
        table = f.read(56 * phnum)
    claimed, with_bytes, missing, notes_cut = 0, 0, [], False
    for i in range(phnum):
        p_type, _, off, vaddr, _, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", table, 56 * i)
        claimed = max(claimed, off + filesz) if p_type in (1, 4) else claimed
        present = min(filesz, max(0, size - off))
        if p_type == 4 and present < filesz:
            notes_cut = True
        declared = min(filesz, memsz)
        if p_type != 1 or declared == 0:
            continue
        with_bytes += 1
        if present < declared:
            missing.append((vaddr, vaddr + memsz, declared - present))
    return claimed, with_bytes, missing, notes_cut


def size_text(n):
    """One decimal in the largest binary unit keeping it >= 1 (KiB on)."""
    value, units = n / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return "%.1f %s" % (value, units[0])


def ordered_json(text):
    return json.loads(text, object_pairs_hook=collections.OrderedDict)


TRUNCATED_REPORTS = ["summary", "regions", "malloc-stats", "pymalloc-stats",
                     "allocations", "info", "sizes"]


@pytest.mark.parametrize("kind", ["gcore", "kernel"])
def test_truncated_core_says_so_first(real_cores, scratch, kind):
    """A real core cut in half with truncate(1): every report, text and
    JSON, starts by saying that the core is truncated, with the sizes and
    the segments whose bytes are gone as the core's own program headers
    give them; summary's TOTAL is marked partial; no report blames glibc
    ("never initialised") for what the truncation took."""
    whole = getattr(real_cores, kind)
    path = os.path.join(scratch, "cut-" + kind)
    shutil.copy(whole, path)
    size = os.path.getsize(whole) // 2
    subprocess.run(["truncate", "-s", str(size), path], check=True)
    assert os.path.getsize(path) == size
    claimed, with_bytes, missing, notes_cut = phdr_truth(path, size)
    assert missing and claimed > size, "the cut removed nothing?"
    lost = sum(m for _, _, m in missing)
    first = ("partial: core file truncated: {:,} of {:,} bytes; {} of {} "
             "memory segments ({}, {:,} bytes) are missing from the "
             "core".format(size, claimed, len(missing), with_bytes,
                           size_text(lost), lost))
    figure = "%d segment%s (%s) missing from the core" % (
        len(missing), "" if len(missing) == 1 else "s", size_text(lost))
    for report in TRUNCATED_REPORTS:
        proc = harness.run_cli(report, path, check=False)
        assert proc.returncode == 0, (report, proc.stderr)
        assert not BAD_OUTPUT.search(proc.stderr + proc.stdout), proc.stderr
        lines = proc.stdout.splitlines()
        assert lines and lines[0].startswith(first), (report, lines[:2], first)
        assert ("its notes" in lines[0]) == notes_cut, lines[0]
        assert "never initialised" not in proc.stdout, (report, proc.stdout)
        if report == "summary":
            total = [ln for ln in lines if ln.startswith("TOTAL")]
            assert len(total) == 1 and total[0].endswith(
                "partial: " + figure), total
        doc = ordered_json(harness.run_cli(report, "--json", path).stdout)
        assert list(doc)[0] == "partial_reasons", (report, list(doc)[:3])
        cut = [p for p in doc["partial_reasons"]
               if p["reason"] == "core-truncated"]
        assert len(cut) == 1, doc["partial_reasons"]
        assert cut[0]["missing_bytes"] == lost
        assert cut[0]["figure"] == figure
        assert [(r["start"], r["end"], r["missing"])
                for r in cut[0]["ranges"]] == missing
        assert "partial: " + cut[0]["message"] == lines[0]
        if report == "summary":
            assert doc["total"]["partial"] == figure


def heap_segment_offset(core, maps):
    """Core-file offset where the [heap] segment's bytes start."""
    heap = next(m for m in maps if m["path"] == "[heap]")
    seg = next(s for s in harness.elf_core_segments(core)
               if s["start"] == heap["start"])
    assert seg["filesz"] > 0, seg
    return heap, seg["offset"]


def test_core_without_heap(real_cores, scratch, monkeypatch):
    """A core cut where the heap's bytes start: no allocation can be found.
    allocations and describe must still work, say 0 and "none" (the truth:
    every byte of the heap is past the cut), and, in the sanitizer build,
    with no UBSan report (qsort/memcpy of a NULL array of length 0)."""
    monkeypatch.setenv("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    heap, offset = heap_segment_offset(real_cores.gcore, real_cores.maps)
    path = os.path.join(scratch, "core-without-heap")
    with open(real_cores.gcore, "rb") as f:
        data = f.read(offset)
    with open(path, "wb") as f:
        f.write(data)
    inside = heap["start"] + 4096
    runs = [("allocations",), ("allocations", "--all"),
            ("describe", hex(inside)), ("select", 'kind == "str"'),
            ("summary", "--all")]
    for args in runs:
        for fmt in ([], ["--json"]):
            proc = harness.run_cli(*(list(args) + fmt + [path]), check=False)
            assert proc.returncode == 0, (args, proc.stderr)
            assert not BAD_OUTPUT.search(proc.stderr + proc.stdout), \
                (args, proc.stderr)
            if fmt:
                doc = json.loads(proc.stdout)
                assert doc["partial_reasons"][0]["reason"] == \
                    "core-truncated"
            elif args[0] == "allocations":
                assert "0 of 0 matching allocations" in proc.stdout
            elif args[0] == "describe":
                assert re.search(r"allocation:\s+none", proc.stdout), \
                    proc.stdout


@pytest.fixture(scope="module")
def huge_file_target(scratch):
    """The C workload run from a copy padded to 1 GiB with a hole (sparse,
    no disk used): the ELF file pymortem maps is 1 GiB, the process maps
    only its segments. A gcore of it, and the copy's path."""
    build = harness.build_dir()
    src = os.path.join(build, "tests", "targets", "glibc_workload")
    exe = os.path.join(scratch, "huge_workload")
    shutil.copy(src, exe)
    os.truncate(exe, 1 << 30)
    with harness.start_stopped([exe]) as t:
        core = t.gcore()
        yield exe, core, t.pid


@pytest.mark.parametrize("limit_mib", [512, 1536])
def test_enomem_mapping_a_module_names_memory(huge_file_target, limit_mib):
    """With RLIMIT_AS below the 1 GiB file (512 MiB: no mapping of it fits)
    or between one and two of it (1536 MiB: the first mapping fits, the
    ELF reader's second does not), mmap fails with ENOMEM: every message
    about the file says so (the kernel's strerror, "Cannot allocate
    memory"), none calls it missing or not ELF. From a core, and live (where
    the file is mapped once, so only below 1 GiB)."""
    if harness.sanitizer_build():
        pytest.skip("ASan reserves terabytes of address space: RLIMIT_AS "
                    "cannot be applied to a sanitizer build")
    exe, core, pid = huge_file_target
    limit = limit_mib << 20

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    # Live, pymortem maps the file only once: ENOMEM needs the lower limit.
    for target in (core, pid) if limit_mib < 1024 else (core,):
        proc = subprocess.run([harness.cli_path(), "info", "--json",
                               str(target)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              preexec_fn=limited, timeout=300)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        about = [w["message"] for w in doc["warnings"] if exe in w["message"]]
        module = [m for m in doc["modules"] if m["path"] == exe]
        assert about, (target, doc["warnings"])
        bad = [m for m in about if not re.search(r"allocate memory", m)]
        assert not bad, (target, bad)
        assert not any(re.search(r"not a usable ELF|is missing", m)
                       for m in about), about
        assert module and module[0]["file"] not in ("missing", "not ELF"), \
            module
