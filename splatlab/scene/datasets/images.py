"""Reading images and masks, and the on-disk cache of downscaled / undistorted copies.

Pixel convention (gsplat, COLMAP, nerfstudio): pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``, so
its centre is at ``(i + 0.5, j + 0.5)`` and the principal point of ``K`` is expressed in that frame.
OpenCV puts pixel centres at integers; calls into OpenCV shift by 0.5 px where it matters.

Cache layout: ``<cache_root>/<key>/<path of the source relative to the dataset root>.png`` where
``cache_root`` is ``$SPLATLAB_CACHE_DIR/<h>`` when that variable is set, else
``<root>/.splatlab_cache`` when the dataset folder is writable (mode bits included, so a folder
published read-only is never written, even by root), else ``~/.cache/splatlab/<h>``
(``$XDG_CACHE_HOME`` honoured), with ``<h>`` the sha1 of the resolved root, 16 hex digits. ``key`` encodes the downscale factor and a hash of the
undistortion parameters. A cached file is reused while it is newer than its source; every write is
atomic (temporary file in the same folder, then ``os.replace``). Cached copies are PNG (lossless,
keeps alpha and 16 bits).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ..cameras import scale_intrinsics

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr")
CACHE_DIRNAME = ".splatlab_cache"
_CACHE_VERSION = 2  # bump when the processing below changes, so old cached copies are not reused
# v2: undistorted images are cropped to the pixels the lens saw (no blank border)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _imread_raw(path: Path) -> np.ndarray:
    """Decode ``path`` as stored (any bit depth, alpha kept, EXIF orientation ignored, as COLMAP
    does). Channels in RGB(A) order. Raises DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataError(
            f"cannot decode image {path} ({data.size} bytes): the file is corrupt or not an "
            "image; replace it or remove it from the dataset"
        )
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(img)


def _to_float(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, None)


def _check_hw(img: np.ndarray, path: Path, expect_hw: Sequence[int] | None) -> None:
    if expect_hw is not None and tuple(img.shape[:2]) != (int(expect_hw[0]), int(expect_hw[1])):
        raise DataError(
            f"image {path} is {img.shape[1]}x{img.shape[0]} (WxH) but its camera says "
            f"{int(expect_hw[1])}x{int(expect_hw[0])}: the image was resized or the camera file "
            "does not belong to these images"
        )


def read_rgb(
    path: str | os.PathLike,
    background: Sequence[float] | None = None,
    expect_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """Read an image as RGB float32 [H, W, 3] in [0, 1].

    8- and 16-bit files are scaled by their maximum; grayscale is repeated to 3 channels; RGBA is
    composited on ``background`` (RGB in [0, 1]; black when None). ``expect_hw = (H, W)`` checks the
    size. A missing, unreadable or mismatched file raises DataError naming it.
    """
    path = Path(path)
    img = _imread_raw(path)
    _check_hw(img, path, expect_hw)
    f = _to_float(img)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    elif f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    elif f.shape[2] == 2:  # gray + alpha
        f = np.concatenate([np.repeat(f[..., :1], 3, axis=2), f[..., 1:]], axis=2)
    if f.shape[2] == 4:
        alpha = f[..., 3:4]
        bg = np.zeros(3, np.float32) if background is None else np.asarray(background, np.float32)
        f = f[..., :3] * alpha + bg.reshape(1, 1, 3) * (1.0 - alpha)
    elif f.shape[2] != 3:
        raise DataError(f"image {path} has {f.shape[2]} channels; expected 1, 3 or 4")
    return np.ascontiguousarray(np.clip(f, 0.0, 1.0), dtype=np.float32)


def read_mask(path: str | os.PathLike, expect_hw: Sequence[int] | None = None) -> np.ndarray:
    """Read a mask as bool [H, W]: nonzero = keep. For an RGBA file the alpha channel is the mask,
    for RGB any nonzero channel counts."""
    path = Path(path)
    img = _imread_raw(path)
    _check_hw(img, path, expect_hw)
    if img.ndim == 2:
        return img > 0
    if img.shape[2] in (2, 4):
        return img[..., -1] > 0
    return np.any(img > 0, axis=2)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from its header when possible."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # PIL missing or cannot parse (EXR, 16-bit TIFF...): decode fully
        img = _imread_raw(path)
        return int(img.shape[1]), int(img.shape[0])


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (the stable Frame.name), else the full path."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def resolve_image_path(base: Path, file_path: str) -> Path | None:
    """``base / file_path``, trying common extensions when ``file_path`` has none (Blender's
    ``./train/r_0``). None when nothing exists."""
    p = Path(os.path.normpath(Path(base) / file_path))  # absolute file_path stays as it is
    if p.is_file():
        return p
    for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".exr", ".tif", ".tiff"):
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    return None


