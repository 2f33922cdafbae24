"""The `heap` commands: one small class per command. Each parses its
options, asks the session for one library report and prints it as is; none
analyses anything itself."""

import os

import gdb

from . import binding
from .options import Option, Parser, parse_address, parse_int, split_words

JSON = Option("--json", "flag", help="print the report as JSON")
TOP = Option("--top", "int", help="show only the N largest rows")
LIMIT = Option("--limit", "int", help="show at most N allocations")


def write(text):
    """Prints through GDB's pager; quitting the pager is not an error."""
    if text and not text.endswith("\n"):
        text += "\n"
    try:
        gdb.write(text)
    except KeyboardInterrupt:
        pass
    except gdb.error as e:
        if "Quit" not in str(e):
            raise


def terminal_width():
    """GDB's `width` setting; 0 when unlimited (`set width 0`, batch mode)."""
    try:
        width = gdb.parameter("width")
    except RuntimeError:
        return 0
    return width if isinstance(width, int) and width > 0 else 0


class HeapSubcommand(gdb.Command):
    """Base of `heap NAME`: subclasses set name, reports, options and
    positional, and turn parsed arguments into report arguments."""

    name = None
    reports = ()            # library report names, the first available wins
    options = (JSON,)
    positional = ()
    max_positional = None

    def __init__(self, session, prefix="heap"):
        self.session = session
        self.full_name = ("%s %s" % (prefix, self.name)).strip()
        self.parser = Parser(self.full_name, self.options, self.positional,
                             self.max_positional)
        super().__init__(self.full_name, gdb.COMMAND_DATA)

    def report_args(self, values, positional):
        """Library report arguments for parsed options."""
        args = {}
        if values.get("json"):
            args["format"] = "json"
        for key in ("top", "limit", "min_size", "by", "type", "threshold"):
            if values.get(key) is not None:
                args[key] = values[key]
        return args

    def report_name(self):
        available = binding.available_reports()
        for name in self.reports:
            if name in available:
                return name
        raise gdb.GdbError(
            "%s: not available in this build (the library has no %s report; "
            "it has: %s)" % (self.full_name,
                             " or ".join('"%s"' % r for r in self.reports),
                             ", ".join(available) or "none"))

    def parse(self, arg):
        return self.parser.parse(arg)

    def invoke(self, arg, from_tty):
        values, positional = self.parse(arg)
        report = self.report_name()
        args = self.report_args(values, positional)
        if args.get("format") != "json":
            args["width"] = terminal_width()
        try:
            # Progress lines only for a user at a terminal, not in output
            # captured by scripts (gdb.execute(..., to_string=True)).
            text = self.session.report(report, show_progress=from_tty,
                                       **args)
        except (binding.Error, gdb.GdbError) as e:
            raise gdb.GdbError("%s: %s" % (self.full_name, e)) from None
        write(text)

    def complete(self, text, word):
        return self.parser.complete(text, word)

    def address_arg(self, text):
        """parse_address, its error prefixed with the command's name; an
        expression that fails without a process says there is none."""
        try:
            try:
                return parse_address(text)
            except gdb.GdbError:
                self.session._identify(gdb.selected_inferior())
                raise
        except gdb.GdbError as e:
            raise gdb.GdbError("%s: %s" % (self.full_name, e)) from None


SUMMARY_TOP_DEFAULT = 25      # the help below says it too


