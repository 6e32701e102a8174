#!/usr/bin/env bash
# Starts the local event backbone: installs the pinned nats-server if missing, starts it
# with deploy/nats.conf (JetStream, sync_interval: always, store in .data/nats), applies the
# streams of deploy/streams.toml (profile dev) and prints where to look.
# Idempotent: run it again and it finds the server up and reports that no stream changed.
#
# Stop the server with scripts/dev-down.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data="$root/.data"
pidfile="$data/nats.pid"
log="$data/nats.log"
mkdir -p "$data"

bin=${NATS_SERVER_BIN:-$(scripts/setup-nats.sh | tail -n1)}

healthy() { curl -fsS --max-time 2 "http://127.0.0.1:8222/healthz?js-enabled-only=true" >/dev/null 2>&1; }

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "nats-server already running (pid $(cat "$pidfile")), not started again"
elif healthy; then
  echo "a NATS server already answers on 127.0.0.1:8222 (not started by this script); using it"
else
  "$bin" -c deploy/nats.conf >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "started nats-server (pid $!) with deploy/nats.conf"
fi

# Wait, bounded, until JetStream answers.
for _ in $(seq 1 100); do
  healthy && break
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "error: nats-server exited; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  sleep 0.1
done
healthy || { echo "error: JetStream did not answer within 10 s; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }

echo "applying deploy/streams.toml (profile dev):"
cargo run --quiet --locked -p eventctl -- --server nats://127.0.0.1:4222 \
  streams apply --file deploy/streams.toml --profile dev

# The admin server with the operator console (/ui), behind a development token made once
# and kept in .data/console-token (0600).
console_pid="$data/console.pid"
token_file="$data/console-token"
if [ ! -s "$token_file" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
fi
token=$(cat "$token_file")
if [ -f "$console_pid" ] && kill -0 "$(cat "$console_pid")" 2>/dev/null; then
  echo "eventctl serve already running (pid $(cat "$console_pid"))"
else
  cargo build --quiet --locked -p eventctl
  hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
  EVENTS_ADMIN_TOKEN_HASHES="dev:$hash" target/debug/eventctl --server nats://127.0.0.1:4222 \
    serve --listen 127.0.0.1:9090 >"$data/console.log" 2>&1 &
  echo $! >"$console_pid"
  echo "started eventctl serve (pid $!) on 127.0.0.1:9090"
fi

cat <<MSG

Backbone is up.
  Console:     http://127.0.0.1:9090/ui   (token: $token)
  NATS:        nats://127.0.0.1:4222
  Monitoring:  http://127.0.0.1:8222  (/healthz, /jsz?streams=true)
  Server log:  $log
  Store:       $data/nats
  Streams:     cargo run -p eventctl -- streams list
  Stop:        scripts/dev-down.sh
MSG
