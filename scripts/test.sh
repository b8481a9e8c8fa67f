#!/usr/bin/env bash
# The whole test suite on a fresh machine (Python >= 3.11, nothing installed):
#   bash scripts/test.sh                 set up .venv, then ruff check, mypy and pytest
#   bash scripts/test.sh -k outcome -x   extra arguments go to pytest
# The Kafka broker for the tests: KAFKA_BOOTSTRAP_SERVERS if set, else a Docker container
# (STREAM_APP_TEST_KAFKA_IMAGE), else the Tansu binary; see the README's "Testing" section.
# Exits non-zero when any step fails, including a pytest run that collected no tests (exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
venv=${VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"

echo "== ruff check"
ruff check .
echo "== mypy"
mypy
echo "== pytest $*"
status=0
pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5): that is a failure, not a pass" >&2
fi
exit "$status"