class SummaryCommand(HeapSubcommand):
    """Heap usage by Python type (or owner, size, region, allocator).
Usage: heap summary [--by type|owner|retainer|size|region|allocator]
                    [--top N | --all]
                    [--json]
One row per group: allocations, bytes, share of the heap; largest first.
Shows the 25 largest rows and a last line with what the others add up to
("N more rows: A allocations, B bytes"); --top N shows N rows, --all (or
--top 0) every row. (The CLI's `pymortem summary` shows every row, and its
--all means used and free memory; here --all means every row.)
--by owner splits the buffers objects own (dict values, list items, ...) by
the owner's type and names instance dicts ("__dict__ of T"); --by retainer
puts every allocation under the object that retains it (the first object
below the module namespaces in the dominator tree, see `heap retained`)."""

    name = "summary"
    reports = ("summary",)
    options = (Option("--by", "choice",
                      choices=("type", "owner", "retainer", "size",
                               "region", "allocator")),
               Option("--top", "int", help="show only the N largest rows "
                      "(default %d; 0: all)" % SUMMARY_TOP_DEFAULT),
               Option("--all", "flag", help="show every row"),
               JSON)

    def report_args(self, values, positional):
        if values.get("all") and values.get("top") is not None:
            raise gdb.GdbError("%s: --all shows every row; give it or "
                               "--top N, not both" % self.full_name)
        args = super().report_args(values, positional)
        if values.get("all"):
            args["top"] = 0
        elif values.get("top") is None:
            args["top"] = SUMMARY_TOP_DEFAULT
        if args.get("format") != "json":
            args["all_rows_option"] = "--all"
        return args


class HeapCommand(SummaryCommand):
    """Post-mortem analysis of a CPython process's heap (pymortem).
Usage: heap [SUBCOMMAND] ...   (`heap` alone is `heap summary`)
Works on a live process (gdb -p PID), a core file (gdb python core) and
remote targets (gdbserver). Results are cached until the process runs again.
Type `help heap SUBCOMMAND` for each command; `--json` prints JSON."""

    name = ""

    def parse(self, arg):
        words = gdb.string_to_argv(arg)
        if words and not words[0].startswith("-"):
            raise gdb.GdbError('heap: no subcommand "%s" (try `help heap`)'
                               % words[0])
        return super().parse(arg)

    def __init__(self, session):
        self.session = session
        self.full_name = "heap"
        self.parser = Parser("heap summary", self.options)
        gdb.Command.__init__(self, "heap", gdb.COMMAND_DATA, prefix=True)


class SizesCommand(HeapSubcommand):
    """In-use allocations by size: glibc chunks and pymalloc blocks.
Usage: heap sizes [--top N] [--min-size N] [--json]
One row per allocator and size: glibc chunks by chunk size (header
included), pymalloc blocks by size class (as the "blocks in use" of
sys._debugmallocstats()); largest total first. Shows the 40 largest rows
(--top N: N rows) and a last line with what the others add up to."""

    name = "sizes"
    reports = ("sizes",)
    options = (TOP, Option("--min-size", "size",
                           help="only allocations of at least N bytes"), JSON)


class RegionsCommand(HeapSubcommand):
    """Every memory region of the process with what it is used for.
Usage: heap regions [--json]"""

    name = "regions"
    reports = ("regions",)


class ArenasCommand(HeapSubcommand):
    """glibc malloc arenas, their heaps and totals.
The view of malloc_stats()/mallinfo2(), per arena, read from the image.
Usage: heap arenas [--json]"""

    name = "arenas"
    reports = ("malloc-stats",)


class PymallocCommand(HeapSubcommand):
    """pymalloc arenas, pools and blocks per size class.
The view of sys._debugmallocstats(), read from the process image.
Usage: heap pymalloc [--json]"""

    name = "pymalloc"
    reports = ("pymalloc-stats",)


class ListingCommand(HeapSubcommand):
    """Base of heap used|free|all: one line per allocation."""

    reports = ("allocations", "chunks")
    options = (Option("--type", "str"), Option("--min-size", "size"), LIMIT,
               JSON)

    # The glibc chunk listing ("chunks") knows no categories: refuse --type
    # rather than print an unfiltered list as if it were filtered.
    typed_reports = ("allocations",)

    def report_args(self, values, positional):
        if values.get("type") is not None and \
                self.report_name() not in self.typed_reports:
            raise gdb.GdbError(
                "%s: --type is not available in this build (the library "
                "lists glibc chunks without categories)" % self.full_name)
        args = super().report_args(values, positional)
        args["state"] = self.name
        return args


class UsedCommand(ListingCommand):
    """List allocations in use: address, size, category, preview.
Usage: heap used [--type T] [--min-size N] [--limit N] [--json]
--type filters on the category (a Python type name, or a C allocation
kind); N accepts 0x hex and k/M/G suffixes."""

    name = "used"


