"""Training recipes of the ICM family, the checkpoint bundle the plugin loads, and its CLI.

``python -m splatlab.plugins.compress.icm.train --out icm_demo.pt`` trains, on one CPU thread:

1. the task network (SegNet on crops of 96 rendered demo views, cross-entropy),
2. a base codec (rate + lambda * 255^2 * MSE on 64 px crops of the demo views and, when
   ``../shared/data`` is there, of the fox and Sceaux castle photos),
3. the ICM codec: the base codec (+ ARR with ``--levels C``; default 0 = no ARR: the
   "task-trained codec") fine-tuned end-to-end with the frozen task network
   (rate + task_weight * CE),
4. the bridge: a human decoder (first two g_s stages fine-tuned with a PatchGAN),

and writes one checkpoint (config, codec, task, ARR, human decoder, recipe) atomically.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError, WeightsNotFoundError
from .arr import ARR
from .codec import CodecConfig, MeanScaleHyperprior, image_to_tensor, tensor_to_image
from .task import N_CLASSES, N_OBJECTS, ClassNet, SegNet, ViewSet, accuracy, demo_views, mean_iou

__all__ = [
    "IcmWeightsError", "IcmBundle", "TRAIN_COMMAND", "crop_batches", "image_batches",
    "photo_crops", "train_task", "train_classifier", "task_score", "train_codec", "evaluate",
    "EvalResult", "save_bundle", "load_bundle", "main",
]

TRAIN_COMMAND = "python -m splatlab.plugins.compress.icm.train --out icm_demo.pt"
FORMAT = "splatlab-icm-1"


class IcmWeightsError(WeightsNotFoundError):
    """The ICM checkpoint is missing or is not one this code wrote."""


# ----------------------------------------------------------------------------- data


def _crop_draws(images: np.ndarray, size: int, batch: int, seed: int):
    """Endless (float crops [B, 3, size, size], ids, ys, xs, flip) of uint8 [V, H, W, 3] images:
    random ``size`` crops, half of them mirrored left-right."""
    rng = np.random.default_rng(seed)
    v, h, w = images.shape[:3]
    if h < size or w < size:
        raise DataError(f"crops of {size} px need images at least that large, got {w}x{h}")
    while True:
        ids = rng.integers(0, v, batch)
        ys = rng.integers(0, h - size + 1, batch)
        xs = rng.integers(0, w - size + 1, batch)
        flip = rng.random(batch) < 0.5
        xb = np.stack([images[i, y:y + size, x:x + size] for i, y, x in zip(ids, ys, xs)])
        xb[flip] = xb[flip, :, ::-1]
        xt = torch.from_numpy(np.ascontiguousarray(xb)).permute(0, 3, 1, 2).float() / 255.0
        yield xt, ids, ys, xs, flip


def crop_batches(images: np.ndarray, labels: np.ndarray | None, size: int, batch: int,
                 seed: int = 0) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
    """Endless random crops (and horizontal flips) of uint8 [V, H, W, 3] images (+ int labels
    [V, H, W]): float [B, 3, size, size] (or (images, labels int64 [B, size, size]))."""
    for xt, ids, ys, xs, flip in _crop_draws(images, size, batch, seed):
        if labels is None:
            yield xt
            continue
        lb = np.stack([labels[i, y:y + size, x:x + size] for i, y, x in zip(ids, ys, xs)])
        lb[flip] = lb[flip, :, ::-1]
        yield xt, torch.from_numpy(np.ascontiguousarray(lb)).long()


def image_batches(images: np.ndarray, labels: np.ndarray, size: int, batch: int,
                  seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless batches for image-level labels: random ``size`` crops (anywhere in the image; the
    whole image when size equals it) and horizontal flips of uint8 [V, H, W, 3] images with
    labels int [V] -> (float [B, 3, size, size], int64 [B])."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"image_batches needs one label per image, got labels {labels.shape} "
                        f"for {len(images)} images")
    for xt, ids, _ys, _xs, _flip in _crop_draws(images, size, batch, seed):
        yield xt, torch.from_numpy(labels[ids].astype(np.int64))


def photo_crops(data_root: str | Path, size: int = 64, per_image: int = 24, short_side: int = 256,
                seed: int = 0) -> np.ndarray:
    """uint8 [K, size, size, 3] random crops of the fox and Sceaux castle photos (downscaled to
    ``short_side``); an empty array when the folder is absent. Kodak is never used here."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    root = Path(data_root)
    files = sorted((root / "fox").rglob("*.jpg")) + sorted((root / "fox").rglob("*.png"))
    files += sorted((root / "sceaux_castle").rglob("*.[jJ][pP][gG]"))
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            s = short_side / min(im.size)
            im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))),
                           Image.LANCZOS)
            a = np.asarray(im)
        for _ in range(per_image):
            y = rng.integers(0, a.shape[0] - size + 1)
            x = rng.integers(0, a.shape[1] - size + 1)
            out.append(a[y:y + size, x:x + size])
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


