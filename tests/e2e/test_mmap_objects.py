"""The mappings mmap.mmap objects hold, labelled in `regions`
(lib/cpython_mmap.c), against what a frozen process says of its own
objects: tests/targets/py_mmap.py makes anonymous ones (shared: a page,
12345 bytes, 1 MiB, 3 MiB; one private, which the kernel merges into one
mapping with a neighbouring anonymous one: a library's .bss, or else two
pages the workload maps next to it for that), one of a whole file, one of a file at an offset, an
instance of a subclass, and one it closes; it reports each object's id(),
its type's tp_name, the data address (ctypes over its buffer) and len().
Live and from a gcore core, under every interpreter, with pymalloc,
PYTHONMALLOC=malloc and -X dev (the objects in pymalloc blocks, in glibc
chunks, behind the debug hooks' headers):

- every /proc/PID/maps entry (read by the harness, not by pymortem) that
  holds a page of an open object's [data, data + len rounded up to pages)
  is a region whose JSON owners name that object (owner its id(), type,
  start the data address, size its len()) with exactly the bytes of the
  entry it covers, and whose areas count those bytes as "mmap.mmap"; a
  mapping that is the whole entry is labelled "mmap.mmap (object 0x<id>)"
  in the text report too;
- no other object is anyone's owner (exactly those, so an owner pymortem
  made up fails), and the closed object is none;
- the private one's maps entry is larger than its mapping (a premise,
  checked) and its region counts only the object's pages;
- a file mapping at an offset is the region whose maps offset is the one
  the process asked for.
In GDB (`heap regions --json` on the gcore core) the same holds. With
--corrupt, objects whose data, size or offset fields the process itself
overwrote (misaligned, unmapped, too large, not the file's offset, two
given one mapping) own nothing and their mappings are not labelled.
"""

import json
import os
import shutil

import pytest

import harness
from conftest import python_params

WORKLOAD = os.path.join(harness.TARGETS_DIR, "py_mmap.py")
LABEL = "mmap.mmap"


def pages(n, page):
    return (n + page - 1) // page * page


def pieces(maps, start, end):
    """The maps entries [start, end) reaches into: (entry, bytes in it)."""
    return [(m, min(m["end"], end) - max(m["start"], start)) for m in maps
            if m["start"] < end and m["end"] > start]


def check_regions(doc, text, truth, maps):
    page = truth["page"]
    by_start = {r["start"]: r for r in doc["regions"]}
    problems = []
    for obj in truth["open"]:
        end = obj["data"] + pages(obj["size"], page)
        held = pieces(maps, obj["data"], end)
        if not held:
            problems.append("%s: no maps entry holds 0x%x" % (obj["what"], obj["data"]))
        for m, nbytes in held:
            r = by_start.get(m["start"])
            if r is None or r["end"] != m["end"]:
                problems.append("%s: maps entry %x-%x is no region" % (
                    obj["what"], m["start"], m["end"]))
                continue
            owners = [o for o in r.get("owners", []) if o["owner"] == obj["id"]]
            want = {"owner": obj["id"], "type": obj["type"],
                    "start": obj["data"], "size": obj["size"], "bytes": nbytes}
            if owners != [want]:
                problems.append("%s: region %x-%x owners %s, want %s" % (
                    obj["what"], r["start"], r["end"], r.get("owners"), want))
            area = [a for a in r["areas"] if a["label"] == LABEL]
            if not area or area[0]["bytes"] < nbytes:
                problems.append("%s: region %x-%x areas %s" % (
                    obj["what"], r["start"], r["end"], r["areas"]))
            if (m["start"], m["end"]) == (obj["data"], end):
                label = "%s (object 0x%x)" % (LABEL, obj["id"])
                if r["label"] != label:
                    problems.append("%s: label %r, want %r" % (obj["what"], r["label"], label))
                line = "0x%x " % m["start"]
                rows = [l for l in text.splitlines() if l.startswith(line)]
                if len(rows) != 1 or label not in rows[0]:
                    problems.append("%s: text rows %s" % (obj["what"], rows))
        if obj["what"] == "private" and not (
                len(held) == 1 and held[0][0]["size"] > held[0][1]):
            problems.append("the premise: the private mmap's maps entry is "
                            "larger than its mapping: %s (C's pages next to "
                            "it: %s)" % ([(m["start"], m["end"]) for m, _ in held],
                                          truth["neighbour"]))
        if obj["what"] == "file at offset":
            first = held[0][0] if held else {}
            if first.get("offset") != 2 * truth["granule"]:
                problems.append("file at offset: maps offset %s" % first.get("offset"))
    # Exactly those objects own mappings, each all its pages.
    owned = {}
    for r in doc["regions"]:
        for o in r.get("owners", []):
            owned[o["owner"]] = owned.get(o["owner"], 0) + o["bytes"]
    want = {obj["id"]: pages(obj["size"], page) for obj in truth["open"]}
    if owned != want:
        problems.append("owners %s, want %s" % (owned, want))
    for obj in truth.get("corrupt", []):
        if obj["id"] in owned:
            problems.append("corrupted (%s) object owns %s" % (obj["what"], owned[obj["id"]]))
        for m, _ in pieces(maps, obj["data"], obj["data"] + pages(obj["size"], page)):
            r = by_start.get(m["start"])
            if r and (r.get("owners") or any(a["label"] == LABEL for a in r["areas"])):
                problems.append("corrupted (%s): region %x-%x labelled %r, owners %s" % (
                    obj["what"], r["start"], r["end"], r["label"], r.get("owners")))
    if truth["closed"]["id"] in owned:
        problems.append("the closed object owns %s" % owned[truth["closed"]["id"]])
    labelled = sum(a["bytes"] for r in doc["regions"] for a in r["areas"]
                   if a["label"] == LABEL)
    if labelled != sum(want.values()):
        problems.append("%d bytes labelled %s, want %d" % (labelled, LABEL,
                                                           sum(want.values())))
    assert not problems, "\n".join(problems)


