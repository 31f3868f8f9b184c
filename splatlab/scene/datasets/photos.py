"""A folder of photos -> camera poses by structure-from-motion (pycolmap, on the CPU).

Pipeline: SIFT extraction (``max_image_size`` 1600 px, up to 8192 features: about 3 s per 6 MP
photo on 2 cores), exhaustive matching (or sequential, for video frames), COLMAP's incremental
mapper; the largest reconstruction is kept. The database and the model are cached in
``<cache_root>/sfm_<key>/`` (``key`` hashes the options that change the result and the photos'
names, sizes and modification times), so the next load of the same folder reads the model instead
of recomputing it. The model is then loaded by :func:`load_colmap` (distortion removed, images
downscaled, both cached).

Registration threshold: at least ``min_registered_fraction`` (default 0.8, "all but 20 %") of the
photos, and at least 2, must be registered, otherwise :class:`SfMError` lists the photos left out.
The threshold is checked on every load, so it can be lowered without running SfM again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ...errors import DataError, SfMError
from .base import Dataset
from .colmap import is_colmap_model, load_colmap
from .images import atomic_write_bytes, cache_root, image_size, list_images

log = logging.getLogger(__name__)

_SFM_VERSION = 1


@dataclass
class SfMOptions:
    """Options of the photos -> SfM pipeline."""

    matcher: Literal["exhaustive", "sequential"] = "exhaustive"
    """exhaustive: every pair (best for < ~200 unordered photos); sequential: neighbours in name
    order (video frames)."""
    sequential_overlap: int = 10
    """sequential matcher: how many following images each image is matched with."""
    max_image_size: int = 1600
    """SIFT runs on photos resized to this longest side (keypoints are scaled back)."""
    max_num_features: int = 8192
    """SIFT features kept per photo."""
    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model estimated (SIMPLE_RADIAL, RADIAL, OPENCV, PINHOLE ...)."""
    single_camera: bool | None = None
    """one camera shared by all photos; None: shared when all photos have the same size."""
    min_registered_fraction: float = 0.8
    """SfMError when fewer of the photos than this fraction are registered."""
    num_threads: int = -1
    """CPU threads for pycolmap (-1: all)."""
    seed: int = 0
    """random seed of the RANSAC / mapper."""
    use_cache: bool = True
    """reuse a cached reconstruction of the same photos and options."""

    def result_key(self) -> dict:
        d = asdict(self)
        for k in ("min_registered_fraction", "num_threads", "use_cache"):
            d.pop(k)
        return d


def photos_dir(path: Path) -> Path:
    """The folder holding the photos: ``path/images`` when it has images, else ``path``."""
    path = Path(path)
    if list_images(path / "images"):
        return path / "images"
    return path


