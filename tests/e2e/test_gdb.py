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
            ("heap summary", "summary"), ("heap sizes", "sizes"),
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

results = {}
for item in json.load(open(PM_SPEC)):
    if item[0] == "cmd":
        results[item[1]] = run(item[1])
    else:
        results["report " + item[1]] = report(item[1], format="json")
json.dump(results, open(PM_OUT, "w"))
'''


def plugin_path():
    return os.path.join(harness.build_dir(), "gdbplugin", "pymortem-gdb.py")


def gdb_env():
    """GDB's environment; a sanitizer build of the binding needs its runtime
    preloaded into GDB."""
    env = dict(os.environ)
    so = os.path.join(harness.build_dir(), "gdbplugin", "pymortem",
                      "_pymortem.abi3.so")
    ldd = subprocess.run(["ldd", so], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    for line in ldd.splitlines():
        if "libasan" in line and "=>" in line:
            env["LD_PRELOAD"] = line.split("=>")[1].split()[0]
            env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


def gdb_batch(args, commands, timeout=300):
    """Runs `gdb -batch` with the plugin loaded and `-ex` commands."""
    argv = [GDB, "-nx", "-q", "-batch", "-ex", "set sysroot /",
            "-ex", "source " + plugin_path()]
    for c in commands:
        argv += ["-ex", c]
    argv += [str(a) for a in args]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout,
                          env=gdb_env(), stdin=subprocess.DEVNULL)


def gdb_drive(args, items, setup=(), timeout=600):
    """Runs the driver in GDB: items are ("cmd", "heap ...") or ("report",
    name). Returns {key: {"output": text} or {"error": message}}."""
    work = tempfile.mkdtemp(prefix="pm-gdbtest-")
    spec = os.path.join(work, "spec.json")
    out = os.path.join(work, "out.json")
    driver = os.path.join(work, "driver.py")
    with open(spec, "w") as f:
        json.dump(items, f)
    with open(driver, "w") as f:
        f.write("PM_SPEC = %r\nPM_OUT = %r\n" % (spec, out) + DRIVER)
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
        if callback:
            # What differs by construction: the kind of source.
            for doc in (gdb_doc, cli_doc):
                if isinstance(doc.get("target"), dict):
                    doc["target"].pop("kind", None)
        assert gdb_doc == cli_doc, "%s differs from `pymortem %s`" % (
            command, report)


def assert_digests_match_memory(gdb_results, pid):
    """The bytes GDB's target sees equal /proc/PID/mem, region by region."""
    got = gdb_results["report digest"]
    assert "output" in got, got
    regions = json.loads(got["output"])["regions"]
    checked = 0
    for r in regions:
        if "digest" not in r:
            continue
        try:
            truth = harness.mem_digest(pid, r["start"], r["end"])
        except OSError:
            continue  # e.g. [vvar]: the kernel does not give it out either
        assert r["digest"] == truth, "region 0x%x-0x%x" % (r["start"], r["end"])
        checked += 1
    assert checked > 10, "too few regions checked: %d" % checked


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


def test_live_process_matches_cli(python_target):
    t = python_target
    commands = compared_commands()
    results = gdb_drive(["-p", t.pid], drive_items(commands))
    t.ensure_stopped()
    assert_same_as_cli(results, t.pid, commands)
    assert_digests_match_memory(results, t.pid)
    # The regions GDB lists are the process's mappings (/proc/PID/maps,
    # captured by the harness when the process stopped).
    regions = json.loads(results["heap regions --json"]["output"])["regions"]
    want = [(m["start"], m["end"], m["perms"]) for m in t.maps]
    assert [(r["start"], r["end"], r["perms"]) for r in regions] == want


def test_gcore_matches_cli(python_target):
    t = python_target
    core = t.gcore("gdbtest")
    commands = compared_commands()
    python = dict(harness.PYTHONS)[t.label]
    results = gdb_drive([python, core], drive_items(commands))
    assert_same_as_cli(results, core, commands)
    info = results["heap info --json"]
    if "error" in info:
        pytest.skip("cores not supported by this build: " + info["error"])


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
    assert_digests_match_memory(results, t.pid)


def test_native_forced_callback_matches_memory(python_target):
    """`set pymortem access callback` reads through GDB on a native
    inferior too: the same bytes as /proc/PID/mem."""
    t = python_target
    commands = [c for c in compared_commands() if c[1] == "regions"]
    results = gdb_drive(["-p", t.pid], drive_items(commands),
                        setup=["set pymortem access callback"])
    t.ensure_stopped()
    assert_same_as_cli(results, t.pid, commands, callback=True)
    assert_digests_match_memory(results, t.pid)


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
            universal_newlines=True)
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
