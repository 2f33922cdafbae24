"""End-to-end tests of the GDB command layer: real GDB in batch mode on real
processes of every installed CPython, on their cores (gcore and kernel) and
through gdbserver. Every number GDB prints must equal the CLI's for the same
target, and the memory GDB's targets see must equal /proc/PID/mem.

GDB runs a small driver (DRIVER below) that executes each command with
gdb.execute(to_string=True) and records its output or its error, so one GDB
run checks many commands; a few tests use plain `gdb -batch -ex` to check
what a user sees on stderr.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

GDB = shutil.which("gdb")
GDBSERVER = shutil.which("gdbserver")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

# Reports compared between GDB and the CLI when the library provides them.
# (heap command, report name); `digest` has no command, the driver asks the
# session for it directly.
COMPARED = [("heap regions", "regions"), ("heap info", "info"),
            ("heap summary --all", "summary"), ("heap sizes", "sizes"),
            ("heap pymalloc", "pymalloc-stats"),
            ("heap arenas", "malloc-stats")]

DRIVER = r'''
import json
import gdb
import pymortem

def run(command):
    try:
        return {"output": gdb.execute(command, to_string=True)}
    except gdb.error as e:
        return {"error": str(e)}
    except KeyboardInterrupt:
        return {"error": "KeyboardInterrupt"}

def report(name, **args):
    try:
        return {"output": pymortem._session.report(name, **args)}
    except Exception as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}

def truth_digests(digest):
    """/proc/PID/mem digests of the regions of a digest report, read while
    GDB (or gdbserver) holds the process, so nothing can have run since."""
    import sys
    sys.path.insert(0, PM_HARNESS_DIR)
    import harness
    pid = gdb.selected_inferior().pid
    truth = {}
    for r in json.loads(digest["output"])["regions"]:
        try:
            truth["%d-%d" % (r["start"], r["end"])] = harness.mem_digest(
                pid, r["start"], r["end"])
        except OSError as e:
            truth["%d-%d" % (r["start"], r["end"])] = "unreadable: %s" % e
    return truth

results = {}
for item in json.load(open(PM_SPEC)):
    if item[0] == "cmd":
        results[item[1]] = run(item[1])
    else:
        results["report " + item[1]] = report(item[1], format="json")
        live = gdb.selected_inferior().connection.type != "core"
        if item[1] == "digest" and "output" in results["report digest"] \
                and live:
            results["truth digest"] = truth_digests(results["report digest"])
json.dump(results, open(PM_OUT, "w"))
'''


def plugin_path():
    return os.path.join(harness.build_dir(), "gdbplugin", "pymortem-gdb.py")


def binding_path():
    return os.path.join(harness.build_dir(), "gdbplugin", "pymortem",
                        "_pymortem.abi3.so")


def sanitizer_runtime():
    """The ASan runtime the binding links (sanitizer builds), or None."""
    ldd = subprocess.run(["ldd", binding_path()], stdout=subprocess.PIPE,
                         universal_newlines=True, errors="backslashreplace").stdout
    for line in ldd.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


def gdb_env():
    """GDB's environment. GDB 13 hangs at start with the ASan runtime
    preloaded, so a sanitizer build's binding cannot be loaded into GDB:
    those tests are skipped (saying so) and test_binding_standalone runs the
    binding under ASan in a plain Python instead."""
    if sanitizer_runtime():
        pytest.skip("sanitizer build: GDB cannot load an ASan-instrumented "
                    "extension (see test_binding_standalone)")
    return dict(os.environ)


def gdb_batch(args, commands, timeout=300):
    """Runs `gdb -batch` with the plugin loaded and `-ex` commands."""
    argv = [GDB, "-nx", "-q", "-batch", "-ex", "set sysroot /",
            "-ex", "source " + plugin_path()]
    for c in commands:
        argv += ["-ex", c]
    argv += [str(a) for a in args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace", timeout=timeout,
                          env=gdb_env(), stdin=subprocess.DEVNULL)


def gdb_drive(args, items, setup=(), timeout=600):
    """Runs the driver in GDB: items are ("cmd", "heap ...") or ("report",
    name). Returns {key: {"output": text} or {"error": message}}."""
    # A chroot's process: GDB takes the chroot's interpreter and, for its
    # core, the chroot as sysroot (as its user would).
    args = [os.path.join(harness.CHROOT, "usr/bin", os.path.basename(str(a)))
            if harness.is_chroot_python(str(a)) else a for a in args]
    roots = {harness.CORE_SYSROOTS[str(a)] for a in args if str(a) in harness.CORE_SYSROOTS}
    setup = ["set sysroot " + r for r in roots] + list(setup)
    work = tempfile.mkdtemp(prefix="pm-gdbtest-")
    spec = os.path.join(work, "spec.json")
    out = os.path.join(work, "out.json")
    driver = os.path.join(work, "driver.py")
    with open(spec, "w") as f:
        json.dump(items, f)
    with open(driver, "w") as f:
        f.write("PM_SPEC = %r\nPM_OUT = %r\nPM_HARNESS_DIR = %r\n" % (
            spec, out, os.path.dirname(os.path.abspath(harness.__file__)))
            + DRIVER)
    proc = gdb_batch(args, list(setup) + ["source " + driver], timeout)
    try:
        with open(out) as f:
            return json.load(f)
    except OSError:
        raise AssertionError("the GDB driver wrote no results\nstdout:\n%s\n"
                             "stderr:\n%s" % (proc.stdout, proc.stderr))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def library_reports():
    """The reports this build's library provides (asked through the CLI)."""
    text = harness.run_cli("--help", check=False).stdout
    names = []
    in_reports = False
    for line in text.splitlines():
        if line.strip() == "reports:":
            in_reports = True
            continue
        if in_reports:
            if not line.startswith("  "):
                break
            names.append(line.split()[0])
    return names


def compared_commands():
    available = library_reports()
    present = [(c, r) for c, r in COMPARED if r in available]
    missing = [r for c, r in COMPARED if r not in available]
    if missing:
        print("not compared (not in this build): " + ", ".join(missing))
    return present


def cli_result(report, target_arg):
    proc = harness.run_cli(report, "--json", target_arg, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()}
    return {"output": proc.stdout}


def gdb_symbols_agree(gdb_doc, cli_doc):
    """Symbols GDB supplied (source "debugger") are at the addresses the
    library finds itself; after checking that, the source is made equal."""
    symbols = gdb_doc.get("symbols")
    if not isinstance(symbols, dict):
        return 0
    count = 0
    for name, sym in symbols.items():
        if isinstance(sym, dict) and sym.get("source") == "debugger":
            mine = cli_doc["symbols"].get(name)
            assert mine is not None, "GDB found %s, the library did not" % name
            assert sym["address"] == mine["address"], name
            assert sym["size"] == mine["size"], name
            sym["source"] = mine["source"]
            count += 1
    return count


def assert_same_as_cli(gdb_results, target_arg, commands, callback=False):
    """Every GDB --json result equals the CLI's on the same target (or both
    fail with the same library message)."""
    for command, report in commands:
        got = gdb_results[command + " --json"]
        want = cli_result(report, target_arg)
        if "error" in want:
            assert "error" in got, (command, got, want)
            # CLI: "pymortem: error: [TARGET: ]MSG"; GDB: "heap X: MSG"
            assert want["error"].endswith(got["error"].split(": ", 1)[1]), \
                (got, want)
            continue
        assert "output" in got, (command, got)
        gdb_doc = json.loads(got["output"])
        cli_doc = json.loads(want["output"])
        gdb_symbols_agree(gdb_doc, cli_doc)
        if callback:
            # What differs by construction: the kind of source.
            for doc in (gdb_doc, cli_doc):
                if isinstance(doc.get("target"), dict):
                    doc["target"].pop("kind", None)
        assert gdb_doc == cli_doc, "%s differs from `pymortem %s`" % (
            command, report)


