#!/usr/bin/env bash
# Install Label Studio 1.23 into its own venv (it pins its own Django, pydantic, ...; never into .venv).
# Idempotent: a venv that finished installing (marker file) with label-studio 1.23.x is kept as it is;
# a half-made one (interrupted install) is removed and made again.
# Prints the venv's label-studio executable on the last line. Used by tests/test_review_live_labelstudio.py.
#   LABELER_LS_VENV    where the venv goes (default ~/.cache/labeler/ls-venv)
#   LABELER_LS_PYTHON  the interpreter to build it with (default python3; Label Studio 1.23 wants 3.10-3.13)
set -euo pipefail
VENV="${LABELER_LS_VENV:-$HOME/.cache/labeler/ls-venv}"
PY="${LABELER_LS_PYTHON:-python3}"
SPEC='label-studio>=1.23,<1.24'
MARK="$VENV/.labeler-installed"

ok() {
    [ -f "$MARK" ] && [ -x "$VENV/bin/label-studio" ] && "$VENV/bin/python" -c \
        'import importlib.metadata as m, sys; sys.exit(not m.version("label-studio").startswith("1.23."))' 2>/dev/null
}

if ! ok; then
    start=$(date +%s)
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q "$SPEC" > "$VENV.pip.log" 2>&1 || { tail -30 "$VENV.pip.log" >&2; exit 1; }
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' > "$MARK"
    echo "label-studio $(cat "$MARK") installed in $VENV in $(( $(date +%s) - start ))s" >&2
fi
echo "$VENV/bin/label-studio"