@contextlib.contextmanager
def _quiet_pycolmap() -> Iterator[None]:
    """Raise glog's threshold while pycolmap runs (library code does not print)."""
    import pycolmap

    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _sfm_key(images: list[Path], options: SfMOptions) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"v": _SFM_VERSION, **options.result_key()}, sort_keys=True).encode())
    for p in images:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def run_sfm(images_dir: Path, out_dir: Path, images: list[Path], options: SfMOptions) -> dict:
    """Run extraction, matching and incremental mapping into ``out_dir`` (database.db and the
    largest model in sparse/0). Returns statistics; raises SfMError when nothing is registered."""
    import pycolmap

    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / "database.db"
    names = [p.name for p in images]
    if options.single_camera is None:
        single = len({image_size(p) for p in images}) == 1
    else:
        single = options.single_camera
    stats: dict = {"total": len(images), "single_camera": single}
    pycolmap.set_random_seed(options.seed)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.sift.max_num_features = options.max_num_features
    extraction.num_threads = options.num_threads
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    t0 = time.perf_counter()
    with _quiet_pycolmap():
        pycolmap.extract_features(
            db,
            images_dir,
            image_names=names,
            camera_mode=pycolmap.CameraMode.SINGLE if single else pycolmap.CameraMode.PER_IMAGE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        t1 = time.perf_counter()
        if options.matcher == "sequential":
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = options.sequential_overlap
            pycolmap.match_sequential(
                db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
            )
        elif options.matcher == "exhaustive":
            pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            raise DataError(f"unknown matcher {options.matcher!r} (exhaustive or sequential)")
        t2 = time.perf_counter()
        mapper = pycolmap.IncrementalPipelineOptions()
        mapper.num_threads = options.num_threads
        mapper.random_seed = options.seed
        mapper.min_model_size = min(3, len(images))
        recs = pycolmap.incremental_mapping(db, images_dir, out_dir / "mapper", mapper)
        t3 = time.perf_counter()
    shutil.rmtree(out_dir / "mapper", ignore_errors=True)
    stats["seconds"] = {
        "extraction": round(t1 - t0, 2),
        "matching": round(t2 - t1, 2),
        "mapping": round(t3 - t2, 2),
    }
    if not recs:
        stats.update(registered=0, mean_reprojection_error=None, num_points3D=0, unregistered=names)
        return stats
    best = max(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
    model = out_dir / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    best.write(str(model))
    reg = {best.images[i].name for i in best.reg_image_ids()}
    stats.update(
        registered=len(reg),
        mean_reprojection_error=float(best.compute_mean_reprojection_error()),
        num_points3D=int(best.num_points3D()),
        num_models=len(recs),
        unregistered=[n for n in names if n not in reg],
        cameras=[
            {
                "model": c.model.name,
                "width": c.width,
                "height": c.height,
                "params": [float(x) for x in c.params],
            }
            for c in best.cameras.values()
        ],
    )
    return stats


def load_photos(
    path: str | Path,
    *,
    downscale: int = 1,
    options: SfMOptions | None = None,
) -> Dataset:
    """Posed Dataset from a folder of photos by SfM (cached); see the module docstring.

    ``meta["sfm"]`` holds: registered, total, mean_reprojection_error (px), num_points3D,
    unregistered (names), seconds (per stage, of the run that made the cache), cached (bool),
    cache_dir.
    """
    options = options or SfMOptions()
    root = Path(path).resolve()
    images_dir = photos_dir(root)
    images = list_images(images_dir)
    if len(images) < 2:
        raise DataError(
            f"{images_dir} holds {len(images)} image(s); structure-from-motion needs at least 2 "
            "overlapping photos (png/jpg/tif)"
        )
    cache = cache_root(root)
    final = cache / f"sfm_{_sfm_key(images, options)}"
    stats_file = final / "stats.json"
    cached = options.use_cache and stats_file.is_file()
    if cached:
        stats = json.loads(stats_file.read_text())
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache))
        try:
            stats = run_sfm(images_dir, tmp, images, options)
            stats["options"] = asdict(options)
            atomic_write_bytes(tmp / "stats.json", json.dumps(stats, indent=1).encode())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    stats["cached"] = cached
    stats["cache_dir"] = str(final)

    total, registered = int(stats["total"]), int(stats["registered"])
    need = max(2, math.ceil(options.min_registered_fraction * total - 1e-9))
    if registered == 0 or not is_colmap_model(final / "sparse" / "0"):
        raise SfMError(
            f"structure-from-motion registered none of the {total} photos in {images_dir}: the "
            "photos share too few features. Take overlapping photos (each scene point in 3+ "
            "views), avoid blur and textureless surfaces, or raise max_num_features"
        )
    if registered < need:
        left = ", ".join(stats.get("unregistered", [])[:10])
        raise SfMError(
            f"structure-from-motion registered only {registered} of {total} photos in "
            f"{images_dir} (need {need} = {options.min_registered_fraction:.0%}); not registered: "
            f"{left}. Add photos that overlap those, try matcher='sequential' for video frames, "
            "or lower min_registered_fraction"
        )
    ds = load_colmap(final / "sparse" / "0", images_dir=images_dir, downscale=downscale, root=root)
    ds.meta["format"] = "photos"
    ds.meta["sfm"] = stats
    return ds
