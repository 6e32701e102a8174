#!/usr/bin/env bash
# Stops exactly what scripts/dev-up.sh started, by the pids it wrote under .data/:
# catalog-service, auth-service, the console (eventctl serve), then nats-server (SIGTERM,
# then SIGKILL after 10 s). Keeps the data (.data/nats, .data/auth-service,
# .data/catalog-service, .data/console-token); delete .data to start from nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data="$root/.data"

# stop NAME [COMMAND]: the process in .data/NAME.pid, if it is alive and its command line
# holds COMMAND (default NAME).
stop() {
  local name=$1 pattern=${2:-$1} pidfile="$data/$1.pid" pid
  if [ ! -f "$pidfile" ]; then
    echo "no $name started by dev-up.sh"
    return 0
  fi
  pid=$(cat "$pidfile")
  if ! kill -0 "$pid" 2>/dev/null \
    || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"; then
    echo "no $name started by dev-up.sh is running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    echo "killed $name (pid $pid): it did not stop within 10 s"
  else
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

stop catalog-service
stop auth-service
stop console eventctl
stop nats nats-server
rm -f "$data/nats.mode"
