#!/usr/bin/env bash
# Run HERE (the CPU machine), in the repo root, before the device call: puts what the GPU machine
# lacks into two git-ignored folders that the device tool carries (.whl: Python 3.12 wheels and a
# splatlab wheel for its entry points; .gpudata: the fox photos, if ../shared/data is present).
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in /.whl/ /.gpudata/; do
  grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
done
rm -rf .whl && mkdir -p .whl .gpudata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl gsplat==1.5.3 plyfile==1.1.5 tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 lpips==0.1.4
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl . >/dev/null
if [ -d ../shared/data/fox ] && [ ! -d .gpudata/fox ]; then cp -r ../shared/data/fox .gpudata/fox && chmod -R u+w .gpudata/fox; fi
# the GPU machine has no pycolmap: triangulate the fox's known poses here once (one training step
# on the CPU fills .gpudata/fox/.splatlab_cache, which the fox step there then reads)
if [ -d .gpudata/fox ]; then
  python3 -m splatlab.app.cli train .gpudata/fox --downscale 4 --steps 1 --device cpu --out "$(mktemp -d)/prime" \
    --checkpoint-every 0 >/dev/null
fi
du -sh .whl .gpudata
echo 'now: run(command="bash benchmarks/gpu/run.sh", carry=[".whl", ".gpudata"], timeout_s=560)'
