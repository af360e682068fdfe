#!/usr/bin/env bash
# The README's second command: set everything up and run the whole test suite, lab and PostgreSQL included.
# The lab and the PostgreSQL server are started by the test fixtures (and fail the run loudly if they cannot
# start); this script stops both at the end. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
cleanup() {
  deploy/lab/lab down >/dev/null 2>&1 || true
  deploy/pg-test-server stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The worked examples in the core's docstrings must stay true; then the whole suite.
.venv/bin/pytest -q -p no:cacheprovider --doctest-modules migration_core
.venv/bin/pytest -m "not slow" "$@"
