#!/usr/bin/env bash
# run_bench_train.sh: decouple against PyTorch 1.13 on the same cores, interleaved, with ratios.
#
#   bash bench/run_bench_train.sh [build dir] [rounds] [engine ...]
#
# For each configuration (ResNet-32 training at batch 128 and inference at batch 256 on 32x32x3, on 1 and on
# 2 threads; ResNet-50 at 224x224, batch 32, fewer steps) the two programs run alternately `rounds` times
# (default 3); the table prints the median img/s of each and the ratio decouple / PyTorch, and the peak RSS of
# each process (/usr/bin/time -v, or /proc when missing). With engines named (DC_CONV_ALGO values: auto,
# winograd, direct, im2col; default auto), decouple runs once per engine in every round, one row each, so
# the engines and PyTorch are compared within the same rounds. ONLY=regex runs only the benchmarks whose name
# matches, e.g. ONLY='resnet32 train'.
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this benchmark (they pin OpenBLAS to its Haswell
# kernels on the development VMs); the OpenBLAS kernel that ran is printed. PyTorch uses oneDNN.
set -u
BUILD=${1:-build}
ROUNDS=${2:-3}
shift $(($# < 2 ? $# : 2))
ALGOS=("$@"); [ ${#ALGOS[@]} -gt 0 ] || ALGOS=(auto)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
HERE=$(cd "$(dirname "$0")" && pwd)
DEC=$BUILD/bench/bench_train
[ -x "$DEC" ] || { echo "build $DEC first (cmake --build $BUILD --target bench_train)"; exit 1; }
TIME=/usr/bin/time; [ -x $TIME ] || TIME=""

run() { # label, command...: prints "img_s rss_kb"
  local out rss
  if [ -n "$TIME" ]; then
    out=$($TIME -v "$@" 2>/tmp/bench_time.$$)
    rss=$(grep "Maximum resident" /tmp/bench_time.$$ | awk '{print $6}')
  else
    out=$("$@"); rss=0
  fi
  [ -n "${SHOW_KERNEL:-}" ] && echo "$out" | grep '^# OpenBLAS' | head -1 >&2
  echo "$(echo "$out" | grep '^RESULT' | sed 's/.*img_s=\([0-9.]*\).*/\1/') $rss"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf "%-42s %12s %12s %7s %10s %10s\n" "benchmark" "decouple" "pytorch" "ratio" "RSS dec" "RSS torch"
bench() { # name, decouple args, torch args
  local name=$1 dargs=$2 targs=$3 t=() tr=() a v rss show
  [[ -n ${ONLY:-} && ! $name =~ $ONLY ]] && return
  declare -A d dr
  for r in $(seq 1 "$ROUNDS"); do
    for a in "${ALGOS[@]}"; do
      show=; [ "$r" = 1 ] && [ "$a" = "${ALGOS[0]}" ] && show=1 # the OpenBLAS kernel, once per benchmark
      read -r v rss < <(SHOW_KERNEL=$show DC_CONV_ALGO=$a run "$DEC" $dargs); d[$a]+="$v "; dr[$a]+="$rss "
    done
    read -r v rss < <(run /usr/bin/python3 "$HERE/bench_torch.py" $targs); t+=("$v"); tr+=("$rss")
  done
  local dm tm drm trm label
  tm=$(printf "%s\n" "${t[@]}" | median); trm=$(printf "%s\n" "${tr[@]}" | median)
  for a in "${ALGOS[@]}"; do
    dm=$(printf "%s\n" ${d[$a]} | median); drm=$(printf "%s\n" ${dr[$a]} | median)
    label=$name; [ ${#ALGOS[@]} -gt 1 ] && label="$name $a"
    printf "%-42s %12.1f %12.1f %7.2f %8.0fMB %8.0fMB\n" "$label" "$dm" "$tm" "$(echo "$dm / $tm" | bc -l)" "$(echo "$drm/1024" | bc -l)" "$(echo "$trm/1024" | bc -l)"
  done
}
for T in 1 2; do
  bench "resnet32 train b128 ${T}t (img/s)" "--arch resnet32 --batch 128 --threads $T --mode train --steps 10" "--arch resnet32 --batch 128 --threads $T --mode train --steps 10"
  bench "resnet32 infer b256 ${T}t (img/s)" "--arch resnet32 --infer-batch 256 --threads $T --mode infer --steps 10" "--arch resnet32 --infer-batch 256 --threads $T --mode infer --steps 10"
done
bench "resnet50 224 train b32 2t (img/s)" "--arch resnet50 --size 224 --batch 32 --classes 1000 --threads 2 --mode train --steps 3" "--arch resnet50 --size 224 --batch 32 --classes 1000 --threads 2 --mode train --steps 3"