def assert_digests_match_memory(gdb_results):
    """The bytes GDB's target sees equal /proc/PID/mem, region by region
    (read in the same GDB session, see DRIVER)."""
    got = gdb_results["report digest"]
    assert "output" in got, got
    truth = gdb_results["truth digest"]
    checked = 0
    for r in json.loads(got["output"])["regions"]:
        want = truth["%d-%d" % (r["start"], r["end"])]
        if "digest" not in r or want.startswith("unreadable"):
            continue  # e.g. [vvar]: the kernel does not give it out either
        assert r["digest"] == want, "region 0x%x-0x%x" % (r["start"], r["end"])
        checked += 1
    assert checked > 10, "too few regions checked: %d" % checked


def assert_same_digest_as_cli(results, core):
    """GDB's view of a core's bytes is the CLI's (both read the core GDB
    has open; the CLI's digest is checked against /proc/PID/mem by
    test_regions)."""
    got = results["report digest"]
    assert "output" in got, got
    assert json.loads(got["output"]) == harness.cli_json("digest", "--json",
                                                         core)


def drive_items(commands):
    items = [("cmd", c + " --json") for c, _ in commands]
    items.append(("report", "digest"))
    return items


# ------------------------------------------------------------------ targets

@pytest.fixture(scope="module", params=harness.PYTHONS,
                ids=[label for label, _ in harness.PYTHONS])
def python_target(request):
    label, python = request.param
    with harness.start_python(python) as target:
        target.label = label
        yield target


@pytest.fixture(scope="module")
def one_target():
    """One interpreter's process, for checks of the GDB layer that do not
    depend on the CPython version (Debian's python3.11 when present)."""
    if not harness.PYTHONS:
        pytest.fail("no CPython 3.8-3.13 installed")
    label, python = harness.PYTHONS[-1]
    with harness.start_python(python) as target:
        target.label = label
        yield target


def test_live_process_matches_cli(python_target):
    t = python_target
    commands = compared_commands()
    results = gdb_drive(["-p", t.pid], drive_items(commands) +
                        [("cmd", "heap --json"),
                         ("cmd", "heap summary --json")])
    t.ensure_stopped()
    assert_same_as_cli(results, t.pid, commands)
    # `heap` alone is `heap summary`.
    assert results["heap --json"] == results["heap summary --json"]
    assert_digests_match_memory(results)
    # The oracle: glibc's own mallinfo2() captured in the process right
    # before it stopped equals what `heap arenas` reads.
    arenas = results.get("heap arenas --json", {})
    if "output" in arenas:
        got = json.loads(arenas["output"])
        want = t.oracle["mallinfo2"]
        assert {k: got[k] for k in want} == want, arenas["output"]
    else:
        print("heap arenas not compared with mallinfo2: %s" % arenas)
    # The oracle: the workload's sentinel classes, counted by the workload,
    # are the counts `heap summary` shows for those types.
    summary = results.get("heap summary --all --json", {})
    if "output" in summary:
        rows = json.loads(summary["output"])["rows"]
        counts = {r["kind"]: r["count"] for r in rows
                  if r["domain"] == "python" and r["detail"] == "-"}
        for name, n in t.oracle["sentinels"].items():
            assert counts.get(name) == n, name
    else:
        print("heap summary not compared with the oracle: %s" % summary)
    # The regions GDB lists are the process's mappings (/proc/PID/maps,
    # captured by the harness when the process stopped).
    regions = json.loads(results["heap regions --json"]["output"])["regions"]
    want = [(m["start"], m["end"], m["perms"]) for m in t.maps]
    assert [(r["start"], r["end"], r["perms"]) for r in regions] == want


def test_gdb_symbols_used(one_target):
    """With debug info loaded in GDB (libc6-dbg), the library takes GDB's
    symbols; `set pymortem debuginfo off` uses exported symbols only, as
    the CLI's --no-debuginfo."""
    t = one_target
    results = gdb_drive(["-p", t.pid], [("cmd", "heap info --json")])
    doc = json.loads(results["heap info --json"]["output"])
    cli = harness.cli_json("info", "--json", t.pid)
    assert gdb_symbols_agree(doc, cli) >= 1, doc["symbols"]
    assert doc == cli
    results = gdb_drive(["-p", t.pid], [("cmd", "heap info --json")],
                        setup=["set pymortem debuginfo off"])
    doc = json.loads(results["heap info --json"]["output"])
    assert gdb_symbols_agree(doc, {}) == 0
    assert doc == harness.cli_json("info", "--json", "--no-debuginfo", t.pid)
    t.ensure_stopped()


def test_gcore_matches_cli(python_target):
    t = python_target
    core = t.gcore("gdbtest")
    commands = compared_commands()
    python = dict(harness.PYTHONS)[t.label]
    results = gdb_drive([python, core], drive_items(commands))
    assert_same_as_cli(results, core, commands)
    info = results["heap info --json"]
    assert "error" not in info, "heap info on a core: %s" % info["error"]
    assert_same_digest_as_cli(results, core)


@pytest.mark.parametrize("python", [p for _, p in harness.PYTHONS],
                         ids=[label for label, _ in harness.PYTHONS])
def test_kernel_core_matches_cli(python, kernel_cores):
    """A core the kernel wrote (SIGABRT) of each interpreter."""
    with harness.start_python(python) as t:
        core = t.kernel_core()
    commands = compared_commands()
    results = gdb_drive([python, core], drive_items(commands))
    assert_same_as_cli(results, core, commands)
    info = results["heap info --json"]
    assert "error" not in info, "heap info on a core: %s" % info["error"]
    assert_same_digest_as_cli(results, core)


def test_gdbserver_callback_matches_cli(python_target):
    if GDBSERVER is None:
        pytest.skip("gdbserver is not installed")
    t = python_target
    python = dict(harness.PYTHONS)[t.label]
    commands = compared_commands()
    with gdbserver(t.pid) as port:
        results = gdb_drive([python], drive_items(commands),
                            setup=["target remote localhost:%d" % port])
    t.ensure_stopped()
    assert_same_as_cli(results, t.pid, commands, callback=True)
    assert_digests_match_memory(results)


def test_remote_maps_both_ways(one_target):
    """Over gdbserver the mappings come from `info proc mappings` (or, when
    that fails, `remote get /proc/PID/maps`): both equal the process's
    /proc/PID/maps (devices and inodes aside, which the first lacks)."""
    if GDBSERVER is None:
        pytest.skip("gdbserver is not installed")
    t = one_target
    code = (
        "inf = gdb.selected_inferior()\n"
        "RESULT['info_proc'] = pymortem.session._maps_from_info_proc(\n"
        "    gdb.execute('info proc mappings', to_string=True))\n"
        "RESULT['remote_get'] = pymortem.session._maps_from_remote_get(inf.pid)\n"
        "RESULT['auxv'] = pymortem.session.debugger_auxv()\n")
    with gdbserver(t.pid) as port:
        result, proc = gdb_python(
            [dict(harness.PYTHONS)[t.label]], code,
            setup=["target remote localhost:%d" % port])
    t.ensure_stopped()
    assert result["remote_get"] == t.maps_text, proc.stderr
    got = harness.parse_maps(result["info_proc"])
    strip = ("dev", "inode")
    assert [{k: v for k, v in m.items() if k not in strip} for m in got] == \
        [{k: v for k, v in m.items() if k not in strip} for m in t.maps]
    with open("/proc/%d/auxv" % t.pid, "rb") as f:
        raw = f.read()
    pairs = [[int.from_bytes(raw[i:i + 8], "little"),
              int.from_bytes(raw[i + 8:i + 16], "little")]
             for i in range(0, len(raw) - 15, 16)]
    pairs = pairs[:[p[0] for p in pairs].index(0) + 1]  # to AT_NULL
    assert result["auxv"] == pairs


