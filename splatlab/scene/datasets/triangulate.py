"""Initial points for posed datasets that come without any (the fox's transforms.json, a Blender
set without a point cloud): SIFT features and matches with pycolmap, then COLMAP's point
triangulator from the KNOWN poses (``pycolmap.triangulate_points``: poses and intrinsics stay
fixed, only points are estimated and refined).

The images triangulated are exactly the ones training sees (``Dataset.load_image``: undistorted,
downscaled), with the dataset's pinhole intrinsics and OpenCV world-to-camera poses, so the points
come out in the dataset's (normalised) frame. Results are cached next to the image cache, keyed on
the frames, poses and options.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import SfMError
from .base import Dataset
from .images import cache_root
from .photos import _quiet_pycolmap

__all__ = ["TriangulationOptions", "triangulate_known_poses"]


@dataclass
class TriangulationOptions:
    """Options of the triangulation from known poses."""

    matcher: str = "auto"
    """'exhaustive', 'sequential' (image order) or 'auto' (exhaustive up to 80 images)."""
    max_num_features: int = 4096
    """SIFT features per image."""
    max_reprojection_error: float = 2.0
    """Drop points whose mean reprojection error (pixels) is larger."""
    min_track_length: int = 2
    """Drop points seen in fewer images."""
    num_threads: int = -1
    """pycolmap threads (-1: all cores)."""
    seed: int = 0
    """pycolmap's random seed."""


def _key(ds: Dataset, ids: list[int], options: TriangulationOptions) -> str:
    h = hashlib.sha1()
    h.update(json.dumps(asdict(options), sort_keys=True).encode())
    for i in ids:
        f = ds.frames[i]
        h.update(f.name.encode())
        h.update(np.round(f.viewmat, 9).tobytes())
        h.update(np.round(f.K, 6).tobytes())
        h.update(f"{f.width}x{f.height}".encode())
    return h.hexdigest()[:16]


def triangulate_known_poses(
    ds: Dataset,
    ids: list[int] | None = None,
    options: TriangulationOptions | None = None,
    work_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Points [P, 3] float32 (the dataset's frame), colours [P, 3] uint8 and statistics, from the
    frames ``ids`` (default: the training views) and their known poses.

    Raises SfMError when fewer than 2 images or no point could be triangulated."""
    options = options or TriangulationOptions()
    ids = list(ds.train_ids if ids is None else ids)
    if len(ids) < 2:
        raise SfMError(f"{ds.root}: triangulation needs at least 2 posed images, got {len(ids)}")
    key = _key(ds, ids, options)
    root = Path(work_dir) if work_dir is not None else cache_root(ds.root) / "triangulation" / key
    cached = root / "points.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return z["xyz"], z["rgb"], json.loads(str(z["stats"]))
    import imageio.v3 as iio  # only for a fresh triangulation: a cached one needs neither
    import pycolmap

    tmp = root / "work"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    names = [f"{k:05d}.png" for k in range(len(ids))]
    for i, name in zip(ids, names):
        img = np.clip(ds.load_image(i) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        iio.imwrite(tmp / "images" / name, img)
    db = tmp / "database.db"
    t0 = time.perf_counter()
    pycolmap.set_random_seed(options.seed)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = options.max_num_features
    extraction.num_threads = options.num_threads
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    matcher = options.matcher
    if matcher == "auto":
        matcher = "exhaustive" if len(ids) <= 80 else "sequential"
    with _quiet_pycolmap():
        pycolmap.extract_features(
            db, tmp / "images", image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu,
        )
        t1 = time.perf_counter()
        if matcher == "exhaustive":
            pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
        elif matcher == "sequential":
            pycolmap.match_sequential(db, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            raise SfMError(f"unknown matcher {options.matcher!r} (auto, exhaustive or sequential)")
        t2 = time.perf_counter()
        with pycolmap.Database.open(str(db)) as database:
            by_name = {im.name: im for im in database.read_all_images()}
        rec = pycolmap.Reconstruction()
        for i, name in zip(ids, names):
            f, im = ds.frames[i], by_name[name]
            K = f.K
            rec.add_camera_with_trivial_rig(
                pycolmap.Camera(
                    model="PINHOLE", width=f.width, height=f.height,
                    params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], camera_id=im.camera_id,
                )
            )
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(f.viewmat[:3, :3]), f.viewmat[:3, 3])
            rec.add_image_with_trivial_frame(
                pycolmap.Image(name=name, camera_id=im.camera_id, image_id=im.image_id), pose
            )
        mapper = pycolmap.IncrementalPipelineOptions()
        mapper.num_threads = options.num_threads
        mapper.random_seed = options.seed
        out = pycolmap.triangulate_points(rec, db, tmp / "images", tmp / "model")
        t3 = time.perf_counter()
    pts = [
        p for p in out.points3D.values()
        if p.track.length() >= options.min_track_length and p.error <= options.max_reprojection_error
    ]
    if not pts:
        raise SfMError(
            f"{ds.root}: no point could be triangulated from the known poses "
            f"({len(ids)} images); the images may be too small or too similar (use --init random)"
        )
    xyz = np.array([p.xyz for p in pts], dtype=np.float32)
    rgb = np.array([p.color for p in pts], dtype=np.uint8)
    stats = {
        "images": len(ids),
        "points": int(len(pts)),
        "mean_reprojection_error": float(np.mean([p.error for p in pts])),
        "mean_track_length": float(np.mean([p.track.length() for p in pts])),
        "matcher": matcher,
        "seconds": {"extraction": round(t1 - t0, 2), "matching": round(t2 - t1, 2),
                    "triangulation": round(t3 - t2, 2)},
    }
    root.mkdir(parents=True, exist_ok=True)
    part = root / "points.tmp.npz"
    np.savez(part, xyz=xyz, rgb=rgb, stats=np.array(json.dumps(stats)))
    part.replace(cached)
    shutil.rmtree(tmp, ignore_errors=True)
    return xyz, rgb, stats
