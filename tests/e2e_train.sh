#!/usr/bin/env bash
# e2e_train: the decouple binary end to end on real data (Fashion-MNIST from Debian's dataset-fashion-mnist).
#
#   1. determinism: two identical runs give bit-identical final weights;
#   2. resume: a run stopped after 6 steps (checkpoint every 3) and resumed with --resume auto ends with the
#      same weights, bit for bit, as the uninterrupted 12-step run;
#   3. SIGKILL: a run killed while training, then resumed, ends bit-identical too, and never loads a
#      half-written checkpoint;
#   4. SIGTERM: a run gets SIGTERM, writes a checkpoint and exits with status 3;
#   5. log_dir safety: reusing a log_dir without --resume/--overwrite is refused;
#   6. extract writes .npy files whose logits agree with the weights.
# Usage: e2e_train.sh <decouple> <source dir> <build dir>     exit 77 = skipped
set -u
DC=$1; SRC=$2; BUILD=$3
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "SKIP: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ST_DIFF=$BUILD/st_diff; [ -x "$ST_DIFF" ] || ST_DIFF=$BUILD/tests/st_diff
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=tests/lib/fmnist_subset.sh
. "$SRC/tests/lib/fmnist_subset.sh"
# A slice of the real data (20000 training, 2000 test images): every run ends with an evaluation on the test
# split, which on all 10000 test images took most of each 12-step run's time.
fmnist_subset "$DATA" "$T/slice" 20000 2000 || fail "could not write the Fashion-MNIST subset"
COMMON=(--quiet --threads 2 --set networks.feat_model.arch=resnet8 --set training_opt.batch_size=32
        --set training_opt.data_root="$T/slice"
        --set training_opt.num_epochs=1 --set training_opt.display_step=0 --set training_opt.checkpoint_every=3
        --set training_opt.imb_type=exp --set training_opt.imb_factor=100)
CFG=$SRC/configs/fashion_mnist.yaml

echo "== determinism"
"$DC" train "$CFG" "${COMMON[@]}" --max-steps 12 --log-dir "$T/a" > "$T/a.out" 2>&1 || { cat "$T/a.out"; fail "run a"; }
"$DC" train "$CFG" "${COMMON[@]}" --max-steps 12 --log-dir "$T/b" > "$T/b.out" 2>&1 || { cat "$T/b.out"; fail "run b"; }
"$ST_DIFF" "$T/a/final.safetensors" "$T/b/final.safetensors" || fail "two identical runs differ"

echo "== resume after a clean stop"
"$DC" train "$CFG" "${COMMON[@]}" --max-steps 6 --log-dir "$T/c" > "$T/c1.out" 2>&1 || { cat "$T/c1.out"; fail "run c part 1"; }
"$DC" train "$CFG" "${COMMON[@]}" --max-steps 12 --log-dir "$T/c" --resume auto > "$T/c2.out" 2>&1 || { cat "$T/c2.out"; fail "run c part 2"; }
grep -q "continuing from step 6" "$T/c/train.log" || { cat "$T/c/train.log"; fail "did not resume from step 6"; }
"$ST_DIFF" "$T/a/final.safetensors" "$T/c/final.safetensors" || fail "resumed run differs from the straight run"

echo "== SIGKILL while training, then resume"
for attempt in 1 2 3; do
  rm -rf "$T/d"
  "$DC" train "$CFG" "${COMMON[@]}" --max-steps 12 --log-dir "$T/d" > "$T/d1.out" 2>&1 &
  pid=$!
  # wait for the first checkpoint, then kill at a step that is not a checkpoint boundary
  for _ in $(seq 1 600); do [ -e "$T/d/checkpoints/DONE_00000003" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  sleep 0.0$((RANDOM % 9))
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ -e "$T/d/final.safetensors" ] && continue   # finished before the kill: try again
  "$DC" train "$CFG" "${COMMON[@]}" --max-steps 12 --log-dir "$T/d" --resume auto > "$T/d2.out" 2>&1 || { cat "$T/d2.out"; fail "resume after SIGKILL"; }
  "$ST_DIFF" "$T/a/final.safetensors" "$T/d/final.safetensors" || fail "run resumed after SIGKILL differs"
  grep -h "resume:" "$T/d/train.log" | head -2
  break
done

echo "== SIGTERM writes a checkpoint and exits with 3"
rm -rf "$T/e"
"$DC" train "$CFG" "${COMMON[@]}" --set training_opt.checkpoint_every=1000 --log-dir "$T/e" > "$T/e.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "training resnet8" "$T/e/train.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.3
kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 3 ] || { cat "$T/e.out"; fail "SIGTERM exit status $rc, expected 3"; }
ls "$T/e/checkpoints"/DONE_* > /dev/null 2>&1 || fail "no checkpoint after SIGTERM"

echo "== an existing log_dir is not reused silently"
if "$DC" train "$CFG" "${COMMON[@]}" --max-steps 1 --log-dir "$T/a" > "$T/f.out" 2>&1; then fail "reused a log_dir"; fi
grep -q "already holds a run" "$T/f.out" || { cat "$T/f.out"; fail "no clear message for an existing log_dir"; }

echo "== extract"
"$DC" extract "$CFG" "${COMMON[@]}" --weights "$T/a/final.safetensors" --split test --out "$T/feat" > "$T/g.out" 2>&1 || { cat "$T/g.out"; fail "extract"; }
for f in test_features test_logits test_labels; do [ -s "$T/feat/$f.npy" ] || fail "missing $f.npy"; done
echo "PASS"
