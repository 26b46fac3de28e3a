# Sourced by scripts/run and scripts/test: a fresh machine needs only Python 3.11+, Node and npm.
# Creates .venv from requirements.txt (again when that file changes) and takes bun from the
# npm registry (Reflex cannot download it here).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUN_VERSION="1.4.4"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
wanted="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements.sha256 2>/dev/null || true)" != "$wanted" ]; then
  echo "==> installing Python packages (requirements.txt)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$wanted" > .venv/.requirements.sha256
fi
if [ "$(.tools/node_modules/.bin/bun --version 2>/dev/null || true)" != "$BUN_VERSION" ]; then
  echo "==> installing bun $BUN_VERSION from the npm registry"
  npm install --prefix .tools --no-audit --no-fund --silent "bun@$BUN_VERSION"
fi
# The Node tests of assets/realtime-client.js take the `eventsource` package from their lock file.
wanted="$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)"
if [ "$(cat tests/node/node_modules/.lock.sha256 2>/dev/null || true)" != "$wanted" ]; then
  echo "==> installing the Node test packages (tests/node/package-lock.json)"
  npm ci --prefix tests/node --no-audit --no-fund --silent
  echo "$wanted" > tests/node/node_modules/.lock.sha256
fi

export PATH="$ROOT/.venv/bin:$ROOT/.tools/node_modules/.bin:$PATH"
export REFLEX_BUN_PATH="$ROOT/.tools/node_modules/.bin/bun"
export REFLEX_TELEMETRY_ENABLED=false
export REFLEX_CHECK_LATEST_VERSION=false
