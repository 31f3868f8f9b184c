"""LSeg (Li et al., ICLR 2022): language-driven semantic segmentation, as a feature teacher.

No package ships LSeg, so the network is written here with the module names of the official
repository (isl-org/lang-seg, ``modules/models/lseg_net.py`` / ``lseg_blocks.py`` / ``lseg_vit.py``)
so that the official checkpoint ``demo_e200.ckpt`` (a PyTorch Lightning checkpoint whose
``state_dict`` keys start with ``net.``) loads strictly:

- ``pretrained.model``: timm ``vit_large_patch16_384`` (DPT's ViT-L/16 encoder, hooks after blocks
  5, 11, 17, 23); ``pretrained.act_postprocess{1..4}``: DPT reassemble blocks (readout
  projection ``.0.project.0``, 1x1 conv ``.3``, resampling ``.4``);
- ``scratch.layer{1..4}_rn``: 3x3 convs to 256 channels; ``scratch.refinenet{1..4}``: DPT fusion
  blocks with batch norm (``resConfUnit{1,2}.conv{1,2}/bn{1,2}``, ``out_conv``);
  ``scratch.head1``: 1x1 conv to the 512-D CLIP space;
- ``clip_pretrained``: OpenAI CLIP ViT-B/32 (only its text tower is used), here open_clip's
  ``ViT-B-32-quickgelu`` whose parameter names are OpenAI's.

The teacher output is ``head1``'s 512-D map at half the input resolution (the features
Feature 3DGS distils); text prompts are embedded by the CLIP text tower, and per-pixel labels are
the argmax of cosine similarity, as in LSeg.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsNotFoundError
from .teacher_cache import Teacher
from .weights import find_weights, load_state_dict_file

LSEG_URL = "https://drive.google.com/file/d/1FTuHY1xPUkM-5gaDtMfgCl3D0gR89WV7 (demo_e200.ckpt, from github.com/isl-org/lang-seg)"
LSEG_FILES = ("demo_e200.ckpt", "lseg_demo_e200.ckpt")


@dataclass(frozen=True)
class LSegConfig:
    """Architecture of LSeg ('clip_vitl16_384' backbone by default, the demo checkpoint's)."""

    vit_width: int = 1024  # ViT embedding width
    vit_depth: int = 24  # transformer blocks
    vit_heads: int = 16  # attention heads
    vit_img_size: int = 384  # the positional-embedding grid is vit_img_size / 16
    hooks: tuple[int, int, int, int] = (5, 11, 17, 23)  # blocks whose outputs feed the decoder
    reassemble: tuple[int, int, int, int] = (
        256,
        512,
        1024,
        1024,
    )  # channels of the 4 reassembled maps
    features: int = 256  # decoder width
    out_c: int = 512  # CLIP embedding width
    clip_model: str = "ViT-B-32-quickgelu"  # open_clip name of the text tower's model
    input_size: int = 480  # long side of the network input (multiple of 32)

    def tiny(self) -> LSegConfig:
        """A small random-test configuration of the same classes."""
        return LSegConfig(
            vit_width=32,
            vit_depth=4,
            vit_heads=2,
            vit_img_size=64,
            hooks=(0, 1, 2, 3),
            reassemble=(8, 16, 32, 32),
            features=16,
            out_c=512,
            input_size=64,
        )


class ProjectReadout(nn.Module):
    """DPT's 'project' readout: concat each patch token with the class token, Linear(2C, C) + GELU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * width, width), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:  # [B, 1 + T, C] -> [B, T, C]
        cls = x[:, :1].expand(-1, x.shape[1] - 1, -1)
        return self.project(torch.cat([x[:, 1:], cls], dim=-1))


class _Placeholder(nn.Module):
    """Parameter-free slots 1, 2 of the official reassemble Sequential (Transpose, Unflatten)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _reassemble(width: int, out: int, mode: str) -> nn.Sequential:
    layers: list[nn.Module] = [
        ProjectReadout(width),
        _Placeholder(),
        _Placeholder(),
        nn.Conv2d(width, out, 1),
    ]
    if mode == "up4":
        layers.append(nn.ConvTranspose2d(out, out, kernel_size=4, stride=4))
    elif mode == "up2":
        layers.append(nn.ConvTranspose2d(out, out, kernel_size=2, stride=2))
    elif mode == "down2":
        layers.append(nn.Conv2d(out, out, kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


class ResidualConvUnit(nn.Module):
    """ReLU-conv-BN-ReLU-conv-BN with a skip (DPT's ResidualConvUnit_custom with bn=True)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)
        self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(F.relu(x)))
        out = self.bn2(self.conv2(F.relu(out)))
        return out + x


class FusionBlock(nn.Module):
    """DPT's FeatureFusionBlock_custom: add the refined skip, refine, upsample x2, 1x1 conv."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class LSegNet(nn.Module):
    """LSeg with the official module names (see the module docstring). Randomly initialised;
    use :func:`load_lseg` for the official weights."""

    def __init__(self, cfg: LSegConfig = LSegConfig()) -> None:
        super().__init__()
        import open_clip
        from timm.models.vision_transformer import VisionTransformer

        self.cfg = cfg
        self.pretrained = nn.Module()
        self.pretrained.model = VisionTransformer(
            img_size=cfg.vit_img_size,
            patch_size=16,
            embed_dim=cfg.vit_width,
            depth=cfg.vit_depth,
            num_heads=cfg.vit_heads,
            num_classes=1000,
        )
        for k, mode in enumerate(("up4", "up2", "none", "down2")):
            setattr(
                self.pretrained,
                f"act_postprocess{k + 1}",
                _reassemble(cfg.vit_width, cfg.reassemble[k], mode),
            )
        self.scratch = nn.Module()
        for k in range(4):
            setattr(
                self.scratch,
                f"layer{k + 1}_rn",
                nn.Conv2d(cfg.reassemble[k], cfg.features, 3, padding=1, bias=False),
            )
        for k in range(4):
            setattr(self.scratch, f"refinenet{k + 1}", FusionBlock(cfg.features))
        self.scratch.head1 = nn.Conv2d(cfg.features, cfg.out_c, 1)
        # built on the current default device (a ``with torch.device("meta")`` block builds a shell)
        self.clip_pretrained = open_clip.create_model(
            cfg.clip_model, pretrained=None, device=torch.empty(0).device
        )
        self.tokenizer = open_clip.get_tokenizer(cfg.clip_model)
        self.register_buffer(
            "mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False
        )

    def _pos_embed(self, gh: int, gw: int) -> Tensor:
        pe = self.pretrained.model.pos_embed  # [1, 1 + g*g, C]
        g = int(round((pe.shape[1] - 1) ** 0.5))
        grid = pe[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        return torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, 3, H, W] normalised ((rgb - 0.5) / 0.5), H and W multiples of 32 ->
        head1 features [B, out_c, H/2, W/2] (not normalised)."""
        b, _, h, w = x.shape
        if h % 32 or w % 32:
            raise ValueError(f"LSeg input must be a multiple of 32 in both sides, got {h}x{w}")
        vit = self.pretrained.model
        gh, gw = h // 16, w // 16
        t = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([vit.cls_token.expand(b, -1, -1), t], dim=1) + self._pos_embed(gh, gw)
        acts = []
        for k, blk in enumerate(vit.blocks):
            t = blk(t)
            if k in self.cfg.hooks:
                acts.append(t)
            if len(acts) == 4:
                break
        layers = []
        for k, a in enumerate(acts):
            post = getattr(self.pretrained, f"act_postprocess{k + 1}")
            a = post[0](a).transpose(1, 2).reshape(b, -1, gh, gw)
            for m in post[3:]:
                a = m(a)
            layers.append(getattr(self.scratch, f"layer{k + 1}_rn")(a))
        s = self.scratch
        p = s.refinenet4(layers[3])
        p = s.refinenet3(p, layers[2])
        p = s.refinenet2(p, layers[1])
        p = s.refinenet1(p, layers[0])
        return s.head1(p)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """[P, out_c] unit-norm CLIP text embeddings."""
        dev = self.scratch.head1.weight.device
        return F.normalize(
            self.clip_pretrained.encode_text(self.tokenizer(list(prompts)).to(dev)).float(), dim=-1
        )


def _strip_state_dict(ckpt: dict) -> dict[str, Tensor]:
    sd = ckpt.get("state_dict", ckpt)
    if any(k.startswith("net.") for k in sd):
        sd = {k[4:]: v for k, v in sd.items() if k.startswith("net.")}
    return sd


def load_lseg(
    name_or_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    cfg: LSegConfig | None = None,
) -> LSegNet:
    """The official LSeg demo model (``demo_e200.ckpt``, ViT-L/16 + CLIP ViT-B/32), loaded strictly
    (``cfg``: another architecture of the same classes, default the demo checkpoint's).

    Raises:
        WeightsNotFoundError: the checkpoint is absent (message: where to download it, where to put it).
    """
    path = find_weights(name_or_path, LSEG_FILES, "LSeg", LSEG_URL)
    sd = _strip_state_dict(load_state_dict_file(path, "LSeg"))
    net = LSegNet(cfg or LSegConfig())
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise WeightsNotFoundError(
            f"{path} does not match the LSeg clip_vitl16_384 layout: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return net.to(device).eval()


class LSegTeacher(Teacher):
    """LSeg's 512-D per-pixel features (``head1``) as a distillation teacher.

    The image is resized (bilinear) so that its long side is ``net.cfg.input_size`` and both sides
    are multiples of 32; the map is at half that resolution.
    """

    name = "lseg"
    dim = 512
    text_aligned = True

    def __init__(self, net: LSegNet, tag: str = "demo_e200") -> None:
        self.net = net.eval()
        self.tag = tag
        self.dim = net.cfg.out_c

    def cache_id(self) -> str:
        return f"lseg-{self.tag}-{self.net.cfg.input_size}"

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.net.cfg.input_size / max(h, w)
        return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        dev = self.net.scratch.head1.weight.device
        hi, wi = self.input_size(*image.shape[:2])
        x = image.float().permute(2, 0, 1)[None].to(dev)
        x = F.interpolate(x, (hi, wi), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.net.mean) / self.net.std
        return self.net(x)[0].float().cpu()

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        return self.net.encode_text(prompts).cpu()
