"""Reverse Distillation (RD4AD; Deng & Li, "Anomaly Detection via Reverse Distillation from
One-Class Embedding", CVPR 2022), with the layout of the official code (github.com/hq-deng/RD4AD).

Three parts, named as the official checkpoint names them:

- ``encoder``: the frozen teacher, a torchvision ResNet cut after ``layer3``; it returns the
  ``layer1``, ``layer2``, ``layer3`` maps (for a 256 input and wide_resnet50_2: 256 x 64 x 64,
  512 x 32 x 32, 1024 x 16 x 16). Its keys are torchvision's, so the ImageNet weights
  ``wide_resnet50_2-95faca4d.pth`` (the file the official code downloads) load directly.
- ``bn``: the one-class bottleneck embedding (OCBE, official ``BN_layer``): ``layer1`` goes
  through two stride-2 3x3 convs, ``layer2`` through one, both reach ``layer3``'s size and are
  concatenated with it (multi-scale fusion), then one ResNet stage (``bn_layer``, stride 2, 3
  bottleneck blocks for wide_resnet50_2) compresses them to 2048 x 8 x 8. The official module also
  creates ``conv4``/``bn4`` (a 1x1 conv 4096 -> 2048) that its forward never calls; they are kept
  here so that the official state_dict loads strictly.
- ``decoder``: the de-ResNet student (official ``de_resnet.py``): three stages mirroring the
  encoder, whose stride-2 convs are 2x2 transposed convs; it returns maps aligned with the
  encoder's ``[layer1, layer2, layer3]``.

Loss (official ``loss_fucntion``): ``sum_k mean_b(1 - cos(flatten(t_k[b]), flatten(s_k[b])))``,
the cosine taken over each whole flattened map. Anomaly map (official ``cal_anomaly_map`` with
``amap_mode='a'`` then ``gaussian_filter(sigma=4)``): the sum over scales of the per-pixel
``1 - cos`` maps upsampled bilinearly (align_corners=True) to the image size, blurred with a
Gaussian of sigma 4; the image score is the map's maximum.

Official checkpoints are ``torch.save({'bn': bn.state_dict(), 'decoder': decoder.state_dict()})``
(:func:`load_rd4ad`); the teacher is torchvision's ImageNet ResNet from the torch hub cache or a
local path (:func:`load_teacher_weights`), never random weights unless a config asks for
``teacher="random-test-only"`` explicitly (tests and experiments only).

Small configurations: ``arch="resnet18"`` is the official small variant (BasicBlock, two blocks in
the bottleneck stage); ``base_channels`` < 64 shrinks every width of the same classes (a 2-core
machine trains ``resnet18`` at ``base_channels=16`` in minutes). Only ``base_channels=64`` has
ImageNet weights; a narrower teacher must come from a checkpoint file (for example one trained by
``splatlab.plugins.inspect.anomaly.teacher.train_texture_teacher``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1, conv3x3

from ..errors import CheckpointError, DataError, WeightsNotFoundError
from .weights import find_weights, load_state_dict_file

__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RD4ADConfig",
    "ResNetEncoder",
    "OneClassBottleneck",
    "DeResNet",
    "ReverseDistillation",
    "build_rd4ad",
    "rd4ad_loss",
    "anomaly_map",
    "load_teacher_weights",
    "teacher_path",
    "load_rd4ad",
    "save_rd4ad",
    "TEACHER_RANDOM",
    "TEACHER_IMAGENET",
]

TORCHVISION_URL = "https://download.pytorch.org/models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEACHER_IMAGENET = "imagenet"
TEACHER_RANDOM = "random-test-only"

# arch -> (block, blocks per stage, width_per_group, blocks of the bottleneck stage, torchvision
# ImageNet file). From the official resnet.py / de_resnet.py builders (hq-deng/RD4AD): e.g.
# wide_resnet50_2 -> Bottleneck [3, 4, 6, 3], width_per_group 128, BN_layer(AttnBottleneck, 3);
# resnet18 -> BasicBlock [2, 2, 2, 2], BN_layer(AttnBasicBlock, 2). The official Attn* blocks'
# forward is the plain block's (their attention is commented out), so torchvision's blocks are used.
ARCHS: dict[str, dict[str, Any]] = {
    "wide_resnet50_2": dict(
        block=Bottleneck,
        layers=(3, 4, 6),
        width_per_group=128,
        bn_blocks=3,
        file="wide_resnet50_2-95faca4d.pth",
    ),
    "resnet50": dict(
        block=Bottleneck,
        layers=(3, 4, 6),
        width_per_group=64,
        bn_blocks=3,
        file="resnet50-0676ba61.pth",
    ),
    "resnet34": dict(
        block=BasicBlock,
        layers=(3, 4, 6),
        width_per_group=64,
        bn_blocks=3,
        file="resnet34-b627a593.pth",
    ),
    "resnet18": dict(
        block=BasicBlock,
        layers=(2, 2, 2),
        width_per_group=64,
        bn_blocks=2,
        file="resnet18-f37072fd.pth",
    ),
}
Arch = Literal["wide_resnet50_2", "resnet50", "resnet34", "resnet18"]


@dataclass
class RD4ADConfig:
    """Architecture of a Reverse Distillation model."""

    arch: Arch = "wide_resnet50_2"
    """Teacher backbone; the official paper uses wide_resnet50_2."""
    base_channels: int = 64
    """Width of the first stage (64 = torchvision's; smaller shrinks every stage, no ImageNet weights)."""
    teacher: str = TEACHER_IMAGENET
    """'imagenet' (torchvision weights from the torch hub cache), a teacher checkpoint path, or
    'random-test-only' (random weights: tests and experiments only)."""
    image_size: int = 256
    """Side of the square network input in pixels (official: 256)."""
    sigma: float = 4.0
    """Gaussian blur of the anomaly map in pixels (official: 4)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise DataError(f"RD4AD arch {self.arch!r} is unknown; use one of {sorted(ARCHS)}")
        if self.base_channels < 4 or self.base_channels % 4:
            raise DataError(
                f"RD4AD base_channels must be a positive multiple of 4, got {self.base_channels}"
            )
        if self.image_size < 32 or self.image_size % 16:
            raise DataError(
                f"RD4AD image_size must be a multiple of 16 and >= 32, got {self.image_size}"
            )

    @property
    def expansion(self) -> int:
        return ARCHS[self.arch]["block"].expansion

    def channels(self) -> tuple[int, int, int]:
        """Channels of the teacher's layer1, layer2, layer3 maps."""
        b, e = self.base_channels, self.expansion
        return (b * e, 2 * b * e, 4 * b * e)


# ------------------------------------------------------------------------------------ encoder


class ResNetEncoder(nn.Module):
    """torchvision's ResNet up to ``layer3`` with a free stem width; keys as torchvision's.

    forward(x: Tensor  # [B, 3, H, W]) -> [layer1 [B, b*e, H/4, W/4], layer2 [B, 2b*e, H/8, W/8],
    layer3 [B, 4b*e, H/16, W/16]]
    """

    def __init__(
        self, block: type, layers: tuple[int, int, int], base: int = 64, width_per_group: int = 64
    ) -> None:
        super().__init__()
        self.base_width = width_per_group
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, 2 * base, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * base, layers[2], stride=2)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        kw = {"base_width": self.base_width} if block is Bottleneck else {}
        mods = [block(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]


# ------------------------------------------------------------------------------------ bottleneck


class OneClassBottleneck(nn.Module):
    """OCBE: multi-scale feature fusion plus one ResNet stage (official ``BN_layer``).

    forward([f1 [B, b*e, H/4], f2 [B, 2b*e, H/8], f3 [B, 4b*e, H/16]]) -> [B, 8b*e, H/32, W/32]
    """

    def __init__(self, block: type, blocks: int, base: int = 64, width_per_group: int = 64) -> None:
        super().__init__()
        e = block.expansion
        b = base
        self.base_width = width_per_group
        self.conv1 = conv3x3(b * e, 2 * b * e, 2)
        self.bn1 = nn.BatchNorm2d(2 * b * e)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(2 * b * e, 4 * b * e, 2)
        self.bn2 = nn.BatchNorm2d(4 * b * e)
        self.conv3 = conv3x3(2 * b * e, 4 * b * e, 2)
        self.bn3 = nn.BatchNorm2d(4 * b * e)
        # present in the official module (and its checkpoints) but never used by its forward
        self.conv4 = conv1x1(16 * b * e, 8 * b * e, 1)
        self.bn4 = nn.BatchNorm2d(8 * b * e)
        inplanes = 4 * b * e * 3  # the three fused maps
        planes = 8 * b
        downsample = nn.Sequential(conv1x1(inplanes, planes * e, 2), nn.BatchNorm2d(planes * e))
        kw = {"base_width": width_per_group} if block is Bottleneck else {}
        mods = [block(inplanes, planes, 2, downsample, **kw)]
        mods += [block(planes * e, planes, **kw) for _ in range(1, blocks)]
        self.bn_layer = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, feats: list[Tensor]) -> Tensor:
        l1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(feats[0]))))))
        l2 = self.relu(self.bn3(self.conv3(feats[1])))
        return self.bn_layer(torch.cat([l1, l2, feats[2]], 1)).contiguous()


