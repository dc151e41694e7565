#!/usr/bin/env bash
# One entry point for a fresh machine.
#   ./run.sh example   set up (venv, packages, llama-server, model) and label the bundled corpus
#   ./run.sh test      set up, then lint, type-check and run the whole test suite (what CI runs)
# Every stage prints "==> STAGE" when it starts and "==> STAGE: N s" when it is done
# (eval/newcomer.py reads these lines); a failed stage prints one line naming its log and the fix.
set -Eeuo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
mkdir -p runs
LOG=runs/run.sh.log
: >"$LOG"
stage="" fix="" t0=$SECONDS

begin() { # begin "stage name" "the fix if it fails"
  stage=$1 fix=$2 t0=$SECONDS
  echo "==> $stage"
}
end() { echo "==> $stage: $((SECONDS - t0)) s"; }
failed() {
  local code=$?
  if [ "$stage" = "venv and packages" ]; then tail -n 5 "$LOG" | sed 's/^/    /' >&2; fi
  echo "run.sh: '$stage' failed after $((SECONDS - t0)) s (exit $code); log: $LOG; fix: $fix" >&2
  exit "$code"
}
trap failed ERR

# pip's output goes to the log; on the screen, one line that counts the packages as they come
pip_install() {
  .venv/bin/python -m pip install --disable-pip-version-check "$@" 2>&1 | tee -a "$LOG" | awk -v tty="$([ -t 1 ] && echo 1)" '
    /^Collecting / { n++; if (tty) printf "\r    %d packages collected", n; else if (n % 20 == 0) printf "    %d packages collected\n", n; fflush() }
    /^Installing collected packages/ { if (tty && n) printf "\n"; printf "    installing %d packages\n", n; fflush() }
    /^Successfully installed/ { printf "    %s\n", substr($0, 1, 100) (length($0) > 100 ? " ..." : ""); fflush() }'
}

setup() {
  begin "venv and packages" "check that PyPI (or PIP_INDEX_URL) is reachable and that $PY is 3.11+ with venv (apt-get install python3-venv), then rerun"
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv >>"$LOG" 2>&1
  fi
  pip_install -q --upgrade pip
  pip_install -e ".[local,dev]"
  end
  # llama-server (the prebuilt xllamacpp wheel, checked with one completion; else built from the
  # llama.cpp sources inside llama-cpp-python) and the Gemma weights; cached in ~/.cache/labeler
  begin "llama-server and weights" "read the setup: line above (it names its own log), or run .venv/bin/labeler doctor"
  .venv/bin/labeler setup
  end
}

case "${1:-example}" in
  example)
    setup
    run="runs/example-$(date +%Y%m%d-%H%M%S)"
    out=runs/example-labels.csv
    begin "labeling" "read the error above; to finish an interrupted run: .venv/bin/labeler resume $run"
    .venv/bin/labeler run tasks/news_topic.toml --run-dir "$run" --export "$out"
    end
    begin "evaluation" "read the error above; the labels are in $out"
    .venv/bin/labeler eval "$run"   # the corpus ships human labels: how good are these?
    end
    echo "labels with confidence and provenance: $out"
    ;;
  test)
    setup
    begin "lint and type-check" "fix what ruff or mypy printed above"
    .venv/bin/ruff check labeler tests eval
    .venv/bin/mypy labeler
    end
    begin "tests" "read the failures above"
    .venv/bin/python -m pytest -q -p no:cacheprovider
    end
    ;;
  *)
    echo "usage: ./run.sh [example|test]" >&2
    exit 2
    ;;
esac
