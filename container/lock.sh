#!/usr/bin/env bash
# Regenerate container/requirements.lock: resolve pyproject.toml's dependencies (no test extras)
# in a throwaway virtual environment with this machine's Python 3.11 and freeze the result.
# Run it after changing the dependencies; commit the new lock with the change.
#   bash container/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: the image runs Debian 12's Python 3.11; resolve with a Python 3.11 ($py is $("$py" --version 2>&1))" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
echo "==> resolving the dependencies of pyproject.toml (a minute or two)"
"$work/venv/bin/pip" install -q --progress-bar off .
"$work/venv/bin/pip" check
{
  sed -n '/^#/p' container/requirements.lock
  "$work/venv/bin/pip" freeze --exclude dicomflow
} >"$work/requirements.lock"
mv "$work/requirements.lock" container/requirements.lock
echo "==> container/requirements.lock: $(grep -c '==' container/requirements.lock) packages"
