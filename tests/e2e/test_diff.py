"""snapshot and diff against a process that grows by known amounts between
two stops (tests/targets/py_grow.py: N instances of a class, M strs, K
floats appended to a list), on every installed CPython, with pymalloc and
PYTHONMALLOC=malloc:

- the rows by type change by exactly N, M and K objects (with pymalloc by
  exactly N, M and K blocks of the size sys.getsizeof gives, rounded to
  pymalloc's 16 bytes);
- the new allocations of those types hold exactly the objects whose ids
  the process recorded (allowing CHURN_MAX objects the interpreter itself
  frees, which the gone list must show, or whose address a new one took);
- the same from a snapshot file taken live to the live process, and from a
  gcore core to a gcore core (AT_RANDOM tells it is the same process);
- two different processes: rows only, no new-allocation list;
- a file cut short, or not a snapshot, is refused in one line;
- --by retainer (snapshots taken with --retainers): the list the floats
  were appended to grows by exactly K objects, the one that holds the
  instances and strs by at least N + M, and the TOTAL is the one by type.
"""

import os
import signal
import time

import pytest

import harness
from conftest import python_params

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_grow.py")
MODES = {"pymalloc": {}, "malloc": {"PYTHONMALLOC": "malloc"}}
ALL = "1000000000"


def start(python, mode):
    env = dict(os.environ, **MODES[mode])
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([python, WORKLOAD], env=env)


def grow(t):
    """Lets the process grow; returns what it recorded."""
    result = t.oracle_path + ".grown"
    os.kill(t.pid, signal.SIGUSR1)
    os.kill(t.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while not os.path.exists(result):
        assert time.monotonic() < deadline, "the process did not grow"
        time.sleep(0.02)
    t.ensure_stopped()
    return read_grown(t)


def read_grown(t):
    """The ids and sizes the process recorded after growing."""
    with open(t.oracle_path + ".grown", "rb") as f:
        data = f.read()
    words = [int.from_bytes(data[i:i + 8], "little", signed=True)
             for i in range(0, len(data), 8)]
    n = t.oracle["n"]
    assert len(words) == n["Growth"] + n["str"] + n["float"] + 3
    grown, at = {}, 0
    for kind in ("Growth", "str", "float"):
        grown[kind] = words[at:at + n[kind]]
        at += n[kind]
    grown["sizes"] = dict(zip(("Growth", "str", "float"), words[at:]))
    return grown


def diff(before, after):
    return harness.cli_json("diff", "--json", "--top", "0", "--limit", ALL, before, after)


# The interpreter may free an object of its own between the stops (a str,
# about 1 run in 30 under PYTHONMALLOC=malloc; which one is not found yet),
# and glibc may give its chunk to one of the new objects: that object is
# then at an address that held the same type before, so it is neither new
# nor gone. Both are allowed, at most CHURN_MAX in all, and must add up.
CHURN_MAX = 2


def check(doc, grown, oracle, same=True):
    rows = {(r["domain"], r["kind"]): r for r in doc["rows"]}
    assert doc["same_process"] is same
    if not same:
        assert doc["new"] is None and doc["gone"] is None
        for kind, n in oracle["n"].items():
            assert rows[("python", kind)]["count_delta"] == n, kind
        return
    gone = {(c["domain"], c["kind"]): c for c in doc["gone"]["by_category"]}
    new = {(c["domain"], c["kind"]): c for c in doc["new"]["by_category"]}
    for kind, n in oracle["n"].items():
        row = rows[("python", kind)]
        got = {e["object"] for e in new[("python", kind)]["examples"]}
        assert got <= set(grown[kind]), (kind, sorted(got - set(grown[kind]))[:5])
        reused = len(set(grown[kind]) - got)
        freed = gone.get(("python", kind), {}).get("count", 0)
        assert reused + freed <= CHURN_MAX, (kind, reused, gone.get(("python", kind)))
        assert row["count_delta"] == n - freed - reused, (kind, row, reused,
                                                           gone.get(("python", kind)))
        # 3.13+ keeps an instance's attribute values inside its block, as
        # many as the class's shared keys expected when it was made (the
        # first instances' blocks are larger): sys.getsizeof does not count
        # them, so Growth's bytes are checked before 3.13 only.
        inline_values = kind == "Growth" and oracle["python"][:2] >= [3, 13]
        if oracle["pymalloc"] and not inline_values and not freed + reused:
            assert row["bytes_delta"] == n * grown["sizes"][kind], (kind, row)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params())
