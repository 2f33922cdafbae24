"""The CLI's progress line (cli/progress.c): with stderr on a terminal (a
pseudo-terminal here), a long run draws "pymortem: STAGE N%" lines in
place, each stage's percent never going back, and erases the line before
the report is printed, so that stdout is byte for byte what the same
report prints with stderr in a pipe, where nothing at all goes to stderr;
and a run shorter than the delay draws nothing even on a terminal. On a
gcore core of a process holding half a million objects (the delay set to 0
through PYMORTEM_PROGRESS_DELAY, so the stages' lines come on any
machine)."""

import os
import pty
import re
import subprocess

import pytest

import harness

WORKLOAD = r"""
import os, signal
objects = [[i, str(i)] for i in range(500_000)]
with open(os.environ["PM_ORACLE_FILE"], "w") as f:
    f.write("{}")
os.kill(os.getpid(), signal.SIGSTOP)
"""
LINE = re.compile(r"pymortem: ([a-z_' ]+?) +(\d+)%")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    script = tmp_path_factory.mktemp("progress") / "objects.py"
    script.write_text(WORKLOAD)
    with harness.start_stopped([harness.PYTHONS[-1][1], str(script)]) as t:
        path = t.gcore()
        t.kill()
        yield path


def run_on_terminal(argv, env):
    """(stdout bytes, what the terminal received on stderr) of a run whose
    stderr is a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:         # EIO: the last holder of the slave end is gone
            break
        if not chunk:
            break
        received += chunk
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == 0
    os.close(master)
    return out, received.decode()


@pytest.mark.parametrize("report", ["summary", "retained"])
def test_progress_line_on_a_terminal_only(core, report):
    argv = [harness.cli_path(), report, core]
    env = dict(os.environ, PYMORTEM_PROGRESS_DELAY="0")
    piped = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=300, check=True)
    assert piped.stderr == b""
    out, terminal = run_on_terminal(argv, env)
    assert out == piped.stdout
    drawn = terminal.split("\r")
    lines = [LINE.fullmatch(d.rstrip(" ")) for d in drawn if d.strip()]
    assert lines and all(lines), terminal[:500]
    stages = [m.group(1) for m in lines]
    assert "recognising objects" in stages
    if report == "retained":
        assert "reading references" in stages
    # Within a stage's run of lines its percent only goes up, and stays
    # in 0..100. (A stage may come back: malloc's chunks heap by heap.)
    for before, after in zip(lines, lines[1:]):
        assert 0 <= int(after.group(2)) <= 100
        if before.group(1) == after.group(1):
            assert int(after.group(2)) > int(before.group(2))
    # Erased at the end: the last thing drawn is spaces over the widest
    # line, then the cursor back at the start.
    assert terminal.endswith("\r")
    assert drawn[-2].strip() == "" and len(drawn[-2]) >= max(len(d) for d in drawn[:-2])


def test_no_progress_line_before_the_delay(core):
    """The default delay (half a second) outlasts a quick report."""
    env = dict(os.environ)
    env.pop("PYMORTEM_PROGRESS_DELAY", None)
    out, terminal = run_on_terminal([harness.cli_path(), "regions", core], env)
    assert out and terminal == ""
