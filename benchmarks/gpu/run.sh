#!/usr/bin/env bash
# The prepared GPU check (issue 18), run ON the device machine by the device tool:
#   run(command="bash benchmarks/gpu/run.sh", carry=[".whl", ".gpudata"], timeout_s=560)
# after `bash benchmarks/gpu/prepare.sh` here. Each step has its own time limit so the whole check
# ends inside 9 minutes (limits set from the first run, 2026-12-04: 269 s for all but fox_long);
# results land in $OUT (log.txt with nvidia-smi, build.txt, pytest_cuda.txt, rasterizer.md,
# demo.txt, fox.txt, fox_long.txt, summary.json: the 8 files the device tool returns).
# `bash benchmarks/gpu/run.sh --dry-run` prints the steps without running them (what CI / a
# machine without a GPU can check).
set -uo pipefail
cd "$(dirname "$0")/../.."
DRY=0; [ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=python3
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
# gsplat JIT: all 16 cores, Hopper only (H100 / H200: sm_90); -O3 kept (no FAST_COMPILE: timings)
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
declare -A STATUS

step() {  # step NAME SECONDS OUTFILE COMMAND...
  local name=$1 limit=$2 out=$3; shift 3
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/log.txt"
  if [ $DRY = 1 ]; then STATUS[$name]=dry; return 0; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$out" 2>&1
  local rc=$?
  STATUS[$name]="rc=$rc in $((SECONDS - t0)) s"
  echo "   -> rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/log.txt"
  tail -n 5 "$OUT/$out" | sed 's/^/   | /' | tee -a "$OUT/log.txt"
}

if [ $DRY = 0 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed: run benchmarks/gpu/prepare.sh here first and carry .whl"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi >> "$OUT/log.txt" 2>&1  # in the log: at most 8 files come back from $OUT
fi

# gsplat compiles its CUDA kernels on first use (minutes): once, here, before anything is timed
step build_gsplat 130 build.txt $PY -c "import torch, gsplat; from gsplat.cuda._backend import _C; print(torch.__version__, torch.cuda.get_device_name(0), _C is not None)"
step pytest_cuda 50 pytest_cuda.txt $PY -m pytest -q -m cuda -p no:cacheprovider tests/rendering/test_cuda_parity.py
step rasterizer 60 rasterizer.md $PY benchmarks/rasterizer.py --device cuda --quick
step demo 45 demo.txt $PY -m splatlab.app.cli demo --out /tmp/gpu_demo --steps 1500
if [ -d .gpudata/fox ] || [ $DRY = 1 ]; then
  step fox 95 fox.txt $PY -m splatlab.app.cli train .gpudata/fox --downscale 4 --steps 7000 --device cuda --out /tmp/gpu_fox --checkpoint-every 0
  # the same scene twice as long (held-out PSNR past 7000 steps: the fox goal's question)
  step fox_long 160 fox_long.txt $PY -m splatlab.app.cli train .gpudata/fox --downscale 4 --steps 15000 --device cuda --out /tmp/gpu_fox_long --checkpoint-every 0
fi

{
  echo "{"
  first=1
  for k in "${!STATUS[@]}"; do
    [ $first = 1 ] || echo ","; first=0
    printf '  "%s": "%s"' "$k" "${STATUS[$k]}"
  done
  echo; echo "}"
} > "$OUT/summary.json"
cat "$OUT/summary.json"
