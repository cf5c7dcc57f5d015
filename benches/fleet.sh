#!/usr/bin/env bash
# Fleet benchmark (SPEC §9): MAX clusters × 3 nodes on this machine (a primary copied from one
# initdb'd template and started, its two standbys built by `pgtopo apply`), cluster c01 drifted
# (its file declares work_mem = 7MB, which the servers do not have). Then:
#   - `pgtopo drift -f DIR` over the first N clusters, for each N in NS (median of RUNS): total
#     and per-cluster time;
#   - the RSS of `pgtopo watch -f DIR --interval INTERVAL` over all clusters after 10 rounds and
#     after 100 (read from /proc/PID/status while /healthz reports the round).
#
# Usage (as root; servers run as the postgres OS user, with shared_buffers=8MB and
# max_connections=20, listening on 127.0.0.1-3 only):
#   benches/fleet.sh                               # NS="10 30" RUNS=3 INTERVAL=200ms
#   PGTOPO=target/release/pgtopo PORT=29000 benches/fleet.sh
#   NS=4 SCREENSHOT=$PWD/docs/watch.png benches/fleet.sh  # also a headless Chromium picture of /
# Everything lives in one temp directory that is removed at the end; every server is stopped by
# the PID in its postmaster.pid and `pgtopo watch` by its own PID, also when the script fails.
set -euo pipefail

BIN=${PGTOPO_BENCH_BIN_DIR:-/usr/lib/postgresql/15/bin}
NS=${NS:-10 30}
RUNS=${RUNS:-3}
INTERVAL=${INTERVAL:-200ms}
PORT=${PORT:-29000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${PGTOPO:-}" ]]; then
  PGTOPO=$ROOT/target/release/pgtopo
  [[ -x $PGTOPO && $PGTOPO -nt $ROOT/src/lib.rs ]] || PGTOPO=$ROOT/target/debug/pgtopo
fi
MAX=0
for n in $NS; do ((n > MAX)) && MAX=$n; done
WORK=$(mktemp -d /tmp/pgtopo-bench-fleet-XXXXXX)
chown postgres: "$WORK"
chmod 755 "$WORK"
WATCH_PID=

as_pg() { runuser -u postgres -- "$@"; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
  [[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null && wait "$WATCH_PID" 2>/dev/null
  local pids=()
  for f in "$WORK"/c*/n*/postmaster.pid; do
    [[ -e $f ]] && pids+=("$(head -1 "$f")")
  done
  ((${#pids[@]})) && kill -QUIT "${pids[@]}" 2>/dev/null
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log "template: initdb"
as_pg "$BIN/initdb" -D "$WORK/template" -U postgres -A trust -E UTF8 --locale=C >/dev/null
cat >>"$WORK/template/postgresql.conf" <<EOF
shared_buffers = 8MB
max_connections = 20
max_wal_senders = 5
max_replication_slots = 5
wal_level = replica
hot_standby = on
unix_socket_directories = '$WORK'
listen_addresses = '127.0.0.1'
EOF
printf 'host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n' \
  >>"$WORK/template/pg_hba.conf"

name_of() { printf 'c%02d' "$1"; }

# Cluster I: its primary started from the template, its topology, its standbys built by pgtopo.
cluster() { # I
  local c dir p
  c=$(name_of "$1")
  dir=$WORK/$c
  p=$((PORT + 3 * $1))
  as_pg mkdir -p "$dir"
  as_pg cp -a "$WORK/template" "$dir/n1"
  echo "port = $p" >>"$dir/n1/postgresql.conf"
  as_pg "$BIN/pg_ctl" -D "$dir/n1" -l "$dir/n1.log" -w start >/dev/null
  cat >"$dir/topology.yaml" <<EOF
cluster: $c
postgres: { bin_dir: $BIN, os_user: postgres }
replication: { user: postgres, slots: true, hba_method: trust }
nodes:
  n1: { host: 127.0.0.1, port: $p, data_dir: $dir/n1, role: primary }
  n2: { host: 127.0.0.2, port: $((p + 1)), data_dir: $dir/n2, role: standby, upstream: n1 }
  n3: { host: 127.0.0.3, port: $((p + 2)), data_dir: $dir/n3, role: standby, upstream: n1 }
EOF
  "$PGTOPO" -f "$dir/topology.yaml" apply --auto-approve >"$dir/setup.out" 2>&1 \
    || { cat "$dir/setup.out" >&2; return 1; }
}

log "building $MAX clusters × 3 nodes"
t0=$(date +%s)
for ((i = 1; i <= MAX; i += 3)); do
  pids=()
  for ((j = i; j < i + 3 && j <= MAX; j++)); do
    cluster "$j" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
done
log "built in $(($(date +%s) - t0)) s"
# c01 drifted: its file declares a setting its servers do not have.
sed -i 's/^replication:/settings: { work_mem: 7MB }\nreplication:/' "$WORK/c01/topology.yaml"

for n in $NS; do
  dir=$WORK/fleet-$n
  mkdir -p "$dir"
  for ((i = 1; i <= n; i++)); do
    cp "$WORK/$(name_of "$i")/topology.yaml" "$dir/$(name_of "$i").yaml"
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "load: $(uptime)"
for n in $NS; do
  times=()
  for ((r = 0; r < RUNS; r++)); do
    s=$(date +%s%N)
    code=0
    "$PGTOPO" -f "$WORK/fleet-$n" drift >"$WORK/drift-$n.out" 2>&1 || code=$?
    e=$(date +%s%N)
    [[ $code == 2 ]] || { cat "$WORK/drift-$n.out" >&2; echo "drift exit $code, not 2" >&2; exit 1; }
    times+=($(((e - s) / 1000000)))
  done
  ms=$(printf '%s\n' "${times[@]}" | median)
  echo "drift -f <$n clusters × 3 nodes>: median ${ms} ms of ${times[*]} ms; $(awk "BEGIN {printf \"%.1f\", $ms / $n}") ms per cluster"
done

WPORT=$((PORT - 1))
"$PGTOPO" -f "$WORK/fleet-$MAX" watch --interval "$INTERVAL" --listen "127.0.0.1:$WPORT" \
  >"$WORK/watch.out" 2>&1 &
WATCH_PID=$!
round() { curl -s "http://127.0.0.1:$WPORT/healthz" | sed -n 's/^ok: round \([0-9]*\).*/\1/p'; }
rss_at() { # ROUND
  local r
  while :; do
    kill -0 "$WATCH_PID" 2>/dev/null || { cat "$WORK/watch.out" >&2; exit 1; }
    r=$(round || true)
    [[ -n $r && $r -ge $1 ]] && break
    sleep 0.05
  done
  awk '/VmRSS/ {print $2}' "/proc/$WATCH_PID/status"
}
s=$(date +%s%N)
rss10=$(rss_at 10)
if [[ -n ${SCREENSHOT:-} ]]; then
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$WORK/chromium" \
    --screenshot="$SCREENSHOT" --window-size=1200,600 "http://127.0.0.1:$WPORT/" >/dev/null 2>&1
  log "screenshot of / in $SCREENSHOT"
fi
rss100=$(rss_at 100)
e=$(date +%s%N)
echo "watch -f <$MAX clusters> --interval $INTERVAL: RSS ${rss10} kB after 10 rounds, ${rss100} kB after 100 ($(((e - s) / 1000000)) ms from start to round 100)"
kill -TERM "$WATCH_PID"
code=0
wait "$WATCH_PID" || code=$?
WATCH_PID=
echo "watch exit after SIGTERM: $code"
echo "load: $(uptime)"
