#!/usr/bin/env bash
# Creates .venv-airflow: Apache Airflow 3 (pinned in pyproject.toml's `airflow` extra) with
# saleslake installed editable, so DAG tasks import saleslake.api in-process. Airflow gets a
# virtual environment of its own so its pins can never move the project's (.venv).
# Idempotent: reinstalls only when pyproject.toml or this script changed since the last
# successful install (by content: the stamp holds their hash as read before installing, so
# an edit made during an install triggers the next one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
venv=.venv-airflow
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
fi
printf '*\n' >"$venv/.gitignore"  # the venv never belongs in git
stamp=$venv/.saleslake-installed
wanted=$(cat pyproject.toml scripts/setup_airflow.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e '.[airflow]'
  printf '%s\n' "$wanted" >"$stamp"
fi
