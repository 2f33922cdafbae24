"""The `heap` commands: one small class per command. Each parses its
options, asks the session for one library report and prints it as is; none
analyses anything itself."""

import gdb

from . import binding
from .options import Option, Parser, parse_address, parse_int

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
        for key in ("top", "limit", "min_size", "by", "type"):
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


class SummaryCommand(HeapSubcommand):
    """Heap usage by Python type (or owner, size, region, allocator).
Usage: heap summary [--by type|owner|size|region|allocator] [--top N] [--json]
One row per group: allocations, bytes, share of the heap. --by owner splits
the buffers objects own (dict values, list items, ...) by the owner's type."""

    name = "summary"
    reports = ("summary",)
    options = (Option("--by", "choice",
                      choices=("type", "owner", "size", "region",
                               "allocator")),
               TOP, JSON)


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
    """Allocations by size class.
Usage: heap sizes [--top N] [--json]"""

    name = "sizes"
    reports = ("sizes",)
    options = (TOP, JSON)


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


class SelectCommand(HeapSubcommand):
    """Allocations matching an expression.
Usage: heap select [--limit N] [--json] QUERY
QUERY compares the string fields domain, kind, detail, state ("quoted";
== != and ~ for contains) and the numbers addr, size (123, 0x7b, 4k, 2M, 1G;
== != < <= > >=), combined with and/or/not and parentheses, e.g.
  heap select kind == "str" and size > 1000
  heap select state == "free" and detail ~ "bin\""""

    name = "select"
    reports = ("select",)
    options = (LIMIT, JSON)
    positional = ("QUERY",)

    def parse(self, arg):
        """Options first, then the query verbatim (its quotes matter)."""
        words = arg.split(None, 1) if arg else []
        leading = []
        rest = arg.strip()
        while words and words[0].startswith("--"):
            option = self.parser.options.get(words[0].split("=")[0])
            leading.append(words[0])
            tail = words[1] if len(words) > 1 else ""
            if option and option.kind != "flag" and "=" not in words[0]:
                value_words = tail.split(None, 1)
                if value_words:
                    leading.append(value_words[0])
                    tail = value_words[1] if len(value_words) > 1 else ""
            rest = tail.strip()
            words = tail.split(None, 1) if tail else []
        values, _ = self.parser.parse(" ".join(leading))
        return values, [rest] if rest else []

    def report_args(self, values, positional):
        if not positional:
            raise gdb.GdbError("%s: a query is needed, e.g. "
                               "heap select kind == \"str\"" % self.full_name)
        args = super().report_args(values, positional)
        args["query"] = positional[0]
        return args


class InfoCommand(HeapSubcommand):
    """What pymortem detected: versions, modules, symbols and how.
Shows the target, the CPython and glibc versions, the modules and where
each key symbol was found.
Usage: heap info [--json]"""

    name = "info"
    reports = ("info",)


SUBCOMMANDS = (SummaryCommand, SizesCommand, RegionsCommand, ArenasCommand,
               PymallocCommand, UsedCommand, FreeCommand, AllCommand,
               DescribeCommand, SelectCommand, HexdumpCommand, InfoCommand)
