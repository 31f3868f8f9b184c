"""Weight loading for the SwiftBrush generator: the Stable Diffusion 2.1-base teacher and a
SwiftBrush one-step student, through ``diffusers`` (one place for both; no training loops here).

Where weights are looked for, in order, for ``name_or_path``:

1. an existing folder: a diffusers pipeline folder (``unet/``, ``vae/``, ``text_encoder/``,
   ``tokenizer/``, ``scheduler/``) or, for the student, a bare UNet folder (``config.json`` +
   ``diffusion_pytorch_model.safetensors``); for the student also a single state-dict file
   (``.safetensors`` / ``.bin`` / ``.pt``, diffusers UNet keys) read onto the teacher's UNet config;
2. a Hugging Face hub id (``stabilityai/stable-diffusion-2-1-base``, ``thuanz123/swiftbrush``):
   the snapshot already in the Hugging Face cache (``$HF_HOME/hub``), else a folder named like the
   repo (``stable-diffusion-2-1-base``) in :func:`splatlab.models.weights.weights_dirs`; only with
   ``download=True`` is the hub contacted.

Missing weights raise :class:`DiffusionWeightsNotFoundError` (a ``WeightsNotFoundError``) that
names what to download and where to put it. Random weights are never put in their place: tests
build tiny random configs of the same diffusers classes themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, WeightsNotFoundError
from .weights import weights_dirs

__all__ = [
    "TEACHER_ID",
    "STUDENT_ID",
    "DiffusionWeightsNotFoundError",
    "DiffusionComponents",
    "resolve_weights_dir",
    "load_teacher",
    "load_student",
    "load_student_unet",
]

TEACHER_ID = "stabilityai/stable-diffusion-2-1-base"
STUDENT_ID = "thuanz123/swiftbrush"  # the official SwiftBrush checkpoint (a diffusers pipeline)


class DiffusionWeightsNotFoundError(WeightsNotFoundError):
    """The diffusion teacher or student weights are not on this machine (the message says what
    to download and where to put it)."""


@dataclass
class DiffusionComponents:
    """The parts of a text-to-image latent diffusion model that SwiftBrush uses.

    unet: ``UNet2DConditionModel`` (epsilon or v prediction, as ``scheduler`` states).
    scheduler: ``DDPMScheduler`` with the model's training schedule (``alphas_cumprod`` [T]).
    text_encoder / tokenizer: CLIP text model and tokenizer (None for embeddings-only use).
    vae: ``AutoencoderKL`` (None for a pixel-space model).
    source: where the weights came from (folder, file or hub id).
    """

    unet: Any
    scheduler: Any
    text_encoder: Any = None
    tokenizer: Any = None
    vae: Any = None
    source: str = ""
    student_timestep: int | None = None
    """A student's input timestep when its folder records one (``swiftbrush.json``, written by
    ``SwiftBrushTrainer.save_student``); None: T - 1, the paper's (the official student)."""


def _hf_cache_dir() -> Path:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def _download_hint(what: str, hub_id: str) -> str:
    local = weights_dirs()[-2] / hub_id.split("/")[-1]
    return (
        f"Download it with `huggingface-cli download {hub_id}` (fills the Hugging Face cache "
        f"{_hf_cache_dir()}), or `huggingface-cli download {hub_id} --local-dir {local}`, "
        f"or pass the folder's path (https://huggingface.co/{hub_id})."
    )


