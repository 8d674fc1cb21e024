#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the test that runs a workflow through
# configs/profiles/slurm (tests/test_slurm.py). Needs root and Debian's slurm-wlm and munge
# (installed by .ci/run). Idempotent: daemons already running are left alone, and the config is
# rewritten only when the machine's CPUs or memory changed.
#
#   sudo .ci/slurm-up.sh            # then: sinfo; squeue
set -euo pipefail

for tool in munged slurmctld slurmd; do
  command -v "$tool" >/dev/null || { echo "slurm-up: $tool not installed (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "slurm-up: must run as root (slurmd starts jobs as their user)" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
# RealMemory in MB, leaving 10% for the daemons and the OS (slurmd drains a node that reports less).
real_memory=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
conf=$(cat <<CONF
# Written by lidcvae/.ci/slurm-up.sh: one node, no accounting (squeue, not sacct, answers status).
ClusterName=lidcvae-ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
if [ ! -f "$conf_dir/slurm.conf" ] || [ "$(cat "$conf_dir/slurm.conf")" != "$conf" ]; then
  printf '%s\n' "$conf" > "$conf_dir/slurm.conf"
  changed=1
else
  changed=0
fi

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key

running() { pgrep -x "$1" >/dev/null; }
running munged || su -s /bin/sh munge -c "munged --force" 2>/dev/null || munged --force
if [ "$changed" = 1 ]; then
  # A new config: restart the SLURM daemons so they read it.
  for daemon in slurmd slurmctld; do
    pidfile=/run/$daemon.pid
    if [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
      while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.2; done
    fi
  done
fi
running slurmctld || slurmctld
running slurmd || slurmd

# Wait until the node takes jobs.
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  case "$state" in idle|mix|alloc) echo "slurm-up: node $host $state ($cpus CPUs, $real_memory MB)"; exit 0 ;; esac
  sleep 1
done
echo "slurm-up: node $host not ready (state '${state:-unknown}'); see /var/log/slurm/" >&2
exit 1
