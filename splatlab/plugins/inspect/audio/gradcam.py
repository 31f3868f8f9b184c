"""Grad-CAM over time on a countermeasure and the relative contribution of region types (RCQ).

Grad-CAM (Selvaraju et al. 2017) on the AASIST encoder output ``e: [C, F', T']`` (the last
convolutional map before the graph module): channel weights = the gradient of the target logit
(class 0 = spoof by default) averaged over ``(F', T')``, map = ReLU(sum_c w_c e_c), averaged over
frequency -> one value per encoder time step, resampled to 20 ms frames.

RCQ (relative contribution quantification, after the partial-spoof Grad-CAM study arXiv
2406.02483): for a region type r (bona fide speech, spoofed speech, transition, bona fide /
spoofed non-speech) at 20 ms frames,
``RCQ_r = (share of the Grad-CAM mass in r) / (share of the frames in r) - 1``, pooled over files
(each file's map normalised to unit mass first). 0 = the region gets the mass its duration
predicts, > 0 = more (it carries more of the evidence), -1 = none. This is our reading of the
paper's quantity (the paper text was not available here); the definition is stated so the numbers
can be re-derived.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ....errors import DataError
from .synth import FRAME

__all__ = ["REGION_TYPES", "gradcam_time", "region_masks", "rcq"]

REGION_TYPES = (
    "bona fide speech",
    "spoofed speech",
    "transition",
    "bona fide non-speech",
    "spoofed non-speech",
)


def _split(model: nn.Module):
    if hasattr(model, "backend"):
        return model.encode_wave, model.backend.graph
    if hasattr(model, "encode_wave") and hasattr(model, "graph"):
        return model.encode_wave, model.graph
    raise DataError(f"{type(model).__name__} has no encode_wave / graph split for Grad-CAM")


def gradcam_time(
    model: nn.Module, wav: np.ndarray | Tensor, n_frames: int | None = None, target: int = 0
) -> tuple[np.ndarray, float]:
    """Grad-CAM time curve of one clip.

    Args:
        model: a detector with ``encode_wave`` (-> ``[B, C, F', T']``) and a graph head.
        wav: float ``[T]`` at 16 kHz.
        n_frames: length of the output curve in 20 ms frames (default ``T // 320``).
        target: logit to explain (0 = spoof, 1 = bona fide).

    Returns:
        ``(cam [n_frames] in [0, 1] (max-normalised; zeros if no positive evidence),
        score = logits[1])``.
    """
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))[None]
    n_frames = n_frames or x.shape[1] // FRAME
    enc, head = _split(model)
    model.eval()
    with torch.enable_grad():
        e = enc(x).detach().requires_grad_(True)
        _, logits = head(e)
        (grad,) = torch.autograd.grad(logits[0, target], e)
    w = grad.mean(dim=(2, 3), keepdim=True)  # [1, C, 1, 1]
    cam = torch.relu((w * e.detach()).sum(dim=1))[0].mean(dim=0)  # [T']
    cam_np = cam.numpy().astype(np.float64)
    t_nodes = cam_np.shape[0]
    # encoder steps cover the clip uniformly: node centres -> 20 ms frame centres
    node_t = (np.arange(t_nodes) + 0.5) / t_nodes
    frame_t = (np.arange(n_frames) + 0.5) / n_frames
    curve = np.interp(frame_t, node_t, cam_np)
    peak = curve.max()
    if peak > 0:
        curve = curve / peak
    return curve, float(logits[0, 1].detach())


def region_masks(
    frame_labels: np.ndarray, speech: np.ndarray, transition_frames: int = 1
) -> dict[str, np.ndarray]:
    """Boolean masks ``[N]`` of :data:`REGION_TYPES` for one clip. ``frame_labels``: 1 =
    spoofed 20 ms frame; ``speech``: VAD per frame. Transitions = the frames within
    ``transition_frames`` of a bona fide / spoof boundary (on both sides); they are excluded
    from the other types, which partition the rest."""
    lab = np.asarray(frame_labels).astype(bool)
    sp = np.asarray(speech).astype(bool)[: len(lab)]
    if len(sp) < len(lab):
        sp = np.pad(sp, (0, len(lab) - len(sp)))
    trans = np.zeros(len(lab), bool)
    for b in np.flatnonzero(lab[1:] != lab[:-1]) + 1:  # boundary before frame b
        trans[max(0, b - transition_frames) : b + transition_frames] = True
    rest = ~trans
    return {
        "bona fide speech": rest & ~lab & sp,
        "spoofed speech": rest & lab & sp,
        "transition": trans,
        "bona fide non-speech": rest & ~lab & ~sp,
        "spoofed non-speech": rest & lab & ~sp,
    }


def rcq(cams: Sequence[np.ndarray], masks: Sequence[dict[str, np.ndarray]]) -> dict[str, dict]:
    """RCQ per region type pooled over files: ``{type: {"rcq", "cam_share", "frame_share",
    "frames"}}`` (types with no frames get ``rcq = nan``)."""
    if len(cams) != len(masks) or not cams:
        raise DataError("rcq needs one Grad-CAM curve per mask set (and at least one)")
    mass = dict.fromkeys(REGION_TYPES, 0.0)
    frames = dict.fromkeys(REGION_TYPES, 0)
    total_mass, total_frames = 0.0, 0
    for cam, m in zip(cams, masks):
        cam = np.asarray(cam, dtype=np.float64)
        s = cam.sum()
        if s <= 0:
            continue  # no positive evidence anywhere: the file carries no mass
        cam = cam / s
        total_mass += 1.0
        total_frames += len(cam)
        for r in REGION_TYPES:
            mass[r] += float(cam[m[r]].sum())
            frames[r] += int(m[r].sum())
    out: dict[str, dict] = {}
    for r in REGION_TYPES:
        cs = mass[r] / total_mass if total_mass else float("nan")
        fs = frames[r] / total_frames if total_frames else float("nan")
        out[r] = {
            "rcq": cs / fs - 1 if frames[r] and total_mass else float("nan"),
            "cam_share": cs,
            "frame_share": fs,
            "frames": frames[r],
        }
    return out
