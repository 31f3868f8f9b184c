"""AASIST / AASIST-L: official layout, official weights, official scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from splatlab.errors import CheckpointError, DataError, WeightsNotFoundError
from splatlab.models.aasist import (
    AASIST,
    AASIST_CONFIGS,
    AASISTConfig,
    GraphPool,
    SincConv,
    load_aasist,
    pad_repeat,
)


def fixed_signal() -> np.ndarray:
    """Two deterministic 64600-sample test signals (tones, a chirp, a decaying square wave)."""
    t = np.arange(64600, dtype=np.float64) / 16000.0
    a = (
        0.3 * np.sin(2 * np.pi * 220 * t)
        + 0.2 * np.sin(2 * np.pi * (300 + 400 * t) * t)
        + 0.05 * np.sin(2 * np.pi * 3100 * t) * np.cos(2 * np.pi * 3 * t)
    )
    b = 0.25 * np.sign(np.sin(2 * np.pi * 150 * t)) * np.exp(-((t % 0.5) / 0.1)) + 0.1 * np.sin(
        2 * np.pi * 5000 * t * t / 4
    )
    return np.stack([a, b]).astype(np.float32)


# Reference scores (logits[:, 1], as clovaai/aasist main.py produce_evaluation_file writes them)
# of the two fixed signals. Computed once (2026-12-01, torch 2.14.1 CPU) by running the
# UNMODIFIED official clovaai/aasist models/AASIST.py (commit in the GitHub mirror, MIT) in a
# throwaway script outside this repo: Model(json.load(conf)["model_config"]) with
# load_state_dict(torch.load(<name>.pth), strict=True), .eval(), on torch.from_numpy(fixed_signal()).
REFERENCE_SCORES = {
    "AASIST-L": [-0.6923449039459229, -0.531684398651123],
    "AASIST": [-5.921573638916016, 3.1096253395080566],
}
# number of state_dict entries and of parameter/buffer elements of the official checkpoints
OFFICIAL_LAYOUT = {"AASIST-L": (229, 86270), "AASIST": (229, 299550)}


@pytest.mark.parametrize("name", ["AASIST-L", "AASIST"])
def test_layout_matches_official_checkpoint_size(name: str) -> None:
    sd = AASIST(AASIST_CONFIGS[name]).state_dict()
    n_keys, n_elems = OFFICIAL_LAYOUT[name]
    assert len(sd) == n_keys
    assert sum(v.numel() for v in sd.values()) == n_elems
    assert "conv_time.band_pass" not in sd  # fixed filterbank, not in the official files
    assert tuple(sd["pos_S"].shape) == (1, 23, AASIST_CONFIGS[name].filts[-1][-1])


@pytest.mark.data
@pytest.mark.parametrize("name", ["AASIST-L", "AASIST"])
def test_official_weights_load_strict_and_reproduce_scores(name: str, shared_data) -> None:
    folder = shared_data / "weights" / "aasist"
    if not (folder / f"{name}.pth").is_file():
        pytest.skip(f"{folder / (name + '.pth')} absent")
    cfg = AASISTConfig.from_conf(folder / f"{name}.conf")
    assert cfg == AASIST_CONFIGS[name]  # our built-in copy of the official config
    sd = torch.load(folder / f"{name}.pth", map_location="cpu", weights_only=True)
    model = AASIST(cfg)
    res = model.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys

    model = load_aasist(folder / f"{name}.pth")
    assert not model.training
    scores = model.score(torch.from_numpy(fixed_signal()))
    np.testing.assert_allclose(scores.numpy(), REFERENCE_SCORES[name], atol=1e-5, rtol=0)
    # the same scores one signal at a time (eval-mode batch norm; no cross-talk in the batch)
    x = torch.from_numpy(fixed_signal())
    single = torch.cat([model.score(x[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(single.numpy(), REFERENCE_SCORES[name], atol=1e-5, rtol=0)


def test_missing_weights_raise_with_instructions(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPLATLAB_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFoundError, match="clovaai/aasist"):
        load_aasist(tmp_path / "nope" / "AASIST-L.pth")
    with pytest.raises(WeightsNotFoundError, match="AASIST-L.pth"):
        load_aasist("AASIST-L")


def test_mismatched_checkpoint_and_bad_conf(tmp_path) -> None:
    torch.manual_seed(0)
    p = tmp_path / "AASIST-L.pth"
    torch.save(AASIST(AASIST_CONFIGS["AASIST"]).state_dict(), p)  # AASIST weights, -L name
    with pytest.raises(CheckpointError, match="does not match"):
        load_aasist(p)
    (tmp_path / "bad.conf").write_text("{not json")
    with pytest.raises(DataError, match="bad.conf"):
        AASISTConfig.from_conf(tmp_path / "bad.conf")
    conf = {"model_config": AASIST_CONFIGS["AASIST"].__dict__}
    (tmp_path / "AASIST-L.conf").write_text(json.dumps(conf))
    assert load_aasist(p).cfg == AASIST_CONFIGS["AASIST"]  # .conf next to the file wins


def test_sinc_filterbank_is_a_mel_spaced_bandpass_bank() -> None:
    conv = SincConv(70, 128)
    assert conv.kernel_size == 129
    h = torch.fft.rfft(conv.band_pass.double(), n=4096).abs()  # [70, 2049]
    peak_hz = h.argmax(dim=1).double() * 8000 / 2048
    assert torch.all(peak_hz[1:] >= peak_hz[:-1])  # centres increase with the filter index
    assert peak_hz[0] < 200 and peak_hz[-1] > 6000
    # mel spacing: half of the filters sit below ~2.1 kHz (mel midpoint of 0-8 kHz)
    assert 1500 < peak_hz[35] < 2600


def test_graph_pool_keeps_the_best_scored_nodes() -> None:
    pool = GraphPool(0.5, 3, 0.0)
    with torch.no_grad():
        pool.proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        pool.proj.bias.zero_()
    h = torch.tensor([[[0.0, 1, 1], [3.0, 2, 2], [-1.0, 3, 3], [2.0, 4, 4]]])
    out = pool(h)
    s = torch.sigmoid(torch.tensor([3.0, 2.0]))
    expected = torch.stack([h[0, 1] * s[0], h[0, 3] * s[1]])[None]
    torch.testing.assert_close(out, expected)


def test_forward_shapes_train_step_and_padding() -> None:
    torch.manual_seed(0)
    model = AASIST(AASIST_CONFIGS["AASIST-L"])
    x = torch.randn(2, 32000) * 0.1
    hidden, logits = model(x)
    assert hidden.shape == (2, 160) and logits.shape == (2, 2)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    assert model.out_layer.weight.grad is not None
    assert model.encoder[0][0].conv1.weight.grad.abs().sum() > 0
    with pytest.raises(DataError):
        model(torch.zeros(32000))
    y = pad_repeat(np.arange(5.0), 12)
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(pad_repeat(np.arange(20.0), 12), np.arange(12.0))
    with pytest.raises(DataError):
        pad_repeat(np.zeros(0))