def resolve_weights_dir(
    name_or_path: str | os.PathLike, what: str, default_id: str, download: bool = False
) -> Path:
    """The local folder (or single file) holding ``name_or_path``'s weights (see the module
    docstring for the search order).

    Raises:
        DiffusionWeightsNotFoundError: naming ``default_id`` (what to download) and the folders.
    """
    s = str(name_or_path)
    p = Path(s).expanduser()
    if p.exists():
        return p
    file_like = p.suffix.lower() in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json")
    hub_id = s if (s.count("/") == 1 and not s.startswith((".", "/", "~")) and not file_like) else None
    if hub_id is None:
        raise DiffusionWeightsNotFoundError(
            f"{what}: {p} does not exist. {_download_hint(what, default_id)}"
        )
    looked = [str(_hf_cache_dir())]
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError / offline: look in splatlab's folders next
        pass
    for d in weights_dirs():
        cand = d / hub_id.split("/")[-1]
        looked.append(str(cand))
        if cand.is_dir():
            return cand
    if download:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(hub_id))
        except Exception as e:
            raise DiffusionWeightsNotFoundError(
                f"{what}: downloading {hub_id} failed ({type(e).__name__}: {e}). "
                f"{_download_hint(what, hub_id)}"
            ) from e
    raise DiffusionWeightsNotFoundError(
        f"{what}: the weights of {hub_id} are not on this machine (looked in {', '.join(looked)}). "
        f"{_download_hint(what, hub_id)}"
    )


def _check_pipeline_dir(root: Path, what: str, default_id: str, parts: tuple[str, ...]) -> None:
    missing = [sub for sub in parts if not (root / sub).is_dir()]
    if missing:
        raise DiffusionWeightsNotFoundError(
            f"{what}: {root} is not a complete diffusers pipeline folder (no {', '.join(missing)}/ "
            f"sub-folder). {_download_hint(what, default_id)}"
        )


def _load_parts(root: Path, device: str | torch.device, dtype: torch.dtype, with_unet: bool) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    out: dict[str, Any] = {}
    if with_unet:
        out["unet"] = UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype).to(device)
    out["scheduler"] = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    if (root / "text_encoder").is_dir():
        out["text_encoder"] = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", torch_dtype=dtype).to(device)
    if (root / "tokenizer").is_dir():
        out["tokenizer"] = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    if (root / "vae").is_dir():
        out["vae"] = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype).to(device)
    for m in ("unet", "text_encoder", "vae"):
        if m in out:
            out[m].requires_grad_(False).eval()
    return out


def _check_prediction(scheduler: Any, what: str, root: Path) -> None:
    pt = scheduler.config.get("prediction_type", "epsilon")
    if pt not in ("epsilon", "v_prediction"):
        raise CheckpointError(
            f"{what}: {root} predicts {pt!r}; SwiftBrush here needs an epsilon-prediction model "
            f"such as {TEACHER_ID} (or a v-prediction one such as SD 2.1 768 px)"
        )


def load_teacher(
    name_or_path: str | os.PathLike = TEACHER_ID,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    download: bool = False,
) -> DiffusionComponents:
    """The SD 2.1-base teacher (UNet, DDPM scheduler, CLIP text encoder + tokenizer, VAE) from a
    diffusers pipeline folder or hub id. Weights are frozen, in eval mode.

    Raises:
        DiffusionWeightsNotFoundError: the weights are not here (message says what to download).
        CheckpointError: the model predicts neither epsilon nor v.
    """
    what = "Stable Diffusion 2.1-base teacher"
    root = resolve_weights_dir(name_or_path, what, TEACHER_ID, download)
    if root.is_file():
        raise DiffusionWeightsNotFoundError(
            f"{what}: {root} is a single file; the teacher must be a diffusers pipeline folder "
            f"(unet/, vae/, text_encoder/, tokenizer/, scheduler/). {_download_hint(what, TEACHER_ID)}"
        )
    _check_pipeline_dir(root, what, TEACHER_ID, ("unet", "scheduler"))
    parts = _load_parts(root, device, dtype, with_unet=True)
    _check_prediction(parts["scheduler"], what, root)
    return DiffusionComponents(source=str(root), **parts)


