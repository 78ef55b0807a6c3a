#!/usr/bin/env bash
# run_fuzz.sh: runs every libFuzzer target of tests/fuzz/ for a fixed time and reports what it found.
#
#   tests/fuzz/run_fuzz.sh <build-fuzz dir> <seconds per target> [target ...]
#
# Build first:  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DDC_FUZZ=ON
#               cmake --build build-fuzz --target fuzz_all
# CI runs it with 30 s per target, one target per core at a time. For each target it starts from the
# committed seed corpus (tests/fuzz/corpus/<target>/, never modified here), prints executions per second,
# total executions, new corpus entries and findings (crash-, leak-, timeout-, oom- files written by libFuzzer), and exits non-zero
# when any target found something or could not run.
#
# Environment:
#   FUZZ_WORK=dir   keep the evolving corpus (dir/<target>/) and findings (dir/<target>-findings/) there,
#                   so repeated runs continue where the last one stopped (default: a temporary directory);
#                   (without FUZZ_WORK, the log and findings of a failed target are copied to
#                   ./fuzz-findings/ before the temporary directory is removed);
#   FUZZ_PARALLEL=n targets fuzzed at once (default: nproc; 1 = one after the other);
#   FUZZ_ARGS="..." extra libFuzzer flags, e.g. "-jobs=2 -workers=2" or "-use_value_profile=1".
# Reproduce a finding:  build-fuzz/tests/fuzz/fuzz_<target> <finding file>
# Minimise the committed corpus after a long run:
#   build-fuzz/tests/fuzz/fuzz_<t> -merge=1 tests/fuzz/corpus/<t>.new tests/fuzz/corpus/<t> $FUZZ_WORK/<t>
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 <build-fuzz dir> <seconds per target> [target ...]" >&2
  exit 2
fi
BUILD=$1
SECONDS_EACH=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config list_file idx cifar jpeg safetensors npy checkpoint)

if [ -n "${FUZZ_WORK:-}" ]; then
  WORK=$FUZZ_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi

# One target: libFuzzer from the committed seeds (read: second directory) into the work corpus (first
# directory); its exit status goes to $WORK/<t>.rc.
fuzz_one() {
  local t=$1 bin=$BUILD/tests/fuzz/fuzz_$1
  mkdir -p "$WORK/$t" "$WORK/$t-findings"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$WORK/$t-findings/" ${FUZZ_ARGS:-} "$WORK/$t" "$HERE/corpus/$t" > "$WORK/$t.log" 2>&1
  echo $? > "$WORK/$t.rc"
}

# Each libFuzzer process is single-threaded: run FUZZ_PARALLEL of them at once (default: one per core), so
# the campaign takes ceil(targets / cores) x SECONDS_EACH; each target still gets its full time on a core.
parallel=${FUZZ_PARALLEL:-$(nproc)}
for t in "${TARGETS[@]}"; do
  [ -x "$BUILD/tests/fuzz/fuzz_$t" ] || continue
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
  fuzz_one "$t" &
done
wait

status=0
printf '%-12s %10s %14s %9s %9s  %s\n' target "exec/s" "total execs" "new units" findings result
for t in "${TARGETS[@]}"; do
  bin=$BUILD/tests/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    printf '%-12s %s\n' "$t" "MISSING: $bin (build with -DDC_FUZZ=ON, target fuzz_all)"
    status=1
    continue
  fi
  findings=$WORK/$t-findings
  log=$WORK/$t.log
  rc=$(cat "$WORK/$t.rc" 2> /dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  n_found=$(find "$findings" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  result=ok
  if [ "$rc" -ne 0 ] || [ "$n_found" -gt 0 ]; then
    result="FAILED (exit $rc; log $log)"
    status=1
  fi
  printf '%-12s %10s %14s %9s %9s  %s\n' "$t" "${rate:-?}" "${execs:-?}" "${units:-?}" "$n_found" "$result"
  if [ "$result" != ok ]; then
    grep -E 'ERROR|SUMMARY|invariant|differs|failed|does not|Base64' "$log" | head -8 | sed 's/^/    /'
    if [ -z "${FUZZ_WORK:-}" ]; then # the temporary directory goes: keep the log and the findings
      mkdir -p "fuzz-findings/$t" && cp "$log" "fuzz-findings/$t.log"
      [ "$n_found" -gt 0 ] && cp "$findings"/* "fuzz-findings/$t/"
      findings=fuzz-findings/$t
      echo "    log: fuzz-findings/$t.log"
    fi
    find "$findings" -type f | head -5 | sed 's/^/    finding: /'
  fi
done
exit $status
