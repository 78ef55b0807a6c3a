#!/usr/bin/env bash
# run_bench_conv.sh: the convolution engine's algorithms side by side, per layer and pass.
#
#   bash bench/run_bench_conv.sh [build dir] [rounds] [threads] [algorithms...]
#
# Runs bench_conv once per algorithm (DC_CONV_ALGO=auto|winograd|direct|im2col, default: direct auto),
# alternating, `rounds` times (default 5); prints for every layer and algorithm the best time of each pass
# (forward, backward-weights, backward-data) over the rounds, its GFLOP/s (2 * MACs / time, the MACs of the
# direct convolution whatever the algorithm) and its share of the best 1024^3 sgemm rate seen in the same
# invocation, and the ratio of each algorithm's fwd+bwd time to the first one's. The best of alternating
# rounds is used because this VM's speed drifts by 10-30% over minutes; both algorithms see the same drift.
#
# ONLY=S benchmarks only the layers whose name contains S (e.g. ONLY=s2).
#
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are UNSET for this benchmark (the OpenBLAS kernel it picks, Zen here,
# is printed), like run_bench_train.sh.
set -u
BUILD=${1:-build}
ROUNDS=${2:-5}
THREADS=${3:-1}
shift $(( $# < 3 ? $# : 3 ))
ALGOS=("$@")
[ ${#ALGOS[@]} -gt 0 ] || ALGOS=(direct auto)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
BIN=$BUILD/bench/bench_conv
[ -x "$BIN" ] || { echo "build $BIN first (cmake --build $BUILD --target bench_conv)"; exit 1; }
for r in $(seq 1 "$ROUNDS"); do
  for a in "${ALGOS[@]}"; do
    DC_CONV_ALGO=$a OMP_NUM_THREADS=$THREADS "$BIN" --reps 3 ${ONLY:+--only "$ONLY"} | sed "s/^/$a|/"
  done
done | python3 -c '
import sys
algos = sys.argv[1].split(",")
best, paths, gflops, sgemm, core = {}, {}, {}, 0.0, ""
for line in sys.stdin:
    algo, text = line.rstrip("\n").split("|", 1)
    if text.startswith("OpenBLAS core:"): core = text.split("|")[0].split(":")[1].strip()
    if text.startswith("sgemm 1024^3:"): sgemm = max(sgemm, float(text.split()[2]))
    if not (text.startswith("r32 ") or text.startswith("r50 ")): continue
    cols = text.split("|")
    head = cols[0].split()
    name, path, gflop = " ".join(head[:-2]), head[-2], float(head[-1])
    times = [float(cols[i].split()[0]) for i in (1, 2, 3)]
    key = (name, algo)
    best[key] = [min(a, b) for a, b in zip(best.get(key, times), times)]
    paths[key], gflops[name] = path, gflop
print("OpenBLAS kernel %s, %s thread(s), best sgemm 1024^3 %.1f GFLOP/s; best of %s rounds per pass" % (core, sys.argv[2], sgemm, sys.argv[3]))
print("%-26s %-16s | %-19s | %-19s | %-19s | %8s %6s" % ("layer", "path", "fwd ms  GF/s  sgemm", "bwd-w ms GF/s sgemm", "bwd-d ms GF/s sgemm", "total ms", "ratio"))
names = []
for (n, a) in best:
    if n not in names: names.append(n)
for n in names:
    base = None
    for a in algos:
        if (n, a) not in best: continue
        t = best[(n, a)]; gf = gflops[n]; tot = sum(t)
        base = base or tot
        cells = ["%6.2f %5.1f %4.0f%%" % (x, gf / (x * 1e-3), 100 * gf / (x * 1e-3) / sgemm) for x in t]
        print("%-26s %-16s | %s | %s | %s | %8.2f %6.2f" % (n, a + ":" + paths[(n, a)][:8], cells[0], cells[1], cells[2], tot, base / tot))
' "$(IFS=,; echo "${ALGOS[*]}")" "$THREADS" "$ROUNDS"