def load_student_unet(
    name_or_path: str | os.PathLike,
    unet_config: Any = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    download: bool = False,
) -> Any:
    """A SwiftBrush student UNet from a pipeline folder (``unet/``), a UNet folder
    (``config.json``) or a single state-dict file with diffusers keys, loaded onto
    ``unet_config`` (the teacher's ``unet.config``; required for a single file).

    Raises:
        DiffusionWeightsNotFoundError: nothing there.
        CheckpointError: a single file whose keys do not match the UNet config.
    """
    from diffusers import UNet2DConditionModel

    what = "SwiftBrush student"
    root = resolve_weights_dir(name_or_path, what, STUDENT_ID, download)
    if root.is_dir():
        if (root / "unet" / "config.json").is_file():
            unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype)
        elif (root / "config.json").is_file():
            unet = UNet2DConditionModel.from_pretrained(root, torch_dtype=dtype)
        else:
            raise DiffusionWeightsNotFoundError(
                f"{what}: {root} holds neither unet/config.json nor config.json. "
                f"{_download_hint(what, STUDENT_ID)}"
            )
        return unet.to(device).requires_grad_(False).eval()
    if unet_config is None:
        raise CheckpointError(
            f"{what}: {root} is a single weights file; it needs the teacher's UNet config "
            f"(load the teacher first, e.g. {TEACHER_ID})"
        )
    if root.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(root))
    else:
        from .weights import load_state_dict_file

        sd = load_state_dict_file(root, what)
        sd = sd.get("state_dict", sd)
    if any(k.startswith("model.diffusion_model.") for k in sd):
        raise CheckpointError(
            f"{what}: {root} uses the original (LDM) key layout; convert it to a diffusers folder "
            "(diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py) and pass that"
        )
    unet = UNet2DConditionModel.from_config(unet_config)
    missing, unexpected = unet.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: {root} does not match the teacher's UNet ({len(missing)} missing keys, e.g. "
            f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    return unet.to(device, dtype).requires_grad_(False).eval()


STUDENT_META = "swiftbrush.json"


def student_timestep_of(root: str | os.PathLike) -> int | None:
    """The input timestep a student folder records in ``swiftbrush.json`` (in the folder or its
    ``unet/``), or None when it records none. CheckpointError naming the file when it is not a
    JSON object with an integer ``student_timestep``."""
    import json

    root = Path(root)
    for f in (root / STUDENT_META, root / "unet" / STUDENT_META):
        if not f.is_file():
            continue
        try:
            meta = json.loads(f.read_text())
            t = meta["student_timestep"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{f} is not a SwiftBrush student record ({type(e).__name__}: {e}); it must be a JSON "
                'object like {"student_timestep": 999}: rewrite it or delete it to use t = 999'
            ) from e
        if t is None:
            return None
        if isinstance(t, bool) or not isinstance(t, int):
            raise CheckpointError(f"{f}: student_timestep must be an integer, got {t!r}")
        return t
    return None


def load_student(
    name_or_path: str | os.PathLike = STUDENT_ID,
    teacher: str | os.PathLike = TEACHER_ID,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    download: bool = False,
) -> DiffusionComponents:
    """A SwiftBrush student ready for one-step generation: its UNet, and the scheduler, text
    encoder, tokenizer and VAE of its own pipeline folder when it has them (the official
    ``thuanz123/swiftbrush`` does), else the teacher's.

    Raises:
        DiffusionWeightsNotFoundError: the student (or the teacher it needs) is not here.
    """
    what = "SwiftBrush student"
    root = resolve_weights_dir(name_or_path, what, STUDENT_ID, download)
    full = root.is_dir() and all((root / s).is_dir() for s in ("unet", "scheduler", "text_encoder", "tokenizer"))
    if full:
        parts = _load_parts(root, device, dtype, with_unet=True)
        _check_prediction(parts["scheduler"], what, root)
        return DiffusionComponents(source=str(root), student_timestep=student_timestep_of(root), **parts)
    t_root = resolve_weights_dir(teacher, "Stable Diffusion 2.1-base teacher (student's text encoder, VAE)", TEACHER_ID, download)
    _check_pipeline_dir(t_root, "Stable Diffusion 2.1-base teacher", TEACHER_ID, ("unet", "scheduler"))
    from diffusers import UNet2DConditionModel

    cfg = UNet2DConditionModel.load_config(t_root, subfolder="unet")
    parts = _load_parts(t_root, device, dtype, with_unet=False)
    _check_prediction(parts["scheduler"], what, t_root)
    parts["unet"] = load_student_unet(root, cfg, device, dtype)
    t = student_timestep_of(root) if root.is_dir() else None
    return DiffusionComponents(source=str(root), student_timestep=t, **parts)
