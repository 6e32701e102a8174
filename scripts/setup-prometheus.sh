#!/usr/bin/env bash
# Installs Debian's prometheus package when missing: promtool (checks and unit-tests the
# alert rules) and the server the metrics test scrapes with. Prints the prometheus path last.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
fresh=0
command -v prometheus >/dev/null 2>&1 || fresh=1
"$here/apt-ensure.sh" "prometheus promtool" prometheus
# The package starts a system service; the tests run their own server.
if [ "$fresh" = 1 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool --version 2>&1 | head -n1 >&2
command -v prometheus
