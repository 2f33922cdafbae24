"""The reference-graph part of py_workload.py: objects of every kind the
graph reads precisely, with what the interpreter itself says of them
(gc.get_referents, gc.get_referrers, ids along planted chains), objects
held only by references taken with the C API, and garbage cycles that
gc.collect() frees on request after the process was analysed.

Runs on CPython 3.8 to 3.13; standard library only."""

import array
import collections
import ctypes
import functools
import gc
import os
import sys
import threading
import types
import weakref

# Everything built here stays reachable from these until the stop.
HELD = []
PATH_GLOBAL = {}
PATH_HOLDER = None
PATH_FUNC = None
PATH_GEN = None
PATH_SLOTTED = None


class Plain:
    def __init__(self, a, b):
        self.a = a
        self.b = b


class Slotted:
    __slots__ = ("val", "other")

    def __init__(self, val):
        self.val = val
        self.other = None


class DictSub(dict):
    pass


class ListSub(list):
    pass


class PathClass:
    attr = None


class Holder:
    def __init__(self):
        self.name = "holder"
        self.items = []


def make_closure(value):
    def inner():
        return value
    return inner


def generator(value, n):
    local_value = value
    for i in range(n):
        yield local_value, i


async def coroutine(value):
    return value


async def async_generator(value):
    yield value


def sample_objects():
    """One or more objects of every kind the graph reads: name -> object.
    Kept in HELD so they live until the stop."""
    s = "pm-graph-%d" % os.getpid()
    objs = {}
    objs["list"] = [s, 1.5, (1, 2), None]
    objs["tuple"] = (s, 2.5, [3])
    objs["dict_str_keys"] = {"a-" + s: [1], "b-" + s: 2.5}
    objs["dict_mixed_keys"] = {1.5: "x" + s, (1, s): [2], "k": 3}
    objs["set"] = {s, 3.5, (4, 5)}
    objs["frozenset"] = frozenset({s + "f", 4.5})
    objs["instance"] = Plain([s], {"x": 1})
    objs["instance_dict"] = Plain(1, 2)
    objs["instance_dict"].__dict__["extra"] = [s]     # a materialised dict
    objs["slotted"] = Slotted([s])
    objs["dict_subclass"] = DictSub(k=[s])
    objs["list_subclass"] = ListSub([s, [1]])
    objs["type"] = type("GraphType", (Plain,), {"x": [s], "__doc__": "d"})
    objs["module"] = types.ModuleType("pm_graph_module")
    objs["module"].value = [s]
    objs["function"] = make_closure([s])
    objs["function"].__dict__["attr"] = 1
    objs["cell"] = objs["function"].__closure__[0]
    objs["method"] = objs["instance"].__init__
    objs["generator"] = generator([s], 3)
    next(objs["generator"])
    objs["coroutine"] = coroutine([s])
    objs["async_generator"] = async_generator([s])
    objs["frame"] = sys._getframe()
    objs["code"] = make_closure.__code__
    objs["deque"] = collections.deque([s, [1]] * 40)
    objs["ordered_dict"] = collections.OrderedDict([(s, [1]), ("z", 2)])
    objs["defaultdict"] = collections.defaultdict(list, {s: [1]})
    objs["partial"] = functools.partial(print, [s], sep=s)
    objs["property"] = property(len, None, None, "doc")
    objs["classmethod"] = classmethod(len)
    objs["staticmethod"] = staticmethod(len)
    try:
        try:
            raise KeyError(s)
        except KeyError as first:
            raise ValueError([s]) from first
    except ValueError as e:
        objs["exception"] = e
        objs["traceback"] = e.__traceback__
    objs["os_error"] = OSError(2, "missing " + s, "/tmp/" + s)
    objs["list_iterator"] = iter([s, 1])
    objs["dict_iterator"] = iter({s: 1})
    objs["slice"] = slice(1, [s], 2)
    objs["range"] = range(10, 10 ** 20, 7)
    objs["weakref"] = weakref.ref(objs["instance"], len)
    objs["array"] = array.array("d", [1.0, 2.0])
    objs["bytearray"] = bytearray(b"pm" * 10)
    objs["mappingproxy"] = types.MappingProxyType({s: 1})
    objs["enumerate"] = enumerate([s])
    objs["super"] = super(Plain, objs["instance"])
    HELD.append(objs)
    return objs


