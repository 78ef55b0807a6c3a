#!/usr/bin/env bash
# stop_cluster.sh: stops the cluster that tests/slurm/start_cluster.sh STATE_DIR started.
#
#   bash tests/slurm/stop_cluster.sh STATE_DIR
#
# Cancels the cluster's remaining jobs (so no job step outlives it), then stops slurmd, slurmctld and munged
# by the PIDs in their PID files under STATE_DIR: SIGTERM, up to 10 s of grace, then SIGKILL. Never signals
# anything by name. Safe to call twice or on a half-started cluster. Leaves STATE_DIR in place (logs).
set -uo pipefail

[ $# -eq 1 ] || {
    echo "usage: $0 STATE_DIR" >&2
    exit 2
}
dir=$1
[ -d "$dir" ] || exit 0

# pid_alive PID NAME: the process exists, is not a zombie (a daemon's zombie waits for init to reap it), and
# is still the daemon we started (PIDs get reused)
pid_alive() {
    local state
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2> /dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] && grep -q "^$2" "/proc/$1/comm" 2> /dev/null
}

pids=()
names=()
signal_pid_file() { # $1: pid file, $2: command name prefix; sends SIGTERM and remembers the PID
    local pid
    [ -s "$1" ] || return 0
    pid=$(tr -dc '0-9' < "$1")
    pid_alive "$pid" "$2" || return 0
    kill -TERM "$pid" 2> /dev/null && pids+=("$pid") && names+=("$2")
}

# jobs first, while the controller still runs: scancel every job of this cluster and wait for them to go
if [ -f "$dir/slurm.conf" ] && [ -s "$dir/slurmctld.pid" ] &&
    pid_alive "$(tr -dc '0-9' < "$dir/slurmctld.pid")" slurmctld; then
    export SLURM_CONF="$dir/slurm.conf"
    jobs=$(squeue -h -o %i 2> /dev/null)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086 # one argument per job id
        scancel $jobs 2> /dev/null
        for _ in $(seq 1 100); do
            [ -z "$(squeue -h -t running,completing -o %i 2> /dev/null)" ] && break
            sleep 0.1
        done
    fi
fi

# with the jobs gone the daemons can stop together
signal_pid_file "$dir/slurmd.pid" slurmd
signal_pid_file "$dir/slurmctld.pid" slurmctld
signal_pid_file "$dir/munge/run/munged.pid" munged
for _ in $(seq 1 100); do
    alive=0
    for k in "${!pids[@]}"; do pid_alive "${pids[$k]}" "${names[$k]}" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
for k in "${!pids[@]}"; do
    if pid_alive "${pids[$k]}" "${names[$k]}"; then
        echo "stop_cluster: ${names[$k]} (pid ${pids[$k]}) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "${pids[$k]}" 2> /dev/null
    fi
done
exit 0
