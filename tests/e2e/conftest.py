"""pytest glue for the end-to-end tests: says which interpreters and which CLI
a run covered, prints a progress line as each test file starts and ends
(meson streams it: the e2e test is verbose), gives the kernel-core setting
as a fixture, and kills every process the harness started when the session
ends."""

import collections
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# (interpreter label -> outcome -> count), filled as tests report.
_BY_PYTHON = collections.defaultdict(collections.Counter)


def pytest_report_header(config):
    return [harness.covered_summary(), "pymortem CLI: " + harness.cli_path()]


class FileProgress:
    """One line as each test file starts and one as it ends, with its
    outcomes and seconds: `meson test` (and CI's log) shows them as they
    happen, so a 15-minute run is never silent for long."""

    OUTCOMES = ("passed", "failed", "error", "skipped")

    def __init__(self):
        self.files = []         # in the order they run
        self.current = None
        self.started = 0.0
        self.counts = collections.Counter()
        self.config = None

    def say(self, line):
        reporter = self.config and \
            self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            return
        # On a line of its own: write_line ends the line pytest is writing
        # when it knows of one (currentfspath), not -q's progress dots.
        writer = getattr(reporter, "_tw", None)
        if getattr(writer, "width_of_current_line", 0) and \
                not reporter.currentfspath:
            writer.line()
        reporter.write_line(line, bold=True)
        reporter.flush()

    def start(self, path):
        self.end()
        self.current, self.started = path, time.monotonic()
        self.counts = collections.Counter()
        number = self.files.index(path) + 1 if path in self.files else 0
        self.say("=== e2e [%d/%d] %s: started" % (number, len(self.files),
                                                  path))

    def end(self):
        if self.current is None:
            return
        counts = ", ".join("%d %s" % (self.counts[k], k) for k in
                           self.OUTCOMES if self.counts[k] or
                           k in ("passed", "failed"))
        self.say("=== e2e %s: %s in %.0f s" % (
            self.current, counts, time.monotonic() - self.started))
        self.current = None

    def count(self, report):
        if report.when == "call":
            self.counts[report.outcome] += 1
        elif report.when == "setup" and report.outcome != "passed":
            self.counts["error" if report.failed else "skipped"] += 1
        elif report.when == "teardown" and report.failed:
            self.counts["error"] += 1


_PROGRESS = FileProgress()


def _test_file(nodeid):
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def pytest_configure(config):
    _PROGRESS.config = config


def pytest_collection_finish(session):
    for item in session.items:
        name = _test_file(item.nodeid)
        if name not in _PROGRESS.files:
            _PROGRESS.files.append(name)


@pytest.hookimpl(tryfirst=True)     # before pytest writes the test's name
def pytest_runtest_logstart(nodeid, location):
    if _test_file(nodeid) != _PROGRESS.current:
        _PROGRESS.start(_test_file(nodeid))


def pytest_runtest_logreport(report):
    _PROGRESS.count(report)
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


@pytest.hookimpl(tryfirst=True)     # before pytest's own summary
def pytest_sessionfinish(session, exitstatus):
    _PROGRESS.end()
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


def python_params(sanitizer_subset=False):
    """pytest params for harness.PYTHONS; one failing param when none.
    sanitizer_subset: in an ASan build, only the oldest and the newest
    interpreter and the system's (the plain build runs every one; the
    sanitizer run is for pymortem's own memory errors, and a test that
    costs minutes per interpreter would make it the slowest part of CI)."""
    if not harness.PYTHONS:
        return [pytest.param(("none", None), id="no-python-found")]
    pythons = harness.PYTHONS
    if sanitizer_subset and harness.sanitizer_build() and len(pythons) > 3:
        pyenv = [lp for lp in pythons if "debian" not in lp[0]]
        keep = {id(lp) for lp in pyenv[:1] + pyenv[-1:]}
        keep |= {id(lp) for lp in pythons if "debian" in lp[0]}
        pythons = [lp for lp in pythons if id(lp) in keep]
    return [pytest.param(lp, id=lp[0]) for lp in pythons]
