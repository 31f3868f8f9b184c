"""Image quality metrics: PSNR, SSIM (also a differentiable loss) and LPIPS.

Images are ``[..., H, W, 3]`` tensors in [0, 1] (gsplat's render layout); every metric returns
one value per image, shape ``[...]``. The definitions match gsplat's ``simple_trainer``
evaluation: PSNR with data range 1, torchmetrics' SSIM (Gaussian window 11x11, sigma 1.5,
data range 1, reflection padding, mean over all pixels) and LPIPS from the ``lpips`` package.

LPIPS needs two sets of weights: its linear heads ship inside the ``lpips`` package; the
backbone is torchvision's ImageNet AlexNet or VGG16 checkpoint, which must already be in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``) or
in ``weights_dir``. Nothing is ever downloaded: a missing file raises WeightsNotFoundError that
names the file, the folder to put it in and the URL to fetch it from on a machine with network.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import WeightsNotFoundError

__all__ = ["psnr", "ssim", "LPIPS_BACKBONES", "lpips_backbone_path", "LPIPSMetric", "load_lpips"]


def _check_pair(img: Tensor, ref: Tensor) -> None:
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")
    if img.ndim < 3 or img.shape[-1] != 3:
        raise ValueError(f"images must be [..., H, W, 3], got {tuple(img.shape)}")


def _to_nchw(x: Tensor) -> Tensor:
    return x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)


def psnr(img: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(data_range^2 / MSE)``.

    img, ref: [..., H, W, 3]. Returns [...] (inf for identical images)."""
    _check_pair(img, ref)
    mse = ((img - ref) ** 2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(data_range**2 / mse)


def ssim(img: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (torchmetrics, Gaussian 11x11 window, sigma 1.5).

    img, ref: [..., H, W, 3] with H, W >= 6. Returns [...]; differentiable, so
    ``1 - ssim(render, gt).mean()`` is the usual D-SSIM loss term."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(img, ref)
    h, w = img.shape[-3], img.shape[-2]
    if min(h, w) < 6:
        raise ValueError(
            f"SSIM with an 11x11 window needs images of at least 6x6 pixels, got {h}x{w}"
        )
    batch = img.shape[:-3]
    values = structural_similarity_index_measure(
        _to_nchw(img),
        _to_nchw(ref),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=data_range,
        reduction="none",
    )
    return values.reshape(batch)


# net -> (file name in the torch hub cache, official URL)
LPIPS_BACKBONES: dict[str, tuple[str, str]] = {
    "alex": (
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


def lpips_backbone_path(net: str = "alex", weights_dir: str | os.PathLike | None = None) -> Path:
    """Where the torchvision backbone checkpoint of LPIPS-``net`` is expected."""
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    folder = (
        Path(weights_dir) if weights_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    )
    return folder / LPIPS_BACKBONES[net][0]


class LPIPSMetric(nn.Module):
    """LPIPS on [..., H, W, 3] images in [0, 1]; returns [...] (lower is more similar).

    Frozen (no parameter needs a gradient) and in eval mode, but differentiable with respect
    to the images, so it can serve as a perceptual loss."""

    def __init__(self, model: nn.Module, net: str) -> None:
        super().__init__()
        self.model = model
        self.net = net

    def forward(self, img: Tensor, ref: Tensor) -> Tensor:
        _check_pair(img, ref)
        batch = img.shape[:-3]
        out = self.model(_to_nchw(img), _to_nchw(ref), normalize=True)  # [B, 1, 1, 1]
        return out.reshape(batch)


def load_lpips(
    net: str = "alex",
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSMetric:
    """LPIPS (v0.1) with the ``lpips`` package's linear heads and torchvision's ImageNet backbone.

    Args:
        net: "alex" (what papers report) or "vgg".
        weights_dir: folder holding the backbone checkpoint; default the torch hub cache
            (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``).
        device: where the model lives.

    Raises WeightsNotFoundError (naming the file, folder and download URL) when the backbone
    checkpoint is absent or is not the expected torchvision state dict. Never downloads.
    """
    import lpips

    path = lpips_backbone_path(net, weights_dir)
    fname, url = LPIPS_BACKBONES[net]
    if not path.is_file():
        raise WeightsNotFoundError(
            f"LPIPS-{net} needs torchvision's ImageNet backbone weights '{fname}', which are not in "
            f"{path.parent}. On a machine with network access download {url} and copy it to "
            f"{path} (or pass weights_dir= the folder that holds it)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"expected a state dict, found a {type(state).__name__}")
    except Exception as e:
        raise WeightsNotFoundError(
            f"{path} is not a usable torchvision {net} checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); replace it with {url}"
        ) from e

    with warnings.catch_warnings():
        # lpips builds its trunk with torchvision's deprecated `pretrained=` argument; with
        # pnet_rand=True that means weights=None, so nothing is downloaded.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, pretrained=True, verbose=False)
    # lpips keeps torchvision's `features[i]` modules under their index i in its slices; only
    # those (convolutions) are needed, the classifier weights of the checkpoint are not.
    with torch.no_grad():
        for sl in model.net.children():
            for idx, module in sl.named_children():
                for pname, param in module.named_parameters():
                    key = f"features.{idx}.{pname}"
                    if key not in state or tuple(state[key].shape) != tuple(param.shape):
                        found = tuple(state[key].shape) if key in state else "missing"
                        raise WeightsNotFoundError(
                            f"{path} is not the torchvision {net} checkpoint: {key} is {found}, "
                            f"expected shape {tuple(param.shape)}; replace it with {url}"
                        )
                    param.copy_(state[key])
    model.eval().requires_grad_(False)
    return LPIPSMetric(model, net).to(device)