# ---------------------------------------------------------------------------------------------
# distortion
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distortion:
    """A lens model to undistort into the pinhole camera with the SAME ``K``, then crop.

    Undistorting with the same ``K`` leaves blank pixels where the undistorted image looks past
    the source (pincushion lenses, k1 > 0: a 1-2 px black border at 270x480 for the fox's mild
    lens, wide blank edges for a strong one). Those pixels are the same in every view, so a
    trainer fits them with floaters and an evaluation counts them as error. Like COLMAP's
    ``image_undistorter`` (what the 3DGS papers' data goes through), :meth:`crop_box` keeps a
    rectangle whose every pixel maps inside the source image, found by greedily peeling the
    border line with the largest share of blank pixels; :func:`processed_intrinsics` gives the
    ``K`` of the cropped (and downscaled) image.

    K: (fx, fy, cx, cy) of the source image in the pixel-centre convention above.
    model: ``"opencv"`` (params k1 k2 p1 p2 [k3 [k4 k5 k6]], OpenCV's ``distCoeffs``),
    ``"opencv_fisheye"`` (params k1 k2 k3 k4, ``cv2.fisheye``), or ``"colmap:<MODEL>"`` with the full
    COLMAP parameter vector (projection done by pycolmap, so every COLMAP camera model works).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    model: str
    params: tuple[float, ...]

    @property
    def K(self) -> np.ndarray:
        """[3, 3] pinhole intrinsics of the undistorted image (pixel-centre convention)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def is_identity(self) -> bool:
        if self.model.startswith("colmap:"):
            return self.model[7:] in ("PINHOLE", "SIMPLE_PINHOLE")
        return not any(abs(p) > 0 for p in self.params)

    def key(self) -> str:
        blob = json.dumps([self.fx, self.fy, self.cx, self.cy, self.model, list(self.params)])
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def crop_box(self, width: int, height: int, multiple: int = 1) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the rectangle of the undistorted image kept, in source pixels, with
        every pixel's source position inside the source image and the size a multiple of
        ``multiple`` (the downscale factor, so downscaling stays exact)."""
        return _crop_box(self, int(width), int(height), max(1, int(multiple)))

    def maps(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Remap tables for ``cv2.remap``: for each pixel of the undistorted image, the position in
        the distorted image (OpenCV convention, integer pixel centres). Two float32 [H, W]."""
        return _distortion_maps(self, int(width), int(height))


@functools.lru_cache(maxsize=16)
def _crop_box(d: Distortion, width: int, height: int, multiple: int) -> tuple[int, int, int, int]:
    mx, my = d.maps(width, height)
    bad = ~((mx >= 0) & (mx <= width - 1) & (my >= 0) & (my <= height - 1))
    S = np.zeros((height + 1, width + 1), np.int64)  # summed-area table of the blank pixels
    S[1:, 1:] = bad.cumsum(0).cumsum(1)

    def blanks(x0: int, y0: int, x1: int, y1: int) -> int:
        return int(S[y1, x1] - S[y0, x1] - S[y1, x0] + S[y0, x0])

    x0, y0, x1, y1 = 0, 0, width, height
    while x1 - x0 > 1 and y1 - y0 > 1 and blanks(x0, y0, x1, y1) > 0:
        # peel the border line with the largest share of blank pixels
        lines = {
            "top": blanks(x0, y0, x1, y0 + 1) / (x1 - x0),
            "bottom": blanks(x0, y1 - 1, x1, y1) / (x1 - x0),
            "left": blanks(x0, y0, x0 + 1, y1) / (y1 - y0),
            "right": blanks(x1 - 1, y0, x1, y1) / (y1 - y0),
        }
        side = max(lines, key=lines.get)
        if side == "top":
            y0 += 1
        elif side == "bottom":
            y1 -= 1
        elif side == "left":
            x0 += 1
        else:
            x1 -= 1
    if blanks(x0, y0, x1, y1) > 0 or (x1 - x0) * (y1 - y0) < 0.05 * width * height:
        raise DataError(
            f"undistortion with the {d.model} lens {d.params} leaves no usable {width}x{height} "
            "image: check the distortion parameters"
        )
    x1 -= (x1 - x0) % multiple
    y1 -= (y1 - y0) % multiple
    return x0, y0, x1, y1


