"""pymortem's GDB command layer: `heap ...` commands over the libpymortem
binding. Loaded by pymortem-gdb.py; register() is safe to call again (e.g.
when the loader is sourced twice)."""

from . import binding
from .commands import SUBCOMMANDS, HeapCommand
from .session import Session
from . import settings

_session = None


def register():
    """Defines the commands and connects the cache to GDB's events."""
    global _session
    if _session is not None:
        _session.disconnect_events()
        _session.invalidate()
    _session = Session()
    _session.connect_events()
    HeapCommand(_session)
    for command in SUBCOMMANDS:
        command(_session)
    settings.register(_session)
    return _session


def version():
    return binding.version
