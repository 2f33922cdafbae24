"""The reference graph against what the frozen process itself says, for
every installed CPython with pymalloc, PYTHONMALLOC=malloc and -X dev, live,
from a gcore and from a kernel core, with and without debug information:

- referents: for objects of every kind the graph reads precisely, the
  references it marks as visited by tp_traverse are exactly
  gc.get_referents(o) (by id); those it reads but CPython's traversal
  leaves out are kinds documented in lib/graph_referents.c (a dict's str
  keys, a module's name, a heap type's names and subclasses, a code
  object's fields: code is no GC object);
- referrers: the GC objects referring to a sample are gc.get_referrers(o);
- paths: sentinels planted at known places (a module global, a list in an
  attribute, a closure cell, a generator's local, a class attribute, a
  slot) are reached from sys.modules through exactly the objects whose ids
  the process recorded along the way; a thread's local is named as that
  thread's frame's local;
- held from outside: objects given an extra reference with Py_IncRef and
  dropped are listed as held from outside the heap with no root found,
  their kept twins are not (one a stale word still points at, in a C
  stack or a C library's buffer, is shown held by that word, whose
  address the path gives and whose value /proc/PID/mem confirms);
- retained: the objects a cache dict, a tree of slotted nodes, a subtree
  and two lists sharing an object dominate are those the process finds by
  its own dominator computation over gc.get_referents (and dict keys); the
  trees retain exactly their objects' allocations (by the allocators'
  size rules from sys.getsizeof);
- unreachable: the garbage cycles the process left (gc disabled) are what
  gc.collect() frees when asked after the analysis: the same count, type
  by type (gc.DEBUG_SAVEALL keeps them in gc.garbage to count);
  afterwards nothing is unreachable.

The ASan build runs test_graph for the oldest, the newest and the system's
interpreter only (conftest.python_params): it costs about 10 s per
interpreter and mode in the plain build, half a minute under ASan.
"""

import json
import os
import signal
import time

import pytest

import harness
from conftest import python_params

MODES = harness.ALLOCATOR_MODES
LEAKS = 12
GARBAGE = 30
ALL = "1000000000"
# Objects the interpreter itself leaves held from outside the heap with no
# root (CPython 3.8 leaks a reference to its _warnings module at start-up).
BASELINE_OUTSIDE = 2


def start(path, mode):
    return harness.start_workload(path, mode, 100, "--graph", "--leak-refs", LEAKS,
                                  "--garbage", GARBAGE)


def graph(where, extra):
    """{address: node} of `graph --json`, each node with its edges as
    (target address, kind, traversed)."""
    doc = harness.cli_json("graph", "--json", *extra, where)
    objects = doc["objects"]
    nodes = {}
    for o in objects:
        o["out"] = [(objects[t]["address"], kind, traversed)
                    for t, kind, traversed in o["edges"]]
        nodes[o["address"]] = o
    return nodes


WEAK = 12


def check_referents(truth, nodes, where=None):
    for name, want in truth.items():
        node = nodes.get(want["id"])
        assert node, (name, want["type"], "not a node", where)
        got = sorted(set(a for a, _, traversed in node["out"] if traversed))
        if not want["have_gc"]:
            assert got == [], (name, got)
            continue
        assert got == want["referents"], (name, want["type"], where,
                                          sorted(set(got) - set(want["referents"])),
                                          sorted(set(want["referents"]) - set(got)))


def check_referrers(truth, oracle, nodes):
    ids = {name: oracle["graph_referents"][name]["id"] for name in truth}
    for name, want in truth.items():
        target = ids[name]
        got = sorted(a for a, n in nodes.items()
                     if n["tracked"] and any(t == target and traversed
                                             for t, _, traversed in n["out"]))
        assert got == want, (name, sorted(set(got) - set(want)),
                             sorted(set(want) - set(got)))