def referents_truth(objs):
    """For each sample (and every object one refers to that is a GC
    object): its type name, whether it is a GC object, and the ids of
    gc.get_referents() (tp_traverse's view)."""
    truth = {}
    todo = list(objs.items())
    extra = []
    for name, o in todo:
        refs = gc.get_referents(o)
        truth[name] = {"id": id(o), "type": type(o).__name__,
                       "tracked": gc.is_tracked(o),
                       "have_gc": type(o).__flags__ & (1 << 14) != 0,
                       "referents": sorted(set(id(r) for r in refs))}
        for r in refs:
            # Not modules' globals: the workload's grow after this.
            if type(r) in (dict, list, tuple) and len(extra) < 200 and \
                    "__builtins__" not in (r if type(r) is dict else ()):
                extra.append(r)
        del refs
    for i, o in enumerate(extra):
        truth["referent-%d" % i] = {
            "id": id(o), "type": type(o).__name__,
            "tracked": gc.is_tracked(o), "have_gc": True,
            "referents": sorted(set(id(r) for r in gc.get_referents(o)))}
    del o, todo, extra
    return truth


def referrers_truth(objs):
    """gc.get_referrers() of some samples (frames left out: this one's
    holds the sample while it asks)."""
    names = ("list", "set", "slotted", "cell", "deque", "instance")
    # Garbage the work so far left (cycles of temporaries) would still
    # be found referring; it is gone at the stop.
    gc.collect()
    truth = {}
    for name in names:
        target = objs[name]
        refs = gc.get_referrers(target)
        # This function's frame holds `target`: not a referrer later.
        truth[name] = sorted(id(r) for r in refs
                             if not isinstance(r, types.FrameType))
        del refs
    return truth


def plant_paths():
    """Sentinels at known places, each with the ids of the objects along
    the chain the interpreter itself walks to it (from sys.modules)."""
    global PATH_HOLDER, PATH_FUNC, PATH_GEN, PATH_SLOTTED
    main = sys.modules["__main__"]
    mod_chain = [id(sys.modules), id(main), id(vars(main))]
    paths = {}
    v311 = sys.version_info >= (3, 11)

    s1 = bytearray(b"global-sentinel")
    PATH_GLOBAL["pm-1"] = s1
    vars(main)["PATH_GLOBAL"] = PATH_GLOBAL
    paths["global"] = mod_chain + [id(PATH_GLOBAL), id(s1)]

    s2 = bytearray(b"list-in-attribute")
    PATH_HOLDER = Holder()
    PATH_HOLDER.items.extend([1, 2, 3, s2])
    vars(main)["PATH_HOLDER"] = PATH_HOLDER
    chain = mod_chain + [id(PATH_HOLDER)]
    if not v311:
        chain.append(id(PATH_HOLDER.__dict__))
    paths["attribute_list"] = chain + [id(PATH_HOLDER.items), id(s2)]

    s3 = bytearray(b"closure-cell")
    PATH_FUNC = make_closure(s3)
    vars(main)["PATH_FUNC"] = PATH_FUNC
    paths["closure"] = mod_chain + [id(PATH_FUNC), id(PATH_FUNC.__closure__),
                                    id(PATH_FUNC.__closure__[0]), id(s3)]

    s4 = bytearray(b"generator-local")
    PATH_GEN = generator(s4, 2)
    next(PATH_GEN)
    vars(main)["PATH_GEN"] = PATH_GEN
    chain = mod_chain + [id(PATH_GEN)]
    if not v311:
        chain.append(id(PATH_GEN.gi_frame))
    paths["generator_local"] = chain + [id(s4)]

    s6 = bytearray(b"class-attribute")
    PathClass.attr = s6
    vars(main)["PathClass"] = PathClass
    tp_dict = ctypes.c_void_p.from_address(id(PathClass) + 264).value
    paths["class_attribute"] = mod_chain + [id(PathClass), tp_dict, id(s6)]

    s7 = bytearray(b"slot")
    PATH_SLOTTED = Slotted(s7)
    vars(main)["PATH_SLOTTED"] = PATH_SLOTTED
    paths["slot"] = mod_chain + [id(PATH_SLOTTED), id(s7)]
    return paths


def thread_local_path():
    """A thread whose frame holds a sentinel in a local (nothing else
    holds it): its native id, the sentinel's id and, before 3.11 (frames
    are objects), the ids of its frames from the top one down."""
    ready, release = threading.Event(), threading.Event()
    info = {}

    def worker():
        local_sentinel = bytearray(b"thread-local")
        info["sentinel"] = id(local_sentinel)
        info["native_id"] = threading.get_native_id()
        ready.set()
        release.wait()
        return local_sentinel

    t = threading.Thread(target=worker, name="pm-path-thread", daemon=True)
    t.start()
    ready.wait()
    frames = []
    if sys.version_info < (3, 11):
        frame = sys._current_frames()[t.ident]
        while frame is not None:
            frames.append(id(frame))
            if frame.f_code is worker.__code__:
                break
            frame = frame.f_back
        del frame
    HELD.append((t, release))
    info["frames"] = frames
    return info


