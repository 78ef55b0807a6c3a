#!/usr/bin/env bash
# e2e_slurm.sh: the shipped sbatch scripts (jobs/slurm/) on a throw-away single-node Slurm cluster.
#
#   bash tests/e2e_slurm.sh <decouple binary> <source dir> <build dir>      (exit 0 pass, 77 skip, else fail)
#
# 1. Training: train_srun.sbatch (srun --mpi=pmix) and train_mpirun.sbatch (mpirun inside the allocation)
#    are submitted with `sbatch --wait` for 2 ranks x 1 thread and 4 steps of Fashion-MNIST. Each must exit
#    0, its start-up table must list 2 ranks with 1 OpenMP thread each, each rank bound to one core and
#    the two to different cores (the scripts' binding), and it must print and write final.safetensors. The
#    data is the first 1024 training and 256 test images of the Debian package, written as IDX files, so
#    that the test-split evaluation takes a fraction of a second.
# 2. Signals and requeue, with a stand-in for decouple (a script that waits for SIGUSR1 and exits with code
#    3, as decouple does after its checkpoint, and exits 0 once requeued): the time-limit warning is sent
#    the way each script's #SBATCH --signal sends it: `scancel -s USR1` reaches the srun tasks directly
#    (--signal=USR1@120), `scancel -b -s USR1` only the batch shell (--signal=B:USR1@120), which must
#    forward it through mpirun. Both ranks must get it, the script must requeue the job, and the restart
#    must pass --resume auto and exit 0 while the same `sbatch --wait` waits, appending to the same output.
# 3. The pipeline scripts start `decouple run CONFIG --resume auto` on 2 ranks (the stand-in records it).
#
# Skips (77) when slurm-wlm or munge is missing (.ci/install_extra.sh installs them), when not root (the
# daemons run as root), with fewer than 2 CPUs, or without /usr/share/datasets/fashion-mnist.
# DC_KEEP_TMP=1 keeps the temporary directory (job outputs, daemon logs).
set -euo pipefail

[ $# -eq 3 ] || {
    echo "usage: $0 <decouple binary> <source dir> <build dir>" >&2
    exit 2
}
bin=$(realpath "$1")
src=$(realpath "$2")
t_start=$(date +%s)

skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
for tool in sbatch srun squeue scancel scontrol sinfo slurmctld slurmd munged munge; do
    command -v "$tool" > /dev/null || skip "$tool is not installed (.ci/install_extra.sh installs it)"
done
[ "$(id -u)" = 0 ] || skip "the test cluster's daemons run as root"
[ "$(nproc)" -ge 2 ] || skip "2 CPUs needed for 2 ranks, found $(nproc)"
fmnist=/usr/share/datasets/fashion-mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -r "$fmnist/$f.gz" ] || skip "$fmnist/$f.gz not found (apt-get install dataset-fashion-mnist)"
done
[ -x "$bin" ] || fail "$bin is not an executable"

