#!/usr/bin/env bash
# The README's first command: set everything up, bring up the local two-host lab, and start the bot's
# terminal console against it (SQLite store, no Slack needed). Extra arguments go to `migrate-bot console`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
echo "[run-bot] bringing up the lab (hostA, hostB and the lab VMs)..." >&2
lab_out=$(deploy/lab/lab up | tee /dev/stderr)
hosts_line=$(printf '%s\n' "$lab_out" | tail -n 1)
case "$hosts_line" in
  MIGRATE_BOT_HOSTS=*) export MIGRATE_BOT_HOSTS="${hosts_line#MIGRATE_BOT_HOSTS=}" ;;
  *) echo "[run-bot] the lab did not report its hosts file; see the output above" >&2; exit 1 ;;
esac
export MIGRATE_BOT_DB=${MIGRATE_BOT_DB:-sqlite:///./migrate-bot.db}
echo "[run-bot] hosts: $MIGRATE_BOT_HOSTS  database: $MIGRATE_BOT_DB" >&2
echo "[run-bot] try:  /migrate vm42 to hostB   then   as bob   and   approve last" >&2
exec .venv/bin/migrate-bot console "$@"