def leak_refs(n):
    """n objects of several kinds each given one more reference with
    Py_IncRef and then dropped: held by nothing the heap shows. Also n
    like them kept normally (in HELD)."""
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    leaked, kept = [], []
    # Kinds without free lists: a list or dict taken from its free list
    # leaves a stale pointer to itself in the free-list array, a word in
    # static data that a conservative scan takes for a reference.
    makers = (lambda i: {i, "leak"}, lambda i: Slotted(i),
              lambda i: Plain(i, None), lambda i: bytearray(b"leak%d" % i))
    for i in range(n):
        o = makers[i % len(makers)](i)
        incref(o)
        leaked.append(id(o))
        del o
        k = makers[i % len(makers)](i)
        kept.append(k)
    HELD.append(kept)
    return {"leaked": leaked, "kept": [id(k) for k in kept]}


def make_garbage(k):
    """k unreachable reference cycles of varied shapes (gc is disabled):
    lists, dicts, instances, tuples in lists, slotted objects, a class."""
    made = 0
    for i in range(k):
        shape = i % 6
        if shape == 0:
            a = []
            a.append(a)
        elif shape == 1:
            a, b = [], {}
            a.append(b)
            b["back"] = a
            b["payload"] = ["x" * (i % 7)]
        elif shape == 2:
            a = Plain(None, [i])
            a.a = a
        elif shape == 3:
            a = []
            t = (a, i)
            a.append(t)
        elif shape == 4:
            a = Slotted(None)
            a.val = [a, {"k": a}]
        else:
            a = type("Garbage%d" % i, (), {})
            a.me = a
        del a
        made += 1
    return made


def garbage_service(trigger, result):
    """After the stop: when `trigger` exists, run gc.collect() with
    DEBUG_SAVEALL and write how many it freed, by type, to `result`."""
    if not os.path.exists(trigger):
        return
    os.unlink(trigger)
    gc.set_debug(gc.DEBUG_SAVEALL)
    n = gc.collect()
    by_type = collections.Counter(type(o).__name__ for o in gc.garbage)
    import json
    with open(result + ".tmp", "w") as f:
        json.dump({"collected": n, "by_type": by_type}, f)
    # Writing made cycles of its own (the encoder's closures): gone too,
    # so that what is unreachable after this is nothing.
    gc.set_debug(0)
    del by_type, f
    gc.collect()
    os.rename(result + ".tmp", result)


class TreeNode:
    __slots__ = ("left", "right", "value")

    def __init__(self, left, right, value):
        self.left = left
        self.right = right
        self.value = value


def build_tree(depth, seed):
    if depth == 0:
        return None
    return TreeNode(build_tree(depth - 1, seed * 2), build_tree(depth - 1, seed * 2 + 1),
                    float(seed) + 0.5)


def retention_structures():
    """Structures whose dominated sets are known by construction, kept as
    globals of __main__: a cache dict whose str keys and bytes values
    nothing else holds, a tree of slotted nodes (each subtree its node's),
    and an object held by two lists (neither dominates it)."""
    main = sys.modules["__main__"]
    tag = "%d" % os.getpid()
    cache = {}
    for i in range(300):
        cache["rk-%d-%s" % (i, tag)] = b"v" * (i % 97 + 1) + tag.encode()
    shared = bytearray(b"shared-" + tag.encode())
    a_list = [shared, bytearray(b"only-a")]
    b_list = [shared, bytearray(b"only-b")]
    tree = build_tree(7, 1)
    # The leak: most of the heap, held by one dict (the retained list's
    # first row and the first leak suspect).
    leak = {"leak-%d-%s" % (i, tag): bytes(LEAK_VALUE_BYTES + i) for i in range(LEAK_VALUES)}
    vars(main).update(RETAINED_CACHE=cache, RETAINED_TREE=tree,
                      RETAINED_A=a_list, RETAINED_B=b_list, RETAINED_LEAK=leak)
    subtree = tree.left.right
    return {"cache": id(cache), "tree": id(tree), "subtree": id(subtree),
            "a": id(a_list), "b": id(b_list), "shared": id(shared),
            "leak": id(leak), "leak_path": "sys.modules['__main__'].__dict__['RETAINED_LEAK']",
            "namespaces": namespace_ids(),
            # their allocations (tests/e2e/test_graph.py)
            "tree_sizes": tree_sizes(tree), "subtree_sizes": tree_sizes(subtree)}


GC_HEADER = 16  # sizeof(PyGC_Head), 3.8-3.13: a tracked object's allocation starts there


