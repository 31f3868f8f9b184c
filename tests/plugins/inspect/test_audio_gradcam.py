"""Grad-CAM over time and RCQ per region type."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.models.aasist import AASIST, AASIST_CONFIGS
from splatlab.models.ssl_frontend import LFCCAASIST
from splatlab.plugins.inspect.audio.gradcam import REGION_TYPES, gradcam_time, rcq, region_masks


def _reference_cam(model, enc_module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM with a forward hook on the encoder and autograd through the WHOLE model."""
    store = {}

    def hook(_m, _inp, out):
        out.retain_grad()
        store["e"] = out

    h = enc_module.register_forward_hook(hook)
    try:
        _, logits = model(x)
        logits[0, target].backward()
    finally:
        h.remove()
    e = store["e"]
    w = e.grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((w * e).sum(1))[0].mean(0).detach().numpy()


@pytest.mark.parametrize("which", ["lfcc", "aasist"])
def test_gradcam_matches_a_hooked_reference(which: str) -> None:
    torch.manual_seed(0)
    if which == "lfcc":
        model, enc = LFCCAASIST().eval(), None
        enc = model.backend.encoder
    else:
        model = AASIST(AASIST_CONFIGS["AASIST-L"]).eval()
        enc = model.encoder
    x = torch.randn(1, 32000) * 0.1
    ref = _reference_cam(model, enc, x, target=0)
    curve, score = gradcam_time(model, x[0].numpy(), n_frames=len(ref))
    assert curve.shape == (len(ref),)
    if ref.max() > 0:
        np.testing.assert_allclose(curve, ref / ref.max(), atol=1e-5)
    with torch.no_grad():
        assert score == pytest.approx(float(model(x)[1][0, 1]), abs=1e-5)
    up, _ = gradcam_time(model, x[0].numpy())  # default: 20 ms frames
    assert up.shape == (100,) and up.min() >= 0 and up.max() <= 1


def test_region_masks_by_hand() -> None:
    lab = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    speech = np.array([0, 1, 1, 1, 1, 1, 0, 1, 1, 0])
    m = region_masks(lab, speech, transition_frames=1)
    # boundaries before frames 3 and 7: transitions = frames 2, 3, 6, 7
    np.testing.assert_array_equal(np.flatnonzero(m["transition"]), [2, 3, 6, 7])
    np.testing.assert_array_equal(np.flatnonzero(m["spoofed speech"]), [4, 5])
    np.testing.assert_array_equal(np.flatnonzero(m["bona fide speech"]), [1, 8])
    np.testing.assert_array_equal(np.flatnonzero(m["bona fide non-speech"]), [0, 9])
    assert not m["spoofed non-speech"].any()
    total = sum(m[r].astype(int) for r in REGION_TYPES)
    np.testing.assert_array_equal(total, np.ones(10))  # a partition


def test_rcq_values() -> None:
    lab = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    speech = np.ones(10)
    m = region_masks(lab, speech)
    q = rcq([np.ones(10)], [m])  # uniform relevance: every region gets its duration share
    for r in ("bona fide speech", "spoofed speech", "transition"):
        assert q[r]["rcq"] == pytest.approx(0.0)
    assert np.isnan(q["spoofed non-speech"]["rcq"])
    cam = m["transition"].astype(float)  # all relevance on the 4 transition frames
    q = rcq([cam, np.ones(10)], [m, m])
    # pooled: transition mass (1 + 0.4) / 2 = 0.7 over a frame share of 0.4 -> 0.7 / 0.4 - 1
    assert q["transition"]["rcq"] == pytest.approx(0.7 / 0.4 - 1)
    assert q["spoofed speech"]["cam_share"] == pytest.approx(0.1)
    assert q["spoofed speech"]["rcq"] == pytest.approx(0.1 / 0.2 - 1)
