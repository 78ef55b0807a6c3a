#!/usr/bin/env bash
# e2e_kill_stress: SIGKILL at random moments, then --resume auto, over many short trainings.
#
#   bash tests/e2e_kill_stress.sh <decouple> <source dir> <build dir> [runs]     (exit 0 pass, 77 skip)
#
# Runs (default $DC_STRESS_RUNS or 6; the closing note of issue 6 reports 30) short trainings of ResNet-8 on
# 1024 real Fashion-MNIST images, 24 steps with a checkpoint after every step (so that many kills land in a write). Each run is killed with SIGKILL
# after a random delay, resumed with --resume auto, killed again at random, ... until it finishes (at most 8
# kills). After every kill the test records the newest checkpoint that has its DONE marker; the resumed
# process must
#   - continue from exactly that step: never lose more than the work since the last complete checkpoint,
#     never take a checkpoint whose marker was not written (half-written files, leftover temp files);
#   - end with final weights bit-identical to an uninterrupted run, so no corrupt checkpoint was ever loaded.
# It counts the kills that landed while a checkpoint was being written (a temp file or a checkpoint without
# its DONE marker left behind), the interesting case.
set -u
DC=$1
SRC=$2
BUILD=$3
RUNS=${4:-${DC_STRESS_RUNS:-6}}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || {
    echo "SKIP: $DATA missing (apt-get install dataset-fashion-mnist)"
    exit 77
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ST_DIFF=$BUILD/st_diff
[ -x "$ST_DIFF" ] || ST_DIFF=$BUILD/tests/st_diff
fail() {
    echo "FAIL: $*"
    exit 1
}
# shellcheck source=tests/lib/fmnist_subset.sh
. "$SRC/tests/lib/fmnist_subset.sh"
fmnist_subset "$DATA" "$T/data" 1024 64 || fail "could not write the Fashion-MNIST subset"
CFG=$SRC/configs/fashion_mnist.yaml
STEPS=24
COMMON=(--quiet --threads 1 --set networks.feat_model.arch=resnet8 --set training_opt.batch_size=32
    --set training_opt.data_root="$T/data" --set training_opt.num_epochs=1 --set training_opt.display_step=0
    --set training_opt.checkpoint_every=1 --set training_opt.keep_checkpoints=2 --max-steps $STEPS)

start=$(date +%s.%N)
"$DC" train "$CFG" "${COMMON[@]}" --log-dir "$T/ref" > "$T/ref.out" 2>&1 || {
    cat "$T/ref.out"
    fail "the uninterrupted run"
}
ref_s=$(python3 -c "print($(date +%s.%N) - $start)")
echo "uninterrupted run: ${ref_s} s (start-up included)"
# kill delays uniform in [0, 1.3 x the run's length]: before the first checkpoint, during training, during
# checkpoint writes, and sometimes after the end (then the run is simply complete)
max_ms=$(python3 -c "print(int(1300 * $ref_s))")

newest_done() { # the step of the newest DONE marker in $1/checkpoints, 0 if none
    local d=$1/checkpoints best=0 f s
    for f in "$d"/DONE_*; do
        [ -e "$f" ] || continue
        s=$((10#${f##*DONE_}))
        [ "$s" -gt "$best" ] && best=$s
    done
    echo "$best"
}

kills=0 mid_write=0 resumes=0
for run in $(seq 1 "$RUNS"); do
    D=$T/run$run
    rm -rf "$D"
    k=0
    while :; do
        args=("${COMMON[@]}" --log-dir "$D")
        [ -d "$D" ] && args+=(--resume auto)
        expect=""
        if [ -d "$D/checkpoints" ] || [ -d "$D" ]; then expect=$(newest_done "$D"); fi
        n_before=$(grep -c "resume:" "$D/train.log" 2> /dev/null || true)
        out=$T/run$run.$k.out
        "$DC" train "$CFG" "${args[@]}" > "$out" 2>&1 &
        pid=$!
        delay=$((RANDOM * 32768 + RANDOM))
        delay=$((delay % max_ms))
        if [ "$k" -lt 8 ]; then
            sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
            kill -9 "$pid" 2> /dev/null && killed=1 || killed=0
        else
            killed=0
        fi
        wait "$pid" 2> /dev/null # (no "Killed" notice from the shell)
        rc=$?
        n_after=$(grep -c "resume:" "$D/train.log" 2> /dev/null || true)
        # a process killed before it decided where to resume from has nothing to check
        if [ -n "$expect" ] && [ "${n_after:-0}" -gt "${n_before:-0}" ]; then
            resumes=$((resumes + 1))
            # the newest resume line in the log is this process's (the log is appended to)
            last=$(grep -h "resume:" "$D/train.log" | tail -n 1)
            if [ "$expect" = 0 ]; then
                echo "$last" | grep -q "resume: no complete checkpoint" || {
                    echo "log says: $last"
                    fail "run $run: resumed although no checkpoint was complete"
                }
            else
                echo "$last" | grep -q "continuing from step $expect " || {
                    echo "expected step $expect; log says: $last"
                    fail "run $run: did not resume from the newest complete checkpoint"
                }
            fi
        fi
        if [ "$killed" = 1 ] && [ "$rc" != 0 ]; then
            kills=$((kills + 1))
            k=$((k + 1))
            # a checkpoint caught mid-write: a temp file, or model/state files without their DONE marker
            partial=0
            ls "$D"/checkpoints/*.tmp.* > /dev/null 2>&1 && partial=1
            for f in "$D"/checkpoints/model_*.safetensors; do
                [ -e "$f" ] || continue
                s=${f##*model_}
                s=${s%.safetensors}
                [ -e "$D/checkpoints/DONE_$s" ] || partial=1
            done
            mid_write=$((mid_write + partial))
            continue
        fi
        [ "$rc" = 0 ] || {
            cat "$out"
            fail "run $run: decouple exited with $rc"
        }
        break
    done
    "$ST_DIFF" "$T/ref/final.safetensors" "$D/final.safetensors" > /dev/null ||
        fail "run $run: the weights after $k kill(s) differ from the uninterrupted run"
    echo "run $run: $k kill(s), final weights bit-identical"
    rm -rf "$D"
done
echo "e2e_kill_stress: $RUNS runs, $kills SIGKILLs ($mid_write during a checkpoint write), $resumes resumes," \
    "every resume from the newest complete checkpoint, every final model bit-identical"
