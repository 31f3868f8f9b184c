"""nerfstudio / instant-ngp ``transforms.json``.

Fields read (per frame values override the global ones):

* ``frames[].file_path`` (with or without extension), ``frames[].transform_matrix`` (camera-to-world
  in the OpenGL convention: x right, y up, z backward), optional ``frames[].mask_path``;
* intrinsics ``fl_x fl_y cx cy w h`` (``camera_angle_x`` / ``camera_angle_y`` as a fallback for the
  focal lengths, the image size read from the file when ``w h`` are absent, ``cx cy`` default to the
  image centre);
* distortion ``k1 k2 k3 k4 p1 p2`` with ``camera_model`` ``OPENCV`` (default) or ``OPENCV_FISHEYE``
  (instant-ngp: ``is_fisheye``): images are undistorted with OpenCV into the pinhole camera with the
  SAME K, cached (see ``images.py``);
* ``applied_transform`` (3x4, nerfstudio's ``ns-process-data``): the rigid map from the original
  (COLMAP) world to the file's world; the ORIGINAL world is the one ``Dataset.transform`` starts
  from, as nerfstudio's own dataparser transform does;
* ``ply_file_path``: points (x y z [red green blue]) in the file's world;
* ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when present define the split;
* ``aabb_scale``, ``scale``, ``offset`` (instant-ngp) are kept in ``Dataset.meta``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...errors import DataError
from ..cameras import intrinsics_matrix, opengl_c2w_to_opencv_viewmat
from .base import Dataset, Frame
from .images import (
    Distortion,
    cached_images,
    image_size,
    processed_intrinsics,
    relative_name,
    resolve_image_path,
)

log = logging.getLogger(__name__)

MissingPolicy = Literal["skip", "error"]


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object file, with DataErrors that name it."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path} must hold a JSON object, not {type(meta).__name__}")
    return meta


def validated_c2w(matrix: Any, *, where: str, tol: float = 1e-2) -> np.ndarray:
    """A camera-to-world matrix [4, 4] from a [4, 4] / [3, 4] list, checked to be finite and rigid
    (rotation part orthonormal within ``tol``, det +1, last row 0 0 0 1), then re-orthonormalised
    (SVD) so the returned rotation is exact. ``where`` names the frame and file in errors."""
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: transform_matrix is not a numeric matrix ({e})") from e
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]], axis=0)
    if m.shape != (4, 4):
        raise DataError(f"{where}: transform_matrix must be 4x4 or 3x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{where}: transform_matrix contains NaN or inf; fix or remove this frame")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(f"{where}: transform_matrix last row is {m[3].tolist()}, not [0, 0, 0, 1]")
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if err > tol or det <= 0:
        raise DataError(
            f"{where}: transform_matrix is not a rigid camera pose (|R^T R - I| = {err:.3g}, "
            f"det R = {det:.3g}); camera-to-world matrices must be rotations plus translations"
        )
    U, _, Vt = np.linalg.svd(R)
    out = m.copy()
    out[:3, :3] = U @ Vt
    return out


def _get(frame: dict, meta: dict, key: str, default: Any = None) -> Any:
    if key in frame:
        return frame[key]
    return meta.get(key, default)


def _num(frame: dict, meta: dict, key: str, where: str, default: Any = None) -> Any:
    """A numeric entry (frame first, then the top level) as float; DataError naming the file and
    the key for a string, list or other non-number."""
    v = _get(frame, meta, key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{where}: {key!r} must be a number, got {str(v)[:40]!r}")
    return float(v)


def _distortion_of(
    frame: dict, meta: dict, fx: float, fy: float, cx: float, cy: float, where: str
) -> Distortion | None:
    model = str(_get(frame, meta, "camera_model", "OPENCV")).upper()
    if _get(frame, meta, "is_fisheye", False):
        model = "OPENCV_FISHEYE"
    k = [_num(frame, meta, f"k{i}", where, 0.0) for i in (1, 2, 3, 4)]
    p = [_num(frame, meta, f"p{i}", where, 0.0) for i in (1, 2)]
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return None
    if model == "OPENCV":
        params = (k[0], k[1], p[0], p[1], k[2]) if k[3] == 0 else (k[0], k[1], p[0], p[1], *k[2:])
        if not any(params):
            return None
        return Distortion(fx, fy, cx, cy, "opencv", tuple(params))
    if model == "OPENCV_FISHEYE":
        return Distortion(fx, fy, cx, cy, "opencv_fisheye", tuple(k))
    raise DataError(
        f"{where}: camera_model {model!r} is not supported (use OPENCV, OPENCV_FISHEYE or PINHOLE)"
    )


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points [P, 3] float64 and colours [P, 3] uint8 (or None) of the vertices of a PLY file."""
    from plyfile import PlyData

    if not path.is_file():
        raise DataError(f"point cloud file not found: {path}")
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"]
        xyz = np.stack([np.asarray(v[c], np.float64) for c in ("x", "y", "z")], axis=1)
    except Exception as e:  # plyfile raises several types for bad files
        raise DataError(f"cannot read points from {path}: {e}") from e
    names = v.data.dtype.names or ()
    rgb = None
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([np.asarray(v[c]) for c in ("red", "green", "blue")], axis=1)
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return xyz, rgb


