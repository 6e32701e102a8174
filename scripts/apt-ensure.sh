#!/usr/bin/env bash
# apt-ensure.sh "CMD..." PACKAGE...: installs the Debian PACKAGEs unless every CMD is already
# on PATH (idempotent); updates the package list once if the first try finds nothing. Needs
# root or sudo. Used by setup-browser.sh, setup-prometheus.sh and setup-postgres.sh.
set -euo pipefail
cmds=$1
shift
have() { for c in $cmds; do command -v "$c" >/dev/null 2>&1 || return 1; done; }
have && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "$@" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q "$@" >/dev/null
}
have || { echo "error: $cmds still missing after installing $*" >&2; exit 1; }
