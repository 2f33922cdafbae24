"""End-to-end tests of the HTML report (issue 15): `pymortem report -o
FILE TARGET` and GDB's `heap report FILE`, on the waste workload
(tests/targets/py_waste.py: duplicates, over-allocated and empty
containers, big numeric lists, a class without __slots__) stopped under
every installed CPython, live and from a gcore core.

Truth is the CLI's own JSON reports of the same stopped process: the page
embeds the documents the commands it names give (DATA.commands), and the
page as Chromium renders it (headless, --dump-dom: the DOM after its
script ran) shows the same numbers in its tables; the treemap's rectangles
(width * height, from the DOM) are proportional to the bytes of their
rows. The file is self-contained (no http:// or https:// anywhere, the
Content-Security-Policy that refuses every request, and Chromium's net log
shows no request from it, where it shows a fetching copy's), stays small, and its
screenshot is not blank (the PNG decoded here with zlib: many colours).
Given an earlier state too (report -o FILE BEFORE AFTER), the page embeds
diff's JSON of the two and its Growth section shows it."""
import html
import html.parser
import json
import os
import re
import shutil
import struct
import tempfile
import subprocess
import sys
import zlib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from conftest import python_params  # noqa: E402
import test_diff  # noqa: E402

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_waste.py")
CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">")
# The page of this small workload is ~160 KB; the bound is what the page
# promises for any heap (every report it embeds is aggregated and capped).
PAGE_MAX = 4 << 20


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not installed (tests/setup-debian.sh installs it)")
    return path


def browse(page, workdir, *args):
    """Chromium headless on file://page with args; returns its stdout."""
    profile = os.path.join(workdir, "chromium-profile")
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--user-data-dir=" + profile, "--no-first-run"] + list(args) + \
        ["file://" + os.path.abspath(page)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, errors="backslashreplace",
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class Dom(html.parser.HTMLParser):
    """The rendered page's tables (data-table: rows of {column: (text,
    data-v)}), the treemap's leaf rectangles and its size, and every
    element's attributes by id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.leaves, self.ids = {}, [], {}
        self.table = self.row = self.cell = None
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
        if tag == "table" and "data-table" in a:
            self.table = self.tables.setdefault(a["data-table"], [])
        elif tag == "tr" and self.table is not None:
            self.row = {}
        elif tag in ("td",) and self.row is not None:
            self.cell = (a.get("data-col"), a.get("data-v"))
            self.text = []
        elif tag == "rect" and a.get("class") == "leaf":
            self.leaves.append(a)

    def handle_data(self, data):
        if self.cell is not None:
            self.text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            col, value = self.cell
            self.row[col] = ("".join(self.text), value)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.row:
                self.table.append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None


def page_data(path):
    """The JSON the page embeds (its pm-data element)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'<script type="application/json" id="pm-data">(.*?)</script>', text, re.S)
    assert m, "no pm-data element"
    return json.loads(m.group(1))


def cli_reports(data, target):
    """The CLI's JSON for every report the page embeds, by the command
    the page names for it."""
    out = {}
    for key, command in data["commands"].items():
        words = command.split()
        assert words[0] == "pymortem"
        out[key] = harness.cli_json(*words[1:], target)
    return out


def grouped(n):
    return "{:,}".format(n)


def check_table(dom, name, rows, columns):
    """The page's table `name` has rows in the JSON's order (as the page
    drew them, before any click), numeric cells as the JSON's figures
    (data-v and the grouped text), text cells as the JSON's strings."""
    got = dom.tables.get(name)
    assert got is not None, "no table %s (tables: %s)" % (name, sorted(dom.tables))
    assert len(got) == len(rows), name
    for i, (cells, row) in enumerate(zip(got, rows)):
        for col, value in columns(row).items():
            text, v = cells[col]
            if isinstance(value, bool) or not isinstance(value, int):
                assert text == ("" if value is None else str(value)), (name, i, col, text, value)
            else:
                assert int(v) == value, (name, i, col, v, value)
                assert text == grouped(value), (name, i, col, text, value)


