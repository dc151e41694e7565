#!/usr/bin/env bash
# Install argilla-server 2.8 and the argilla 2.8.0 SDK into their own venv (the SDK drags in datasets and
# huggingface_hub, the server FastAPI, SQLAlchemy, elasticsearch clients: kept out of .venv). Pins: typer<0.13
# and click<8.2 (the server's CLI cannot run with newer ones), requests (the SDK imports it undeclared).
# Idempotent (marker file). Prints the venv's python on the last line. Used by tests/test_review_live_argilla.py.
#   LABELER_ARGILLA_VENV  where the venv goes (default ~/.cache/labeler/argilla-venv)
set -euo pipefail
VENV="${LABELER_ARGILLA_VENV:-$HOME/.cache/labeler/argilla-venv}"
PY="${LABELER_ARGILLA_PYTHON:-python3}"
MARK="$VENV/.labeler-installed"
SPEC=("argilla-server==2.8.*" "argilla==2.8.0" requests "typer<0.13" "click<8.2")
if ! { [ -f "$MARK" ] && "$VENV/bin/python" -c 'import argilla, argilla_server' 2>/dev/null; }; then
    start=$(date +%s)
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q "${SPEC[@]}" > "$VENV.pip.log" 2>&1 || { tail -30 "$VENV.pip.log" >&2; exit 1; }
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("argilla-server"))' > "$MARK"
    echo "argilla-server $(cat "$MARK") installed in $VENV in $(( $(date +%s) - start ))s" >&2
fi
echo "$VENV/bin/python"
