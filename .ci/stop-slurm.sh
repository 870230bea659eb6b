#!/usr/bin/env bash
# Stops what .ci/start-slurm.sh started, by its PID files only (never by process name).
#   --keep-munge   leave munged (and mariadbd) running (start-slurm.sh uses it on a
#                  configuration change)
set -uo pipefail

RUN_DIR=/run/procman-slurm
say() { printf '[stop-slurm] %s\n' "$*" >&2; }

# stop PIDFILE NAME: SIGTERM, wait up to 15 s, then SIGKILL
stop() {
  local pid
  [[ -s $1 ]] || return 0
  pid=$(tr -dc '0-9' <"$1")
  if [[ -z $pid || $(cat "/proc/$pid/comm" 2>/dev/null) != "$2"* ]]; then
    rm -f "$1"; return 0
  fi
  say "stopping $2 ($pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$1"
}

# Leftover jobs first, so no job process outlives slurmd.
if command -v squeue >/dev/null 2>&1 && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o '%i' 2>/dev/null || true)
  if [[ -n $jobs ]]; then
    say "cancelling jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 100); do [[ -z $(squeue -h -o '%i' 2>/dev/null) ]] && break; sleep 0.2; done
  fi
fi
stop "$RUN_DIR/slurmd.pid" slurmd
stop "$RUN_DIR/slurmctld.pid" slurmctld
stop "$RUN_DIR/slurmdbd.pid" slurmdbd
[[ ${1:-} == --keep-munge ]] || stop /run/mysqld/mariadbd.pid mariadbd
[[ ${1:-} == --keep-munge ]] || stop /run/munge/munged.pid munged
exit 0
