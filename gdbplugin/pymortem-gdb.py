# pymortem GDB plugin loader. Load it with one line (in ~/.gdbinit or on the
# command line):   source /path/to/pymortem-gdb.py
# It finds the pymortem package next to itself (or where `meson install` put
# it) and defines the `heap` commands.
import os
import sys

import gdb


def _pymortem_load():
    if sys.version_info < (3, 8):
        gdb.write("pymortem: this GDB embeds Python %d.%d; pymortem needs "
                  "3.8 or newer. `heap` commands are not available.\n"
                  % sys.version_info[:2], gdb.STDERR)
        return
    candidates = [os.environ.get("PYMORTEM_GDB_DIR"),
                  os.path.dirname(os.path.abspath(globals().get("__file__", ""))),
                  "@PLUGIN_DIR@"]
    for directory in candidates:
        if directory and os.path.isfile(os.path.join(directory, "pymortem",
                                                     "__init__.py")):
            break
    else:
        gdb.write("pymortem: cannot find the pymortem package (looked in %s)\n"
                  % ", ".join(d for d in candidates if d), gdb.STDERR)
        return
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        import pymortem
        pymortem.register()
    except ImportError as e:
        gdb.write("pymortem: cannot load the library: %s\n" % e, gdb.STDERR)


_pymortem_load()
del _pymortem_load
