#!/usr/bin/env bash
# Starts the local event backbone: installs the pinned nats-server if missing, starts it
# with deploy/nats.conf (JetStream, sync_interval: always, store in .data/nats), applies the
# streams of deploy/streams.toml (profile dev) and prints where to look.
# Idempotent: run it again and it finds the server up and reports that no stream changed.
#
# With --secure: deploy/secure/nats.conf instead (TLS, one nkey identity per service and
# tool; docs/SECURITY.md), the identities made by `eventctl auth init` on first use, and
# the services pointed at deploy/secure/<service>.toml.
#
# Stop the server with scripts/dev-down.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data="$root/.data"
pidfile="$data/nats.pid"
log="$data/nats.log"
mkdir -p "$data"

# The plain development setup; secure_mode below replaces these.
nats_conf=deploy/nats.conf
nats_url=nats://127.0.0.1:4222
eventctl_conn=(--server "$nats_url")
mode=plain

# --secure: TLS and per-service identities. Sets the server config, the operator's
# eventctl options, and exports the services' config files (AUTH_SERVICE_CONFIG,
# CATALOG_SERVICE_CONFIG) and the URL for everything started from here.
secure_mode() {
  local dir=.data/secure
  if [ ! -f "$dir/auth.conf" ]; then
    echo "no identities in $dir yet: running eventctl auth init"
    cargo run --quiet --locked -p eventctl -- auth init --out "$dir"
  fi
  nats_conf=deploy/secure/nats.conf
  nats_url=tls://127.0.0.1:4222
  eventctl_conn=(--server "$nats_url" --tls-ca "$dir/tls/ca.pem"
    --nkey "$dir/operator.nk" --inbox-prefix _INBOX_operator)
  mode=secure
  export EVENTS_NATS_URL=$nats_url
  export AUTH_SERVICE_CONFIG=deploy/secure/auth-service.toml
  export CATALOG_SERVICE_CONFIG=deploy/secure/catalog-service.toml
}

for arg in "$@"; do
  case "$arg" in
    --secure) secure_mode ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "error: unknown option $arg (expected --secure)" >&2; exit 2 ;;
  esac
done

bin=${NATS_SERVER_BIN:-$(scripts/setup-nats.sh | tail -n1)}

healthy() { curl -fsS --max-time 2 "http://127.0.0.1:8222/healthz?js-enabled-only=true" >/dev/null 2>&1; }

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "nats-server already running (pid $(cat "$pidfile")), not started again"
  running=$(cat "$data/nats.mode" 2>/dev/null || echo plain)
  if [ "$running" != "$mode" ]; then
    echo "error: it runs the $running setup, not $mode; stop it first: scripts/dev-down.sh" >&2
    exit 1
  fi
elif healthy; then
  echo "a NATS server already answers on 127.0.0.1:8222 (not started by this script); using it"
else
  "$bin" -c "$nats_conf" >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "$mode" >"$data/nats.mode"
  echo "started nats-server (pid $!) with $nats_conf"
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
cargo run --quiet --locked -p eventctl -- "${eventctl_conn[@]}" \
  streams apply --file deploy/streams.toml --profile dev

# The admin server with the operator console (/ui), behind a development token made once
# and kept in .data/console-token (0600); in secure mode as the admin-server identity.
console_pid="$data/console.pid"
token_file="$data/console-token"
if [ ! -s "$token_file" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
fi
token=$(cat "$token_file")
serve_conn=(--server "$nats_url")
if [ "$mode" = secure ]; then
  serve_conn=(--server "$nats_url" --tls-ca .data/secure/tls/ca.pem
    --nkey .data/secure/admin-server.nk --inbox-prefix _INBOX_admin-server)
fi
if [ -f "$console_pid" ] && kill -0 "$(cat "$console_pid")" 2>/dev/null; then
  echo "eventctl serve already running (pid $(cat "$console_pid"))"
else
  cargo build --quiet --locked -p eventctl
  hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
  EVENTS_ADMIN_TOKEN_HASHES="dev:admin:$hash" target/debug/eventctl "${serve_conn[@]}" \
    serve --listen 127.0.0.1:9090 >"$data/console.log" 2>&1 &
  echo $! >"$console_pid"
  echo "started eventctl serve (pid $!) on 127.0.0.1:9090"
fi

if [ "$mode" = secure ]; then
  cat <<MSG

Secure backbone is up: TLS on tls://127.0.0.1:4222, one nkey identity per service.
  Services:    export AUTH_SERVICE_CONFIG=$AUTH_SERVICE_CONFIG CATALOG_SERVICE_CONFIG=$CATALOG_SERVICE_CONFIG
               export EVENTS_NATS_URL=$EVENTS_NATS_URL
               cargo run -p catalog-service; cargo run -p auth-service
  Operator:    cargo run -p eventctl -- ${eventctl_conn[*]} streams list
  Check:       cargo run -p eventctl -- ${eventctl_conn[*]} doctor --identity auth-service
MSG
fi

cat <<MSG

Backbone is up.
  Console:     http://127.0.0.1:9090/ui   (token: $token)
  NATS:        $nats_url
  Monitoring:  http://127.0.0.1:8222  (/healthz, /jsz?streams=true)
  Server log:  $log
  Store:       $data/nats
  Streams:     cargo run -p eventctl -- streams list
  Stop:        scripts/dev-down.sh
MSG
