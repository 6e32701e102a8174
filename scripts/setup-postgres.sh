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

echo "installing PostgreSQL (apt-get install -y postgresql)" >&2
# pg_ctlcluster comes with the server package (postgresql-common), not with the client.
"$(dirname "${BASH_SOURCE[0]}")/apt-ensure.sh" pg_ctlcluster postgresql
# Debian's package starts a cluster service where systemd runs; the tests start their own.

if ! dir=$(find_bin_dir); then
  echo "error: apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found" >&2
  exit 1
fi
echo "$dir"
