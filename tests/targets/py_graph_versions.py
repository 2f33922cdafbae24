"""Reference-graph facts whose layout moved in CPython 3.14 and 3.15, with
what the interpreter itself says of them, written to $PM_ORACLE_FILE
before the process stops itself (SIGSTOP):

- a module made at run time (types.ModuleType) in sys.modules under its
  own name, holding a list only it refers to: the module's id, the id of
  its name (md_name is the __name__ str its __init__ stored), its
  gc.get_referents, and the ids along sys.modules -> module -> its dict
  -> the list;
- a bytearray only that module refers to and, on 3.15, the bytes object
  it keeps its data in (found from the buffer's address with ctypes and
  checked to be a bytes object; gc.get_referents knows no bytearray
  references);
- a finished frame object whose f_locals got a name the code does not
  have (3.13+ keep it in the frame's f_extra_locals dict) and a new value
  for one it has (3.14+ keep the old one in f_overwritten_fast_locals),
  with its gc.get_referents.

Standard library only; 3.8 and later."""

import ctypes
import gc
import json
import os
import signal
import sys
import types

MODULE = "pm_graph_versions_mod"
# offsetof(PyBytesObject, ob_sval): sizeof(bytes) is that + length + NUL
BYTES_HEADER = sys.getsizeof(b"") - 1


def bytearray_bytes(o):
    """3.15+: the bytes object whose characters o's buffer is (None
    before 3.15, or when its buffer starts no bytes object's data)."""
    if sys.version_info < (3, 15) or not o:
        return None
    view = (ctypes.c_char * len(o)).from_buffer(o)
    addr = ctypes.addressof(view) - BYTES_HEADER
    del view                    # the buffer export
    if ctypes.c_void_p.from_address(addr + 8).value != id(bytes):
        return None
    return ctypes.cast(addr, ctypes.py_object).value


def make_module():
    """What the oracle says of the module; it and the objects planted in
    it are held by nothing else (no frame's local: a path from one would
    be shorter than from sys.modules)."""
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    module.held = ["held-by-" + MODULE]
    module.data = bytearray(b"bytearray-of-" + MODULE.encode())
    data = bytearray_bytes(module.data)
    return {
        "module": id(module),
        "name": id(module.__name__),
        "name_text": module.__name__,
        "modules_key": [k for k, v in sys.modules.items() if v is module],
        "referents": sorted(id(o) for o in gc.get_referents(module)),
        "path": [id(sys.modules), id(module), id(module.__dict__),
                 id(module.held)],
        "held": id(module.held),
        "bytearray": id(module.data),
        "bytearray_bytes": id(data) if data is not None else None,
        "bytes_type": data is not None and type(data) is bytes,
    }


def frame_with_extra_locals():
    marker = ["extra-local"]

    def body():
        replaced = ["replaced-local"]
        frame = sys._getframe()
        if sys.version_info >= (3, 13):
            # not one of body's names: kept in f_extra_locals
            frame.f_locals["pm_extra"] = marker
            # one of them, written through the proxy: 3.14+ keep the
            # value it replaced in f_overwritten_fast_locals
            frame.f_locals["replaced"] = ["replacement-local"]
        return frame

    return body(), marker


KEEP = []


def main():
    oracle = make_module()
    frame, marker = frame_with_extra_locals()
    KEEP.extend((frame, marker))
    oracle["frame"] = id(frame)
    oracle["frame_referents"] = sorted(id(o) for o in gc.get_referents(frame))
    oracle["frame_marker"] = id(marker)
    del frame, marker
    with open(os.environ["PM_ORACLE_FILE"], "w") as f:
        json.dump(oracle, f)
    os.kill(os.getpid(), signal.SIGSTOP)


if __name__ == "__main__":
    main()