def check_paths(oracle, where, extra):
    for name, chain in oracle["graph_paths"].items():
        p = harness.cli_json("path", "--json", *extra, hex(chain[-1]), where)
        assert p["held"] == "root" and p["root"] == "sys.modules", (name, p)
        walked = [p["steps"][0]["from"]] + [s["to"] for s in p["steps"]]
        assert walked == chain, (name, p["text"])
    th = oracle["graph_thread"]
    p = harness.cli_json("path", "--json", *extra, hex(th["sentinel"]), where)
    assert p["held"] == "root", p
    assert p["root"].startswith("thread %d frame " % th["native_id"]), p
    if th["frames"]:
        # Frames are objects (3.8-3.10): from the thread's top frame down
        # to the worker's, whose local holds the sentinel.
        walked = [p["steps"][0]["from"]] + [s["to"] for s in p["steps"]]
        assert walked == th["frames"] + [th["sentinel"]], p["text"]
        assert p["steps"][-1]["how"] == " local 'local_sentinel'", p
    else:
        assert p["steps"] == [], p["text"]
        assert p["root"].endswith("local 'local_sentinel'"), p


# Of the LEAKS objects, how many a stale word may hide: a word the program
# left behind (a C stack slot of a frame still running, a C library's
# buffer reused without clearing) that still holds the address is, read
# from memory alone, a reference like any other.
STALE_WORDS_MAX = 2


def check_outside(oracle, where, extra, pid, stale):
    """stale: {leaked address: word address} that the first call (live)
    found and checked in the process's own memory; later calls (the core
    of the same stopped process) must find the same words."""
    r = harness.cli_json("outside", "--json", "--limit", ALL, *extra, where)
    listed = {o["address"] for o in r["objects"]}
    leaks = oracle["leak_refs"]
    hidden = {}
    for a in sorted(set(leaks["leaked"]) - listed):
        p = harness.cli_json("path", "--json", *extra, hex(a), where)
        assert p["held"] == "root" and p["root_word"] is not None, (hex(a), p)
        hidden[a] = p["root_word"]
    if not stale and hidden:
        assert where == str(pid), "the live read found no stale words: " + repr(hidden)
        assert len(hidden) <= STALE_WORDS_MAX, hidden
        with open("/proc/%d/mem" % pid, "rb") as mem:
            for a, word in hidden.items():
                mem.seek(word)
                assert int.from_bytes(mem.read(8), "little") == a, (hex(a), hex(word))
        stale.update(hidden)
    assert hidden == stale, (where, extra, hidden, stale)
    assert not listed & set(leaks["kept"])
    assert len(listed) - LEAKS <= BASELINE_OUTSIDE, r["objects"]
    for o in r["objects"]:
        if o["address"] in leaks["leaked"]:
            assert (o["refcount"], o["found"]) == (1, 0), o


def debug_hooks(oracle, mode):
    """Whether the process's allocators have the debug hooks: -X dev, and
    a pydebug build's default allocator (pymalloc_debug; PYTHONMALLOC=
    malloc takes them off)."""
    return mode == "dev" or (mode == "pymalloc" and
                             oracle["version"]["debug_build"])


def alloc_bytes(size, mode, hooks):
    """What an object of sys.getsizeof() == size occupies in its allocator
    (shared/reference/cpython-memory.md): the debug hooks add a 16-byte
    header and 8-byte trailer; pymalloc serves up to 512 bytes in
    16-byte steps; glibc takes the size plus 8, in 16-byte steps, 32 at
    least."""
    if hooks:
        size += 24
    if mode != "malloc" and size <= 512:
        return (size + 15) & ~15
    return max(32, (size + 8 + 15) & ~15)


def check_retained(oracle, where, extra, mode):
    """Retained sets equal the process's own dominator computation; a
    tree of slotted nodes retains exactly its objects' allocations; an
    object held by two lists is retained by neither."""
    truth = oracle["graph_retention"]
    for name, dominated in truth["dominated"].items():
        r = harness.cli_json("retained", "--json", "--limit", ALL, *extra,
                             hex(truth[name]), where)
        got = set(r["dominated"]) | {r["object"]["address"]}
        assert got == set(dominated), (name, sorted(got - set(dominated)),
                                       sorted(set(dominated) - got))
        assert r["object"]["count"] == len(dominated), name
        if name in ("tree", "subtree"):
            hooks = debug_hooks(oracle, mode)
            want = sum(a["chunk"] if "chunk" in a else alloc_bytes(a["size"], mode, hooks)
                       for a in truth[name + "_sizes"])
            assert r["object"]["retained"] == want, name
            # its own bytes: the first entry, the node's allocation (a
            # slotted object owns no buffer)
            root = truth[name + "_sizes"][0]
            assert r["object"]["own"] == (root["chunk"] if "chunk" in root else
                                          alloc_bytes(root["size"], mode, hooks)), name
            described = harness.cli_json("describe", "--json", *extra, hex(truth[name]),
                                         where)["graph"]
            assert (described["retained"], described["retained_count"]) == \
                (want, len(dominated)), name
    for holder in ("a", "b"):
        assert truth["shared"] not in truth["dominated"][holder]


