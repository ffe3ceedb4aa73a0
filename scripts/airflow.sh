#!/usr/bin/env bash
# Runs Airflow 3 locally with the saleslake DAGs, in one command:
#
#   bash scripts/airflow.sh              # `airflow standalone`: UI on http://127.0.0.1:8080
#   bash scripts/airflow.sh dags list    # any other airflow command, same environment
#
# AIRFLOW_HOME defaults to <repo>/.airflow (metadata DB, logs, the generated admin password),
# SALESLAKE_HOME to <repo>/lakehouse; AIRFLOW_PORT moves the UI. The API server listens on
# 127.0.0.1 only. Airflow runs from .venv-airflow (created here on first use).
set -euo pipefail
caller=$(pwd)
cd "$(dirname "$0")/.."
repo=$(pwd)
bash scripts/setup_airflow.sh

# Tasks run in other working directories: make the lake and config paths absolute, relative
# to where this command was started (like the CLI would read them).
absolute() { (cd "$caller" && realpath -m -- "$1"); }
export SALESLAKE_HOME=$(absolute "${SALESLAKE_HOME:-$repo/lakehouse}")
if [ -n "${SALESLAKE_CONFIG:-}" ]; then
  export SALESLAKE_CONFIG=$(absolute "$SALESLAKE_CONFIG")
elif [ -f "$caller/saleslake.toml" ]; then
  export SALESLAKE_CONFIG=$caller/saleslake.toml
fi

export AIRFLOW_HOME=$(absolute "${AIRFLOW_HOME:-$repo/.airflow}")
mkdir -p "$AIRFLOW_HOME"
[ -f "$AIRFLOW_HOME/.gitignore" ] || printf '*\n' >"$AIRFLOW_HOME/.gitignore"  # local state, never in git
port=${AIRFLOW_PORT:-8080}
export AIRFLOW__CORE__DAGS_FOLDER=$repo/airflow/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$port
export AIRFLOW__API__BASE_URL=http://127.0.0.1:$port  # also the log links in alerts
# Nothing calls out: Airflow 3.3 has no usage-data collection (the setting is for older
# versions); statsd, OpenTelemetry and Sentry are off by default; dbt's statistics are off.
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1

export PATH=$repo/.venv-airflow/bin:$PATH  # standalone starts its components as `airflow ...`
[ $# -gt 0 ] || set -- standalone
if [ "$1" != standalone ]; then
  exec airflow "$@"
fi

# Ctrl-C signals every process of the terminal's group, and LocalExecutor workers that get it
# directly can hang instead of exiting. So standalone runs in a session of its own (with
# SIGINT restored: a background job of a script starts with it ignored), and Ctrl-C, kill or
# a closed terminal reach standalone alone, which stops its components in order.
python -c 'import os, signal, sys
os.setsid()
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp("airflow", ["airflow", *sys.argv[1:]])' "$@" &
pid=$!
# Standalone stops its components in order (running tasks get the time to end); one of
# them has been seen to hang in its shutdown ("Shutting down components", then nothing):
# after a grace period the whole session is stopped, so a stop request always ends with
# no Airflow process left (a task stopped that way reruns to the same result).
grace=${SALESLAKE_AIRFLOW_STOP_SECONDS:-120}
stopping=0
deadline=0
trap 'kill -INT "$pid" 2>/dev/null || true; if [ "$stopping" -eq 0 ]; then stopping=1; deadline=$((SECONDS + grace)); fi' INT TERM HUP
forced=0
status=0
force_stop() {  # what hangs past the grace period: TERM the whole group, then KILL it
  echo "airflow.sh: $1" >&2
  kill -TERM -- "-$pid" 2>/dev/null || true
  sleep 5
  kill -KILL -- "-$pid" 2>/dev/null || true
  forced=1
}
while kill -0 "$pid" 2>/dev/null; do
  if [ "$stopping" -eq 0 ]; then
    wait "$pid" && status=0 || status=$?  # returns early (>128) when a signal runs the trap
  elif [ "$SECONDS" -lt "$deadline" ]; then
    sleep 1
  else
    force_stop "standalone did not stop within $grace s; stopping its processes"
    break
  fi
done
if [ "$forced" -eq 0 ] && [ "$stopping" -eq 1 ]; then  # the status standalone ended with (127: collected above)
  wait "$pid" 2>/dev/null && last=0 || last=$?
  [ "$last" -ne 127 ] && status=$last
fi
# standalone is gone, but a component it started can outlive it by a moment (or hang): this
# command ends only when no process of its session's group is left, forced after the grace
[ "$deadline" -gt 0 ] || deadline=$((SECONDS + grace))
while [ "$forced" -eq 0 ] && kill -0 -- "-$pid" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    force_stop "components of standalone did not stop within $grace s; stopping them"
  else
    sleep 1
  fi
done
# a stop that had to be forced still did what was asked
[ "$forced" -eq 1 ] && exit 0
exit "$status"
