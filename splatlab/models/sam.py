"""Segment Anything (Kirillov et al. 2023) as a feature teacher and a promptable mask decoder.

The model classes are ``segment_anything``'s own (ImageEncoderViT, PromptEncoder, MaskDecoder,
TwoWayTransformer, Sam); :func:`build_sam_model` assembles them with the hyper-parameters of the
official builders (checked key for key against ``segment_anything.build_sam_vit_*`` in the tests),
and :func:`load_sam` loads the official checkpoints ``sam_vit_{b,l,h}_*.pth`` strictly.

MobileSAM (Zhang et al. 2023, ``mobile_sam.pt``, model type 'vit_t') is SAM's prompt encoder and
mask decoder behind a TinyViT-5M image encoder. No package ships it, so :func:`build_mobile_sam`
uses timm's ``TinyVit`` as the encoder trunk (with MobileSAM's one change: the last patch merging
keeps the resolution, stride 1, so a 1024 input ends on a 64 x 64 map) plus SAM's neck, and the
official checkpoint's key names are converted to ours and back
(:func:`mobile_sam_key_from_official`, :func:`mobile_sam_key_to_official`).

Feature 3DGS distils SAM's image embedding (256 x 64 x 64 for the 1024 x 1024 padded input). The
image occupies the top-left ``h' x w'`` of that input (longest side resized to 1024), so the
teacher map kept here is the embedding's valid part ``[256, ceil(h'/16), ceil(w'/16)]``; the
rendered SAM feature map is resized to that grid and zero-padded back to 64 x 64 before SAM's
prompt encoder and mask decoder run on it (:meth:`SamTeacher.embedding_from_features`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CheckpointError, DataError, WeightsNotFoundError
from .teacher_cache import Teacher
from .weights import find_weights, load_state_dict_file

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_t": "mobile_sam.pt",
}
MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
# encoder hyper-parameters of segment_anything.build_sam_vit_{b,l,h}
SAM_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b": dict(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
    ),
    "vit_l": dict(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": dict(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
    ),
    # MobileSAM's TinyViT-5M (mobile_sam/build_sam.py build_sam_vit_t; arguments of build_mobile_sam)
    "vit_t": dict(
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
    ),
}


def _checkpoint_url(kind: str) -> str:
    return MOBILE_SAM_URL if kind == "vit_t" else SAM_URL + SAM_CHECKPOINTS[kind]


def _segment_anything() -> Any:
    try:
        import segment_anything
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "SAM needs the segment-anything package: pip install segment-anything"
        ) from e
    return segment_anything


def build_sam_model(
    encoder_embed_dim: int,
    encoder_depth: int,
    encoder_num_heads: int,
    encoder_global_attn_indexes: Sequence[int],
    window_size: int = 14,
    image_size: int = 1024,
) -> torch.nn.Module:
    """A randomly initialised ``segment_anything.modeling.Sam`` (eval mode) with the official
    builders' layout; small encoder settings give tiny test models of the same classes."""
    _segment_anything()  # a clear ImportError when the package is absent
    from segment_anything.modeling import ImageEncoderViT

    encoder = ImageEncoderViT(
        depth=encoder_depth,
        embed_dim=encoder_embed_dim,
        img_size=image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=encoder_num_heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(encoder_global_attn_indexes),
        window_size=window_size,
        out_chans=256,
    )
    return _sam_with_encoder(encoder, image_size)


