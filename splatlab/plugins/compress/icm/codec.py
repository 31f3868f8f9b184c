"""A mean-scale hyperprior image codec (Balle et al. 2018, "Variational image compression with a
scale hyperprior"; Minnen et al. 2018, the mean-scale variant without context model), written
here in PyTorch with an honest bitstream coded by ``constriction``.

Why not CompressAI: it is the reference we follow (module layout, ``compress`` -> bytes,
``decompress`` from bytes, ``update()`` tabulating the entropy models, rates from bytes), but as a
dependency it pins ``numpy<2`` and pulls torch-geometric, which this project cannot take.

Architecture (CompressAI's ``MeanScaleHyperprior`` with N, M channels)::

    g_a: conv5/2 (3->N) GDN conv5/2 GDN conv5/2 GDN conv5/2 (N->M)          y  [B, M, H/16, W/16]
    h_a: conv3/1 (M->N) LReLU conv5/2 LReLU conv5/2 (N->N)                  z  [B, N, H/64, W/64]
    h_s: deconv5/2 (N->M) ReLU deconv5/2 (M->3M/2) ReLU conv3/1 (3M/2->2M)  (sigma, mu)
    g_s: deconv5/2 (M->N) IGDN deconv5/2 IGDN deconv5/2 IGDN deconv5/2 (N->3)

(h_s uses ReLU rather than LeakyReLU so that it can run in exact integer arithmetic.) Training:
rate = -log2 P(y + u | mu, sigma) - log2 P(z + u) with uniform noise u (bits per pixel);
``g_s`` and ``h_s`` see the rounded values ``round(y - mu) + mu`` and ``round(z)`` through a
straight-through estimator.

Bitstream (little endian)::

    magic "iM" | version u8 | height u16 | width u16 | R u16 (|round(y - mu)| <= R)
    fingerprint u32 (crc32 of the entropy-coding state: h_s integer weights, z pmf, scale table)
    crc32 u32 (of the header before it and of the payload)
    payload: u32 words of ONE constriction range-coder queue: z channel by channel (categorical,
             the tabulated pmf), then round(y - mu) (quantised Gaussian, mean 0, std = table
             entry)

Determinism: the symbols and their probabilities are exact integers / stored tables in every
process (see entropy.py), so any process with the same checkpoint decodes the same symbols and
the same ``y_hat``. The image synthesis ``g_s`` is float32; it decodes bit-exactly in another
process of the same machine, also with another torch thread count (tested), but like every float
CNN decoder it is not promised across CPU types or torch builds. The
fingerprint makes a decoder with a different entropy model refuse the file instead of
producing garbage; the ICIP 2022 bridge changes only ``g_s`` and so keeps the fingerprint and
the bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError
from .entropy import KA, KW, EntropyBottleneck, GaussianConditional, int_conv

__all__ = ["CodecConfig", "GDN", "MeanScaleHyperprior", "MAGIC", "VERSION", "image_to_tensor", "pad_image", "unpack",
           "tensor_to_image"]

MAGIC = b"iM"
VERSION = 1
_HEAD = struct.Struct("<2sBHHHI")
PAD = 64  # total down-sampling of the hyperprior path


@dataclass
class CodecConfig:
    """Channel counts of the codec."""

    N: int = 48
    M: int = 48

    def as_dict(self) -> dict:
        return asdict(self)


class GDN(nn.Module):
    """Generalised divisive normalisation (Balle 2016): y_i = x_i / sqrt(beta_i + sum_j gamma_ij
    x_j^2); ``inverse=True`` multiplies (IGDN). beta, gamma are squares of the parameters (>= 0)."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.sqrt(0.1 * torch.eye(channels) + 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        beta = self.beta**2 + 1e-6
        gamma = self.gamma**2
        c = x.shape[1]
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, s: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)


def _ste_round(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


def image_to_tensor(img: np.ndarray) -> Tensor:
    """uint8 [H, W, 3] -> float32 [1, 3, H, W] in [0, 1]."""
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"the codec takes a uint8 RGB image [H, W, 3], got {a.dtype} {a.shape}")
    return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float() / 255.0


