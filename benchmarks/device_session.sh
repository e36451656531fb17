#!/usr/bin/env bash
# Everything a GPU session measures, in one command on the lent GPU machine (repository root, Python with
# CUDA PyTorch preinstalled, no network). Needs, carried beside the tree:
#   .whl/      wheels of the dependencies that image lacks (tomli-w, nas-bench-201)
#   .devdata/  cifar10-train-jpeg.zip and nb201_groundtruth.csv.gz (gzipped to fit the 64 MiB carry) from ../shared/data
# Writes logs and JSON under $OUT; reports/perf/README.md says what became of them.
#   bash benchmarks/device_session.sh [real_steps] [real_archs]
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
steps=${1:-3000}; archs=${2:-1000}
python3 -m pip install -q --no-index --no-deps .whl/*.whl && python3 -m pip install -q --no-index --no-deps \
  --no-build-isolation -e . || { echo "install failed"; exit 1; }
# the layout the tests and configs expect: ../shared/data beside the checkout
mkdir -p ../shared/data/nb201 ../shared/data/cifar10
gunzip -c .devdata/nb201_groundtruth.csv.gz > ../shared/data/nb201/nb201_groundtruth.csv
ln -sf "$PWD/.devdata/cifar10-train-jpeg.zip" ../shared/data/cifar10/cifar10-train-jpeg.zip
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } 2>&1 | tee "$OUT/device.txt"

t0=$(date +%s)
export OMP_NUM_THREADS=4  # 16 torch threads per pytest worker oversubscribed the 16 cores
echo "== 1. CUDA tests"
python3 -m pytest tests -m gpu -v -p no:cacheprovider --timeout=120 2>&1 | tee "$OUT/tests-gpu.log" | tail -12
echo "== 2. benchmarks at NB201 scale (C=16, N=5, 32x32, batch 64)"
timeout 150 python3 -m pytest benchmarks --benchmark-only -q -p no:cacheprovider --benchmark-json="$OUT/benchmarks.json" \
  --benchmark-columns=median,iqr,rounds --timeout=300 2>&1 | tee "$OUT/benchmarks.log" | tail -20

echo "== 3. where a step's time goes"
timeout 80 python3 benchmarks/gpu_probe.py --json "$OUT/gpu_probe.json" 2>&1 | tee "$OUT/gpu_probe.log"

echo "== 4. real CIFAR-10 at NB201 scale: $steps uniform steps, $archs non-isomorphic architectures estimated"
timeout 180 python3 -m harness.cli run configs/nb201-cifar10.toml --quiet --out /tmp/real \
  --set train.max_steps="$steps" --set estimate.archs='"sample"' --set estimate.sample_size="$archs" 2>&1 | tail -15
cp /tmp/real/metrics.json "$OUT/real-metrics.json" 2>/dev/null
python3 - <<'EOF' 2>&1 | tee "$OUT/real.log"
import json
m = json.load(open("/tmp/real/metrics.json"))
t, e, r = m["train"], m["estimate"], m["ranking"]
print(f"train: {t['steps']} steps in {t['seconds']:.1f} s = {t['steps_per_second']:.1f} steps/s "
      f"({t['steps_per_epoch']} steps/epoch); final loss {t['final_loss']:.3f}")
print(f"estimate: {e['n_archs']} archs x {e['held_out_images']} images in {e['seconds']:.1f} s = "
      f"{e['archs_per_second']:.2f} archs/s")
print(f"kendall tau {r['kendall_tau']['value']:.3f}  (device {m['environment']['device_name']})")
EOF
echo "== 5. the whole suite with CUDA present, in what time is left (${suite_s:=100} s)"
timeout "$suite_s" python3 -m pytest tests benchmarks --benchmark-disable -v -p no:cacheprovider -n 4 --timeout=90 \
  -rs > "$OUT/tests-all.log" 2>&1; echo "suite exit $?"; grep -E "passed|failed|FAILED|Timeout" "$OUT/tests-all.log" | tail -12
echo "total: $(( $(date +%s) - t0 )) s"