work=$(mktemp -d "${TMPDIR:-/tmp}/decouple-e2e-slurm.XXXXXX")
chmod 755 "$work" # munged wants every directory above its socket to be traversable by all
submitters=()     # PIDs of the background `sbatch --wait` processes
cleanup() {
    local rc=$?
    bash "$src/tests/slurm/stop_cluster.sh" "$work/cluster"
    # an `sbatch --wait` whose controller is gone would retry forever
    for p in "${submitters[@]}"; do kill "$p" 2> /dev/null || true; done
    if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -d "$work/cluster/log" ]; then
        echo "--- last lines of the daemon logs"
        tail -n 15 "$work"/cluster/log/*.log || true
    fi
    if [ -n "${DC_KEEP_TMP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a 1024/256-image Fashion-MNIST in IDX format ----------------------------------------------------------
# shellcheck source=tests/lib/fmnist_subset.sh
. "$src/tests/lib/fmnist_subset.sh"
fmnist_subset "$fmnist" "$work/data" 1024 256 || fail "could not write the Fashion-MNIST subset"

# --- the cluster --------------------------------------------------------------------------------------------
bash "$src/tests/slurm/start_cluster.sh" "$work/cluster" > /dev/null || fail "the test cluster did not start"
export SLURM_CONF="$work/cluster/slurm.conf"
echo "cluster up after $(($(date +%s) - t_start)) s: $(sinfo -h -o '%P %D node %c CPUs %T')"

# sbatch passes this environment on (--export=ALL): the scripts read DECOUPLE, CONFIG, EXTRA_ARGS, ...
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export CONFIG="$src/configs/fashion_mnist.yaml"
sb_opts=(--wait --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 --chdir="$work")

declare -A submitter # job name -> PID of its `sbatch --wait`
submit() {           # NAME SCRIPT [VAR=value...]: `sbatch --wait` in the background
    local name=$1 script=$2
    shift 2
    env "$@" sbatch "${sb_opts[@]}" --job-name="$name" --output="$work/$name.out" "$src/jobs/slurm/$script" \
        > "$work/$name.sbatch" 2>&1 &
    submitter[$name]=$!
    submitters+=($!)
}
wait_for() { # FILE WHAT: at most 60 s
    for _ in $(seq 1 600); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    tail -n 30 "$work"/*.out >&2 || true
    fail "timed out waiting for $2"
}

# --- 1. signals and requeue, with a stand-in for decouple ------------------------------------------------
cat > "$work/fake_decouple.sh" << 'EOF'
#!/bin/bash
# stands in for decouple: waits for SIGUSR1, exits 3 (checkpoint written); once requeued, exits 0
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-x}}
restart=${SLURM_RESTART_COUNT:-0}
rec="$FAKE_DIR/$FAKE_TAG.rank$rank.restart$restart"
echo "$*" > "$rec.args"
if [ "$restart" != 0 ] || [ -n "${FAKE_JUST_RECORD:-}" ]; then
    echo "fake decouple rank $rank (restart $restart): exiting 0"
    exit 0
fi
trap 'echo "fake decouple rank $rank: got SIGUSR1"; touch "$rec.usr1"; exit 3' USR1
echo "$SLURM_JOB_ID" > "$rec.ready"
for _ in $(seq 1 600); do sleep 0.1; done
echo "fake decouple rank $rank: no SIGUSR1 within 60 s"
exit 1
EOF
chmod +x "$work/fake_decouple.sh"
mkdir -p "$work/fake"
fake_env=(DECOUPLE="$work/fake_decouple.sh" FAKE_DIR="$work/fake" EXTRA_ARGS="--max-steps 1")
# One stand-in job at a time: each takes both CPUs of the node until its signal, so a second one submitted
# beside it may be scheduled first and leave the one waited for pending (CI saw that order).
submit sig_srun train_srun.sbatch "${fake_env[@]}" FAKE_TAG=srun
wait_for "$work/fake/srun.rank0.restart0.ready" "rank 0 of the srun stand-in job"
wait_for "$work/fake/srun.rank1.restart0.ready" "rank 1 of the srun stand-in job"
scancel -s USR1 "$(cat "$work/fake/srun.rank0.restart0.ready")"
# KILL_GRACE=1: mpirun takes about 2 x KILL_GRACE to exit after a rank exits non-zero
submit sig_mpirun train_mpirun.sbatch "${fake_env[@]}" FAKE_TAG=mpirun KILL_GRACE=1
wait_for "$work/fake/mpirun.rank0.restart0.ready" "rank 0 of the mpirun stand-in job"
wait_for "$work/fake/mpirun.rank1.restart0.ready" "rank 1 of the mpirun stand-in job"
scancel -b -s USR1 "$(cat "$work/fake/mpirun.rank0.restart0.ready")"

# --- 2. training, while the stand-ins wait to be restarted ---------------------------------------------
train_args="--set training_opt.data_root=$work/data --set training_opt.batch_size=32"
train_args+=" --set training_opt.num_epochs=1 --set training_opt.display_step=2 --max-steps 4"
submit train_srun train_srun.sbatch DECOUPLE="$bin" EXTRA_ARGS="$train_args" LOG_DIR="$work/run_srun"
submit train_mpirun train_mpirun.sbatch DECOUPLE="$bin" EXTRA_ARGS="$train_args" LOG_DIR="$work/run_mpirun"

# --- 3. the pipeline scripts, with the stand-in ---------------------------------------------------------
submit pipe_srun pipeline_srun.sbatch "${fake_env[@]}" FAKE_TAG=pipe_srun FAKE_JUST_RECORD=1
submit pipe_mpirun pipeline_mpirun.sbatch "${fake_env[@]}" FAKE_TAG=pipe_mpirun FAKE_JUST_RECORD=1
declare -A rc
for name in "${!submitter[@]}"; do
    rc[$name]=0
    wait "${submitter[$name]}" || rc[$name]=$?
done
echo "all jobs done after $(($(date +%s) - t_start)) s"

# --- checks -------------------------------------------------------------------------------------------------
failures=0
check() { # WHAT COMMAND...
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}
has() { grep -q -E -- "$2" "$work/$1.out"; }
show() { # the job's output, indented
    echo "=== $1: $(head -n 1 "$work/$1.sbatch")"
    sed 's/^/    | /' "$work/$1.out"
}

for v in srun mpirun; do
    job=train_$v
    show "$job"
    check "$job: sbatch --wait exits 0" test "${rc[$job]}" = 0
    check "$job: the script prints the $v command it runs" has "$job" "^\+ .*$v .* train .*--resume auto"
    check "$job: the start-up table lists 2 ranks" has "$job" "^decouple .*: 2 rank\(s\)$"
    # table rows: rank, host, omp, blas, blas-kernel, binding ("1 cores (3-3)")
    rows=$(grep -E '^ +[0-9]+ +[^ ]+ +[0-9]+ +[0-9]+ ' "$work/$job.out" || true)
    check "$job: rows for ranks 0 and 1" test "$(echo "$rows" | awk '{print $1}' | sort -n | xargs)" = "0 1"
    check "$job: 1 OpenMP thread per rank (from --cpus-per-task)" \
        test "$(echo "$rows" | awk '$3 == 1' | wc -l)" = 2
    check "$job: each rank bound to 1 core" test "$(echo "$rows" | grep -c ' 1 cores (')" = 2
    check "$job: the ranks' cores differ" test "$(echo "$rows" | grep -o '([0-9-]*)' | sort -u | wc -l)" = 2
    check "$job: prints the final weights line" has "$job" "^wrote $work/run_$v/final.safetensors$"
    check "$job: final.safetensors exists" test -s "$work/run_$v/final.safetensors"
    check "$job: the script reports exit code 0" has "$job" "decouple train exited with code 0$"
done

for v in srun mpirun; do
    job=sig_$v
    show "$job"
    check "$job: sbatch --wait exits 0 after the requeue" test "${rc[$job]}" = 0
    for r in 0 1; do
        check "$job: rank $r got SIGUSR1" test -e "$work/fake/$v.rank$r.restart0.usr1"
        check "$job: rank $r restarted with --resume auto" \
            grep -q -- "--resume auto --max-steps 1" "$work/fake/$v.rank$r.restart1.args"
    done
    check "$job: the script saw exit code 3 and requeued" has "$job" "requeueing job [0-9]+ \(restart 1 "
    check "$job: the requeued run appended to the same output" has "$job" "^=== .* \(restart 1\) on "
    check "$job: the restarted run exited 0" has "$job" "decouple train exited with code 0$"
done
check "sig_mpirun: the batch shell forwarded SIGUSR1 to mpirun" \
    has sig_mpirun "got SIGUSR1; forwarding it to mpirun"

for v in srun mpirun; do
    job=pipe_$v
    show "$job"
    check "$job: sbatch --wait exits 0" test "${rc[$job]}" = 0
    for r in 0 1; do
        check "$job: rank $r ran \`decouple run CONFIG --resume auto\`" \
            grep -q -- "^run $CONFIG --resume auto" "$work/fake/pipe_$v.rank$r.restart0.args"
    done
done

echo "e2e_slurm: $failures failure(s), $(($(date +%s) - t_start)) s"
[ "$failures" = 0 ]
