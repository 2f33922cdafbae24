"""End-to-end tests of `pymortem rss` and `pymortem fragmentation` (issue 13,
"Why RSS does not drop") on frozen workloads (tests/targets/py_rss.py).

Truth comes from inside the same process, after pymortem has analysed it:
the workload serves commands after its snapshot, so a test can make it call
malloc_trim(0) and measure the drop of Rss in its smaps, or free the objects
pymortem named as pinning pymalloc arenas and count the arenas with
sys._debugmallocstats(). The other oracles are the kernel's own smaps, and
mallinfo2() and sys._debugmallocstats() taken right before the stop."""
import json
import os
import re
import shutil
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_rss.py")
DEBIAN_PYTHON = "/usr/bin/python3"
PAGE = os.sysconf("SC_PAGE_SIZE")


def interpreters():
    """Debian's python3 (glibc 2.36's own build) and every pyenv CPython."""
    found = []
    if os.access(DEBIAN_PYTHON, os.X_OK):
        # labelled as the harness labels it, for the coverage summary
        real = os.path.basename(os.path.realpath(DEBIAN_PYTHON))
        found.append((real[len("python"):] + "-debian" if real.startswith("python3.")
                      else "debian", DEBIAN_PYTHON))
    found += [(label, path) for label, path in harness.PYTHONS
              if path.startswith("/root/.pyenv/")]
    return found


PYTHONS = interpreters()
IDS = [label for label, _ in PYTHONS]


def start(python, *args):
    return harness.start_stopped([python, WORKLOAD] + [str(a) for a in args])


def writable_smaps(pid):
    """Rss and Swap summed over pid's writable mappings, from its smaps."""
    rss = swap = 0
    writable = False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):
                writable = fields[1][1] == "w"
            elif writable and fields[0] == "Rss:":
                rss += int(fields[1]) * 1024
            elif writable and fields[0] == "Swap:":
                swap += int(fields[1]) * 1024
    return rss, swap


def command(target, text):
    """Sends one command to the stopped workload, resumes it, returns its
    answer once it has stopped again."""
    reply = os.open(os.path.join(target.workdir, "reply"), os.O_RDONLY)
    try:
        with open(os.path.join(target.workdir, "command"), "wb") as f:
            f.write(text.encode())
        os.kill(target.pid, signal.SIGCONT)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = os.read(reply, 4096)
            assert chunk, "the workload closed its reply FIFO"
            answer += chunk
    finally:
        os.close(reply)
    harness.wait_stopped(target.pid)
    return answer.decode().strip()


def dms_figure(text, name):
    m = re.search(r"^# %s\s*=\s*([\d,]+)" % re.escape(name), text, re.M)
    assert m, "no '%s' in sys._debugmallocstats():\n%s" % (name, text[-2000:])
    return int(m.group(1).replace(",", ""))


# ----------------------------------------------------------- malloc_trim(0)

