"""Blender-synthetic scenes (the NeRF ``nerf_synthetic`` layout).

``transforms_train.json``, ``transforms_val.json``, ``transforms_test.json``, each with
``camera_angle_x`` (horizontal field of view, radians) and ``frames[].file_path`` (usually without
extension, e.g. ``./train/r_0``) / ``frames[].transform_matrix`` (OpenGL camera-to-world). Images
are RGBA PNGs, composited on ``background`` when read (default white, as the NeRF papers report).
Focal length f = W / (2 tan(camera_angle_x / 2)), principal point at the image centre.

Split: the train file's frames are the training views, the test file's the test views; the val file
is used as the test split only when there is no test file (otherwise it is not loaded).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ...errors import DataError
from ..cameras import intrinsics_matrix, opengl_c2w_to_opencv_viewmat, scale_intrinsics
from .base import Dataset, Frame
from .images import cached_images, image_size, relative_name, resolve_image_path
from .nerfstudio import read_json, validated_c2w

log = logging.getLogger(__name__)

SPLIT_FILES = ("transforms_train.json", "transforms_val.json", "transforms_test.json")


def is_blender(path: Path) -> bool:
    return (Path(path) / "transforms_train.json").is_file()


def load_blender(
    path: str | Path,
    *,
    downscale: int = 1,
    background: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
    missing_images: str = "error",
) -> Dataset:
    """Parse a Blender-synthetic folder; see the module docstring. ``missing_images`` as in the
    other parsers, but ``"error"`` by default (these sets are generated, a gap is a broken copy)."""
    root = Path(path).resolve()
    if downscale < 1 or int(downscale) != downscale:
        raise DataError(f"downscale must be a positive integer, got {downscale}")
    downscale = int(downscale)
    train_json = root / "transforms_train.json"
    if not train_json.is_file():
        raise DataError(f"{train_json} not found: a Blender-synthetic folder needs it")
    split_files = [("train", train_json)]
    if (root / "transforms_test.json").is_file():
        split_files.append(("test", root / "transforms_test.json"))
    elif (root / "transforms_val.json").is_file():
        split_files.append(("test", root / "transforms_val.json"))

    entries = []  # (split, where, c2w, src, fov_x)
    skipped: list[str] = []
    for split, jf in split_files:
        meta = read_json(jf)
        frames_in = meta.get("frames")
        if not isinstance(frames_in, list) or not frames_in:
            raise DataError(f"{jf} has no 'frames' list (or it is empty)")
        for i, fr in enumerate(frames_in):
            if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
                raise DataError(f"frame {i} of {jf} lacks file_path or transform_matrix")
            where = f"frame {i} ({fr['file_path']}) of {jf}"
            fov = fr.get("camera_angle_x", meta.get("camera_angle_x"))
            if fov is None or not (0 < float(fov) < math.pi):
                raise DataError(f"{where}: camera_angle_x missing or not in (0, pi): {fov}")
            c2w = validated_c2w(fr["transform_matrix"], where=where)
            src = resolve_image_path(root, str(fr["file_path"]))
            if src is None:
                if missing_images == "error":
                    raise DataError(f"{where}: image {root / fr['file_path']}(.png) not found")
                skipped.append(str(fr["file_path"]))
                continue
            entries.append((split, where, c2w, src, float(fov)))
    if not entries:
        raise DataError(f"no image of {root} exists (first missing: {skipped[:1]})")
    if skipped:
        log.warning("%s: %d frames without an image skipped", root, len(skipped))

    sizes = [image_size(e[3]) for e in entries]
    processed = cached_images([e[3] for e in entries], root, downscale=downscale, expect_wh=sizes)
    frames: list[Frame] = []
    train_ids: list[int] = []
    test_ids: list[int] = []
    for k, ((split, _where, c2w, src, fov), (w, h), (img_path, w2, h2)) in enumerate(
        zip(entries, sizes, processed)
    ):
        f = 0.5 * w / math.tan(0.5 * fov)
        K = intrinsics_matrix(f, f, w / 2.0, h / 2.0)
        frames.append(
            Frame(
                name=relative_name(src, root),
                viewmat=opengl_c2w_to_opencv_viewmat(c2w),
                K=scale_intrinsics(K, w2 / w, h2 / h),
                width=w2,
                height=h2,
                image_path=img_path,
            )
        )
        (train_ids if split == "train" else test_ids).append(k)

    ds = Dataset(
        root=root,
        frames=frames,
        train_ids=train_ids,
        test_ids=test_ids,
        background=None if background is None else tuple(float(c) for c in background),
    )
    ds.meta.update(format="blender", source=str(root), downscale=downscale)
    if skipped:
        ds.meta["skipped_frames"] = skipped
    return ds
