"""`set pymortem ...` / `show pymortem ...`: how the plugin reaches the
target, which symbols the library may use and whether it infers owners."""

import gdb


class PymortemPrefix(gdb.Command):
    """Settings of the pymortem heap commands."""

    def __init__(self, verb):
        super().__init__("%s pymortem" % verb, gdb.COMMAND_DATA, prefix=True)


class AccessParameter(gdb.Parameter):
    """How `heap` commands read the process: `auto` uses /proc for a native
process and the core file for a core; `callback` always reads through GDB
(as for gdbserver and remote targets)."""

    set_doc = "Set how pymortem reads the target."
    show_doc = "Show how pymortem reads the target."

    def __init__(self, session):
        self.session = session
        super().__init__("pymortem access", gdb.COMMAND_DATA, gdb.PARAM_ENUM,
                         ["auto", "callback"])
        self.value = "auto"

    def get_set_string(self):
        self.session.settings["access"] = self.value
        self.session.invalidate()
        return ""

    def get_show_string(self, svalue):
        return "pymortem reads the target: %s" % svalue


class DebuginfoParameter(gdb.Parameter):
    """Whether the library may use .symtab and separate debug files (`off`
uses only exported symbols, as on a system without debug packages)."""

    set_doc = "Set whether pymortem uses debug symbols."
    show_doc = "Show whether pymortem uses debug symbols."

    def __init__(self, session):
        self.session = session
        super().__init__("pymortem debuginfo", gdb.COMMAND_DATA,
                         gdb.PARAM_BOOLEAN)
        self.value = True

    def get_set_string(self):
        self.session.settings["no_debuginfo"] = not self.value
        self.session.invalidate()
        return ""

    def get_show_string(self, svalue):
        return "pymortem uses debug symbols: %s" % svalue


class PreciseParameter(gdb.Parameter):
    """Whether only the precise attributions are made (`on`: no
"held by T (inferred)" rows; an unknown allocation that one object alone
points at stays unknown)."""

    set_doc = "Set whether pymortem infers the owners of unknown allocations."
    show_doc = "Show whether pymortem infers the owners of unknown allocations."

    def __init__(self, session):
        self.session = session
        super().__init__("pymortem precise", gdb.COMMAND_DATA,
                         gdb.PARAM_BOOLEAN)
        self.value = False

    def get_set_string(self):
        self.session.settings["precise"] = self.value
        self.session.invalidate()
        return ""

    def get_show_string(self, svalue):
        return "pymortem makes only precise attributions: %s" % svalue


def register(session):
    PymortemPrefix("set")
    PymortemPrefix("show")
    AccessParameter(session)
    DebuginfoParameter(session)
    PreciseParameter(session)
