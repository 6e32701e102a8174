#!/usr/bin/env bash
# The whole demo with one command: installs the pinned nats-server if missing, starts it
# with deploy/nats.conf (JetStream, sync_interval: always, store in .data/nats), applies the
# streams of deploy/streams.toml (profile dev), builds and starts auth-service and
# catalog-service in the background (pids and logs under .data/, databases in
# .data/<service>/), starts the operator console (`eventctl serve`, token in
# .data/console-token), waits until the services' /readyz are green and prints where to look.
#
#   scripts/dev-up.sh                  # NATS + streams + console + both services
#   scripts/dev-up.sh --backbone-only  # NATS + streams + console only
#   scripts/dev-up.sh --secure         # deploy/secure/nats.conf instead (TLS, one nkey
#                                      # identity per service and tool; docs/SECURITY.md),
#                                      # identities made by `eventctl auth init` on first
#                                      # use, services on deploy/secure/<service>.toml
#
# Idempotent: run it again and it finds everything up and says so. Stop everything it
# started with scripts/dev-down.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
data="$root/.data"
mkdir -p "$data"

backbone_only=false
secure=false
# The plain development setup; secure_mode below replaces these.
nats_conf=deploy/nats.conf
nats_url=nats://127.0.0.1:4222
eventctl_conn=(--server "$nats_url")
serve_conn=(--server "$nats_url")
mode=plain

parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --backbone-only) backbone_only=true ;;
      --secure) secure=true ;;
      -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "error: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
  done
}

# --secure: TLS and per-service identities. Sets the server config, the operator's and the
# console's eventctl options, and exports the services' config files (AUTH_SERVICE_CONFIG,
# CATALOG_SERVICE_CONFIG) and the URL for everything started from here.
secure_mode() {
  local dir=.data/secure
  if [ ! -f "$dir/auth.conf" ]; then
    echo "no identities in $dir yet: running eventctl auth init"
    "$root/target/debug/eventctl" auth init --out "$dir"
  fi
  nats_conf=deploy/secure/nats.conf
  nats_url=tls://127.0.0.1:4222
  eventctl_conn=(--server "$nats_url" --tls-ca "$dir/tls/ca.pem"
    --nkey "$dir/operator.nk" --inbox-prefix _INBOX_operator)
  serve_conn=(--server "$nats_url" --tls-ca "$dir/tls/ca.pem"
    --nkey "$dir/admin-server.nk" --inbox-prefix _INBOX_admin-server)
  mode=secure
  export EVENTS_NATS_URL=$nats_url
  export AUTH_SERVICE_CONFIG=deploy/secure/auth-service.toml
  export CATALOG_SERVICE_CONFIG=deploy/secure/catalog-service.toml
}

