"""AASIST and AASIST-L (Jung et al., ICASSP 2022): audio anti-spoofing with integrated
spectro-temporal graph attention networks, with the official clovaai/aasist module layout.

The parameter names are those of ``clovaai/aasist`` ``models/AASIST.py`` (``conv_time``,
``first_bn``, ``encoder.{i}.0.*``, ``pos_S``, ``master1/2``, ``GAT_layer_S/T``,
``HtrgGAT_layer_ST{11,12,21,22}``, ``pool_{S,T,hS1,hT1,hS2,hT2}``, ``out_layer``), so the
official ``AASIST.pth`` / ``AASIST-L.pth`` load with ``strict=True``; the hyper-parameters come
from the official ``config/AASIST{,-L}.conf`` (``model_config``), read by :meth:`AASISTConfig.from_conf`.

Behaviour kept from the official forward, including its quirks (they matter for the weights):

- the sinc filterbank (``conv_time``) is fixed, mel-spaced, 129 taps for ``first_conv=128`` (even
  sizes are made odd); it has no parameters (a non-persistent buffer here);
- in every residual block after the first, ``bn1`` + SELU are computed on the input but the
  official code then applies ``conv1`` to the block's *input* (``out = self.conv1(x)``), so
  ``bn1`` has weights but no effect on the output. We keep ``bn1`` (strict loading) and apply
  ``conv1`` to the input likewise;
- the heterogeneous layers get the un-expanded master parameters (``master=self.master1``);
- ``att_weight12`` is used for both off-diagonal blocks of the heterogeneous attention map;
- the scores written by the official ``produce_evaluation_file`` are ``logits[:, 1]`` (class 1 =
  bona fide, see ``data_utils.genSpoof_list``): higher = more bona fide. :meth:`AASIST.score`.

:class:`AASISTBackend` is the graph back-end on any 2-D (feature x time) map, used on LFCC and SSL
features (``splatlab.models.ssl_frontend``); :class:`AASIST` = sinc front-end + back-end.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, DataError
from .weights import find_weights, load_state_dict_file

__all__ = [
    "AASISTConfig",
    "AASIST_CONFIGS",
    "AASIST_URL",
    "SincConv",
    "ResidualBlock",
    "GraphAttentionLayer",
    "HtrgGraphAttentionLayer",
    "GraphPool",
    "AASISTBackend",
    "AASIST",
    "load_aasist",
    "pad_repeat",
]

AASIST_URL = "https://github.com/clovaai/aasist/tree/main/models/weights"
NB_SAMP = 64600  # ~4 s at 16 kHz, the official input length (data_utils.pad)


@dataclass
class AASISTConfig:
    """The ``model_config`` of an official AASIST .conf file."""

    nb_samp: int = NB_SAMP
    """Input length in samples (the official loaders pad / cut to it)."""
    first_conv: int = 128
    """Sinc filter length (made odd: 129 taps)."""
    filts: list = field(default_factory=lambda: [70, [1, 32], [32, 32], [32, 64], [64, 64]])
    """[number of sinc filters, then (in, out) channels of the residual stages]."""
    gat_dims: list = field(default_factory=lambda: [64, 32])
    """Node dimensions of the graph attention layers and of the heterogeneous layers."""
    pool_ratios: list = field(default_factory=lambda: [0.5, 0.7, 0.5, 0.5])
    """Fraction of nodes kept by the graph pools (S, T, heterogeneous; the 4th is unused)."""
    temperatures: list = field(default_factory=lambda: [2.0, 2.0, 100.0, 100.0])
    """Softmax temperatures of GAT-S, GAT-T and the heterogeneous layers (4th unused)."""

    @classmethod
    def from_conf(cls, path: str | os.PathLike) -> AASISTConfig:
        """Read an official ``.conf`` (JSON with a ``model_config`` entry)."""
        p = Path(path)
        try:
            conf = json.loads(p.read_text())
            mc = conf["model_config"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(
                f"{p}: not an AASIST .conf (JSON with a 'model_config' entry): {e}"
            ) from e
        return cls(
            nb_samp=int(mc.get("nb_samp", NB_SAMP)),
            first_conv=int(mc["first_conv"]),
            filts=mc["filts"],
            gat_dims=mc["gat_dims"],
            pool_ratios=mc["pool_ratios"],
            temperatures=mc["temperatures"],
        )


# clovaai/aasist config/AASIST.conf and config/AASIST-L.conf (model_config)
AASIST_CONFIGS: dict[str, AASISTConfig] = {
    "AASIST": AASISTConfig(),
    "AASIST-L": AASISTConfig(
        filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]],
        gat_dims=[24, 32],
        pool_ratios=[0.4, 0.5, 0.7, 0.5],
    ),
}


def pad_repeat(x: np.ndarray, max_len: int = NB_SAMP) -> np.ndarray:
    """The official evaluation padding (``data_utils.pad``): cut to ``max_len`` or tile the
    signal until it is that long. ``x: [T]`` -> ``[max_len]``."""
    x = np.asarray(x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise DataError(f"pad_repeat expects a non-empty 1-D signal, got shape {x.shape}")
    if x.shape[0] >= max_len:
        return x[:max_len]
    reps = max_len // x.shape[0] + 1
    return np.tile(x, reps)[:max_len]


# ----------------------------------------------------------------------------- front-end


def _to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595 * np.log10(1 + hz / 700)


def _to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595) - 1)


class SincConv(nn.Module):
    """Fixed mel-spaced sinc band-pass filterbank (the official ``CONV``; not trained).

    ``forward(x: [B, 1, T]) -> [B, out_channels, T - kernel_size + 1]``. With ``mask`` (the
    official frequency augmentation ``Freq_aug``), 0..19 consecutive filters are zeroed.
    """

    def __init__(self, out_channels: int, kernel_size: int, sample_rate: int = 16000) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            kernel_size += 1  # symmetric filters
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        nfft = 512
        f = int(sample_rate / 2) * np.linspace(0, 1, int(nfft / 2) + 1)
        fmel = _to_mel(f)
        edges = _to_hz(np.linspace(fmel.min(), fmel.max(), out_channels + 1))
        # the official code evaluates the sinc on a float32 torch support (numpy then computes
        # in float32) and multiplies window and filter as float32 tensors; the same operations
        # are used here so the filters match the official ones bit for bit
        hsupp = torch.arange(-(kernel_size - 1) / 2, (kernel_size - 1) / 2 + 1)
        window = torch.tensor(np.hamming(kernel_size), dtype=torch.float32)
        bank = torch.zeros(out_channels, kernel_size)
        for i in range(out_channels):
            fmin, fmax = edges[i], edges[i + 1]
            h_high = (2 * fmax / sample_rate) * np.sinc(2 * fmax * hsupp / sample_rate)
            h_low = (2 * fmin / sample_rate) * np.sinc(2 * fmin * hsupp / sample_rate)
            bank[i] = window * torch.tensor(np.asarray(h_high - h_low), dtype=torch.float32)
        self.register_buffer("band_pass", bank, persistent=False)

    def forward(self, x: Tensor, mask: bool = False) -> Tensor:
        filt = self.band_pass
        if mask:
            filt = filt.clone()
            width = int(np.random.uniform(0, 20))
            start = random.randint(0, filt.shape[0] - width)
            filt[start : start + width] = 0
        return F.conv1d(x, filt.view(self.out_channels, 1, self.kernel_size))


# ----------------------------------------------------------------------------- encoder


class ResidualBlock(nn.Module):
    """The official ``Residual_block`` (RawNet2-style, 2-D): conv(2x3) -> BN -> SELU ->
    conv(2x3), 1x3 conv shortcut when the channel count changes, then max-pool (1, 3) over time.

    ``forward(x: [B, C_in, F, T]) -> [B, C_out, F, T // 3]`` (``T`` with ``pool=False``, as in
    the SSL variant of Tak et al. 2022). See the module docstring for ``bn1`` (present, without
    effect on the output, as in the official code).
    """

    def __init__(
        self, nb_filts: list[int] | tuple[int, int], first: bool = False, pool: bool = True
    ) -> None:
        super().__init__()
        c_in, c_out = int(nb_filts[0]), int(nb_filts[1])
        self.first = first
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.selu = nn.SELU(inplace=True)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))
        self.mp = nn.MaxPool2d((1, 3)) if pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if not self.first and self.training:
            # the official forward runs bn1 (updating its running statistics) and discards it
            self.bn1(x)
        out = self.conv1(x)
        out = self.selu(self.bn2(out))
        out = self.conv2(out)
        identity = self.conv_downsample(x) if self.downsample else x
        return self.mp(out + identity)


# ----------------------------------------------------------------------------- graph layers


def _xavier_param(*size: int) -> nn.Parameter:
    p = nn.Parameter(torch.empty(*size))
    nn.init.xavier_normal_(p)
    return p


def _pairwise_mul(x: Tensor) -> Tensor:
    """``x: [B, N, D] -> [B, N, N, D]`` with ``out[b, i, j] = x[b, i] * x[b, j]``."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _bn_nodes(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """BatchNorm1d over the last dim of ``x: [B, N, D]`` (nodes pooled with the batch)."""
    return bn(x.reshape(-1, x.shape[-1])).view(x.shape)


class GraphAttentionLayer(nn.Module):
    """Graph attention over a fully connected graph (official ``GraphAttentionLayer``).

    ``forward(x: [B, N, in_dim]) -> [B, N, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _xavier_param(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temp = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        x = self.input_drop(x)
        att = torch.tanh(self.att_proj(_pairwise_mul(x)))  # [B, N, N, out]
        att = torch.matmul(att, self.att_weight) / self.temp  # [B, N, N, 1]
        att = F.softmax(att, dim=-2).squeeze(-1)  # [B, N, N], rows sum to 1 over neighbours
        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return self.act(_bn_nodes(self.bn, x))


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous stacking graph attention layer (HS-GAL) over two node types and a master
    node (official ``HtrgGraphAttentionLayer``).

    ``forward(x1: [B, N1, in], x2: [B, N2, in], master: [B or 1, 1, in])`` ->
    ``(x1: [B, N1, out], x2: [B, N2, out], master: [B, 1, out])``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _xavier_param(out_dim, 1)
        self.att_weight22 = _xavier_param(out_dim, 1)
        self.att_weight12 = _xavier_param(out_dim, 1)
        self.att_weightM = _xavier_param(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=0.2)
        self.act = nn.SELU(inplace=True)
        self.temp = float(temperature)

    def forward(
        self, x1: Tensor, x2: Tensor, master: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        n1, n2 = x1.shape[1], x2.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)  # [B, N, in]
        if master is None:
            master = x.mean(dim=1, keepdim=True)
        x = self.input_drop(x)

        # node-to-node attention with one weight vector per block (type1-type1, 2-2, cross)
        a = torch.tanh(self.att_proj(_pairwise_mul(x)))  # [B, N, N, out]
        w11 = torch.matmul(a[:, :n1, :n1], self.att_weight11)
        w22 = torch.matmul(a[:, n1:, n1:], self.att_weight22)
        w12 = torch.matmul(a[:, :n1, n1:], self.att_weight12)
        w21 = torch.matmul(a[:, n1:, :n1], self.att_weight12)
        att = torch.cat([torch.cat([w11, w12], dim=2), torch.cat([w21, w22], dim=2)], dim=1)
        att = F.softmax(att / self.temp, dim=-2).squeeze(-1)  # [B, N, N]

        # master node update (directional edges node -> master), from the pre-update master
        am = torch.tanh(self.att_projM(x * master))
        am = F.softmax(torch.matmul(am, self.att_weightM) / self.temp, dim=-2)  # [B, N, 1]
        new_master = self.proj_with_attM(
            torch.matmul(am.squeeze(-1).unsqueeze(1), x)
        ) + self.proj_without_attM(master)

        x = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        x = self.act(_bn_nodes(self.bn, x))
        return x[:, :n1], x[:, n1 : n1 + n2], new_master


class GraphPool(nn.Module):
    """Graph pooling (official ``GraphPool``): a sigmoid score per node, nodes scaled by it, the
    ``max(int(N * k), 1)`` best kept (in descending score order).

    ``forward(h: [B, N, D]) -> [B, N', D]``.
    """

    def __init__(self, k: float, in_dim: int, p: float) -> None:
        super().__init__()
        self.k = float(k)
        self.sigmoid = nn.Sigmoid()
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=p) if p > 0 else nn.Identity()
        self.in_dim = in_dim

    def forward(self, h: Tensor) -> Tensor:
        scores = self.sigmoid(self.proj(self.drop(h)))  # [B, N, 1]
        n_keep = max(int(h.shape[1] * self.k), 1)
        _, idx = torch.topk(scores, n_keep, dim=1)
        return torch.gather(h * scores, 1, idx.expand(-1, -1, h.shape[-1]))


# ----------------------------------------------------------------------------- models


class AASISTBackend(nn.Module):
    """The AASIST back-end on a 2-D (feature x time) map: max-pool (3, 3) -> BN -> SELU ->
    residual encoder -> spectral / temporal graphs (GAT-S, GAT-T) -> two HS-GAL branches with
    master nodes -> readout -> 2 logits (class 1 = bona fide).

    Args:
        cfg: the official hyper-parameters (``filts[1:]`` = encoder stages).
        n_bins: height of the input map; ``n_bins // 3`` spectral nodes (``pos_S``).
        abs_input: take ``|x|`` before the first pool (the raw-waveform AASIST does; the SSL
            variant does not).
        variant: ``"raw"`` = clovaai/aasist; ``"ssl"`` = the back-end of Tak et al. 2022
            (github.com/TakHemlata/SSL_Anti-spoofing model.py): no time pooling in the residual
            blocks, BN (``first_bn1``) + SELU after the encoder and a 1x1-conv attention
            (``attention``) whose softmax over time / frequency weights the spectral / temporal
            node features instead of the max.
    """

    def __init__(
        self,
        cfg: AASISTConfig,
        n_bins: int,
        abs_input: bool = True,
        variant: Literal["raw", "ssl"] = "raw",
    ) -> None:
        super().__init__()
        if variant not in ("raw", "ssl"):
            raise ValueError(f"variant must be 'raw' or 'ssl', got {variant!r}")
        self.cfg = cfg
        self.abs_input = abs_input
        self.variant = variant
        pool = variant == "raw"
        filts, gat_dims = cfg.filts, cfg.gat_dims
        pool_ratios, temps = cfg.pool_ratios, cfg.temperatures
        self.first_bn = nn.BatchNorm2d(1)
        self.drop = nn.Dropout(0.5, inplace=True)
        self.drop_way = nn.Dropout(0.2, inplace=True)
        self.selu = nn.SELU(inplace=True)
        self.encoder = nn.Sequential(
            nn.Sequential(ResidualBlock(filts[1], first=True, pool=pool)),
            nn.Sequential(ResidualBlock(filts[2], pool=pool)),
            nn.Sequential(ResidualBlock(filts[3], pool=pool)),
            nn.Sequential(ResidualBlock(filts[4], pool=pool)),
            nn.Sequential(ResidualBlock(filts[4], pool=pool)),
            nn.Sequential(ResidualBlock(filts[4], pool=pool)),
        )
        c = int(filts[-1][-1])
        if variant == "ssl":
            self.first_bn1 = nn.BatchNorm2d(c)
            self.attention = nn.Sequential(
                nn.Conv2d(c, 128, kernel_size=(1, 1)),
                nn.SELU(inplace=True),
                nn.BatchNorm2d(128),
                nn.Conv2d(128, c, kernel_size=(1, 1)),
            )
        self.pos_S = nn.Parameter(torch.randn(1, n_bins // 3, c))
        self.master1 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.master2 = nn.Parameter(torch.randn(1, 1, gat_dims[0]))
        self.GAT_layer_S = GraphAttentionLayer(c, gat_dims[0], temperature=temps[0])
        self.GAT_layer_T = GraphAttentionLayer(c, gat_dims[0], temperature=temps[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(gat_dims[0], gat_dims[1], temps[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(gat_dims[1], gat_dims[1], temps[2])
        self.pool_S = GraphPool(pool_ratios[0], gat_dims[0], 0.3)
        self.pool_T = GraphPool(pool_ratios[1], gat_dims[0], 0.3)
        self.pool_hS1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT1 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hS2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.pool_hT2 = GraphPool(pool_ratios[2], gat_dims[1], 0.3)
        self.out_layer = nn.Linear(5 * gat_dims[1], 2)

    def encode(self, x: Tensor) -> Tensor:
        """``x: [B, F, T]`` -> encoder map ``e: [B, C, F // 3, T']`` (``T' = T // 3 // 3**6``
        for ``"raw"``, ``T // 3`` for ``"ssl"``)."""
        x = x.unsqueeze(1)
        if self.abs_input:
            x = torch.abs(x)
        x = F.max_pool2d(x, (3, 3))
        x = self.selu(self.first_bn(x))
        return self.encoder(x)

    def graph(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """``e: [B, C, F', T']`` (the last residual block's output) ->
        ``(last_hidden: [B, 5 * gat_dims[1]], logits: [B, 2])``."""
        if self.variant == "ssl":
            e = self.selu(self.first_bn1(e))
            w = self.attention(e)
            e_S = torch.sum(e * F.softmax(w, dim=-1), dim=-1).transpose(1, 2) + self.pos_S
            e_T = torch.sum(e * F.softmax(w, dim=-2), dim=-2).transpose(1, 2)
        else:
            e_abs = torch.abs(e)
            e_S = e_abs.max(dim=3).values.transpose(1, 2) + self.pos_S  # [B, F', C]
            e_T = e_abs.max(dim=2).values.transpose(1, 2)  # [B, T', C]
        out_S = self.pool_S(self.GAT_layer_S(e_S))
        out_T = self.pool_T(self.GAT_layer_T(e_T))

        out_T1, out_S1, master1 = self.HtrgGAT_layer_ST11(out_T, out_S, master=self.master1)
        out_S1 = self.pool_hS1(out_S1)
        out_T1 = self.pool_hT1(out_T1)
        t_aug, s_aug, m_aug = self.HtrgGAT_layer_ST12(out_T1, out_S1, master=master1)
        out_T1, out_S1, master1 = out_T1 + t_aug, out_S1 + s_aug, master1 + m_aug

        out_T2, out_S2, master2 = self.HtrgGAT_layer_ST21(out_T, out_S, master=self.master2)
        out_S2 = self.pool_hS2(out_S2)
        out_T2 = self.pool_hT2(out_T2)
        t_aug, s_aug, m_aug = self.HtrgGAT_layer_ST22(out_T2, out_S2, master=master2)
        out_T2, out_S2, master2 = out_T2 + t_aug, out_S2 + s_aug, master2 + m_aug

        out_T = torch.max(self.drop_way(out_T1), self.drop_way(out_T2))
        out_S = torch.max(self.drop_way(out_S1), self.drop_way(out_S2))
        master = torch.max(self.drop_way(master1), self.drop_way(master2))

        last_hidden = torch.cat(
            [
                out_T.abs().max(dim=1).values,
                out_T.mean(dim=1),
                out_S.abs().max(dim=1).values,
                out_S.mean(dim=1),
                master.squeeze(1),
            ],
            dim=1,
        )
        return last_hidden, self.out_layer(self.drop(last_hidden))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, F, T]`` -> ``(last_hidden: [B, H], logits: [B, 2])``."""
        return self.graph(self.encode(x))


class AASIST(AASISTBackend):
    """AASIST on raw 16 kHz waveforms: sinc filterbank -> |.| -> :class:`AASISTBackend`.

    ``forward(x: [B, T]) -> (last_hidden: [B, 5 * gat_dims[1]], logits: [B, 2])``; the official
    input is ``T = nb_samp = 64600`` (use :func:`pad_repeat`), other lengths of at least ~1 s run.
    """

    def __init__(self, cfg: AASISTConfig | None = None) -> None:
        cfg = cfg or AASISTConfig()
        n_filt = int(cfg.filts[0])
        super().__init__(cfg, n_bins=n_filt, abs_input=True)
        self.conv_time = SincConv(n_filt, cfg.first_conv)

    def encode_wave(self, x: Tensor, freq_aug: bool = False) -> Tensor:
        """``x: [B, T]`` -> encoder map ``[B, C, F', T']`` (the Grad-CAM target)."""
        if x.ndim != 2:
            raise DataError(f"AASIST expects waveforms [B, T], got shape {tuple(x.shape)}")
        return self.encode(self.conv_time(x.unsqueeze(1), mask=freq_aug))

    def forward(self, x: Tensor, freq_aug: bool = False) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return self.graph(self.encode_wave(x, freq_aug))

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        """Countermeasure scores ``[B]`` as the official ``produce_evaluation_file`` writes them:
        ``logits[:, 1]`` in eval mode (higher = more bona fide)."""
        was = self.training
        self.eval()
        try:
            return self(x)[1][:, 1]
        finally:
            self.train(was)


def load_aasist(
    name_or_path: str | os.PathLike = "AASIST-L",
    device: str | torch.device = "cpu",
    conf: str | os.PathLike | None = None,
) -> AASIST:
    """The official AASIST / AASIST-L in eval mode, loaded with ``strict=True``.

    ``name_or_path``: ``"AASIST"`` / ``"AASIST-L"`` (looked for as ``AASIST.pth`` /
    ``AASIST-L.pth`` in the weights folders of :mod:`splatlab.models.weights`) or a ``.pth`` path.
    The hyper-parameters come from ``conf``, else a ``.conf`` next to the weights with the same
    stem, else the built-in copy of the official config for the name (AASIST-L if the stem says so).

    Raises:
        WeightsNotFoundError: the checkpoint is not on this machine (says where to get it).
        CheckpointError: the file does not match the architecture.
    """
    name = str(name_or_path)
    if name in AASIST_CONFIGS:
        path = find_weights(None, [f"{name}.pth"], f"AASIST ({name})", AASIST_URL)
    else:
        path = find_weights(name_or_path, [Path(name).name], "AASIST", AASIST_URL)
    if conf is not None:
        cfg = AASISTConfig.from_conf(conf)
    elif path.with_suffix(".conf").is_file():
        cfg = AASISTConfig.from_conf(path.with_suffix(".conf"))
    else:
        cfg = AASIST_CONFIGS["AASIST-L" if path.stem.upper().endswith("-L") else "AASIST"]
    sd = load_state_dict_file(path, "AASIST")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    model = AASIST(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: does not match the AASIST architecture of its config ({e}); pass the "
            f"matching official .conf with conf=..."
        ) from e
    return model.eval().to(device)