def check_retained_lists(oracle, where, extra):
    """The retained list puts the planted leak first, named by its path,
    and shows no namespace (module, class, their dicts); the first leak
    suspect is the leak; summary --by retainer gives it its retained bytes
    and count, and its rows add up to summary's TOTAL."""
    truth = oracle["graph_retention"]
    namespaces = set(truth["namespaces"])
    top = harness.cli_json("retained", "--json", "--top", "25", *extra, where)["objects"]
    assert top[0]["address"] == truth["leak"], top[0]
    assert top[0]["path"] == truth["leak_path"], top[0]
    assert not [o for o in top if o["address"] in namespaces], top
    leak = harness.cli_json("retained", "--json", *extra, hex(truth["leak"]), where)["object"]
    suspects = harness.cli_json("suspects", "--json", *extra, where)["suspects"]
    assert suspects and suspects[0]["object"] == leak, suspects[:1]
    assert suspects[0]["text"].startswith(
        "a dict at %s retains " % truth["leak_path"]), suspects[0]["text"]
    by_retainer = harness.cli_json("summary", "--json", "--by", "retainer", *extra, where)
    rows = [r for r in by_retainer["rows"] if r["kind"] == truth["leak_path"]]
    assert len(rows) == 1 and rows[0]["bytes"] == leak["retained"], rows
    # its allocations: the objects it dominates (the dict, each key and
    # value) and the dict's keys table
    assert rows[0]["count"] == len(truth["dominated"]["leak"]) + 1, rows
    by_type = harness.cli_json("summary", "--json", *extra, where)
    assert sum(r["bytes"] for r in by_retainer["rows"]) == by_type["total"]["bytes"]
    assert by_retainer["total"] == by_type["total"]


def unreachable(where, extra):
    r = harness.cli_json("unreachable", "--json", *extra, where)
    return r["total"]["count"], {row["type"]: row["count"] for row in r["rows"]}


