"""Rate-distortion harness shared by the compress family: Bjontegaard deltas, image anchors and
the RD figure.

Bjontegaard deltas (VCEG-M33, Bjontegaard 2001): each RD curve is turned into log10(rate) as a
function of PSNR (BD-rate) or PSNR as a function of log10(rate) (BD-PSNR), interpolated, and the
difference of the two interpolants is averaged over the interval where both curves are defined.
Interpolation: ``"pchip"`` (default) is the piecewise cubic Hermite interpolation (scipy's
PchipInterpolator, monotone, through every point) that the later VCEG / JVET reference sheets use;
``"cubic"`` is the original least-squares cubic polynomial fit (needs >= 4 points). BD-rate is
``(10^mean(delta log10 rate) - 1) * 100`` percent: negative means the test codec needs fewer bits
for the same PSNR.

Anchors (rates always from the bytes of the file each tool writes, decoded by the same library):
JPEG (Pillow / libjpeg, 4:2:0), WebP (Pillow / libwebp, lossy), AVIF (Pillow's bundled libavif,
4:4:4), HEVC intra (pillow-heif: libheif + x265, 4:4:4, HEIF container) and JPEG XL (Debian
``libjxl-tools``: ``cjxl -q Q``, ``djxl``).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...errors import DataError, SplatlabError

__all__ = [
    "ToolNotFoundError",
    "RDPoint",
    "ANCHORS",
    "DEFAULT_QUALITIES",
    "bd_rate",
    "bd_psnr",
    "psnr",
    "ms_ssim",
    "anchor_point",
    "anchor_curve",
    "rd_figure",
]

Interp = Literal["pchip", "cubic"]


class ToolNotFoundError(SplatlabError, FileNotFoundError):
    """A command-line codec an anchor needs is not installed (the message says how to install it)."""


# ----------------------------------------------------------------------------- Bjontegaard


def _prepare(rate: Sequence[float], dist: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    if r.shape != d.shape or r.ndim != 1 or r.size < 2:
        raise DataError(f"an RD curve needs >= 2 (rate, PSNR) pairs of equal length, got {r.shape} {d.shape}")
    if np.any(r <= 0) or not np.all(np.isfinite(d)):
        raise DataError("RD curve rates must be > 0 and PSNRs finite")
    return np.log10(r), d


def _mean_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, interp: Interp) -> float:
    """Mean of y2(x) - y1(x) over the overlap of the x ranges."""
    lo = max(x1.min(), x2.min())
    hi = min(x1.max(), x2.max())
    if hi <= lo:
        raise DataError("the RD curves do not overlap; BD metrics are undefined")
    if interp == "cubic":
        if min(x1.size, x2.size) < 4:
            raise DataError("the cubic Bjontegaard fit needs >= 4 points per curve; use interp='pchip'")
        i1 = np.polyint(np.polyfit(x1, y1, 3))
        i2 = np.polyint(np.polyfit(x2, y2, 3))
        a1 = np.polyval(i1, hi) - np.polyval(i1, lo)
        a2 = np.polyval(i2, hi) - np.polyval(i2, lo)
        return float((a2 - a1) / (hi - lo))
    from scipy.interpolate import PchipInterpolator

    def interp_fn(x: np.ndarray, y: np.ndarray) -> PchipInterpolator:
        o = np.argsort(x)
        xs, ys = x[o], y[o]
        if np.any(np.diff(xs) <= 0):
            raise DataError("an RD curve has repeated abscissae; BD metrics need distinct points")
        return PchipInterpolator(xs, ys)

    f1, f2 = interp_fn(x1, y1), interp_fn(x2, y2)
    return float((f2.integrate(lo, hi) - f1.integrate(lo, hi)) / (hi - lo))


def bd_rate(rate_ref: Sequence[float], psnr_ref: Sequence[float], rate_test: Sequence[float],
            psnr_test: Sequence[float], interp: Interp = "pchip") -> float:
    """Bjontegaard delta rate of the test curve against the reference, in percent."""
    lr1, d1 = _prepare(rate_ref, psnr_ref)
    lr2, d2 = _prepare(rate_test, psnr_test)
    return (10.0 ** _mean_gap(d1, lr1, d2, lr2, interp) - 1.0) * 100.0


def bd_psnr(rate_ref: Sequence[float], psnr_ref: Sequence[float], rate_test: Sequence[float],
            psnr_test: Sequence[float], interp: Interp = "pchip") -> float:
    """Bjontegaard delta PSNR (dB) of the test curve against the reference."""
    lr1, d1 = _prepare(rate_ref, psnr_ref)
    lr2, d2 = _prepare(rate_test, psnr_test)
    return _mean_gap(lr1, d1, lr2, d2, interp)


# ----------------------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images (peak 255)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (torchmetrics, 11x11 Gaussian window, the standard 5 scale weights) of two uint8
    [H, W, 3] images; smaller images use the first scales that fit torchmetrics' rule for n
    scales (side // (n - 1)^2 > 10 and the coarsest scale wider than the window's padding: 5 scales
    from 176 px, 4 from 99, 3 from 48, 2 from 12),
    weights renormalised, 1 scale (plain SSIM) below."""
    import torch
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure as msssim,
    )

    betas = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    side = min(a.shape[0], a.shape[1])
    n = 1
    while n < 5 and side // n**2 > 11 - 1 and side // 2**n > 11 // 2:
        n += 1
    bw = tuple(x / sum(betas[:n]) for x in betas[:n])
    ta = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double() / 255
    tb = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].double() / 255
    return float(msssim(ta, tb, data_range=1.0, betas=bw, normalize="relu"))


