#!/usr/bin/env bash
# Rejoin benchmark: an old primary of ~1 GB (pgbench -i -s 70) with ~10 MB of WAL its successor
# never received rejoins after a crash failover, through pg_rewind (wal_log_hints=on) and through
# a fresh clone (wal_log_hints=off, no data checksums: the planner picks clone itself). pgtopo
# decides which; the script only checks that it chose as expected. Median of RUNS each.
#
# Every run is one failover of a fresh pair: n1 is a copy of a database loaded once per mode,
# n2 is built from it by pgtopo. (Failing the same pair over back and forth measured something
# else: each flip left the new primary with more recycled WAL segments past the fork, which
# pg_rewind copies whole — 39, 71, 87, 103 MB over four flips.)
#
# Measured per run, from `pgtopo apply --journal`: the rejoin = start of the rewind (or clone) step
# on the old primary → end of its last step (configure_standby, start: streaming from the new
# primary). Also the whole apply (fence, promote, checkpoint, rejoin).
#
# Usage (as root; servers run as the postgres OS user; loopback only):
#   benches/rejoin.sh                     # SCALE=70 DIVERGE_MB=10 RUNS=3
#   PGTOPO=target/release/pgtopo PORT=27300 benches/rejoin.sh
#   MODES=rewind RUNS=5 benches/rejoin.sh  # one side only, with each step's time
# Everything lives in one temp directory that is removed at the end; every server it started is
# stopped by its data directory.
set -euo pipefail

BIN=${PGTOPO_BENCH_BIN_DIR:-/usr/lib/postgresql/15/bin}
SCALE=${SCALE:-70}
DIVERGE_MB=${DIVERGE_MB:-10}
RUNS=${RUNS:-3}
PORT=${PORT:-27300}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${PGTOPO:-}" ]]; then
  PGTOPO=$ROOT/target/release/pgtopo
  [[ -x $PGTOPO && $PGTOPO -nt $ROOT/src/lib.rs ]] || PGTOPO=$ROOT/target/debug/pgtopo
fi
WORK=$(mktemp -d /tmp/pgtopo-bench-rejoin-XXXXXX)
chown postgres: "$WORK"
chmod 755 "$WORK"

