"""Which target the `heap` commands analyse, and the cache of its results.

A live inferior is read through /proc/PID (GDB keeps it stopped), a core
through the core file GDB has open, anything else (gdbserver, remote) through
GDB's own memory reads. One library target is kept per inferior and dropped,
with every cached report, as soon as the inferior runs again or its memory,
objfiles or core change."""

import atexit
import os
import re
import shutil
import tempfile

import gdb

from . import binding

_CORE_FILE_RE = re.compile(r"Local core dump file:\s*\n\s*`(.*)', file type")


class Access:
    """How GDB reaches the inferior: "native", "core" or "callback"."""

    NATIVE = "native"
    CORE = "core"
    CALLBACK = "callback"


def _connection_type(inferior):
    """GDB 12+ names the target of the inferior's connection; older GDBs
    tell it only in `info target`."""
    if hasattr(inferior, "connection"):
        connection = inferior.connection
        return connection.type if connection is not None else None
    text = gdb.execute("info target", to_string=True)
    if "Local core dump file" in text:
        return "core"
    if "Native process" in text or "Child process" in text:
        return "native"
    if "Remote" in text:
        return "remote"
    return None


def core_file_path():
    """The core file GDB has open (GDB 13's Python does not expose it)."""
    match = _CORE_FILE_RE.search(gdb.execute("info target", to_string=True))
    return match.group(1) if match else None


def _running_thread(inferior):
    for thread in inferior.threads():
        if thread.is_valid() and thread.is_running():
            return thread
    return None


def _maps_from_info_proc(text):
    """Converts `info proc mappings` (GDB 12+: start end size offset perms
    objfile) into /proc/PID/maps lines."""
    lines = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5 or not fields[0].startswith("0x"):
            continue
        try:
            start, end = int(fields[0], 16), int(fields[1], 16)
            offset = int(fields[3], 16)
        except ValueError:
            continue
        perms = fields[4]
        if not re.fullmatch(r"[r-][w-][x-][ps]", perms):
            return None  # an older GDB without the perms column
        path = fields[5].strip() if len(fields) > 5 else ""
        lines.append("%x-%x %s %08x 00:00 0 %s" % (start, end, perms,
                                                   offset, path))
    return "\n".join(lines) + "\n" if lines else None


def _maps_from_remote_get(pid):
    """Copies /proc/PID/maps of the remote side with `remote get`."""
    fd, local = tempfile.mkstemp(prefix="pymortem-maps-")
    os.close(fd)
    try:
        gdb.execute("remote get /proc/%d/maps %s" % (pid, local),
                    to_string=True)
        with open(local, encoding="utf-8", errors="replace") as f:
            return f.read() or None
    except gdb.error:
        return None
    finally:
        os.unlink(local)


def _other_root(pid):
    """Whether the process's root directory is not GDB's own."""
    try:
        return not os.path.samefile("/proc/%d/root" % pid, "/")
    except OSError:
        return False


def local_sysroot():
    """GDB's `set sysroot` when it names a local directory (a core of a
    container's or chroot's process): the library reads the target's files
    under it. None for GDB's default "target:" (the target's own files) and
    for an empty or "/" root."""
    try:
        root = gdb.parameter("sysroot")
    except RuntimeError:
        return None
    if not root or root == "/" or root.startswith("target:") or root.startswith("remote:"):
        return None
    return root


def remote_maps_text(inferior):
    """The mappings of a process GDB reaches only through its target."""
    text = None
    try:
        text = _maps_from_info_proc(
            gdb.execute("info proc mappings", to_string=True))
    except gdb.error:
        pass
    if text is None and inferior.pid:
        text = _maps_from_remote_get(inferior.pid)
    if text is None:
        raise gdb.GdbError(
            "cannot list the mappings of this target (neither `info proc "
            "mappings` nor `remote get /proc/%d/maps` works)" % inferior.pid)
    return text


_AUXV_LINE_RE = re.compile(r"^(\d+)\s+\S+\s.*?\s(0x[0-9a-fA-F]+|\d+)(\s+\".*\")?\s*$")


def debugger_auxv():
    """The auxiliary vector as GDB reads it (`info auxv`), or None."""
    try:
        text = gdb.execute("info auxv", to_string=True)
    except gdb.error:
        return None
    pairs = []
    for line in text.splitlines():
        match = _AUXV_LINE_RE.match(line.strip())
        if match:
            pairs.append((int(match.group(1)), int(match.group(2), 0)))
    return pairs or None


def _register(frame, name):
    try:
        return int(frame.read_register(name)) & 0xFFFFFFFFFFFFFFFF
    except (gdb.error, ValueError):
        return None


