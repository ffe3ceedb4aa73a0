#!/usr/bin/env bash
# Sets everything up and runs the demo on embedded defaults (no services needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/saleslake demo "$@"