# ----------------------------------------------------------------------------- anchors


@dataclass
class RDPoint:
    """One coded image."""

    codec: str
    quality: float
    num_bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pil(fmt: str, **kw: Any) -> Callable[[np.ndarray, float], bytes]:
    def enc(img: np.ndarray, q: float) -> bytes:
        from PIL import Image

        if fmt == "HEIF":
            import pillow_heif

            pillow_heif.register_heif_opener()
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, quality=int(q), **kw)
        return buf.getvalue()

    return enc


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        import pillow_heif

        pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _need(tool: str, package: str = "libjxl-tools") -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolNotFoundError(f"{tool} is not installed; install it: apt-get install {package}")
    return path


def _jxl_encode(img: np.ndarray, q: float) -> bytes:
    from PIL import Image

    cjxl = _need("cjxl")
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.png", Path(d) / "out.jxl"
        Image.fromarray(img).save(src)
        subprocess.run([cjxl, str(src), str(dst), "-q", str(q), "--quiet"], check=True,
                       capture_output=True)
        return dst.read_bytes()


def _jxl_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    djxl = _need("djxl")
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.jxl", Path(d) / "out.png"
        src.write_bytes(data)
        subprocess.run([djxl, str(src), str(dst), "--quiet"], check=True, capture_output=True)
        with Image.open(dst) as im:
            return np.asarray(im.convert("RGB"))


ANCHORS: dict[str, tuple[Callable[[np.ndarray, float], bytes], Callable[[bytes], np.ndarray]]] = {
    "JPEG": (_pil("JPEG"), _pil_decode),
    "WebP": (_pil("WEBP", method=6), _pil_decode),
    "AVIF": (_pil("AVIF", subsampling="4:4:4", speed=4), _pil_decode),
    "HEVC": (_pil("HEIF", chroma=444), _pil_decode),
    "JPEG XL": (_jxl_encode, _jxl_decode),
}
"""name -> (encode(image uint8 [H, W, 3], quality) -> file bytes, decode(bytes) -> image)."""

DEFAULT_QUALITIES: dict[str, tuple[float, ...]] = {
    "JPEG": (10, 25, 40, 60, 80, 92),
    "WebP": (5, 20, 40, 60, 80, 92),
    "AVIF": (10, 25, 40, 55, 70, 85),
    "HEVC": (10, 25, 40, 55, 70, 85),
    "JPEG XL": (15, 30, 45, 60, 75, 90),
}


def anchor_point(codec: str, image: np.ndarray, quality: float) -> tuple[RDPoint, bytes, np.ndarray]:
    """Code ``image`` (uint8 [H, W, 3]) with an anchor. Returns (point, file bytes, decoded)."""
    if codec not in ANCHORS:
        raise DataError(f"unknown anchor {codec!r}; choose one of {', '.join(ANCHORS)}")
    enc, dec = ANCHORS[codec]
    t0 = time.perf_counter()
    data = enc(image, quality)
    t1 = time.perf_counter()
    out = dec(data)
    t2 = time.perf_counter()
    h, w = image.shape[:2]
    pt = RDPoint(codec, float(quality), len(data), 8.0 * len(data) / (h * w), psnr(out, image),
                 ms_ssim(out, image), t1 - t0, t2 - t1)
    return pt, data, out


def anchor_curve(codec: str, image: np.ndarray,
                 qualities: Sequence[float] | None = None) -> list[RDPoint]:
    """RD points of one anchor at several qualities (default :data:`DEFAULT_QUALITIES`)."""
    qs = DEFAULT_QUALITIES[codec] if qualities is None else qualities
    return [anchor_point(codec, image, q)[0] for q in qs]