def debugger_threads(inferior):
    """(tid, name, pc, sp, fs_base) of each thread, from GDB's registers;
    the selected thread and frame are restored."""
    selected = gdb.selected_thread()
    try:
        frame = gdb.selected_frame()
    except gdb.error:
        frame = None
    threads = []
    try:
        for thread in sorted(inferior.threads(), key=lambda t: t.num):
            thread.switch()
            try:
                newest = gdb.newest_frame()
                regs = [_register(newest, r) for r in ("pc", "sp", "fs_base")]
            except gdb.error:
                regs = [None, None, None]
            tid = thread.ptid[1] or thread.ptid[0]
            threads.append((tid, thread.name or "", regs[0], regs[1], regs[2]))
    finally:
        if selected is not None and selected.is_valid():
            selected.switch()
            if frame is not None and frame.is_valid():
                frame.select()
    return threads


class SymbolLookup:
    """lookup_symbol for the library: GDB's symbol tables (full debug info
    only; the library reads ELF symbol tables itself). Answers are cached:
    the library may ask for one name many times."""

    def __init__(self):
        self.cache = {}

    def __call__(self, module_prefix, name):
        key = (module_prefix, name)
        if key not in self.cache:
            self.cache[key] = self._lookup(module_prefix, name)
        return self.cache[key]

    @staticmethod
    def _objfiles(module_prefix):
        for objfile in gdb.objfiles():
            if not objfile.is_valid() or objfile.owner is not None:
                continue  # separate debug files answer through their owner
            base = os.path.basename(objfile.filename or "")
            if module_prefix is None or base.startswith(module_prefix):
                yield objfile

    def _lookup(self, module_prefix, name):
        for objfile in self._objfiles(module_prefix):
            for find in (objfile.lookup_global_symbol,
                         objfile.lookup_static_symbol):
                try:
                    symbol = find(name)
                    if symbol is not None:
                        found = self._address_and_size(symbol)
                        if found is not None:
                            return found
                except gdb.error:
                    continue
        return None

    @staticmethod
    def _address_and_size(symbol):
        if symbol.addr_class == gdb.SYMBOL_LOC_BLOCK:     # a function
            block = symbol.value().address
            start = int(block)
            body = gdb.block_for_pc(start)
            while body is not None and body.function is None:
                body = body.superblock  # from a nested scope to the function
            size = body.end - body.start if body is not None else 0
            return start, size
        if symbol.addr_class != gdb.SYMBOL_LOC_STATIC:     # not in memory
            return None
        value = symbol.value()
        if value.address is None:
            return None
        return int(value.address), value.type.sizeof


class MemoryReader:
    """The read callback of a callback target: GDB's memory reads."""

    def __init__(self, inferior):
        self.inferior = inferior

    def __call__(self, address, length):
        try:
            return self.inferior.read_memory(address, length).tobytes()
        except gdb.MemoryError:
            raise
        except gdb.error as e:
            # GDB turns Ctrl-C during a remote read into a "Quit" error.
            if "Quit" in str(e):
                raise KeyboardInterrupt from None
            raise


class Progress:
    """Tells the user that a long analysis is still going, on stderr so that
    stdout stays exactly the library's output."""

    def __init__(self, what):
        self.what = what

    def __call__(self, seconds):
        gdb.write("pymortem: %s: %.0fs so far (Ctrl-C stops it)\n" % (
            self.what, seconds), gdb.STDERR)
        gdb.flush(gdb.STDERR)


class TargetState:
    """A library target for one inferior and its report cache."""

    def __init__(self, key, target, access, description):
        self.key = key
        self.target = target
        self.access = access
        self.description = description
        self.results = {}

    def close(self):
        self.results.clear()
        self.target.close()


# The name `heap snapshot` and `heap diff` use when given none.
DEFAULT_SNAPSHOT = "default"


