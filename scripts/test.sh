#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (unit, integration, slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
bash scripts/setup_browser.sh  # Debian chromium for the dashboard browser test
bash scripts/setup_airflow.sh  # .venv-airflow: Airflow 3 for tests/integration/test_airflow_dags.py
exec .venv/bin/python -m pytest "$@"
