#!/usr/bin/env bash
# A real single-machine SLURM cluster for the tests: munged + slurmctld + NNODES slurmd posing as
# fake nodes node1..N (Debian's slurm 22.05 packages). Facts: ../shared/specs/slurm_local_cluster.md.
#
#   scripts/slurm/cluster.sh install   apt-get the packages once (idempotent; root only)
#   scripts/slurm/cluster.sh up        install if needed, write $SLURM_ROOT/etc/slurm.conf, start the daemons
#   scripts/slurm/cluster.sh status    sinfo + squeue
#   scripts/slurm/cluster.sh down      stop every daemon `up` started (by its pid file)
#
# Settings (environment): SLURM_ROOT (default /tmp/distiltrack-slurm), NNODES (2), CPUS_PER_NODE (2),
# MEM_PER_NODE (MB, 4000). Clients find the cluster with `export SLURM_CONF=$SLURM_ROOT/etc/slurm.conf`.
# `up` exits 3 with one line when SLURM cannot be installed here (not root, no apt): tests then skip.
set -euo pipefail
ROOT=${SLURM_ROOT:-/tmp/distiltrack-slurm}
NNODES=${NNODES:-2}
CPUS_PER_NODE=${CPUS_PER_NODE:-2}
MEM_PER_NODE=${MEM_PER_NODE:-4000}
export SLURM_CONF="$ROOT/etc/slurm.conf"
PACKAGES=(slurmctld slurmd slurm-client munge)
UNAVAILABLE=3

say() { echo "[slurm] $*"; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
  && command -v munged >/dev/null; }

install() {
  installed && return 0
  if [ "$(id -u)" != 0 ]; then say "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})"; return $UNAVAILABLE; fi
  if ! command -v apt-get >/dev/null; then say "SLURM is not installed and there is no apt-get to install ${PACKAGES[*]}"; return $UNAVAILABLE; fi
  say "installing ${PACKAGES[*]} (apt-get)"
  # the packages' postinst try to start the services; without systemd they cannot, which is harmless
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${PACKAGES[@]}"; } >"${TMPDIR:-/tmp}/distiltrack-slurm-apt.log" 2>&1; then
    say "apt-get install ${PACKAGES[*]} failed: see ${TMPDIR:-/tmp}/distiltrack-slurm-apt.log"; return $UNAVAILABLE
  fi
  installed || { say "installed ${PACKAGES[*]} but slurmctld/slurmd/sbatch/munged are still missing"; return $UNAVAILABLE; }
}

write_conf() {
  local host; host=$(hostname -s)  # slurmctld refuses to start unless SlurmctldHost is the short hostname
  mkdir -p "$ROOT"/{etc,log,run,state/ctld}
  for i in $(seq 1 "$NNODES"); do mkdir -p "$ROOT/state/node$i"; done
  cat > "$SLURM_CONF" <<CONF
# written by scripts/slurm/cluster.sh: $NNODES fake nodes on $host
ClusterName=distiltrack
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job is eligible again cred_expire + 1 s after the requeue (default 120 s; 5 is the minimum)
AuthInfo=cred_expire=5
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# trust CPUs/RealMemory below: every fake node claims the machine's cores
SlurmdParameters=config_overrides
SlurmctldPort=6817
StateSaveLocation=$ROOT/state/ctld
SlurmdSpoolDir=$ROOT/state/%n
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd-%n.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
NodeName=node[1-${NNODES}] NodeHostname=${host} NodeAddr=127.0.0.1 Port=[17001-$((17000 + NNODES))] CPUs=${CPUS_PER_NODE} RealMemory=${MEM_PER_NODE} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

wait_for() {  # tries command...: retry every 0.1 s
  local tries=$1; shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

nodes_idle() { [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | wc -l)" -ge "$NNODES" ]; }
ctld_up() { scontrol ping 2>/dev/null | grep -q UP; }

up() {
  install || return $?
  if [ -f "$ROOT/run/slurmctld.pid" ] && kill -0 "$(cat "$ROOT/run/slurmctld.pid")" 2>/dev/null && nodes_idle; then
    say "already up ($NNODES nodes)"; echo "export SLURM_CONF=$SLURM_CONF"; return 0
  fi
  down >/dev/null
  rm -rf "$ROOT"/state "$ROOT"/log "$ROOT"/run
  write_conf
  if ! munge -n >/dev/null 2>&1; then  # one munged per machine, socket /run/munge/munge.socket.2
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
      /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
      chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
    touch "$ROOT/run/started-munge"  # `down` stops munged only when `up` started it
    wait_for 50 munge -n || { say "munged did not come up"; return 1; }
  fi
  /usr/sbin/slurmctld -f "$SLURM_CONF" -c  # -c: clean state, no jobs from an earlier run
  wait_for 100 ctld_up || { say "slurmctld did not come up: see $ROOT/log/slurmctld.log"; return 1; }
  for i in $(seq 1 "$NNODES"); do /usr/sbin/slurmd -f "$SLURM_CONF" -N "node$i"; done
  wait_for 300 nodes_idle || { say "nodes not idle: see $ROOT/log/slurmd-*.log"; sinfo -N -R >&2; return 1; }
  say "up: $(sinfo -h -o '%D nodes %T' | tr '\n' ' ')"
  echo "export SLURM_CONF=$SLURM_CONF"
}

down() {  # SIGTERM every daemon by its pid file, then wait (SIGKILL after 15 s)
  local pids=() f pid files=("$ROOT"/run/slurmd-*.pid "$ROOT/run/slurmctld.pid")
  [ -f "$ROOT/run/started-munge" ] && files+=(/run/munge/munged.pid)
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  done
  rm -f "$ROOT/run/started-munge"
  say "down (stopped ${#pids[@]} daemons)"
}

status() {
  if ! command -v sinfo >/dev/null; then say "not installed"; return 1; fi
  if ! ctld_up; then say "down (SLURM_CONF=$SLURM_CONF)"; return 1; fi
  sinfo -N
  squeue
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
