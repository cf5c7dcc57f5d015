#!/usr/bin/env bash
# Major-version upgrade benchmark: how long writes are unavailable while pgtopo upgrades a
# primary of ~1 GB (pgbench -i -s 70) with one standby from OLD_BIN to NEW_BIN with
# `pg_upgrade --link` (the topology's bin_dir changed, `pgtopo apply --auto-approve`).
#
# Writes unavailable = the last write acknowledged by the old primary → the first write
# acknowledged by the upgraded one. A probe writer inserts one row per connection into `probe`
# (a new psql each time, so it never waits on a dead connection) and logs the client's clock after
# every acknowledged insert; the window is the largest gap between two acknowledgements around the
# apply. The writer's own round trip (~10–30 ms on a loaded machine) bounds the resolution.
# Also printed: the apply's wall time and pgtopo's own "Steps a–b (writes unavailable) took".
#
# Usage (as root; servers run as the postgres OS user; loopback only):
#   benches/upgrade.sh                                   # 15 → 18, SCALE=70, RUNS=1
#   OLD_BIN=/opt/pgbin/16/bin NEW_BIN=/opt/pgbin/17/bin RUNS=3 benches/upgrade.sh   # the wheels scripts/test.sh unpacks
# Everything lives in one temp directory that is removed at the end; every server it started is
# stopped by its data directory.
set -euo pipefail

OLD_BIN=${OLD_BIN:-/usr/lib/postgresql/15/bin}
NEW_BIN=${NEW_BIN:-/opt/pgbin/18/bin}
SCALE=${SCALE:-70}
RUNS=${RUNS:-1}
PORT=${PORT:-27400}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${PGTOPO:-}" ]]; then
  PGTOPO=$ROOT/target/release/pgtopo
  [[ -x $PGTOPO && $PGTOPO -nt $ROOT/src/lib.rs ]] || PGTOPO=$ROOT/target/debug/pgtopo
fi
WORK=$(mktemp -d /tmp/pgtopo-bench-upgrade-XXXXXX)
chown postgres: "$WORK"
chmod 755 "$WORK"

as_pg() { runuser -u postgres -- "$@"; }
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
  [[ -n "${WRITER:-}" ]] && kill "$WRITER" 2>/dev/null || true
  for pid in "$WORK"/*/*/postmaster.pid; do
    [[ -e $pid ]] || continue
    for bin in "$NEW_BIN" "$OLD_BIN"; do
      as_pg "$bin/pg_ctl" -D "$(dirname "$pid")" -m immediate -w stop >/dev/null 2>&1 && break
    done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

sql() { # PORT SQL
  "$NEW_BIN/psql" -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres \
    --command="$2"
}

topology() { # DIR BIN_DIR
  cat >"$1/topology.yaml" <<EOF
cluster: bench
postgres: { bin_dir: $2, os_user: postgres }
replication: { user: postgres, slots: true, hba_method: trust }
nodes:
  n1: { host: 127.0.0.1, port: $PORT, data_dir: $1/n1, role: primary }
  n2: { host: 127.0.0.2, port: $((PORT + 1)), data_dir: $1/n2, role: standby }
EOF
}

writer() { # DIR: one acknowledged insert per line of DIR/acks (client clock, ns)
  while [[ ! -e $1/stop ]]; do
    if "$NEW_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
      --command="INSERT INTO probe DEFAULT VALUES" >/dev/null 2>&1; then
      date +%s%N >>"$1/acks"
    fi
  done
}

one_run() { # DIR
  local dir=$1
  as_pg mkdir -p "$dir"
  as_pg "$OLD_BIN/initdb" -D "$dir/n1" -U postgres -A trust -E UTF8 --locale=C >/dev/null
  cat >>"$dir/n1/postgresql.conf" <<EOF
wal_level = replica
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
  as_pg "$OLD_BIN/pg_ctl" -D "$dir/n1" -l "$dir/n1.log" -w start >/dev/null
  log "$dir: pgbench -i -s $SCALE"
  "$NEW_BIN/pgbench" -i -s "$SCALE" -I dtGvp -q -h 127.0.0.1 -p "$PORT" -U postgres postgres \
    >/dev/null 2>&1
  sql "$PORT" "CREATE TABLE probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
  local size
  size=$(sql "$PORT" "SELECT pg_size_pretty(pg_database_size('postgres'))")
  topology "$dir" "$OLD_BIN"
  "$PGTOPO" -f "$dir/topology.yaml" apply --auto-approve >"$dir/setup.out" 2>&1 \
    || { cat "$dir/setup.out" >&2; exit 1; }
  sync
  writer "$dir" &
  WRITER=$!
  until [[ -s $dir/acks && $(wc -l <"$dir/acks") -ge 20 ]]; do :; done
  topology "$dir" "$NEW_BIN"
  log "$dir: $size; apply (upgrade with --link)"
  local t0 t1
  t0=$(date +%s%N)
  "$PGTOPO" -f "$dir/topology.yaml" apply --auto-approve >"$dir/apply.out" 2>&1 \
    || { cat "$dir/apply.out" >&2; exit 1; }
  t1=$(date +%s%N)
  local before
  before=$(wc -l <"$dir/acks")
  until (($(wc -l <"$dir/acks") >= before + 20)); do :; done
  touch "$dir/stop"
  wait "$WRITER"
  WRITER=
  local gap
  gap=$(awk 'NR > 1 { g = $1 - p; if (g > m) m = g } { p = $1 } END { printf "%.3f", m / 1e9 }' "$dir/acks")
  printf 'size=%s writes_unavailable_s=%s apply_wall_s=%.3f acked=%s version=%s | %s\n' \
    "$size" "$gap" "$(((t1 - t0) / 1000000))e-3" "$(wc -l <"$dir/acks")" \
    "$(sql "$PORT" "SHOW server_version")" \
    "$(grep -o 'Steps [0-9]*–[0-9]* (writes unavailable) took [^,.]*' "$dir/apply.out" || true)"
  for pid in "$dir"/*/postmaster.pid; do
    as_pg "$NEW_BIN/pg_ctl" -D "$(dirname "$pid")" -m immediate -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

for i in $(seq 1 "$RUNS"); do
  one_run "$WORK/run$i"
done
