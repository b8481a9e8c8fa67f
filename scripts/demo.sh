#!/usr/bin/env bash
# See it work on a fresh machine (Python >= 3.11, nothing installed):
#   bash scripts/demo.sh             set up .venv, then `stream-app demo` (broker, processor,
#                                    dispatcher and gateway simulator, playing the seed scenarios)
#   bash scripts/demo.sh --speed 10  extra arguments go to `stream-app demo` (see its --help)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
venv=${VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
exec stream-app demo "$@"
