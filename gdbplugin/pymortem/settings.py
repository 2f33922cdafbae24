"""`set pymortem ...` / `show pymortem ...`: how the plugin reaches the
target, which symbols the library may use and whether it infers owners."""

import gdb


class PymortemPrefix(gdb.Command):
    """Settings of the pymortem heap commands."""

    def __init__(self, verb):
        super().__init__("%s pymortem" % verb, gdb.COMMAND_DATA, prefix=True)


class SessionParameter(gdb.Parameter):
    """A `pymortem NAME` parameter kept in the session's settings under
    `key`: setting it drops what the session analysed with the old value.
    Subclasses give the docs, `name`, `key`, the GDB kind, the default and
    `shown` (the show line's format); `stored` maps the value to the
    setting's."""

    kind_args = ()

    def __init__(self, session):
        self.session = session
        super().__init__("pymortem " + self.name, gdb.COMMAND_DATA,
                         *self.kind_args)
        self.value = self.default

    def stored(self, value):
        return value

    def get_set_string(self):
        self.session.settings[self.key] = self.stored(self.value)
        self.session.invalidate()
        return ""

    def get_show_string(self, svalue):
        return self.shown % svalue


class AccessParameter(SessionParameter):
    """How `heap` commands read the process: `auto` uses /proc for a native
process and the core file for a core; `callback` always reads through GDB
(as for gdbserver and remote targets)."""

    set_doc = "Set how pymortem reads the target."
    show_doc = "Show how pymortem reads the target."
    name, key, default = "access", "access", "auto"
    kind_args = (gdb.PARAM_ENUM, ["auto", "callback"])
    shown = "pymortem reads the target: %s"


class DebuginfoParameter(SessionParameter):
    """Whether the library may use .symtab and separate debug files (`off`
uses only exported symbols, as on a system without debug packages)."""

    set_doc = "Set whether pymortem uses debug symbols."
    show_doc = "Show whether pymortem uses debug symbols."
    name, key, default = "debuginfo", "no_debuginfo", True
    kind_args = (gdb.PARAM_BOOLEAN,)
    shown = "pymortem uses debug symbols: %s"

    def stored(self, value):
        return not value


class PreciseParameter(SessionParameter):
    """Whether only the precise attributions are made (`on`: no
"held by T (inferred)" rows; an unknown allocation that one object alone
points at stays unknown)."""

    set_doc = "Set whether pymortem infers the owners of unknown allocations."
    show_doc = "Show whether pymortem infers the owners of unknown allocations."
    name, key, default = "precise", "precise", False
    kind_args = (gdb.PARAM_BOOLEAN,)
    shown = "pymortem makes only precise attributions: %s"


def register(session):
    PymortemPrefix("set")
    PymortemPrefix("show")
    AccessParameter(session)
    DebuginfoParameter(session)
    PreciseParameter(session)
