#!/usr/bin/env bash
# Line coverage of crates/events (the library): its unit tests and its integration tests
# (tests/it, against real nats-server processes, the fault matrix included), measured with
# cargo-llvm-cov. Not part of .ci/run: it rebuilds the crate instrumented (several minutes
# on 2 cores). Prints the per-file table and the total; the last figures are recorded in
# docs/RELIABILITY.md.
#
# Setup once:
#   rustup component add llvm-tools-preview
#   cargo install cargo-llvm-cov --locked
# Run:
#   scripts/coverage.sh            # summary table
#   scripts/coverage.sh --html     # also target/llvm-cov/html/index.html
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! cargo llvm-cov --version >/dev/null 2>&1; then
  echo "error: cargo-llvm-cov is not installed." >&2
  echo "  rustup component add llvm-tools-preview && cargo install cargo-llvm-cov --locked" >&2
  exit 1
fi

NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(scripts/setup-nats.sh | tail -n1)}
export NATS_SERVER_BIN

# Only the library's own sources count: not the vendored client, the test kit or the tests.
ignore='(vendor/|crates/events-testkit/|crates/events/tests/|/\.cargo/registry/)'

cargo llvm-cov clean --workspace
cargo llvm-cov nextest -p events --all-features --locked --profile ci --no-report
cargo llvm-cov report --summary-only --ignore-filename-regex "$ignore"
if [[ "${1:-}" == "--html" ]]; then
  cargo llvm-cov report --html --ignore-filename-regex "$ignore"
  echo "HTML report: target/llvm-cov/html/index.html"
fi