def test_native_forced_callback_matches_memory(python_target):
    """`set pymortem access callback` reads through GDB on a native
    inferior too: the same bytes as /proc/PID/mem."""
    t = python_target
    commands = [c for c in compared_commands() if c[1] == "regions"]
    results = gdb_drive(["-p", t.pid], drive_items(commands),
                        setup=["set pymortem access callback"])
    t.ensure_stopped()
    assert_same_as_cli(results, t.pid, commands, callback=True)
    assert_digests_match_memory(results)


class gdbserver:
    """gdbserver attached to pid on a free localhost port."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [GDBSERVER, "--attach", "localhost:%d" % self.port, str(self.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, errors="backslashreplace")
        # It says "Listening on port N" once it accepts a connection.
        for line in self.proc.stdout:
            if "Listening on port" in line:
                break
        else:
            raise RuntimeError("gdbserver did not start: %s"
                               % self.proc.wait())
        return self.port

    def __exit__(self, *exc):
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return False


# ------------------------------------------------------------- bad cases

ALL_COMMANDS = ["heap", "heap summary", "heap summary --by size --top 3",
                "heap summary --by owner --top 5",
                "heap sizes", "heap regions", "heap arenas", "heap pymalloc",
                "heap used --limit 5", "heap free --limit 5",
                "heap all --min-size 1k --limit 5", "heap info",
                "heap describe $sp", "heap select size > 100",
                "heap hexdump $sp 64", "heap referrers $sp",
                "heap referents $sp", "heap path $sp", "heap unreachable",
                "heap outside --limit 3", "heap graph",
                "heap retained --top 3", "heap retained $sp",
                "heap suspects --threshold 5",
                "heap summary --by retainer --top 3"]
STILL_WORKS = "print 6*7"


def assert_gdb_survives(proc, commands):
    """Each command printed output or exactly one error line, no Python
    traceback, and the command after them still ran."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Error occurred in Python" not in proc.stderr, proc.stderr
    assert "= 42" in proc.stdout, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith("heap")]
    for line in errors:
        assert "\n" not in line and len(line) < 400, line
    return errors


def test_no_inferior():
    proc = gdb_batch([], ALL_COMMANDS + [STILL_WORKS])
    errors = assert_gdb_survives(proc, ALL_COMMANDS)
    # Every command refused, each with one line that says why.
    no_process = [e for e in errors if ": no process" in e]
    unavailable = [e for e in errors if "not available in this build" in e]
    assert len(no_process) + len(unavailable) == len(ALL_COMMANDS), \
        proc.stderr
    assert no_process, proc.stderr


def test_bad_arguments():
    bad = ["heap summary --by colour", "heap summary --top", "heap bogus",
           "heap used --limit x", "heap summary --nope", "heap describe",
           "heap describe no_such_symbol_anywhere"]
    proc = gdb_batch([], bad + [STILL_WORKS])
    errors = assert_gdb_survives(proc, bad)
    assert len(errors) == len(bad), proc.stderr
    assert "type|owner|retainer|size|region|allocator" in errors[0]
    assert "needs a value" in errors[1]
    assert 'no subcommand "bogus"' in errors[2]


def test_listing_filters(one_target):
    """heap used|free|all give the library's allocation listing (or, in a
    build without it, the chunk listing) with the filters applied (compared
    with the CLI), and refuse a filter they cannot apply instead of printing
    an unfiltered list."""
    t = one_target
    available = library_reports()
    report = "allocations" if "allocations" in available else "chunks"
    if report not in available:
        pytest.skip("no allocation listing in this build")
    items = [("cmd", "heap used --min-size 1000 --limit 7 --json"),
             ("cmd", "heap free --limit 5 --json"),
             ("cmd", "heap all --min-size 0x100 --json"),
             ("cmd", "heap used --type str --json")]
    results = gdb_drive(["-p", t.pid], items)
    t.ensure_stopped()
    for (cmd, cli_args) in [
            ("heap used --min-size 1000 --limit 7 --json",
             ["--used", "--min-size", "1000", "--limit", "7"]),
            ("heap free --limit 5 --json", ["--free", "--limit", "5"]),
            ("heap all --min-size 0x100 --json",
             ["--all", "--min-size", "256"])]:
        got = json.loads(results[cmd]["output"])
        assert got == harness.cli_json(report, "--json", *cli_args, t.pid)
    used = json.loads(results["heap used --min-size 1000 --limit 7 --json"]
                      ["output"])[report]
    assert 0 < len(used) <= 7
    assert all(c["size"] >= 1000 and c["state"] == "used" for c in used)
    free = json.loads(results["heap free --limit 5 --json"]["output"])
    assert all(c["state"].startswith("free") for c in free[report])
    typed = results["heap used --type str --json"]
    if report == "chunks":
        assert "--type is not available" in typed.get("error", ""), typed
    else:
        strs = json.loads(typed["output"])
        assert strs["matching"] > 0
        assert all(a["kind"] == "str" for a in strs["allocations"])


# ------------------------------------- summary's rows, select's query forms

def pymalloc_allocated_bytes(target):
    """'# bytes in allocated blocks' of the workload's last
    sys._debugmallocstats() (0 when pymalloc is off)."""
    with open(target.oracle_path + ".last.dms") as f:
        m = re.search(r"^# bytes in allocated blocks\s*=\s*([\d,]+)",
                      f.read(), re.M)
    return int(m.group(1).replace(",", "")) if m else 0


def summary_text_parts(text):
    """(data rows, lines after TOTAL) of a summary's text table."""
    lines = text.rstrip("\n").splitlines()
    head = next(i for i, line in enumerate(lines)
                if line.startswith("domain "))
    total = next(i for i, line in enumerate(lines) if line.startswith("TOTAL"))
    return lines[head + 1:total], lines[total + 1:]


@pytest.fixture(scope="module")
def fresh_target():
    """A process no other test has attached to or let run: its heap is
    exactly as its oracle describes it."""
    if not harness.PYTHONS:
        pytest.fail("no CPython 3.8-3.13 installed")
    label, python = harness.PYTHONS[-1]
    with harness.start_python(python) as target:
        target.label = label
        yield target


