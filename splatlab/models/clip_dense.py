"""Dense, text-aligned CLIP features without training (MaskCLIP, Zhou et al., ECCV 2022).

CLIP's image tower pools the class token; its patch tokens are not aligned with text. MaskCLIP
observed that in the LAST transformer block the value embeddings are: replacing that block's
attention and MLP by the value path alone,

    dense = proj(ln_post(out_proj(v(ln_1(x)))))        (per patch token; no residual, no MLP)

gives per-patch embeddings in the joint image-text space. Only open_clip's standard pretrained
weights are needed (``open_clip.create_model(name, pretrained=tag)``, resolved from the local
Hugging Face / open_clip cache or a file path).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import WeightsNotFoundError
from .teacher_cache import Teacher

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _cached_open_clip_file(model_name: str, tag: str) -> Path | None:
    """The locally cached weights file of an open_clip (model, tag), or None."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    hub = cfg.get("hf_hub")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo = hub.rstrip("/")
        for fn in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, fn)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    url = cfg.get("url")
    if url:
        p = (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
            / "clip"
            / os.path.basename(url)
        )
        if p.is_file():
            return p
    return None


def load_open_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | os.PathLike = "openai",
    device: str | torch.device = "cpu",
    allow_download: bool = False,
) -> torch.nn.Module:
    """An open_clip model with its pretrained weights: ``pretrained`` is an open_clip tag
    ('openai', 'laion2b_s34b_b88k', ...) looked up in the local Hugging Face / CLIP cache (and
    downloaded by open_clip only with ``allow_download``), or a checkpoint file.

    Raises:
        WeightsNotFoundError: the weights are not on this machine.
    """
    import open_clip

    src = str(pretrained)
    if Path(src).expanduser().is_file():
        path: Path | str | None = Path(src).expanduser()
    elif os.sep in src or src.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise WeightsNotFoundError(f"open_clip weights file {src} does not exist")
    elif src not in open_clip.list_pretrained_tags_by_model(model_name):
        raise WeightsNotFoundError(
            f"open_clip has no pretrained tag {src!r} for {model_name!r}; known: "
            f"{open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    else:
        path = _cached_open_clip_file(model_name, src) or (src if allow_download else None)
    if path is None:
        raise WeightsNotFoundError(
            f"open_clip {model_name!r} weights {src!r} are not in the local cache. On a machine with a network run: "
            f"python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{src}')\" "
            "(fills ~/.cache/huggingface), or pass the weights file's path."
        )
    try:
        model = open_clip.create_model(model_name, pretrained=str(path), device=device)
    except Exception as e:  # open_clip raises RuntimeError / HF errors / OSError for bad weights
        raise WeightsNotFoundError(
            f"open_clip {model_name!r}: could not load weights {path} ({type(e).__name__}: {e})"
        ) from e
    return model.eval()


class DenseCLIP(torch.nn.Module):
    """MaskCLIP-style dense features of an open_clip ViT (see the module docstring).

    Args:
        model: an open_clip ``CLIP`` with a ViT image tower.
        input_size: long side of the network input in pixels (rounded to the patch size).
        template: prompt template applied to text queries.
    """

    def __init__(
        self, model: torch.nn.Module, input_size: int = 448, template: str = "a photo of a {}."
    ) -> None:
        super().__init__()
        import open_clip

        visual = model.visual
        if not hasattr(visual, "transformer") or not hasattr(visual, "conv1"):
            raise TypeError(
                "DenseCLIP needs an open_clip model with a ViT image tower (visual.conv1 / visual.transformer)"
            )
        self.model = model.eval()
        self.patch = int(visual.conv1.kernel_size[0])
        self.input_size = int(input_size)
        self.template = template
        name = getattr(model, "_splatlab_name", None)
        self.tokenizer = open_clip.get_tokenizer(name) if name else open_clip.tokenize
        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return int(self.model.visual.proj.shape[1])

    def _pos(self, gh: int, gw: int) -> Tensor:
        pe = self.model.visual.positional_embedding  # [1 + g*g, C]
        g = int(round((pe.shape[0] - 1) ** 0.5))
        grid = pe[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([pe[:1], grid[0].permute(1, 2, 0).reshape(gh * gw, -1)], dim=0)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, 3, H, W] normalised, H and W multiples of the patch size -> [B, D, H/p, W/p]
        unit-norm dense embeddings."""
        v = self.model.visual
        b, _, h, w = x.shape
        gh, gw = h // self.patch, w // self.patch
        t = v.conv1(x.to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(t.dtype).view(1, 1, -1).expand(b, -1, -1)
        t = v.ln_pre(torch.cat([cls, t], dim=1) + self._pos(gh, gw).to(t.dtype))
        blocks = v.transformer.resblocks
        batch_first = getattr(v.transformer, "batch_first", True)
        if not batch_first:
            t = t.transpose(0, 1)
        for blk in blocks[:-1]:
            t = blk(t)
        if not batch_first:
            t = t.transpose(0, 1)
        last = blocks[-1]
        attn = last.attn
        c = t.shape[-1]
        y = last.ln_1(t)
        val = F.linear(y, attn.in_proj_weight[2 * c :], attn.in_proj_bias[2 * c :])
        val = attn.out_proj(val)
        dense = v.ln_post(val[:, 1:]) @ v.proj  # [B, T, D]
        dense = F.normalize(dense.float(), dim=-1)
        return dense.transpose(1, 2).reshape(b, -1, gh, gw)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """[P, D] unit-norm text embeddings (each prompt put into ``template``)."""
        dev = self.model.visual.proj.device
        tokens = self.tokenizer([self.template.format(p) for p in prompts]).to(dev)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def load_dense_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | os.PathLike = "openai",
    device: str | torch.device = "cpu",
    input_size: int = 448,
) -> DenseCLIP:
    """:class:`DenseCLIP` around :func:`load_open_clip` (raises WeightsNotFoundError when absent)."""
    model = load_open_clip(model_name, pretrained, device)
    model._splatlab_name = model_name  # type: ignore[attr-defined]
    return DenseCLIP(model, input_size=input_size).to(device)


class DenseCLIPTeacher(Teacher):
    """:class:`DenseCLIP` as a distillation teacher: [D, H/p, W/p] per view."""

    name = "clip"
    text_aligned = True

    def __init__(self, net: DenseCLIP, tag: str = "ViT-B-16-openai") -> None:
        self.net = net.eval()
        self.tag = tag
        self.dim = net.dim

    def cache_id(self) -> str:
        return f"clip-{self.tag}-{self.net.input_size}"

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        p = self.net.patch
        s = self.net.input_size / max(h, w)
        return max(p, int(round(h * s / p)) * p), max(p, int(round(w * s / p)) * p)

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        dev = self.net.model.visual.proj.device
        hi, wi = self.input_size(*image.shape[:2])
        x = image.float().permute(2, 0, 1)[None].to(dev)
        x = F.interpolate(x, (hi, wi), mode="bicubic", align_corners=False, antialias=True).clamp(
            0, 1
        )
        return self.net((x - self.net.mean) / self.net.std)[0].float().cpu()

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        return self.net.encode_text(prompts).cpu()