class FreeCommand(ListingCommand):
    """List free chunks and blocks: address, size, where they are kept.
Usage: heap free [--type T] [--min-size N] [--limit N] [--json]"""

    name = "free"


class AllCommand(ListingCommand):
    """List every allocation, used and free.
Usage: heap all [--type T] [--min-size N] [--limit N] [--json]"""

    name = "all"


class DescribeCommand(HeapSubcommand):
    """What is at an address: region, chunk/block, Python object.
Usage: heap describe ADDR [--json]
ADDR is a number or any GDB expression (`$rdi`, `&var`)."""

    name = "describe"
    reports = ("describe",)
    positional = ("ADDR",)

    def report_args(self, values, positional):
        if not positional:
            raise gdb.GdbError("%s: an address is needed" % self.full_name)
        args = super().report_args(values, positional)
        args["address"] = self.address_arg(positional[0])
        return args


class HexdumpCommand(HeapSubcommand):
    """Hex and ASCII dump of target memory.
Usage: heap hexdump ADDR [LEN] [--json]
ADDR is a number or any GDB expression; LEN defaults to the library's."""

    name = "hexdump"
    reports = ("hexdump",)
    positional = ("ADDR", "[LEN]")

    def report_args(self, values, positional):
        if not positional:
            raise gdb.GdbError("%s: an address is needed" % self.full_name)
        args = super().report_args(values, positional)
        args["address"] = self.address_arg(positional[0])
        if len(positional) > 1:
            args["length"] = parse_int(positional[1], self.full_name + " LEN")
        return args


QUERY_WORDS = ("domain", "kind", "detail", "state", "addr", "size", "and",
               "or", "not")


class SelectCommand(HeapSubcommand):
    """Allocations matching an expression.
Usage: heap select QUERY [--limit N] [--json]
QUERY compares the string fields domain, kind, detail, state ("quoted";
== != and ~ for contains) and the numbers addr, size (123, 0x7b, 4k, 2M, 1G;
== != < <= > >=), combined with and/or/not and parentheses, e.g.
  heap select kind == "str" and size > 1000
  heap select state == "free" and detail ~ "bin" --limit 20
  heap select 'kind == "str"' --json
Options may come before or after the query; a query may be quoted as a
whole ('...' or "..." with \\" inside); after `--` everything is the query.
Shows at most 100 allocations unless --limit says otherwise."""

    name = "select"
    reports = ("select",)
    options = (LIMIT, JSON)
    positional = ("QUERY",)

    def parse(self, arg):
        """Options anywhere outside quotes (the query language has no word
        that starts with "--"); the query's own text verbatim, its quotes
        kept, unless the whole query is one quoted string."""
        words = split_words(arg or "", self.full_name)
        option_words, runs = [], []
        i = 0
        while i < len(words):
            word = words[i]
            raw = arg[word.start:word.end]
            if raw == "--":
                if i + 1 < len(words):
                    runs.append([words[i + 1], words[-1]])
                break
            if raw.startswith("--"):
                option_words.append(word.text)
                option = self.parser.options.get(raw.split("=", 1)[0])
                if option is not None and option.kind != "flag" and \
                        "=" not in raw and i + 1 < len(words):
                    i += 1
                    option_words.append(words[i].text)
                i += 1
                continue
            if runs and runs[-1][1] is words[i - 1]:
                runs[-1][1] = word          # continues the query's text
            else:
                runs.append([word, word])
            i += 1
        values, _ = self.parser.parse_words(option_words)
        if len(runs) == 1 and runs[0][0] is runs[0][1] and \
                runs[0][0].whole_quoted:
            return values, [runs[0][0].text]
        query = " ".join(arg[first.start:last.end] for first, last in runs)
        return values, [query] if query else []

    def report_args(self, values, positional):
        if not positional:
            raise gdb.GdbError("%s: a query is needed, e.g. "
                               "heap select kind == \"str\"" % self.full_name)
        args = super().report_args(values, positional)
        args["query"] = positional[0]
        return args

    def complete(self, text, word):
        """Option names after "-", the query's field names and operators
        words elsewhere; nothing inside a string literal."""
        try:
            words = split_words(text, self.full_name)
        except gdb.GdbError:
            return []               # inside an open quote
        current = words[-1].text if words and text and \
            not text[-1].isspace() else ""
        previous = text[:words[-1].start] if current else text
        before = previous.split()
        if before and before[-1] in self.parser.options and \
                self.parser.options[before[-1]].kind != "flag":
            return []
        if current.startswith("-"):
            return self.parser.complete(text, word)
        return self.parser._trim([w for w in QUERY_WORDS
                                  if w.startswith(current)], current, word)


