#!/usr/bin/env bash
# Nightly hubaudit run for cron or systemd. No logic of its own beyond locking, logging and exit codes:
# everything it does is a `hubaudit` command that the test suite covers.
#
#   HUBAUDIT_BIN     the hubaudit executable          (default: hubaudit on PATH)
#   HUBAUDIT_CONFIG  the configuration file           (default: the user config dir, see README)
#   HUBAUDIT_LOCK    lock file against overlapping runs (default: $HUBAUDIT_STATE/nightly.lock)
#   HUBAUDIT_LOGDIR  log folder                       (default: $HUBAUDIT_STATE/logs)
#   HUBAUDIT_STATE   state folder                     (default: ~/.local/state/hubaudit)
#   HUBAUDIT_KEEP_LOGS  how many nightly logs to keep (default: 30)
#   HF_TOKEN         optional; read by hubaudit from the environment, never written to logs
#
# Exit codes: 0 run completed (findings are data, not failures) or another run holds the lock;
# otherwise hubaudit's own code (3 config/schema, 4 Hub unreachable/rate limited, 6 executor, 70 bug).
set -uo pipefail

state="${HUBAUDIT_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/hubaudit}"
lock="${HUBAUDIT_LOCK:-$state/nightly.lock}"
logdir="${HUBAUDIT_LOGDIR:-$state/logs}"
keep="${HUBAUDIT_KEEP_LOGS:-30}"
bin="${HUBAUDIT_BIN:-hubaudit}"
mkdir -p "$state" "$logdir" "$(dirname "$lock")"

# One run at a time: a second invocation while the first holds the lock exits 0 at once.
exec 9>"$lock"
if ! flock -n 9; then
  echo "hubaudit-nightly: another run holds $lock; nothing to do" >&2
  exit 0
fi

log="$logdir/nightly-$(date -u +%Y%m%dT%H%M%SZ).log"
ln -sfn "$(basename "$log")" "$logdir/latest.log"

(
  echo "== $(date -u +%FT%TZ) hubaudit nightly start (pid $$)"
  config_args=()
  [ -n "${HUBAUDIT_CONFIG:-}" ] && config_args=(--config "$HUBAUDIT_CONFIG")
  "$bin" db upgrade "${config_args[@]}"
  rc=$?
  if [ $rc -eq 0 ]; then
    "$bin" nightly "${config_args[@]}" --format json
    rc=$?
  else
    echo "== db upgrade failed with exit code $rc"
  fi
  echo "== $(date -u +%FT%TZ) hubaudit nightly end, exit code $rc"
  exit $rc
) >>"$log" 2>&1
rc=$?

# Rotation: keep the newest $keep logs (this run's included).
ls -1t "$logdir"/nightly-*.log 2>/dev/null | tail -n +"$((keep + 1))" | xargs -r rm -f

case $rc in
  0) ;;
  4) echo "hubaudit-nightly: the Hub was unreachable or rate-limited; finished work is kept and the next run resumes (log: $log)" >&2 ;;
  *) echo "hubaudit-nightly: failed with exit code $rc (log: $log)" >&2 ;;
esac
exit $rc
