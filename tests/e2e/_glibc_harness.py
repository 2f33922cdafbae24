"""Stand-in for the shared tests/e2e/harness.py until it lands on main:
the same protocol (start a target that writes $PM_ORACLE_FILE then stops
itself with SIGSTOP; take gcore or kernel cores; run the CLI)."""
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time


def _pythons():
    found = []
    for path in sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python")):
        minor = int(path.split("/versions/3.")[1].split(".")[0])
        if 8 <= minor <= 13:
            found.append(("3.%d" % minor, path))
    if os.path.exists("/usr/bin/python3.11"):
        found.append(("3.11-debian", "/usr/bin/python3.11"))
    return found


PYTHONS = _pythons()
print("glibc tests cover Pythons:", ", ".join(l for l, _ in PYTHONS))


def build_dir():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    return os.environ.get("PYMORTEM_BUILD", os.path.join(repo, "build"))


def cli_path():
    return os.environ.get("PYMORTEM_CLI",
                          os.path.join(build_dir(), "cli", "pymortem"))


def run_cli(*args, check=True):
    proc = subprocess.run([cli_path(), *map(str, args)], text=True,
                          capture_output=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError("pymortem %s failed (%d): %s" % (
            " ".join(map(str, args)), proc.returncode, proc.stderr))
    return proc


def cli_json(*args):
    return json.loads(run_cli(*args, "--json").stdout)


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Target:
    def __init__(self, argv, env=None, timeout=120):
        self.workdir = tempfile.mkdtemp(prefix="pm-glibc-")
        self.oracle_path = os.path.join(self.workdir, "oracle.json")
        env = dict(env if env is not None else os.environ)
        env["PM_ORACLE_FILE"] = self.oracle_path

        def unlimited_core():
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,
                                                      resource.RLIM_INFINITY))
        self.proc = subprocess.Popen(argv, cwd=self.workdir, env=env,
                                     preexec_fn=unlimited_core)
        self.pid = self.proc.pid
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("target exited: %r" % argv)
            if os.path.exists(self.oracle_path) and _state(self.pid) == "T":
                break
            if time.time() > deadline:
                self.kill()
                raise AssertionError("target did not stop: %r" % argv)
            time.sleep(0.05)
        with open(self.oracle_path) as f:
            self.oracle = json.load(f)
        with open("/proc/%d/maps" % self.pid) as f:
            self.maps_text = f.read()

    def gcore(self):
        prefix = os.path.join(self.workdir, "gcore")
        subprocess.run(["gcore", "-o", prefix, str(self.pid)], check=True,
                       capture_output=True, timeout=600)
        return "%s.%d" % (prefix, self.pid)

    def kernel_core(self):
        os.kill(self.pid, signal.SIGABRT)
        os.kill(self.pid, signal.SIGCONT)
        self.proc.wait(timeout=120)
        for name in ("core.%d" % self.pid, "core"):
            path = os.path.join(self.workdir, name)
            if os.path.exists(path):
                return path
        raise AssertionError("no kernel core in %s (core_pattern?)" %
                             self.workdir)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_stopped(argv, env=None, timeout=120):
    return Target(argv, env=env, timeout=timeout)