def test_diff(python, mode, tmp_path):
    label, path = python
    assert path, "no CPython found"
    with start(path, mode) as t:
        oracle = t.oracle
        snap = str(tmp_path / "before.pmsnap")
        out = harness.run_cli("snapshot", "-o", snap, t.pid).stdout
        assert snap in out
        core_before = t.gcore("before")
        grown = grow(t)
        core_after = t.gcore("after")
        check(diff(core_before, core_after), grown, oracle)
        live = diff(snap, str(t.pid))
        check(live, grown, oracle)
        # previews come from the live target: the strs' text
        strs = [c for c in live["new"]["by_category"] if c["kind"] == "str"][0]
        assert all(e["preview"].startswith('"grown-str-') for e in strs["examples"])
        # the text form says the same in its rows
        text = harness.run_cli("diff", snap, core_after).stdout
        assert "the same process" in text.split("\n")[0]
        line = [l for l in text.split("\n") if l.split()[:2] == ["python", "Growth"]][0]
        assert "+{:,}".format(oracle["n"]["Growth"]) in line.split()


FLOATS_ROW = "sys.modules['__main__'].__dict__['FLOATS']"
HELD_ROW = "sys.modules['__main__'].__dict__['HELD']"


def check_by_retainer(doc, by_type, grown, oracle):
    """The rows by retainer of the same diff: FLOATS dominates each new
    float (nothing else refers to one: the process keeps only their ids, as
    ints) and its one items buffer, before and after, so its count grows
    by exactly K; HELD dominates the new instances and strs and what only
    they hold (instance dicts or values, ints of 257 and more); the
    partition by retainer covers the same allocations as the one by type."""
    rows = {r["kind"]: r for r in doc["rows"] if r["domain"] == "retained by"}
    assert doc["by"] == "retainer"
    n = oracle["n"]
    floats = rows[FLOATS_ROW]
    assert floats["detail"] == "list" and floats["count_delta"] == n["float"], floats
    assert floats["bytes_delta"] >= n["float"] * grown["sizes"]["float"], floats
    held = rows[HELD_ROW]
    assert held["count_delta"] >= n["Growth"] + n["str"], held
    assert held["bytes_delta"] >= n["Growth"] * grown["sizes"]["Growth"] + \
        n["str"] * grown["sizes"]["str"], held
    for key in ("count_before", "count_after", "bytes_before", "bytes_after"):
        assert doc["total"][key] == by_type["total"][key], (key, doc["total"],
                                                            by_type["total"])


@pytest.mark.parametrize("python", python_params(sanitizer_subset=True))
def test_diff_by_retainer(python, tmp_path):
    label, path = python
    assert path, "no CPython found"
    with start(path, "pymalloc") as t:
        plain = str(tmp_path / "plain.pmsnap")
        harness.run_cli("snapshot", "-o", plain, t.pid)
        snap = str(tmp_path / "before.pmsnap")
        out = harness.run_cli("snapshot", "--retainers", "-o", snap, t.pid).stdout
        assert snap in out
        core_before = t.gcore("before")
        grown = grow(t)
        core_after = t.gcore("after")
        by_type = diff(snap, str(t.pid))
        live = harness.cli_json("diff", "--json", "--by", "retainer", "--top", "0",
                                snap, str(t.pid))
        check_by_retainer(live, by_type, grown, t.oracle)
        cores = harness.cli_json("diff", "--json", "--by", "retainer", "--top", "0",
                                 core_before, core_after)
        check_by_retainer(cores, diff(core_before, core_after), grown, t.oracle)
        # a snapshot taken without --retainers: one line that says how
        p = harness.run_cli("diff", "--by", "retainer", plain, t.pid, check=False)
        err = p.stderr.strip().split("\n")
        assert p.returncode == 1 and len(err) == 1, p.stderr
        assert "BEFORE" in err[0] and "snapshot --retainers" in err[0], err
        p = harness.run_cli("summary", "--retainers", t.pid, check=False)
        assert p.returncode == 2 and "--retainers is for snapshot" in p.stderr