# True if the pid in $1 (a pid file) is alive and runs a command whose line holds $2.
running() {
  local pidfile=$1 name=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

nats_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:8222/healthz?js-enabled-only=true" >/dev/null 2>&1; }

start_nats() {
  local pidfile="$data/nats.pid" log="$data/nats.log" bin
  bin=${NATS_SERVER_BIN:-$(scripts/setup-nats.sh | tail -n1)}
  if running "$pidfile" nats-server; then
    echo "nats-server already running (pid $(cat "$pidfile")), not started again"
    local current
    current=$(cat "$data/nats.mode" 2>/dev/null || echo plain)
    if [ "$current" != "$mode" ]; then
      echo "error: it runs the $current setup, not $mode; stop it first: scripts/dev-down.sh" >&2
      exit 1
    fi
  elif nats_healthy; then
    echo "a NATS server already answers on 127.0.0.1:8222 (not started by this script); using it"
  else
    "$bin" -c "$nats_conf" >"$log" 2>&1 &
    echo $! >"$pidfile"
    echo "$mode" >"$data/nats.mode"
    echo "started nats-server (pid $!) with $nats_conf"
  fi
  # Wait, bounded, until JetStream answers.
  for _ in $(seq 1 100); do
    nats_healthy && return 0
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "error: nats-server exited; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.1
  done
  echo "error: JetStream did not answer within 10 s; see $log" >&2
  tail -n 20 "$log" >&2
  exit 1
}

apply_streams() {
  echo "applying deploy/streams.toml (profile dev):"
  "$root/target/debug/eventctl" "${eventctl_conn[@]}" \
    streams apply --file deploy/streams.toml --profile dev
}

# The admin server with the operator console (/ui), behind a development token made once
# and kept in .data/console-token (0600); in secure mode as the admin-server identity.
start_console() {
  local pidfile="$data/console.pid" log="$data/console.log" token_file="$data/console-token"
  if [ ! -s "$token_file" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
  fi
  if running "$pidfile" eventctl; then
    echo "eventctl serve already running (pid $(cat "$pidfile")), not started again"
    return 0
  fi
  local hash
  hash=$(sha256sum <"$token_file" | cut -d' ' -f1)
  EVENTS_ADMIN_TOKEN_HASHES="dev:admin:$hash" nohup "$root/target/debug/eventctl" \
    "${serve_conn[@]}" serve --listen 127.0.0.1:9090 >"$log" 2>&1 &
  echo $! >"$pidfile"
  echo "started eventctl serve (pid $!) on 127.0.0.1:9090, log $log"
  wait_ready eventctl http://127.0.0.1:9090/healthz "$pidfile" "$log"
}

build() {
  local packages=(-p eventctl)
  $backbone_only || packages+=(-p auth-service -p catalog-service)
  echo "building ${packages[*]} (cargo build --locked)"
  cargo build --quiet --locked "${packages[@]}"
}

# start_service NAME READY_URL: runs target/debug/NAME in the background unless it runs.
start_service() {
  local name=$1 ready=$2 pidfile="$data/$1.pid" log="$data/$1.log"
  if running "$pidfile" "$name"; then
    echo "$name already running (pid $(cat "$pidfile")), not started again"
  else
    # An exported EVENTS_NATS_URL (or *_SERVICE_CONFIG) wins over the plain default.
    RUST_LOG=${RUST_LOG:-info} EVENTS_NATS_URL=${EVENTS_NATS_URL:-$nats_url} \
      nohup "$root/target/debug/$name" >"$log" 2>&1 &
    echo $! >"$pidfile"
    echo "started $name (pid $!), log $log"
  fi
  wait_ready "$name" "$ready" "$pidfile" "$log"
}

# wait_ready NAME URL PIDFILE LOG: bounded wait (60 s) for a 200 from URL.
wait_ready() {
  local name=$1 url=$2 pidfile=$3 log=$4
  for _ in $(seq 1 600); do
    curl -fsS --max-time 2 "$url" >/dev/null 2>&1 && return 0
    if ! running "$pidfile" "$name"; then
      echo "error: $name exited; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      rm -f "$pidfile"
      exit 1
    fi
    sleep 0.1
  done
  echo "error: $name not ready at $url within 60 s; see $log" >&2
  tail -n 20 "$log" >&2
  exit 1
}

start_services() {
  start_service auth-service http://127.0.0.1:9091/readyz
  start_service catalog-service http://127.0.0.1:9092/readyz
}

print_backbone() {
  cat <<MSG

Backbone is up ($mode).
  Console:     http://127.0.0.1:9090/ui   (token: $(cat "$data/console-token"))
  NATS:        $nats_url
  Monitoring:  http://127.0.0.1:8222  (/healthz, /jsz?streams=true)
  Server log:  $data/nats.log
  Store:       $data/nats
  Streams:     cargo run -p eventctl -- ${eventctl_conn[*]} streams list
  Stop:        scripts/dev-down.sh
MSG
}

print_services() {
  cat <<'MSG'

Services are up.
  auth-service     API http://127.0.0.1:8081   admin http://127.0.0.1:9091/metrics
                   users in .data/auth-service/auth.db, log .data/auth-service.log
  catalog-service  admin http://127.0.0.1:9092 (/catalogs/{org}, /metrics)
                   projection in .data/catalog-service/catalog.db, log .data/catalog-service.log

Try:
  curl -sS -X POST localhost:8081/users -H 'content-type: application/json' \
       -d '{"email":"ada@acme.example","name":"Ada Lovelace","organization_id":"org-acme"}'
  curl -sS localhost:9092/catalogs/org-acme
  scripts/demo-traffic.sh --rate 5 --duration 60   # sign-ups for the dashboard and eventctl lag
MSG
}

main() {
  parse_args "$@"
  build
  if $secure; then secure_mode; fi
  start_nats
  apply_streams
  start_console
  print_backbone
  if ! $backbone_only; then
    start_services
    print_services
  fi
}

main "$@"