def tensor_to_image(x: Tensor) -> np.ndarray:
    """float [1, 3, H, W] in [0, 1] -> uint8 [H, W, 3] (rounded)."""
    return (x[0].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class MeanScaleHyperprior(nn.Module):
    """The learned codec; see the module docstring."""

    def __init__(self, config: CodecConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or CodecConfig()
        N, M = cfg.N, cfg.M
        self.g_a = nn.Sequential(_conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N),
                                 _conv(N, M))
        self.g_s = nn.Sequential(_deconv(M, N), GDN(N, True), _deconv(N, N), GDN(N, True),
                                 _deconv(N, N), GDN(N, True), _deconv(N, 3))
        self.h_a = nn.Sequential(_conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), _conv(N, N),
                                 nn.LeakyReLU(inplace=True), _conv(N, N))
        self.h_s = nn.Sequential(_deconv(N, M), nn.ReLU(inplace=True), _deconv(M, M * 3 // 2),
                                 nn.ReLU(inplace=True), _conv(M * 3 // 2, 2 * M, 3, 1))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional()

    # ------------------------------------------------------------------ training
    def forward(self, x: Tensor, decoder: nn.Module | None = None) -> dict[str, Tensor]:
        """x: float [B, 3, H, W] in [0, 1], H and W multiples of 64.
        Returns x_hat [B, 3, H, W] (not clamped), bpp (scalar: estimated bits per pixel of the
        batch average), y_bits / z_bits (scalars, per pixel)."""
        _check_multiple(x)
        y = self.g_a(x)
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        z_lik = self.entropy_bottleneck.likelihood(z_noisy)
        z_hat = _ste_round(z)
        sigma, mu = self.h_s(z_hat).chunk(2, 1)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else (
            torch.round(y - mu) + mu)
        y_lik = self.gaussian_conditional.likelihood(y_noisy, mu, sigma)
        y_hat = _ste_round(y - mu) + mu
        x_hat = (decoder or self.g_s)(y_hat)
        n_px = x.shape[0] * x.shape[2] * x.shape[3]
        y_bits = -torch.log2(y_lik).sum() / n_px
        z_bits = -torch.log2(z_lik).sum() / n_px
        return {"x_hat": x_hat, "bpp": y_bits + z_bits, "y_bits": y_bits, "z_bits": z_bits}

    # ------------------------------------------------------------------ coding
    @torch.no_grad()
    def update(self) -> None:
        """Tabulate the entropy models for coding (call after training, before compress)."""
        self.entropy_bottleneck.update()
        self._int_cache = None

    def _int_hs(self) -> list[tuple[Tensor, Tensor, nn.Module]]:
        cache = getattr(self, "_int_cache", None)
        if cache is None:
            cache = []
            for m in self.h_s:
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    w = torch.round(m.weight.detach().double() * 2.0**KW).to(torch.int64)
                    b = torch.round(m.bias.detach().double() * 2.0 ** (KA + KW)).to(torch.int64)
                    cache.append((w, b, m))
            self._int_cache = cache
        return cache

    def train(self, mode: bool = True) -> MeanScaleHyperprior:
        self._int_cache = None  # the weights may change
        return super().train(mode)

    @torch.no_grad()
    def hyper_exact(self, z_sym: Tensor) -> tuple[Tensor, Tensor]:
        """z_sym: int64 [1, N, h, w] -> (mu, sigma) float64 [1, M, 4h, 4w], exact multiples of
        2^-KA computed in integer arithmetic (the same in every process)."""
        a = z_sym.to(torch.int64) * (1 << KA)
        layers = self._int_hs()
        for i, (w, b, m) in enumerate(layers):
            acc = int_conv(a, w, b, stride=m.stride[0], padding=m.padding[0],
                           transposed=isinstance(m, nn.ConvTranspose2d),
                           output_padding=m.output_padding[0] if isinstance(m, nn.ConvTranspose2d) else 0)
            a = torch.div(acc, 1 << KW, rounding_mode="floor")
            if i < len(layers) - 1:
                a = a.clamp_min(0)
        out = a.to(torch.float64) * 2.0**-KA
        sigma, mu = out.chunk(2, 1)
        return mu, sigma

    def fingerprint(self) -> int:
        """crc32 of what the decoder's entropy coding depends on (not g_s)."""
        eb = self.entropy_bottleneck
        if eb.support == 0:
            raise DataError("the codec's entropy models are not tabulated: call model.update() first")
        crc = zlib.crc32(struct.pack("<HH", self.config.N, self.config.M))
        for w, b, _ in self._int_hs():
            crc = zlib.crc32(w.numpy().astype("<i8").tobytes(), crc)
            crc = zlib.crc32(b.numpy().astype("<i8").tobytes(), crc)
        crc = zlib.crc32(eb.pmf.numpy().astype("<f8").tobytes(), crc)
        crc = zlib.crc32(self.gaussian_conditional.scale_table.numpy().astype("<f8").tobytes(), crc)
        return crc

    def _prepare(self) -> None:
        if self.training:
            self.eval()
        if self.entropy_bottleneck.support == 0:
            raise DataError("the codec's entropy models are not tabulated: call model.update() first")

    @torch.no_grad()
    def compress_tensor(self, x: Tensor, height: int, width: int) -> bytes:
        """x: float [1, 3, H', W'] in [0, 1] (H', W' multiples of 64; the image is its top-left
        height x width) -> bytes."""
        self._prepare()
        _check_multiple(x)
        if x.shape[0] != 1:
            raise DataError(f"compress codes one image at a time, got a batch of {x.shape[0]}")
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        L = eb.support
        y = self.g_a(x)
        z = self.h_a(y)
        z_sym = torch.round(z).clamp(-L, L).to(torch.int64)
        mu, sigma = self.hyper_exact(z_sym)
        idx = gc.index(sigma)
        y_sym = torch.round(y.double() - mu).to(torch.int64)
        R = max(1, int(y_sym.abs().max()))
        if R > 65535:
            raise DataError(f"latent magnitude {R} exceeds the format's limit 65535")
        enc = constriction.stream.queue.RangeEncoder()
        zs = (z_sym[0] + L).reshape(z_sym.shape[1], -1).numpy().astype(np.int32)
        pmf = eb.pmf.numpy()
        for c in range(zs.shape[0]):
            enc.encode(zs[c], constriction.stream.model.Categorical(pmf[c], perfect=False))
        stds = gc.scale_table[idx].reshape(-1).numpy()
        enc.encode(y_sym.reshape(-1).numpy().astype(np.int32),
                   constriction.stream.model.QuantizedGaussian(-R, R),
                   np.zeros_like(stds), stds)
        payload = np.asarray(enc.get_compressed(), dtype="<u4").tobytes()
        head = _HEAD.pack(MAGIC, VERSION, height, width, R, self.fingerprint())
        return head + struct.pack("<I", zlib.crc32(head + payload)) + payload

    def compress(self, img: np.ndarray) -> bytes:
        """uint8 [H, W, 3] -> bytes (the padding to multiples of 64 is replicated edges)."""
        x = image_to_tensor(img)
        h, w = x.shape[2:]
        if h > 65535 or w > 65535:
            raise DataError(f"image {w}x{h} is larger than the format's 65535 px per side")
        return self.compress_tensor(pad_image(x), h, w)

    @torch.no_grad()
    def decode_latents(self, data: bytes, name: str = "bitstream") -> tuple[Tensor, int, int]:
        """bytes -> (y_hat float32 [1, M, H'/16, W'/16], height, width)."""
        self._prepare()
        height, width, R, fp, words = unpack(data, name)
        if fp != self.fingerprint():
            raise DataError(f"{name} was coded by another codec model (fingerprint {fp:#010x}, "
                            f"this model {self.fingerprint():#010x}); decode it with that checkpoint")
        eb, gc = self.entropy_bottleneck, self.gaussian_conditional
        L = eb.support
        hp, wp = _padded(height), _padded(width)
        zh, zw = hp // PAD, wp // PAD
        dec = constriction.stream.queue.RangeDecoder(words)
        pmf = eb.pmf.numpy()
        zs = np.empty((self.config.N, zh * zw), np.int64)
        try:
            for c in range(self.config.N):
                zs[c] = dec.decode(constriction.stream.model.Categorical(pmf[c], perfect=False), zh * zw)
            z_sym = torch.from_numpy(zs - L).reshape(1, self.config.N, zh, zw)
            mu, sigma = self.hyper_exact(z_sym)
            stds = gc.scale_table[gc.index(sigma)].reshape(-1).numpy()
            ys = dec.decode(constriction.stream.model.QuantizedGaussian(-R, R),
                            np.zeros_like(stds), stds)
        except (ValueError, RuntimeError, AssertionError) as e:  # a corrupt payload
            raise DataError(f"{name}: the payload cannot be decoded ({e})") from e
        y_hat = torch.from_numpy(ys.astype(np.float64)).reshape(mu.shape) + mu
        return y_hat.to(torch.float32), height, width

    @torch.no_grad()
    def decompress(self, data: bytes, decoder: nn.Module | None = None,
                   name: str = "bitstream") -> np.ndarray:
        """bytes -> uint8 [H, W, 3]; ``decoder`` replaces g_s (e.g. the bridge's human decoder)."""
        y_hat, h, w = self.decode_latents(data, name)
        x_hat = (decoder or self.g_s)(y_hat)
        return tensor_to_image(x_hat[:, :, :h, :w])


def _padded(n: int) -> int:
    return -(-n // PAD) * PAD


def pad_image(x: Tensor) -> Tensor:
    """float [B, 3, H, W] -> [B, 3, H', W'] with H', W' the next multiples of 64 (replicated)."""
    h, w = x.shape[2:]
    ph, pw = _padded(h) - h, _padded(w) - w
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _check_multiple(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"the codec takes float images [B, 3, H, W], got {tuple(x.shape)}")
    if x.shape[2] % PAD or x.shape[3] % PAD:
        raise DataError(f"image sides must be multiples of {PAD} (use pad_image), got "
                        f"{x.shape[3]}x{x.shape[2]}")


def unpack(data: bytes, name: str = "bitstream") -> tuple[int, int, int, int, np.ndarray]:
    """Parse and check a file -> (height, width, R, fingerprint, payload words). DataError naming
    ``name`` when it is not an ICM codec file, truncated or corrupted."""
    n = _HEAD.size + 4
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{name}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < n:
        raise DataError(f"{name}: {len(data)} bytes is too short for an ICM codec file (truncated?)")
    magic, version, h, w, R, fp = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise DataError(f"{name}: not an ICM codec file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise DataError(f"{name}: format version {version} is not supported (this reader: {VERSION})")
    if h == 0 or w == 0 or (len(data) - n) % 4:
        raise DataError(f"{name}: header is corrupted or the file is truncated")
    (crc,) = struct.unpack_from("<I", data, _HEAD.size)
    payload = data[n:]
    if zlib.crc32(data[: _HEAD.size] + payload) != crc:
        raise DataError(f"{name}: checksum mismatch: the file is corrupted or truncated")
    return h, w, R, fp, np.frombuffer(payload, dtype="<u4").astype(np.uint32)
