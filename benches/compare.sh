#!/bin/bash
# Run pgtopo's switchover beside the shared benchmark's tools, in rotation, in the same session:
#   RUNS=5 benches/compare.sh                     # pgtopo manual repmgr autofailover patroni
#   RUNS=3 benches/compare.sh pgtopo manual       # only some
# Appends every result line to benches/results/switchover.jsonl and prints the shared summary.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd)}
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "shared bench harness not found (set SHARED_BENCH)" >&2; exit 1; }
export SHARED_BENCH
RUNS=${RUNS:-3}
TOOLS=("$@")
[ ${#TOOLS[@]} -gt 0 ] || TOOLS=(pgtopo manual repmgr autofailover patroni)
(cd "$HERE/.." && cargo build --release --quiet) || exit 1
mkdir -p "$HERE/results/logs"
OUT=$HERE/results/switchover.jsonl
fail=0
for r in $(seq 1 "$RUNS"); do
    for t in "${TOOLS[@]}"; do
        if [ "$t" = pgtopo ]; then script=$HERE/pgtopo-switchover.sh; else script=$SHARED_BENCH/$t-switchover.sh; fi
        logf=$HERE/results/logs/$t-$r-$(date +%Y%m%dT%H%M%S).log
        echo "== round $r/$RUNS: $t (log: $logf)" >&2
        if line=$(bash "$script" 2>"$logf"); then
            echo "$line" | tee -a "$OUT"
        else
            echo "!! $t round $r failed, see $logf" >&2
            tail -5 "$logf" >&2
            fail=$((fail + 1))
        fi
    done
done
/usr/bin/python3 "$SHARED_BENCH/summarize.py" "$OUT"
exit $((fail > 0))