SCENARIOS = {
    "main-arena": ("--heap", 40),
    "3-thread-arenas": ("--heap", 40, "--threads", 3),
    # fastbin chunks only malloc_consolidate() merges into whole pages
    "fastbins": ("--heap", 10, "--fastbins", 20),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("python", [p for _, p in PYTHONS], ids=IDS)
def test_malloc_trim_prediction(python, scenario):
    """The predicted malloc_trim(0) return equals the drop of Rss that
    calling it in the frozen process gives, within a page per arena."""
    args = SCENARIOS[scenario]
    threads = args[args.index("--threads") + 1] if "--threads" in args else 0
    with start(python, *args) as t:
        doc = harness.cli_json("fragmentation", "--json", t.pid)
        before = writable_smaps(t.pid)[0]
        assert command(t, "trim") == "1"
        after = writable_smaps(t.pid)[0]
        arenas = doc["glibc"]["arenas"]
        if scenario == "fastbins":
            assert len(arenas) == 2     # the parked thread's arena
            assert sum(a["free"]["fastbin"]["bytes"] for a in arenas) > 10 << 20
        else:
            assert len(arenas) == threads + 1
        predicted = doc["malloc_trim_returns"]
        measured = before - after
        print("%s %s: malloc_trim(0) predicted %d, measured %d (%.4f)"
              % (python, scenario, predicted, measured, predicted / measured))
        assert predicted > 10 << 20, doc["glibc"]
        assert abs(predicted - measured) <= PAGE * len(arenas), (
            "predicted %d, measured %d" % (predicted, measured))
        assert predicted == sum(a["malloc_trim_returns"] for a in arenas)
        for a in arenas:
            if not a["main"]:
                assert a["systrim"]["bytes"] == 0 and a["systrim_note"]
        if threads:
            assert doc["glibc"]["thread_arenas"]["count"] == threads
            assert any("MALLOC_ARENA_MAX" in line for line in doc["advice"])
        assert any("malloc_trim(0) would return" in line for line in doc["advice"])


# ---------------------------------------------------------- pinned arenas

def pinning_objects(doc):
    objects = set()
    for arena in doc["pymalloc"]["pinned"]["list"]:
        for block in arena["blocks"]:
            assert block["object"], "a pinning block without its object: %s" % block
            objects.add(block["object"])
    return objects


@pytest.mark.parametrize("python", [p for _, p in PYTHONS], ids=IDS)
def test_pinned_arenas(python):
    """Freeing the objects pymortem names as pinning frees as many pymalloc
    arenas as it predicts (sys._debugmallocstats() before and after)."""
    with start(python, "--pinned", 12) as t:
        doc = harness.cli_json("fragmentation", "--json", t.pid)
        pinned = doc["pymalloc"]["pinned"]
        assert pinned["arenas"] >= 10, pinned
        objects = pinning_objects(doc)
        # pymortem names the workload's own pins, nothing else.
        assert objects <= set(t.oracle["pins"])
        assert len(objects) == pinned["blocks"]
        before = dms_figure(t.oracle["debugmallocstats"], "arenas allocated current")
        dropped = command(t, "free " + " ".join(str(o) for o in sorted(objects)))
        assert int(dropped) == len(objects)
        with open(os.path.join(t.workdir, "after.dms")) as f:
            after = dms_figure(f.read(), "arenas allocated current")
        print("%s: %d pinned arenas, predicted %d freed, measured %d"
              % (python, pinned["arenas"], pinned["arenas_freed_if_released"],
                 before - after))
        assert before - after == pinned["arenas_freed_if_released"]
        # per arena: its pools are all of it; the arena count is pymalloc's
        arenas = doc["pymalloc"]["arena_list"]
        assert len(arenas) == before
        per_arena = doc["pymalloc"]["arena_size"] // doc["pymalloc"]["pool_size"]
        for a in arenas:
            pools = a["used_pools"] + a["empty_pools"] + a["never_used_pools"]
            assert pools in (per_arena, per_arena - 1), a
        assert sum(a["pinned"] for a in arenas) == pinned["arenas"]
        assert any("are kept by" in line for line in doc["advice"])


# ------------------------------------------------------------------ rss

def assert_parts_add_up(doc):
    total = doc["total"]
    parts = doc["parts"].values()
    for key in ("bytes", "resident", "swapped"):
        values = [p["value"][key] for p in parts]
        assert all(0 <= v <= total["bytes"] for v in values), (key, values)
        assert sum(values) == total[key], key
    assert doc["parts_add_up"]
    for region in doc["regions"]:
        for key, index in (("bytes", 0), ("resident", 1), ("swapped", 2)):
            got = sum(v[key] for v in region["parts"].values())
            assert got == region["total"][key], (region, key)


def final_mallinfo2(target):
    """The mallinfo2() the workload took as its last act, read from its
    memory."""
    import struct
    address, size = target.oracle["mallinfo2_final"]
    data = harness.read_mem(target.pid, address, address + size)
    fields = target.oracle["mallinfo2_fields"]
    return dict(zip(fields, struct.unpack("<%dQ" % len(fields), data)))


def assert_allocators_match_oracle(doc, mi, dms):
    parts = {k: v["value"]["bytes"] for k, v in doc["parts"].items()}
    glibc_free = sum(parts[k] for k in ("glibc_free_fastbin", "glibc_free_unsorted",
                                        "glibc_free_small", "glibc_free_large",
                                        "glibc_free_top"))
    assert glibc_free == mi["fordblks"]
    assert parts["glibc_free_fastbin"] == mi["fsmblks"]
    assert parts["pymalloc_free_blocks"] == dms_figure(dms, "bytes in available blocks")
    unused = re.search(r"^\d[\d,]* unused pools \* \d+ bytes\s*=\s*([\d,]+)", dms, re.M)
    assert unused, dms[-2000:]
    assert (parts["pymalloc_empty_pools"] + parts["pymalloc_never_used"] ==
            int(unused.group(1).replace(",", "")))
    assert parts["pool_headers"] == dms_figure(dms, "bytes lost to pool headers")
    assert parts["alignment"] == (dms_figure(dms, "bytes lost to quantization") +
                                  dms_figure(dms, "bytes lost to arena alignment"))


@pytest.mark.parametrize("python", [p for _, p in PYTHONS], ids=IDS)
def test_rss_live(python):
    """Live: the total is smaps' Rss + Swap over the writable mappings; the
    parts add up, none negative; the allocator parts are mallinfo2's and
    _debugmallocstats' figures."""
    with start(python, "--heap", 20, "--threads", 2, "--pinned", 3) as t:
        doc = harness.cli_json("rss", "--json", t.pid)
        rss, swap = writable_smaps(t.pid)
        assert doc["residency_source"] == "pagemap"
        assert doc["total"]["resident"] == rss
        assert doc["total"]["swapped"] == swap
        assert doc["smaps"] == {"rss": rss, "swap": swap}
        assert_parts_add_up(doc)
        with open(t.oracle_path + ".last.dms") as f:
            dms = f.read()
        assert_allocators_match_oracle(doc, final_mallinfo2(t), dms)
        # the workload's objects are python objects, its free heap is glibc's
        assert doc["parts"]["python"]["value"]["resident"] > 1 << 20
        assert doc["parts"]["glibc_free_unsorted"]["value"]["bytes"] + \
            doc["parts"]["glibc_free_large"]["value"]["bytes"] > 10 << 20
        text = harness.run_cli("rss", t.pid).stdout
        assert "the parts add up to the whole" in text


# ----------------------------------------------------------------- cores

def non_resident_figures(frag, rss):
    """The figures that do not depend on which pages are resident."""
    g = frag["glibc"]
    arenas = [(a["address"], a["mapped"], a["in_use"], a["top_size"],
               a["madvise_chunks"], a["madvise"]["bytes"], a["systrim"]["bytes"],
               tuple(a["free"][c]["bytes"] for c in sorted(a["free"])))
              for a in g["arenas"]]
    p = frag["pymalloc"]["pinned"]
    pinned = (p["arenas"], p["blocks"], p["arenas_freed_if_released"],
              [[b["address"] for b in a["blocks"]] for a in p["list"]])
    parts = {k: v["value"]["bytes"] for k, v in rss["parts"].items()}
    regions = [(r["start"], r["end"], r["total"]["bytes"],
                {k: v["bytes"] for k, v in r["parts"].items()})
               for r in rss["regions"]]
    return {"trim_range": g["malloc_trim_range_bytes"], "arenas": arenas,
            "pinned": pinned, "parts": parts, "regions": regions,
            "mmapped": frag["glibc"]["mmapped_chunks"]["value"]["bytes"]}


@pytest.mark.parametrize("python", [p for _, p in PYTHONS][:1] +
                         [p for _, p in PYTHONS][-1:], ids=(IDS[:1] + IDS[-1:]))
def test_cores_give_the_same_figures(python):
    """gcore and kernel cores of the frozen process give the live figures
    that do not depend on residency; their resident bytes are what the
    core holds."""
    with harness.core_pattern_core(), start(python, "--heap", 20, "--threads", 2,
                                            "--pinned", 3) as t:
        live = non_resident_figures(harness.cli_json("fragmentation", "--json", t.pid),
                                    harness.cli_json("rss", "--json", t.pid))
        for kind in ("gcore", "kernel"):
            core = t.gcore() if kind == "gcore" else t.kernel_core()
            frag = harness.cli_json("fragmentation", "--json", core)
            rss = harness.cli_json("rss", "--json", core)
            assert frag["residency_source"] == "core" == rss["residency_source"]
            got = non_resident_figures(frag, rss)
            for key in live:
                assert got[key] == live[key], "%s core: %s differs" % (kind, key)
            assert_parts_add_up(rss)
            # gcore and the kernel save every writable page: all "resident"
            assert rss["total"]["resident"] == rss["total"]["bytes"]
            assert frag["malloc_trim_returns"] == frag["glibc"]["malloc_trim_range_bytes"]


# ------------------------------------------------------------ bad input

def test_bad_input_gives_one_error_line(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\0" * 60)
    for report in ("rss", "fragmentation"):
        for target in (junk, tmp_path / "missing", "999999999"):
            proc = harness.run_cli(report, target, check=False)
            assert proc.returncode != 0
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("pymortem: error: "), \
                proc.stderr


def test_other_allocator_is_said_first():
    """Under jemalloc glibc's figures are absent and the report says why
    before anything else."""
    jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    if not os.path.exists(jemalloc):
        pytest.skip("libjemalloc2 not installed")
    env = dict(os.environ, LD_PRELOAD=jemalloc)
    with harness.start_stopped([DEBIAN_PYTHON, WORKLOAD, "--pinned", 2], env=env) as t:
        frag = harness.cli_json("fragmentation", "--json", t.pid)
        assert frag["malloc_trim_returns"] is None
        assert "jemalloc" in frag["other_allocator"]
        assert frag["partial_reasons"][0]["reason"] == "other-allocator"
        rss = harness.cli_json("rss", "--json", t.pid)
        assert_parts_add_up(rss)
        text = harness.run_cli("rss", t.pid).stdout
        assert text.startswith("partial: ")


def test_c_process_without_python():
    """A C process: glibc figures, no pymalloc, the parts still add up."""
    path = os.path.join(harness.build_dir(), "tests", "targets", "glibc_workload")
    with harness.start_stopped([path, "--threads", "2"]) as t:
        frag = harness.cli_json("fragmentation", "--json", t.pid)
        assert frag["pymalloc"] is None
        assert len(frag["glibc"]["arenas"]) == 3
        rss = harness.cli_json("rss", "--json", t.pid)
        assert_parts_add_up(rss)
        assert rss["parts"]["python"]["value"]["bytes"] == 0
        glibc_free = sum(rss["parts"][k]["value"]["bytes"] for k in (
            "glibc_free_fastbin", "glibc_free_unsorted", "glibc_free_small",
            "glibc_free_large", "glibc_free_top"))
        assert glibc_free == t.oracle["mallinfo2"]["fordblks"]  # C: no later change


# ------------------------------------------------------------------- GDB

def test_gdb_commands_match_cli():
    """`heap rss --json` and `heap fragmentation --json` in GDB attached to
    the process give the CLI's documents."""
    import test_gdb
    with start(DEBIAN_PYTHON, "--heap", 10, "--threads", 1, "--pinned", 2) as t:
        results = test_gdb.gdb_drive(["-p", t.pid], [
            ("cmd", "heap rss --json"), ("cmd", "heap fragmentation --json"),
            ("cmd", "help heap fragmentation")])
        t.ensure_stopped()
        for name in ("rss", "fragmentation"):
            got = results["heap %s --json" % name]
            assert "output" in got, got
            want = harness.cli_json(name, "--json", t.pid)
            assert json.loads(got["output"]) == want, name
        assert "malloc_trim(0)" in results["help heap fragmentation"]["output"]
        # Memory read through GDB (a remote target's way): no residency,
        # said first; the figures that need none are the same.
        results = test_gdb.gdb_drive(["-p", t.pid], [
            ("cmd", "heap rss --json"), ("cmd", "heap fragmentation --json")],
            setup=["set pymortem access callback"])
        t.ensure_stopped()
        rss = json.loads(results["heap rss --json"]["output"])
        frag = json.loads(results["heap fragmentation --json"]["output"])
        for doc in (rss, frag):
            assert doc["residency_source"] == "none"
            assert doc["partial_reasons"][0]["reason"] == "residency-unknown"
        assert rss["total"]["resident"] is None and rss["parts_add_up"]
        assert frag["malloc_trim_returns"] is None
        live = harness.cli_json("fragmentation", "--json", t.pid)
        assert (frag["glibc"]["malloc_trim_range_bytes"] ==
                live["glibc"]["malloc_trim_range_bytes"])


# ------------------------------------------------------- without root

def test_unprivileged_user(monkeypatch):
    """Run as another user (no CAP_SYS_ADMIN: pagemap hides page frame
    numbers, so the kernel's zero pages are told from resident ones by
    smaps): the total is still smaps', the prediction still the drop."""
    import pwd
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    mkdtemp = harness.tempfile.mkdtemp

    def shared_mkdtemp(*args, **kwargs):
        path = mkdtemp(*args, **kwargs)
        os.chmod(path, 0o777)      # the workload, as nobody, writes there
        return path

    monkeypatch.setattr(harness.tempfile, "mkdtemp", shared_mkdtemp)
    argv = harness.as_user_argv("nobody") + [DEBIAN_PYTHON, WORKLOAD, "--heap", 20,
                                             "--threads", 1, "--pinned", 2]
    with harness.start_stopped(argv) as t:
        rss = harness.cli_json("rss", "--json", t.pid, user="nobody")
        assert rss["residency_source"] == "pagemap"
        assert rss["total"]["resident"] == writable_smaps(t.pid)[0]
        assert_parts_add_up(rss)
        doc = harness.cli_json("fragmentation", "--json", t.pid, user="nobody")
        before = writable_smaps(t.pid)[0]
        assert command(t, "trim") == "1"
        measured = before - writable_smaps(t.pid)[0]
        assert abs(doc["malloc_trim_returns"] - measured) <= PAGE * len(doc["glibc"]["arenas"])
        assert measured > 10 << 20


# --------------------------------------------- newer glibc and CPython

CHROOT = os.environ.get("PYMORTEM_CHROOT", "/var/cache/pymortem/sid")
CHROOT_PYTHONS = ["python3.13", "python3.14"]


@pytest.mark.parametrize("name", CHROOT_PYTHONS)
def test_chroot_glibc_and_cpython(name):
    """Debian unstable's glibc (2.43: no fastbins) and CPython in the
    chroot tests/setup-debian.sh builds: the malloc_trim(0) prediction and
    the pinned arenas, measured in the process as above."""
    python = "/usr/bin/" + name
    if not os.access(CHROOT + python, os.X_OK):
        pytest.skip("%s not in %s (tests/setup-debian.sh builds it)" % (python, CHROOT))
    if not os.path.exists(CHROOT + "/proc/self"):
        pytest.skip("%s/proc is not mounted (tests/setup-debian.sh mounts it)" % CHROOT)
    unshared = harness.chroot_unshared()
    if unshared:
        pytest.fail(unshared)
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    with harness.start_stopped([chroot, CHROOT, python, WORKLOAD, "--heap", 30,
                                "--threads", 2, "--pinned", 6]) as t:
        doc = harness.cli_json("fragmentation", "--json", t.pid)
        rss = harness.cli_json("rss", "--json", t.pid)
        assert rss["total"]["resident"] == writable_smaps(t.pid)[0]
        assert_parts_add_up(rss)
        before = writable_smaps(t.pid)[0]
        assert command(t, "trim") == "1"
        measured = before - writable_smaps(t.pid)[0]
        print("%s (glibc %s): malloc_trim(0) predicted %d, measured %d"
              % (name, doc["glibc"]["version"], doc["malloc_trim_returns"], measured))
        assert measured > 10 << 20
        assert abs(doc["malloc_trim_returns"] - measured) <= PAGE * len(doc["glibc"]["arenas"])
        pinned = doc["pymalloc"]["pinned"]
        objects = pinning_objects(doc)
        assert pinned["arenas"] >= 5 and objects <= set(t.oracle["pins"])
        with open(t.oracle_path + ".last.dms") as f:
            arenas_before = dms_figure(f.read(), "arenas allocated current")
        assert int(command(t, "free " + " ".join(map(str, sorted(objects))))) == len(objects)
        with open(os.path.join(t.workdir, "after.dms")) as f:
            arenas_after = dms_figure(f.read(), "arenas allocated current")
        assert arenas_before - arenas_after == pinned["arenas_freed_if_released"]
