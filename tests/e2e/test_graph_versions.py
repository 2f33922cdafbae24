"""Reference-graph facts whose layout moved in CPython 3.14 and 3.15,
checked in every run (not only with PYMORTEM_CHROOT_MATRIX=1) on the
Debian unstable chroot's 3.14 and 3.15 and on the newest other installed
interpreter, each against what the frozen process says of itself
(tests/targets/py_graph_versions.py), live and from a gcore core:

- a module's references: those its tp_traverse visits are exactly
  gc.get_referents(module); its name (md_name, 40 bytes in on 3.15, 48
  before) is an untraversed reference to the id of its __name__, and no
  word of it is read as a reference to a non-object (3.15's
  md_token_is_def, where 3.14's md_name was, reads as 0x1);
- the path to a list only the module holds is
  sys.modules['<its key in sys.modules>'].__dict__['held'], through the
  ids the process recorded;
- on 3.15 a bytearray's bytes object (found with ctypes from its buffer)
  is reached through the bytearray and not listed as held from outside;
- a frame object whose f_locals got a name its code lacks and a new
  value for one it has: the references its tp_traverse visits are
  gc.get_referents(frame) (3.13+ keep the name in f_extra_locals, 3.14+
  the replaced value in f_overwritten_fast_locals).

The chroot's interpreters FAIL when it is missing (tests/setup-debian.sh
builds it), unless PYMORTEM_NO_CHROOT=1, which skips them. An ASan build
runs the chroot's 3.15 only."""

import os

import pytest

import harness

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", "targets", "py_graph_versions.py")
CHROOT_PYTHONS = ("3.14", "3.15")


def chroot_missing(version):
    """Why the chroot's pythonX.Y cannot run the workload (None when it
    can)."""
    command = os.path.join(harness.CHROOT_BIN, "python" + version)
    inside = os.path.join(harness.CHROOT, "usr/bin/python" + version)
    if not (os.access(command, os.X_OK) and os.access(inside, os.X_OK)):
        return "no %s or %s" % (command, inside)
    return harness.chroot_unshared()


def version_key(label):
    """(3, 13, 0) of a label such as "3.13.0" or "3.11-debian"."""
    head = label.split("-")[0]
    return tuple(int(p) for p in head.split(".") if p.isdigit())


def pythons():
    """(label, command, why it cannot run): the chroot's 3.14 and 3.15
    and the newest interpreter the other tests found outside it."""
    params = []
    outside = [lp for lp in harness.PYTHONS if not harness.is_chroot_python(lp[1])]
    if outside and not harness.sanitizer_build():
        label, path = max(outside, key=lambda lp: version_key(lp[0]))
        params.append(pytest.param((path, None), id=label))
    versions = CHROOT_PYTHONS[-1:] if harness.sanitizer_build() else CHROOT_PYTHONS
    for v in versions:
        command = os.path.join(harness.CHROOT_BIN, "python" + v)
        marks, why = [], None
        if os.environ.get("PYMORTEM_NO_CHROOT") == "1":
            marks = [pytest.mark.skip(reason="PYMORTEM_NO_CHROOT=1")]
        else:
            why = chroot_missing(v)
            if why:
                why = "%s: %s (tests/setup-debian.sh builds the Debian " \
                      "unstable chroot)" % (command, why)
        params.append(pytest.param((command, why), id="%s-sid" % v, marks=marks))
    return params


def referents(where, addr):
    r = harness.cli_json("referents", "--json", hex(addr), where)
    return r, {(e["address"], e["traversed"]) for e in r["referents"]}


def check_module(o, where):
    r, edges = referents(where, o["module"])
    assert r["type"] == "module", r
    traversed = sorted(a for a, t in edges if t)
    assert traversed == o["referents"], (where, r)
    names = [e for e in r["referents"] if e["how"] == ".__name__"]
    assert [(e["address"], e["traversed"]) for e in names] == \
        [(o["name"], False)], (where, r)
    # The whole graph's warnings: none about a word of the module.
    g = harness.cli_json("graph", "--json", where)
    bad = [w for w in g.get("warnings", [])
           if isinstance(w, dict) and w.get("address") == o["module"]]
    assert not bad, bad

    assert o["modules_key"] == [o["name_text"]]
    p = harness.cli_json("path", "--json", hex(o["held"]), where)
    assert p["held"] == "root" and p["root"] == "sys.modules", p
    walked = [p["steps"][0]["from"]] + [s["to"] for s in p["steps"]]
    assert walked == o["path"], p["text"]
    assert p["text"].startswith("sys.modules[%r].__dict__['held'] -> list " %
                                o["modules_key"][0]), p["text"]


def check_bytearray(o, where):
    if o["bytearray_bytes"] is None:
        return                  # before 3.15: the data is a plain buffer
    assert o["bytes_type"]
    _, edges = referents(where, o["bytearray"])
    # bytearray has no tp_traverse: the reference is not a visited one
    assert (o["bytearray_bytes"], False) in edges, edges
    p = harness.cli_json("path", "--json", hex(o["bytearray_bytes"]), where)
    walked = [p["steps"][0]["from"]] + [s["to"] for s in p["steps"]]
    assert walked[-2:] == [o["bytearray"], o["bytearray_bytes"]], p["text"]
    outside = harness.cli_json("outside", "--json", "--limit", "1000000000", where)
    assert o["bytearray_bytes"] not in {x["address"] for x in outside["objects"]}


def check_frame(o, where):
    r, edges = referents(where, o["frame"])
    traversed = sorted(a for a, t in edges if t)
    assert traversed == o["frame_referents"], (where, r)


@pytest.mark.parametrize("python", pythons())
def test_graph_versions(python):
    path, why = python
    if why:
        pytest.fail(why)
    with harness.start_stopped([path, WORKLOAD]) as t:
        for where in (str(t.pid), t.gcore()):
            check_module(t.oracle, where)
            check_bytearray(t.oracle, where)
            check_frame(t.oracle, where)
