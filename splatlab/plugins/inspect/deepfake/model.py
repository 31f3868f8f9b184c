"""D4 detectors: spectrum classifiers, the disjoint ensemble, and their checkpoint.

Labels follow the official code: 0 = real, 1 = synthetic. A :class:`SpectrumClassifier` maps pixels
to the standardised log-magnitude DCT (:mod:`.dct`), zeroes every coefficient outside its partition
mask (``z * mask``, official ``RensetNoDownClassifier.transform``) and classifies the masked spectrum
with a backbone trained from scratch. :class:`D4Detector` holds the N partition models (the
ensemble; official ``D3`` / ``D3_HL`` with ``soft_avg``: the mean of the N softmaxes) and, as the
baseline, the single full-spectrum model whose C&W saliency chose the partitions.

Backbones (``D4Config.backbone``):

- ``resnet50``: torchvision ResNet-50, random init, 2 classes (the official backbone);
- ``resnet18``: torchvision ResNet-18, random init, 2 classes;
- ``small`` (ours, so that a detector trains in minutes on 2 CPU cores): four stride-2 stages of two
  3x3 conv + BN + ReLU, widths ``w, 2w, 4w, 8w``, then a linear layer on the *flattened* last map
  (not a global average) so that the classifier keeps where in the spectrum a feature sits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import CheckpointError, WeightsNotFoundError
from .dct import LOG_EPS, log_dct

__all__ = [
    "D4Config",
    "SpectrumClassifier",
    "D4Detector",
    "build_backbone",
    "save_d4",
    "load_d4",
    "TRAIN_HINT",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "splatlab.d4"
TRAIN_HINT = (
    "train one with `python benchmarks/d4_bench.py --quick --save-weights d4.pt` (real photos from "
    "../shared/data vs renders of the demo scene), or call "
    "splatlab.plugins.inspect.deepfake.train.fit_and_save(real_images, synthetic_images, PATH)"
)


@dataclass
class D4Config:
    """Architecture of a D4 detector (stored in its checkpoint)."""

    image_size: int = 64
    """Side of the square crops the detectors see (official: 224)."""
    n_partitions: int = 4
    """Number N of disjoint spectrum partitions = ensemble members."""
    backbone: Literal["small", "resnet18", "resnet50"] = "small"
    """Classifier on the masked spectrum; the official one is resnet50."""
    width: int = 16
    """Base width of the 'small' backbone."""
    log_eps: float = LOG_EPS
    """eps of log(|DCT| + eps)."""

    def validate(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"D4Config.image_size must be >= 16, got {self.image_size}")
        if self.n_partitions < 1:
            raise ValueError(f"D4Config.n_partitions must be >= 1, got {self.n_partitions}")
        if self.backbone not in ("small", "resnet18", "resnet50"):
            raise ValueError(
                f"D4Config.backbone must be small, resnet18 or resnet50, got {self.backbone!r}"
            )
        if self.width < 1:
            raise ValueError(f"D4Config.width must be >= 1, got {self.width}")


def _small_backbone(width: int, image_size: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3
    for c in (width, 2 * width, 4 * width, 8 * width):
        layers += [
            nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        ]
        c_in = c
    side = image_size
    for _ in range(4):
        side = (side + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, 2))


def build_backbone(cfg: D4Config) -> nn.Module:
    """A randomly initialised 2-class classifier of [B, 3, S, S] spectra (see the module doc)."""
    cfg.validate()
    if cfg.backbone == "small":
        return _small_backbone(cfg.width, cfg.image_size)
    import torchvision

    fn = getattr(torchvision.models, cfg.backbone)
    return fn(weights=None, num_classes=2)


class SpectrumClassifier(nn.Module):
    """Pixels -> standardised, masked log-DCT -> logits.

    mean, std, mask: Tensor  # [3, S, S] (buffers, saved in the state_dict)
    forward(x: [B, 3, S, S] in [0, 1]) -> logits [B, 2]
    """

    def __init__(self, cfg: D4Config, mask: Tensor | None = None) -> None:
        super().__init__()
        s = cfg.image_size
        self.log_eps = float(cfg.log_eps)
        self.register_buffer("mean", torch.zeros(3, s, s))
        self.register_buffer("std", torch.ones(3, s, s))
        self.register_buffer("mask", torch.ones(3, s, s) if mask is None else mask.float().clone())
        self.backbone = build_backbone(cfg)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        """Standardisation statistics of the training spectra ([3, S, S] each)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] pixels -> [B, 3, S, S] masked standardised log-DCT."""
        return (log_dct(x, self.log_eps) - self.mean) / self.std * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.features(x))


class D4Detector(nn.Module):
    """The N partition models and the full-spectrum baseline.

    members: ModuleList of N SpectrumClassifier (disjoint masks)
    full: SpectrumClassifier with an all-ones mask (the single-model baseline; its C&W saliency
        defined the partitions)
    """

    def __init__(self, cfg: D4Config, masks: Tensor | None = None) -> None:
        """masks: Tensor  # [N, 3, S, S] (None: N all-ones placeholders, filled by load_state_dict)"""
        super().__init__()
        cfg.validate()
        self.config = cfg
        n = cfg.n_partitions
        if masks is not None and masks.shape[0] != n:
            raise ValueError(f"{masks.shape[0]} masks for {n} partitions")
        self.members = nn.ModuleList(
            SpectrumClassifier(cfg, None if masks is None else masks[i]) for i in range(n)
        )
        self.full = SpectrumClassifier(cfg)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        for m in [*self.members, self.full]:
            m.set_stats(mean, std)

    @property
    def masks(self) -> Tensor:
        """[N, 3, S, S] the partition masks."""
        return torch.stack([m.mask for m in self.members])

    def member_probs(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] -> [N, B, 2] softmax of each partition model."""
        return torch.stack([F.softmax(m(x), dim=-1) for m in self.members])

    def ensemble_probs(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] -> [B, 2] mean of the N softmaxes (official soft_avg)."""
        return self.member_probs(x).mean(dim=0)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] -> [B, 2] log of the mean softmax (official ``D3._avg_logits``), computed
        as ``logsumexp_i(log_softmax_i) - log N``: the same value without taking the log of a
        probability rounded in float32 (no -inf, no clamp for white-box attacks to stall on)."""
        logp = torch.stack([F.log_softmax(m(x), dim=-1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))

    def full_probs(self, x: Tensor) -> Tensor:
        """[B, 3, S, S] -> [B, 2] softmax of the full-spectrum model."""
        return F.softmax(self.full(x), dim=-1)


def save_d4(path: str | Path, det: D4Detector, info: dict[str, Any] | None = None) -> Path:
    """Write ``{"format", "version", "config", "state_dict", "info"}`` atomically (torch.save)."""
    from ....utils import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "config": asdict(det.config),
        "state_dict": {k: v.detach().cpu() for k, v in det.state_dict().items()},
        "info": dict(info or {}),
    }
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return path


def load_d4(path: str | Path) -> tuple[D4Detector, dict[str, Any]]:
    """(detector in eval mode, info) from a :func:`save_d4` file. WeightsNotFoundError (saying how
    to train one) when the file is absent; CheckpointError when it is not a D4 checkpoint."""
    p = Path(path).expanduser()
    if not str(path) or not p.is_file():
        raise WeightsNotFoundError(
            f"image deepfake (D4): weights {str(path) or '(none)'} not found; {TRAIN_HINT}"
        )
    from ....models.weights import load_state_dict_file

    raw = load_state_dict_file(p, "D4")
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{p} is not a splatlab D4 checkpoint (no format {CHECKPOINT_FORMAT!r}); {TRAIN_HINT}"
        )
    names = {f.name for f in dataclasses.fields(D4Config)}
    try:
        cfg = D4Config(**{k: v for k, v in dict(raw["config"]).items() if k in names})
        det = D4Detector(cfg)
        det.load_state_dict(raw["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p}: inconsistent D4 checkpoint ({type(e).__name__}: {e})") from e
    det.eval()
    info = raw.get("info")
    return det, dict(info) if isinstance(info, dict) else {}