# ------------------------------------------------------------------------------------ decoder


def _deconv2x2(cin: int, cout: int, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=stride, bias=False)


class DeBasicBlock(nn.Module):
    """The official de_resnet BasicBlock: its stride-2 conv1 is a 2x2 transposed conv."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _deconv2x2(inplanes, planes) if stride == 2 else conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.upsample(x) if self.upsample is not None else x
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    """The official de_resnet Bottleneck: its stride-2 conv2 is a 2x2 transposed conv."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: nn.Module | None = None,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _deconv2x2(width, width) if stride == 2 else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.upsample(x) if self.upsample is not None else x
        return self.relu(out + identity)


class DeResNet(nn.Module):
    """The student decoder (official ``de_resnet``): three up-sampling stages.

    forward(z: Tensor  # [B, 8b*e, H/32, W/32]) -> [s1 [B, b*e, H/4], s2 [B, 2b*e, H/8],
    s3 [B, 4b*e, H/16]] (ordered as the encoder's maps)
    """

    def __init__(
        self, block: type, layers: tuple[int, int, int], base: int = 64, width_per_group: int = 64
    ) -> None:
        super().__init__()
        self.base_width = width_per_group
        self.inplanes = 8 * base * block.expansion
        self.layer1 = self._make_layer(block, 4 * base, layers[0], stride=2)
        self.layer2 = self._make_layer(block, 2 * base, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base, layers[2], stride=2)
        for m in self.modules():  # the official init touches nn.Conv2d only (not transposed)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        upsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            upsample = nn.Sequential(
                _deconv2x2(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        kw = {"base_width": self.base_width} if block is DeBottleneck else {}
        mods = [block(self.inplanes, planes, stride, upsample, **kw)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, z: Tensor) -> list[Tensor]:
        a = self.layer1(z)
        b = self.layer2(a)
        c = self.layer3(b)
        return [c, b, a]


# ------------------------------------------------------------------------------------ model


class ReverseDistillation(nn.Module):
    """Teacher ``encoder`` (frozen, eval mode), ``bn`` (OCBE) and student ``decoder``.

    forward(images: Tensor  # [B, 3, H, W], ImageNet-normalised) ->
        (teacher maps, student maps), each a list of three [B, C_k, H_k, W_k]
    """

    def __init__(self, config: RD4ADConfig) -> None:
        super().__init__()
        self.config = config
        a = ARCHS[config.arch]
        block, wpg, b = a["block"], a["width_per_group"], config.base_channels
        de_block = DeBottleneck if block is Bottleneck else DeBasicBlock
        self.encoder = ResNetEncoder(block, a["layers"], b, wpg)
        self.bn = OneClassBottleneck(block, a["bn_blocks"], b, wpg)
        self.decoder = DeResNet(de_block, a["layers"], b, wpg)
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> ReverseDistillation:
        super().train(mode)
        self.encoder.eval()  # the teacher stays in eval mode (frozen BN statistics)
        return self

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        with torch.no_grad():
            t = self.encoder(images)
        s = self.decoder(self.bn(t))
        return t, s

    def student_parameters(self) -> list[nn.Parameter]:
        """What the official optimiser trains: the bottleneck's and the decoder's parameters."""
        return list(self.bn.parameters()) + list(self.decoder.parameters())

    def normalize(self, images: Tensor) -> Tensor:
        """images: float [B, 3, H, W] in [0, 1] -> ImageNet-normalised."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 16) -> np.ndarray:
        """images: float [B, 3, S, S] in [0, 1] (S = config.image_size) -> anomaly maps
        float32 [B, S, S] (blurred, as the official evaluation)."""
        was = self.training
        self.eval()
        out = []
        try:
            for i in range(0, images.shape[0], batch_size):
                x = self.normalize(images[i : i + batch_size])
                t, s = self(x)
                out.append(anomaly_map(t, s, x.shape[-1], sigma=self.config.sigma))
        finally:
            self.train(was)
        return np.concatenate(out, 0)


def build_rd4ad(config: RD4ADConfig | None = None, weights_dir: str | os.PathLike | None = None):
    """A :class:`ReverseDistillation` with its teacher weights loaded as ``config.teacher`` says
    (the student starts from the official random initialisation).

    Raises:
        WeightsNotFoundError: the teacher's weights are not on this machine.
    """
    config = config or RD4ADConfig()
    path = teacher_path(config, weights_dir)  # raise before building a large model
    model = ReverseDistillation(config)
    if path is not None:
        load_teacher_weights(model.encoder, config, weights_dir, path)
    return model


def rd4ad_loss(teacher: list[Tensor], student: list[Tensor]) -> Tensor:
    """Official loss: sum over scales of mean over the batch of 1 - cos(flat t, flat s)."""
    loss = teacher[0].new_zeros(())
    for t, s in zip(teacher, student):
        loss = loss + torch.mean(1 - F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1))
    return loss


def anomaly_map(
    teacher: list[Tensor],
    student: list[Tensor],
    out_size: int | tuple[int, int],
    sigma: float = 4.0,
) -> np.ndarray:
    """Sum over scales of the per-pixel ``1 - cos`` maps upsampled (bilinear, align_corners) to
    ``out_size``, then a Gaussian blur of ``sigma`` px (scipy, as the official code).

    Returns float32 [B, H, W]."""
    size = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
    total = None
    for t, s in zip(teacher, student):
        m = (1 - F.cosine_similarity(t, s, dim=1)).unsqueeze(1)
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=True)
        total = m if total is None else total + m
    amap = total[:, 0].detach().float().cpu().numpy()
    if sigma > 0:
        amap = np.stack([gaussian_filter(a, sigma=sigma) for a in amap])
    return amap.astype(np.float32)


# ------------------------------------------------------------------------------------ weights


def teacher_path(config: RD4ADConfig, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The teacher's weight file for ``config.teacher`` (None for 'random-test-only').

    Raises:
        WeightsNotFoundError: no such file (the message names what to download and where).
    """
    if config.teacher == TEACHER_RANDOM:
        return None
    if config.teacher == TEACHER_IMAGENET:
        if config.base_channels != 64:
            raise WeightsNotFoundError(
                f"RD4AD teacher: no ImageNet weights exist for {config.arch} at base_channels="
                f"{config.base_channels} (only 64); pass a teacher checkpoint path as "
                "teacher=PATH (train one with splatlab.plugins.inspect.anomaly.teacher."
                "train_texture_teacher or `python benchmarks/anomaly.py --train-teacher PATH`)"
            )
        fn = ARCHS[config.arch]["file"]
        return find_weights(
            Path(weights_dir) / fn if weights_dir is not None else None,
            [fn],
            f"RD4AD teacher ({config.arch}, ImageNet)",
            TORCHVISION_URL + fn,
        )
    path = Path(config.teacher).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"RD4AD teacher checkpoint {path} does not exist; train one with "
            f"`python benchmarks/anomaly.py --train-teacher {path}` or use teacher='imagenet' "
            f"with {TORCHVISION_URL}{ARCHS[config.arch]['file']} in torch hub's checkpoints "
            "folder"
        )
    return path