def check_treemap(dom, owners):
    """One leaf per summary-by-owner row with bytes (and one for the rows
    not shown), each rectangle's area its share of the treemap's."""
    svg = dom.ids["treemap-svg"]
    width, height = float(svg["width"]), float(svg["height"])
    total = int(svg["data-total"])
    expected = [r["bytes"] for r in owners["rows"] if r["bytes"] > 0]
    if owners["rows_not_shown"]["bytes"] > 0:
        expected.append(owners["rows_not_shown"]["bytes"])
    assert total == sum(expected) == owners["total"]["bytes"]
    got = sorted(int(leaf["data-bytes"]) for leaf in dom.leaves)
    assert got == sorted(expected)
    area = slack = 0.0
    for leaf in dom.leaves:
        w, h = float(leaf["width"]), float(leaf["height"])
        bytes_ = int(leaf["data-bytes"])
        want = width * height * bytes_ / total
        # the DOM gives 3 decimals: a rounding of 0.0005 px per side
        assert abs(w * h - want) <= 0.001 * (w + h) + 1e-6 + want * 1e-6, \
            (leaf["data-label"], w, h, want)
        x, y = float(leaf["x"]), float(leaf["y"])
        assert -0.001 <= x and x + w <= width + 0.002 and -0.001 <= y and y + h <= height + 0.002
        area += w * h
        slack += 0.001 * (w + h) + 1e-6
    # The leaves tile the treemap (no gap, no overlap) up to the same
    # rounding: the leaves of one column share its rounded width, so
    # their errors add up rather than cancel (1.24 px² in one CI run).
    assert abs(area - width * height) <= slack, (area, width * height, slack)


def png_colours(path):
    """Distinct colours of an 8-bit RGB(A) PNG, decoded here (zlib and the
    five row filters), every 4th row sampled."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(h):
        base = y * (stride + 1)
        f = raw[base]
        line = bytearray(raw[base + 1:base + 1 + stride])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, stride, bpp):
                colours.add(bytes(line[x:x + 3]))
        prev = line
    return (w, h), colours


def page_requests(page, workdir):
    """The network requests the page itself made while Chromium loaded
    it and ran its script: from Chromium's net log (--log-net-log), each
    URL_REQUEST_START_JOB whose initiator is the page's origin ("null" for
    file://), not Chromium's own background traffic ("not an origin")."""
    log = os.path.join(workdir, "net-%s.json" % os.path.basename(page))
    browse(page, workdir, "--log-net-log=" + log, "--dump-dom")
    with open(log) as f:
        netlog = json.load(f)
    names = {v: k for k, v in netlog["constants"]["logEventTypes"].items()}
    return sorted({e["params"]["url"] for e in netlog["events"]
                   if names.get(e["type"]) == "URL_REQUEST_START_JOB" and
                   "url" in e.get("params", {}) and
                   e["params"].get("initiator") != "not an origin"})


def start(python):
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([python, WORKLOAD], env=env)


def write_report(target, path):
    proc = harness.run_cli("report", "-o", path, target)
    assert proc.stdout.startswith("report of ") and path in proc.stdout, proc.stdout
    return page_data(path)


