#!/usr/bin/env bash
# The README's second command: set everything up and run the whole test suite, lab and PostgreSQL included.
#
# The lab tests share one lab and run one at a time; the tests that need no lab (grammar, store, Slack
# handlers, security, CLI...) mostly wait on subprocesses, so they run alongside in a second pytest with
# their own PostgreSQL server (the lab's fault tests stop and start theirs), and their report is printed
# after the lab's. The lab and the PostgreSQL servers are started by the test fixtures (and fail the run
# loudly if they cannot start); this script stops them at the end. With arguments, they go to a single
# pytest run instead (e.g. `bash deploy/run-tests.sh tests/migration_core/test_grammar.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh

UNIT_PG=(MIGRATE_BOT_PG_PORT=55433 MIGRATE_BOT_PG_DIR=/var/tmp/migrate-bot-pg-unit)
unit_pid=""
work=$(mktemp -d /tmp/migrate-bot-tests.XXXXXX)
cleanup() {
  if [ -n "$unit_pid" ]; then kill "$unit_pid" 2>/dev/null || true; fi
  deploy/lab/lab down >/dev/null 2>&1 || true
  deploy/pg-test-server stop >/dev/null 2>&1 || true
  env "${UNIT_PG[@]}" deploy/pg-test-server stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The worked examples in the core's docstrings must stay true.
.venv/bin/pytest -q -p no:cacheprovider --doctest-modules migration_core

if [ $# -gt 0 ]; then
  .venv/bin/pytest -m "not slow" "$@"
  exit
fi

# Both servers before the two runs: installing PostgreSQL (first run on a fresh machine) happens once.
deploy/pg-test-server start >/dev/null
env "${UNIT_PG[@]}" deploy/pg-test-server start >/dev/null

started=$SECONDS
# The lab run is the critical path (its migrations, timeouts and guests run on wall-clock time); the tests
# without the lab take a few minutes of CPU and have all the time the lab run takes, so they yield the CPU.
env "${UNIT_PG[@]}" nice -n 10 .venv/bin/pytest -p no:cacheprovider -m "not lab and not slow" --basetemp "$work/unit" \
  >"$work/unit.log" 2>&1 &
unit_pid=$!
echo "tests without the lab: running alongside (pid $unit_pid); their report follows the lab's"

set +e
.venv/bin/pytest -m "lab and not slow" --durations=15 --basetemp "$work/lab"
lab_rc=$?
wait "$unit_pid"
unit_rc=$?
set -e
unit_pid=""

echo
echo "======================== tests without the lab (ran alongside) ========================"
cat "$work/unit.log"
echo
echo "lab tests: exit $lab_rc; tests without the lab: exit $unit_rc; both in $((SECONDS - started)) s"
if [ "$lab_rc" -ne 0 ] || [ "$unit_rc" -ne 0 ]; then
  exit 1
fi
