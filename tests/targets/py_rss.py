"""A workload for the rss and fragmentation tests: it frees most of what it
allocated, writes the oracle (mallinfo2, sys._debugmallocstats()) to
$PM_ORACLE_FILE and stops itself. After that it serves commands, so a test
can act inside the same process after pymortem has analysed it: each resume
(SIGCONT) reads one command from the FIFO 'command' in its cwd, answers on
the FIFO 'reply' and stops again.

  trim          calls malloc_trim(0) (prepared before the oracle, so the call
                makes no new allocation of its own), answers its result
  free ADDR...  drops the kept objects whose id() is one of ADDRs, writes
                sys._debugmallocstats() to after.dms, answers how many

Options: --fastbins MB (100-byte malloc()s freed but 1 in 64: fastbin
chunks that only malloc_consolidate() merges), --heap MB (bytes objects of 1-100 KB, about 1 in 10 kept, the
last one kept so the top cannot shrink fully), --threads N (N threads do
the same at once, each in its own glibc arena), --pinned N (N pymalloc
arenas of 224-byte blocks of which 3 per arena are kept: pinned arenas).
"""
import ctypes
import functools
import itertools
import os
import random
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import py_workload  # noqa: E402  (its Oracle captures mallinfo2 and dms)

KEPT = []           # what the heap phase keeps
PINS = []           # the objects that pin pymalloc arenas
# PINS' replacement when PINS itself is named as pinning (it is one more
# live block, and may sit in an arena that is otherwise empty): made now,
# so that releasing PINS allocates nothing.
SPARE_PINS = []


def churn(megabytes, seed, kept):
    """Allocates ~megabytes of bytes objects of 1-100 KB, keeps about one
    in ten (and the last), frees the rest."""
    rng = random.Random(seed)
    objs = []
    total = 0
    while total < megabytes << 20:
        n = rng.randrange(1 << 10, 100 << 10)
        objs.append(b"x" * n)
        total += n
    for i in range(0, len(objs), 10):
        kept.append(objs[i])
    kept.append(objs[-1])
    del objs


def heap_phase(megabytes, nthreads):
    if not megabytes:
        return
    churn(megabytes, 1, KEPT)
    if not nthreads:
        return
    # All threads allocate at once, so each gets an arena of its own.
    barrier = threading.Barrier(nthreads)
    lock = threading.Lock()

    def body(k):
        barrier.wait()
        mine = []
        churn(megabytes, 100 + k, mine)
        with lock:
            KEPT.extend(mine)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def fastbin_phase(megabytes, done, park):
    """Small malloc chunks (112 bytes: fastbin sized) freed but every 64th:
    (in this thread's arena)
    past the tcache's 7 per size they go to the fastbins, whole runs of
    them, which only malloc_trim's malloc_consolidate() merges into chunks
    with whole pages."""
    import array
    libc = ctypes.CDLL(None)
    malloc, free = libc.malloc, libc.free
    malloc.restype = ctypes.c_void_p
    malloc.argtypes = [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]
    count = (megabytes << 20) // 112
    pointers = array.array("Q", [0]) * count
    for i in range(count):
        pointers[i] = malloc(100)
    for i in range(count):
        if i % 64:
            free(pointers[i])
    FASTBIN_KEPT.append(pointers)
    # C calls only from here: a Python frame of 1 KiB or more (3.8-3.10
    # frames are malloc'd) would consolidate the fastbins.
    release, read = done.release, os.read
    release()
    read(park, 1)       # never written: parked for good


FASTBIN_KEPT = []


