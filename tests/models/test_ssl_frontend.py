"""SSL front-ends (torchaudio WavLM / wav2vec2) with official-layout conversion, SEA, LFCC."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from splatlab.errors import CheckpointError, DataError, WeightsNotFoundError
from splatlab.models.aasist import AASISTConfig
from splatlab.models.ssl_frontend import (
    LFCCAASIST,
    SEA,
    SSLAASIST,
    LFCCFrontend,
    SSLConfig,
    build_ssl,
    convert_fairseq_state_dict,
    convert_hf_state_dict,
    load_ssl,
    ssl_config_from_hf,
    ssl_hidden_states,
)

TINY = SSLConfig(
    extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2)],
    encoder_embed_dim=32,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=2,
    encoder_num_layers=2,
    encoder_num_heads=2,
    encoder_ff_interm_features=64,
    encoder_num_buckets=32,
    encoder_max_distance=64,
)


def _hf_tiny(kind: str, stable: bool):
    transformers = pytest.importorskip("transformers", reason="pip install transformers")
    Cfg, Model = (
        (transformers.WavLMConfig, transformers.WavLMModel)
        if kind == "wavlm"
        else (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)
    )
    torch.manual_seed(0)
    cfg = Cfg(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if stable else "group",
        do_stable_layer_norm=stable,
        conv_bias=stable,
        num_buckets=32,
        max_bucket_distance=64,
    )
    return Model(cfg).eval(), cfg


# The unilm / s3prl (fairseq-style) names of each Hugging Face tensor: the MAPPING of
# transformers' models/wavlm/convert_wavlm_original_s3prl_checkpoint_to_pytorch.py (and its
# load_conv_layer: conv_layers.i.0 = conv, conv_layers.0.2 = group norm, conv_layers.i.2.1 =
# layer norm), applied in reverse.
_HF_TO_UNILM = [
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^encoder\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (
        r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.",
        r"encoder.layers.\1.self_attn.grep_linear.",
    ),
    (
        r"^encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const$",
        r"encoder.layers.\1.self_attn.grep_a",
    ),
    (
        r"^encoder\.layers\.(\d+)\.attention\.rel_attn_embed\.",
        r"encoder.layers.\1.self_attn.relative_attention_bias.",
    ),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^masked_spec_embed$", "mask_emb"),
]


def _to_unilm(sd: dict, group_norm: bool) -> dict:
    out = {}
    for k, v in sd.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"
        )
        m = re.match(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(\w+)", k)
        if m:
            sub = "0" if m.group(2) == "conv" else ("2" if group_norm else "2.1")
            out[f"feature_extractor.conv_layers.{m.group(1)}.{sub}.{m.group(3)}"] = v
            continue
        for pat, rep in _HF_TO_UNILM:
            if re.match(pat, k):
                k = re.sub(pat, rep, k)
                break
        out[k] = v
    return out


@pytest.mark.parametrize("kind", ["wavlm", "wav2vec2"])
@pytest.mark.parametrize("stable", [True, False])
def test_hf_and_unilm_layouts_convert_to_identical_models(kind: str, stable: bool) -> None:
    hf, cfg = _hf_tiny(kind, stable)
    scfg = ssl_config_from_hf(cfg.to_dict())
    assert scfg.kind == kind and scfg.encoder_layer_norm_first is stable
    wav = torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(wav, output_hidden_states=True).hidden_states  # L + 1 tensors

    model = build_ssl(scfg).eval()
    res = model.load_state_dict(convert_hf_state_dict(hf.state_dict(), kind), strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    with torch.no_grad():
        h = ssl_hidden_states(model, wav)
    assert h.shape == (3, 2, 399, 32)
    for a, b in zip(ref, h):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)

    # the same tensors under the official unilm / fairseq names
    unilm = _to_unilm(hf.state_dict(), group_norm=not stable)
    assert "encoder.pos_conv.0.weight_g" in unilm and "post_extract_proj.weight" in unilm
    if kind == "wavlm":
        assert "encoder.layers.0.self_attn.relative_attention_bias.weight" in unilm
        assert "encoder.layers.1.self_attn.grep_a" in unilm
    model2 = build_ssl(scfg).eval()
    model2.load_state_dict(convert_fairseq_state_dict(unilm, kind), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ssl_hidden_states(model2, wav), h, atol=0, rtol=0)


def test_load_ssl_from_hf_folder_and_errors(tmp_path) -> None:
    hf, _ = _hf_tiny("wavlm", True)
    hf.save_pretrained(tmp_path / "tiny-wavlm")
    model, cfg = load_ssl(tmp_path / "tiny-wavlm")
    assert cfg.kind == "wavlm" and not model.training
    wav = torch.randn(1, 3000)
    with torch.no_grad():
        ref = hf(wav, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(ssl_hidden_states(model, wav)[-1], ref, atol=2e-6, rtol=1e-5)
    with pytest.raises(WeightsNotFoundError, match="microsoft/wavlm-large"):
        load_ssl(tmp_path / "WavLM-Large.pt", preset="wavlm_large")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        load_ssl(tmp_path / "empty")


def test_converters_reject_unknown_keys() -> None:
    with pytest.raises(CheckpointError, match="unexpected key"):
        convert_hf_state_dict({"decoder.x": torch.zeros(1)}, "wavlm")
    with pytest.raises(CheckpointError, match="unexpected key"):
        convert_fairseq_state_dict({"decoder.x": torch.zeros(1)}, "wavlm")
    with pytest.raises(DataError, match="unknown SSL preset"):
        build_ssl("wavlm_huge")


def test_sea_weights_layers_by_their_pooled_activity() -> None:
    sea = SEA(25)
    assert sea.fc1.out_features == 8 and sea.fc2.out_features == 25  # 25 -> 8 -> 25
    torch.manual_seed(0)
    h = torch.randn(25, 2, 7, 4)
    out, w = sea(h)
    assert out.shape == (2, 7, 4) and w.shape == (2, 25)
    assert torch.all((w > 0) & (w < 1))
    torch.testing.assert_close(out[1], sum(w[1, i] * h[i, 1] for i in range(25)))
    # the excitation sees only the per-layer means (the squeeze): a zero-mean change of every
    # layer leaves the weights as they are, a change of one layer's mean does not
    noise = torch.randn_like(h)
    _, w_same = sea(h + noise - noise.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(w_same, w)
    shifted = h.clone()
    shifted[3] += 2.0
    assert (sea(shifted)[1] - w).abs().max() > 1e-3


def test_ssl_aasist_tiny_trains_and_freezes() -> None:
    torch.manual_seed(0)
    ssl = build_ssl(TINY)
    backend = AASISTConfig(
        filts=[24, [1, 8], [8, 8], [8, 16], [16, 16]],
        gat_dims=[16, 16],
        pool_ratios=[0.5, 0.5, 0.5, 0.5],
    )
    model = SSLAASIST(ssl, n_layers=3, embed_dim=32, backend_cfg=backend, freeze_ssl=True)
    model.train()
    assert not model.ssl.training
    wav = torch.randn(2, 16000) * 0.1
    hidden, logits = model(wav)
    assert logits.shape == (2, 2) and hidden.shape == (2, 80)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is None for p in model.ssl.parameters())
    assert model.sea.fc1.weight.grad.abs().sum() > 0 and model.LL.weight.grad.abs().sum() > 0
    assert model.backend.pos_S.shape == (1, 8, 16)


def test_lfcc_front_end_matches_a_dct_of_linear_filterbank_energies() -> None:
    front = LFCCFrontend(n_lfcc=20, n_filter=40)
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * np.pi * 1000 * t)[None]
    y = front(x)
    assert y.shape == (1, 20, 101)  # 10 ms hop, centred frames
    torch.testing.assert_close(y.mean(dim=-1), torch.zeros(1, 20), atol=1e-4, rtol=0)
    # a 1 kHz tone and a 5 kHz tone give clearly different cepstra
    y5 = front(torch.sin(2 * np.pi * 5000 * t)[None])
    raw1, raw5 = front.lfcc(x), front.lfcc(torch.sin(2 * np.pi * 5000 * t)[None])
    assert (raw1 - raw5).abs().mean() > 1.0
    assert torch.isfinite(y5).all()
    model = LFCCAASIST()
    hidden, logits = model(torch.randn(2, 16000) * 0.1)
    assert logits.shape == (2, 2)
    assert model.encode_wave(torch.randn(1, 16000)).shape[2:] == (20, 33)


def test_lfcc_detector_scores_do_not_depend_on_the_batch() -> None:
    # torchaudio's dB clamp (top_db) takes the max over its channel axis: the front-end keeps
    # one channel per clip so a loud clip cannot change a quiet clip's features
    torch.manual_seed(0)
    model = LFCCAASIST().eval()
    x = torch.randn(3, 16000) * torch.tensor([[1.0], [0.001], [0.1]])
    with torch.no_grad():
        batched = model(x)[1]
        single = torch.cat([model(x[i : i + 1])[1] for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
