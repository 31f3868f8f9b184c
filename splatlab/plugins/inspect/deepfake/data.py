"""Data for the D4 detectors: random crops of real photos and of synthesised images, and a tiny
procedural set for tests.

Real photos are the project's shared data (``../shared/data``: Kodak, the fox photos, the Sceaux
castle photos; :func:`photo_paths` returns what is present, nothing when the folder is absent).
Each photo is first reduced by an integer factor with area averaging (so a crop covers a sensible
part of the scene, as renders of a small scene do), then cut into random crops. Flat crops
(per-pixel std below ``min_std``) are skipped in both classes, so neither class can be told by
empty background alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ....errors import DataError

__all__ = ["DATA_ROOT", "PHOTO_SETS", "photo_paths", "load_photo", "random_crops", "toy_set"]

DATA_ROOT = Path(__file__).resolve().parents[4] / ".." / "shared" / "data"
# folder, glob, downscale factor to a short side of roughly 250 px
PHOTO_SETS: dict[str, tuple[str, str, int]] = {
    "kodak": ("kodak", "*.png", 2),
    "fox": ("fox/images", "*.jpg", 4),
    "castle": ("sceaux_castle/images", "*.[jJ][pP][gG]", 8),
}


def photo_paths(
    root: Path | None = None, sets: Sequence[str] = tuple(PHOTO_SETS)
) -> dict[str, list[Path]]:
    """name -> sorted photo paths of the sets present under ``root`` (default :data:`DATA_ROOT`)."""
    root = Path(root) if root is not None else DATA_ROOT
    out: dict[str, list[Path]] = {}
    for name in sets:
        folder, pattern, _ = PHOTO_SETS[name]
        paths = sorted((root / folder).glob(pattern)) if (root / folder).is_dir() else []
        if paths:
            out[name] = paths
    return out


def load_photo(path: Path, downscale: int = 1) -> np.ndarray:
    """uint8 [H, W, 3] of a photo reduced ``downscale`` times (area averaging)."""
    import cv2
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"{path} is not a readable image ({e})") from e
    if downscale > 1:
        h, w = arr.shape[:2]
        arr = cv2.resize(arr, (w // downscale, h // downscale), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def random_crops(
    img: np.ndarray,
    size: int,
    n: int,
    rng: np.random.Generator,
    min_std: float = 0.04,
    tries: int = 20,
) -> np.ndarray:
    """Up to ``n`` random crops [K, size, size, 3] of ``img`` [H, W, 3] whose pixel std (over
    all pixels and channels, in [0, 1] units) is at least ``min_std``."""
    h, w = img.shape[:2]
    if h < size or w < size:
        return np.zeros((0, size, size, 3), img.dtype)
    out = []
    for _ in range(n * tries):
        if len(out) == n:
            break
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        c = img[y : y + size, x : x + size]
        if c.std() / 255.0 >= min_std:
            out.append(c)
    return np.stack(out) if out else np.zeros((0, size, size, 3), img.dtype)


def toy_set(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small procedural real / synthetic pair for tests: (real, synthetic) uint8 [n, S, S, 3].

    "real": smooth random colour fields (1/f-like, from bilinear upsampling of 4 x 4 noise plus
    fine noise); "synthetic": the same kind of field made at half resolution and upsampled by
    pixel repetition, which leaves the periodic spectral replica that generators' upsampling
    layers leave (Frank et al. 2020)."""
    import cv2

    rng = np.random.default_rng(seed)

    def field(s: int) -> np.ndarray:
        base = cv2.resize(
            rng.random((4, 4, 3)).astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR
        )
        return np.clip(base + 0.08 * rng.standard_normal((s, s, 3)).astype(np.float32), 0, 1)

    real = np.stack([field(size) for _ in range(n)])
    half = [field(size // 2) for _ in range(n)]
    fake = np.stack([np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in half])
    return (real * 255 + 0.5).astype(np.uint8), (fake * 255 + 0.5).astype(np.uint8)