def pinned_phase(arenas):
    """Fills about `arenas` pymalloc arenas with 224-byte blocks (bytes of
    180: a size class little else uses) and keeps 3 per arena. No int is
    made while filling (itertools.repeat), so the blocks are all ours."""
    per_arena = (1 << 20) // 224 if sys.version_info >= (3, 10) else (256 << 10) // 224
    count = arenas * per_arena
    objs = [bytes(180) for _ in itertools.repeat(None, count)]
    PINS.extend(objs[::per_arena // 3])
    del objs


def serve(command_fd, reply_fd, trim, stop_self, last_readings):
    """The last readings, then the command loop. The readings are made
    here, not before the call: a 3.8-3.10 frame for this function is a
    heap object of ~550 bytes, a glibc chunk."""
    # Commands are read into a buffer made now: os.read(fd, N) would
    # malloc N bytes first, and a glibc allocation before malloc_trim
    # changes what it returns.
    readv, write, buf = os.readv, os.write, bytearray(1 << 20)
    dup2, debugmallocstats, last_dms, saved_err, mallinfo2, memmove, \
        addressof, final_address, size = last_readings
    dup2(last_dms, 2)
    debugmallocstats()
    dup2(saved_err, 2)
    result = mallinfo2()
    memmove(final_address, addressof(result), size)
    del result
    while True:
        stop_self()
        command = bytes(buf[:readv(command_fd, [buf])])
        if command == b"trim":
            write(reply_fd, b"%d\n" % trim(0))
        elif command.startswith(b"free "):
            wanted = set(int(x) for x in command[5:].split())
            dropped = 0
            o = None
            for i, o in enumerate(PINS):
                if id(o) in wanted:
                    PINS[i] = None
                    dropped += 1
            del o
            if id(PINS) in wanted:
                globals()["PINS"] = SPARE_PINS    # the old list goes
                dropped += 1
            wanted = None
            fd = os.open("after.dms", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            saved = os.dup(2)
            os.dup2(fd, 2)
            sys._debugmallocstats()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
            write(reply_fd, b"%d\n" % dropped)
        else:
            write(reply_fd, b"?\n")


PR_SET_THP_DISABLE = 41


def main(argv):
    # No transparent huge pages: khugepaged would collapse ranges of the
    # heap (making their untouched pages resident) at any moment, between
    # pymortem's reading of smaps and the test's.
    ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    # The FIFOs and files live beside the oracle (the cwd is there unless
    # a chroot moved it to /).
    os.chdir(os.path.dirname(os.environ["PM_ORACLE_FILE"]))
    args = dict(heap=0, threads=0, pinned=0, fastbins=0)
    it = iter(argv)
    for a in it:
        args[a.lstrip("-")] = int(next(it))
    heap_phase(args["heap"], args["threads"])
    if args["fastbins"]:
        # In a thread of its own that stays (parked) and so keeps its
        # arena: any malloc of 1 KiB or more in an arena consolidates its
        # fastbins, and the main thread makes many before the stop.
        done = threading.Lock()
        done.acquire()
        park, _ = os.pipe()
        threading.Thread(target=fastbin_phase,
                         args=(args["fastbins"], done, park), daemon=True).start()
        done.acquire()
    pinned_phase(args["pinned"])
    libc = ctypes.CDLL(None)
    trim = libc.malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    # The call machinery, warmed up on a harmless function of the same shape.
    labs = libc.labs
    labs.argtypes = [ctypes.c_size_t]
    labs.restype = ctypes.c_int
    labs(0)
    os.mkfifo("command")
    os.mkfifo("reply")
    command_fd = os.open("command", os.O_RDWR)
    reply_fd = os.open("reply", os.O_RDWR)
    path = os.environ["PM_ORACLE_FILE"]
    oracle = py_workload.Oracle(path)
    # mallinfo2() once more as the last act before the stop, into memory
    # the test reads through /proc/PID/mem (written as text, the numbers
    # would need allocations after the reading).
    final = py_workload.Mallinfo2()
    mallinfo2 = oracle.mallinfo2
    memmove, addressof = ctypes.memmove, ctypes.addressof
    final_address = addressof(final)
    size = ctypes.sizeof(final)
    doc = {"pid": os.getpid(), "mallinfo2_final": [final_address, size],
           "mallinfo2_fields": [name for name, _ in py_workload.Mallinfo2._fields_], "threads": args["threads"],
           "version": list(sys.version_info[:3]),
           "pins": [id(o) for o in PINS] + [id(PINS)]}
    # As py_workload does: sys._debugmallocstats() once more as the last
    # act before the stop, into <oracle>.last.dms (finish() still runs a
    # little Python after its own reading).
    # Made now: after the last reading only objects that exist run.
    stop_self = functools.partial(os.kill, os.getpid(), signal.SIGSTOP)
    last_dms = os.open(path + ".last.dms", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved_err = os.dup(2)
    dup2, debugmallocstats = os.dup2, sys._debugmallocstats
    oracle.finish(path, doc, False)
    serve(command_fd, reply_fd, trim, stop_self,
          (dup2, debugmallocstats, last_dms, saved_err, mallinfo2, memmove,
           addressof, final_address, size))


if __name__ == "__main__":
    main(sys.argv[1:])