# ----------------------------------------------------------------------------- video anchors

VIDEO_ANCHORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "x264": ("libx264", "h264", ("-profile:v", "high444", "-bsf:v", "filter_units=remove_types=6")),
    "x265": ("libx265", "hevc", ("-x265-params", "log-level=error:info=0",
                                 "-bsf:v", "filter_units=remove_types=39|40")),
}
"""name -> (ffmpeg encoder, raw elementary-stream muxer, extra arguments). Frames go in as RGB
and are coded as YUV 4:4:4 (no chroma subsampling: the comparison is on full-resolution RGB),
written as a bare elementary stream (no container bytes) without its SEI units (the encoders'
settings text, ~0.6-2 kB, which a decoder does not need), with ffmpeg's default GOP and B-frames
(a random-access configuration)."""

DEFAULT_CRFS: tuple[float, ...] = (20, 26, 32, 38, 44)


def video_anchor_point(
    codec: str, frames: np.ndarray, crf: float, preset: str = "medium", fps: int = 30
) -> tuple[RDPoint, bytes, np.ndarray]:
    """Code ``frames`` (uint8 [T, H, W, 3]) with x264 / x265 through ffmpeg at ``crf``.
    Returns (point, file bytes, decoded frames); bpp over all frames, PSNR over the sequence,
    MS-SSIM the mean over frames."""
    if codec not in VIDEO_ANCHORS:
        raise DataError(f"unknown video anchor {codec!r}; choose one of {', '.join(VIDEO_ANCHORS)}")
    ffmpeg = _need("ffmpeg", "ffmpeg")
    lib, mux, extra = VIDEO_ANCHORS[codec]
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w = frames.shape[:3]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / f"out.{mux}"
        t0 = time.perf_counter()
        subprocess.run(
            [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", lib, "-preset", preset,
             "-crf", str(crf), "-pix_fmt", "yuv444p", *extra, "-f", mux, str(out)],
            input=frames.tobytes(), check=True, capture_output=True,
        )
        t1 = time.perf_counter()
        raw = subprocess.run(
            [ffmpeg, "-loglevel", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-"], check=True, capture_output=True,
        ).stdout
        t2 = time.perf_counter()
        data = out.read_bytes()
    dec = np.frombuffer(raw, np.uint8)
    if dec.size != frames.size:
        raise DataError(f"{codec}: ffmpeg decoded {dec.size} bytes, expected {frames.size}")
    dec = dec.reshape(frames.shape)
    mse = float(np.mean((dec.astype(np.float64) - frames.astype(np.float64)) ** 2))
    p = float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    ms = float(np.mean([ms_ssim(a, b) for a, b in zip(dec, frames)]))
    pt = RDPoint(codec, float(crf), len(data), 8.0 * len(data) / (t * h * w), p, ms, t1 - t0, t2 - t1)
    return pt, data, dec


def points_table(curves: Sequence[Sequence[RDPoint]]) -> dict[str, list]:
    """The report table (column -> values) of every point of ``curves``."""
    rows: dict[str, list] = {k: [] for k in ("codec", "quality", "bytes", "bpp", "psnr_db", "ms_ssim")}
    for pts in curves:
        for p in pts:
            for k, v in zip(rows, (p.codec, p.quality, p.num_bytes, p.bpp, p.psnr, p.ms_ssim)):
                rows[k].append(v)
    return rows


# ----------------------------------------------------------------------------- figure


def rd_figure(curves: dict[str, Sequence[RDPoint]], highlight: RDPoint | None = None,
              title: str = "Rate-distortion") -> Any:
    """A plotly figure of PSNR against bits per pixel, one line per codec; ``highlight`` (e.g.
    the file just coded) is drawn as a star."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, pts in curves.items():
        pts = sorted(pts, key=lambda p: p.bpp)
        fig.add_trace(go.Scatter(
            x=[p.bpp for p in pts], y=[p.psnr for p in pts], mode="lines+markers", name=name,
            text=[f"q={p.quality:g}, {p.num_bytes} B" for p in pts],
        ))
    if highlight is not None:
        fig.add_trace(go.Scatter(
            x=[highlight.bpp], y=[highlight.psnr], mode="markers", name=highlight.codec,
            marker={"symbol": "star", "size": 16}, text=[f"{highlight.num_bytes} B"],
        ))
    fig.update_layout(title=title, xaxis_title="bits per pixel (from file bytes)",
                      yaxis_title="PSNR (dB)")
    return fig
