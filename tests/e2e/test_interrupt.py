"""Ctrl-C during a long analysis of a running process: pymortem stops with
"interrupted" (exit 130) instead of finishing, and the process it froze with
ptrace runs again afterwards."""
import os
import signal
import subprocess
import sys
import time

import harness

# A running (not stopped) process with a few million objects: summary takes
# seconds on it, so a SIGINT 0.3 s in lands in the middle of the analysis.
BUSY_TARGET = r"""
import sys, time
objects = [[i, str(i)] for i in range(2_000_000)]
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def thread_states(pid):
    states = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return states


def test_sigint_stops_analysis_and_resumes_target():
    python = harness.PYTHONS[-1][1]
    target = subprocess.Popen([python, "-c", BUSY_TARGET], stdout=subprocess.PIPE,
                              universal_newlines=True, errors="backslashreplace")
    try:
        assert target.stdout.readline().strip() == "ready"
        cli = subprocess.Popen([harness.cli_path(), "summary", str(target.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, errors="backslashreplace")
        time.sleep(0.3)
        # Frozen by ptrace while the analysis runs.
        assert "t" in thread_states(target.pid), thread_states(target.pid)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 130, (cli.returncode, out[-500:], err)
        assert "interrupted" in err, err
        assert "Traceback" not in err
        time.sleep(0.2)
        states = thread_states(target.pid)
        assert all(s in ("S", "R") for s in states), states
    finally:
        target.kill()
        target.wait()
