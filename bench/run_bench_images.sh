#!/bin/bash
# run_bench_images.sh: decouple's image pipeline vs torchvision 0.14 + PIL, single thread, images/s/core.
#
#   bench/run_bench_images.sh [BUILD_DIR] [N_IMAGES]      (defaults: build, 300)
#
# 1. generates N photo-like JPEGs (~500 px, ImageNet-like sizes and quality) in a temporary folder: upscaled
#    CIFAR-10 JPEGs from ../shared when present (else smooth random colour fields), plus multi-scale texture,
#    a few hard-edged shapes and sensor grain, so they compress like photos (~90 KB at quality 93; ImageNet's
#    training JPEGs average ~110 KB);
# 2. runs bench_images (C) and bench_images_torch.py alternately, 3 rounds each, on the training pipeline
#    (decode + RandomResizedCrop(224) + flip + normalise), and prints each round and the median ratio;
#    rates are images per CPU second of the single-threaded process (= per core), which a shared machine
#    disturbs far less than wall time;
# 3. ablations, and the same with ColorJitter;
# 4. runs the evaluation pipeline (Resize(256) + CenterCrop(224)) both ways and reports how far our outputs
#    are from torchvision's (and how far tensor bilinear without antialiasing would be);
# 5. repeats speed and evaluation comparison on 60 iNaturalist-sized (800 px) images, where DCT scaling
#    applies, with and without it.
# Nothing is written into the repository; the folder is removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
N=${2:-300}
PY=/usr/bin/python3
BIN=$BUILD/bench/bench_images
TORCH=$ROOT/bench/bench_images_torch.py
[ -x "$BIN" ] || { echo "no $BIN: build first (cmake --build $BUILD --target bench_images)"; exit 1; }
TMP=$(mktemp -d /tmp/dc_bench_images.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# generate FOLDER COUNT LONG_SIDE: photo-like JPEGs with ImageNet's typical shapes, scaled to LONG_SIDE
generate() {
    $PY - "$1" "$2" "$ROOT/../shared/data/cifar10" "$3" <<'PYEOF'
import os, sys
import numpy as np
from PIL import Image, ImageDraw
out, n, cifar, long_side = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234 + long_side)
sources = []
if os.path.isdir(os.path.join(cifar, "train")):
    with open(os.path.join(cifar, "train.txt")) as f:
        paths = [l.split()[0] for l in f if l.strip()]
    sources = [os.path.join(cifar, p) for p in paths[:: max(1, len(paths) // n)]][:n]
sizes = [(500, 375), (500, 375), (500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (500, 281)]
sizes = [(w * long_side // 500, h * long_side // 500) for w, h in sizes]
def field(h, w, cell, amp):  # smooth random field: random values on a grid, bicubic upsampled
    g = rng.normal(0, 1, (max(2, h // cell + 2), max(2, w // cell + 2), 3)).astype(np.float32)
    g = (g - g.min()) / (g.max() - g.min() + 1e-6) * 255
    im = Image.fromarray(g.astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return (np.asarray(im).astype(np.float32) - 128) * amp / 128
total = 0
for i in range(n):
    w, h = sizes[i % len(sizes)]
    if sources:
        base = Image.open(sources[i % len(sources)]).convert("RGB").resize((w, h), Image.BICUBIC)
        img = np.asarray(base).astype(np.float32)
    else:
        img = 128 + field(h, w, 100, 110)
    img = img + field(h, w, 40, 25) + field(h, w, 9, 20) + field(h, w, 3, 14)
    lum = rng.normal(0, 12, (h, w, 1)).astype(np.float32)
    img = img + lum + rng.normal(0, 4, (h, w, 3)).astype(np.float32)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, 160)), y0 + int(rng.integers(20, 160))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], outline=col, width=int(rng.integers(1, 5)))
    path = os.path.join(out, f"img_{i:04d}.jpg")
    im.save(path, "JPEG", quality=93)
    total += os.path.getsize(path)
print(f"{n} images of {long_side} px, mean {total / n / 1024:.1f} KB, "
      f"{'CIFAR-10 based' if sources else 'synthetic'}")
PYEOF
}
rate() { awk '/^images\/s:/ {print $2}'; }
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

echo "== generating $N test JPEGs in $TMP"
generate "$TMP/img" "$N" 500

echo "== training pipeline: decode + RandomResizedCrop(224) + flip + normalise, 1 thread, 3 rounds"
c_rates=(); t_rates=(); ratios=()
for round in 1 2 3; do
    c=$("$BIN" --passes 3 "$TMP/img" | tee "$TMP/c.log" | rate)
    t=$($PY "$TORCH" --passes 2 "$TMP/img" | rate)
    c_rates+=("$c"); t_rates+=("$t"); ratios+=("$(ratio "$c" "$t")")
    echo "round $round: decouple $c images/s, torchvision $t images/s, ratio $(ratio "$c" "$t")"
done
sed -n 1,2p "$TMP/c.log"
echo "median: decouple $(median "${c_rates[@]}") images/s/core, torchvision $(median "${t_rates[@]}") images/s/core," \
     "median ratio $(median "${ratios[@]}")x"

echo "== ablations (1 round each): whole-image decode instead of the crop region; and no DCT scaling"
"$BIN" --passes 2 --no-partial "$TMP/img" | grep -E "^decode|^images/s"
"$BIN" --passes 2 --no-dct "$TMP/img" | grep -E "^decode|^images/s"
echo "== with ColorJitter(0.4, 0.4, 0.4) (the reference's ImageNet-LT recipe), 1 round"
c=$("$BIN" --passes 2 --jitter 0.4 "$TMP/img" | rate)
t=$($PY "$TORCH" --passes 1 --jitter 0.4 "$TMP/img" | rate)
echo "decouple $c images/s, torchvision $t images/s, ratio $(ratio "$c" "$t")"

echo "== evaluation pipeline: Resize(256) + CenterCrop(224), outputs against torchvision"
"$BIN" --eval --passes 1 --dump "$TMP/ours.f32" "$TMP/img" | grep -E "^bench_images|^images/s"
$PY "$TORCH" --compare "$TMP/ours.f32" "$TMP/img"

echo "== iNaturalist-sized images (800 px long side, 60 files): DCT scaling decodes them at 1/2 size"
generate "$TMP/big" 60 800
for mode in "" "--no-dct"; do "$BIN" --passes 2 $mode "$TMP/big" | grep -E "^bench_images|^images/s"; done
echo "torchvision: $($PY "$TORCH" --passes 1 "$TMP/big" | rate) images/s"
echo "-- evaluation outputs against torchvision (which decodes at full size), with DCT scaling, then without:"
for mode in "" "--no-dct"; do
    "$BIN" --eval --passes 1 $mode --dump "$TMP/ours.f32" "$TMP/big" | grep -E "^bench_images|^images/s"
    $PY "$TORCH" --compare "$TMP/ours.f32" "$TMP/big"
done
