#!/usr/bin/env bash
# e2e_pipeline: `decouple run` end to end on a slice of real data (Fashion-MNIST-LT r = 100 from 3000/1000
# images), then the independent checks:
#   - results.json, every head's safetensors and the SVGs exist and the SVGs are well-formed XML;
#   - tests/check_heads.py recomputes NCM and tau-norm from the exported .npy features and fc weights with
#     numpy alone and must agree with decouple's numbers (skipped when python3-numpy is missing);
#   - `decouple eval` on the saved heads reproduces the test numbers of `decouple run` exactly.
# Usage: e2e_pipeline.sh <decouple> <source dir> <build dir>     exit 77 = skipped
set -u
DC=$1; SRC=$2; BUILD=$3
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "SKIP: $DATA missing"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. "$SRC/tests/lib/fmnist_subset.sh"
fmnist_subset "$DATA" "$T/data" 3000 1000 || fail "could not write the Fashion-MNIST subset"
ARGS=(--quiet --threads 2 --set training_opt.data_root="$T/data" --set networks.feat_model.arch=resnet8
      --set training_opt.batch_size=64 --set training_opt.num_epochs=2 --set training_opt.imb_factor=20
      --set training_opt.val_per_class=10 --set stage2.crt_train.num_epochs=3 --set stage2.lws_train.num_epochs=2
      --set stage2.save_features=true --set training_opt.display_step=0 --log-dir "$T/run")
"$DC" run "$SRC/configs/fashion_mnist_lt_r100.yaml" "${ARGS[@]}" > "$T/run.out" 2>&1 || { cat "$T/run.out"; fail "decouple run"; }
cat "$T/run/train.log" | sed -n '/^head /,/^(test/p'
for f in results.json final.safetensors head_ncm.safetensors head_crt.safetensors head_tau_norm.safetensors \
         head_lws.safetensors head_logit_adj.safetensors per_class_accuracy.svg weight_norms.svg tau_sweep.svg \
         features/train_features.npy features/test_features.npy features/val_features.npy features/fc_weight.npy; do
  [ -s "$T/run/$f" ] || fail "missing $f"
done
python3 - "$T/run" <<'PY' || fail "an SVG is not well-formed XML or results.json is not valid JSON"
import json, sys, xml.dom.minidom
d = sys.argv[1]
for f in ("per_class_accuracy.svg", "weight_norms.svg", "tau_sweep.svg", "logit_adjust_sweep.svg"):
    doc = xml.dom.minidom.parse(f"{d}/{f}")
    assert doc.documentElement.tagName == "svg", f
r = json.load(open(f"{d}/results.json"))
assert set(r["heads"]) == {"joint", "ncm", "tau_norm", "logit_adj", "crt", "lws"}, r["heads"].keys()
print("SVGs well-formed; results.json has", ", ".join(r["heads"]))
PY
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  F=$T/run/features
  /usr/bin/python3 "$SRC/tests/check_heads.py" --train-feats "$F/train_features.npy" --train-labels "$F/train_labels.npy" \
    --test-feats "$F/test_features.npy" --test-labels "$F/test_labels.npy" --val-feats "$F/val_features.npy" \
    --val-labels "$F/val_labels.npy" --fc-weight "$F/fc_weight.npy" --fc-bias "$F/fc_bias.npy" \
    --results "$T/run/results.json" --tolerance 0.002 || fail "numpy disagrees with decouple's NCM / tau-norm numbers"
else
  echo "note: python3-numpy missing, the independent numpy check was skipped"
fi
"$DC" eval "$SRC/configs/fashion_mnist_lt_r100.yaml" "${ARGS[@]}" --weights "$T/run/final.safetensors" --log-dir "$T/run" \
  > "$T/eval.out" 2>&1 || { cat "$T/eval.out"; fail "decouple eval"; }
# eval rewrote results.json from the saved heads: the test numbers must be the same as the run's table
python3 - "$T/run/train.log" <<'PY' || fail "decouple eval does not reproduce decouple run's test numbers"
import sys
def numeric(fields):
    try:
        [float(f) for f in fields]
        return True
    except ValueError:
        return False
# the table rows: a head name, then 7 numbers (many medium few all macro tail-half top-5)
rows = [l.split() for l in open(sys.argv[1])]
rows = [r for r in rows if len(r) == 8 and r[0].split("(")[0] in
        ("joint", "ncm", "crt", "tau_norm", "lws", "logit_adj") and numeric(r[1:])]
first = {r[0].split("(")[0]: r[1:] for r in rows[:6]}
second = {r[0].split("(")[0]: r[1:] for r in rows[6:12]}
assert first == second, (first, second)
print("decouple eval reproduces the test table of decouple run")
PY
echo "PASS"
