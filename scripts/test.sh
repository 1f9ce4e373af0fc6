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
.venv/bin/mypy crisper examples/shop
exec .venv/bin/python -m pytest "$@"
