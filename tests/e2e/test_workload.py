"""Checks of the test inputs themselves (no pymortem involved): the Python
workload's oracle is complete and self-consistent on every interpreter, and
the target really is frozen. If these fail, every other e2e result is moot."""

import re

import pytest

import harness
from conftest import python_params

N = 123


@pytest.mark.parametrize("lp", python_params())
def test_oracle_complete(lp):
    label, python = lp
    if python is None:
        pytest.fail("no CPython 3.8-3.13 installed")
    with harness.start_python(python, "--sentinels", N, "--threads", 2,
                              "--thread-objects", 7, "--gc-addresses") as t:
        o = t.oracle
        assert harness.is_stopped(t.pid)
        assert o["pid"] == t.pid
        v = o["version"]
        assert label.startswith("%d.%d" % tuple(v["version_info"][:2]))
        assert set(o["mallinfo2"]) == {
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost"}
        mi = o["mallinfo2"]
        # glibc's identity: in use + free == obtained from the system.
        assert mi["uordblks"] + mi["fordblks"] == mi["arena"]
        assert mi["hblks"] >= 0 and o["allocated_blocks"] > 0
        assert "Small block threshold = 512" in o["debugmallocstats"]
        # Sentinel classes: what the workload made, counted by gc.
        counts = o["gc_counts"]
        for name, n in o["sentinels"].items():
            extra = 2 * 7 if name == "PlainSentinel" else 0  # thread objects
            if name == "IntSentinel":  # int subclasses are not GC-tracked
                continue
            assert counts.get(name) == n + extra, (name, counts.get(name))
        assert o["sentinels"]["SlotsSentinel"] == N
        assert len(o["threads"]) == 2
        assert len(harness.thread_states(t.pid)) == 3
        with open(o["gc_objects_file"]) as f:
            lines = f.read().splitlines()
        assert len(lines) == o["gc_total"], (len(lines), o["gc_total"])
        assert all(re.fullmatch(r"0x[0-9a-f]+ \S.*", l) for l in lines[:100])
