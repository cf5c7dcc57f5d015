#!/usr/bin/env bash
# Record every example's observed.json from a real cluster (SPEC §8).
#
# For each example, this builds the cluster state the example starts from with plain PostgreSQL
# tools run as the `postgres` OS user (initdb, pg_ctl, pg_basebackup -C -S, psql, crash with
# -m immediate) on the addresses, ports and data directories that examples/<name>/topology.yaml
# declares (127.0.0.x, ports 55601+, /tmp/pgtopo-examples/<name>/), records it with
#   pgtopo -f examples/<name>/topology.yaml observe --out examples/<name>/observed.json
# then stops every server it started (by the PID in postmaster.pid) and removes its directories.
#
# Usage:   examples/record.sh [EXAMPLE...]        (default: every example)
# Env:     PGTOPO      pgtopo binary (default: target/debug/pgtopo, built with cargo if missing)
#          BIN_DIR     PostgreSQL bin directory (default /usr/lib/postgresql/15/bin)
# Then:    UPDATE_GOLDEN=1 cargo test --test golden   (regenerates plans/)
#
# Conventions of the recorded clusters (the state a cluster has after pgtopo built it):
# - pg_hba.conf starts with pgtopo's managed block (replication rules for the topology's hosts,
#   scram-sha-256 for the `replicator` role), then initdb's trust rules for local connections,
#   which is how pgtopo itself connects (as `postgres`, no password);
# - the replication password is random, lives in a passfile inside the example's directory (the
#   servers and pg_basebackup get it through PGPASSFILE) and is removed with the cluster;
# - each node's identity (port, listen_addresses, socket directory) is in `node.conf`, included
#   from postgresql.conf, so a clone gets its own; standbys are configured as pgtopo's
#   configure_standby does: standby.signal, primary_conninfo (host, port, user=replicator,
#   application_name=<node>) and primary_slot_name=<node> in postgresql.auto.conf.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-/usr/lib/postgresql/15/bin}
ROOT=/tmp/pgtopo-examples
OS_USER=postgres
ALL_EXAMPLES=(bootstrap-3-nodes switchover cascade-repoint failover-rejoin
  settings-rolling-restart sync-quorum retire-node)

if [[ -z "${PGTOPO:-}" ]]; then
  PGTOPO=$REPO/target/debug/pgtopo
  [[ "${BASH_SOURCE[0]}" != "$0" ]] || (cd "$REPO" && cargo build --quiet --bin pgtopo)
fi

EX=""        # current example
EXDIR=""     # /tmp/pgtopo-examples/$EX
PASSFILE=""

log() { printf '[record %s] %s\n' "${EX:-*}" "$*" >&2; }

# Run a command as the OS user that owns the data directories.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$OS_USER" -- env PGPASSFILE="$PASSFILE" LC_ALL=C "$@"
  else
    env PGPASSFILE="$PASSFILE" LC_ALL=C "$@"
  fi
}

