#!/usr/bin/env bash
# Sets everything up and runs the whole test suite, cheapest gate first so a broken gate
# fails in seconds: lint and format (ruff), types (mypy), then pytest by cost marker
# (unit, integration, slow; the marker comes from the test's folder). With arguments,
# runs only pytest with them (e.g. `bash scripts/test.sh -m unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
if [ "$#" -gt 0 ]; then
  bash scripts/setup_browser.sh
  bash scripts/setup_airflow.sh
  exec .venv/bin/python -m pytest "$@"
fi
lane() { printf '\n== %s\n' "$1"; }
lane "lint (ruff check, ruff format --check)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
lane "types (mypy)"
.venv/bin/mypy
lane "unit tests"
.venv/bin/python -m pytest -m unit -q
bash scripts/setup_browser.sh  # Debian chromium for the dashboard browser test
bash scripts/setup_airflow.sh  # .venv-airflow: Airflow 3 for tests/integration/test_airflow_dags.py
lane "integration tests (real PostgreSQL, Kafka, dbt, Airflow, Chromium)"
.venv/bin/python -m pytest -m integration
lane "slow tests"
.venv/bin/python -m pytest -m slow
