#!/usr/bin/env bash
# e2e_mpi: decouple on several MPI ranks (mpirun on this machine), on real data (Fashion-MNIST-LT).
#
#   1. world-size invariance: with sync-BN and the same seed and global batch, 20 steps on 1 rank and on
#      2 ranks give weights that agree to relative error 1e-4 (only the reduction order differs). The 20 steps
#      fine-tune a briefly pre-trained model: the first steps from a random initialisation are chaotic, and
#      there even 1 vs 2 OpenMP threads on ONE rank (a different summation order in the GEMMs) drift apart by
#      1e-2 within 20 steps; near a trained state rounding differences stay at their own size.
#   2. determinism: two 2-rank runs give bit-identical weights;
#   3. resume on 2 ranks after SIGKILL is bit-identical to the uninterrupted 2-rank run;
#   4. sharded evaluation: the heads' test metrics are identical on 1, 2 and 3 ranks, and every rank holds
#      bit-identical heads after the broadcast;
#   5. stage2.distributed: cRT and LWS trained over 2 ranks' shards equal the rank-0 gather's to rounding;
#   6. failure: when rank 1 fails mid-epoch, the 2-rank job ends within 10 s, non-zero, naming the rank and
#      the cause;
#   7. DC_CHECK_COLLECTIVES: a collective reached by one rank only aborts the job with both call sites.
# Usage: e2e_mpi.sh <decouple> <source dir> <build dir>     exit 77 = skipped
set -u
DC=$1; SRC=$2; BUILD=$3
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "SKIP: $DATA missing"; exit 77; }
command -v mpirun > /dev/null || { echo "SKIP: mpirun missing (apt-get install openmpi-bin)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --bind-to none -x OMP_NUM_THREADS=1)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ST_DIFF=$BUILD/st_diff; [ -x "$ST_DIFF" ] || ST_DIFF=$BUILD/tests/st_diff
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=tests/lib/fmnist_subset.sh
. "$SRC/tests/lib/fmnist_subset.sh"
# Test splits of 2000 images, so that no run spends its time on the final evaluation (on all 10000 test
# images, under AddressSanitizer, that took most of the test's time): the training runs read all 60000
# training images and the first 2000 test images ($T/full_train: the world-size check's margin depends on the
# state the pre-training reaches, 7e-7 after the full set against 2e-5 after a slice); the stage-2 runs
# (sections 4 and 5), whose feature extraction covers the training split too, read a slice of 20000 training
# images (about 5000 in the r = 100 subset) and the same 2000 test images ($T/slice).
fmnist_subset "$DATA" "$T/slice" 20000 2000 || fail "could not write the Fashion-MNIST subset"
mkdir -p "$T/full_train" &&
  ln -s "$DATA/train-images-idx3-ubyte.gz" "$DATA/train-labels-idx1-ubyte.gz" "$T/full_train/" &&
  ln -s "$T/slice/t10k-images-idx3-ubyte" "$T/slice/t10k-labels-idx1-ubyte" "$T/full_train/" || fail "could not link the data"
CFG=$SRC/configs/fashion_mnist.yaml
BASE=(--quiet --set networks.feat_model.arch=resnet8 --set training_opt.batch_size=48 --set training_opt.data_root="$T/full_train"
      --set training_opt.num_epochs=1 --set training_opt.display_step=0
      --set training_opt.imb_type=exp --set training_opt.imb_factor=100)
echo "== pre-training 100 steps on 1 rank"
"$DC" train "$CFG" "${BASE[@]}" --threads 2 --max-steps 100 --log-dir "$T/pre" > "$T/pre.out" 2>&1 || { cat "$T/pre.out"; fail "pre-training"; }
COMMON=("${BASE[@]}" --threads 1 --set training_opt.checkpoint_every=5 --set sync_bn=true
        --set init_weights="$T/pre/final.safetensors"
        --set networks.feat_model.optim_params.lr=0.05 --set networks.classifier.optim_params.lr=0.05)

echo "== 1 rank vs 2 ranks, sync-BN, 20 steps"
"${MPIRUN[@]}" -np 1 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/r1" > "$T/r1.out" 2>&1 || { cat "$T/r1.out"; fail "1-rank run"; }
"${MPIRUN[@]}" -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/r2" > "$T/r2.out" 2>&1 || { cat "$T/r2.out"; fail "2-rank run"; }
"$ST_DIFF" "$T/r1/final.safetensors" "$T/r2/final.safetensors" --gtol 1e-4 || fail "1 vs 2 ranks differ beyond 1e-4"

echo "== 2-rank determinism"
"${MPIRUN[@]}" -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/r2b" > "$T/r2b.out" 2>&1 || { cat "$T/r2b.out"; fail "2-rank rerun"; }
"$ST_DIFF" "$T/r2/final.safetensors" "$T/r2b/final.safetensors" || fail "two 2-rank runs differ"

echo "== 2-rank SIGKILL + resume"
for attempt in 1 2 3; do
  rm -rf "$T/k"
  "${MPIRUN[@]}" -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/k" > "$T/k1.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do [ -e "$T/k/checkpoints/DONE_00000005" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  sleep 0.0$((RANDOM % 9))
  pkill -9 -f "decouple train.*$T/k" ; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  [ -e "$T/k/final.safetensors" ] && continue
  "${MPIRUN[@]}" -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/k" --resume auto > "$T/k2.out" 2>&1 || { cat "$T/k2.out"; fail "2-rank resume"; }
  "$ST_DIFF" "$T/r2/final.safetensors" "$T/k/final.safetensors" || fail "2-rank resume differs"
  grep -h "resume:" "$T/k/train.log" | head -1
  break
done

echo "== sharded evaluation on 1, 2, 3 ranks"
S2=(--set training_opt.data_root="$T/slice" --set stage2.crt=false --set stage2.lws=false --set training_opt.val_per_class=10 --set training_opt.batch_size=48)
for R in 1 2 3; do
  "${MPIRUN[@]}" -np $R "$DC" heads "$CFG" "${COMMON[@]}" "${S2[@]}" --weights "$T/r2/final.safetensors" --log-dir "$T/h$R" > "$T/h$R.out" 2>&1 || { cat "$T/h$R.out"; fail "heads on $R ranks"; }
done
# the per-head test numbers (everything under "heads") must be identical
for R in 2 3; do
  python3 - "$T/h1/results.json" "$T/h$R/results.json" <<'PY' || fail "results differ between 1 and $R ranks"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in a["heads"]:
    if a["heads"][k]["test"] != b["heads"][k]["test"] or a["heads"][k]["test_per_class"] != b["heads"][k]["test_per_class"]:
        print("head", k, "differs:", a["heads"][k]["test"], b["heads"][k]["test"]); sys.exit(1)
print("identical test metrics for", ", ".join(a["heads"]))
PY
done
grep -q "head bit-identical on all 3 ranks" "$T/h3/train.log" || { cat "$T/h3/train.log"; fail "no head consistency check on 3 ranks"; }

echo "== stage2.distributed: cRT and LWS trained on 2 ranks' shards match the rank-0 gather"
# Same features (eval transforms + eval BN), same class-balanced global batches: only the order in which
# the head gradients are summed differs (allreduce of two shard sums vs one sum), so the heads agree to
# rounding (1e-5 relative L2 after 2 epochs of SGD; 3e-7 and 1e-6 measured) and so do their test accuracies.
S2D=(--set training_opt.data_root="$T/slice" --set stage2.crt=true --set stage2.lws=true --set stage2.crt_train.num_epochs=2 --set stage2.lws_train.num_epochs=2
     --set training_opt.val_per_class=10 --set training_opt.batch_size=48)
"${MPIRUN[@]}" -np 1 "$DC" heads "$CFG" "${COMMON[@]}" "${S2D[@]}" --weights "$T/r2/final.safetensors" --log-dir "$T/g1" > "$T/g1.out" 2>&1 || { cat "$T/g1.out"; fail "gather-mode heads on 1 rank"; }
"${MPIRUN[@]}" -np 2 "$DC" heads "$CFG" "${COMMON[@]}" "${S2D[@]}" --set stage2.distributed=true --weights "$T/r2/final.safetensors" --log-dir "$T/d2" > "$T/d2.out" 2>&1 || { cat "$T/d2.out"; fail "distributed heads on 2 ranks"; }
grep -q "head bit-identical on all 2 ranks" "$T/d2/train.log" || { cat "$T/d2/train.log"; fail "no head consistency check on 2 ranks"; }
for h in crt lws; do
  "$ST_DIFF" "$T/g1/head_$h.safetensors" "$T/d2/head_$h.safetensors" --gtol 1e-5 || fail "distributed $h head differs from the gathered one"
done
python3 - "$T/g1/results.json" "$T/d2/results.json" <<'PY' || fail "distributed cRT/LWS accuracy differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("crt", "lws"):
    x, y = a["heads"][k]["test"]["top1"], b["heads"][k]["test"]["top1"]
    print(f"{k}: test top-1 gathered {x:.4f}, distributed {y:.4f}")
    if abs(x - y) > 0.002: sys.exit(1)
PY

echo "== rank 1 fails mid-epoch"
start=$(date +%s.%N)
DC_INJECT_FAULT=1:7 "${MPIRUN[@]}" -x DC_INJECT_FAULT -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 200 --log-dir "$T/f" > "$T/f.out" 2>&1
rc=$?
end=$(date +%s.%N)
secs=$(python3 -c "print(round($end - $start, 1))")
[ $rc -ne 0 ] || fail "the job with a failing rank exited 0"
grep -q "\[r01\] error: injected fault" "$T/f.out" || { cat "$T/f.out"; fail "no message naming rank 1 and the cause"; }
python3 -c "import sys; sys.exit(0 if $end - $start < 10 else 1)" || fail "the job took $secs s to end"
echo "failing rank: job ended in $secs s with status $rc"
echo "== DC_CHECK_COLLECTIVES: a collective that only rank 1 reaches"
# without the check this job would hang in the stray barrier (rank 0 waits in its next collective: with
# sync-BN, the first BN layer's statistics)
start=$(date +%s.%N)
DC_CHECK_COLLECTIVES=1 DC_INJECT_STRAY_COLLECTIVE=1:3 timeout 60 "${MPIRUN[@]}" -x DC_CHECK_COLLECTIVES -x DC_INJECT_STRAY_COLLECTIVE \
  -np 2 "$DC" train "$CFG" "${COMMON[@]}" --max-steps 20 --log-dir "$T/s" > "$T/s.out" 2>&1
rc=$?
end=$(date +%s.%N)
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat "$T/s.out"; fail "the stray collective was not caught (exit $rc)"; }
grep -q "rank 1: collective #[0-9]*, barrier at jobs/train.c:[0-9]*" "$T/s.out" &&
  grep -q "rank 0: collective #[0-9]*, .* at dist/[a-z_]*\.c:[0-9]*" "$T/s.out" ||
  { cat "$T/s.out"; fail "the mismatch message does not name both call sites"; }
echo "stray collective caught in $(python3 -c "print(round($end - $start, 1))") s:"
grep "rank [01]: collective" "$T/s.out" | head -2

echo "PASS"
