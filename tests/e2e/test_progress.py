"""The e2e suite's progress lines (conftest.py's FileProgress): a nested
pytest run over two test files prints, in order, a line as each file starts
and one as it ends whose counts are the outcomes pytest itself recorded in
its JUnit XML. (That `meson test` streams them as they come is the e2e
test's `verbose : true` in tests/meson.build.)"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
# Fast tests that need no target process; in a sanitizer build the GDB
# ones are skipped, which the counts must then say.
SELECTED = ["test_gdb.py::test_bad_arguments",
            "test_gdb.py::test_completion_and_help",
            "test_errors.py"]


def junit_outcomes(path):
    """{file name: Counter-like dict of outcomes} from pytest's JUnit XML."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("classname").split(".")[-1] + ".py"
        kinds = {child.tag for child in case}
        outcome = "failed" if "failure" in kinds else \
            "error" if "error" in kinds else \
            "skipped" if "skipped" in kinds else "passed"
        counts = outcomes.setdefault(name, {})
        counts[outcome] = counts.get(outcome, 0) + 1
    return outcomes


def test_progress_lines_per_file(tmp_path):
    junit = tmp_path / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "--junitxml", str(junit)] + \
        [os.path.join(HERE, s) for s in SELECTED]
    proc = subprocess.run(argv, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          errors="backslashreplace", timeout=900,
                          cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.startswith("=== e2e ")]
    want = junit_outcomes(junit)
    assert sorted(want) == ["test_errors.py", "test_gdb.py"], proc.stdout
    files = [m.group(1) for m in (re.fullmatch(
        r"=== e2e \[\d+/2\] (\S+): started", line) for line in progress)
        if m]
    assert files == ["test_gdb.py", "test_errors.py"], proc.stdout
    for k, name in enumerate(files):
        start, end = progress[2 * k], progress[2 * k + 1]
        assert start == "=== e2e [%d/2] %s: started" % (k + 1, name)
        m = re.fullmatch(r"=== e2e (\S+): (.*) in (\d+) s", end)
        assert m and m.group(1) == name, end
        counts = {kind: int(n) for n, kind in
                  (part.split(" ") for part in m.group(2).split(", "))}
        expected = dict(want[name])
        expected.setdefault("passed", 0)
        expected.setdefault("failed", 0)
        assert counts == expected, (end, want[name])
    assert len(progress) == 4, proc.stdout