def processed_size(
    width: int, height: int, downscale: int, distortion: Distortion | None
) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` source image after undistortion (crop) and downscale."""
    if distortion is not None and not distortion.is_identity():
        x0, y0, x1, y1 = distortion.crop_box(width, height, downscale)
        width, height = x1 - x0, y1 - y0
    return scaled_size(width, height, downscale) if downscale > 1 else (width, height)


def processed_intrinsics(
    K: np.ndarray, width: int, height: int, downscale: int, distortion: Distortion | None
) -> np.ndarray:
    """``K`` of the processed copy (:func:`processed_size`) of a ``width`` x ``height`` source
    image: shifted by the undistortion crop, then scaled (pixel-centre convention)."""
    K = np.array(K, dtype=np.float64, copy=True)
    out_w, out_h = processed_size(width, height, downscale, distortion)
    if distortion is not None and not distortion.is_identity():
        x0, y0, x1, y1 = distortion.crop_box(width, height, downscale)
        K[0, 2] -= x0
        K[1, 2] -= y0
        width, height = x1 - x0, y1 - y0
    return scale_intrinsics(K, out_w / width, out_h / height)


@functools.lru_cache(maxsize=4)
def _distortion_maps(d: Distortion, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    # OpenCV measures pixel positions from pixel centres: shift the principal point by -0.5 for its
    # undistortion functions (same K in and out, so only the distortion centre moves).
    K_cv = np.array([[d.fx, 0, d.cx - 0.5], [0, d.fy, d.cy - 0.5], [0, 0, 1.0]])
    if d.model == "opencv":
        dist = np.asarray(d.params, np.float64)
        mx, my = cv2.initUndistortRectifyMap(K_cv, dist, None, K_cv, (width, height), cv2.CV_32FC1)
        return mx, my
    if d.model == "opencv_fisheye":
        dist = np.asarray(d.params, np.float64).reshape(4, 1)
        mx, my = cv2.fisheye.initUndistortRectifyMap(
            K_cv, dist, np.eye(3), K_cv, (width, height), cv2.CV_32FC1
        )
        return mx, my
    if d.model.startswith("colmap:"):
        import pycolmap

        cam = pycolmap.Camera(
            model=d.model[7:], width=width, height=height, params=np.asarray(d.params, np.float64)
        )
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        rays = np.stack(
            [(u.ravel() - d.cx) / d.fx, (v.ravel() - d.cy) / d.fy, np.ones(u.size)], axis=1
        )
        xy = np.asarray(cam.img_from_cam(rays, check_cheirality=False), np.float64)
        xy = np.where(np.isfinite(xy), xy, -1e6)  # rays the model cannot map stay blank
        mx = (xy[:, 0] - 0.5).reshape(height, width).astype(np.float32)
        my = (xy[:, 1] - 0.5).reshape(height, width).astype(np.float32)
        return mx, my
    raise DataError(f"unknown distortion model {d.model!r}")


def undistort_points(d: Distortion, pixels: np.ndarray) -> np.ndarray:
    """Distorted pixel positions [N, 2] -> positions in the undistorted (same-K) image [N, 2]
    (OpenCV's iterative solver; pixel-centre convention in and out). For the ``opencv`` models."""
    K_cv = np.array([[d.fx, 0, d.cx - 0.5], [0, d.fy, d.cy - 0.5], [0, 0, 1.0]])
    pts = (np.asarray(pixels, np.float64) - 0.5).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if d.model == "opencv":
        out = cv2.undistortPoints(pts, K_cv, np.asarray(d.params), None, None, K_cv, crit)
    elif d.model == "opencv_fisheye":
        D = np.asarray(d.params, np.float64).reshape(4, 1)
        out = cv2.fisheye.undistortPoints(pts, K_cv, D, None, np.eye(3), K_cv, crit)
    else:
        raise DataError(f"undistort_points supports the opencv models, not {d.model!r}")
    return out.reshape(-1, 2) + 0.5


# ---------------------------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------------------------


def _writable(path: Path) -> bool:
    """Writable by this process AND marked writable in its mode bits: root bypasses permissions,
    but a folder published read-only (like ../shared/data) must stay untouched."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK) and bool(stat.S_IMODE(mode) & 0o222)


def _make_writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return _writable(path)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/splatlab``, else ``~/.cache/splatlab``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "splatlab"


def cache_root(root: str | os.PathLike) -> Path:
    """Folder for derived files of the dataset at ``root``.

    ``$SPLATLAB_CACHE_DIR/<hash of root>`` when that variable is set; else ``<root>/.splatlab_cache``
    when ``root`` is writable; else ``user_cache_dir()/<hash of root>``.
    """
    root = Path(root).resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    if os.environ.get("SPLATLAB_CACHE_DIR"):
        forced = Path(os.environ["SPLATLAB_CACHE_DIR"]).expanduser() / digest
        if not _make_writable_dir(forced):
            raise DataError(f"SPLATLAB_CACHE_DIR: cannot create the writable folder {forced}")
        return forced
    local = root / CACHE_DIRNAME
    if local.is_dir() and _writable(local):
        return local
    if _writable(root) and _make_writable_dir(local):
        return local
    fallback = user_cache_dir() / digest
    if not _make_writable_dir(fallback):
        raise DataError(
            f"no writable cache folder for {root}: neither {local} nor {fallback} can be "
            "created; set SPLATLAB_CACHE_DIR to a writable folder"
        )
    return fallback


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def scaled_size(width: int, height: int, downscale: int) -> tuple[int, int]:
    """Size of an image downscaled by the integer ``downscale``: (round(W/d), round(H/d)), >= 1."""
    return max(1, round(width / downscale)), max(1, round(height / downscale))


def _resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize; RGBA is resized with premultiplied alpha, so compositing the result on
    any background equals averaging the composited full-resolution pixels."""
    if img.ndim == 3 and img.shape[2] in (2, 4):
        dtype = img.dtype
        f = img.astype(np.float32)
        amax = 255.0 if dtype == np.uint8 else 65535.0 if dtype == np.uint16 else 1.0
        a = f[..., -1:] / amax
        pre = np.concatenate([f[..., :-1] * a, a], axis=2)
        small = cv2.resize(pre, size, interpolation=cv2.INTER_AREA)
        if small.ndim == 2:
            small = small[..., None]
        a_s = small[..., -1:]
        col = np.where(a_s > 1e-8, small[..., :-1] / np.maximum(a_s, 1e-8), 0.0)
        out = np.concatenate([col, a_s * amax], axis=2)
        if np.issubdtype(dtype, np.integer):
            out = np.clip(np.rint(out), 0, amax)
        return out.astype(dtype)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def process_image(
    src: Path, downscale: int = 1, distortion: Distortion | None = None, kind: str = "image"
) -> np.ndarray:
    """Undistort (same K, then the crop of :meth:`Distortion.crop_box`) and downscale by
    ``downscale`` one image; returns the raw array (RGB(A), source dtype). Images use bilinear
    remapping and area averaging; masks (``kind="mask"``) nearest neighbour, so they stay binary."""
    img = _imread_raw(src)
    h, w = img.shape[:2]
    if distortion is not None and not distortion.is_identity():
        mx, my = distortion.maps(w, h)
        interp = cv2.INTER_NEAREST if kind == "mask" else cv2.INTER_LINEAR
        img = cv2.remap(img, mx, my, interp, borderMode=cv2.BORDER_CONSTANT)
        x0, y0, x1, y1 = distortion.crop_box(w, h, downscale)
        img = np.ascontiguousarray(img[y0:y1, x0:x1])
        h, w = img.shape[:2]
    if downscale > 1:
        size = scaled_size(w, h, downscale)
        if kind == "mask":
            img = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST)
        else:
            img = _resize_area(img, size)
    return img


def _encode_png(img: np.ndarray, path: Path) -> bytes:
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    if img.dtype not in (np.uint8, np.uint16):
        img = np.clip(np.rint(np.clip(img, 0, 1) * 65535), 0, 65535).astype(np.uint16)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise DataError(f"could not encode the cached copy {path}")
    return buf.tobytes()


def cache_key(downscale: int, distortion: Distortion | None, kind: str = "image") -> str:
    """Name of the cache sub-folder for one processing setting."""
    parts = [f"v{_CACHE_VERSION}", f"d{int(downscale)}"]
    if distortion is not None and not distortion.is_identity():
        parts.append(f"u{distortion.key()}")
    if kind != "image":
        parts.append(kind)
    return "_".join(parts)


def cached_image(
    src: Path,
    root: Path,
    *,
    downscale: int = 1,
    distortion: Distortion | None = None,
    cache_dir: Path | None = None,
    expect_wh: tuple[int, int] | None = None,
    kind: str = "image",
) -> tuple[Path, int, int]:
    """Path and (width, height) of ``src`` after undistortion (with its crop) and downscale;
    :func:`processed_intrinsics` gives the ``K`` that goes with it.

    Without either operation this is ``src`` itself. Otherwise the processed copy is written once
    into the cache (see the module docstring) and reused. ``expect_wh`` checks the size of the
    SOURCE image (the size its camera was calibrated for); a mismatch raises DataError.
    """
    src = Path(src)
    w, h = image_size(src)
    if expect_wh is not None and (w, h) != (int(expect_wh[0]), int(expect_wh[1])):
        raise DataError(
            f"image {src} is {w}x{h} (WxH) but its camera says {int(expect_wh[0])}x"
            f"{int(expect_wh[1])}: the image was resized or the camera file does not belong to it"
        )
    needs_undistort = distortion is not None and not distortion.is_identity()
    if downscale == 1 and not needs_undistort:
        return src, w, h
    base = (cache_dir or cache_root(root)) / cache_key(downscale, distortion, kind)
    try:
        rel = src.resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = Path(hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:12]) / src.name
    dst = base / rel.with_name(rel.name + ".png")
    ow, oh = processed_size(w, h, downscale, distortion)
    if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        if image_size(dst) == (ow, oh):
            return dst, ow, oh
    img = process_image(src, downscale, distortion, kind)
    if (img.shape[1], img.shape[0]) != (ow, oh):  # header and decoded size disagree
        raise DataError(f"image {src}: decoded size differs from its header; re-save the file")
    atomic_write_bytes(dst, _encode_png(img, dst))
    log.debug("cached %s -> %s", src, dst)
    return dst, ow, oh


def cached_images(
    srcs: Iterable[Path],
    root: Path,
    *,
    downscale: int = 1,
    distortions: Sequence[Distortion | None] | Distortion | None = None,
    expect_wh: Sequence[tuple[int, int] | None] | None = None,
    kind: str = "image",
    num_workers: int | None = None,
) -> list[tuple[Path, int, int]]:
    """:func:`cached_image` for many files, in a thread pool (OpenCV releases the GIL)."""
    srcs = [Path(s) for s in srcs]
    if distortions is None or isinstance(distortions, Distortion):
        distortions = [distortions] * len(srcs)
    if expect_wh is None:
        expect_wh = [None] * len(srcs)
    if len(distortions) != len(srcs) or len(expect_wh) != len(srcs):
        raise ValueError("one distortion and one expected size per image")
    needs_cache = downscale > 1 or any(d is not None and not d.is_identity() for d in distortions)
    cache_dir = cache_root(root) if needs_cache else None
    workers = num_workers or min(8, os.cpu_count() or 1)

    def one(i: int) -> tuple[Path, int, int]:
        return cached_image(
            srcs[i],
            root,
            downscale=downscale,
            distortion=distortions[i],
            cache_dir=cache_dir,
            expect_wh=expect_wh[i],
            kind=kind,
        )

    if workers <= 1 or len(srcs) <= 1:
        return [one(i) for i in range(len(srcs))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(srcs))))
