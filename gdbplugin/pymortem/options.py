"""Command-line options of the `heap` commands: a small parser that raises
gdb.GdbError with one clear line instead of printing usage or exiting (which
argparse would do inside GDB), plus completion of option names and values."""

import gdb


class Option:
    """One --name option: `kind` is "flag", "int", "size", "percent", "choice"
    or "str"."""

    def __init__(self, name, kind, dest=None, choices=(), help=""):
        self.name = name
        self.kind = kind
        self.dest = dest or name.lstrip("-").replace("-", "_")
        self.choices = tuple(choices)
        self.help = help


def parse_int(text, what):
    """Decimal or 0x-hex integer; k/M/G suffixes for sizes."""
    scale = 1
    suffixes = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if text and text[-1].lower() in suffixes and not text.lower().startswith("0x"):
        scale = suffixes[text[-1].lower()]
        text = text[:-1]
    try:
        value = int(text, 0) * scale
    except ValueError:
        raise gdb.GdbError("%s: not a number: %r" % (what, text)) from None
    if value < 0:
        raise gdb.GdbError("%s: must not be negative" % what)
    return value


def parse_percent(text, what):
    """A share of the heap in percent: more than 0, at most 100 ("12.5",
    "12.5%")."""
    try:
        value = float(text[:-1] if text.endswith("%") else text)
    except ValueError:
        raise gdb.GdbError("%s: not a percentage: %r" % (what, text)) from None
    if not 0 < value <= 100:
        raise gdb.GdbError("%s: must be more than 0 and at most 100, not %r"
                           % (what, text))
    return value


def parse_address(text):
    """An address: a number, or any GDB expression (`$rsp`, `&obj`, `p->x`)."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        value = gdb.parse_and_eval(text)
        return int(value) & 0xFFFFFFFFFFFFFFFF
    except gdb.error as e:
        raise gdb.GdbError("cannot evaluate address %r: %s" % (text, e)) from None


class Word:
    """One word of a command line: where it is in the line (start, end),
    its text with the quotes taken out, and whether it is a single quoted
    string as a whole ('...' or "...")."""

    def __init__(self, start, end, text, whole_quoted):
        self.start = start
        self.end = end
        self.text = text
        self.whole_quoted = whole_quoted


def split_words(line, command):
    """Splits a command line as a shell does: words end at unquoted blanks;
    '...' is literal, "..." and a bare backslash escape the next character.
    Positions are kept so that a caller can take part of the line verbatim
    (a select query keeps its own quotes). An unterminated quote is an
    error naming its column."""
    words = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        start, text, first_quote_end = i, [], None
        while i < n and not line[i].isspace():
            c = line[i]
            if c in "'\"":
                end = i + 1
                while end < n and line[end] != c:
                    if c == '"' and line[end] == "\\" and end + 1 < n:
                        end += 1
                    text.append(line[end])
                    end += 1
                if end >= n:
                    raise gdb.GdbError(
                        "%s: unterminated %s quote at column %d" % (
                            command, "single" if c == "'" else "double",
                            i + 1))
                if i == start:
                    first_quote_end = end + 1
                i = end + 1
            elif c == "\\" and i + 1 < n:
                text.append(line[i + 1])
                i += 2
            else:
                text.append(c)
                i += 1
        # A word that is one quoted string: its first quote opened at the
        # word's start and closed at its end.
        whole = line[start] in "'\"" and first_quote_end == i
        words.append(Word(start, i, "".join(text), whole))
    return words


class Parser:
    """Parses `argv` into (options dict, positional list)."""

    def __init__(self, command, options, positional=(), max_positional=None):
        self.command = command
        self.options = {o.name: o for o in options}
        self.positional = tuple(positional)
        self.max_positional = (len(positional) if max_positional is None
                               else max_positional)

    def defaults(self):
        values = {}
        for o in self.options.values():
            values[o.dest] = False if o.kind == "flag" else None
        return values

    def parse(self, arg):
        return self.parse_words(gdb.string_to_argv(arg))

    def parse_words(self, words):
        """parse() of words already split (and unquoted)."""
        values = self.defaults()
        rest = []
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word == "--":
                rest.extend(words[i:])
                break
            if not word.startswith("--") or word in ("-", "--"):
                rest.append(word)
                continue
            name, eq, inline = word.partition("=")
            option = self.options.get(name)
            if option is None:
                raise gdb.GdbError("%s: unknown option %s (options: %s)" % (
                    self.command, name, " ".join(sorted(self.options))))
            if option.kind == "flag":
                if eq:
                    raise gdb.GdbError("%s: %s takes no value" % (self.command, name))
                values[option.dest] = True
                continue
            if eq:
                text = inline
            elif i < len(words):
                text = words[i]
                i += 1
            else:
                raise gdb.GdbError("%s: %s needs a value" % (self.command, name))
            values[option.dest] = self.convert(option, text)
        if len(rest) > self.max_positional:
            raise gdb.GdbError("%s: unexpected argument %r" % (
                self.command, rest[self.max_positional]))
        return values, rest

    def convert(self, option, text):
        what = "%s %s" % (self.command, option.name)
        if option.kind in ("int", "size"):
            return parse_int(text, what)
        if option.kind == "percent":
            return parse_percent(text, what)
        if option.kind == "choice" and text not in option.choices:
            raise gdb.GdbError("%s: must be one of %s, not %r" % (
                what, "|".join(option.choices), text))
        return text

    def complete(self, text, word):
        """Completions for GDB: option names, or the values of the option
        being typed. GDB replaces only `word` (it breaks words at '-'), so
        candidates are trimmed to the part after the typed prefix."""
        words = gdb.string_to_argv(text)
        if text and not text[-1].isspace() and words:
            current = words.pop()
        else:
            current = ""
        if words and words[-1] in self.options:
            option = self.options[words[-1]]
            if option.kind == "choice":
                return self._trim([c for c in option.choices
                                   if c.startswith(current)], current, word)
            if option.kind != "flag":
                return []
        if (not current.startswith("-") and self.positional and
                self.positional[0] == "ADDR"):
            return gdb.COMPLETE_EXPRESSION
        return self._trim([name for name in sorted(self.options)
                           if name.startswith(current)], current, word)

    @staticmethod
    def _trim(candidates, current, word):
        cut = len(current) - len(word or "")
        if cut <= 0:
            return candidates
        return [c[cut:] for c in candidates]

    def usage(self):
        parts = [self.command]
        for o in self.options.values():
            if o.kind == "flag":
                parts.append("[%s]" % o.name)
            elif o.kind == "choice":
                parts.append("[%s %s]" % (o.name, "|".join(o.choices)))
            else:
                parts.append("[%s %s]" % (o.name, o.dest.upper()))
        parts.extend(self.positional)
        return " ".join(parts)