class InfoCommand(HeapSubcommand):
    """What pymortem detected: versions, modules, symbols and how.
Shows the target, the CPython and glibc versions, the modules and where
each key symbol was found.
Usage: heap info [--json]"""

    name = "info"
    reports = ("info",)


class AddressCommand(HeapSubcommand):
    """Base of the reference graph's commands on one object."""

    positional = ("ADDR",)

    def report_args(self, values, positional):
        if not positional:
            raise gdb.GdbError("%s: an address is needed (an object's, or "
                               "any address in its buffers)" % self.full_name)
        args = super().report_args(values, positional)
        args["address"] = self.address_arg(positional[0])
        return args


class ReferrersCommand(AddressCommand):
    """Every object that refers to the object at ADDR, and how.
Usage: heap referrers ADDR [--json]
Each line names the referring object and the reference: the dict key, the
attribute or slot name, the list or tuple index; roots (sys.modules, a
thread's frame, a module's static data) too. ADDR may also be inside a
buffer of the object (a list's item array stands for its list)."""

    name = "referrers"
    reports = ("referrers",)


class ReferentsCommand(AddressCommand):
    """What the object at ADDR refers to, and how.
Usage: heap referents ADDR [--json]
Read as CPython's tp_traverse of its type visits them; types without a
precise reader (C extensions) are read conservatively, and say so."""

    name = "referents"
    reports = ("referents",)


class PathCommand(AddressCommand):
    """The shortest chain of references from a root to the object at ADDR.
Usage: heap path ADDR [--json]
e.g. sys.modules['app'].__dict__['cache']['k'] -> bytes 0x7f...; or why
there is none: unreachable garbage, or held only from outside the heap."""

    name = "path"
    reports = ("path",)


class UnreachableCommand(HeapSubcommand):
    """What gc.collect() would free now, by type.
Usage: heap unreachable [--limit N] [--json]
The GC-tracked objects that no externally held object reaches, computed
as CPython's collector does: refcount minus the references found."""

    name = "unreachable"
    reports = ("unreachable",)
    options = (LIMIT, JSON)


class OutsideCommand(HeapSubcommand):
    """Objects held from outside the heap by something no root names.
Usage: heap outside [--limit N] [--json]
Their refcount exceeds every reference found (from objects, frames, static
data, stacks, other allocations): a C extension's reference, or a leak."""

    name = "outside"
    reports = ("outside",)
    options = (LIMIT, JSON)


class GraphCommand(HeapSubcommand):
    """The reference graph: its size, or every object and reference.
Usage: heap graph [--json]"""

    name = "graph"
    reports = ("graph",)


class RetainedCommand(HeapSubcommand):
    """What each object keeps alive: retained sizes (the dominator tree).
Usage: heap retained [ADDR] [--top N] [--type T] [--limit N] [--json]
Without ADDR: the objects retaining the most bytes, largest first, each with
its path from a root; the module namespaces that hold them are left out for
what they hold. An object's retained size is what freeing it would free: its
own allocation, its buffers and every object only it leads to.
With ADDR: that object's retained bytes and count, and what it dominates."""

    name = "retained"
    reports = ("retained",)
    positional = ("ADDR",)
    max_positional = 1
    options = (TOP, Option("--type", "str", help="only objects of this type"),
               LIMIT, JSON)

    def report_args(self, values, positional):
        args = super().report_args(values, positional)
        if positional:
            args["address"] = self.address_arg(positional[0])
        return args


class SuspectsCommand(HeapSubcommand):
    """Leak suspects: objects that retain a large share of the heap.
Usage: heap suspects [--threshold PCT] [--json]
Each object (below the module namespaces) retaining more than PCT percent
(default 10) of the heap's bytes, with its path from a root and the types
of what it retains."""

    name = "suspects"
    reports = ("suspects",)
    options = (Option("--threshold", "percent",
                      help="the share of the heap one must retain (10)"),
               JSON)