def collect_in_process(t):
    """Makes the stopped workload run gc.collect() once and stop again;
    returns what it wrote (collected, by_type)."""
    trigger = t.oracle_path + ".collect"
    result = t.oracle_path + ".collected"
    with open(trigger, "w"):
        pass
    os.kill(t.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while not os.path.exists(result):
        assert time.monotonic() < deadline, "gc.collect() result not written"
        time.sleep(0.05)
    t.ensure_stopped()
    with open(result) as f:
        return json.load(f)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("python", python_params(sanitizer_subset=True))
def test_graph(python, mode, kernel_cores):
    label, path = python
    assert path, "no CPython 3.8-3.13 found"
    with start(path, mode) as t:
        oracle = t.oracle
        with open(t.oracle_path + ".garbage") as f:
            assert int(f.read()) == GARBAGE
        core = t.gcore()
        seen = {}
        stale_words = {}
        for where in (str(t.pid), core):
            for extra in ([], ["--no-debuginfo"]):
                nodes = graph(where, extra)
                check_referents(oracle["graph_referents"], nodes, (where, extra))
                check_referrers(oracle["graph_referrers"], oracle, nodes)
                check_paths(oracle, where, extra)
                check_outside(oracle, where, extra, t.pid, stale_words)
                check_retained(oracle, where, extra, mode)
                check_retained_lists(oracle, where, extra)
                seen[(where, tuple(extra))] = unreachable(where, extra)
        truth = collect_in_process(t)
        assert truth["collected"] > GARBAGE
        for key, (count, by_type) in seen.items():
            assert count == truth["collected"], key
            assert by_type == truth["by_type"], key
        # Collected (and kept in gc.garbage): nothing unreachable now.
        after = t.kernel_core()
        assert unreachable(after, [])[0] == 0


def test_gdb_graph_commands_equal_cli():
    """heap referrers/referents/path/unreachable/outside/retained/suspects
    and summary --by retainer in GDB print what the CLI prints for the same
    stopped process (the GDB layer only maps commands to these reports);
    the path is the planted one."""
    from test_gdb import gdb_drive
    label, path = harness.PYTHONS[-1]
    with start(path, "pymalloc") as t:
        chain = t.oracle["graph_paths"]["global"]
        target, holder = hex(chain[-1]), hex(chain[-2])
        cache = hex(t.oracle["graph_retention"]["cache"])
        pairs = [
            ("heap path %s --json" % target, ["path", target]),
            ("heap referrers %s --json" % target, ["referrers", target]),
            ("heap referents %s --json" % holder, ["referents", holder]),
            ("heap unreachable --json", ["unreachable"]),
            ("heap outside --limit 5 --json", ["outside", "--limit", "5"]),
            ("heap retained --top 5 --json", ["retained", "--top", "5"]),
            ("heap retained %s --json" % cache, ["retained", cache]),
            ("heap suspects --threshold 0.5 --json",
             ["suspects", "--threshold", "0.5"]),
            ("heap summary --by retainer --top 10 --json",
             ["summary", "--by", "retainer", "--top", "10"]),
        ]
        results = gdb_drive(["-p", t.pid], [("cmd", c) for c, _ in pairs])
        t.ensure_stopped()
        for cmd, cli in pairs:
            assert "output" in results[cmd], results[cmd]
            got = json.loads(results[cmd]["output"])
            assert got == harness.cli_json("--json", *cli, t.pid), cmd
        walked = json.loads(results[pairs[0][0]]["output"])
        assert [walked["steps"][0]["from"]] + \
            [s["to"] for s in walked["steps"]] == chain


BIG_CONTAINER = r"""
import json, os, signal, sys
n = int(sys.argv[1])
big_dict = {"key-%d" % i: [i] for i in range(n)}
del big_dict["key-1"]           # a deleted entry: its slot holds no reference
big_list = [str(i) * 2 for i in range(n)]
with open(os.environ["PM_ORACLE_FILE"], "w") as f:
    json.dump({"dict": id(big_dict), "list": id(big_list),
               "keys": [[id(k), k, id(v)] for k, v in big_dict.items()],
               "items": [id(x) for x in big_list]}, f)
os.kill(os.getpid(), signal.SIGSTOP)
"""


@pytest.mark.parametrize("python", python_params(sanitizer_subset=True))
def test_referents_name_every_edge_of_a_big_container(python, tmp_path):
    """`referents` of a dict of 100,000 entries and a list of 100,000 items
    names each edge as the process holds it: every key edge and then its
    value edge ['key-i'], in the dict's order, and [i] for the list's i-th
    item, by id. The graph keeps no labels and reads the container again
    to name them: once for all its edges (read once per edge, this report
    took hours)."""
    label, path = python
    script = tmp_path / "big_container.py"
    script.write_text(BIG_CONTAINER)
    with harness.start_stopped([path, str(script), "100000"]) as t:
        truth = t.oracle
        got = harness.cli_json("referents", "--json", str(truth["dict"]), t.pid)["referents"]
        want = []
        for key_id, key, value_id in truth["keys"]:
            want.append((key_id, "dict key"))
            want.append((value_id, "dict value", "[%r]" % key))
        seen = [(r["address"], r["kind"]) if r["kind"] == "dict key" else
                (r["address"], r["kind"], r["how"]) for r in got]
        assert seen == want, next((i, s, w) for i, (s, w) in enumerate(zip(seen, want))
                                  if s != w) if len(seen) == len(want) else len(seen)
        got = harness.cli_json("referents", "--json", str(truth["list"]), t.pid)["referents"]
        assert [(r["address"], r["how"]) for r in got] == \
            [(a, "[%d]" % i) for i, a in enumerate(truth["items"])]
