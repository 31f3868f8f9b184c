"""Datasets: one parser per format, all producing :class:`Dataset` (OpenCV viewmats, pinhole Ks of the
images as loaded, lazily loaded pixels).

``load_dataset(path)`` detects the format, in this order:

1. Blender-synthetic: ``path/transforms_train.json``;
2. nerfstudio / instant-ngp: ``path/transforms.json`` (or ``path`` is a ``.json`` file);
3. COLMAP: a sparse model in ``path``, ``path/sparse/0`` or ``path/sparse``;
4. photos: image files in ``path/images`` or ``path`` -> structure-from-motion with pycolmap.

then normalises the world (``normalize.py``) and splits train/test (every ``test_every``-th view
is a test view unless the format defines the split, as Blender does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ...errors import DataError
from .base import Dataset, Frame, split_every_nth
from .blender import is_blender, load_blender
from .colmap import find_colmap_model, load_colmap, model_candidates
from .images import list_images, read_mask, read_rgb
from .nerfstudio import load_nerfstudio
from .normalize import normalize_dataset
from .photos import SfMOptions, load_photos, photos_dir

__all__ = [
    "Dataset",
    "Frame",
    "SfMOptions",
    "detect_format",
    "load_blender",
    "load_colmap",
    "load_dataset",
    "load_nerfstudio",
    "load_photos",
    "normalize_dataset",
    "read_mask",
    "read_rgb",
    "split_every_nth",
]

Format = Literal["blender", "nerfstudio", "colmap", "photos"]


def detect_format(path: str | Path) -> Format:
    """Which parser reads ``path``; DataError listing what was looked for when none does."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "blender" if path.name == "transforms_train.json" else "nerfstudio"
        raise DataError(f"{path} is a file; pass a dataset folder or a transforms.json")
    if is_blender(path):
        return "blender"
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if find_colmap_model(path) is not None:
        return "colmap"
    if len(list_images(photos_dir(path))) >= 2:
        return "photos"
    looked = "; ".join(
        [
            f"{path / 'transforms_train.json'} (Blender-synthetic)",
            f"{path / 'transforms.json'} (nerfstudio / instant-ngp)",
            "cameras.{bin,txt} + images.{bin,txt} in "
            + ", ".join(str(c) for c in model_candidates(path)[:3])
            + " (COLMAP)",
            f"2+ photos in {path / 'images'} or {path} (structure-from-motion)",
        ]
    )
    raise DataError(f"no dataset recognised in {path}; looked for: {looked}")


def load_dataset(
    path: str | Path,
    *,
    downscale: int = 1,
    test_every: int = 8,
    normalize: bool = True,
    background: tuple[float, float, float] | None = None,
    sfm_options: SfMOptions | None = None,
    format: Format | None = None,
    missing_images: Literal["skip", "error"] = "skip",
) -> Dataset:
    """Load any supported dataset.

    path: dataset folder (or a transforms.json).
    downscale: integer factor; images are resized (area) into the cache and Ks scaled.
    test_every: every n-th view (0, n, 2n, ...) is a test view, unless the format has a split;
        0 puts every view in training.
    normalize: centre/scale/orient the world (``normalize.py``); ``Dataset.transform`` records it.
    background: RGB in [0, 1] that RGBA images are composited on (Blender default: white).
    sfm_options: options of the photos -> SfM path.
    format: force a parser instead of detecting it.
    missing_images: "skip" drops frames whose image file is missing (listed in
        ``meta["skipped_frames"]``), "error" raises (Blender always raises).
    """
    fmt = format or detect_format(path)
    if fmt == "blender":
        p = Path(path)
        ds = load_blender(
            p.parent if p.is_file() else p,
            downscale=downscale,
            background=(1.0, 1.0, 1.0) if background is None else background,
        )
    elif fmt == "nerfstudio":
        ds = load_nerfstudio(path, downscale=downscale, missing_images=missing_images)
    elif fmt == "colmap":
        ds = load_colmap(path, downscale=downscale, missing_images=missing_images)
    elif fmt == "photos":
        ds = load_photos(path, downscale=downscale, options=sfm_options)
    else:
        raise DataError(f"unknown dataset format {fmt!r}")
    if background is not None and fmt != "blender":
        ds.background = tuple(float(c) for c in background)
    if normalize:
        normalize_dataset(ds)
    if not ds.train_ids and not ds.test_ids:
        if test_every and test_every > 0:
            ds.train_ids, ds.test_ids = split_every_nth(len(ds), test_every)
        else:
            ds.train_ids, ds.test_ids = list(range(len(ds))), []
    return ds