class RssCommand(HeapSubcommand):
    """Why RSS does not drop: where the resident memory is.
Usage: heap rss [--top N] [--json]
The process's writable memory, per region and in all, split into Python
objects, other allocations (by domain), memory free inside the allocators
(glibc by bin class: tcache, fastbins, unsorted, small, large, top;
pymalloc free blocks, empty pools, never-used pool space), allocator
overhead (chunk and pool headers, alignment, arena headers) and memory no
allocator owns (stacks, libraries' data, other maps). Each part has its
mapped, resident and swapped bytes; the parts add up to the whole. A live
process's residency comes from /proc/PID/smaps and pagemap; a core's is
what the core holds. --top N: regions shown (15)."""

    name = "rss"
    reports = ("rss",)
    options = (TOP, JSON)


class FragmentationCommand(HeapSubcommand):
    """Free memory the allocators keep, and what would give it back.
Usage: heap fragmentation [--limit N] [--json]
Per glibc arena: mapped, in use, free by class, the top chunk against
M_TRIM_THRESHOLD and M_TOP_PAD, and what malloc_trim(0) would return now
(as glibc does it: fastbins consolidated, whole pages of free chunks
madvised, the main heap's top shrunk; resident pages only). Thread arenas
and what they hold free; mmapped chunks. Per pymalloc arena: used, empty
and never-carved pools; the arenas a few live blocks pin, with those
blocks' objects and paths (--limit N paths, 25), and the arenas freeing
them would unmap. Ends with advice in plain words."""

    name = "fragmentation"
    reports = ("fragmentation",)
    options = (Option("--limit", "int", help="paths shown for pinning blocks (25)"),
               JSON)


class WasteCommand(HeapSubcommand):
    """Memory a change to the program would save, finding by finding.
Usage: heap waste [--top N] [--json]
One section per finding, the largest saving first, each with what it costs,
what a fix saves, examples (address, value or type, the path from a root)
and one line of advice. Findings: equal str, bytes, int and float values
held by different objects (compared by their bytes; per type the distinct
values, the copies, the interned strs, and what keeping one copy of each,
sys.intern for strs, would save), over-allocated lists, dicts, sets and
bytearrays (slots allocated but unused, dicts' deleted entries, and what
rebuilding each at its size saves, and who holds them), empty containers,
tiny dicts, classes whose instances would be smaller with __slots__, and
big lists of floats or ints an array would hold in 8 bytes an item.
--top N: values or examples shown per section (10)."""

    name = "waste"
    reports = ("waste",)
    options = (Option("--top", "int", help="values or examples shown per section (10)"),
               JSON)


class SnapshotCommand(HeapSubcommand):
    """Keep what the heap holds now, to compare a later state with it.
Usage: heap snapshot [NAME] [--save FILE] [--retainers]
Keeps a snapshot of the process (the summary's rows, every allocation's
address, size and type, who the process is) under NAME ("default") for
this GDB session; after `continue` and Ctrl-C, `heap diff [NAME]` says how
the heap changed. --save FILE writes it to FILE instead, in the format of
`pymortem snapshot -o FILE` (`pymortem diff FILE PID` reads it).
--retainers keeps the rows by retainer too, for `heap diff --by retainer`
(the reference graph: about twice the time)."""

    name = "snapshot"
    positional = ("[NAME]",)
    max_positional = 1
    options = (Option("--save", "str", help="write the snapshot to this file"),
               Option("--retainers", "flag", help="keep the rows by retainer too"))

    def invoke(self, arg, from_tty):
        values, positional = self.parse(arg)
        from .session import DEFAULT_SNAPSHOT
        name = positional[0] if positional else DEFAULT_SNAPSHOT
        if values.get("save") and positional:
            raise gdb.GdbError("%s: give NAME or --save FILE, not both"
                               % self.full_name)
        try:
            path, what = self.session.snapshot(name, values.get("save"),
                                               retainers=bool(values.get("retainers")))
        except (binding.Error, gdb.GdbError) as e:
            raise gdb.GdbError("%s: %s" % (self.full_name, e)) from None
        if values.get("save"):
            write("snapshot of %s written to %s" % (what, path))
        else:
            write("snapshot %s of %s kept; after the process runs, "
                  "`heap diff%s` compares with it"
                  % (name, what, "" if name == DEFAULT_SNAPSHOT else " " + name))


