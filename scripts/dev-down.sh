#!/usr/bin/env bash
# Stops the console (eventctl serve) and the nats-server started by scripts/dev-up.sh (SIGTERM, then SIGKILL after 10 s).
# Keeps its store in .data/nats; delete that folder to start from nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pidfile="$root/.data/nats.pid"
console_pid="$root/.data/console.pid"
if [ -f "$console_pid" ] && kill -0 "$(cat "$console_pid")" 2>/dev/null; then
  kill -TERM "$(cat "$console_pid")"
  echo "stopped eventctl serve (pid $(cat "$console_pid"))"
fi
rm -f "$console_pid"
if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "no nats-server started by dev-up.sh is running"
  rm -f "$pidfile"
  exit 0
fi
pid=$(cat "$pidfile")
kill -TERM "$pid"
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
rm -f "$pidfile" "$root/.data/nats.mode"
echo "stopped nats-server (pid $pid)"
