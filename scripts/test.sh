#!/usr/bin/env bash
# Set up the same way as scripts/run.sh, then run the whole test suite (unit, page, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
exec .venv/bin/python -m pytest -q "$@"
