"""Self-supervised speech front-ends (WavLM, wav2vec 2.0 / XLS-R) and the light LFCC front-end,
with squeeze-excitation aggregation (SEA) of the SSL hidden layers into an AASIST back-end.

- The SSL networks are torchaudio's own (:func:`torchaudio.models.wavlm_model`,
  :func:`torchaudio.models.wav2vec2_model` and the named builders ``wavlm_large``,
  ``wavlm_base``, ``wav2vec2_xlsr_300m``, ...). Official checkpoints come in two layouts, both
  converted to torchaudio's keys here:

  * Hugging Face (``microsoft/wavlm-large``, ``facebook/wav2vec2-xls-r-300m``: a folder with
    ``config.json`` + ``pytorch_model.bin`` / ``model.safetensors``):
    :func:`convert_hf_state_dict` (the mapping of torchaudio's ``import_huggingface_model``,
    done on the state dict so that ``transformers`` is not needed at run time);
  * fairseq / unilm (``WavLM-Large.pt`` as s3prl loads it: ``{"cfg": ..., "model": ...}``;
    ``xlsr2_300m.pt``): :func:`convert_fairseq_state_dict` (torchaudio's fairseq key map plus the
    WavLM attention extras ``grep_linear``, ``grep_a``, ``relative_attention_bias``).

- SEA (CtrSVDD SSL ensemble, arXiv 2409.02302): the L hidden states (L = 25 for WavLM-Large:
  the transformer input and its 24 layers) are average-pooled to one number each, passed through
  FC L -> L // 3 -> L, a sigmoid gives one weight per layer, and the layers are summed with those
  weights -> Linear (1024 -> 128) -> the AASIST back-end (the SSL variant of Tak et al. 2022).
- LFCC: :class:`torchaudio.transforms.LFCC` (linear-frequency cepstra, the ASVspoof baseline
  front-end) -> the same back-end.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, DataError, WeightsNotFoundError
from .aasist import AASISTBackend, AASISTConfig
from .weights import load_state_dict_file

__all__ = [
    "SSLConfig",
    "SSL_PRESETS",
    "build_ssl",
    "ssl_config_from_hf",
    "convert_hf_state_dict",
    "convert_fairseq_state_dict",
    "load_ssl",
    "ssl_hidden_states",
    "SEA",
    "SSL_AASIST_CONFIG",
    "SSLAASIST",
    "LFCCFrontend",
    "LFCCAASISTConfig",
    "LFCCAASIST",
]

SSL_URLS = {
    "wavlm": "https://huggingface.co/microsoft/wavlm-large (or WavLM-Large.pt from "
    "https://github.com/microsoft/unilm/tree/master/wavlm)",
    "wav2vec2": "https://huggingface.co/facebook/wav2vec2-xls-r-300m (or xlsr2_300m.pt from "
    "https://github.com/facebookresearch/fairseq/tree/main/examples/wav2vec/xlsr)",
}


@dataclass
class SSLConfig:
    """Hyper-parameters of torchaudio's ``wavlm_model`` / ``wav2vec2_model``."""

    kind: Literal["wavlm", "wav2vec2"] = "wavlm"
    """Which network: WavLM (gated relative position bias) or wav2vec 2.0 / XLS-R / HuBERT."""
    extractor_mode: Literal["group_norm", "layer_norm"] = "layer_norm"
    """Normalisation of the CNN feature extractor (Large models: layer_norm)."""
    extractor_conv_layer_config: list = field(
        default_factory=lambda: [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    """(channels, kernel, stride) of each CNN layer (20 ms hop at 16 kHz by default)."""
    extractor_conv_bias: bool = True
    """Whether the CNN convolutions have biases."""
    encoder_embed_dim: int = 1024
    """Transformer width."""
    encoder_pos_conv_kernel: int = 128
    """Kernel of the convolutional position embedding."""
    encoder_pos_conv_groups: int = 16
    """Groups of the convolutional position embedding."""
    encoder_num_layers: int = 24
    """Number of transformer layers."""
    encoder_num_heads: int = 16
    """Attention heads."""
    encoder_ff_interm_features: int = 4096
    """Feed-forward width."""
    encoder_layer_norm_first: bool = True
    """Pre-layer-norm transformer (HF ``do_stable_layer_norm``; True for Large models)."""
    encoder_num_buckets: int = 320
    """WavLM relative position buckets (ignored for wav2vec2)."""
    encoder_max_distance: int = 800
    """WavLM maximum relative distance (ignored for wav2vec2)."""
    dropout: float = 0.0
    """Dropout used everywhere in the network (projection, attention, feed-forward, layer)."""
    layer_drop: float = 0.0
    """Probability of skipping a transformer layer in training."""


# the named torchaudio builders' hyper-parameters (torchaudio.models.wavlm_large etc.)
SSL_PRESETS: dict[str, SSLConfig] = {
    "wavlm_large": SSLConfig(),
    "wavlm_base": SSLConfig(
        extractor_mode="group_norm",
        extractor_conv_bias=False,
        encoder_embed_dim=768,
        encoder_num_layers=12,
        encoder_num_heads=12,
        encoder_ff_interm_features=3072,
        encoder_layer_norm_first=False,
    ),
    "wav2vec2_xlsr_300m": SSLConfig(kind="wav2vec2"),
    "wav2vec2_base": SSLConfig(
        kind="wav2vec2",
        extractor_mode="group_norm",
        extractor_conv_bias=False,
        encoder_embed_dim=768,
        encoder_num_layers=12,
        encoder_num_heads=12,
        encoder_ff_interm_features=3072,
        encoder_layer_norm_first=False,
    ),
}


def build_ssl(cfg: SSLConfig | str) -> nn.Module:
    """A torchaudio ``Wav2Vec2Model`` (randomly initialised) for a config or preset name."""
    from torchaudio.models import wav2vec2_model, wavlm_model

    if isinstance(cfg, str):
        if cfg not in SSL_PRESETS:
            raise DataError(f"unknown SSL preset {cfg!r}; choose one of {sorted(SSL_PRESETS)}")
        cfg = SSL_PRESETS[cfg]
    kw: dict[str, Any] = dict(
        extractor_mode=cfg.extractor_mode,
        extractor_conv_layer_config=[tuple(c) for c in cfg.extractor_conv_layer_config],
        extractor_conv_bias=cfg.extractor_conv_bias,
        encoder_embed_dim=cfg.encoder_embed_dim,
        encoder_projection_dropout=cfg.dropout,
        encoder_pos_conv_kernel=cfg.encoder_pos_conv_kernel,
        encoder_pos_conv_groups=cfg.encoder_pos_conv_groups,
        encoder_num_layers=cfg.encoder_num_layers,
        encoder_num_heads=cfg.encoder_num_heads,
        encoder_attention_dropout=cfg.dropout,
        encoder_ff_interm_features=cfg.encoder_ff_interm_features,
        encoder_ff_interm_dropout=cfg.dropout,
        encoder_dropout=cfg.dropout,
        encoder_layer_norm_first=cfg.encoder_layer_norm_first,
        encoder_layer_drop=cfg.layer_drop,
        aux_num_out=None,
    )
    if cfg.kind == "wavlm":
        return wavlm_model(
            encoder_num_buckets=cfg.encoder_num_buckets,
            encoder_max_distance=cfg.encoder_max_distance,
            **kw,
        )
    if cfg.kind == "wav2vec2":
        return wav2vec2_model(**kw)
    raise DataError(f"SSL kind must be 'wavlm' or 'wav2vec2', got {cfg.kind!r}")


def ssl_config_from_hf(config: dict[str, Any]) -> SSLConfig:
    """An :class:`SSLConfig` from a Hugging Face ``config.json`` (WavLM or Wav2Vec2), as
    torchaudio's ``import_huggingface_model`` reads it."""
    mt = str(config.get("model_type", "")).lower()
    archs = " ".join(config.get("architectures") or []).lower()
    kind: Literal["wavlm", "wav2vec2"] = "wavlm" if "wavlm" in (mt + archs) else "wav2vec2"
    try:
        return SSLConfig(
            kind=kind,
            extractor_mode=f"{config['feat_extract_norm']}_norm",  # type: ignore[arg-type]
            extractor_conv_layer_config=[
                (int(d), int(k), int(s))
                for d, k, s in zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"])
            ],
            extractor_conv_bias=bool(config["conv_bias"]),
            encoder_embed_dim=int(config["hidden_size"]),
            encoder_pos_conv_kernel=int(config["num_conv_pos_embeddings"]),
            encoder_pos_conv_groups=int(config["num_conv_pos_embedding_groups"]),
            encoder_num_layers=int(config["num_hidden_layers"]),
            encoder_num_heads=int(config["num_attention_heads"]),
            encoder_ff_interm_features=int(config["intermediate_size"]),
            encoder_layer_norm_first=bool(config["do_stable_layer_norm"]),
            encoder_num_buckets=int(config.get("num_buckets", 320)),
            encoder_max_distance=int(config.get("max_bucket_distance", 800)),
        )
    except KeyError as e:
        raise DataError(f"Hugging Face config lacks {e} (not a WavLM / Wav2Vec2 config)") from e


_HF_DROP = re.compile(r"^(masked_spec_embed|lm_head\.|quantizer\.|project_q\.|project_hid\.)")


def _fuse_qkv(out: dict[str, Tensor], num_layers: int) -> None:
    """WavLM in torchaudio keeps q/k/v in one ``nn.MultiheadAttention`` (``in_proj``)."""
    for i in range(num_layers):
        p = f"encoder.transformer.layers.{i}.attention."
        if p + "q_proj.weight" not in out:
            continue
        for kind in ("weight", "bias"):
            parts = [out.pop(f"{p}{n}_proj.{kind}") for n in ("q", "k", "v")]
            out[f"{p}attention.in_proj_{kind}"] = torch.cat(parts)
        for kind in ("weight", "bias"):
            out[f"{p}attention.out_proj.{kind}"] = out.pop(f"{p}out_proj.{kind}")


def _weight_norm_keys(key: str) -> str:
    """Old weight-norm names (``weight_g`` / ``weight_v``) -> parametrizations (torch >= 2.1)."""
    return key.replace(".weight_g", ".parametrizations.weight.original0").replace(
        ".weight_v", ".parametrizations.weight.original1"
    )


def convert_hf_state_dict(
    state_dict: dict[str, Tensor], kind: Literal["wavlm", "wav2vec2"]
) -> dict[str, Tensor]:
    """Hugging Face ``WavLMModel`` / ``Wav2Vec2Model`` keys (optionally prefixed ``wavlm.`` /
    ``wav2vec2.`` as in the ``*ForCTC`` heads) -> torchaudio ``Wav2Vec2Model`` keys.

    ``feature_extractor.*`` stays; ``feature_projection.*`` -> ``encoder.feature_projection.*``;
    ``encoder.*`` -> ``encoder.transformer.*``; WavLM's q/k/v projections are concatenated into
    ``attention.attention.in_proj_*``; pre-training-only tensors (``masked_spec_embed``,
    quantizer, CTC head) are dropped.
    """
    out: dict[str, Tensor] = {}
    num_layers = 0
    for k, v in state_dict.items():
        for prefix in ("wavlm.", "wav2vec2."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if _HF_DROP.match(k):
            continue
        k = _weight_norm_keys(k)
        if k.startswith("feature_extractor."):
            nk = k
        elif k.startswith("feature_projection."):
            nk = "encoder." + k
        elif k.startswith("encoder."):
            nk = "encoder.transformer." + k[len("encoder.") :]
            m = re.match(r"encoder\.layers\.(\d+)\.", k)
            if m:
                num_layers = max(num_layers, int(m.group(1)) + 1)
        else:
            raise CheckpointError(f"unexpected key {k!r} in a Hugging Face {kind} checkpoint")
        out[nk] = v
    if kind == "wavlm":
        _fuse_qkv(out, num_layers)
    return out


def _fairseq_key(key: str) -> str | None:
    """fairseq / unilm names -> torchaudio names (None = dropped)."""
    from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

    k = key[len("w2v_model.") :] if key.startswith("w2v_model.") else key
    m = re.match(r"encoder\.layers\.(\d+)\.self_attn\.(grep_linear\.(?:weight|bias)|grep_a)$", k)
    if m:  # WavLM gated relative position bias
        name = "gru_rel_pos_const" if m.group(2) == "grep_a" else "gru_rel_pos_linear"
        tail = "" if m.group(2) == "grep_a" else "." + m.group(2).split(".")[-1]
        return f"encoder.transformer.layers.{m.group(1)}.attention.{name}{tail}"
    m = re.match(r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$", k)
    if m:
        return f"encoder.transformer.layers.{m.group(1)}.attention.rel_attn_embed.weight"
    if k.startswith("label_embs_concat"):
        return None
    try:
        return _map_key(k)
    except ValueError as e:
        raise CheckpointError(f"unexpected key {key!r} in a fairseq / unilm checkpoint") from e


def convert_fairseq_state_dict(
    state_dict: dict[str, Tensor], kind: Literal["wavlm", "wav2vec2"]
) -> dict[str, Tensor]:
    """fairseq (``xlsr2_300m.pt``) / unilm-s3prl (``WavLM-Large.pt``, its ``"model"`` entry)
    keys -> torchaudio ``Wav2Vec2Model`` keys: ``conv_layers.i.0`` -> ``.conv``,
    ``post_extract_proj`` -> ``encoder.feature_projection.projection``, ``layer_norm`` ->
    ``encoder.feature_projection.layer_norm``, ``encoder.pos_conv.0`` ->
    ``encoder.transformer.pos_conv_embed.conv``, ``self_attn`` -> ``attention``,
    ``self_attn_layer_norm`` -> ``layer_norm``, ``fc1/fc2`` -> ``feed_forward.*_dense``; WavLM's
    ``grep_linear`` / ``grep_a`` / ``relative_attention_bias`` -> ``gru_rel_pos_linear`` /
    ``gru_rel_pos_const`` / ``rel_attn_embed`` and q/k/v fused. ``mask_emb``, quantizer and
    pre-training heads are dropped."""
    out: dict[str, Tensor] = {}
    num_layers = 0
    for k, v in state_dict.items():
        nk = _fairseq_key(k)
        if nk is None:
            continue
        nk = _weight_norm_keys(nk)
        m = re.match(r"encoder\.transformer\.layers\.(\d+)\.", nk)
        if m:
            num_layers = max(num_layers, int(m.group(1)) + 1)
        out[nk] = v
    if kind == "wavlm":
        _fuse_qkv(out, num_layers)
    return out


def load_ssl(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    preset: str | None = None,
) -> tuple[nn.Module, SSLConfig]:
    """An official WavLM / wav2vec 2.0 checkpoint as torchaudio's ``Wav2Vec2Model`` (eval mode).

    ``name_or_path``: a Hugging Face model folder (``config.json`` + ``pytorch_model.bin`` or
    ``model.safetensors``), or a fairseq / unilm ``.pt`` (then ``preset`` names the architecture,
    e.g. ``"wavlm_large"``; a unilm checkpoint's ``cfg`` is not needed). Loaded with
    ``strict=True``. Returns ``(model, config)``.

    Raises:
        WeightsNotFoundError: nothing at that path (says where to download the weights).
        CheckpointError: the file does not match the architecture.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        cfg_path = p / "config.json"
        if not cfg_path.is_file():
            raise WeightsNotFoundError(f"{p}: no config.json (expected a Hugging Face folder)")
        cfg = ssl_config_from_hf(json.loads(cfg_path.read_text()))
        if (p / "model.safetensors").is_file():
            from safetensors.torch import load_file

            sd = load_file(str(p / "model.safetensors"))
        elif (p / "pytorch_model.bin").is_file():
            sd = load_state_dict_file(p / "pytorch_model.bin", "SSL front-end")
        else:
            raise WeightsNotFoundError(
                f"{p}: no model.safetensors or pytorch_model.bin; download it from "
                f"{SSL_URLS[cfg.kind]}"
            )
        sd = convert_hf_state_dict(sd, cfg.kind)
    elif p.is_file():
        if preset is None or preset not in SSL_PRESETS:
            raise DataError(
                f"{p}: a fairseq / unilm checkpoint needs preset= one of {sorted(SSL_PRESETS)}"
            )
        cfg = SSL_PRESETS[preset]
        raw = load_state_dict_file(p, "SSL front-end")
        sd = raw.get("model", raw) if isinstance(raw, dict) else raw
        sd = convert_fairseq_state_dict(sd, cfg.kind)
    else:
        kind = "wavlm" if "wavlm" in str(name_or_path).lower() else "wav2vec2"
        raise WeightsNotFoundError(
            f"SSL front-end: {p} does not exist. Download {SSL_URLS[kind]} and pass the folder "
            f"(Hugging Face) or the .pt file with preset=..."
        )
    model = build_ssl(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: does not match the {cfg.kind} architecture: {e}") from e
    return model.eval().to(device), cfg


def ssl_hidden_states(model: nn.Module, wav: Tensor) -> Tensor:
    """All hidden states of a torchaudio ``Wav2Vec2Model``: the transformer's input (feature
    projection + convolutional position embedding, as its layers see it) and the output of each
    layer. ``wav: [B, T]`` -> ``[L + 1, B, frames, D]`` (frames = 20 ms hops)."""
    x, _ = model.feature_extractor(wav, None)
    x, mask = model.encoder._preprocess(x, None)
    tr = model.encoder.transformer
    first = tr._preprocess(x)
    layers = tr.get_intermediate_outputs(x, attention_mask=mask)
    return torch.stack([first, *layers])


class SEA(nn.Module):
    """Squeeze-excitation aggregation of L hidden layers: per-layer average pool -> FC L -> L // 3
    -> ReLU -> FC -> L -> sigmoid -> weighted sum over layers.

    ``forward(h: [L, B, T, D]) -> ([B, T, D], weights: [B, L])``.
    """

    def __init__(self, n_layers: int, reduction: int = 3) -> None:
        super().__init__()
        hidden = max(n_layers // reduction, 1)
        self.fc1 = nn.Linear(n_layers, hidden)
        self.fc2 = nn.Linear(hidden, n_layers)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        z = h.mean(dim=(2, 3)).transpose(0, 1)  # [B, L] squeeze
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # [B, L] excitation
        return torch.einsum("lbtd,bl->btd", h, w), w


# the back-end of Tak et al. 2022 (SSL_Anti-spoofing model.py), used by the CtrSVDD system
SSL_AASIST_CONFIG = AASISTConfig(
    filts=[128, [1, 32], [32, 32], [32, 64], [64, 64]],
    gat_dims=[64, 32],
    pool_ratios=[0.5, 0.5, 0.5, 0.5],
    temperatures=[2.0, 2.0, 100.0, 100.0],
)


class SSLAASIST(nn.Module):
    """SSL front-end + SEA + Linear (D -> ``cfg.filts[0]``) + AASIST back-end ("ssl" variant).

    ``forward(wav: [B, T]) -> (last_hidden, logits: [B, 2])`` (class 1 = bona fide).
    ``freeze_ssl`` keeps the SSL weights fixed (and in eval mode) while the rest trains.
    """

    def __init__(
        self,
        ssl: nn.Module,
        n_layers: int,
        embed_dim: int,
        backend_cfg: AASISTConfig = SSL_AASIST_CONFIG,
        freeze_ssl: bool = False,
    ) -> None:
        super().__init__()
        self.ssl = ssl
        self.freeze_ssl = freeze_ssl
        self.sea = SEA(n_layers)
        n_bins = int(backend_cfg.filts[0])
        self.LL = nn.Linear(embed_dim, n_bins)
        self.backend = AASISTBackend(backend_cfg, n_bins=n_bins, abs_input=False, variant="ssl")
        if freeze_ssl:
            self.ssl.requires_grad_(False)

    def train(self, mode: bool = True) -> SSLAASIST:
        super().train(mode)
        if self.freeze_ssl:
            self.ssl.eval()
        return self

    def features(self, wav: Tensor) -> Tensor:
        """``wav: [B, T]`` -> the back-end's input map ``[B, n_bins, frames]``."""
        if wav.ndim != 2:
            raise DataError(f"expected waveforms [B, T], got shape {tuple(wav.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_ssl):
            h = ssl_hidden_states(self.ssl, wav)
        x, _ = self.sea(h)
        return self.LL(x).transpose(1, 2)

    def encode_wave(self, wav: Tensor) -> Tensor:
        """``wav: [B, T]`` -> encoder map ``[B, C, F', T']`` (the Grad-CAM target)."""
        return self.backend.encode(self.features(wav))

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        return self.backend.graph(self.encode_wave(wav))


class LFCCFrontend(nn.Module):
    """LFCC (torchaudio.transforms.LFCC) with per-utterance mean normalisation.

    ``forward(wav: [B, T]) -> [B, n_lfcc, frames]`` (frames every ``hop`` samples).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_lfcc: int = 60,
        n_filter: int = 70,
        n_fft: int = 512,
        win: int = 320,
        hop: int = 160,
    ) -> None:
        super().__init__()
        import torchaudio

        self.hop = hop
        self.lfcc = torchaudio.transforms.LFCC(
            sample_rate=sample_rate,
            n_filter=n_filter,
            n_lfcc=n_lfcc,
            speckwargs={"n_fft": n_fft, "win_length": win, "hop_length": hop, "center": True},
        )

    def forward(self, wav: Tensor) -> Tensor:
        # [B, 1, T]: torchaudio's dB conversion clamps at top_db below the maximum over its
        # channel dimension; with a channel axis per clip the clamp stays per clip (a [B, T]
        # input would make scores depend on the other clips of the batch)
        x = self.lfcc(wav.unsqueeze(1)).squeeze(1)
        return x - x.mean(dim=-1, keepdim=True)


@dataclass
class LFCCAASISTConfig:
    """Architecture of the light LFCC + AASIST detector."""

    n_lfcc: int = 60
    """Number of cepstral coefficients (back-end height; n_lfcc // 3 spectral nodes)."""
    hop: int = 160
    """LFCC hop in samples (10 ms at 16 kHz)."""
    filts: list = field(default_factory=lambda: [60, [1, 16], [16, 16], [16, 24], [24, 24]])
    """Encoder stages as AASIST's ``filts`` (``filts[0]`` is ignored: n_lfcc is the height)."""
    gat_dims: list = field(default_factory=lambda: [24, 32])
    """Graph node dimensions (AASIST-L's)."""
    pool_ratios: list = field(default_factory=lambda: [0.5, 0.5, 0.5, 0.5])
    """Graph pool ratios."""
    temperatures: list = field(default_factory=lambda: [2.0, 2.0, 100.0, 100.0])
    """Graph softmax temperatures."""


class LFCCAASIST(nn.Module):
    """LFCC front-end + AASIST-L-sized back-end ("ssl" variant: no time pooling in the blocks,
    which the 10 ms LFCC frame rate cannot afford).

    ``forward(wav: [B, T]) -> (last_hidden, logits: [B, 2])`` (class 1 = bona fide).
    """

    def __init__(self, cfg: LFCCAASISTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LFCCAASISTConfig()
        c = self.cfg
        self.front = LFCCFrontend(n_lfcc=c.n_lfcc, hop=c.hop)
        bcfg = AASISTConfig(
            filts=[c.n_lfcc, *c.filts[1:]],
            gat_dims=c.gat_dims,
            pool_ratios=c.pool_ratios,
            temperatures=c.temperatures,
        )
        self.backend = AASISTBackend(bcfg, n_bins=c.n_lfcc, abs_input=False, variant="ssl")

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def encode_wave(self, wav: Tensor) -> Tensor:
        """``wav: [B, T]`` -> encoder map ``[B, C, n_lfcc // 3, frames // 3]``."""
        if wav.ndim != 2:
            raise DataError(f"expected waveforms [B, T], got shape {tuple(wav.shape)}")
        return self.backend.encode(self.front(wav))

    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        return self.backend.graph(self.encode_wave(wav))