def test_summary_top_rows(fresh_target):
    """`heap summary` shows the 25 largest rows and a last line adding up
    the others; --top N shows N with the same line; --all (or --top 0)
    every row. The JSON is the CLI's for the same --top; the rows shown
    plus the line make TOTAL, which is the allocators' own in-use bytes
    (mallinfo2 uordblks + hblkhd, pymalloc's allocated blocks), and the
    sentinel classes have the counts the process made."""
    t = fresh_target
    commands = ["heap summary", "heap summary --json", "heap summary --top 5",
                "heap summary --top 5 --json", "heap summary --all",
                "heap summary --all --json", "heap summary --top 0 --json",
                "heap", "heap summary --all --top 3"]
    results = gdb_drive(["-p", t.pid], [("cmd", c) for c in commands])
    t.ensure_stopped()
    every = json.loads(results["heap summary --all --json"]["output"])
    assert every == harness.cli_json("summary", "--json", t.pid)
    assert json.loads(results["heap summary --top 0 --json"]["output"]) == \
        every
    nrows = len(every["rows"])
    assert nrows > 25, nrows
    assert every["rows_not_shown"] == {"rows": 0, "count": 0, "bytes": 0}
    mi = t.oracle["mallinfo2"]
    assert every["total"]["bytes"] == \
        mi["uordblks"] + mi["hblkhd"] + pymalloc_allocated_bytes(t)
    counts = {r["kind"]: r["count"] for r in every["rows"]
              if r["domain"] == "python" and r["detail"] == "-"}
    for name, n in t.oracle["sentinels"].items():
        assert counts.get(name) == n, name
    for command, shown in (("heap summary", 25), ("heap summary --top 5", 5)):
        doc = json.loads(results[command + " --json"]["output"])
        assert doc == harness.cli_json("summary", "--json", "--top", shown,
                                       t.pid)
        assert doc["rows"] == every["rows"][:shown]
        hidden = {"rows": nrows - shown,
                  "count": sum(r["count"] for r in every["rows"][shown:]),
                  "bytes": sum(r["bytes"] for r in every["rows"][shown:])}
        assert doc["rows_not_shown"] == hidden
        assert sum(r["bytes"] for r in doc["rows"]) + hidden["bytes"] == \
            every["total"]["bytes"]
        rows, after = summary_text_parts(results[command]["output"])
        assert len(rows) == shown, command
        assert after[0] == "%d more rows: %s allocations, %s bytes (--all to " \
            "show them)" % (hidden["rows"], format(hidden["count"], ","),
                            format(hidden["bytes"], ",")), command
    rows, after = summary_text_parts(results["heap summary --all"]["output"])
    assert len(rows) == nrows and not any("more row" in a for a in after)
    assert results["heap"] == results["heap summary"]
    assert "not both" in results["heap summary --all --top 3"]["error"]


SENTINEL_QUERY = 'kind == "SlotsSentinel"'
EITHER_QUERY = 'kind == "PlainSentinel" or kind == "SlotsSentinel"'
# (what follows `heap select`, the CLI's options, the query the CLI gets)
SELECT_FORMS = [
    ('kind == "SlotsSentinel" --json', [], SENTINEL_QUERY),
    ("'kind == \"SlotsSentinel\"' --json", [], SENTINEL_QUERY),
    ('"kind == \\"SlotsSentinel\\"" --json', [], SENTINEL_QUERY),
    ('--json kind == "SlotsSentinel"', [], SENTINEL_QUERY),
    ('kind == "SlotsSentinel" --limit 3 --json', ["--limit", "3"],
     SENTINEL_QUERY),
    ("--limit 3 'kind == \"SlotsSentinel\"' --json", ["--limit", "3"],
     SENTINEL_QUERY),
    ('--limit=3 --json -- kind == "SlotsSentinel"', ["--limit", "3"],
     SENTINEL_QUERY),
    (EITHER_QUERY + " --limit 100000 --json", ["--limit", "100000"],
     EITHER_QUERY),
    ("'%s' --json" % EITHER_QUERY, [], EITHER_QUERY),
    ('kind == "--json" --json', [], 'kind == "--json"'),
    ('kind == "it\'s" --json', [], 'kind == "it\'s"'),
]


def test_select_query_forms(one_target):
    """A query as typed (its own double quotes), quoted as a whole ('...'
    or "..."), with options before or after it: each gives exactly the
    CLI's select --json for that query, and the matches are the sentinel
    instances the process made (its oracle's counts)."""
    t = one_target
    made = t.oracle["sentinels"]
    bad = ["heap select 'kind == \"str\"", "heap select --limit 3",
           'heap select kind == "str" --nope']
    results = gdb_drive(["-p", t.pid],
                        [("cmd", "heap select " + f) for f, _, _ in
                         SELECT_FORMS] + [("cmd", b) for b in bad])
    t.ensure_stopped()
    for form, cli_options, query in SELECT_FORMS:
        got = results["heap select " + form]
        assert "output" in got, (form, got)
        doc = json.loads(got["output"])
        assert doc == harness.cli_json("select", "--json", *cli_options,
                                       query, t.pid), form
        assert doc["query"] == query
        kinds = {k for k in ("SlotsSentinel", "PlainSentinel")
                 if '"%s"' % k in query}
        assert doc["matching"] == sum(made[k] for k in kinds), form
        limit = int(cli_options[1]) if cli_options else 100
        assert doc["shown"] == len(doc["allocations"]) == \
            min(limit, doc["matching"])
        assert all(a["kind"] in kinds for a in doc["allocations"])
    errors = [results[b].get("error", "") for b in bad]
    assert "unterminated single quote at column 1" in errors[0], errors
    assert "a query is needed" in errors[1], errors
    assert "unknown option --nope" in errors[2], errors


def gdb_merged(args, commands, setup=(), timeout=300):
    """`gdb -batch` with the plugin and `-ex` commands, stderr merged into
    stdout so that the order of everything GDB printed is kept."""
    argv = [GDB, "-nx", "-q", "-batch", "-ex", "set sysroot /"]
    for c in list(setup) + ["source " + plugin_path()] + list(commands):
        argv += ["-ex", c]
    argv += [str(a) for a in args]
    return subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          errors="backslashreplace", timeout=timeout,
                          env=gdb_env(), stdin=subprocess.DEVNULL).stdout


# (command in GDB, the CLI's report and options for the same text)
QUIET_REPORTS = [("heap summary", ["summary", "--top", "25"]),
                 ("heap sizes", ["sizes"]),
                 ("heap pymalloc", ["pymalloc-stats"]),
                 ("heap arenas", ["malloc-stats"])]


def assert_only_reports(output, cli_texts):
    """Between the markers around each command GDB printed exactly the
    library's text (the CLI's for the same target): no message of GDB's,
    on stdout or stderr, that the plugin's work set off."""
    for k, (command, _) in enumerate(QUIET_REPORTS):
        begin, end = "==%d==\n" % k, "==%d==\n" % (k + 1)
        assert begin in output and end in output, output
        got = output.split(begin, 1)[1].split(end, 1)[0]
        want = cli_texts[command]
        if command == "heap summary":   # the option each front end names
            want = want.replace("(--top 0 to show them)",
                                "(--all to show them)")
        assert got == want, "%s printed more than its report:\n%s" % (
            command, got)


def quiet_commands():
    commands = []
    for k, (command, _) in enumerate(QUIET_REPORTS):
        commands += ["echo ==%d==\\n" % k, command]
    return commands + ["echo ==%d==\\n" % len(QUIET_REPORTS)]


