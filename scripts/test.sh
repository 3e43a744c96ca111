#!/usr/bin/env bash
# Set up the same way as scripts/run.sh, then run the whole test suite (unit, page, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh requirements-dev.txt
# Two workers, one test file each at a time (--dist loadfile keeps a file's module fixtures in one process):
# on 2 cores the suite took 25-31 min this way, for 45-55 min of CPU time.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