@pytest.mark.parametrize("python", python_params(sanitizer_subset=True))
def test_rendered_page_matches_cli(python):
    """Live: the embedded documents are the CLI's; the rendered DOM's
    tables and treemap show their figures."""
    label, path = python
    if path is None:
        pytest.skip("no CPython")
    with start(path) as t:
        page = os.path.join(t.workdir, "report.html")
        data = write_report(t.pid, page)
        cli = cli_reports(data, t.pid)
        t.ensure_stopped()
    for key, doc in cli.items():
        assert data["reports"][key] == doc, key
    dom_text = browse(page, t.workdir, "--dump-dom")
    assert 'data-drawn="yes"' in dom_text
    assert "could not draw a section" not in dom_text.replace(
        '"could not draw a section: "', "")
    dom = Dom()
    dom.feed(dom_text)
    dom.close()
    summary, owners = cli["summary"], cli["owners"]
    row = lambda r: {"domain": r["domain"], "kind": r["kind"], "detail": r["detail"],  # noqa: E731
                     "count": r["count"], "bytes": r["bytes"]}
    check_table(dom, "summary", summary["rows"], row)
    check_table(dom, "owners", owners["rows"], row)
    assert "(%s bytes)" % grouped(summary["total"]["bytes"]) in dom_text
    check_treemap(dom, owners)
    check_table(dom, "regions", cli["regions"]["regions"],
                lambda r: {"size": r["size"], "perms": r["perms"], "label": r["label"]})
    check_table(dom, "retained", cli["retained"]["objects"],
                lambda o: {"type": o["type"], "own": o["own"], "retained": o["retained"],
                           "count": o["count"], "path": o["path"]})
    check_table(dom, "waste", cli["waste"]["findings"],
                lambda f: {"title": f["title"], "cost": f["cost"], "saving": f["saving"],
                           "advice": f["advice"]})
    for f in cli["waste"]["findings"]:
        name = "waste-%s-%s" % (f["finding"], f["type"])
        if f.get("values"):
            check_table(dom, name, f["values"],
                        lambda v: {"value": v["value"], "copies": v["copies"],
                                   "bytes": v["bytes"], "saving": v["saving"]})
        elif f.get("classes"):
            check_table(dom, name, f["classes"],
                        lambda c: {"class": c["class"], "instances": c["instances"],
                                   "bytes_now": c["bytes_now"],
                                   "bytes_slotted": c["bytes_slotted"], "saving": c["saving"]})
        elif f.get("examples"):
            check_table(dom, name, f["examples"],
                        lambda e: {"type": e["type"], "bytes": e["bytes"], "used": e["used"],
                                   "capacity": e["capacity"], "path": e.get("path")})
    frag = cli["fragmentation"]
    check_table(dom, "fragmentation-arenas", frag["glibc"]["arenas"],
                lambda a: {"mapped": a["mapped"], "in_use": a["in_use"],
                           "top_size": a["top_size"],
                           "malloc_trim_returns": a["malloc_trim_returns"]})
    if frag["pymalloc"]["found"]:
        check_table(dom, "pymalloc-arenas", frag["pymalloc"]["arena_list"],
                    lambda a: {"used_pools": a["used_pools"], "empty_pools": a["empty_pools"],
                               "never_used_pools": a["never_used_pools"],
                               "used_blocks": a["used_blocks"], "used_bytes": a["used_bytes"]})
    rss = cli["rss"]
    check_table(dom, "rss-parts", list(rss["parts"].values()),
                lambda p: {"name": p["name"], "bytes": p["value"]["bytes"],
                           "resident": p["value"]["resident"]})