# ----------------------------------------------------------------------------- training


def _tick(progress: Callable[[float, str], None] | None, f: float, msg: str) -> None:
    if progress is not None:
        progress(f, msg)


def train_task(train: ViewSet, steps: int = 600, batch: int = 8, size: int = 64, lr: float = 3e-3,
               width: int = 16, seed: int = 0,
               progress: Callable[[float, str], None] | None = None) -> SegNet:
    """SegNet trained with cross-entropy on random crops; returned frozen (eval, no grad)."""
    torch.manual_seed(seed)
    net = SegNet(N_CLASSES, width)
    return _fit_ce(net, crop_batches(train.images, train.labels, size, batch, seed), steps, lr,
                   progress)


def train_classifier(train: ViewSet, steps: int = 600, batch: int = 16, size: int = 112,
                     lr: float = 3e-3, width: int = 16, seed: int = 0,
                     progress: Callable[[float, str], None] | None = None) -> ClassNet:
    """ClassNet trained with cross-entropy on random ``size`` crops (+ flips) of the labelled
    views (labels [V]); returned frozen (eval mode, so BatchNorm uses its running statistics)."""
    torch.manual_seed(seed)
    net = ClassNet(N_OBJECTS, width)
    return _fit_ce(net, image_batches(train.images, train.labels, size, batch, seed), steps, lr,
                   progress)


