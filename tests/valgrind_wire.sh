#!/usr/bin/env bash
# Run the malformed-query corpus through fastdns's C codec under valgrind memcheck.
# Fails if memcheck reports any invalid read/write, or any error whose stack
# passes through fastdns's extension modules.  (CPython's own GC produces
# "uninitialised value" noise under valgrind without its suppression file;
# those stacks never touch fastdns and are counted apart.)
set -u
cd "$(dirname "$0")/.."
PY=$(python -c 'import sys; print(sys.executable)')
log=$(mktemp)
PYTHONMALLOC=malloc valgrind --tool=memcheck --num-callers=30 "$PY" tests/valgrind_corpus.py >"$log" 2>&1
grep "packets:" "$log"
invalid=$(grep -c "Invalid read\|Invalid write\|Invalid free" "$log")
ours=$(awk '/^==[0-9]+== [A-Z]/{blk=$0; next} /fastdns\/_|_wire|_loop|_answers|_shmcache/{print blk}' "$log" | sort -u | wc -l)
total=$(grep "ERROR SUMMARY" "$log")
echo "memcheck: invalid reads/writes: $invalid; errors in fastdns frames: $ours; ($total)"
rm -f "$log"
[ "$invalid" -eq 0 ] && [ "$ours" -eq 0 ]
