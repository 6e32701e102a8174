#!/usr/bin/env bash
# Installs Debian's prometheus package: promtool (checks and unit-tests the alert rules)
# and the server the metrics test scrapes with. Idempotent: does nothing when both are on
# PATH. Prints the prometheus path last. Needs root (or sudo) to install.
set -euo pipefail

have() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if ! have; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q prometheus >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q prometheus >/dev/null
  }
  # The package starts a system service; the tests run their own server.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi
have || { echo "error: prometheus/promtool still missing after install" >&2; exit 1; }
promtool --version 2>&1 | head -n1 >&2
command -v prometheus