as_pg() { runuser -u postgres -- "$@"; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
  for pid in "$WORK"/*/*/postmaster.pid; do
    [[ -e $pid ]] || continue
    as_pg "$BIN/pg_ctl" -D "$(dirname "$pid")" -m immediate -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

host_of() { [[ $1 == n1 ]] && echo 127.0.0.1 || echo 127.0.0.2; }
port_of() { [[ $1 == n1 ]] && echo "$PORT" || echo $((PORT + 1)); }
sql() { # NODE SQL
  "$BIN/psql" -X -At -v ON_ERROR_STOP=1 -h "$(host_of "$1")" -p "$(port_of "$1")" -U postgres \
    -d postgres --command="$2"
}

topology() { # DIR PRIMARY STANDBY
  cat >"$1/topology.yaml" <<EOF
cluster: bench
postgres: { bin_dir: $BIN, os_user: postgres }
replication: { user: postgres, slots: true, hba_method: trust }
failover: { allow: true, max_lag: 1GB }
nodes:
  $2: { host: $(host_of "$2"), port: $(port_of "$2"), data_dir: $1/$2, role: primary }
  $3: { host: $(host_of "$3"), port: $(port_of "$3"), data_dir: $1/$3, role: standby, upstream: $2 }
EOF
}

# A stopped primary TEMPLATE/n1 with pgbench -s SCALE and wal_log_hints=HINTS.
template() { # DIR HINTS
  local dir=$1 hints=$2
  as_pg mkdir -p "$dir"
  # PostgreSQL 18 turns data checksums on by default, which lets pg_rewind work too.
  local checksums=()
  [[ $hints == off ]] && "$BIN/initdb" --help | grep -q -- --no-data-checksums \
    && checksums=(--no-data-checksums)
  as_pg "$BIN/initdb" -D "$dir/n1" -U postgres -A trust -E UTF8 --locale=C "${checksums[@]}" >/dev/null
  cat >>"$dir/n1/postgresql.conf" <<EOF
wal_level = replica
wal_log_hints = $hints
max_wal_senders = 10
max_replication_slots = 10
max_wal_size = 4GB
hot_standby = on
unix_socket_directories = '$WORK'
port = $PORT
listen_addresses = '127.0.0.1'
EOF
  printf 'host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n' \
    >>"$dir/n1/pg_hba.conf"
  as_pg "$BIN/pg_ctl" -D "$dir/n1" -l "$dir/n1.log" -w start >/dev/null
  log "$dir: pgbench -i -s $SCALE"
  "$BIN/pgbench" -i -s "$SCALE" -I dtGvp -q -h 127.0.0.1 -p "$PORT" -U postgres postgres \
    >/dev/null 2>&1
  sql n1 "CHECKPOINT" >/dev/null
  log "$dir: $(sql n1 "SELECT pg_size_pretty(pg_database_size('postgres'))") in postgres"
  as_pg "$BIN/pg_ctl" -D "$dir/n1" -m fast -w stop >/dev/null
}

# A fresh pair in DIR: n1 copied from TEMPLATE and started, its standby n2 built by pgtopo.
pair() { # DIR TEMPLATE
  local dir=$1
  as_pg mkdir -p "$dir"
  as_pg cp -a "$2/n1" "$dir/n1"
  as_pg "$BIN/pg_ctl" -D "$dir/n1" -l "$dir/n1.log" -w start >/dev/null
  topology "$dir" n1 n2
  "$PGTOPO" -f "$dir/topology.yaml" apply --auto-approve >"$dir/setup.out" 2>&1 \
    || { cat "$dir/setup.out" >&2; exit 1; }
  # Let the copy's ~2 GB reach the disk first: a host in service is not in the middle of that.
  sync
}

# Cut the standby off, make DIVERGE_MB of WAL on the primary that the standby never gets, crash
# the primary, declare the standby primary, apply. Prints: KIND REJOIN_MS APPLY_MS.
one_run() { # DIR OLD NEW
  local dir=$1 old=$2 new=$3
  sql "$new" "ALTER SYSTEM SET primary_conninfo = ''" >/dev/null
  sql "$new" "SELECT pg_reload_conf()" >/dev/null
  until [[ $(sql "$new" "SELECT count(*) FROM pg_stat_wal_receiver") == 0 ]]; do :; done
  local start aid=1
  start=$(sql "$old" "SELECT pg_current_wal_lsn()")
  while (($(sql "$old" "SELECT (pg_current_wal_lsn() - '$start'::pg_lsn)::bigint") < DIVERGE_MB * 1048576)); do
    sql "$old" "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN $aid AND $((aid + 4999))" >/dev/null
    aid=$((aid + 50000))
  done
  as_pg "$BIN/pg_ctl" -D "$dir/$old" -m immediate -w stop >/dev/null
  topology "$dir" "$new" "$old"
  rm -f "$dir/journal"
  local t0 t1
  t0=$(date +%s%N)
  "$PGTOPO" -f "$dir/topology.yaml" apply --auto-approve --journal "$dir/journal" \
    >"$dir/apply.out" 2>&1 || { cat "$dir/apply.out" >&2; exit 1; }
  t1=$(date +%s%N)
  [[ $(sql "$old" "SELECT status FROM pg_stat_wal_receiver") == streaming ]] \
    || { echo "$old does not stream after the apply" >&2; exit 1; }
  # Old directories moved aside by a clone: kept by pgtopo, removed here to save disk.
  [[ -n "${KEEP_JOURNAL:-}" ]] && cp "$dir/journal" "/tmp/journal-$mode-$(date +%s%N)"
  rm -rf "$dir/$old".pgtopo-old-*
  python3 - "$dir/journal" "$old" $(((t1 - t0) / 1000000)) <<'EOF'
import json, sys, datetime
path, node, apply_ms = sys.argv[1], sys.argv[2], sys.argv[3]
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
steps = [json.loads(l) for l in open(path)]
mine = [s for s in steps if s["node"] == node and s["start"]]
kinds = [s["kind"] for s in mine]
kind = "rewind" if "rewind" in kinds else "clone" if "clone" in kinds else "none"
first = next(s for s in mine if s["kind"] == kind)
ms = (max(t(s["end"]) for s in mine) - t(first["start"])).total_seconds() * 1000
parts = " ".join(
    f"{s['kind']}={round((t(s['end']) - t(s['start'])).total_seconds() * 1000)}ms" for s in mine
)
print(kind, round(ms), apply_ms, parts)
EOF
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

declare -A RESULTS
for mode in ${MODES:-rewind clone}; do
  hints=$([[ $mode == rewind ]] && echo on || echo off)
  template "$WORK/$mode-template" "$hints"
  for i in $(seq "$RUNS"); do
    dir=$WORK/$mode-$i
    pair "$dir" "$WORK/$mode-template"
    read -r kind ms apply_ms parts < <(one_run "$dir" n1 n2)
    [[ $kind == "$mode" ]] || { echo "expected pgtopo to choose $mode, it chose $kind" >&2; exit 1; }
    log "$mode run $i: n1 rejoined n2 by $kind in ${ms} ms (whole apply ${apply_ms} ms; $parts)"
    RESULTS[$mode]+="$ms "
    RESULTS[$mode-apply]+="$apply_ms "
    as_pg "$BIN/pg_ctl" -D "$dir/n1" -m immediate -w stop >/dev/null 2>&1 || true
    as_pg "$BIN/pg_ctl" -D "$dir/n2" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  done
  rm -rf "$WORK/$mode-template"
done

[[ -n ${RESULTS[rewind]:-} && -n ${RESULTS[clone]:-} ]] || exit 0
rw=$(tr ' ' '\n' <<<"${RESULTS[rewind]}" | grep . | median)
cl=$(tr ' ' '\n' <<<"${RESULTS[clone]}" | grep . | median)
rwa=$(tr ' ' '\n' <<<"${RESULTS[rewind-apply]}" | grep . | median)
cla=$(tr ' ' '\n' <<<"${RESULTS[clone-apply]}" | grep . | median)
echo "rejoin of an old primary, pgbench -s $SCALE, ~${DIVERGE_MB} MB divergence, $RUNS runs each ($PGTOPO)"
echo "rewind: runs ${RESULTS[rewind]}ms; median ${rw} ms (whole apply median ${rwa} ms)"
echo "clone:  runs ${RESULTS[clone]}ms; median ${cl} ms (whole apply median ${cla} ms)"
awk -v a="$cl" -v b="$rw" 'BEGIN { printf "rewind is %.1fx faster than clone\n", a / b }'
