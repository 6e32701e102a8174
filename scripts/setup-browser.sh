#!/usr/bin/env bash
# Installs what the console's browser tests drive: Debian's chromium and chromedriver
# (package chromium-driver). Idempotent: does nothing when both are on PATH. Prints the
# chromedriver path last. Needs root (or sudo) to install.
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if ! have; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # An old or empty package list finds nothing: update once, then install.
  $sudo apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q chromium chromium-driver >/dev/null
  }
fi
have || { echo "error: chromium/chromedriver still missing after install" >&2; exit 1; }
chromium --version >&2
command -v chromedriver
