#!/usr/bin/env bash
# Set up a virtualenv with Crisper and its test tools, then run the checks and the test suite.
# Suites that need PostgreSQL/Redis/RabbitMQ skip (and say so) when those are not running,
# except under CI=true, where they must run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet -e ".[test]"
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check crisper tests bench examples
.venv/bin/mypy crisper examples --exclude examples/celery_adopt/stage
# Each stage of the adoption example is the same package `proj` at a different step.
for stage in examples/celery_adopt/stage*/; do
  (cd "$stage" && ../../../.venv/bin/mypy proj)
done
# Everything but the fault suite, then the fault suite (tests/fault_suite, marker `faults`),
# each in three processes (pytest-xdist, a test file per process at a time): most tests wait
# on real workers, brokers and databases, and every test has its own schema, key prefix,
# ports and private instances, so they do not meet.
rest=0
.venv/bin/python -m pytest -m "not faults" -n 3 --dist loadfile "$@" || rest=$?
faults=0
.venv/bin/python -m pytest -m faults -n 3 "$@" || faults=$?
# Exit 5 is pytest's "no test selected": fine for one half, not for both.
if [ "$rest" = 5 ] && [ "$faults" = 5 ]; then exit 5; fi
[ "$rest" = 5 ] && rest=0
[ "$faults" = 5 ] && faults=0
[ "$rest" = 0 ] && exit "$faults"
exit "$rest"
