#!/bin/bash
# pgtopo as one more tool of the shared switchover benchmark (../shared/bench, "Adding a tool"):
# a 2-node cluster built by pgtopo itself (`sandbox up` + `apply`), the shared probe writer,
# then the switchover is `pgtopo apply --auto-approve` of the topology with n2 as primary.
# Prints ONE JSON line on stdout (same fields as the other tools), progress on stderr.
# Ports: PGTOPO_PORT1/2 (55461/55462). Needs the shared harness: SHARED_BENCH (default
# ../../shared/bench relative to this file) and a built pgtopo (PGTOPO, default target/release).
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$HERE/../../shared/bench" 2>/dev/null && pwd)}
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "shared bench harness not found (set SHARED_BENCH)" >&2; exit 1; }
source "$SHARED_BENCH/lib.sh"
PGTOPO=${PGTOPO:-$HERE/../target/release/pgtopo}
[ -x "$PGTOPO" ] || die "pgtopo binary not found at $PGTOPO (cargo build --release)"

BASE=/tmp/bench-pgtopo
P1=${PGTOPO_PORT1:-55461}
P2=${PGTOPO_PORT2:-55462}
SB=$BASE/sandbox
TOPO=$SB/topology.yaml
CONNINFO="host=127.0.0.1,127.0.0.2 port=$P1,$P2 user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=1"

teardown_and_clean
trap teardown EXIT
require_free_ports "$P1" "$P2"
mkdir -p "$BASE"; : >"$BASE/pids"

log "pgtopo sandbox up (2 nodes) and apply (builds n2)"
"$PGTOPO" sandbox up --dir "$SB" --nodes 2 --port "$P1" >&2
"$PGTOPO" -f "$TOPO" apply --auto-approve >&2 || die "bootstrap apply failed"

start_writer "$CONNINFO"
log "writer running (PID $WRITER_PID), warm-up ${WARMUP_S}s"
sleep "$WARMUP_S"

# The reviewed change: n2 becomes the primary, n1 follows it.
"$PY" - "$TOPO" <<'PYEOF'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("    role: primary\n", "    role: @old@\n", 1)
s = s.replace("    role: standby\n    upstream: n1\n", "    role: primary\n", 1)
s = s.replace("    role: @old@\n", "    role: standby\n    upstream: n2\n", 1)
open(p, "w").write(s)
PYEOF
"$PGTOPO" -f "$TOPO" plan --no-color >&2

# ---------------- switchover ----------------
T0=$(now)
log "switchover start"
"$PGTOPO" -f "$TOPO" apply --auto-approve --journal "$BASE/journal.jsonl" >&2 || die "switchover apply failed"
T1=$(now)
log "switchover done in $(fsub "$T1" "$T0") s"
# ---------------------------------------------

wait_until 60 "writes resumed" writer_acked_after "$T1"
sleep "$SETTLE_S"
stop_writer
verify_writer "$CONNINFO"
"$PGTOPO" -f "$TOPO" plan --detailed-exitcode --no-color >&2 || log "WARNING: plan after apply is not empty"
emit_result pgtopo "$T0" "$T1" "{\"version\": \"$("$PGTOPO" --version | awk '{print $2}')\"}"
