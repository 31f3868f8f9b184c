"""splatlab: an open workbench for 3D Gaussian Splatting research."""

import os as _os

# PyTorch's and numba's CPU kernels run in two OpenMP thread pools that alternate every step;
# with OpenMP's default (active) wait policy each pool's idle threads spin while the other one
# works, which on a 2-core machine made a CPU training step 4-6x slower (BENCHMARKS.md). Passive
# waiting has to be chosen before the OpenMP runtime loads, i.e. before torch is imported; set
# OMP_WAIT_POLICY yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
