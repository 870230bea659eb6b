#!/usr/bin/env bash
# Brings up a one-node Slurm (controller and compute node on this machine) for procman's Slurm
# tests (tests/slurm.rs). Idempotent: a second run while it is up only checks that the node is
# ready. Must run as root (slurmd launches jobs as the submitting user).
#
# Debian 12 packages: munge, slurmctld, slurmd, slurm-client (Slurm 22.05). No systemd: the
# daemons are started directly and tracked by PID files in $RUN_DIR; .ci/stop-slurm.sh stops
# exactly those PIDs. procman reads exit codes from squeue/`scontrol show job` (finished jobs
# stay visible for MinJobAge=3600 s); with PROCMAN_SLURM_ACCOUNTING=dbd, CPU times and peak
# memory from `sacct` too.
#
# Env:
#   PROCMAN_SLURM_CPUS   CPUs to advertise (default: what slurmd -C sees; more lets more
#                        1-CPU jobs run at once on a small machine)
#   PROCMAN_SLURM_READY  seconds to wait for the node to become idle (default 60)
#   PROCMAN_SLURM_NO_INSTALL=1  never run apt-get
#   PROCMAN_SLURM_ACCOUNTING     none (default) or dbd (MariaDB + slurmdbd: sacct works)
set -euo pipefail

RUN_DIR=/run/procman-slurm
CONF=/etc/slurm/slurm.conf
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
LOG_DIR=/var/log/slurm
MUNGE_PID=/run/munge/munged.pid
CTLD_PID=$RUN_DIR/slurmctld.pid
DBD_PID=$RUN_DIR/slurmdbd.pid
DBD_CONF=/etc/slurm/slurmdbd.conf
MARIADB_PID=/run/mysqld/mariadbd.pid
ACCOUNTING=${PROCMAN_SLURM_ACCOUNTING:-none}
SLURMD_PID=$RUN_DIR/slurmd.pid
READY=${PROCMAN_SLURM_READY:-60}
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf '[start-slurm] %s\n' "$*" >&2; }

# alive PIDFILE NAME: the pid in PIDFILE is a live process whose name starts with NAME
alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2"* ]] &&
    # A daemon killed while nobody reaps it (PID 1 in a sandbox may not) stays a zombie.
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
# retry SECONDS CMD...: runs CMD every 0.2 s until it succeeds
retry() {
  local n=$(( $1 * 5 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

[[ $(id -u) -eq 0 ]] || { say "must run as root"; exit 1; }
case $ACCOUNTING in none|dbd) ;; *) say "PROCMAN_SLURM_ACCOUNTING must be none or dbd"; exit 2 ;; esac

# ---- install (only what is missing)
missing=0
pkgs=(munge slurmctld slurmd slurm-client)
bins=(munged slurmctld slurmd sbatch squeue scontrol scancel sinfo)
if [[ $ACCOUNTING == dbd ]]; then pkgs+=(slurmdbd mariadb-server); bins+=(slurmdbd mariadbd sacctmgr); fi
for b in "${bins[@]}"; do
  command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || missing=1
done
if [[ $missing -eq 1 ]]; then
  [[ ${PROCMAN_SLURM_NO_INSTALL:-0} == 1 ]] && { say "Slurm is not installed"; exit 1; }
  say "installing ${pkgs[*]}"
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # The packages' scripts would start the services (and slurmctld fails without a config).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${pkgs[@]}" >/dev/null
  [[ $own_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
fi

# ---- configuration
HOST=$(hostname -s 2>/dev/null || true); HOST=${HOST:-localhost}
HW=$(slurmd -C 2>/dev/null | head -1 || true)
field() { sed -n "s/.*$1=\\([0-9]*\\).*/\\1/p" <<<"$HW"; }
CPUS=$(field CPUs); CPUS=${CPUS:-$(nproc)}
MEM=$(field RealMemory)
[[ -n $MEM ]] || MEM=$(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)
MEM=$(( MEM * 95 / 100 ))    # a slightly lower reading later must not drain the node
TOPO=""; S=$(field SocketsPerBoard); C=$(field CoresPerSocket); T=$(field ThreadsPerCore)
if [[ -n $S && -n $C && -n $T && $(( S * C * T )) -eq $CPUS ]]; then
  TOPO="Sockets=$S CoresPerSocket=$C ThreadsPerCore=$T"
fi
OVERRIDES=""
if [[ -n ${PROCMAN_SLURM_CPUS:-} && $PROCMAN_SLURM_CPUS != "$CPUS" ]]; then
  CPUS=$PROCMAN_SLURM_CPUS
  TOPO="Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1"
  OVERRIDES="SlurmdParameters=config_overrides"
fi

mkdir -p /etc/slurm "$RUN_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
chown slurm:slurm "$STATE_DIR" "$LOG_DIR"
touch "$LOG_DIR/jobcomp.txt"; chown slurm:slurm "$LOG_DIR/jobcomp.txt"

if [[ $ACCOUNTING == dbd ]]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherFrequency=task=1"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi
NEW=$(mktemp)
cat >"$NEW" <<CONF
# written by procman's .ci/start-slurm.sh: one-node cluster for tests
ClusterName=procman
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
# cgroups are not usable in containers: track job processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Slurm's default batch_sched_delay=3 starts jobs once per 3 s
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( MEM / CPUS ))
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for an hour (procman reads exit codes there)
MinJobAge=3600
# those finished jobs count against MaxJobCount (default 10000): room for 10,000 in flight
# beside an hour's finished ones (tests/slurm_scale.rs, PROCMAN_SCALE_JOBS=10000)
MaxJobCount=100000
KillWait=5
OverTimeLimit=0
InactiveLimit=0
${ACCT_LINES}
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG_DIR}/jobcomp.txt
${OVERRIDES}
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} ${TOPO} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$NEW" "$CONF"; then
  install -m 644 "$NEW" "$CONF"; changed=1
  say "wrote $CONF (node $HOST, $CPUS CPUs, $MEM MB)"