def start(path, mode="pymalloc", *args):
    flags, extra_env = harness.ALLOCATOR_MODES[mode]
    env = dict(os.environ, **extra_env)
    env.pop("MALLOC_PERTURB_", None)
    return harness.start_stopped([path] + flags + [WORKLOAD] + list(args), env=env)


@pytest.mark.parametrize("mode", list(harness.ALLOCATOR_MODES))
@pytest.mark.parametrize("python", python_params())
def test_mmap_mappings_labelled(python, mode):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode) as t:
        truth = t.oracle
        assert len(truth["open"]) >= 8, truth
        assert [o for o in truth["open"] if o["what"] == "private"], \
            "no private mmap merged with a neighbour: the premise is missing"
        assert all(o["data"] % truth["page"] == 0 for o in truth["open"])
        for where in (t.pid, t.gcore()):
            doc = harness.cli_json("regions", "--json", where)
            text = harness.run_cli("regions", where).stdout
            check_regions(doc, text, truth, t.maps)
    shutil.rmtree(t.workdir, ignore_errors=True)


@pytest.mark.parametrize("python", python_params(sanitizer_subset=True))
def test_corrupted_mmap_objects_left_out(python):
    """Objects whose fields the process overwrote (py_mmap.py --corrupt)
    own nothing, their mappings unlabelled; the rest are labelled as
    ever."""
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, "pymalloc", "--corrupt") as t:
        truth = t.oracle
        assert len(truth["corrupt"]) == 6, truth["corrupt"]
        for where in (t.pid, t.gcore()):
            doc = harness.cli_json("regions", "--json", where)
            text = harness.run_cli("regions", where).stdout
            check_regions(doc, text, truth, t.maps)
    shutil.rmtree(t.workdir, ignore_errors=True)


def test_mmap_mappings_labelled_gdb():
    """`heap regions` in GDB, on a gcore core of the workload."""
    import test_gdb
    label, path = harness.PYTHONS[-1] if harness.PYTHONS else (None, None)
    if not path or shutil.which(test_gdb.GDB or "gdb") is None:
        pytest.fail("needs a CPython and GDB")
    if harness.is_chroot_python(path):
        path = [p for _, p in harness.PYTHONS if not harness.is_chroot_python(p)][-1]
    with start(path) as t:
        truth = t.oracle
        core = t.gcore()
        results = test_gdb.gdb_drive([path, core], [("cmd", "heap regions --json"),
                                                    ("cmd", "heap regions")])
        assert "output" in results["heap regions --json"], results
        doc = json.loads(results["heap regions --json"]["output"])
        check_regions(doc, results["heap regions"]["output"], truth, t.maps)
        assert doc == harness.cli_json("regions", "--json", core)
    shutil.rmtree(t.workdir, ignore_errors=True)
