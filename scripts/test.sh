#!/usr/bin/env bash
# Runs the whole test suite exactly as CI does: installs the pinned nats-server if missing,
# then format check, clippy (-D warnings), rustdoc (-D warnings), all tests (unit,
# integration against real nats-server and PostgreSQL processes, CLI, admin API) and doc tests.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(scripts/setup-nats.sh | tail -n1)}
export NATS_SERVER_BIN
"$NATS_SERVER_BIN" --version
# The console's browser tests (chromium + chromedriver) and the alert rules' checks and
# metrics test (promtool + prometheus): Debian packages, installed when missing.
scripts/setup-browser.sh
scripts/setup-prometheus.sh

# PostgreSQL for the outbox/inbox and service tests on it (apt-get install when missing).
PG_BIN_DIR=${PG_BIN_DIR:-$(scripts/setup-postgres.sh | tail -n1)}
export PG_BIN_DIR
"$PG_BIN_DIR/postgres" --version

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The library alone, with its default features (the workspace build unifies them).
RUSTDOCFLAGS="-D warnings" cargo doc -p events --no-deps --locked --quiet

# Event contracts: every schema backward compatible within its major (and with the base
# branch's copy when there is one), and docs/EVENT_CATALOG.md generated from them.
step "eventctl schema check, schema catalog --check"
cargo run --quiet --locked -p eventctl -- schema check --base "${SCHEMA_BASE_REF:-origin/main}"
cargo run --quiet --locked -p eventctl -- schema catalog --check

step "promtool check rules, promtool test rules"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest run (unit + integration)"
  cargo nextest run --workspace --locked --profile ci
else
  step "cargo test (cargo-nextest not installed)"
  cargo test --workspace --locked --all-targets
fi

step "cargo test --doc"
cargo test --workspace --doc --locked