def test_no_gdb_messages_around_reports():
    """A multi-threaded process live, as a core and through gdbserver (the
    plugin then switches threads and asks GDB for mappings and the
    auxiliary vector): each command's output is its report alone."""
    label, python = harness.PYTHONS[-1]
    with harness.start_python(python, "--threads", 3) as t:
        cli_texts = {c: harness.run_cli(*(args + [t.pid])).stdout
                     for c, args in QUIET_REPORTS}
        assert_only_reports(gdb_merged(["-p", t.pid], quiet_commands()),
                            cli_texts)
        t.ensure_stopped()
        core = t.gcore("quiet")
        core_texts = {c: harness.run_cli(*(args + [core])).stdout
                      for c, args in QUIET_REPORTS}
        assert_only_reports(gdb_merged([python, core], quiet_commands()),
                            core_texts)
        if GDBSERVER is None:
            pytest.fail("gdbserver is not installed")
        with gdbserver(t.pid) as port:
            output = gdb_merged([python], quiet_commands(),
                                setup=["target remote localhost:%d" % port])
        t.ensure_stopped()
        assert_only_reports(output, cli_texts)


def demo_sections(output):
    """{command: its output lines} of the demo's `(gdb) COMMAND` sections."""
    sections, current = {}, None
    for line in output.rstrip("\n").splitlines()[1:]:
        if line.startswith("(gdb) "):
            current = sections[line[len("(gdb) "):]] = []
        elif line.startswith("== gdb -p "):     # the next service
            current = None
        elif current is not None and line:
            current.append(line)
    return sections