def _fit_ce(net: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], steps: int, lr: float,
            progress: Callable[[float, str], None] | None) -> nn.Module:
    """Adam with cosine decay on the cross-entropy of ``net`` over ``batches``; returns it frozen."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    for s in range(steps):
        x, lab = next(batches)
        loss = F.cross_entropy(net(x), lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        _tick(progress, (s + 1) / steps, f"task step {s + 1}/{steps}: CE {float(loss.detach()):.3f}")
    return freeze(net)


def freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def train_codec(
    codec: MeanScaleHyperprior,
    batches: Iterator[Any],
    steps: int,
    *,
    lmbda: float = 0.01,
    mse_weight: float = 1.0,
    task_net: nn.Module | None = None,
    task_weight: float = 0.0,
    arr: ARR | None = None,
    lr: float = 1e-3,
    arr_lr: float = 3e-3,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, float]:
    """Train ``codec`` (and ``arr``) in place for ``steps`` on ``batches`` with

        loss = bpp + mse_weight * lmbda * 255^2 * MSE(x_hat, x_in) + task_weight * CE(task(x_hat))

    where ``x_in`` is the image the codec codes (ARR's output when ``arr`` is given). With a
    task term ``batches`` yields (images, labels). ``arr`` learns at ``arr_lr``. Ends with
    ``codec.update()``. Returns the last step's terms and the seconds."""
    params = list(codec.parameters()) + (list(arr.parameters()) if arr is not None else [])
    groups = [{"params": list(codec.parameters()), "lr": lr}]
    if arr is not None:
        groups.append({"params": list(arr.parameters()), "lr": arr_lr})
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.8 * steps)], 0.2)
    codec.train()
    if arr is not None:
        arr.train()
    t0 = time.perf_counter()
    stats: dict[str, float] = {}
    for s in range(steps):
        batch = next(batches)
        x, lab = (batch if isinstance(batch, (tuple, list)) else (batch, None))
        x_in = arr(x) if arr is not None else x
        out = codec(x_in)
        loss = out["bpp"]
        mse = F.mse_loss(out["x_hat"], x_in)
        if mse_weight > 0:
            loss = loss + mse_weight * lmbda * 255.0**2 * mse
        ce = torch.zeros(())
        if task_net is not None and task_weight > 0:
            if lab is None:
                raise DataError("a task loss needs batches of (images, labels)")
            ce = F.cross_entropy(task_net(out["x_hat"].clamp(0, 1)), lab)
            loss = loss + task_weight * ce
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        stats = {"loss": float(loss.detach()), "bpp_est": float(out["bpp"].detach()), "mse": float(mse.detach()),
                 "ce": float(ce.detach())}
        _tick(progress, (s + 1) / steps, f"codec step {s + 1}/{steps}: bpp {stats['bpp_est']:.3f}")
    codec.eval()
    if arr is not None:
        arr.eval()
    codec.update()
    stats["seconds"] = time.perf_counter() - t0
    return stats


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    """Means over the views: bpp from the bytes, the task's score (mIoU pooled over the views for
    segmentation, NaN for classification; top-1 accuracy for classification, NaN for
    segmentation), PSNR / MS-SSIM of the decoded image against the ORIGINAL view, and the
    checkerboard measure."""

    bpp: float
    miou: float
    psnr: float
    ms_ssim: float
    checkerboard_db: float
    accuracy: float = float("nan")
    bitstreams: list[bytes] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.pop("bitstreams")
        return d


@torch.no_grad()
def evaluate(codec: MeanScaleHyperprior, views: ViewSet, task_net: nn.Module,
             arr: ARR | None = None, decoder: nn.Module | None = None,
             with_ms_ssim: bool = True) -> EvalResult:
    """Code every view (ARR first when given), decode (with ``decoder`` instead of g_s when
    given), run the task on the decoded image: mIoU when the views carry label maps [V, H, W],
    accuracy when they carry one label per view [V]. ``with_ms_ssim=False`` skips MS-SSIM (NaN;
    it costs ~0.5 s a view on one thread)."""
    from .. import rd
    from .bridge import checkerboard_db

    codec.eval()
    preds, bpps, ps, ss, decs = [], [], [], [], []
    streams = []
    for img in views.images:
        x = image_to_tensor(img)
        src = tensor_to_image(arr.eval()(x)) if arr is not None else img
        data = codec.compress(src)
        out = codec.decompress(data, decoder=decoder)
        streams.append(data)
        bpps.append(8.0 * len(data) / (img.shape[0] * img.shape[1]))
        preds.append(task_net(image_to_tensor(out)).argmax(1)[0].numpy())
        ps.append(rd.psnr(out, img))
        ss.append(rd.ms_ssim(out, img) if with_ms_ssim else float("nan"))
        decs.append(out)
    classify = np.asarray(views.labels).ndim == 1
    return EvalResult(
        bpp=float(np.mean(bpps)),
        miou=float("nan") if classify else mean_iou(np.stack(preds), views.labels),
        accuracy=accuracy(np.stack(preds), views.labels) if classify else float("nan"),
        psnr=float(np.mean(ps)),
        ms_ssim=float(np.mean(ss)),
        checkerboard_db=checkerboard_db(decs, list(views.images)),
        bitstreams=streams,
    )


