"""COLMAP sparse models (binary or text), read with ``pycolmap.Reconstruction``.

Layouts found: ``<root>/sparse/0``, ``<root>/sparse``, or the model folder itself (then the images
are looked for in ``<model>/../../images`` and ``<model>/../images``). Image names are relative to
the images folder. ``PINHOLE`` / ``SIMPLE_PINHOLE`` cameras are used as they are; every other model
(``SIMPLE_RADIAL``, ``RADIAL``, ``OPENCV``, ``FULL_OPENCV``, fisheye models ...) is undistorted into
the pinhole camera with the same focal lengths and principal point (pycolmap projects through the
model, OpenCV remaps), and the undistorted copies are cached (see ``images.py``).

COLMAP poses ``cam_from_world`` are already OpenCV world-to-camera matrices. Frames are sorted by
image name, so the every-n-th test split matches the 3DGS papers. ``Frame.name`` is the image path
relative to the dataset root (``images/<name in the model>``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import DataError
from .base import Dataset, Frame
from .images import Distortion, cached_images, processed_intrinsics, relative_name

log = logging.getLogger(__name__)

_MODEL_FILES = ("cameras", "images")


def is_colmap_model(folder: Path) -> bool:
    """True when ``folder`` holds cameras.{bin,txt} and images.{bin,txt}."""
    folder = Path(folder)
    return all(
        (folder / f"{name}.bin").is_file() or (folder / f"{name}.txt").is_file()
        for name in _MODEL_FILES
    )


def model_candidates(path: Path) -> list[Path]:
    """The folders :func:`find_colmap_model` looks at, in order."""
    path = Path(path)
    cands = [path, path / "sparse" / "0", path / "sparse", path / "colmap" / "sparse" / "0"]
    sparse = path / "sparse"
    if sparse.is_dir():  # sparse/1, sparse/2 ... after sparse/0
        cands += sorted(p for p in sparse.iterdir() if p.is_dir() and p.name != "0")
    return cands


def find_colmap_model(path: Path) -> Path | None:
    """The sparse model folder for a dataset root or a model folder, or None."""
    for cand in model_candidates(path):
        if is_colmap_model(cand):
            return cand
    return None


def _find_images_dir(path: Path, model_dir: Path) -> Path | None:
    for cand in (path / "images", model_dir.parent.parent / "images", model_dir.parent / "images"):
        if cand.is_dir():
            return cand
    return None


def read_reconstruction(model_dir: Path):  # -> pycolmap.Reconstruction
    """Read a COLMAP model with pycolmap, with DataErrors that name the folder."""
    import pycolmap

    try:
        return pycolmap.Reconstruction(str(model_dir))
    except Exception as e:  # pycolmap raises ValueError/RuntimeError with its own message
        raise DataError(f"cannot read the COLMAP model in {model_dir}: {e}") from e


def _cam_from_world(image) -> np.ndarray:
    cfw = image.cam_from_world
    if callable(cfw):  # pycolmap >= 3.12: a method (poses live on frames/rigs)
        cfw = cfw()
    m = np.eye(4)
    m[:3, :] = np.asarray(cfw.matrix(), np.float64)
    return m


def _reg_image_ids(rec) -> list[int]:
    if hasattr(rec, "reg_image_ids"):
        return list(rec.reg_image_ids())
    return [i for i, im in rec.images.items() if getattr(im, "registered", False)]


def camera_distortion(camera) -> tuple[np.ndarray, Distortion | None]:
    """Pinhole K [3, 3] of a pycolmap camera and the Distortion to remove (None for pinholes)."""
    K = np.asarray(camera.calibration_matrix(), np.float64)
    name = camera.model.name if hasattr(camera.model, "name") else str(camera.model)
    if name in ("PINHOLE", "SIMPLE_PINHOLE"):
        return K, None
    params = tuple(float(p) for p in np.asarray(camera.params, np.float64))
    d = Distortion(K[0, 0], K[1, 1], K[0, 2], K[1, 2], f"colmap:{name}", params)
    return K, d


def load_colmap(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    downscale: int = 1,
    missing_images: str = "skip",
    root: str | Path | None = None,
) -> Dataset:
    """Parse a COLMAP sparse model.

    path: a dataset root (with ``sparse/0`` or ``sparse``) or the model folder itself.
    images_dir: where the images named in the model are (default: found next to the model).
    missing_images: ``"skip"`` drops registered images whose file is missing (logged, listed in
    ``meta["skipped_frames"]``, an error when none is left), ``"error"`` raises.
    root: the dataset root recorded in the Dataset and used for the cache (default: the parent of
    the images folder).
    """
    path = Path(path)
    if downscale < 1 or int(downscale) != downscale:
        raise DataError(f"downscale must be a positive integer, got {downscale}")
    downscale = int(downscale)
    model_dir = find_colmap_model(path)
    if model_dir is None:
        looked = ", ".join(str(c) for c in model_candidates(path)[:4])
        raise DataError(
            f"no COLMAP model (cameras.bin/.txt + images.bin/.txt) found; looked in {looked}"
        )
    images_dir = Path(images_dir) if images_dir is not None else _find_images_dir(path, model_dir)
    if images_dir is None or not images_dir.is_dir():
        raise DataError(
            f"the images of the COLMAP model {model_dir} were not found (looked for an images/ "
            "folder next to it); pass images_dir"
        )
    images_dir = images_dir.resolve()
    root = Path(root).resolve() if root is not None else images_dir.parent
    rec = read_reconstruction(model_dir)
    reg_ids = _reg_image_ids(rec)
    if not reg_ids:
        raise DataError(
            f"the COLMAP model in {model_dir} has no registered images "
            f"({rec.num_images()} images, {rec.num_cameras()} cameras); rerun the mapper"
        )
    images = sorted((rec.images[i] for i in reg_ids), key=lambda im: im.name)

    srcs: list[Path] = []
    entries = []
    skipped: list[str] = []
    for im in images:
        src = images_dir / im.name
        if not src.is_file():
            if missing_images == "error":
                raise DataError(
                    f"image {src} of the COLMAP model {model_dir} not found; restore it or pass "
                    "the right images_dir"
                )
            skipped.append(im.name)
            continue
        srcs.append(src)
        entries.append(im)
    if skipped:
        log.warning(
            "%s: %d of %d registered images are missing and skipped (%s)",
            model_dir,
            len(skipped),
            len(images),
            ", ".join(skipped[:5]),
        )
    if not entries:
        raise DataError(
            f"none of the {len(images)} registered images of {model_dir} exists in {images_dir} "
            f"(first: {images_dir / images[0].name}); pass the right images_dir"
        )

    cams = {cid: camera_distortion(cam) for cid, cam in rec.cameras.items()}
    processed = cached_images(
        srcs,
        root,
        downscale=downscale,
        distortions=[cams[im.camera_id][1] for im in entries],
        expect_wh=[
            (rec.cameras[im.camera_id].width, rec.cameras[im.camera_id].height) for im in entries
        ],
    )
    frames: list[Frame] = []
    for im, (img_path, w2, h2) in zip(entries, processed):
        cam = rec.cameras[im.camera_id]
        K = cams[im.camera_id][0]
        frames.append(
            Frame(
                name=relative_name(images_dir / im.name, root),
                viewmat=_cam_from_world(im),
                K=processed_intrinsics(K, cam.width, cam.height, downscale, cams[im.camera_id][1]),
                width=w2,
                height=h2,
                image_path=img_path,
            )
        )

    ds = Dataset(root=root, frames=frames)
    if rec.num_points3D() > 0:
        pts = [rec.points3D[i] for i in sorted(rec.points3D.keys())]  # by id: stable
        ds.points = np.array([p.xyz for p in pts], np.float32).reshape(-1, 3)
        ds.points_rgb = np.array([p.color for p in pts], np.uint8).reshape(-1, 3)
    ds.meta.update(
        format="colmap",
        source=str(model_dir),
        images_dir=str(images_dir),
        downscale=downscale,
        camera_models=sorted({cam.model.name for cam in rec.cameras.values()}),
        num_registered=len(reg_ids),
        num_images_in_model=rec.num_images(),
    )
    if skipped:
        ds.meta["skipped_frames"] = skipped
    return ds
