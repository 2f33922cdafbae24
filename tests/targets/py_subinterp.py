"""Workload for the sub-interpreter test (CPython 3.12+): an isolated
sub-interpreter with its own pymalloc state allocates and keeps objects,
records sys._debugmallocstats() from inside (3.12+ reports the current
interpreter only) into <oracle>.sub.dms, then the main interpreter records
its own into <oracle>.main.dms as its last act, and stops (SIGSTOP, forever).
"""
import os, sys, signal, json
try:
    import _xxsubinterpreters as interpreters
except ImportError:
    import _interpreters as interpreters
out = os.environ['PM_ORACLE_FILE']
try:
    iid = interpreters.create(isolated=True)
except TypeError:
    iid = interpreters.create()
code = '''
import os, sys
keep = [object() for _ in range(5000)] + [str(i) * 3 for i in range(3000)]
fd = os.open(%r, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
saved = os.dup(2); os.dup2(fd, 2); sys._debugmallocstats(); os.dup2(saved, 2); os.close(saved); os.close(fd)
''' % (out + '.sub.dms')
try:
    interpreters.run_string(iid, code)
except AttributeError:
    interpreters.exec(iid, code)
keep = [object() for _ in range(1000)]
kill, pid, sig = os.kill, os.getpid(), signal.SIGSTOP
fd = os.open(out + '.main.dms', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
open(out + '.tmp', 'w').write(json.dumps({'sub': iid if isinstance(iid, int) else str(iid)}))
rename, src = os.rename, out + '.tmp'
saved = os.dup(2); os.dup2(fd, 2); sys._debugmallocstats(); os.dup2(saved, 2)
rename(src, out)
while True: kill(pid, sig)
