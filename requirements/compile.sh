#!/usr/bin/env bash
# Regenerates the locks from the .in files: requirements.txt (runtime), then bench.txt and
# test.txt, which hold the runtime packages at requirements.txt's pins. The locks are
# universal (markers, not this machine's platform) for Python 3.11 and up. A lock keeps
# its current pins where the .in files allow them; to move one, pass uv's own flags, e.g.
#   requirements/compile.sh --upgrade-package redis
# (or --upgrade for all). Each lock's header records the uv command that made it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV_VERSION="0.13.9"
UV=.tools/uv/bin/uv
if [ "$("$UV" --version 2>/dev/null || true)" != "uv $UV_VERSION" ]; then
  echo "==> installing uv $UV_VERSION into .tools/uv"
  "${PYTHON:-python3}" -m venv .tools/uv
  .tools/uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
compile() {
  "$UV" pip compile --quiet --universal --python-version 3.11 "$1" -o "$2" "${@:3}"
}
compile requirements/app.in requirements.txt "$@"
compile requirements/bench.in requirements/bench.txt "$@"
compile requirements/test.in requirements/test.txt "$@"