def glibc_chunk_size(start):
    """The glibc chunk an allocation starting at `start` occupies, by
    glibc's own malloc_usable_size (a chunk's size less its 8-byte size
    word): exact even where malloc handed out a larger free chunk than the
    request needed, which allocator rules cannot know."""
    usable = ctypes.CDLL(None).malloc_usable_size
    usable.restype, usable.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    return usable(start) + 8


LEAK_VALUES = 1500
LEAK_VALUE_BYTES = 4000


def namespace_ids():
    """The interpreter's namespaces: every module, its dict, sys.modules,
    and every class with its dict (mappingproxy's underlying dict found
    through gc.get_referents), which hold what code keeps: never a
    retained-list row of their own."""
    ids = {id(sys.modules)}
    for m in list(sys.modules.values()):
        ids.add(id(m))
        d = getattr(m, "__dict__", None)
        if isinstance(d, dict):
            ids.add(id(d))
    for o in gc.get_objects():
        if isinstance(o, type):
            ids.add(id(o))
            ids.update(id(r) for r in gc.get_referents(o.__dict__) if type(r) is dict)
    return sorted(ids)


def tree_sizes(node):
    """The allocations of every node of a tree and of its values: under
    PYTHONMALLOC=malloc their glibc chunks' sizes ("chunk", exact), else
    sys.getsizeof ("size") for the allocator rules of the test."""
    in_glibc = os.environ.get("PYTHONMALLOC") == "malloc"
    sizes, todo = [], [node]
    while todo:
        n = todo.pop()
        if n is None:
            continue
        for obj, start in ((n, id(n) - GC_HEADER), (n.value, id(n.value))):
            if in_glibc:
                sizes.append({"chunk": glibc_chunk_size(start)})
            else:
                sizes.append({"size": sys.getsizeof(obj)})
        todo.extend((n.left, n.right))
    return sizes


# offsetof(PyBytesObject, ob_sval): a bytes object's size is that plus
# its length plus the NUL.
BYTES_HEADER = sys.getsizeof(b"") - 1


def bytearray_bytes(o):
    """3.15+: the bytes object a bytearray keeps its data in, which
    gc.get_referents cannot give (bytearray has no tp_traverse): the
    object whose characters the bytearray's buffer is, found from the
    buffer's address (ctypes) and checked to be a bytes object. None
    before 3.15, for an empty bytearray, or when the buffer does not
    start a bytes object's characters (data deleted from the front)."""
    if sys.version_info < (3, 15) or type(o) is not bytearray or not o:
        return None
    view = (ctypes.c_char * len(o)).from_buffer(o)
    addr = ctypes.addressof(view) - BYTES_HEADER
    del view                    # the buffer export, or o cannot resize
    if ctypes.c_void_p.from_address(addr + 8).value != id(bytes):
        return None
    return ctypes.cast(addr, ctypes.py_object).value


def references(o):
    """What o refers to: gc.get_referents(o), a dict's keys (dict's
    tp_traverse leaves str keys out: they cannot form cycles) and a 3.15
    bytearray's bytes object."""
    refs = gc.get_referents(o)
    if type(o) is dict:
        refs.extend(o.keys())
    data = bytearray_bytes(o)
    if data is not None:
        refs.append(data)
    return refs


def dominated_in_process(entries):
    """For each entry id, the ids of the objects it dominates, by the
    interpreter's own references (gc.get_referents): starting from the
    entry, an object it reaches joins when every object that refers to it
    has joined, to a fixed point (a straightforward dominator computation;
    these structures' objects are referred to only by objects)."""
    this = sys._getframe()
    # Every object the tracked ones reach: untracked containers (a dict
    # of only strs and bytes is untracked) refer to things too.
    by_id = {}
    referrers = {}
    todo = [o for o in gc.get_objects() if o is not this]
    # This function's own frame and tables refer to everything: not part
    # of the heap being measured.
    mine = {id(this), id(by_id), id(referrers), id(todo)}
    for o in todo:
        by_id[id(o)] = o
    while todo:
        o = todo.pop()
        if id(o) in mine:
            continue
        for r in references(o):
            if id(r) in mine:
                continue
            referrers.setdefault(id(r), set()).add(id(o))
            if id(r) not in by_id:
                by_id[id(r)] = r
                todo.append(r)
    objs = None
    result = {}
    for name, entry in entries.items():
        reach, todo = {entry}, [entry]
        while todo:
            o = by_id.get(todo.pop())
            for r in (references(o) if o is not None else ()):
                if id(r) not in reach:
                    reach.add(id(r))
                    todo.append(id(r))
        dom = {entry}
        grew = True
        while grew:
            grew = False
            for x in reach - dom:
                refs = referrers.get(x)
                if refs and refs <= dom:
                    dom.add(x)
                    grew = True
        result[name] = sorted(dom)
    del objs, by_id, referrers, o, this
    return result