def _sam_with_encoder(encoder: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """``Sam`` with the official prompt encoder and mask decoder (the same in SAM and MobileSAM)
    behind ``encoder`` (which maps [B, 3, S, S] to [B, 256, S/16, S/16]), in eval mode."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_embed_dim = 256
    emb = image_size // 16
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


class MobileSamImageEncoder(torch.nn.Module):
    """MobileSAM's image encoder: timm's TinyViT trunk (last patch merging at stride 1) and SAM's
    neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d; no conv biases).

    ``forward``: [B, 3, img_size, img_size] (SAM-preprocessed) -> [B, 256, img_size/16, img_size/16].
    The trunk's classifier head (``head.norm``, ``head.fc``) is unused but kept, since the
    official checkpoint holds it (``norm_head``, ``head``).
    """

    def __init__(
        self,
        img_size: int = 1024,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        try:
            from timm.models.tiny_vit import TinyVit
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("MobileSAM needs timm: pip install timm") from e
        from segment_anything.modeling.common import LayerNorm2d

        if len(embed_dims) != 4 or not (len(depths) == len(num_heads) == len(window_sizes) == 4):
            raise ValueError(
                "MobileSAM's TinyViT has 4 stages: give 4 embed_dims/depths/heads/windows"
            )
        self.img_size = int(img_size)
        self.trunk = TinyVit(
            in_chans=3,
            num_classes=num_classes,
            embed_dims=tuple(embed_dims),
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_sizes=tuple(window_sizes),
            mlp_ratio=mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            mbconv_expand_ratio=mbconv_expand_ratio,
            local_conv_size=local_conv_size,
        )
        # MobileSAM: the last patch merging's depthwise conv keeps the resolution (stride 1)
        self.trunk.stages[-1].downsample.conv2.conv.stride = (1, 1)
        self.neck = torch.nn.Sequential(
            torch.nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            torch.nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.neck(self.trunk.forward_features(x))


def build_mobile_sam(
    embed_dims: Sequence[int] = (64, 128, 160, 320),
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (2, 4, 5, 10),
    window_sizes: Sequence[int] = (7, 7, 14, 7),
    image_size: int = 1024,
) -> torch.nn.Module:
    """A randomly initialised MobileSAM (``Sam`` with a :class:`MobileSamImageEncoder`, eval
    mode); the defaults are 'vit_t' (``SAM_CONFIGS['vit_t']``), smaller settings give test models."""
    _segment_anything()
    encoder = MobileSamImageEncoder(
        img_size=image_size,
        embed_dims=embed_dims,
        depths=depths,
        num_heads=num_heads,
        window_sizes=window_sizes,
    )
    return _sam_with_encoder(encoder, image_size)


# Official MobileSAM encoder names (mobile_sam/modeling/tiny_vit_sam.py) -> ours, after the
# 'image_encoder.' prefix; prompt_encoder.* / mask_decoder.* are the same in both layouts.
#   patch_embed.seq.0.X           <-> trunk.patch_embed.conv1.X'
#   patch_embed.seq.2.X           <-> trunk.patch_embed.conv2.X'
#   layers.{i}.blocks.{j}.X       <-> trunk.stages.{i}.blocks.{j}.X'
#   layers.{i}.downsample.X       <-> trunk.stages.{i+1}.downsample.X'  (merging ends stage i there,
#                                                                        starts stage i+1 in timm)
#   norm_head.{weight,bias}       <-> trunk.head.norm.{weight,bias}
#   head.{weight,bias}            <-> trunk.head.fc.{weight,bias}
#   neck.X                        <-> neck.X
# X' is X with Conv2d_BN's conv child 'c' named 'conv' (timm's ConvNorm); 'bn' stays 'bn'.
_ENC = "image_encoder."


def _rename_part(parts: list[str], old: str, new: str) -> list[str]:
    return [new if p == old else p for p in parts]


def mobile_sam_key_from_official(key: str) -> str | None:
    """Our state_dict key for an official MobileSAM key (None: not an encoder key we know)."""
    if not key.startswith(_ENC):
        return key
    p = key[len(_ENC) :].split(".")
    if p[0] == "neck":
        return key
    if p[0] == "norm_head" and len(p) == 2:
        return f"{_ENC}trunk.head.norm.{p[1]}"
    if p[0] == "head" and len(p) == 2:
        return f"{_ENC}trunk.head.fc.{p[1]}"
    if p[0] == "patch_embed" and len(p) >= 4 and p[1] == "seq" and p[2] in ("0", "2"):
        conv = "conv1" if p[2] == "0" else "conv2"
        return ".".join([f"{_ENC}trunk.patch_embed.{conv}", *_rename_part(p[3:], "c", "conv")])
    if p[0] == "layers" and len(p) >= 4 and p[1].isdigit():
        i = int(p[1])
        rest = _rename_part(p[3:], "c", "conv")
        if p[2] == "blocks":
            return ".".join([f"{_ENC}trunk.stages.{i}.blocks", *rest])
        if p[2] == "downsample":
            return ".".join([f"{_ENC}trunk.stages.{i + 1}.downsample", *rest])
    return None


def mobile_sam_key_to_official(key: str) -> str | None:
    """The official MobileSAM key for one of ours (inverse of :func:`mobile_sam_key_from_official`)."""
    if not key.startswith(_ENC):
        return key
    p = key[len(_ENC) :].split(".")
    if p[0] == "neck":
        return key
    if p[0] != "trunk" or len(p) < 3:
        return None
    p = p[1:]
    if p[0] == "head" and len(p) == 3 and p[1] in ("norm", "fc"):
        return f"{_ENC}{'norm_head' if p[1] == 'norm' else 'head'}.{p[2]}"
    if p[0] == "patch_embed" and p[1] in ("conv1", "conv2") and len(p) >= 3:
        seq = "0" if p[1] == "conv1" else "2"
        return ".".join([f"{_ENC}patch_embed.seq.{seq}", *_rename_part(p[2:], "conv", "c")])
    if p[0] == "stages" and len(p) >= 4 and p[1].isdigit():
        i = int(p[1])
        rest = _rename_part(p[3:], "conv", "c")
        if p[2] == "blocks":
            return ".".join([f"{_ENC}layers.{i}.blocks", *rest])
        if p[2] == "downsample" and i >= 1:
            return ".".join([f"{_ENC}layers.{i - 1}.downsample", *rest])
    return None


def mobile_sam_official_state_dict(sam: torch.nn.Module) -> dict[str, Tensor]:
    """Our MobileSAM's state_dict in the official ``mobile_sam.pt`` layout (same tensors, official
    names and order), e.g. to ``torch.save`` a file the official code loads."""
    out: dict[str, Tensor] = {}
    for k, v in sam.state_dict().items():
        ok = mobile_sam_key_to_official(k)
        if ok is None:
            raise ValueError(
                f"no official MobileSAM name for {k!r}: is this a build_mobile_sam model?"
            )
        out[ok] = v
    return out


def _name_keys(keys: Sequence[str], limit: int = 8) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_mobile_sam_state_dict(sam: torch.nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Load an official-layout MobileSAM state_dict into :func:`build_mobile_sam`'s model.

    Strict, except that BatchNorm ``num_batches_tracked`` buffers may be absent.

    Raises:
        CheckpointError: missing or unexpected keys, or shape mismatches (named in the
            official layout).
    """
    ours = sam.state_dict()
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for k, v in state_dict.items():
        nk = mobile_sam_key_from_official(k)
        if nk is None or nk not in ours:
            unexpected.append(k)
        else:
            converted[nk] = v
    missing = [
        str(mobile_sam_key_to_official(k))
        for k in ours
        if k not in converted and not k.endswith(".num_batches_tracked")
    ]
    wrong = [
        f"{mobile_sam_key_to_official(k)} {list(v.shape)} (expected {list(ours[k].shape)})"
        for k, v in converted.items()
        if v.shape != ours[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_name_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_name_keys(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_name_keys(wrong)}")
    if problems:
        raise CheckpointError("not a MobileSAM vit_t state_dict: " + "; ".join(problems))
    sam.load_state_dict(converted, strict=False)
    sam.eval()  # also drops timm's cached attention biases


def _tinyvit_config(state_dict: dict[str, Tensor]) -> tuple[list[int | None], list[int]]:
    """(embed dims, depths) of an official-layout TinyViT encoder (None where a key is absent)."""

    def width(key: str) -> int | None:
        t = state_dict.get(f"{_ENC}{key}")
        return int(t.shape[0]) if t is not None else None

    dims = [width("patch_embed.seq.2.c.weight")]
    dims += [width(f"layers.{i}.blocks.0.attn.norm.weight") for i in (1, 2, 3)]
    depths = [
        len({k.split(".")[4] for k in state_dict if k.startswith(f"{_ENC}layers.{i}.blocks.")})
        for i in range(4)
    ]
    return dims, depths


def infer_sam_type(state_dict: dict[str, Tensor]) -> str:
    """'vit_b' | 'vit_l' | 'vit_h' | 'vit_t' (MobileSAM) from an official checkpoint's keys and
    shapes.

    Raises:
        WeightsNotFoundError: the state_dict is neither a SAM ViT nor a MobileSAM vit_t checkpoint.
    """
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        if any(k.startswith(f"{_ENC}layers.") for k in state_dict):
            dims, depths = _tinyvit_config(state_dict)
            cfg = SAM_CONFIGS["vit_t"]
            if dims == list(cfg["embed_dims"]) and depths == list(cfg["depths"]):
                return "vit_t"
            raise WeightsNotFoundError(
                f"TinyViT (MobileSAM-like) checkpoint with embed dims {dims} and depths {depths} is "
                f"not MobileSAM vit_t ({list(cfg['embed_dims'])}, {list(cfg['depths'])}); get "
                f"{SAM_CHECKPOINTS['vit_t']} from {MOBILE_SAM_URL}"
            )
        raise WeightsNotFoundError(
            f"not a SAM checkpoint: no {key!r} (keys start {list(state_dict)[:3]})"
        )
    width = int(state_dict[key].shape[0])
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, cfg in SAM_CONFIGS.items():
        if cfg.get("encoder_embed_dim") == width and cfg.get("encoder_depth") == depth:
            return name
    raise WeightsNotFoundError(
        f"SAM checkpoint with encoder width {width} and depth {depth} matches none of "
        f"{[k for k in SAM_CONFIGS if k != 'vit_t']}"
    )


def load_sam(
    name_or_path: str | os.PathLike = "vit_b", device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The official SAM or MobileSAM: ``name_or_path`` is 'vit_b' | 'vit_l' | 'vit_h' | 'vit_t'
    (file ``sam_vit_*.pth`` / ``mobile_sam.pt`` looked up in
    :func:`splatlab.models.weights.weights_dirs`) or a checkpoint path (type inferred from it).
    The model's ``model_type`` attribute names the type.

    Raises:
        WeightsNotFoundError: the file is absent (the message gives the download URL).
        CheckpointError: a MobileSAM checkpoint with missing/unexpected keys.
    """
    wanted = str(name_or_path) if str(name_or_path) in SAM_CHECKPOINTS else None
    if wanted:
        files, url = [SAM_CHECKPOINTS[wanted]], _checkpoint_url(wanted)
    else:
        files = list(SAM_CHECKPOINTS.values())
        mobile = Path(name_or_path).name == SAM_CHECKPOINTS["vit_t"]
        url = _checkpoint_url("vit_t" if mobile else "vit_b")
    what = "MobileSAM" if url == MOBILE_SAM_URL else "SAM"
    path = find_weights(None if wanted else name_or_path, files, what, url)
    sd = load_state_dict_file(path, what)
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    kind = infer_sam_type(sd)
    if wanted and kind != wanted:
        raise WeightsNotFoundError(f"{path} holds a SAM {kind} checkpoint, not {wanted}")
    if kind == "vit_t":
        sam = build_mobile_sam(**SAM_CONFIGS[kind])
        load_mobile_sam_state_dict(sam, sd)
    else:
        sam = build_sam_model(**SAM_CONFIGS[kind])
        sam.load_state_dict(sd, strict=True)
    sam.model_type = kind  # type: ignore[attr-defined]
    return sam.to(device).eval()


class SamTeacher(Teacher):
    """SAM's image encoder as a distillation teacher, and its prompt/mask decoder for clicks.

    Args:
        sam: a ``segment_anything.modeling.Sam`` (from :func:`load_sam`, :func:`build_sam_model` or
            :func:`build_mobile_sam`).
        tag: names the weights in the cache id (e.g. the checkpoint file name).
    """

    name = "sam"
    dim = 256

    def __init__(self, sam: torch.nn.Module, tag: str = "sam") -> None:
        self.sam = sam.eval()
        self.tag = tag
        self.img_size = int(sam.image_encoder.img_size)
        self.grid = self.img_size // 16

    def cache_id(self) -> str:
        return f"sam-{self.tag}-{self.img_size}"

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """Size (h', w') of the image after SAM's longest-side resize."""
        scale = self.img_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def valid_grid(self, h: int, w: int) -> tuple[int, int]:
        """Embedding cells covered by an h x w image: (ceil(h'/16), ceil(w'/16))."""
        hi, wi = self.input_size(h, w)
        return math.ceil(hi / 16), math.ceil(wi / 16)

    @torch.no_grad()
    def image_embedding(self, image: Tensor) -> Tensor:
        """image: [H, W, 3] in [0, 1] -> SAM's embedding [1, 256, 64, 64]."""
        h, w = image.shape[:2]
        hi, wi = self.input_size(h, w)
        x = (image.float().clamp(0, 1) * 255.0).permute(2, 0, 1)[None].to(self.device)
        x = F.interpolate(x, (hi, wi), mode="bilinear", align_corners=False, antialias=True)
        return self.sam.image_encoder(self.sam.preprocess(x[0])[None])

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        hv, wv = self.valid_grid(*image.shape[:2])
        return self.image_embedding(image)[0, :, :hv, :wv].float().cpu()

    def embedding_from_features(self, feat: Tensor, image_hw: tuple[int, int]) -> Tensor:
        """A rendered (decoded) SAM feature map [256, H, W] laid out as SAM's embedding
        [1, 256, 64, 64]: resized to the valid grid, zero-padded."""
        if feat.dim() != 3 or feat.shape[0] != self.dim:
            raise ValueError(f"SAM feature map must be [256, H, W], got {list(feat.shape)}")
        hv, wv = self.valid_grid(*image_hw)
        small = F.interpolate(feat[None].float(), (hv, wv), mode="bilinear", align_corners=False)
        return F.pad(small, (0, self.grid - wv, 0, self.grid - hv)).to(self.device)

    @torch.no_grad()
    def predict_masks(
        self,
        embedding: Tensor,  # [1, 256, 64, 64]
        image_hw: tuple[int, int],
        points: Tensor | np.ndarray,  # [P, 2] pixel (x, y)
        labels: Tensor | np.ndarray,  # [P] 1 positive / 0 negative
        multimask: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """SAM's point-prompted masks on an image embedding (real or rendered).

        Returns masks [K, H, W] bool, predicted IoU scores [K], low-res logits [K, 256, 256]
        (K = 3 with ``multimask`` else 1), ordered by decreasing score.
        """
        pts = torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2)
        lab = torch.as_tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
        if len(pts) == 0 or len(pts) != len(lab):
            raise DataError(
                f"need >= 1 click and one label per click, got {len(pts)} points, {len(lab)} labels"
            )
        h, w = image_hw
        hi, wi = self.input_size(h, w)
        coords = pts.clone()
        coords[:, 0] = coords[:, 0] * (wi / w)
        coords[:, 1] = coords[:, 1] * (hi / h)
        dev = self.device
        sparse, dense = self.sam.prompt_encoder(
            points=(coords[None].to(dev), lab[None].to(dev)), boxes=None, masks=None
        )
        low, iou = self.sam.mask_decoder(
            image_embeddings=embedding.to(dev),
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        masks = self.sam.postprocess_masks(low, (hi, wi), (h, w))[0] > self.sam.mask_threshold
        order = torch.argsort(iou[0], descending=True)
        return masks[order].cpu(), iou[0][order].cpu(), low[0][order].cpu()
