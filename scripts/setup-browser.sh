#!/usr/bin/env bash
# Installs what the console's browser tests drive: Debian's chromium and chromedriver
# (package chromium-driver), when missing. Prints the chromedriver path last.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/apt-ensure.sh" "chromium chromedriver" chromium chromium-driver
chromium --version >&2
command -v chromedriver
