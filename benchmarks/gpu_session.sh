#!/usr/bin/env bash
# What one lent-GPU session runs (issue 23 and 24), from the repository root, in about 9 minutes:
# the throughput measurement of benchmarks/gpu_check.py, then the converged-recipe pilot
# (benchmarks/gpu_pilot.py) with its schedule planned from the measured seed-batched rate.
#   OUT=<folder> bash benchmarks/gpu_session.sh
# Needs the CIFAR-10 JPEG archive in $MANIFOLD_LAB_DATA (default .data/) and, where pydantic is
# missing, its wheels in .whl/ (the device tool's README says how to carry both).
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export MANIFOLD_LAB_DATA=${MANIFOLD_LAB_DATA:-$PWD/.data} MANIFOLD_LAB_CACHE=${MANIFOLD_LAB_CACHE:-/tmp/manifold_lab_cache}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
start=$(date +%s)
timeout 200 python3 -m benchmarks.gpu_check --only throughput --out-dir "$OUT/gpu_check"
echo "gpu_check: $(( $(date +%s) - start )) s"
rate=$(python3 -c "import json,sys; v=json.load(open(sys.argv[1]))['throughput']['variants']['stack_8_eager']; print(v['images_per_s_per_network'])" "$OUT/gpu_check/gpu_check.json" 2>/dev/null || echo 4000)
echo "planning the pilot from $rate images/s per network"
timeout 320 python3 -m benchmarks.gpu_pilot --out-dir /tmp/pilot --seeds 8 --budget-s 250 --images-per-s "$rate"
cp /tmp/pilot/pilot.json "$OUT/" 2>/dev/null
tar czf "$OUT/pilot_runs.tgz" --exclude=checkpoint.pt --exclude=tensorboard -C /tmp/pilot runs 2>/dev/null
echo "total: $(( $(date +%s) - start )) s"
