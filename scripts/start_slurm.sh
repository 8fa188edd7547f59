#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian 12, as root), for the tests and for trying
# sweeps: slurmctld + slurmd + slurmdbd (accounting, so that submitit's `sacct` polling sees job
# states) on MariaDB at 127.0.0.1, munge authentication, one partition `debug` holding this host.
#
#   sudo scripts/start_slurm.sh            # install what is missing, start what is stopped (idempotent;
#                                          # ~1 s when already up, ~15 s from stopped, ~1 min from nothing)
#   sudo scripts/start_slurm.sh --status   # exit 0 when the cluster answers, 1 when not
#   sudo scripts/start_slurm.sh --stop     # stop the daemons it started (slurmctld before slurmd)
#
# It writes /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (marked as its own; it refuses to
# replace a configuration it did not write), keeps state, spool and logs in $DZSC_SLURM_DIR
# (default /var/tmp/dzsc-slurm) and never wipes them (job ids would restart at 1). No cgroups: no
# CPU or memory limit is enforced. Test-friendly timings: a requeued job may start again after ~10 s
# (AuthInfo=cred_expire=10), KillWait=5, scheduling every 5 s. Not for shared or production use.
set -euo pipefail

SCRATCH=${DZSC_SLURM_DIR:-/var/tmp/dzsc-slurm}
CONF_DIR=/etc/slurm
MARK="# written by offline-marl scripts/start_slurm.sh (a throwaway single-node test cluster)"
CLUSTER=dzsc
PARTITION=debug
DB_USER=slurm
DB_PASS=dzsc-slurm-local   # MariaDB listens on 127.0.0.1 only
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

log() { echo "start_slurm: $*" >&2; }
die() { echo "start_slurm: error: $*" >&2; exit 1; }

healthy() {
    timeout 5 scontrol ping 2>/dev/null | grep -q "is UP" || return 1
    timeout 5 sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc|comp)' || return 1
    timeout 5 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER" || return 1
}

pid_alive() {  # pid_alive PIDFILE: its process runs and is the daemon named by the file (not a reused pid)
    [[ -s $1 ]] || return 1
    local pid name
    pid=$(cat "$1")
    name=$(basename "$1" .pid)
    [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "$what did not come up within ${seconds}s; see the logs in $SCRATCH/log"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    if pid_alive "$2"; then
        local pid
        pid=$(cat "$2")
        kill "$pid"
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        log "stopped $1 (pid $pid)"
    fi
}

stop_all() {
    stop_pidfile slurmctld "$SCRATCH/slurmctld.pid"   # before slurmd: the other order can strand jobs
    stop_pidfile slurmd "$SCRATCH/slurmd.pid"
    stop_pidfile slurmdbd "$SCRATCH/slurmdbd.pid"
    if mysqladmin ping >/dev/null 2>&1; then mysqladmin shutdown && log "stopped mariadb"; fi
    stop_pidfile munged /run/munge/munged.pid
}

case "${1:-}" in
    --status) if healthy; then echo "slurm is up"; exit 0; else echo "slurm is not up"; exit 1; fi ;;
    --stop) stop_all; exit 0 ;;
    "") ;;
    *) die "unknown argument ${1}; use no argument (start), --status or --stop" ;;
esac

if command -v scontrol >/dev/null && healthy; then
    log "already up (cluster $CLUSTER, partition $PARTITION)"
    exit 0
fi
[[ $(id -u) == 0 ]] || die "run as root: it installs Debian packages, writes $CONF_DIR and starts daemons"

# 1. Packages (apt starts no service here).
missing=0
for binary in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd; do
    command -v "$binary" >/dev/null || missing=1
done
if ((missing)); then
    command -v apt-get >/dev/null || die "no apt-get: install ${PACKAGES[*]} (Slurm 22.05 or newer) yourself"
    log "installing ${PACKAGES[*]} (about 40 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
fi

# 2. This host's name must resolve for slurmctld / slurmd.
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || { echo "127.0.0.1 $HOST" >>/etc/hosts; log "added $HOST to /etc/hosts"; }

mkdir -p "$SCRATCH"/{state,spool,log} "$CONF_DIR"

# 3. Configuration (rewritten only when it changes; a foreign one is never replaced).
NODE_LINE=$(slurmd -C | head -n 1)
[[ $NODE_LINE == NodeName=* ]] || die "slurmd -C did not describe this node: $NODE_LINE"
SLURM_CONF_TEXT="$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
ReturnToService=2
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_interval=5,bf_interval=5
$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP"
DBD_CONF_TEXT="$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
LogFile=$SCRATCH/log/slurmdbd.log
PidFile=$SCRATCH/slurmdbd.pid"

changed=0
write_conf() {  # write_conf FILE TEXT
    if [[ -e $1 ]] && ! grep -qxF "$MARK" "$1"; then
        die "$1 exists and was not written by this script; it only sets up a throwaway test cluster and will not replace it"
    fi
    if [[ ! -e $1 ]] || [[ $(cat "$1") != "$2" ]]; then
        printf '%s\n' "$2" >"$1"
        changed=1
    fi
}
write_conf "$CONF_DIR/slurm.conf" "$SLURM_CONF_TEXT"
write_conf "$CONF_DIR/slurmdbd.conf" "$DBD_CONF_TEXT"
chmod 644 "$CONF_DIR/slurm.conf"
chmod 600 "$CONF_DIR/slurmdbd.conf"   # slurmdbd refuses a readable one (it holds the DB password)
if ((changed)); then
    log "configuration written to $CONF_DIR; restarting any running Slurm daemon"
    stop_pidfile slurmctld "$SCRATCH/slurmctld.pid"
    stop_pidfile slurmd "$SCRATCH/slurmd.pid"
    stop_pidfile slurmdbd "$SCRATCH/slurmdbd.pid"
fi

# 4. munge (as the munge user).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged --force
    wait_for 10 munged bash -c "munge -n | unmunge"
    log "munged started"
fi

# 5. MariaDB on 127.0.0.1 and the accounting database user.
if ! mysqladmin ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 </dev/null >>"$SCRATCH/log/mariadb.log" 2>&1 &
    wait_for 30 mariadb mysqladmin ping
    log "mariadb started"
fi
mysql -e "CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
          CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
          GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';
          GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';"

# 6. slurmdbd, the cluster's accounting record, slurmctld, slurmd (each daemonises itself).
if ! pid_alive "$SCRATCH/slurmdbd.pid"; then
    slurmdbd
    log "slurmdbd started"
fi
wait_for 30 slurmdbd sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! pid_alive "$SCRATCH/slurmctld.pid"; then
    slurmctld
    log "slurmctld started"
fi
if ! pid_alive "$SCRATCH/slurmd.pid"; then
    slurmd
    log "slurmd started"
fi
wait_for 30 slurmctld bash -c "scontrol ping | grep -q 'is UP'"
for _ in $(seq 120); do
    state=$(sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null | head -n 1)
    case "$state" in
        idle* | mix* | alloc* | comp*) break ;;
        down* | drain* | drng*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.25
done
healthy || die "the node did not become ready (state: ${state:-unknown}); see $SCRATCH/log/slurmctld.log and slurmd.log"
log "up: cluster $CLUSTER, partition $PARTITION, node $HOST ($(sinfo -h -N -o '%c CPUs, %m MB'))"
