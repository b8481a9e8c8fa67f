#!/usr/bin/env bash
# Compile the hot path (stream_app/compiled.py's MODULES) with mypyc, in place, in this tree:
#   bash scripts/compile.sh           build them (about 20 s); imports then load the C extensions
#   bash scripts/compile.sh --clean   remove them: the pure-Python source runs again
# Needs the dev install (mypy) and a C compiler. An edit after a build makes `import stream_app`
# refuse the stale build, naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python="$venv/bin/python"
[ -x "$python" ] || python=python3

clean() {
  find stream_app -name '*.so' -delete
  rm -f ./*__mypyc*.so
  rm -rf build/temp.* build/lib.* build/__native* build/stream_app build/ops.txt build/setup.py
}

case "${1:-}" in
  --clean)
    clean
    echo "compile: removed the compiled modules; stream_app runs as pure Python"
    ;;
  "")
    clean
    echo "compile: mypyc of the hot path (log: build/compile.log)"
    mkdir -p build
    if ! STREAM_APP_COMPILE=1 "$python" setup.py -q build_ext --inplace >build/compile.log 2>&1; then
      tail -n 20 build/compile.log >&2
      echo "compile: failed (above); stream_app still runs as pure Python" >&2
      clean
      exit 1
    fi
    # The extensions are in place now. Leave nothing in build/lib*: a later `pip install .` builds in
    # this tree and would pack those copies into a pure wheel, where no freshness check runs.
    rm -rf build/temp.* build/lib.*
    "$python" -c 'from stream_app.compiled import mode; print("compile: stream_app hot path is", mode())'
    ;;
  *)
    echo "usage: bash scripts/compile.sh [--clean]" >&2
    exit 2
    ;;
esac
