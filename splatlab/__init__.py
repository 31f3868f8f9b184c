"""splatlab: an open workbench for 3D Gaussian Splatting research."""

import os as _os

# PyTorch's and numba's CPU kernels run in OpenMP thread pools; with OpenMP's default (active)
# wait policy, idle threads spin. Measured on 2 cores (BENCHMARKS.md): a demo training step took
# 0.55 s instead of 0.087 s while another process (a second training run, the viewer) was busy,
# against 0.057 s vs 0.066 s on an idle machine. Passive waiting trades those 15 % for robustness.
# It must be chosen before the OpenMP runtime loads (before torch is imported); set
# OMP_WAIT_POLICY yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
