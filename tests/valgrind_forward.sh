#!/usr/bin/env bash
# The C forwarder and the C TCP server against hostile peers under valgrind memcheck
# (tests/valgrind_forward.py).  Fails on any invalid read/write/free, or any error whose
# stack passes through fastdns's extension modules; CPython's own noise is counted apart.
set -u
cd "$(dirname "$0")/.."
PY=$(python -c 'import sys; print(sys.executable)')
log=$(mktemp)
PYTHONMALLOC=malloc ROUNDS=${ROUNDS:-300} valgrind --tool=memcheck --num-callers=30 \
    "$PY" tests/valgrind_forward.py >"$log" 2>&1
rc=$?
grep "^rounds:" "$log"
invalid=$(grep -c "Invalid read\|Invalid write\|Invalid free" "$log")
ours=$(awk '/^==[0-9]+== [A-Z]/{blk=$0; next} /fastdns\/_|_wire|_loop|_answers|_shmcache/{print blk}' "$log" | sort -u | wc -l)
total=$(grep "ERROR SUMMARY" "$log")
echo "memcheck: exit $rc; invalid reads/writes: $invalid; errors in fastdns frames: $ours; ($total)"
[ "$invalid" -eq 0 ] && [ "$ours" -eq 0 ] && [ "$rc" -eq 0 ] || { tail -60 "$log"; rm -f "$log"; exit 1; }
rm -f "$log"