@torch.no_grad()
def task_miou(task_net: nn.Module, views: ViewSet) -> float:
    """mIoU of the task network on the uncompressed views."""
    x, _ = views.tensors()
    pred = torch.cat([task_net(x[i:i + 8]).argmax(1) for i in range(0, len(x), 8)]).numpy()
    return mean_iou(pred, views.labels)


@torch.no_grad()
def task_score(task_net: nn.Module, views: ViewSet) -> float:
    """The task's score on the uncompressed views: mIoU for label maps, accuracy for one label
    per view."""
    if np.asarray(views.labels).ndim != 1:
        return task_miou(task_net, views)
    x, _ = views.tensors()
    pred = torch.cat([task_net(x[i:i + 8]).argmax(1) for i in range(0, len(x), 8)]).numpy()
    return accuracy(pred, views.labels)


# ----------------------------------------------------------------------------- checkpoint


@dataclass
class IcmBundle:
    """What the plugin needs: the codec (tabulated), the frozen task net, ARR (or None), the
    human decoder (or None) and the recipe that produced them."""

    codec: MeanScaleHyperprior
    task: SegNet
    arr: ARR | None
    human_decoder: nn.Module | None
    recipe: dict[str, Any]
    label_names: list[str]


def save_bundle(path: str | Path, b: IcmBundle) -> Path:
    """Write the bundle atomically (torch.save of plain dicts and tensors)."""
    from ....utils import atomic_write_bytes

    obj = {
        "format": FORMAT,
        "codec_config": b.codec.config.as_dict(),
        "codec": b.codec.state_dict(),
        "task": {"n_classes": b.task.n_classes, "width": b.task.width, "state": b.task.state_dict()},
        "arr": None if b.arr is None else {"levels": b.arr.levels, "hidden": b.arr.hidden,
                                           "state": b.arr.state_dict()},
        "human_decoder": None if b.human_decoder is None else b.human_decoder.state_dict(),
        "recipe": b.recipe,
        "label_names": list(b.label_names),
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_codec_state(codec: MeanScaleHyperprior, state: dict[str, Tensor]) -> None:
    """load_state_dict that first sizes the tabulated pmf buffer like the stored one."""
    key = "entropy_bottleneck.pmf"
    if key in state:
        codec.entropy_bottleneck.pmf = torch.empty_like(state[key])
    codec.load_state_dict(state)
    codec.eval()


def load_bundle(path: str | Path) -> IcmBundle:
    """Read a bundle; :class:`IcmWeightsError` (saying how to make one) when the file is absent
    or is not an ICM checkpoint. Never falls back to random weights."""
    import copy

    p = Path(path).expanduser() if str(path) else None
    if p is None or not p.is_file():
        raise IcmWeightsError(
            f"ICM checkpoint {str(path) or '(none given)'} not found; train one (about 10 min on "
            f"one CPU core) with `{TRAIN_COMMAND}` and pass it as the checkpoint option"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise IcmWeightsError(f"{p} is not a readable ICM checkpoint ({type(e).__name__}: {e}); "
                              f"make one with `{TRAIN_COMMAND}`") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise IcmWeightsError(f"{p} is not an ICM checkpoint written by splatlab ({FORMAT}); "
                              f"make one with `{TRAIN_COMMAND}`")
    codec = MeanScaleHyperprior(CodecConfig(**obj["codec_config"]))
    load_codec_state(codec, obj["codec"])
    t = obj["task"]
    task = SegNet(t["n_classes"], t["width"])
    task.load_state_dict(t["state"])
    freeze(task)
    arr = None
    if obj.get("arr"):
        arr = ARR(obj["arr"]["levels"], obj["arr"]["hidden"])
        arr.load_state_dict(obj["arr"]["state"])
        freeze(arr)
    human = None
    if obj.get("human_decoder"):
        human = copy.deepcopy(codec.g_s)
        human.load_state_dict(obj["human_decoder"])
        freeze(human)
    return IcmBundle(codec, task, arr, human, dict(obj.get("recipe", {})),
                     list(obj.get("label_names", [])))


# ----------------------------------------------------------------------------- CLI


def base_batches(train: ViewSet, data_root: Path | None, size: int, batch: int,
                 seed: int) -> Iterator[Tensor]:
    """Crops of the demo views mixed (1:1 when present) with crops of the fox / castle photos."""
    demo = crop_batches(train.images, None, size, batch, seed)
    photos = photo_crops(data_root, size) if data_root is not None and data_root.exists() else None
    if photos is None or len(photos) == 0:
        yield from demo
        return
    pb = crop_batches(photos, None, size, batch, seed + 1)
    while True:
        yield next(demo)
        yield next(pb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="checkpoint file to write")
    ap.add_argument("--levels", type=int, default=0,
                    help="ARR colour levels C (0: no ARR, the task-trained codec; ARR did not hold "
                         "the task's accuracy at equal rate: BENCHMARKS.md, issue 13)")
    ap.add_argument("--lmbda", type=float, default=0.01, help="base codec rate-distortion lambda")
    ap.add_argument("--task-weight", type=float, default=1.0, help="weight of CE in the ICM loss")
    ap.add_argument("--task-steps", type=int, default=600)
    ap.add_argument("--base-steps", type=int, default=1200)
    ap.add_argument("--icm-steps", type=int, default=400)
    ap.add_argument("--bridge-steps", type=int, default=1000)
    ap.add_argument("--bridge-task-weight", type=float, default=3.0,
                    help="weight of the frozen task net's CE in the bridge loss (3 at 1000 steps: "
                         "chosen on the validation ring by benchmarks/icm_bridge_task.py; 0: "
                         "PatchGAN + MSE only)")
    ap.add_argument("--arr-init", choices=("palette", "random"), default="palette",
                    help="ARR start: nearest-colour quantisation to the k-means palette, or random")
    ap.add_argument("--channels", type=int, default=48, help="N = M of the codec")
    ap.add_argument("--data", default="../shared/data", help="photos for the base codec")
    ap.add_argument("--cache", default=str(Path.home() / ".cache/splatlab/icm"),
                    help="rendered demo views cache")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    train = demo_views("train", 128, a.cache)
    task = train_task(train, a.task_steps, seed=a.seed)
    print(f"task net: {time.perf_counter() - t0:.0f} s")
    codec = MeanScaleHyperprior(CodecConfig(a.channels, a.channels))
    train_codec(codec, base_batches(train, Path(a.data), 64, 8, a.seed), a.base_steps,
                lmbda=a.lmbda)
    print(f"base codec: {time.perf_counter() - t0:.0f} s")
    arr = ARR(a.levels) if a.levels else None
    if arr is not None and a.arr_init == "palette":
        arr.init_palette(train.images, seed=a.seed)
    train_codec(codec, crop_batches(train.images, train.labels, 64, 8, a.seed + 2), a.icm_steps,
                mse_weight=0.0, task_net=task, task_weight=a.task_weight, arr=arr, lr=3e-4)
    print(f"ICM codec: {time.perf_counter() - t0:.0f} s")
    from ....scene.synthetic import LABEL_NAMES
    from .bridge import bridge_decoder

    src = crop_batches(train.images, train.labels, 64, 8, a.seed + 3)
    human, _ = bridge_decoder(codec, src, a.bridge_steps, pre=arr, task_net=task,
                              task_weight=a.bridge_task_weight)
    print(f"bridge: {time.perf_counter() - t0:.0f} s")
    names = list(LABEL_NAMES)
    recipe = {k: v for k, v in vars(a).items() if k not in ("out", "cache", "data")}
    recipe["train_seconds"] = time.perf_counter() - t0
    save_bundle(a.out, IcmBundle(codec, task, arr, human, recipe, names))
    print(f"wrote {a.out} ({recipe['train_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
