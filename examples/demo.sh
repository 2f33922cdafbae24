#!/usr/bin/env bash
# The main job on two built-in examples: start a Python service that leaks
# memory, attach GDB to it, and ask pymortem where the memory went; then
# one that does not leak but holds far more than it needs, and ask what a
# change would save.
#   PYTHON     the interpreter (default: Debian's stripped /usr/bin/python3.11)
#   REQUESTS   requests the service serves before it idles (default 200000)
#   PRODUCTS   products the second service loads (default 100000)
#   PYMORTEM_BUILD  an existing build directory to use; without it the demo
#              installs what is missing and builds build/ (tests/setup-debian.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYMORTEM_BUILD:-}" ]; then
  build=$PYMORTEM_BUILD
else
  bash tests/setup-debian.sh
  build=build
fi
PYTHON=${PYTHON:-/usr/bin/python3.11}
REQUESTS=${REQUESTS:-200000}
PRODUCTS=${PRODUCTS:-100000}
log=$(mktemp)
"$PYTHON" examples/leaky_service.py "$REQUESTS" >"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q ready "$log" && break; sleep 0.1; done
grep -q ready "$log" || { echo "demo: the service did not start" >&2; exit 1; }
echo "== gdb -p $pid   (service: $PYTHON examples/leaky_service.py $REQUESTS)"
# What a user types is `gdb -p PID`, then the commands below at the (gdb)
# prompt. Here GDB's own messages about attaching (thread debugging, the
# frame the process stopped in and its missing source file, "detached" at
# the end) are kept out so that the reports are all there is: the attach's
# output is captured and dropped, the stop is not announced, and inferior
# events are not printed. Each command is echoed as typed.
commands=$(mktemp)
trap 'kill $pid 2>/dev/null; rm -f "$log" "$commands"' EXIT
cat >"$commands" <<'GDB'
echo (gdb) heap summary --top 12\n
heap summary --top 12
echo \n(gdb) heap retained --top 3\n
heap retained --top 3
python
# One receipt and what keeps it alive: the address comes from the select
# (as a user would copy it), then `heap path` names the chain from a root.
import json
select = 'heap select kind == "bytes" and size > 1000 --limit 1'
print("\n(gdb) " + select)
gdb.execute(select)
found = json.loads(gdb.execute(select + " --json", to_string=True))
receipt = found["allocations"][0]["object"]
print("\n(gdb) heap path 0x%x" % receipt)
gdb.execute("heap path 0x%x" % receipt)
end
GDB
gdb -nx -q -batch \
  -iex "set suppress-cli-notifications on" -iex "set print inferior-events off" \
  -ex "python gdb.execute('attach $pid', to_string=True)" \
  -ex "source $build/gdbplugin/pymortem-gdb.py" \
  -x "$commands"
kill $pid 2>/dev/null
wait $pid 2>/dev/null || true

# The second service: no leak, but the memory a few habits cost.
"$PYTHON" examples/wasteful_service.py "$PRODUCTS" >"$log" &
pid=$!
for _ in $(seq 600); do grep -q ready "$log" && break; sleep 0.1; done
grep -q ready "$log" || { echo "demo: the second service did not start" >&2; exit 1; }
echo
echo "== gdb -p $pid   (service: $PYTHON examples/wasteful_service.py $PRODUCTS)"
gdb -nx -q -batch \
  -iex "set suppress-cli-notifications on" -iex "set print inferior-events off" \
  -ex "python gdb.execute('attach $pid', to_string=True)" \
  -ex "source $build/gdbplugin/pymortem-gdb.py" \
  -ex "echo (gdb) heap waste --top 1\\n" -ex "heap waste --top 1"
