"""Python target for the glibc walker tests, run by any CPython 3.8-3.13:
builds a workload (objects of many sizes, big buffers that glibc mmaps, a
few threads so non-main arenas exist), then captures mallinfo2() through
ctypes and stops itself with SIGSTOP in the same function, so nothing
allocates in between. The oracle JSON goes to $PM_ORACLE_FILE.

(The shared tests/targets/py_workload.py does the same for the CPython
tests; this one keeps the glibc tests independent of its options.)"""
import ctypes
import json
import os
import signal
import sys
import threading

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
          "fsmblks", "uordblks", "fordblks", "keepcost")


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def workload():
    keep = []
    keep.append([str(i) * (i % 50) for i in range(20000)])
    keep.append({i: bytes(i % 700) for i in range(5000)})
    keep.append([bytearray(200000 + i) for i in range(3)])   # mmapped
    waste = [bytearray(3000 + i) for i in range(200)]
    del waste[::2]
    keep.append(waste)
    return keep


def thread_body(ready, done, out):
    out.append(workload())
    ready.release()
    done.acquire()


def main():
    keep = workload()
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    raise_ = getattr(libc, "raise")
    nthreads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    ready, done = threading.Semaphore(0), threading.Semaphore(0)
    outs = []
    threads = [threading.Thread(target=thread_body, args=(ready, done, outs))
               for _ in range(nthreads)]
    for t in threads:
        t.start()
    for _ in threads:
        ready.acquire()
    path = os.environ["PM_ORACLE_FILE"]
    tmp = path + ".tmp"
    sigstop = int(signal.SIGSTOP)
    # Writing the oracle must not move glibc's state: an unbuffered fd, a
    # short text (pymalloc-sized pieces), and a re-check that mallinfo2 did
    # not change while writing.
    for _ in range(10):
        m = libc.mallinfo2()
        values = [getattr(m, k) for k in FIELDS]
        text = json.dumps({"mallinfo2": dict(zip(FIELDS, values)),
                           "version": list(sys.version_info[:3]),
                           "threads": nthreads, "pid": os.getpid()})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, text.encode())
        os.close(fd)
        m2 = libc.mallinfo2()
        if [getattr(m2, k) for k in FIELDS] == values:
            break
    os.rename(tmp, path)
    m3 = libc.mallinfo2()
    if [getattr(m3, k) for k in FIELDS] != values:
        sys.exit("mallinfo2 keeps changing while the oracle is written")
    while True:
        raise_(sigstop)
    del keep


main()
