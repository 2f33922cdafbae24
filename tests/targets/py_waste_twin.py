"""The class whose instances py_waste.py keeps (Record, with a __dict__)
and its twin with __slots__; run as a script it measures what N instances
of one of them take, as pymalloc sees it: sys._debugmallocstats()'s bytes
in allocated blocks before and after making them (the list that holds
them is made first). Prints JSON {"bytes": ..., "n": ...}.

    python py_waste_twin.py Record|SlottedRecord N"""
import json
import os
import sys
import tempfile


class Record:
    def __init__(self, i):
        self.alpha = 1
        self.beta = None
        self.gamma = True
        if i % 3 == 0:
            self.delta = 2


class SlottedRecord:
    __slots__ = ("alpha", "beta", "gamma", "delta")

    def __init__(self, i):
        self.alpha = 1
        self.beta = None
        self.gamma = True
        if i % 3 == 0:
            self.delta = 2


def allocated_bytes(scratch):
    """pymalloc's bytes in allocated blocks, from sys._debugmallocstats()
    (it writes to the C stderr: fd 2, redirected to a file)."""
    saved = os.dup(2)
    os.lseek(scratch, 0, 0)
    os.ftruncate(scratch, 0)
    os.dup2(scratch, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(scratch, 0, 0)
    text = os.read(scratch, 1 << 20).decode()
    for line in text.splitlines():
        if line.startswith("# bytes in allocated blocks"):
            return int(line.split("=")[1].replace(",", ""))
    raise RuntimeError("no allocated blocks line:\n" + text)


def main():
    cls = {"Record": Record, "SlottedRecord": SlottedRecord}[sys.argv[1]]
    n = int(sys.argv[2])
    kept = [None] * n
    cls(0)          # warm-up: the class's shared keys, caches
    with tempfile.TemporaryFile() as f:
        fd = f.fileno()
        allocated_bytes(fd)
        before = allocated_bytes(fd)
        for i in range(n):
            kept[i] = cls(i)
        after = allocated_bytes(fd)
    print(json.dumps({"bytes": after - before, "n": n}))


if __name__ == "__main__":
    main()
