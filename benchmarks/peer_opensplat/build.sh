#!/usr/bin/env bash
# Build OpenSplat (pierotofy/OpenSplat, AGPL-3.0) for the CPU against the libtorch inside the
# installed PyTorch wheel, for benchmarks/peer_opensplat.py. Nothing of OpenSplat is kept in this
# repository: the source is cloned (or copied from a local checkout) into $WORK.
#
#   bash benchmarks/peer_opensplat/build.sh [WORK]          # default WORK=/tmp/opensplat
#
# Environment (all optional):
#   OPENSPLAT_SRC   a local OpenSplat checkout to copy instead of cloning from GitHub
#   DEPS_DIR        a folder holding json/, nanoflann/, cxxopts/ checkouts (OpenSplat's CMake
#                   downloads nlohmann_json 3.11.3, nanoflann 1.5.5, cxxopts 3.2.0; point this at
#                   local copies of those tags on a machine without GitHub access)
#   PYTHON          the interpreter whose torch to link against (default: python)
#   JOBS            parallel compile jobs (default: nproc)
# Needs: cmake >= 3.21, g++, and OpenCV's headers (Debian: apt-get install libopencv-dev).
set -euo pipefail
WORK=${1:-/tmp/opensplat}
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$WORK"
if [ ! -d "$WORK/src" ]; then
  if [ -n "${OPENSPLAT_SRC:-}" ]; then
    if [ -d "$OPENSPLAT_SRC/.git" ] || [ -f "$OPENSPLAT_SRC/HEAD" ]; then
      git clone -q "$OPENSPLAT_SRC" "$WORK/src"
    else
      cp -r "$OPENSPLAT_SRC" "$WORK/src"
    fi
  else
    git clone -q https://github.com/pierotofy/OpenSplat "$WORK/src"
  fi
fi
# The one-line fix: the CPU rasterizer sorts by a pointer into camDepths, a strided view (column 2
# of the projected points), so it reads every third float of the wrong column and composites the
# Gaussians in a scrambled depth order. Sorting on a contiguous copy fixes it.
CPU_RAST="$WORK/src/rasterizer/gsplat-cpu/gsplat_cpu.cpp"
if ! grep -q "camDepthsC" "$CPU_RAST"; then
  sed -i 's|float \*pDepths = static_cast<float \*>(camDepths.data_ptr());|torch::Tensor camDepthsC = camDepths.contiguous(); float *pDepths = static_cast<float *>(camDepthsC.data_ptr());|' "$CPU_RAST"
  grep -q "camDepthsC" "$CPU_RAST" || { echo "could not apply the depth-sort fix to $CPU_RAST (has the file changed?)" >&2; exit 1; }
fi
# PyTorch >= 2.10's headers need C++20; OpenSplat's CMakeLists asks for C++17.
sed -i 's/CXX_STANDARD 17/CXX_STANDARD 20/' "$WORK/src/CMakeLists.txt"
# A CPU-only Torch package config: the wheel's own TorchConfig.cmake insists on the CUDA toolkit
# when the wheel was built with CUDA, and OpenSplat's CPU build needs only torch_cpu and c10.
read -r TORCH_ROOT ABI < <("$PYTHON" -c "import torch, os; print(os.path.dirname(torch.__file__), int(torch._C._GLIBCXX_USE_CXX11_ABI))")
mkdir -p "$WORK/torchcfg"
cat > "$WORK/torchcfg/TorchConfig.cmake" <<CFG
set(TORCH_FOUND TRUE)
set(TORCH_INCLUDE_DIRS "$TORCH_ROOT/include" "$TORCH_ROOT/include/torch/csrc/api/include")
set(TORCH_LIBRARIES "$TORCH_ROOT/lib/libtorch_cpu.so" "$TORCH_ROOT/lib/libc10.so")
set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=$ABI")
set(CMAKE_CXX_FLAGS "\${CMAKE_CXX_FLAGS} -D_GLIBCXX_USE_CXX11_ABI=$ABI")
include_directories(\${TORCH_INCLUDE_DIRS})
CFG
DEPS=()
if [ -n "${DEPS_DIR:-}" ]; then
  DEPS=(-DFETCHCONTENT_SOURCE_DIR_NLOHMANN_JSON="$DEPS_DIR/json"
        -DFETCHCONTENT_SOURCE_DIR_NANOFLANN="$DEPS_DIR/nanoflann"
        -DFETCHCONTENT_SOURCE_DIR_CXXOPTS="$DEPS_DIR/cxxopts")
fi
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGPU_RUNTIME=CPU \
  -DTorch_DIR="$WORK/torchcfg" -DCMAKE_BUILD_RPATH="$TORCH_ROOT/lib" "${DEPS[@]}" > "$WORK/cmake.log"
cmake --build "$WORK/build" --target opensplat -j "$JOBS" > "$WORK/build.log" 2>&1 \
  || { grep -m 20 "error" "$WORK/build.log" >&2; echo "build failed: see $WORK/build.log" >&2; exit 1; }
echo "$WORK/build/opensplat"
