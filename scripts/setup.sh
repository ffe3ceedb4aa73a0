#!/usr/bin/env bash
# Creates .venv with the project and its test tools. Idempotent: reinstalls only when
# pyproject.toml or this script changed since the last successful install (by content: the
# stamp holds their hash as read before installing, so an edit made during an install
# triggers the next one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.saleslake-installed
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  printf '%s\n' "$wanted" >"$stamp"
fi