fi
rm -f "$NEW"

# ---- munge
if [[ ! -s /etc/munge/munge.key ]]; then
  install -d -o munge -g munge -m 700 /etc/munge
  runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge
install -d -o munge -g munge -m 711 /var/lib/munge
if ! alive "$MUNGE_PID" munged; then
  say "starting munged"
  rm -f "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
fi
munge_ok() { munge -n </dev/null | unmunge; }
retry 10 munge_ok || { say "munge does not work"; exit 1; }

# ---- slurm daemons (restarted when the configuration changed)
if [[ $changed -eq 1 ]] && { alive "$CTLD_PID" slurmctld || alive "$SLURMD_PID" slurmd; }; then
  say "configuration changed: restarting the Slurm daemons"
  "$HERE/stop-slurm.sh" --keep-munge
fi

# ---- accounting: MariaDB and slurmdbd (before slurmctld, which registers with slurmdbd)
if [[ $ACCOUNTING == dbd ]]; then
  install -d -o mysql -g mysql -m 755 /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  if ! alive "$MARIADB_PID" mariadbd; then
    say "starting mariadbd"
    rm -f "$MARIADB_PID"
    setsid /usr/sbin/mariadbd --user=mysql --pid-file="$MARIADB_PID" \
      --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
      --innodb-buffer-pool-size=64M --log-error=/var/lib/mysql/mariadb.err \
      </dev/null >/dev/null 2>&1 &
  fi
  retry 60 mariadb -e 'select 1' || { say "mariadb did not come up"; exit 1; }
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'procmanci';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  NEW_DBD=$(mktemp)
  cat >"$NEW_DBD" <<DBD
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=${DBD_PID}
LogFile=${LOG_DIR}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=procmanci
DBD
  # slurmdbd insists on mode 0600, owned by SlurmUser
  cmp -s "$NEW_DBD" "$DBD_CONF" || install -m 600 -o slurm -g slurm "$NEW_DBD" "$DBD_CONF"
  rm -f "$NEW_DBD"
  if ! alive "$DBD_PID" slurmdbd; then
    say "starting slurmdbd"
    rm -f "$DBD_PID"
    /usr/sbin/slurmdbd
  fi
  retry 60 sacctmgr -n list cluster || { say "slurmdbd does not answer"; tail -n 20 "$LOG_DIR/slurmdbd.log" >&2; exit 1; }
  sacctmgr -n -P list cluster format=cluster | grep -qx procman || sacctmgr -i add cluster procman >/dev/null
fi

if ! alive "$CTLD_PID" slurmctld; then
  say "starting slurmctld"
  rm -f "$CTLD_PID"
  /usr/sbin/slurmctld
fi
retry 20 scontrol ping || { say "slurmctld does not answer"; tail -n 20 "$LOG_DIR/slurmctld.log" >&2; exit 1; }
if ! alive "$SLURMD_PID" slurmd; then
  say "starting slurmd"
  rm -f "$SLURMD_PID"
  /usr/sbin/slurmd -N "$HOST"
fi

# ---- wait until the node takes jobs
deadline=$(( $(date +%s) + READY ))
while :; do
  state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -1 || true)
  case $state in
    idle|mixed|allocated|completing) break ;;
    down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if (( $(date +%s) > deadline )); then
    say "node $HOST not ready after ${READY}s (state '$state')"
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 1
  fi
  sleep 0.2
done
say "node $HOST is $state"