host_of() { echo "127.0.0.${1#n}"; }
port_of() { echo $((55600 + ${1#n})); }
dir_of() { echo "$EXDIR/$1"; }

psql_on() { # node sql
  as_pg "$BIN_DIR/psql" -X -A -t -v ON_ERROR_STOP=1 -h "$(host_of "$1")" -p "$(port_of "$1")" \
    -U postgres -d postgres "--command=$2"
}

# Poll a condition until it holds (30 s): wait_for NODE SQL EXPECTED
wait_for() {
  local node=$1 sql=$2 want=$3 got="" i
  for ((i = 0; i < 300; i++)); do
    got=$(psql_on "$node" "$sql" 2>/dev/null || true)
    [[ "$got" == "$want" ]] && return 0
    sleep 0.1
  done
  log "$node: '$sql' never returned '$want' (last: '$got')"
  return 1
}

wait_streaming() { wait_for "$1" "select coalesce((select status from pg_stat_wal_receiver), 'none')" streaming; }

wait_replayed() { # standby primary
  local lsn
  lsn=$(psql_on "$2" "select pg_current_wal_lsn()")
  wait_for "$1" "select pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" t
}

# A port must be free before a node takes it.
check_port_free() {
  if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
    log "$1:$2 is already in use: stop whatever listens there first"
    exit 1
  fi
}

write_identity() { # node
  local n=$1 d
  d=$(dir_of "$n")
  as_pg tee "$d/node.conf" >/dev/null <<EOF
# this node's identity (written by examples/record.sh)
port = $(port_of "$n")
listen_addresses = '$(host_of "$n")'
unix_socket_directories = '$EXDIR'
EOF
}

# pg_hba.conf: pgtopo's managed block for HOSTS (node names), then initdb's trust rules.
write_hba() { # node host-node...
  local n=$1 d h
  shift
  d=$(dir_of "$n")
  {
    echo "# BEGIN pgtopo managed"
    for h in "$@"; do echo "host replication replicator $(host_of "$h")/32 scram-sha-256"; done
    echo "# END pgtopo managed"
    grep -v '^#' "$d/pg_hba.conf" | grep -v '^[[:space:]]*$' | grep -v 'pgtopo' || true
  } >"$EXDIR/hba.tmp"
  as_pg cp "$EXDIR/hba.tmp" "$d/pg_hba.conf"
  rm -f "$EXDIR/hba.tmp"
}

start_node() { # node
  local n=$1
  check_port_free "$(host_of "$n")" "$(port_of "$n")"
  as_pg "$BIN_DIR/pg_ctl" -D "$(dir_of "$n")" -l "$EXDIR/$n.log" -w -t 60 start >/dev/null
}

stop_node() { as_pg "$BIN_DIR/pg_ctl" -D "$(dir_of "$1")" -m "$2" -w -t 60 stop >/dev/null; }

# initdb a primary and start it. Extra args: the hosts of the managed block (none: no block).
init_primary() { # node [hba-host-node...]
  local n=$1 d
  shift
  d=$(dir_of "$n")
  as_pg "$BIN_DIR/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
  write_identity "$n"
  as_pg tee -a "$d/postgresql.conf" >/dev/null <<EOF

include = 'node.conf'
EOF
  if [[ $# -gt 0 ]]; then write_hba "$n" "$@"; fi
  start_node "$n"
}

# The replication role (with the random password of the passfile) and some data.
seed_primary() { # node
  local pw
  pw=$(cut -d: -f5 "$PASSFILE")
  psql_on "$1" "create role replicator with replication login password '$pw'" >/dev/null
  psql_on "$1" "create table orders (id int primary key, item text); \
    insert into orders select g, 'item ' || g from generate_series(1, 1000) g" >/dev/null
}

alter_system() { # node name value
  psql_on "$1" "alter system set $2 = '$3'" >/dev/null
}

# Clone a standby of UPSTREAM with pg_basebackup (slot named after it, created on the upstream),
# configure it as pgtopo's configure_standby does, start it and wait until it streams.
add_standby() { # node upstream
  local n=$1 up=$2 d
  d=$(dir_of "$n")
  as_pg "$BIN_DIR/pg_basebackup" -h "$(host_of "$up")" -p "$(port_of "$up")" -U replicator \
    -D "$d" -X stream -C -S "$n" --checkpoint=fast --no-sync -w
  write_identity "$n"
  configure_standby "$n" "$up"
  start_node "$n"
  wait_streaming "$n"
}

configure_standby() { # node upstream
  local n=$1 up=$2 d
  d=$(dir_of "$n")
  as_pg tee -a "$d/postgresql.auto.conf" >/dev/null <<EOF
primary_conninfo = 'host=$(host_of "$up") port=$(port_of "$up") user=replicator application_name=$n'
primary_slot_name = '$n'
EOF
  as_pg touch "$d/standby.signal"
}

observe() {
  log "pgtopo observe"
  "$PGTOPO" -f "$REPO/examples/$EX/topology.yaml" observe --out "$REPO/examples/$EX/observed.json"
}

# End every postmaster under the example's directory, by the PID in its postmaster.pid, after
# checking that this PID is the postmaster of that data directory.
wait_pid_gone() { # pid
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

teardown() {
  [[ -n "$EXDIR" && -d "$EXDIR" ]] || return 0
  local pidfile d pid
  for pidfile in "$EXDIR"/*/postmaster.pid; do
    [[ -f "$pidfile" ]] || continue
    d=$(dirname "$pidfile")
    pid=$(head -n1 "$pidfile")
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
      [[ "$(readlink "/proc/$pid/cwd")" == "$d" ]]; then
      kill -TERM "$pid" # fast shutdown
      wait_pid_gone "$pid" || { kill -QUIT "$pid" 2>/dev/null || true; wait_pid_gone "$pid" || true; }
    fi
  done
  rm -rf "$EXDIR"
}

begin() { # example
  EX=$1
  EXDIR=$ROOT/$EX
  if [[ -e "$EXDIR" ]]; then
    log "$EXDIR exists (left by an earlier run?): remove it first"
    exit 1
  fi
  mkdir -p "$EXDIR"
  chmod 755 "$ROOT" "$EXDIR"
  [[ $(id -u) -eq 0 ]] && chown "$OS_USER" "$EXDIR"
  PASSFILE=$EXDIR/pgpass
  local pw
  pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  echo "*:*:*:replicator:$pw" >"$PASSFILE"
  chmod 600 "$PASSFILE"
  [[ $(id -u) -eq 0 ]] && chown "$OS_USER" "$PASSFILE"
  log "building the cluster under $EXDIR"
}

finish() {
  observe
  teardown
  log "done"
  EX="" EXDIR=""
}

# ---------------------------------------------------------------------------------------------
# The examples. Each builds the state BEFORE the change its topology.yaml asks for.

# Only the primary exists, freshly initialised (no managed block, no replication role yet);
# n2's data directory is missing, n3's exists and is empty.
record_bootstrap-3-nodes() {
  init_primary n1
  psql_on n1 "create table orders (id int primary key, item text); \
    insert into orders select g, 'item ' || g from generate_series(1, 1000) g" >/dev/null
  as_pg mkdir "$(dir_of n3)"
  as_pg chmod 700 "$(dir_of n3)"
}

# n1 primary, n2 and n3 stream from it; the topology declares n2 primary.
record_switchover() {
  init_primary n1 n1 n2 n3
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  psql_on n1 "insert into orders select g, 'late ' || g from generate_series(1001, 1100) g" >/dev/null
  wait_replayed n2 n1
  wait_replayed n3 n1
}

# n2 and n3 both stream from n1; the topology makes n3 cascade from n2.
record_cascade-repoint() {
  init_primary n1 n1 n2 n3
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  wait_replayed n3 n1
}

# n1 was primary of n2 and n3; n2 and n3 stopped receiving (they were stopped), n1 committed
# more, then crashed (immediate shutdown: no shutdown checkpoint). No checkpoint on n1 after the
# standbys left: one would remove the WAL of the last common checkpoint, which pg_rewind needs. n2 and n3
# run again as standbys with nothing to stream from. The topology declares n2 primary with
# failover consent: a failover, and n1 has WAL past what n2 received, so it must be rewound.
record_failover-rejoin() {
  init_primary n1 n1 n2 n3
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  wait_replayed n2 n1
  wait_replayed n3 n1
  stop_node n3 fast
  stop_node n2 fast
  psql_on n1 "insert into orders select g, 'lost ' || g from generate_series(1001, 1200) g" >/dev/null
  stop_node n1 immediate
  start_node n2
  start_node n3
}

# n1 primary with n2 and n3; defaults for max_connections (100), shared_buffers (128MB),
# work_mem (4MB), which the topology raises.
record_settings-rolling-restart() {
  init_primary n1 n1 n2 n3
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  wait_replayed n2 n1
  wait_replayed n3 n1
}

# n1 primary with n2 and n3 streaming asynchronously; the topology asks for ANY 1 (n2, n3).
record_sync-quorum() {
  init_primary n1 n1 n2 n3
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  wait_replayed n2 n1
  wait_replayed n3 n1
}

# n1 primary with n2, n3, n4 streaming, synchronous_standby_names = FIRST 1 (n2, n3, n4);
# the topology retires n4.
record_retire-node() {
  init_primary n1 n1 n2 n3 n4
  seed_primary n1
  alter_system n1 wal_log_hints on
  stop_node n1 fast && start_node n1
  add_standby n2 n1
  add_standby n3 n1
  add_standby n4 n1
  alter_system n1 synchronous_standby_names 'FIRST 1 ("n2", "n3", "n4")'
  psql_on n1 "select pg_reload_conf()" >/dev/null
  wait_for n1 "select count(*) from pg_stat_replication where sync_state in ('sync', 'potential')" 3
  psql_on n1 "insert into orders select g, 'sync ' || g from generate_series(1001, 1100) g" >/dev/null
  wait_replayed n4 n1
}

# ---------------------------------------------------------------------------------------------

main() {
  trap 'teardown' EXIT
  mkdir -p "$ROOT"
  chmod 755 "$ROOT"
  local examples=("$@") e
  [[ ${#examples[@]} -gt 0 ]] || examples=("${ALL_EXAMPLES[@]}")
  for e in "${examples[@]}"; do
    if ! declare -F "record_$e" >/dev/null; then
      echo "unknown example: $e (known: ${ALL_EXAMPLES[*]})" >&2
      exit 1
    fi
  done
  for e in "${examples[@]}"; do
    begin "$e"
    "record_$e"
    finish
  done
  rmdir "$ROOT" 2>/dev/null || true
}

# Sourced (`source examples/record.sh`), it only defines its functions: `begin switchover;
# record_switchover` builds that cluster and leaves it running until `teardown`.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
