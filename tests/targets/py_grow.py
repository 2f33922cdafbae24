"""A process that grows by known amounts between two stops, for diff
(tests/e2e/test_diff.py).

First stop: the oracle (PM_ORACLE_FILE) says how much it will grow. Sent
SIGUSR1 and continued, it makes N instances of Growth, M strs and K floats
(appended to a list that exists already), writes their ids to
<oracle>.grown (int64s: N, M and K ids, then the three types' pymalloc
block sizes) and stops again. Until SIGUSR1 it waits in
signal.pause(), which allocates nothing: a debugger that resumes it
(gcore) changes nothing.

Everything the growth and the report of it need is made before the first
stop (the id arrays are array('q') of the final length, the file names
str), so that what the process holds in the end is the first state plus
exactly those objects, as far as the interpreter allows: what else it
keeps is allowed for in the test, and named there."""
import array
import gc
import json
import os
import signal
import sys
import time

N_GROWTH, M_STR, K_FLOAT = 3000, 2000, 1500
PYMALLOC = os.environ.get("PYTHONMALLOC") != "malloc"


class Growth:
    def __init__(self, i):
        self.i = i


HELD = []
GO = [False]
FLOATS = [0.5]
GROWTH_IDS = array.array("q", bytes(8 * N_GROWTH))
STR_IDS = array.array("q", bytes(8 * M_STR))
FLOAT_IDS = array.array("q", bytes(8 * K_FLOAT))
SIZES = array.array("q", bytes(8 * 3))      # Growth, str, float blocks


def debug_hooks():
    """Whether PyMem's debug hooks wrap every allocation: asked for, or by
    default in dev mode and in a pydebug build."""
    asked = os.environ.get("PYTHONMALLOC", "")
    if asked:
        return asked == "debug" or asked.endswith("_debug")
    return bool(sys.flags.dev_mode) or hasattr(sys, "gettotalrefcount")


# The hooks' bytes around each block (3.8+: a size word and an API id
# before, forbidden bytes after: PYMEM_DEBUG_EXTRA_BYTES).
DEBUG_EXTRA = 24 if debug_hooks() else 0


def block(size):
    """The pymalloc block of an object of sys.getsizeof() == size (it counts
    the GC head and pre-header), with the debug hooks' bytes: 16-byte
    steps."""
    return (size + DEBUG_EXTRA + 15) & ~15


def grow():
    for i in range(N_GROWTH):
        g = Growth(i)
        HELD.append(g)
        GROWTH_IDS[i] = id(g)
    for i in range(M_STR):
        s = "grown-str-%06d" % i
        HELD.append(s)
        STR_IDS[i] = id(s)
    for i in range(K_FLOAT):
        f = i + 0.25
        FLOATS.append(f)
        FLOAT_IDS[i] = id(f)


def report(fd, tmp, result):
    """Writes the ids and sizes as int64s, from arrays made before (no
    text, no file object: nothing it makes outlives it)."""
    SIZES[0] = block(sys.getsizeof(HELD[0]))
    SIZES[1] = block(sys.getsizeof(HELD[N_GROWTH]))
    SIZES[2] = block(sys.getsizeof(FLOATS[1]))
    for ids in (GROWTH_IDS, STR_IDS, FLOAT_IDS, SIZES):
        os.write(fd, ids)
    os.close(fd)
    os.rename(tmp, result)


def write_oracle(oracle):
    """In a function of its own: the file object and the text die with it."""
    info = {"pid": os.getpid(), "python": list(sys.version_info[:3]),
            "pymalloc": PYMALLOC, "n": {"Growth": N_GROWTH, "str": M_STR,
                                         "float": K_FLOAT}}
    with open(oracle + ".tmp", "w") as f:
        json.dump(info, f)
    os.rename(oracle + ".tmp", oracle)


def go(signum, frame):
    GO[0] = True


def main():
    oracle = os.environ["PM_ORACLE_FILE"]
    result, tmp = oracle + ".grown", oracle + ".grown.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    signal.signal(signal.SIGUSR1, go)
    write_oracle(oracle)
    # json.dump leaves reference cycles (its encoder's closures, with the
    # strs and floats they hold): collected now, and no collection while
    # growing frees anything the first state had.
    gc.collect()
    gc.disable()
    os.kill(os.getpid(), signal.SIGSTOP)
    while not GO[0]:
        signal.pause()
    grow()
    report(fd, tmp, result)
    os.kill(os.getpid(), signal.SIGSTOP)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
