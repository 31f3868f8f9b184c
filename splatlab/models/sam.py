"""Segment Anything (Kirillov et al. 2023) as a feature teacher and a promptable mask decoder.

The model classes are ``segment_anything``'s own (ImageEncoderViT, PromptEncoder, MaskDecoder,
TwoWayTransformer, Sam); :func:`build_sam_model` assembles them with the hyper-parameters of the
official builders (checked key for key against ``segment_anything.build_sam_vit_*`` in the tests),
and :func:`load_sam` loads the official checkpoints ``sam_vit_{b,l,h}_*.pth`` strictly.

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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError, WeightsNotFoundError
from .teacher_cache import Teacher
from .weights import find_weights, load_state_dict_file

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
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
}


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
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    prompt_embed_dim = 256
    patch = 16
    emb = image_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=encoder_depth,
            embed_dim=encoder_embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=encoder_num_heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(encoder_global_attn_indexes),
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
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


def infer_sam_type(state_dict: dict[str, Tensor]) -> str:
    """'vit_b' | 'vit_l' | 'vit_h' from an official checkpoint's shapes.

    Raises:
        WeightsNotFoundError: the state_dict is not a SAM ViT checkpoint (MobileSAM's TinyViT
            'vit_t' layout is recognised and refused with a message).
    """
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        if any(k.startswith("image_encoder.layers.") for k in state_dict):
            raise WeightsNotFoundError(
                "this is a MobileSAM (TinyViT 'vit_t') checkpoint; splatlab loads the SAM ViT-B/L/H checkpoints "
                f"({', '.join(SAM_CHECKPOINTS.values())} from {SAM_URL})"
            )
        raise WeightsNotFoundError(
            f"not a SAM checkpoint: no {key!r} (keys start {list(state_dict)[:3]})"
        )
    width = int(state_dict[key].shape[0])
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for name, cfg in SAM_CONFIGS.items():
        if cfg["encoder_embed_dim"] == width and cfg["encoder_depth"] == depth:
            return name
    raise WeightsNotFoundError(
        f"SAM checkpoint with encoder width {width} and depth {depth} matches none of {list(SAM_CONFIGS)}"
    )


def load_sam(
    name_or_path: str | os.PathLike = "vit_b", device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The official SAM: ``name_or_path`` is 'vit_b' | 'vit_l' | 'vit_h' (file looked up in
    :func:`splatlab.models.weights.weights_dirs`) or a checkpoint path (type inferred from it).

    Raises:
        WeightsNotFoundError: the file is absent (the message gives the download URL).
    """
    wanted = str(name_or_path) if str(name_or_path) in SAM_CHECKPOINTS else None
    files = [SAM_CHECKPOINTS[wanted]] if wanted else list(SAM_CHECKPOINTS.values())
    url = SAM_URL + (SAM_CHECKPOINTS[wanted] if wanted else SAM_CHECKPOINTS["vit_b"])
    path = find_weights(None if wanted else name_or_path, files, "SAM", url)
    sd = load_state_dict_file(path, "SAM")
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    kind = infer_sam_type(sd)
    if wanted and kind != wanted:
        raise WeightsNotFoundError(f"{path} holds a SAM {kind} checkpoint, not {wanted}")
    sam = build_sam_model(**SAM_CONFIGS[kind])
    sam.load_state_dict(sd, strict=True)
    sam.model_type = kind  # type: ignore[attr-defined]
    return sam.to(device).eval()


class SamTeacher(Teacher):
    """SAM's image encoder as a distillation teacher, and its prompt/mask decoder for clicks.

    Args:
        sam: a ``segment_anything.modeling.Sam`` (from :func:`load_sam` or :func:`build_sam_model`).
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