def test_diff_other_process_and_bad_files(tmp_path):
    path = next((p for _, p in harness.PYTHONS if p), None)
    assert path, "no CPython found"
    with start(path, "pymalloc") as a, start(path, "pymalloc") as b:
        snap = str(tmp_path / "a.pmsnap")
        harness.run_cli("snapshot", "-o", snap, a.pid)
        doc = diff(snap, str(b.pid))
        assert doc["same_process"] is False and doc["new"] is None
        text = harness.run_cli("diff", snap, b.pid).stdout
        assert "different processes: rows only" in text.split("\n")[0]
        # cut short
        data = open(snap, "rb").read()
        cut = str(tmp_path / "cut.pmsnap")
        with open(cut, "wb") as f:
            f.write(data[:len(data) // 2])
        p = harness.run_cli("diff", cut, b.pid, check=False)
        assert p.returncode == 1 and p.stdout == ""
        err = p.stderr.strip().split("\n")
        assert len(err) == 1 and "not a complete pymortem snapshot" in err[0], err
        # cut anywhere, or with bytes changed: one error line or a diff,
        # never a crash (the sanitizer build checks the reads)
        import random
        rng = random.Random(15)
        for k in range(30):
            damaged = bytearray(data)
            if k % 2:
                damaged = damaged[:rng.randrange(12, len(data))]
            else:
                for _ in range(8):
                    damaged[rng.randrange(12, len(data))] = rng.randrange(256)
            with open(cut, "wb") as f:
                f.write(damaged)
            p = harness.run_cli("diff", "--json", cut, snap, check=False)
            assert p.returncode in (0, 1), (k, p.returncode, p.stderr[-2000:])
            if p.returncode:
                assert len(p.stderr.strip().split("\n")) == 1, (k, p.stderr[-2000:])
        # a snapshot of another format version
        other = str(tmp_path / "v9.pmsnap")
        with open(other, "wb") as f:
            f.write(data[:8] + b"\x09\x00\x00\x00" + data[12:])
        p = harness.run_cli("diff", other, b.pid, check=False)
        assert p.returncode == 1 and "format version 9" in p.stderr, p.stderr
        # snapshot without -o, diff with one operand
        # --json names the file as a JSON string, whatever its name
        odd = str(tmp_path / 'a "quoted" \\ name.pmsnap')
        doc = harness.cli_json("snapshot", "--json", "-o", odd, a.pid)
        assert doc["file"] == odd and doc["bytes"] == os.path.getsize(odd), doc
        p = harness.run_cli("snapshot", a.pid, check=False)
        assert p.returncode == 2 and "needs -o FILE" in p.stderr
        p = harness.run_cli("diff", snap, check=False)
        assert p.returncode == 2 and "BEFORE and AFTER" in p.stderr


GDB_SCRIPT = r'''
import gdb, json, os
res = {}
def run(command):
    try:
        return gdb.execute(command, to_string=True)
    except gdb.error as e:
        return "error: %s" % e
res["snapshot"] = run("heap snapshot")
res["retainers"] = run("heap snapshot held --retainers")
res["save"] = run("heap snapshot --save " + SAVED)
res["unknown"] = run("heap diff nosuch")
# SIGUSR1 pending, then continue: the process grows and stops itself
# (SIGSTOP); a stop GDB reports first (the SIGSTOP it attached with) is
# continued too
import signal
gdb.execute("handle SIGUSR1 nostop noprint pass")
os.kill(gdb.selected_inferior().pid, signal.SIGUSR1)
for _ in range(20):
    if os.path.exists(GROWN):
        break
    gdb.execute("continue")
res["json"] = run("heap diff --json --top 0 --limit 1000000000")
res["by_retainer"] = run("heap diff held --by retainer --json --top 0")
res["report"] = run("heap report " + PAGE + " --since default")
res["no_retainers"] = run("heap diff --by retainer")
res["text"] = run("heap diff --top 3 --limit 1")
res["file"] = run("heap diff --json --top 0 --limit 1000000000 " + SAVED)
res["help"] = run("help heap diff")
open(OUT, "w").write(json.dumps(res))
'''


def test_gdb_snapshot_diff(tmp_path):
    """heap snapshot, continue, heap diff in GDB on a live process: the
    same truths as the CLI's (exact deltas, the recorded ids); a file
    written by --save is read by heap diff FILE."""
    import json
    import subprocess
    path = next((p for _, p in harness.PYTHONS if p), None)
    assert path, "no CPython found"
    if harness.binding_sanitized():
        pytest.skip("sanitizer build: GDB cannot load the binding (as test_gdb.py)")
    plugin = os.path.join(harness.build_dir(), "gdbplugin", "pymortem-gdb.py")
    with start(path, "pymalloc") as t:
        out = str(tmp_path / "gdb.json")
        script = str(tmp_path / "gdb-diff.py")
        with open(script, "w") as f:
            f.write("SAVED = %r\nGROWN = %r\nOUT = %r\nPAGE = %r\n" % (
                str(tmp_path / "saved.pmsnap"), t.oracle_path + ".grown", out,
                str(tmp_path / "growth.html")) + GDB_SCRIPT)
        proc = subprocess.run(
            ["gdb", "-nx", "-q", "-batch", "-ex", "set sysroot /", "-ex", "source " + plugin,
             "-ex", "source " + script, "-p", str(t.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            errors="backslashreplace", timeout=120, stdin=subprocess.DEVNULL)
        assert os.path.exists(out), proc.stdout + proc.stderr
        t.ensure_stopped()
        with open(out) as f:
            res = json.load(f)
        grown = read_grown(t)
        assert "snapshot default of process %d kept" % t.pid in res["snapshot"], res
        assert "written to" in res["save"], res
        assert res["unknown"].startswith("error: heap diff: no snapshot nosuch"), res
        check(json.loads(res["json"]), grown, t.oracle)
        assert "snapshot held of process" in res["retainers"], res
        # heap report --since: the page's diff is heap diff's, capped
        assert res["report"].startswith("report written to"), res["report"]
        from test_report import page_data
        page = page_data(str(tmp_path / "growth.html"))
        whole = json.loads(res["json"])
        assert page["diff"]["total"] == whole["total"]
        assert page["diff"]["before"]["source"].startswith("snapshot default of process")
        growth_rows = [r for r in page["diff"]["rows"] if r["kind"] == "Growth"]
        assert growth_rows and growth_rows[0] == [r for r in whole["rows"]
                                                  if r["kind"] == "Growth"][0]
        check_by_retainer(json.loads(res["by_retainer"]), json.loads(res["json"]),
                          grown, t.oracle)
        assert res["no_retainers"].startswith("error: heap diff: diff --by retainer: "
                                              "BEFORE"), res["no_retainers"]
        check(json.loads(res["file"]), grown, t.oracle)
        first = res["text"].split("\n")[0]
        assert first.startswith("diff by type: before: snapshot default of process"), first
        assert "the same process" in first
        assert "heap diff [NAME|FILE]" in res["help"]