class DiffCommand(HeapSubcommand):
    """How the heap changed since a snapshot.
Usage: heap diff [NAME|FILE] [--by type|owner|retainer] [--top N] [--limit N] [--json]
Compares the process now with the snapshot kept as NAME ("default") by
`heap snapshot`, or with a snapshot file: every summary row's count and
bytes before, after and the change, growth first, with a TOTAL; for the
same process the allocations that are new (at an address that was free or
held something else), by type, with examples (--limit N per type, 3).
--top N: rows shown. --by retainer: by the object that holds each
allocation, for a snapshot taken with --retainers."""

    name = "diff"
    positional = ("[NAME|FILE]",)
    max_positional = 1
    options = (Option("--by", "choice", choices=("type", "owner", "retainer")), TOP,
               Option("--limit", "int", help="examples per type of new allocations (3)"),
               JSON)

    def invoke(self, arg, from_tty):
        values, positional = self.parse(arg)
        from .session import DEFAULT_SNAPSHOT
        name = positional[0] if positional else DEFAULT_SNAPSHOT
        args = self.report_args(values, positional)
        try:
            text = self.session.diff(name, **args)
        except (binding.Error, gdb.GdbError) as e:
            raise gdb.GdbError("%s: %s" % (self.full_name, e)) from None
        write(text)


class ReportCommand(HeapSubcommand):
    """Write an HTML page of the main reports, to look at in a browser.
Usage: heap report FILE [--since NAME|SNAPSHOT-FILE]
One self-contained file (inline styles and script, no request possible;
it opens from file://): a treemap of the heap by domain, type and owner,
the address space to scale, fragmentation per arena, the top retainers
with their paths, the waste findings, and sortable tables of those
reports. The same page as `pymortem report -o FILE`. --since: also how
the heap grew since the snapshot kept as NAME by `heap snapshot` (or a
snapshot file): the page's Growth section, as `heap diff NAME` says."""

    name = "report"
    options = (Option("--since", "str", help="a snapshot to show the growth since"),)
    positional = ("FILE",)
    max_positional = 1

    def invoke(self, arg, from_tty):
        values, positional = self.parse(arg)
        if not positional:
            raise gdb.GdbError("%s: which file? (heap report FILE)" % self.full_name)
        path = positional[0]
        # Where it goes is checked first: an unwritable place fails now,
        # not after the analysis; a file made for it goes if that fails.
        created = not os.path.exists(path)
        try:
            out = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise gdb.GdbError("%s: cannot write %s: %s"
                               % (self.full_name, path, e.strerror)) from None
        try:
            page = self.session.report_html(show_progress=from_tty,
                                            since=values.get("since"))
        except BaseException as e:
            out.close()
            if created:
                os.unlink(path)
            if isinstance(e, (binding.Error, gdb.GdbError)):
                raise gdb.GdbError("%s: %s" % (self.full_name, e)) from None
            raise
        try:
            with out:
                out.truncate(0)
                out.write(page)
        except OSError as e:
            raise gdb.GdbError("%s: cannot write %s: %s"
                               % (self.full_name, path, e.strerror)) from None
        write("report written to %s (%d bytes)" % (path, len(page.encode("utf-8"))))


SUBCOMMANDS = (SummaryCommand, SizesCommand, RegionsCommand, ArenasCommand,
               PymallocCommand, UsedCommand, FreeCommand, AllCommand,
               DescribeCommand, SelectCommand, HexdumpCommand, InfoCommand,
               ReferrersCommand, ReferentsCommand, PathCommand,
               UnreachableCommand, OutsideCommand, GraphCommand,
               RetainedCommand, SuspectsCommand, RssCommand,
               FragmentationCommand, WasteCommand, SnapshotCommand,
               DiffCommand, ReportCommand)
