"""Workload of tests/e2e/test_inferred.py: makes inferred_ext.Holder
objects (argv[1]: the directory of the extension built for this
interpreter), each holding a malloc'd buffer of its own behind a plain
field (its address as hex text: an int would be a second pointer), every 10th with a second buffer that only its first buffer points at,
plus a stale one (buffer freed, pointer kept) and a pair sharing one
buffer; writes every object's id and buffer address to the oracle
($PM_ORACLE_FILE) and stops itself, forever."""

import json
import os
import signal
import sys

sys.path.insert(0, sys.argv[1])
import inferred_ext  # noqa: E402

COUNT = 300


def main():
    # Sizes 100..4999 bytes: tcache'd, small-bin and large-bin chunks.
    holders = [inferred_ext.Holder(100 + (i * 677) % 4900) for i in range(COUNT)]
    # Every 10th holds a second buffer behind its first (nested).
    nested = [{"id": id(h), "buffer": h.chain(200 + i), "size": 200 + i}
              for i, h in enumerate(holders) if i % 10 == 0]
    owner = inferred_ext.Holder(2345)
    sharer = inferred_ext.Holder(16)
    sharer.share(owner)
    stale = inferred_ext.Holder(3333)
    stale_address = stale.address()
    stale.free_buffer()
    # One more, checked for nothing (test_inferred allows it in the row).
    tail = inferred_ext.Holder(64)
    doc = {"version": list(sys.version_info[:3]), "pid": os.getpid(),
           "single": [{"id": id(h), "buffer": h.address(),
                       "size": 100 + (i * 677) % 4900}
                      for i, h in enumerate(holders)],
           "nested": nested,
           "shared": {"buffer": owner.address(), "ids": [id(owner), id(sharer)]},
           "stale": {"id": id(stale), "buffer": stale_address}}
    path = os.environ["PM_ORACLE_FILE"]
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)
    del doc, nested
    keep = (holders, owner, sharer, stale, tail)
    while keep:
        os.kill(os.getpid(), signal.SIGSTOP)


main()