def load_nerfstudio(
    path: str | Path,
    *,
    downscale: int = 1,
    missing_images: MissingPolicy = "skip",
) -> Dataset:
    """Parse a nerfstudio / instant-ngp ``transforms.json`` (``path`` is the file or its folder).

    Returns a Dataset in the file's world mapped back to the original world by ``transform``
    (identity unless ``applied_transform`` is present), not normalised, split only when the file
    names one. ``missing_images="skip"`` drops frames whose image file does not exist (logged,
    listed in ``meta["skipped_frames"]``; an error if none is left); ``"error"`` raises.
    """
    path = Path(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    root = json_path.parent.resolve()
    meta = read_json(json_path)
    frames_in = meta.get("frames")
    if not isinstance(frames_in, list) or not frames_in:
        raise DataError(
            f"{json_path} has no 'frames' list (or it is empty): a transforms.json needs "
            "frames[].file_path and frames[].transform_matrix"
        )
    if downscale < 1 or int(downscale) != downscale:
        raise DataError(f"downscale must be a positive integer, got {downscale}")
    downscale = int(downscale)

    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, fr in enumerate(frames_in):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(f"frame {i} of {json_path} lacks file_path or transform_matrix")
        where = f"frame {i} ({fr['file_path']}) of {json_path}"
        c2w = validated_c2w(fr["transform_matrix"], where=where)
        src = resolve_image_path(root, str(fr["file_path"]))
        if src is None:
            if missing_images == "error":
                raise DataError(
                    f"{where}: image file {root / fr['file_path']} not found (also tried common "
                    "extensions); restore it or remove the frame"
                )
            skipped.append(str(fr["file_path"]))
            continue
        mask = None
        if _get(fr, {}, "mask_path"):
            mask = resolve_image_path(root, str(fr["mask_path"]))
            if mask is None:
                raise DataError(f"{where}: mask file {root / fr['mask_path']} not found")
        entries.append({"i": i, "frame": fr, "where": where, "c2w": c2w, "src": src, "mask": mask})
    if skipped:
        log.warning(
            "%s: %d of %d frames have no image file and are skipped (%s%s)",
            json_path,
            len(skipped),
            len(frames_in),
            ", ".join(skipped[:5]),
            ", ..." if len(skipped) > 5 else "",
        )
    if not entries:
        raise DataError(
            f"none of the {len(frames_in)} images listed in {json_path} exists (first: "
            f"{root / str(frames_in[0]['file_path'])}); check the file_path entries"
        )

    distortions: list[Distortion | None] = []
    pinholes: list[tuple[np.ndarray, int, int]] = []
    for e in entries:
        fr, where = e["frame"], e["where"]
        w, h = _num(fr, meta, "w", where), _num(fr, meta, "h", where)
        if w is None or h is None:
            w, h = image_size(e["src"])
        w, h = int(round(float(w))), int(round(float(h)))
        fx, fy = _num(fr, meta, "fl_x", where), _num(fr, meta, "fl_y", where)
        if fx is None and _get(fr, meta, "camera_angle_x") is not None:
            fx = 0.5 * w / math.tan(0.5 * _num(fr, meta, "camera_angle_x", where))
        if fy is None and _get(fr, meta, "camera_angle_y") is not None:
            fy = 0.5 * h / math.tan(0.5 * _num(fr, meta, "camera_angle_y", where))
        if fx is None and fy is None:
            raise DataError(f"{where}: no focal length (fl_x/fl_y or camera_angle_x)")
        fx = float(fx if fx is not None else fy)
        fy = float(fy if fy is not None else fx)
        cx = _num(fr, meta, "cx", where, w / 2.0)
        cy = _num(fr, meta, "cy", where, h / 2.0)
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
            raise DataError(f"{where}: invalid intrinsics fl_x={fx} fl_y={fy} cx={cx} cy={cy}")
        distortions.append(_distortion_of(fr, meta, fx, fy, cx, cy, where))
        pinholes.append((intrinsics_matrix(fx, fy, cx, cy), w, h))

    processed = cached_images(
        [e["src"] for e in entries],
        root,
        downscale=downscale,
        distortions=distortions,
        expect_wh=[(w, h) for _, w, h in pinholes],
    )
    masks_needed = [k for k, e in enumerate(entries) if e["mask"] is not None]
    mask_out: dict[int, Path] = {}
    if masks_needed:
        outs = cached_images(
            [entries[k]["mask"] for k in masks_needed],
            root,
            downscale=downscale,
            distortions=[distortions[k] for k in masks_needed],
            expect_wh=[pinholes[k][1:] for k in masks_needed],
            kind="mask",
        )
        mask_out = {k: o[0] for k, o in zip(masks_needed, outs)}

    frames: list[Frame] = []
    for k, (e, (K, w, h), (img_path, w2, h2)) in enumerate(zip(entries, pinholes, processed)):
        K2 = processed_intrinsics(K, w, h, downscale, distortions[k])
        frames.append(
            Frame(
                name=relative_name(e["src"], root),
                viewmat=opengl_c2w_to_opencv_viewmat(e["c2w"]),
                K=K2,
                width=w2,
                height=h2,
                image_path=img_path,
                mask_path=mask_out.get(k),
            )
        )

    ds = Dataset(root=root, frames=frames)
    ds.meta["format"] = "nerfstudio"
    ds.meta["source"] = str(json_path)
    ds.meta["downscale"] = downscale
    if skipped:
        ds.meta["skipped_frames"] = skipped
    for key in ("aabb_scale", "scale", "offset"):
        if key in meta:
            ds.meta[key] = meta[key]

    if meta.get("ply_file_path"):
        xyz, rgb = read_ply_points(root / str(meta["ply_file_path"]))
        ds.points = xyz.astype(np.float32)
        ds.points_rgb = rgb

    if "applied_transform" in meta:
        A = validated_c2w(meta["applied_transform"], where=f"applied_transform of {json_path}")
        ds.transform = A  # original (pre-applied) world -> file world
        ds.meta["applied_transform"] = A[:3].tolist()

    names = [f.name for f in frames]
    split = _split_from_filenames(meta, names, root)
    if split is not None:
        ds.train_ids, ds.test_ids = split
    return ds


def _split_from_filenames(
    meta: dict, names: list[str], root: Path
) -> tuple[list[int], list[int]] | None:
    """nerfstudio's optional ``train_filenames`` / ``test_filenames`` (``val_filenames`` as the
    test list when there is no test list)."""
    if "train_filenames" not in meta:
        return None
    test_key = "test_filenames" if "test_filenames" in meta else "val_filenames"

    def norm(p: str) -> str:
        q = resolve_image_path(root, p)
        return relative_name(q, root) if q is not None else str(Path(p))

    train = {norm(p) for p in meta["train_filenames"]}
    test = {norm(p) for p in meta.get(test_key, [])}
    return (
        [i for i, n in enumerate(names) if n in train],
        [i for i, n in enumerate(names) if n in test],
    )
