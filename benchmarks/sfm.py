"""Structure-from-motion benchmark on ../shared/data/sceaux_castle (11 unposed photos).

    python benchmarks/sfm.py            # runs pycolmap SfM without the cache

Prints a Markdown row: registered / total images, mean reprojection error, 3D points, recovered
focal length vs the calibrated K.txt (scaled to the SfM image size), and the time of each stage.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from splatlab.scene.datasets.photos import SfMOptions, load_photos

    root = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sceaux_castle").resolve()
    if not root.is_dir():
        raise SystemExit(f"{root} is absent: this benchmark needs the shared data")
    t0 = time.perf_counter()
    ds = load_photos(root, downscale=4, options=SfMOptions(use_cache=False))
    wall = time.perf_counter() - t0
    s = ds.meta["sfm"]
    K_ref = np.loadtxt(root / "K.txt")
    # frames are downscaled by 4 from the original photos
    f_est = float(np.mean([f.K[0, 0] for f in ds.frames])) * 4
    print(f"| sceaux_castle | {s['registered']}/{s['total']} | {s['mean_reprojection_error']:.3f} | "
          f"{s['num_points3D']:,} | {f_est:.1f} vs {K_ref[0, 0]:.1f} ({(f_est / K_ref[0, 0] - 1) * 100:+.1f}%) | "
          f"{s.get('seconds')} | {wall:.1f} |")
    print(f"# {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