class Session:
    """Owns the targets of all inferiors; commands ask it for reports."""

    def __init__(self):
        self.states = {}
        self.settings = {"access": "auto", "no_debuginfo": False,
                         "precise": False}
        self._connected = []
        self.snapshots = {}         # name -> file, kept across runs
        self.snapshot_of = {}       # name -> what it was taken of
        self._snapshot_dir = None

    def connect_events(self):
        events = gdb.events
        for name in ("cont", "exited", "new_objfile", "clear_objfiles",
                     "memory_changed", "inferior_call", "register_changed",
                     "inferior_deleted", "new_inferior", "connection_removed"):
            registry = getattr(events, name, None)
            if registry is not None:
                registry.connect(self.invalidate)
                self._connected.append(registry)

    def disconnect_events(self):
        for registry in self._connected:
            try:
                registry.disconnect(self.invalidate)
            except (ValueError, RuntimeError):
                pass
        self._connected = []

    def invalidate(self, *unused):
        """Drops every target and result (the inferior ran or changed)."""
        states, self.states = self.states, {}
        for state in states.values():
            state.close()

    def _identify(self, inferior):
        """(key, access, description) of what the inferior is now."""
        ctype = _connection_type(inferior)
        forced = self.settings["access"]
        if ctype == "core":
            path = core_file_path()
            if path is None:
                raise gdb.GdbError("cannot tell which core file GDB has open")
            return ("core", path, os.stat(path).st_mtime_ns), Access.CORE, \
                "core file %s" % path
        if inferior.pid == 0:
            raise gdb.GdbError(
                "no process: run one, `attach PID`, or load a core with "
                "`core FILE`")
        if _running_thread(inferior) is not None:
            raise gdb.GdbError("the process is running; interrupt it first")
        access = Access.NATIVE if ctype == "native" else Access.CALLBACK
        if forced == "callback":
            access = Access.CALLBACK
        what = "process %d" % inferior.pid
        if access == Access.CALLBACK:
            what += " through GDB's memory reads (%s target)" % (
                ctype or "unknown")
        return (access, inferior.num, inferior.pid), access, what

    def _open(self, inferior, key, access, description):
        kwargs = {"no_debuginfo": self.settings["no_debuginfo"],
                  "precise": self.settings["precise"],
                  "lookup_symbol": SymbolLookup()}
        executable = inferior.progspace.filename if inferior.progspace else None
        if executable:
            kwargs["executable"] = executable
        root = local_sysroot()
        if root:
            kwargs["sysroot"] = root
        elif access != Access.CORE and _other_root(inferior.pid):
            # A process in a chroot or container whose files GDB took from
            # the host's root (no `set sysroot`): GDB's symbols would be
            # the host libraries'. The library reads the process's own
            # files through /proc/PID/root instead (natively by itself).
            del kwargs["lookup_symbol"]
            if access == Access.CALLBACK:
                kwargs["sysroot"] = "/proc/%d/root" % inferior.pid
        if access == Access.CORE:
            target = binding.open_core(key[1], **kwargs)
        elif access == Access.NATIVE:
            target = binding.open_pid(inferior.pid, **kwargs)
        else:
            target = binding.open_callback(
                MemoryReader(inferior), remote_maps_text(inferior),
                inferior.pid, auxv=debugger_auxv(),
                threads=debugger_threads(inferior), **kwargs)
        return TargetState(key, target, access, description)

    def state(self):
        """The TargetState of the selected inferior, opened if needed."""
        inferior = gdb.selected_inferior()
        key, access, description = self._identify(inferior)
        state = self.states.get(inferior.num)
        if state is not None and state.key != key:
            state.close()
            state = None
        if state is None:
            state = self._open(inferior, key, access, description)
            self.states[inferior.num] = state
        return state

    def snapshot(self, name, save=None, retainers=False):
        """Keeps a snapshot of the selected inferior under name (in a
        directory of this session's), or writes it to the file save;
        retainers: with the rows by retainer (for diff --by retainer).
        Returns (where it went, what it is of)."""
        state = self.state()
        if save is None:
            if self._snapshot_dir is None:
                self._snapshot_dir = tempfile.mkdtemp(prefix="pymortem-snapshots-")
                atexit.register(shutil.rmtree, self._snapshot_dir, True)
            path = os.path.join(self._snapshot_dir, "%d.pmsnap" % len(self.snapshots))
        else:
            path = save
        state.target.snapshot(path, source=state.description, retainers=retainers)
        if save is None:
            self.snapshots[name] = path
            self.snapshot_of[name] = state.description
        return path, state.description

    def diff(self, name, **args):
        """How the selected inferior differs from the snapshot kept as
        name, or from the snapshot file name."""
        path, label = self.snapshot_file(name)
        state = self.state()
        return state.target.diff(path, source=state.description,
                                 before_source=label, **args)

    def snapshot_file(self, name):
        """(file, label) of the snapshot kept as name, or of the snapshot
        file name (label None: the library names it by its file)."""
        path = self.snapshots.get(name)
        label = None
        if path is not None:
            label = "snapshot %s of %s" % (name, self.snapshot_of[name])
        else:
            if name != DEFAULT_SNAPSHOT and os.path.exists(name):
                path = name
            else:
                kept = ", ".join(sorted(self.snapshots)) or "none"
                raise gdb.GdbError(
                    "no snapshot %s: take one with `heap snapshot%s` (kept: %s), "
                    "or name a file written by `heap snapshot --save FILE`"
                    % (name, "" if name == DEFAULT_SNAPSHOT else " " + name, kept))
        return path, label

    def report(self, name, show_progress=True, **args):
        """The text of library report `name` for the selected inferior,
        from the cache when the inferior has not run since. show_progress:
        say on stderr when it takes long (for a user at a terminal)."""
        state = self.state()
        cache_key = (name,) + tuple(sorted(args.items()))
        text = state.results.get(cache_key)
        if text is None:
            progress = None
            if show_progress:
                progress = Progress("analysing %s" % state.description)
            text = state.target.report(name, progress=progress, **args)
            state.results[cache_key] = text
        return text

    def report_html(self, show_progress=True, since=None):
        """The HTML page (pymortem report) of the selected inferior; not
        cached: it is written once, and its reports are the target's cached
        analyses anyway. since: a kept snapshot's name or a snapshot file,
        for the page's Growth section."""
        before = label = None
        if since is not None:
            before, label = self.snapshot_file(since)
        state = self.state()
        progress = Progress("analysing %s" % state.description) if show_progress else None
        return state.target.report_html(source=state.description, progress=progress,
                                        before=before, before_source=label)
