#!/usr/bin/env bash
# A small traffic generator for the demo: registers users through auth-service's API at a
# steady rate, so that the dashboard, `eventctl lag` and the catalog have something to show.
#
#   scripts/demo-traffic.sh --rate 5 --duration 60 [--org org-acme] [--url http://127.0.0.1:8081]
#
# Sends rate x duration sign-ups (bounded), then prints how many were answered 201 and
# what else came back. Needs curl and a running auth-service (scripts/dev-up.sh).
set -euo pipefail

rate=5
duration=60
org=org-acme
url=http://127.0.0.1:8081

while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --org) org=$2; shift 2 ;;
    --url) url=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
case "$rate$duration" in
  *[!0-9]*) echo "error: --rate and --duration are whole numbers (per second, seconds)" >&2; exit 2 ;;
esac
if [ "$rate" -lt 1 ] || [ "$rate" -gt 1000 ] || [ "$duration" -lt 1 ]; then
  echo "error: --rate must be 1 to 1000 and --duration at least 1" >&2
  exit 2
fi

total=$((rate * duration))
run=$(date +%s)-$$
pause=$(awk "BEGIN { printf \"%.4f\", 1 / $rate }")
declare -A answers=()
echo "registering $total users in $org at $rate/s against $url"
for i in $(seq 1 "$total"); do
  body="{\"email\":\"demo-$run-$i@$org.example\",\"name\":\"Demo User $i\",\"organization_id\":\"$org\"}"
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST "$url/users" \
    -H 'content-type: application/json' -d "$body" 2>/dev/null || echo "no-answer")
  answers[$code]=$(( ${answers[$code]:-0} + 1 ))
  sleep "$pause"
done
for code in "${!answers[@]}"; do
  echo "  $code: ${answers[$code]}"
done
[ "${answers[201]:-0}" -eq "$total" ]
