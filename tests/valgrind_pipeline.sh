#!/usr/bin/env bash
# valgrind_pipeline.sh: a short `decouple run` (stage 1, extraction, every head, evaluation) under valgrind
# memcheck, on 512 + 128 real Fashion-MNIST-LT images: no invalid read or write, no use of uninitialised
# values, and no leak that grows with the number of steps (the definitely/indirectly lost blocks of a 4-step and
# an 8-step run must be equal, their bytes within 64: Open MPI's exit leftovers hold strings of varying length).
#
#   bash tests/valgrind_pipeline.sh build/decouple       (about 25 minutes per run here, two runs; not part of CTest)
set -u
DC=$(realpath "$1"); SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind > /dev/null || { echo "valgrind missing"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRC/tests/lib/fmnist_subset.sh"
fmnist_subset /usr/share/datasets/fashion-mnist "$T/data" 512 128 || { echo "no Fashion-MNIST"; exit 77; }
ARGS=(--threads 1 --quiet --set training_opt.data_root="$T/data" --set networks.feat_model.arch=resnet8
      --set training_opt.batch_size=32 --set training_opt.imb_type=none --set training_opt.val_per_class=0
      --set stage2.crt_train.num_epochs=1 --set stage2.lws_train.num_epochs=1 --set training_opt.num_epochs=1)
status=0
for steps in 4 8; do
  OMP_NUM_THREADS=1 valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=none --track-origins=yes --log-file="$T/vg$steps.txt" \
    "$DC" run "$SRC/configs/fashion_mnist.yaml" "${ARGS[@]}" --max-steps $steps --log-dir "$T/run$steps" > "$T/out$steps.txt" 2>&1
  rc=$?
  summary=$(sed 's/==[0-9]*== *//' "$T/vg$steps.txt" | grep -E "^(ERROR SUMMARY|definitely lost:|indirectly lost:)")
  echo "== $steps steps (exit $rc)"; echo "$summary"
  [ $rc -eq 0 ] || { status=1; grep -A12 "Invalid\|uninitialised" "$T/vg$steps.txt" | head -60; }
  lost[$steps]=$(sed 's/==[0-9]*== *//' "$T/vg$steps.txt" | grep -E "^(definitely|indirectly) lost:" | awk '{gsub(",","",$3); s+=$3} END {print s+0}')
  blocks[$steps]=$(sed 's/==[0-9]*== *//' "$T/vg$steps.txt" | grep -E "^(definitely|indirectly) lost:" | awk '{gsub(",","",$6); s+=$6} END {print s+0}')
  # leaks whose allocation stack passes through decouple's own functions (dc_*), as opposed to MPI/OpenMP
  ours=$(grep -c "by 0x[0-9A-F]*: dc_" "$T/vg$steps.txt" || true)
  echo "loss-record frames in decouple code: $ours"
  cp "$T/vg$steps.txt" "${VG_KEEP:-/tmp}/valgrind_pipeline_$steps.txt" 2>/dev/null
done
# A leak per step adds blocks with the steps. What Open MPI leaves at exit (all of it under MPI_Init: strings
# holding paths, PIDs and job ids) may differ by a few bytes between two runs, never by blocks.
if [ "${blocks[4]}" != "${blocks[8]}" ] || [ $(( ${lost[8]} - ${lost[4]} )) -gt 64 ]; then
  echo "leak grows with steps: ${lost[4]} bytes in ${blocks[4]} blocks (4 steps) vs ${lost[8]} in ${blocks[8]} (8 steps)"; status=1
fi
[ $status -eq 0 ] && echo "PASS: no memcheck errors; lost ${lost[4]} bytes in ${blocks[4]} blocks (4 steps), ${lost[8]} bytes in ${blocks[8]} blocks (8 steps)"
exit $status