def test_page_self_contained_and_drawn():
    """No URL, the CSP, a bounded size, the same page from a gcore core of
    the process as its CLI reports of that core give, and a screenshot
    that is not blank."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    if path is None:
        pytest.skip("no CPython")
    with start(path) as t:
        core = t.gcore()
        page = os.path.join(t.workdir, "core.html")
        data = write_report(core, page)
        cli = cli_reports(data, core)
    for key, doc in cli.items():
        assert data["reports"][key] == doc, key
    assert data["source"] == "core " + core
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert "http://" not in text and "https://" not in text
    assert CSP in text
    assert text.count("<script") == 2           # the data, the inline script
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text)
    assert not re.search(r"\ssrc\s*=", text)
    assert os.path.getsize(page) < PAGE_MAX
    # No request when Chromium loads it; the same net log sees a page's
    # requests (a copy without the CSP that fetches), and the CSP refuses
    # them (a copy with it that tries the same).
    assert page_requests(page, t.workdir) == []
    fetching = "<img src=\"http://127.0.0.1:9/i.png\"><script>fetch(\"http://127.0.0.1:9/f\")" \
               "</script></body>"
    control = os.path.join(t.workdir, "control.html")
    with open(control, "w", encoding="utf-8") as f:
        f.write(text.replace(CSP, "").replace("</body>", fetching))
    assert page_requests(control, t.workdir) == ["http://127.0.0.1:9/f",
                                                 "http://127.0.0.1:9/i.png"]
    refused = os.path.join(t.workdir, "refused.html")
    with open(refused, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", fetching))
    assert page_requests(refused, t.workdir) == []
    # a "<" of target data cannot end the data element: every one escaped
    inner = re.search(r'id="pm-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in inner
    # Sorting: a copy of the page clicks the summary's bytes column once
    # (largest first) and its kind column twice (A to Z), after the page
    # drew itself, and the DOM shows the rows in those orders.
    sorted_page = os.path.join(t.workdir, "sorted.html")
    click = ("<script>(function () {"
             "var t = document.querySelector('table[data-table=summary]');"
             "var th = t.querySelectorAll('th');"
             "function col(k) { for (var i = 0; i < th.length; i++)"
             " if (th[i].getAttribute('data-col') === k) return th[i]; }"
             "col('bytes').click();"
             "var b = [].map.call(t.tBodies[0].rows, function (r) {"
             " return r.querySelector('td[data-col=bytes]').getAttribute('data-v'); });"
             "col('kind').click(); col('kind').click();"
             "var k = [].map.call(t.tBodies[0].rows, function (r) {"
             " return r.querySelector('td[data-col=kind]').textContent; });"
             "var ordered = k.every(function (x, i) {"
             " return i === 0 || k[i - 1].localeCompare(x) <= 0; });"
             "document.body.setAttribute('data-sorted',"
             " JSON.stringify({bytes: b, kinds: k, ordered: ordered}));"
             "})();</script></body>")
    with open(sorted_page, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", click))
    dom = browse(sorted_page, t.workdir, "--dump-dom")
    m = re.search(r'data-sorted="([^"]*)"', dom)
    assert m, "the sorting script did not run"
    order = json.loads(html.unescape(m.group(1)))
    rows = cli["summary"]["rows"]
    assert [int(b) for b in order["bytes"]] == sorted((r["bytes"] for r in rows), reverse=True)
    kinds = order["kinds"]
    assert sorted(kinds) == sorted(r["kind"] for r in rows)
    assert order["ordered"], kinds        # A to Z as the page compares text
    shot = os.path.join(t.workdir, "report.png")
    browse(page, t.workdir, "--screenshot=" + shot, "--window-size=1400,1000",
           "--hide-scrollbars")
    (w, h), colours = png_colours(shot)
    assert (w, h) == (1400, 1000)
    assert len(colours) > 50, len(colours)


def test_bad_arguments():
    """No -o, an unwritable place, no such target: one error line each,
    and no file left behind."""
    proc = harness.run_cli("report", "1", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "pymortem: error: report needs -o FILE: where to write the HTML page\n"
    proc = harness.run_cli("report", "-o", "/nonexistent-dir/r.html", "1", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("pymortem: error: cannot write /nonexistent-dir/r.html: "
                           "No such file or directory\n")
    work = tempfile.mkdtemp(prefix="pm-report-")
    try:
        out = os.path.join(work, "r.html")
        missing = os.path.join(work, "no-such-core")
        proc = harness.run_cli("report", "-o", out, missing, check=False)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and missing in proc.stderr, proc.stderr
        proc = harness.run_cli("report", "-o", work, missing, check=False)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "is a directory" in proc.stderr
        assert os.listdir(work) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_gdb_heap_report():
    """`heap report FILE` in GDB writes the page of the same reports as
    the CLI's for the process; a bad FILE is one error line."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    if path is None:
        pytest.skip("no CPython")
    if harness.binding_sanitized():
        pytest.skip("sanitizer build: GDB cannot load the binding (as test_gdb.py)")
    plugin = os.path.join(harness.build_dir(), "gdbplugin", "pymortem-gdb.py")
    gdb = shutil.which("gdb")
    if not gdb:
        pytest.skip("gdb is not installed")
    with start(path) as t:
        page = os.path.join(t.workdir, "gdb.html")
        proc = subprocess.run(
            [gdb, "-nx", "-q", "-batch", "-ex", "set sysroot /",
             "-ex", "source " + plugin, "-p", str(t.pid),
             "-ex", "heap report " + page,
             "-ex", "heap report /nonexistent-dir/r.html",
             "-ex", "heap report"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, errors="backslashreplace",
            timeout=300, stdin=subprocess.DEVNULL)
        t.ensure_stopped()
        assert "report written to %s" % page in proc.stdout, proc.stdout + proc.stderr
        assert "heap report: cannot write /nonexistent-dir/r.html: No such file or directory\n" \
            in proc.stderr, proc.stderr
        assert "heap report: which file? (heap report FILE)\n" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        data = page_data(page)
        cli = cli_reports(data, t.pid)
        t.ensure_stopped()
    assert data["source"] == "process %d" % t.pid
    # GDB hands the library its own symbol lookup: info names it as where
    # the symbols were found ("debugger"); everything else is the CLI's.
    for doc in (data["reports"]["info"], cli["info"]):
        for sym in doc["symbols"].values():
            if sym:
                sym.pop("source")
    for key, doc in cli.items():
        assert data["reports"][key] == doc, key


BINDING_SCRIPT = r'''
import json, sys
sys.path.insert(0, PACKAGE_DIR)
import _pymortem as pm
out = {}
target = pm.open_pid(PID)
out["pid"] = target.report_html(source="pid %d" % PID)
mem = open("/proc/%d/mem" % PID, "rb", buffering=0)
def read(addr, length):
    mem.seek(addr)
    return mem.read(length)
with open("/proc/%d/maps" % PID) as f:
    maps = f.read()
callback = pm.open_callback(read, maps, PID)
out["callback"] = callback.report_html()
target.close()
try:
    target.report_html()
except pm.Error as e:
    out["closed"] = str(e)
print(json.dumps(out))
'''


def test_binding_report_html():
    """Target.report_html in a plain /usr/bin/python3 (under ASan in a
    sanitizer build), on a pid and on a memory callback: the page embeds
    the CLI's summaries of the process; a closed target is an error."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    if path is None:
        pytest.skip("no CPython")
    binding = os.path.join(harness.build_dir(), "gdbplugin", "pymortem", "_pymortem.abi3.so")
    env = dict(os.environ)
    ldd = subprocess.run(["ldd", binding], stdout=subprocess.PIPE,
                         universal_newlines=True, errors="backslashreplace").stdout
    for line in ldd.splitlines():
        if "libasan" in line and "=>" in line:
            env["LD_PRELOAD"] = line.split("=>")[1].split()[0]
            env["ASAN_OPTIONS"] = "detect_leaks=0"
    with start(path) as t:
        script = "PACKAGE_DIR = %r\nPID = %d\n" % (os.path.dirname(binding), t.pid) + \
            BINDING_SCRIPT
        proc = subprocess.run(["/usr/bin/python3", "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              errors="backslashreplace", env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert "ERROR: AddressSanitizer" not in proc.stderr
        assert "runtime error" not in proc.stderr, proc.stderr
        out = json.loads(proc.stdout)
        cli = {key: harness.cli_json(*command.split()[1:], t.pid)
               for key, command in (("summary", "pymortem summary --top 300 --json"),
                                    ("owners", "pymortem summary --by owner --top 300 --json"),
                                    ("waste", "pymortem waste --top 10 --json"))}
        t.ensure_stopped()
    assert "closed" in out["closed"]
    for kind in ("pid", "callback"):
        page = os.path.join(t.workdir, kind + ".html")
        with open(page, "w", encoding="utf-8") as f:
            f.write(out[kind])
        data = page_data(page)
        assert data["source"] == ("pid %d" % t.pid if kind == "pid" else None)
        for key, doc in cli.items():
            # A callback target given no threads knows no thread ids: a
            # path through a frame says "thread 0" where the CLI says the
            # LWP (checked: the only difference).
            if kind == "callback" and key == "waste":
                continue
            assert data["reports"][key] == doc, (kind, key)


def test_non_python_process():
    """A C program (tests/targets/glibc_workload.c): the page has the
    glibc-only summary and says on their parts that the Python reports
    have nothing to show; it still draws."""
    program = os.path.join(harness.build_dir(), "tests", "targets", "glibc_workload")
    with harness.start_stopped([program]) as t:
        page = os.path.join(t.workdir, "c.html")
        data = write_report(t.pid, page)
        summary = harness.cli_json("summary", "--top", "300", "--json", t.pid)
        t.ensure_stopped()
    assert data["reports"]["summary"] == summary
    for key in ("retained", "suspects", "waste"):
        assert "not a CPython process" in data["reports"][key]["error"], key
    dom_text = browse(page, t.workdir, "--dump-dom")
    assert 'data-drawn="yes"' in dom_text
    assert dom_text.count('<p class="error">') == 3
    dom = Dom()
    dom.feed(dom_text)
    check_treemap(dom, data["reports"]["owners"])


GROW = os.path.join(harness.TARGETS_DIR, "py_grow.py")


class GrowthBars(html.parser.HTMLParser):
    """The Growth chart's bars: (bytes change, width) each."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.bars = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "rect" and "data-bytes-delta" in a:
            self.bars.append((int(a["data-bytes-delta"]), float(a["width"])))


def test_growth_section():
    """report -o FILE BEFORE AFTER on two gcore cores of the process of
    tests/targets/py_grow.py, before and after it made N instances, M strs
    and K floats: the page embeds exactly `pymortem diff --json --top 300
    --limit 5 BEFORE AFTER`, whose Growth row grew by N; the rendered
    Growth table shows every changed row's figures and the new allocations
    by type; each bar's width is its bytes' change over the largest one's."""
    path = next((p for _, p in harness.PYTHONS if p), None)
    assert path, "no CPython found"
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    with harness.start_stopped([path, GROW], env=env) as t:
        before = t.gcore("before")
        test_diff.grow(t)
        after = t.gcore("after")
        n = t.oracle["n"]
        page = os.path.join(t.workdir, "growth.html")
        proc = harness.run_cli("report", "-o", page, before, after)
        assert proc.stdout.startswith("report of core %s" % after), proc.stdout
        data = page_data(page)
        words = data["diff_command"].split()
        assert words[:2] == ["pymortem", "diff"] and words[-1] == "BEFORE"
        diff = harness.cli_json(*(words[1:-1] + [before, after]))
        assert data["diff"] == diff
        rows = {(r["domain"], r["kind"]): r for r in diff["rows"]}
        assert rows[("python", "Growth")]["count_delta"] == n["Growth"]
        # the rest of the page is the after core's
        assert data["reports"]["summary"] == harness.cli_json(
            *(data["commands"]["summary"].split()[1:] + [after]))
        dom_text = browse(page, t.workdir, "--dump-dom")
    assert 'data-drawn="yes"' in dom_text and "could not draw" not in dom_text.replace(
        '"could not draw a section: "', "")
    dom = Dom()
    dom.feed(dom_text)
    dom.close()
    changed = [r for r in diff["rows"] if r["count_delta"] or r["bytes_delta"]]
    assert changed
    check_table(dom, "diff", changed,
                lambda r: {"domain": r["domain"], "kind": r["kind"], "detail": r["detail"],
                           "count_before": r["count_before"], "count_after": r["count_after"],
                           "bytes_before": r["bytes_before"], "bytes_after": r["bytes_after"]})
    for cells, r in zip(dom.tables["diff"], changed):
        for col in ("count_delta", "bytes_delta"):
            text, v = cells[col]
            assert int(v) == r[col] and text == ("+" if r[col] > 0 else "") + grouped(r[col])
    check_table(dom, "diff-new", diff["new"]["by_category"],
                lambda c: {"domain": c["domain"], "kind": c["kind"], "count": c["count"],
                           "bytes": c["bytes"]})
    assert 'data-total-bytes-delta="%d"' % diff["total"]["bytes_delta"] in dom_text
    bars = GrowthBars()
    bars.feed(dom_text)
    assert [b for b, _ in bars.bars] == [r["bytes_delta"] for r in changed[:20]]
    largest = max(abs(b) for b, _ in bars.bars)
    widest = max(w for _, w in bars.bars)
    for b, w in bars.bars:
        assert abs(w - widest * abs(b) / largest) < 0.01, (b, w)