def load_teacher_weights(
    encoder: ResNetEncoder,
    config: RD4ADConfig,
    weights_dir: str | os.PathLike | None = None,
    path: Path | None = None,
) -> None:
    """Load the teacher: torchvision's ImageNet file for ``teacher='imagenet'`` (found in
    ``weights_dir``, ``$SPLATLAB_WEIGHTS``, ``~/.cache/splatlab/weights`` or torch hub's
    ``checkpoints`` folder, where torchvision caches it), else the checkpoint at ``config.teacher``
    (a state_dict of the encoder, or a dict with an ``'encoder'`` entry). layer4 / fc keys of a
    full torchvision file are dropped; every layer1-3 key must be present.

    Raises:
        WeightsNotFoundError: no such file (the message names what to download and where).
        CheckpointError: the file's keys or shapes do not fit this architecture.
    """
    if config.teacher == TEACHER_RANDOM:
        return
    path = path if path is not None else teacher_path(config, weights_dir)
    sd = load_state_dict_file(path, "RD4AD teacher")
    if isinstance(sd, dict) and "encoder" in sd and isinstance(sd["encoder"], dict):
        sd = sd["encoder"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"RD4AD teacher: {path} does not hold a state_dict")
    own = encoder.state_dict()
    kept = {k: v for k, v in sd.items() if k in own}
    extra = [k for k in sd if k not in own and not k.startswith(("layer4.", "fc."))]
    missing = [k for k in own if k not in kept]
    bad = [k for k, v in kept.items() if tuple(v.shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(
            f"RD4AD teacher: {path} does not fit {config.arch} at base_channels="
            f"{config.base_channels} (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {bad[:3]})"
        )
    encoder.load_state_dict(kept, strict=True)


def _strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_rd4ad(
    path: str | os.PathLike,
    config: RD4ADConfig | None = None,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
) -> ReverseDistillation:
    """Load a trained RD4AD checkpoint: the official ``{'bn': ..., 'decoder': ...}`` file (the
    teacher then comes from torchvision's ImageNet weights, ``config`` default wide_resnet50_2),
    or one written by :func:`save_rd4ad` (which also stores its config and, for a teacher that is
    not ImageNet's, the teacher's weights). The official test script drops ``bn`` keys containing
    'memory'; so does this.

    Raises:
        WeightsNotFoundError: the file (or the ImageNet teacher) is missing.
        CheckpointError: the file is not an RD4AD checkpoint or does not fit the architecture.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(
            f"RD4AD checkpoint {p} does not exist. Train one with "
            f"`python benchmarks/anomaly.py --train {p}` (or "
            "splatlab.plugins.inspect.anomaly.rd4ad.train_rd4ad), or download an official one "
            "(hq-deng/RD4AD, {'bn','decoder'} files) and pass its path"
        )
    ckpt = load_state_dict_file(p, "RD4AD")
    if not isinstance(ckpt, dict) or "bn" not in ckpt or "decoder" not in ckpt:
        raise CheckpointError(
            f"RD4AD: {p} is not an RD4AD checkpoint (expected a dict with 'bn' and 'decoder' "
            "state_dicts, as the official main.py saves)"
        )
    if config is None:
        stored = ckpt.get("config")
        config = RD4ADConfig(**stored) if isinstance(stored, dict) else RD4ADConfig()
    teacher_sd = ckpt.get("encoder")
    if not isinstance(teacher_sd, dict):
        teacher_path(config, weights_dir)  # raise before building a large model
    model = ReverseDistillation(config)
    if isinstance(teacher_sd, dict):
        _load_strict(model.encoder, _strip_module(teacher_sd), p, "encoder")
    elif config.teacher != TEACHER_RANDOM:
        load_teacher_weights(model.encoder, config, weights_dir)
    bn_sd = {k: v for k, v in _strip_module(ckpt["bn"]).items() if "memory" not in k}
    _load_strict(model.bn, bn_sd, p, "bn")
    _load_strict(model.decoder, _strip_module(ckpt["decoder"]), p, "decoder")
    model.eval()
    return model.to(device)


def _load_strict(module: nn.Module, sd: dict[str, Tensor], path: Path, part: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(
            f"RD4AD: the {part!r} weights of {path} do not fit this architecture (missing "
            f"{missing[:3]}, unexpected {extra[:3]}, wrong shape {bad[:3]}); pass the config the "
            "checkpoint was trained with (arch, base_channels)"
        )
    module.load_state_dict(sd, strict=True)


def save_rd4ad(
    model: ReverseDistillation, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> None:
    """Write ``{'bn', 'decoder'}`` (the official layout) plus ``config``, the teacher (``encoder``)
    when it is not torchvision's ImageNet one, and ``extra`` (e.g. score statistics), atomically."""
    import io

    from ..utils import atomic_write_bytes

    ckpt: dict[str, Any] = {
        "bn": model.bn.state_dict(),
        "decoder": model.decoder.state_dict(),
        "config": asdict(model.config),
    }
    if model.config.teacher != TEACHER_IMAGENET:
        ckpt["encoder"] = model.encoder.state_dict()
    if extra:
        ckpt.update(extra)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())