def test_demo_names_the_leak():
    """examples/demo.sh prints its command line, then each command and its
    report alone (none of GDB's attach messages): the summary's Order row
    counts the requests served; the summary's leak suspects and `heap
    retained` name receipt_cache first, holding every receipt (one per
    request) and 75% of the heap or more; the path of a receipt goes through
    receipt_cache under the request id its text carries."""
    requests, products = 100000, 20000
    env = dict(gdb_env(), PYMORTEM_BUILD=harness.build_dir(),
               REQUESTS=str(requests), PRODUCTS=str(products),
               PYTHON=harness.PYTHONS[-1][1])
    proc = subprocess.run(
        ["bash", os.path.join(harness.SOURCE_ROOT, "examples", "demo.sh")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, errors="backslashreplace", env=env,
        timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("== gdb -p "), proc.stdout
    sections = demo_sections(proc.stdout)
    cache = "sys.modules['__main__'].__dict__['receipt_cache']"

    summary = sections["heap summary --top 12"]
    assert re.fullmatch(r"CPython 3\.\d+\.\d+: \d+ objects recognised, \d+ "
                        r"on free lists, \d+ owned buffers attributed",
                        summary[0]), proc.stdout
    assert summary[1].split() == ["domain", "kind", "detail", "count", "bytes",
                                  "%", "bytes"], proc.stdout
    assert summary[14].startswith("TOTAL"), proc.stdout
    assert re.fullmatch(r"\d+ more rows: [\d,]+ allocations, [\d,]+ bytes "
                        r"\(--all to show them\)", summary[15]), proc.stdout
    orders = [r.split() for r in summary[2:14] if r.split()[:2] == ["python", "Order"]]
    assert orders and orders[0][3] == format(requests, ","), proc.stdout
    suspects = summary[16:]
    assert suspects and suspects[0].startswith(
        "leak suspect: a dict at %s retains " % cache), proc.stdout

    retained = sections["heap retained --top 3"]
    assert retained[0].split() == ["type", "own", "retained", "%", "objects",
                                   "held", "by"], proc.stdout
    first = retained[1].split(None, 5)
    assert first[0] == "dict" and first[5] == cache, proc.stdout
    assert float(first[3]) >= 75, proc.stdout
    assert first[4] == format(requests + 1, ","), proc.stdout   # and itself

    select = sections['heap select kind == "bytes" and size > 1000 --limit 1']
    address, preview = select[1].split()[0], select[1]
    request = re.search(r'b"Receipt (\d+) for ', preview).group(1)
    path = sections["heap path %s" % address]
    assert path == ["%s[%s] -> bytes %s" % (cache, request, address)], proc.stdout

    # The second service, examples/wasteful_service.py: its products' empty
    # tags and extras, their class without __slots__, their parsed strs.
    assert "== gdb -p " in proc.stdout.split("(gdb) heap path")[1], proc.stdout
    waste = sections["heap waste --top 1"]
    assert re.fullmatch(r"waste: \d+ findings; fixing them would save up to .*", waste[0]), \
        proc.stdout
    titles = [l.split(":")[0] for l in waste if re.match(r"\d+\. ", l)]
    for finding in ("duplicate str values", "empty containers", "__slots__ candidates",
                    "big lists of floats", "over-allocated lists"):
        assert any(t.endswith(finding) for t in titles), (finding, titles)
    held = waste[waste.index("  held by (bytes, containers):") + 1].split()
    assert held[2] == str(products) and held[3] in ("Product.tags", "Product.extras"), held
    slots = [l.split() for l in waste if l.split()[:1] == ["Product"]]
    assert slots and slots[0][1] == str(products), slots


C_TARGET = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
	void *keep[100];
	for (int i = 0; i < 100; i++)
		keep[i] = malloc(64 + i * 8);
	const char *path = getenv("PM_ORACLE_FILE");
	FILE *f = fopen(path, "w");
	fprintf(f, "{\"kept\": \"%p\"}\n", (void *)keep);
	fclose(f);
	for (;;)
		raise(SIGSTOP);
}
"""


@pytest.fixture(scope="module")
def c_program():
    work = tempfile.mkdtemp(prefix="pm-gdbtest-c-")
    src = os.path.join(work, "plain.c")
    exe = os.path.join(work, "plain")
    with open(src, "w") as f:
        f.write(C_TARGET)
    subprocess.run(["cc", "-O0", "-g", "-o", exe, src], check=True)
    yield exe
    shutil.rmtree(work, ignore_errors=True)


def test_non_python_program(c_program):
    with harness.start_stopped([c_program]) as t:
        proc = gdb_batch(["-p", t.pid], ALL_COMMANDS + [STILL_WORKS])
        t.ensure_stopped()
        errors = assert_gdb_survives(proc, ALL_COMMANDS)
        # The regions report does not need Python: it works and lists the
        # process's mappings.
        assert not [e for e in errors if e.startswith("heap regions")]
        for m in t.maps:
            assert "0x%x" % m["start"] in proc.stdout
        print("\n".join(errors))
        # Not being a Python process is said: as an error line or in the
        # report (the glibc part of the analysis still applies).
        said = [e for e in errors if "Python" in e] or \
            "not a CPython process" in proc.stdout
        assert said or "pymalloc-stats" not in library_reports(), \
            proc.stdout


def corrupt_heap_in_core(core):
    """Overwrites the saved bytes of the core's writable segments that hold
    the first chunks of the heap with a pattern (a damaged core)."""
    segments = [s for s in harness.elf_core_segments(core)
                if s["perms"].startswith("rw") and s["filesz"] >= 0x10000]
    with open(core, "r+b") as f:
        for s in segments[:4]:
            f.seek(s["offset"] + 0x100)
            f.write(b"\xa5" * 0x2000)


def test_corrupted_core(one_target):
    t = one_target
    core = t.gcore("damaged")
    corrupt_heap_in_core(core)
    python = dict(harness.PYTHONS)[t.label]
    proc = gdb_batch([python, core], ALL_COMMANDS + [STILL_WORKS])
    errors = assert_gdb_survives(proc, ALL_COMMANDS)
    print("\n".join(errors))
    truncated = core + ".truncated"
    with open(core, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(os.path.getsize(core) // 3))
    proc = gdb_batch([python, truncated], ALL_COMMANDS + [STILL_WORKS])
    print("\n".join(assert_gdb_survives(proc, ALL_COMMANDS)))


def test_loader_reports_missing_library(tmp_path):
    """The loader says clearly when the package or binding is missing, and
    GDB goes on."""
    loader = tmp_path / "pymortem-gdb.py"
    shutil.copy(plugin_path(), loader)
    env = gdb_env()
    env.pop("PYMORTEM_GDB_DIR", None)
    run = [GDB, "-nx", "-q", "-batch", "-ex", "source %s" % loader,
           "-ex", STILL_WORKS]
    # The installed loader also looks in its install dir; point it nowhere.
    text = loader.read_text()
    loader.write_text(text.replace(
        os.path.join(harness.build_dir(), "gdbplugin"), str(tmp_path)))
    proc = subprocess.run(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace", env=env)
    if "cannot find the pymortem package" not in proc.stderr:
        # The install dir holds a package (meson install was run).
        assert "pymortem" not in proc.stderr or "cannot" not in proc.stderr
    assert "= 42" in proc.stdout
    # A package without the compiled binding.
    package = tmp_path / "pymortem"
    shutil.copytree(os.path.join(harness.build_dir(), "gdbplugin",
                                 "pymortem"), package,
                    ignore=shutil.ignore_patterns("*.so", "*.p"))
    proc = subprocess.run(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace", env=env)
    assert "pymortem: cannot load the library" in proc.stderr, proc.stderr
    assert "_pymortem.abi3.so" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "= 42" in proc.stdout


# ------------------------------------------------- cache, interrupt, UI

def gdb_python(args, code, setup=(), timeout=300):
    """Runs Python `code` inside GDB (plugin loaded); code stores what it
    found in the dict RESULT, returned here with GDB's CompletedProcess."""
    work = tempfile.mkdtemp(prefix="pm-gdbtest-")
    out = os.path.join(work, "out.json")
    script = os.path.join(work, "script.py")
    with open(script, "w") as f:
        f.write("import json, os, signal, sys, time\nimport gdb\n"
                "import pymortem\nsys.path.insert(0, %r)\nimport harness\n"
                "RESULT = {}\ntry:\n"
                % os.path.dirname(os.path.abspath(harness.__file__)))
        f.write("".join("    " + line + "\n" for line in code.splitlines()))
        f.write("finally:\n    json.dump(RESULT, open(%r, 'w'))\n" % out)
    proc = gdb_batch(args, list(setup) + ["source " + script, STILL_WORKS],
                     timeout)
    try:
        with open(out) as f:
            return json.load(f), proc
    except OSError:
        raise AssertionError("no result\nstdout:\n%s\nstderr:\n%s"
                             % (proc.stdout, proc.stderr))
    finally:
        shutil.rmtree(work, ignore_errors=True)


CACHE_CODE = r'''
session = pymortem._session
first = gdb.execute("heap info --json", to_string=True)
state = session.states[gdb.selected_inferior().num]
target_id = id(state.target)
RESULT["cached_keys"] = len(state.results)
again = gdb.execute("heap info --json", to_string=True)
RESULT["same_text"] = first == again
RESULT["same_target"] = id(session.states[gdb.selected_inferior().num].target) == target_id
gdb.execute("continue")
RESULT["states_after_continue"] = len(session.states)
RESULT["info_after"] = gdb.execute("heap info --json", to_string=True)
RESULT["reopened"] = id(session.states[gdb.selected_inferior().num].target) != target_id
'''


def test_cache_until_inferior_runs(one_target):
    t = one_target
    result, proc = gdb_python(["-p", t.pid], CACHE_CODE)
    t.ensure_stopped()
    assert result["cached_keys"] == 1
    assert result["same_text"] and result["same_target"]
    assert result["states_after_continue"] == 0, proc.stderr
    assert result["reopened"]
    # After running, the numbers are still the CLI's (the process is back
    # in its SIGSTOP loop, its heap unchanged).
    cli = harness.cli_json("info", "--json", t.pid)
    doc = json.loads(result["info_after"])
    gdb_symbols_agree(doc, cli)
    assert doc == cli


INTERRUPT_CODE = r'''
pymortem._session.state()  # opened first: count only the report's reads
reads = [0]
original = pymortem.session.MemoryReader.__call__
def slow_read(self, address, length):
    reads[0] += 1
    if reads[0] == SIGNAL_AT:
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does to GDB
    time.sleep(SLEEP)
    return original(self, address, length)
pymortem.session.MemoryReader.__call__ = slow_read
try:
    pymortem._session.report("digest", format="json")
    RESULT["outcome"] = "finished"
except KeyboardInterrupt:
    RESULT["outcome"] = "KeyboardInterrupt"
RESULT["reads_at_stop"] = reads[0]
pymortem.session.MemoryReader.__call__ = original
RESULT["regions_after"] = gdb.execute("heap regions --json", to_string=True)
RESULT["digest_after"] = pymortem._session.report("digest", format="json")
RESULT["truth"] = {}
for r in json.loads(RESULT["digest_after"])["regions"]:
    try:
        RESULT["truth"]["%d-%d" % (r["start"], r["end"])] = harness.mem_digest(
            gdb.selected_inferior().pid, r["start"], r["end"])
    except OSError:
        RESULT["truth"]["%d-%d" % (r["start"], r["end"])] = "unreadable"
'''


def test_interrupt_leaves_gdb_usable(one_target):
    """SIGINT (Ctrl-C) during a long analysis stops it with GDB's Quit;
    the next commands work and give complete results."""
    t = one_target
    code = "SIGNAL_AT = 15\nSLEEP = 0.1\n" + INTERRUPT_CODE
    result, proc = gdb_python(["-p", t.pid], code,
                              setup=["set pymortem access callback"])
    t.ensure_stopped()
    assert result["outcome"] == "KeyboardInterrupt", (result, proc.stderr)
    # It stopped soon after the signal, not at the end.
    assert result["reads_at_stop"] < 20, result
    # Reads took > 1 s before the signal: the progress line was shown.
    assert "Ctrl-C stops it" in proc.stderr, proc.stderr
    assert "= 42" in proc.stdout
    regions = json.loads(result["regions_after"])["regions"]
    assert [(r["start"], r["end"]) for r in regions] == \
        [(m["start"], m["end"]) for m in t.maps]
    assert_digests_match_memory({"report digest":
                                 {"output": result["digest_after"]},
                                 "truth digest": result["truth"]})


def test_external_sigint_during_report(one_target):
    """A real SIGINT from outside (as a terminal's Ctrl-C) while GDB runs a
    slow analysis."""
    t = one_target
    code = "SIGNAL_AT = -1\nSLEEP = 0.2\n" + INTERRUPT_CODE
    work = tempfile.mkdtemp(prefix="pm-gdbtest-")
    script = os.path.join(work, "s.py")
    out = os.path.join(work, "out.json")
    with open(script, "w") as f:
        f.write("import json, os, signal, sys, time\nimport gdb\n"
                "import pymortem\nsys.path.insert(0, %r)\nimport harness\n"
                % os.path.dirname(os.path.abspath(harness.__file__)) +
                "RESULT = {}\n" + code +
                "json.dump(RESULT, open(%r, 'w'))\n" % out)
    argv = [GDB, "-nx", "-q", "-batch", "-ex", "source " + plugin_path(),
            "-ex", "set pymortem access callback", "-ex", "source " + script,
            "-ex", STILL_WORKS, "-p", str(t.pid)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, errors="backslashreplace",
                            env=gdb_env())
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    stdout, stderr = proc.communicate(timeout=120)
    # The rest (regions, a full digest at full speed) is quick; the slow
    # digest alone would take about 9 s more.
    assert time.monotonic() - started < 5
    t.ensure_stopped()
    with open(out) as f:
        result = json.load(f)
    shutil.rmtree(work, ignore_errors=True)
    assert result["outcome"] == "KeyboardInterrupt", (result, stderr)
    assert "= 42" in stdout, stderr


# A running process with a million objects: `heap summary` takes about a
# second on it, so a kill once the library has opened it lands mid-way.
BIG_HEAP_TARGET = r"""
import time
objects = [[i, str(i)] for i in range(1_000_000)]
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def opened_by(holder, path):
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


def test_target_killed_during_heap_command():
    """The inferior is SIGKILLed while `heap summary` analyses it: GDB says
    "process N exited during the analysis" as the command's error, prints
    no report, and exits non-zero. Deterministic: the kill is sent once the
    library has opened the process's /proc/PID/mem (GDB itself reads
    /proc/PID/task/TID/mem), with GDB still in the command."""
    env = gdb_env()
    python = harness.PYTHONS[-1][1]
    target = subprocess.Popen([python, "-c", BIG_HEAP_TARGET],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        argv = [GDB, "-nx", "-q", "-batch", "-ex", "set sysroot /",
                "-ex", "source " + plugin_path(), "-ex", "heap summary",
                "-p", str(target.pid)]
        gdb = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True,
                               errors="backslashreplace", env=env,
                               stdin=subprocess.DEVNULL)
        mem = "/proc/%d/mem" % target.pid
        deadline = time.monotonic() + 120
        while not opened_by(gdb.pid, mem) and gdb.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.001)
        running = gdb.poll() is None
        target.kill()
        out, err = gdb.communicate(timeout=120)
        assert running, "GDB finished before the kill:\n%s\n%s" % (out, err)
        assert "heap summary: process %d exited during the analysis" \
            % target.pid in err, err
        assert "TOTAL" not in out and "objects recognised" not in out, out
        assert gdb.returncode != 0
    finally:
        target.kill()
        target.wait()


def test_completion_and_help():
    commands = ["complete heap su", "complete heap summary --by r",
                "complete heap summary --t", "complete heap used --",
                "complete heap summary --a", "complete heap --a",
                "complete heap sizes --m",
                'complete heap select kind == "str" --l',
                "complete heap select k", 'complete heap select size > 1 a',
                'complete heap select detail ~ "a',
                "help heap", "help heap summary", "help heap select",
                "help heap sizes"]
    proc = gdb_batch([], commands)
    out = proc.stdout.splitlines()
    assert "heap summary" in out
    assert "heap summary --by region" in out
    assert "heap summary --by retainer" in out
    assert "heap summary --top" in out
    assert "heap summary --all" in out and "heap --all" in out
    assert "heap sizes --min-size" in out
    assert 'heap select kind == "str" --limit' in out
    assert "heap select kind" in out
    assert "heap select size > 1 addr" in out
    assert "heap select size > 1 and" in out
    assert not [line for line in out if line.startswith(
        "heap select detail")], proc.stdout   # inside a string
    assert "This command is not documented" not in proc.stdout
    assert "Usage: heap summary [--by type|owner|retainer|size|region|" \
        "allocator]\n                    [--top N | --all]" in proc.stdout
    assert "here --all means every row" in proc.stdout
    assert "Options may come before or after the query" in proc.stdout
    assert "pymalloc blocks by size class" in proc.stdout
    for option in ("--json", "--limit", "--min-size", "--type"):
        assert "heap used " + option in out, proc.stdout
    for sub in ("summary", "sizes", "regions", "arenas", "pymalloc", "used",
                "free", "all", "describe", "select", "hexdump", "info",
                "referrers", "referents", "path", "unreachable", "outside",
                "graph", "retained", "suspects"):
        assert "heap %s -- " % sub in proc.stdout, sub
    assert 'kind == "str"' in proc.stdout


# ------------------------------------------------ the binding without GDB

BINDING_SCRIPT = r'''
import json, os, sys
sys.path.insert(0, PACKAGE_DIR)
import _pymortem as pm

pid = PID
out = {"reports": [name for name, _ in pm.reports()]}
live = pm.open_pid(pid)
out["live"] = {name: live.report(name, format="json")
               for name in ("regions", "info", "digest")}

mem = open("/proc/%d/mem" % pid, "rb", buffering=0)
def read(address, length):
    mem.seek(address)
    data = mem.read(length)
    if len(data) != length:
        raise OSError("short read")
    return data
maps = open("/proc/%d/maps" % pid).read()
raw = open("/proc/%d/auxv" % pid, "rb").read()
auxv = [(int.from_bytes(raw[i:i + 8], "little"),
         int.from_bytes(raw[i + 8:i + 16], "little"))
        for i in range(0, len(raw) - 15, 16)]
threads = []
for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
    fields = open("/proc/%d/task/%s/syscall" % (pid, tid)).read().split()
    name = open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip()
    threads.append((int(tid), name, int(fields[-1], 16), int(fields[-2], 16),
                    None))
cb = pm.open_callback(read, maps, pid, auxv=auxv, threads=threads)
out["callback"] = {name: cb.report(name, format="json")
                   for name in ("regions", "info", "digest")}

errors = {}
def expect_error(key, fn):
    try:
        fn()
        errors[key] = None
    except pm.Error as e:
        errors[key] = {"code": e.code, "address": e.address, "text": str(e)}
    except Exception as e:
        errors[key] = {"other": "%s: %s" % (type(e).__name__, e)}
expect_error("no_such_pid", lambda: pm.open_pid(2 ** 22 + 1))
expect_error("no_such_report", lambda: live.report("no-such-report"))
expect_error("no_such_core", lambda: pm.open_core("/nonexistent/core"))
def failing_read(address, length):
    raise OSError("nothing readable")
expect_error("unreadable", lambda: pm.open_callback(failing_read, maps, pid)
             .report("digest", format="json"))
live.close()
expect_error("closed", lambda: live.report("regions"))
# A progress callback that raises KeyboardInterrupt stops the report.
def stop(seconds):
    raise KeyboardInterrupt
def slow_read(address, length):
    import time
    time.sleep(0.05)
    return read(address, length)
slow = pm.open_callback(slow_read, maps, pid)
try:
    slow.report("digest", progress=stop)
    errors["progress_interrupt"] = "finished"
except KeyboardInterrupt:
    errors["progress_interrupt"] = "KeyboardInterrupt"
out["errors"] = errors
sys.path.insert(0, HARNESS_DIR)
import harness
truth = {}
for r in json.loads(out["live"]["digest"])["regions"]:
    try:
        truth["%d-%d" % (r["start"], r["end"])] = harness.mem_digest(
            pid, r["start"], r["end"])
    except OSError:
        truth["%d-%d" % (r["start"], r["end"])] = "unreadable"
out["truth"] = truth
json.dump(out, sys.stdout)
'''


def test_binding_standalone(one_target):
    """The binding in a plain /usr/bin/python3 (under ASan in a sanitizer
    build): pid and callback targets give the CLI's results, errors carry
    their code and address, interrupts stop a report."""
    t = one_target
    env = dict(os.environ)
    runtime = sanitizer_runtime()
    if runtime:
        env["LD_PRELOAD"] = runtime
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    script = ("PACKAGE_DIR = %r\nPID = %d\nHARNESS_DIR = %r\n" % (
        os.path.dirname(binding_path()), t.pid,
        os.path.dirname(os.path.abspath(harness.__file__)))) + BINDING_SCRIPT
    proc = subprocess.run(["/usr/bin/python3", "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: AddressSanitizer" not in proc.stderr
    assert "runtime error" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reports"] == library_reports()
    # The process does not run while the script reads it: both targets
    # see /proc/PID/mem's bytes.
    for kind in ("live", "callback"):
        assert_digests_match_memory({"report digest":
                                     {"output": out[kind]["digest"]},
                                     "truth digest": out["truth"]})
    for name in ("regions", "info"):
        cli = harness.cli_json(name, "--json", t.pid)
        assert json.loads(out["live"][name]) == cli, name
        doc = json.loads(out["callback"][name])
        if isinstance(doc.get("target"), dict):
            doc["target"].pop("kind", None)
            cli["target"].pop("kind", None)
        assert doc == cli, name
    errors = out["errors"]
    assert errors["no_such_pid"]["code"] == "not-found"
    assert errors["no_such_report"] is not None and \
        "other" not in errors["no_such_report"]
    # ("unsupported" while the build has no core reader)
    assert errors["no_such_core"]["code"] in ("not-found", "unsupported")
    # Nothing readable: either the open fails or the digest says so per
    # region; when it is an error it names the address.
    unreadable = errors["unreadable"]
    if unreadable is not None:
        assert unreadable.get("address") is not None, unreadable
    assert "closed" in errors["closed"]["text"]
    assert errors["progress_interrupt"] == "KeyboardInterrupt"


KILLED_SCRIPT = r'''
import json, sys
sys.path.insert(0, PACKAGE_DIR)
import _pymortem as pm
out = {}
try:
    pm.open_pid(PID).report("summary")
    out["outcome"] = "report"
except pm.Error as e:
    out.update(outcome="error", code=e.code, text=str(e))
print(json.dumps(out))
'''


def test_binding_target_killed_mid_report():
    """The binding in a plain Python (under ASan in a sanitizer build, where
    GDB cannot run): the stopped target is SIGKILLed once the library has
    opened its /proc/PID/mem; open_pid or the report raises Error with code
    "exited" and the message, never a report."""
    env = dict(os.environ)
    runtime = sanitizer_runtime()
    if runtime:
        env["LD_PRELOAD"] = runtime
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    python = harness.PYTHONS[-1][1]
    target = subprocess.Popen([python, "-c", BIG_HEAP_TARGET],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        os.kill(target.pid, signal.SIGSTOP)
        harness.wait_stopped(target.pid)
        script = "PACKAGE_DIR = %r\nPID = %d\n" % (
            os.path.dirname(binding_path()), target.pid) + KILLED_SCRIPT
        proc = subprocess.Popen(["/usr/bin/python3", "-c", script],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, env=env)
        mem = "/proc/%d/mem" % target.pid
        deadline = time.monotonic() + 120
        while not opened_by(proc.pid, mem) and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.001)
        running = proc.poll() is None
        target.kill()
        stdout, stderr = proc.communicate(timeout=300)
        assert running, "the report ended before the kill:\n" + stderr
        assert proc.returncode == 0, stderr
        assert "AddressSanitizer" not in stderr and \
            "runtime error" not in stderr, stderr
        out = json.loads(stdout)
        assert out["outcome"] == "error" and out["code"] == "exited", out
        assert "process %d exited during the analysis" % target.pid \
            in out["text"], out
    finally:
        target.kill()
        target.wait()


# ------------------------------------------------- loading and installing

@pytest.mark.parametrize("python", [p for _, p in harness.PYTHONS],
                         ids=[label for label, _ in harness.PYTHONS])
def test_binding_loads_in_every_python(python):
    """One build of the stable-ABI binding imports into every CPython 3.8+
    (as into any GDB embedding one), and the package compiles there."""
    if sanitizer_runtime():
        pytest.skip("sanitizer build: the binding needs the ASan runtime "
                    "preloaded (see test_binding_standalone)")
    package = os.path.dirname(binding_path())
    code = ("import sys, glob; sys.path.insert(0, %r)\n"
            "import _pymortem\n"
            "for f in glob.glob(%r): compile(open(f).read(), f, 'exec')\n"
            "print(' '.join(n for n, _ in _pymortem.reports()))\n"
            % (package, os.path.join(package, "*.py")))
    proc = subprocess.run([python, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, errors="backslashreplace")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == library_reports()


def test_installed_plugin_loads(tmp_path, one_target):
    """`meson install` puts the loader, package and binding together; the
    installed loader line works."""
    destdir = tmp_path / "dest"
    proc = subprocess.run(["meson", "install", "-C", harness.build_dir(),
                           "--destdir", str(destdir), "--no-rebuild"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, errors="backslashreplace")
    assert proc.returncode == 0, proc.stdout
    loaders = list(destdir.rglob("pymortem-gdb.py"))
    assert len(loaders) == 1, loaders
    probe = ("python import pymortem, os; "
             "print('loaded-from', os.path.dirname(pymortem.__file__))")
    argv = [GDB, "-nx", "-q", "-batch", "-ex", "source %s" % loaders[0],
            "-ex", probe, "-ex", "heap regions --json",
            "-p", str(one_target.pid)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace", env=gdb_env())
    one_target.ensure_stopped()
    assert "loaded-from %s" % (loaders[0].parent / "pymortem") in proc.stdout
    assert '"regions"' in proc.stdout, proc.stderr


# ------------------------------------------------------- at a terminal

class Terminal:
    """GDB on a pseudo-terminal, driven like a user would."""

    def __init__(self, argv, env):
        import pty
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave,
                                     stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text, timeout=60):
        import select
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r in:\n%s" % (text, self.seen))
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("GDB ended; no %r in:\n%s"
                                         % (text, self.seen))
                self.seen += chunk.decode("utf-8", "replace")
        before, _, self.seen = self.seen.partition(text)
        return before

    def send(self, line):
        os.write(self.master, (line + "\n").encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def test_pager_and_width_at_a_terminal(one_target):
    """At a terminal, a long report goes through GDB's pager (q stops it,
    GDB stays usable), and its lines are cut to GDB's `width` ("...")
    rather than wrapped."""
    t = one_target
    term = Terminal([GDB, "-nx", "-q", "-ex", "source " + plugin_path(),
                     "-ex", "set height 12", "-ex", "set width 60",
                     "-p", str(t.pid)], gdb_env())
    try:
        term.expect("(gdb) ")
        term.send("heap regions")
        page = term.expect("--Type <RET> for more, q to quit")
        lines = [l.rstrip() for l in page.splitlines()
                 if l.strip() and not l.startswith(("heap regions", "\x1b"))]
        assert 3 <= len(lines) <= 12, lines
        assert max(len(l) for l in lines) <= 60, lines
        assert any(l.endswith("...") for l in lines), lines  # cut, not wrapped
        term.send("q")
        term.expect("(gdb) ")
        term.send("print 6*7")
        term.expect("= 42")
        term.send("heap info")
        term.expect("--Type <RET> for more")
        term.send("q")
        term.expect("(gdb) ")
        term.send("detach")
        term.expect("(gdb) ")
        term.send("quit")
        term.proc.wait(timeout=30)
    finally:
        term.close()
        t.ensure_stopped()
