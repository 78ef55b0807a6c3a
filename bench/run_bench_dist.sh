#!/usr/bin/env bash
# run_bench_dist.sh: the cost of data parallelism on this machine, side by side in one run.
#
#   bash bench/run_bench_dist.sh [build dir] [rounds]
#
# 1. MPI_Allreduce latency and bandwidth on 2 ranks (4 B .. 64 MiB) and the alpha-beta fit.
# 2. ResNet-32, global batch 128: 1 rank x 2 threads and 2 ranks x 1 thread, alternated `rounds` times
#    (default 3). The table gives the median global img/s of each, the ratio 2x1 / 1x2, and for 2 ranks the
#    allreduce share of a step: the time blocked after backward with bucketed Iallreduce (the default), and,
#    with a barrier then one blocking MPI_Allreduce of the gradient slab, the wait for the slower rank and the
#    transfer itself.
# Binding: 2 ranks x 1 thread are bound one per core (--bind-to core), 1 rank x 2 threads is bound to both.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left as they are (decouple's convolutions are its own kernels;
# OpenBLAS only serves the GEMM-lowered layers). Run it on a quiet machine: a busy core stalls every
# OpenMP barrier and every shared-memory allreduce.
set -u
BUILD=${1:-build}
ROUNDS=${2:-3}
BIN=$BUILD/bench/bench_dist
[ -x "$BIN" ] || { echo "build $BIN first (cmake --build $BUILD --target bench_dist)"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun --oversubscribe"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; } # value of key=... in a RESULT line

echo "== MPI_Allreduce (float sum), 2 ranks, one per core"
$MPI -np 2 --bind-to core -x OMP_NUM_THREADS=1 "$BIN" --mode allreduce | grep '^RESULT' |
  awk '{for(i=2;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]}
        if ($2=="allreduce") printf "  %12.0f B  %10.2f us  %8.3f GB/s\n", v["bytes"], v["us"], v["GB_s"];
        else printf "  fit t = alpha + n*beta: alpha %.2f us, 1/beta %.2f GB/s\n", v["alpha_us"], v["bandwidth_GB_s"]}'

echo "== ResNet-32 training step, global batch 128, $ROUNDS alternating rounds"
one=() two=() blocked=() full=() single=() step2=() skew=()
for r in $(seq 1 "$ROUNDS"); do
  l1=$($MPI -np 1 --bind-to none -x OMP_NUM_THREADS=2 "$BIN" --mode step --threads 2 | grep '^RESULT step')
  l2=$($MPI -np 2 --bind-to core -x OMP_NUM_THREADS=1 "$BIN" --mode step --threads 1 | grep '^RESULT step')
  echo "  round $r: 1x2 $(echo "$l1" | field img_s) img/s, 2x1 $(echo "$l2" | field img_s) img/s"
  one+=("$(echo "$l1" | field img_s)"); two+=("$(echo "$l2" | field img_s)")
  step2+=("$(echo "$l2" | field ms_step)"); blocked+=("$(echo "$l2" | field ms_blocked)")
  single+=("$(echo "$l2" | field ms_step_single)"); full+=("$(echo "$l2" | field ms_allreduce_full)")
  skew+=("$(echo "$l2" | field ms_skew)")
  slab=$(echo "$l2" | field slab_mb)
done
m1=$(printf "%s\n" "${one[@]}" | median); m2=$(printf "%s\n" "${two[@]}" | median)
ms=$(printf "%s\n" "${step2[@]}" | median); mb=$(printf "%s\n" "${blocked[@]}" | median)
msi=$(printf "%s\n" "${single[@]}" | median); mf=$(printf "%s\n" "${full[@]}" | median)
mk=$(printf "%s\n" "${skew[@]}" | median)
printf "%-44s %10s\n" "configuration" "img/s"
printf "%-44s %10.1f\n" "1 rank x 2 threads" "$m1"
printf "%-44s %10.1f\n" "2 ranks x 1 thread (bucketed Iallreduce)" "$m2"
printf "%-44s %10.2f   (target >= 0.95)\n" "ratio 2x1 / 1x2" "$(echo "$m2 / $m1" | bc -l)"
printf "2 ranks: step %.2f ms, blocked in allreduce after backward %.2f ms (%.1f%%);\n" "$ms" "$mb" "$(echo "100 * $mb / $ms" | bc -l)"
printf "         barrier + one blocking allreduce of the %.2f MB slab, in a %.2f ms step: waiting for the\n" "$slab" "$msi"
printf "         slower rank %.2f ms (%.1f%%), the transfer %.2f ms (%.1f%%)\n" "$mk" "$(echo "100 * $mk / $msi" | bc -l)" "$mf" "$(echo "100 * $mf / $msi" | bc -l)"
