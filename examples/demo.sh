#!/usr/bin/env bash
# The main job on a built-in example: start a Python service that leaks
# memory, attach GDB to it, and ask pymortem where the memory went.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup-debian.sh
PYTHON=${PYTHON:-/usr/bin/python3.11}
log=$(mktemp)
"$PYTHON" examples/leaky_service.py 200000 >"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q ready "$log" && break; sleep 0.1; done
grep -q ready "$log" || { echo "demo: the service did not start" >&2; exit 1; }
echo "== gdb -p $pid -ex 'heap summary'   (service: $PYTHON examples/leaky_service.py)"
gdb -q -p "$pid" -batch -ex "source build/gdbplugin/pymortem-gdb.py" -ex "heap summary --top 15"
