#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (unit, integration, slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1
exec .venv/bin/python -m pytest "$@"
