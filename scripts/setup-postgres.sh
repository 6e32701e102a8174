#!/usr/bin/env bash
# Installs PostgreSQL from Debian's `postgresql` package when no server binaries are found,
# for the tests of the outbox, the inbox and the services on PostgreSQL (the test kit's
# PgServer runs initdb and postgres from here; as root, it runs them as the `postgres` user
# that the package creates). Idempotent: a second run only finds the binaries.
#
# Prints the directory of initdb/postgres on its last line (what PG_BIN_DIR may be set to).
set -euo pipefail

find_bin_dir() {
  if [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ]; then
    echo "$PG_BIN_DIR"
    return 0
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
    echo "$dir"
    return 0
  fi
  return 1
}

if dir=$(find_bin_dir); then
  echo "PostgreSQL found in $dir" >&2
  echo "$dir"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing PostgreSQL (apt-get install -y postgresql)" >&2
# The package lists may be missing or stale on a fresh machine: update only when needed.
if ! apt-get install -y --no-install-recommends postgresql >&2; then
  apt-get update >&2
  apt-get install -y --no-install-recommends postgresql >&2
fi
# Debian's package starts a cluster service where systemd runs; the tests start their own.

if ! dir=$(find_bin_dir); then
  echo "error: apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found" >&2
  exit 1
fi
echo "$dir"
