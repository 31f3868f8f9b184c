"""Anomaly maps of what a scene renders: the viewer's "anomaly" render mode, and the evaluation of
such maps against where a novel-view render is really wrong (issue 14, item 4(b)).

The idea: an anomaly model trained on a scene's TRAINING photos (the normal class) is asked, at
a view, where the render departs from what those photos look like (floaters, blur, holes,
smeared colours). The truth at a test view is the error mask of its render against the
ground-truth photo, :func:`error_mask` (the mean over R, G, B of ``|render - GT|`` above a
threshold, default :data:`ERROR_THRESHOLD`).

- :func:`rd4ad_map`: RD4AD is fully convolutional, so a view is scored at its own aspect ratio
  (reflect-padded to a multiple of 32, the network's stride) and, when ``side`` is given, at the
  scale the model was trained on (the long side resized to ``side``); the map comes back at the
  image's size. The square resize of the image plugins would squash a 270 x 480 view.
- :func:`scorer_for`: ``image float [H, W, 3] -> map float32 [H, W]`` for an RD4AD model (the
  above) or any model with ``predict`` on square inputs (FYD: resized to its input and back).
- :func:`anomaly_render_mode`: ``fn(camera, params) -> float [H, W]`` for
  ``PanelContext.add_render_mode``: renders the Gaussians shown and scores the view.
- :func:`random_crops` / :func:`fit_render_rd4ad`: the detector trained on crops (flips, small
  brightness jitter) of the training photos only, at their own scale.
- :func:`score_test_views`: the same evaluation on a run's test views, for ``splatlab plugin run``.
- :func:`render_error_metrics`: pixel AUROC and AUPRO@0.3 of the maps against the error masks
  (:mod:`.metrics`, anomalib's definitions), and the image AUROC of "render vs the ground-truth
  photo of the same view" (a photo has no error by definition: can the model tell them apart?).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ....errors import DataError
from ....models.rd4ad import RD4ADConfig, ReverseDistillation, anomaly_map, build_rd4ad
from ...base import Progress, no_progress
from .metrics import aupro, image_auroc, pixel_auroc
from .rd4ad import TrainConfig, score, train_rd4ad

__all__ = [
    "ERROR_THRESHOLD",
    "error_mask",
    "render_view_rgb",
    "rd4ad_map",
    "scorer_for",
    "anomaly_render_mode",
    "random_crops",
    "fit_render_rd4ad",
    "gradient_map",
    "render_error_metrics",
    "score_test_views",
    "RENDER_MODE_COLORMAP",
    "mode_value_range",
]

RENDER_MODE_COLORMAP = "turbo"

ERROR_THRESHOLD = 0.1
"""A pixel of a render is wrong when the mean over R, G, B of |render - GT| exceeds this (images
in [0, 1]; 0.1 is about 25 grey levels of 255)."""

_STRIDE = 32  # the RD4AD bottleneck's output stride: inputs are padded to a multiple of it

Scorer = Callable[[np.ndarray], np.ndarray]


def _as_float_image(img: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise DataError(f"{what}: expected an RGB image [H, W, 3], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise DataError(f"{what}: the image has NaN or infinite pixels")
    return np.clip(a, 0.0, 1.0)


def error_mask(
    render: np.ndarray, gt: np.ndarray, threshold: float = ERROR_THRESHOLD
) -> np.ndarray:
    """Where a render is wrong: ``mean_c |render - gt| > threshold``.

    render, gt: [H, W, 3] float in [0, 1] (or uint8) -> bool [H, W]."""
    r = _as_float_image(render, "render")
    g = _as_float_image(gt, "ground truth")
    if r.shape != g.shape:
        raise DataError(f"render {r.shape} and ground truth {g.shape} differ in size")
    if not 0 <= threshold < 1:
        raise DataError(f"error threshold must be in [0, 1), got {threshold}")
    return np.abs(r - g).mean(-1) > threshold


def render_view_rgb(
    params: Mapping[str, Any],
    camera: Any,
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``params`` (stored activations) at ``camera`` (viewmat [4, 4] OpenCV, K [3, 3],
    width, height) -> (RGB float32 [H, W, 3] in [0, 1], alpha float32 [H, W])."""
    from ....rendering.splats import render_splats

    w, h = int(camera.width), int(camera.height)
    if params["means"].shape[0] == 0:
        bg = np.broadcast_to(np.asarray(background, np.float32), (h, w, 3))
        return np.ascontiguousarray(bg), np.zeros((h, w), np.float32)
    dev = params["means"].device
    vm = torch.as_tensor(np.asarray(camera.viewmat), dtype=torch.float32)[None]
    K = torch.as_tensor(np.asarray(camera.K), dtype=torch.float32)[None]
    bg = torch.as_tensor(np.asarray(background, np.float32), device=dev)[None]
    with torch.no_grad():
        img, alpha, _ = render_splats(params, vm, K, w, h, backgrounds=bg)
    rgb = img[0, ..., :3].clamp(0, 1).float().cpu().numpy()
    return np.ascontiguousarray(rgb), alpha[0, ..., 0].float().cpu().numpy()


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@torch.no_grad()
def rd4ad_map(model: ReverseDistillation, img: np.ndarray, side: int | None = None) -> np.ndarray:
    """RD4AD anomaly map of one image at its own aspect ratio.

    img: [H, W, 3] float in [0, 1] or uint8 -> float32 [H, W] (the sum over scales of 1 - cos,
    blurred with ``model.config.sigma`` px at the working resolution). ``side``: resize so the
    long side is ``side`` px before scoring (the training photos' scale); None = as is."""
    x = _as_float_image(img, "image")
    h, w = x.shape[:2]
    if side is not None and side > 0 and max(h, w) != side:
        f = side / max(h, w)
        x = _resize(x, (max(1, round(h * f)), max(1, round(w * f))))
    hs, ws = x.shape[:2]
    ph, pw = (-hs) % _STRIDE, (-ws) % _STRIDE
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    if ph or pw:
        mode = "reflect" if ph < hs and pw < ws else "replicate"
        t = F.pad(t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        xn = model.normalize(t.to(dev))
        te, st = model(xn)
        amap = anomaly_map(te, st, tuple(xn.shape[-2:]), sigma=model.config.sigma)[0]
    finally:
        model.train(was)
    amap = amap[ph // 2 : ph // 2 + hs, pw // 2 : pw // 2 + ws]
    return np.ascontiguousarray(_resize(amap, (h, w)).astype(np.float32))


def scorer_for(model: Any, side: int | None = None) -> Scorer:
    """``image [H, W, 3] -> anomaly map float32 [H, W]``: :func:`rd4ad_map` for RD4AD; for a
    model with ``predict`` on square inputs of ``config.image_size`` (FYD) the image is resized
    to that square, scored, and the map resized back."""
    if isinstance(model, ReverseDistillation):
        return lambda img: rd4ad_map(model, img, side)
    if not hasattr(model, "predict") or not hasattr(model, "config"):
        raise DataError(f"{type(model).__name__} is not an anomaly model (no predict / config)")

    def square(img: np.ndarray) -> np.ndarray:
        from .rd4ad import to_tensor

        x = _as_float_image(img, "image")
        with torch.no_grad():
            m = model.predict(to_tensor(x[None], model.config.image_size))[0]
        return np.ascontiguousarray(_resize(m.astype(np.float32), x.shape[:2]))

    return square


def anomaly_render_mode(
    scorer: Scorer,
    background: Callable[[], Sequence[float]] | Sequence[float] = (0.0, 0.0, 0.0),
) -> Callable[[Any, Mapping[str, Any]], np.ndarray]:
    """A render mode ``fn(camera, params) -> float32 [H, W]`` (the camera's size): the view
    rendered from the Gaussians shown (``params``) over ``background`` (a colour, or a function
    returning the viewer's current one) and scored by ``scorer`` (see :func:`scorer_for`)."""

    def fn(camera: Any, params: Mapping[str, Any]) -> np.ndarray:
        bg = background() if callable(background) else background
        rgb, _ = render_view_rgb(params, camera, bg)
        m = scorer(rgb)
        if m.shape != rgb.shape[:2]:
            raise DataError(f"anomaly scorer returned {m.shape} for a {rgb.shape[:2]} view")
        return m

    return fn


def random_crops(
    photos: Sequence[np.ndarray],
    n: int,
    size: int,
    seed: int = 0,
    jitter: float = 0.1,
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops of ``photos`` (each [H, W, 3] float in [0, 1]),
    horizontally flipped at random and brightness-scaled by U(1 - jitter, 1 + jitter).
    A photo smaller than ``size`` on a side is enlarged to fit first. -> float32 [n, size, size, 3]"""
    if not photos:
        raise DataError("random_crops needs at least one photo")
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    imgs = []
    for p in photos:
        p = _as_float_image(p, "photo")
        if min(p.shape[:2]) < size:
            f = size / min(p.shape[:2])
            p = _resize(p, (max(size, round(p.shape[0] * f)), max(size, round(p.shape[1] * f))))
        imgs.append(p)
    for k in range(n):
        p = imgs[int(rng.integers(len(imgs)))]
        y = int(rng.integers(0, p.shape[0] - size + 1))
        x = int(rng.integers(0, p.shape[1] - size + 1))
        c = p[y : y + size, x : x + size]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out[k] = np.clip(c * rng.uniform(1 - jitter, 1 + jitter), 0, 1)
    return out


def fit_render_rd4ad(
    photos: Sequence[np.ndarray],
    config: RD4ADConfig,
    n_crops: int = 128,
    train: TrainConfig | None = None,
    progress: Progress = no_progress,
) -> tuple[ReverseDistillation, dict[str, float]]:
    """RD4AD (teacher per ``config.teacher``) trained on :func:`random_crops` of ``photos`` (a
    scene's training photos, [H, W, 3] float in [0, 1]) at ``config.image_size``. Returns the model
    and the statistics the plugin stores: the normal crops' image scores (mean, std, max) and
    ``side`` = the photos' long side (the scale the render mode scores a view at)."""
    train = train or TrainConfig()
    crops = random_crops(photos, n_crops, config.image_size, seed=train.seed)
    torch.manual_seed(train.seed)
    model = build_rd4ad(config)
    train_rd4ad(model, crops, train, progress)
    _, s = score(model, crops)
    side = int(np.median([max(np.asarray(p).shape[:2]) for p in photos]))
    stats = {
        "score_mean": float(s.mean()),
        "score_std": float(s.std()),
        "score_max": float(s.max()),
        "side": float(side),
    }
    return model, stats


def gradient_map(img: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """A detector-free baseline: the Sobel gradient magnitude of the image's grey level, blurred
    with sigma px (RD4AD's blur). img [H, W, 3] -> float32 [H, W]."""
    from scipy.ndimage import gaussian_filter

    g = _as_float_image(img, "image").mean(-1)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    m = np.sqrt(gx * gx + gy * gy)
    return gaussian_filter(m, sigma).astype(np.float32) if sigma > 0 else m


def render_error_metrics(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    photo_maps: Sequence[np.ndarray] | None = None,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """Metrics of anomaly maps of renders against their error masks.

    maps: per view float [H_i, W_i] (the renders' maps), masks: per view bool [H_i, W_i]
    (:func:`error_mask`), photo_maps: optional maps of the ground-truth photos of the same views.
    All views have one size (a run's test views do). Returns ``pixel_auroc``, ``aupro`` (FPR up to
    ``fpr_limit``, regions = 8-connected components of each view's mask), ``error_fraction``
    (share of wrong pixels) and, with photo_maps, ``image_auroc`` (image score = map max; renders
    = 1, photos = 0)."""
    if len(maps) != len(masks) or not maps:
        raise DataError(f"{len(maps)} maps for {len(masks)} masks; need one map per view")
    shapes = {np.shape(m) for m in maps} | {np.shape(k) for k in masks}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise DataError(f"maps and masks must all be [H, W] of one size, got shapes {sorted(shapes)}")
    flat_m = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    flat_k = np.concatenate([np.asarray(k, bool).ravel() for k in masks])
    out = {
        "pixel_auroc": pixel_auroc(flat_m[None, None], flat_k[None, None]),
        "error_fraction": float(flat_k.mean()),
    }
    out["aupro"] = aupro(np.stack(maps), np.stack(masks).astype(bool), fpr_limit)
    if photo_maps is not None:
        s = [float(np.max(m)) for m in maps] + [float(np.max(m)) for m in photo_maps]
        lab = [1] * len(maps) + [0] * len(photo_maps)
        out["image_auroc"] = image_auroc(np.asarray(s), np.asarray(lab))
    return out



def mode_value_range(stats: Mapping[str, float]) -> tuple[float, float] | None:
    """The colour range of the render mode: 0 to 1.5 x the highest score of the normal training
    crops when the checkpoint stores it (as the image plugins scale their heatmaps), else None
    (the viewer's 2nd-98th percentile of each frame)."""
    ref = float(stats.get("score_max", 0.0))
    return (0.0, 1.5 * ref) if ref > 0 else None


def score_test_views(
    scorer: Scorer,
    render: Callable[[Any, str], np.ndarray],
    dataset: Any,
    threshold: float = ERROR_THRESHOLD,
    progress: Progress = no_progress,
) -> tuple[dict[str, float], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Render every test view of ``dataset`` (``render(camera, "RGB") -> uint8 [H, W, 3]``, as
    ``PluginInputs.render``), score it with ``scorer``, and compare with the photo.

    Returns (:func:`render_error_metrics` of the maps against :func:`error_mask` at
    ``threshold``, with the photos as the image-level normals; renders float [H, W, 3]; maps
    float32 [H, W]; masks bool [H, W]). DataError when there are no test views or no pixel of
    any render is wrong at ``threshold``."""
    from ...base import SimpleCamera

    ids = list(getattr(dataset, "test_ids", None) or [])
    if not ids:
        raise DataError("the run's dataset has no test views to score against ground truth")
    renders, maps, masks, photo_maps = [], [], [], []
    for k, i in enumerate(ids):
        f = dataset.frames[i]
        cam = SimpleCamera(np.asarray(f.viewmat), np.asarray(f.K), int(f.width), int(f.height))
        r = _as_float_image(render(cam, "RGB"), f"render of {f.name}")
        gt = _as_float_image(dataset.load_image(i), f"photo {f.name}")
        renders.append(r)
        maps.append(scorer(r))
        photo_maps.append(scorer(gt))
        masks.append(error_mask(r, gt, threshold))
        progress((k + 1) / len(ids), f"scored test view {k + 1}/{len(ids)}")
    if not any(m.any() for m in masks):
        raise DataError(
            f"no pixel of the {len(ids)} test renders differs from its photo by more than "
            f"{threshold:g}; lower the error threshold"
        )
    return render_error_metrics(maps, masks, photo_maps), renders, maps, masks
