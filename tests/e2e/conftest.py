"""pytest glue for the end-to-end tests: says which interpreters and which CLI
a run covered, gives the kernel-core setting as a fixture, and kills every
process the harness started when the session ends."""

import collections
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# (interpreter label -> outcome -> count), filled as tests report.
_BY_PYTHON = collections.defaultdict(collections.Counter)


def pytest_report_header(config):
    return [harness.covered_summary(), "pymortem CLI: " + harness.cli_path()]


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and
                                      report.outcome != "passed"):
        return
    for label in harness.PYTHON_LABELS:
        if "[" in report.nodeid and label in report.nodeid.split("[", 1)[1]:
            _BY_PYTHON[label][report.outcome] += 1
            break


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("pymortem e2e coverage")
    tr.write_line(harness.covered_summary())
    for label in harness.PYTHON_LABELS:
        counts = _BY_PYTHON.get(label)
        text = ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())) \
            if counts else "no test ran"
        tr.write_line("  %-12s %s" % (label, text))
    if not harness.PYTHONS:
        tr.write_line("NO CPython 3.8-3.13 FOUND: nothing was covered")


def pytest_sessionfinish(session, exitstatus):
    harness._kill_all()


@pytest.fixture(scope="session")
def kernel_cores():
    """Kernel cores land in the target's cwd while this is active. If that
    cannot be arranged the test FAILS (a missing core is not a pass)."""
    try:
        cm = harness.core_pattern_core()
        pattern = cm.__enter__()
    except RuntimeError as e:
        pytest.fail(str(e))
    yield pattern
    cm.__exit__(None, None, None)


def python_params():
    """pytest params for harness.PYTHONS; one failing param when none."""
    if not harness.PYTHONS:
        return [pytest.param(("none", None), id="no-python-found")]
    return [pytest.param(lp, id=lp[0]) for lp in harness.PYTHONS]
