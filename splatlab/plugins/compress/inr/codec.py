"""Encode (overfit a Cool-chic / C3 style decoder to one image) and decode.

Training: loss = MSE + lambda * rate, rate = -log2 P(latents) under the ARM's Laplace, in bits per
pixel. Phase 1 (``1 - ste_fraction`` of the steps): C3's soft-round + Kumaraswamy noise with the
temperature annealed 0.3 -> 0.1 and the noise parameter 2 -> 1 (or, with ``quantizer="gumbel"``,
EQLINR's stochastic Gumbel annealing, temperature 0.5 -> 0.05), Adam with a cosine learning rate.
Phase 2: hard rounding with a straight-through gradient at ``ste_lr`` (1e-4, cosine-annealed, for
the networks and the latents alike: Cool-chic's C3x preset, ``coolchic/enc/training/presets.py``).
The best hard-rounded loss seen at the periodic checks is kept.

Weight quantisation: per group (ARM weights, ARM biases, learned upsampling kernels, synthesis
weights, ... ) the step ``2^-k``, k in 0..12, minimising MSE + lambda * (latent rate + that
group's weight rate), searched group after group (Cool-chic's greedy search). Weights are
entropy coded with a Laplace of the group's mean absolute integer.

The bitstream (bitstream.py) holds the architecture, the steps, the weights and the latents, all
coded in one constriction range-coder stream; the decoder is exact fixed point (arm.py, model.py).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import constriction
import numpy as np
import torch

from ....errors import DataError
from ...base import Progress, no_progress
from . import bitstream as bs
from .arm import (
    FA,
    MU_FRAC,
    SCALE_TABLE,
    arm_fixed,
    arm_float,
    arm_shapes,
    context_pattern,
    laplace_bin_prob,
    latent_layout,
)
from .model import (
    UPS_BILINEAR,
    UPS_PER_STEP,
    UPS_SHARED,
    Arch,
    init_params,
    layer_specs,
    synthesis,
    ups_names,
    upsample_all,
)
from .quant import noisy_softround, quantize_weights, sga_round, ste_round

__all__ = ["CodecOptions", "EncodeResult", "encode", "encode_image", "decode", "parse_arch_candidates"]

K_RANGE = range(0, 13)


@dataclass
class CodecOptions:
    """Options of the INR image encoder (the decoder reads everything from the file)."""

    lmbda: float = 2e-3
    """Rate weight: loss = MSE + lmbda * bits per pixel (larger: smaller file, lower quality)."""
    steps: int = 1000
    """Training iterations."""
    lr: float = 1e-2
    """Adam learning rate of the networks in phase 1 (cosine-annealed; phase 2 uses a tenth)."""
    latent_lr_scale: float = 8.0
    """The latents' learning rate is this multiple of ``lr`` (Adam moves a latent by ~lr a step,
    and a short run must move them past +-0.5 before rounding keeps anything)."""
    ste_fraction: float = 0.15
    """Fraction of the steps trained with hard rounding and a straight-through gradient."""
    ste_lr: float = 1e-4
    """Learning rate of that straight-through phase (networks and latents; cosine-annealed). Cool-chic
    uses 1e-4; a tenth of ``lr`` with the latents' multiple (1e-3 / 8e-3, our earlier setting) made
    the hard-rounded loss rise in that phase (kodim04 crop, 1000 steps: 5.17e-4 -> 7.40e-4)."""
    quantizer: Literal["softround", "gumbel"] = "softround"
    """Phase-1 latent quantiser: C3 soft-round + Kumaraswamy noise, or EQLINR's Gumbel annealing."""
    enhance: int = 0
    """Channels of the EQLINR enhancement CNN after the synthesis (0: off; e.g. 8)."""
    n_levels: int = 7
    """Latent grids (grid i has 1/2^i of the resolution)."""
    n_ctx: int = 16
    """ARM causal context size."""
    ctx_k: int = 3
    """ARM context half-width (rows above and columns either side)."""
    arm_hidden: int = 16
    """ARM hidden width."""
    arm_layers: int = 2
    """ARM hidden layers."""
    syn_hidden: int = 24
    """Synthesis hidden channels."""
    upsampling: Literal["bilinear", "learned", "learned_per_step"] = "bilinear"
    """Latent upsampling: fixed bilinear, one learned symmetric 8-tap kernel for every 2x step
    (Cool-chic 3.3's learned upsampling), or one per step (as Cool-chic 3.4); model.py has the
    details. The kernels are coded in the file like the other weights. Per step: -3.0 % BD-rate
    against bilinear at 6000 steps on 192 px Kodak crops, ~25 % more encode time (BENCHMARKS.md)."""
    arch_candidates: tuple[tuple[int, int], ...] = ()
    """Further ``(arm_hidden, syn_hidden)`` pairs to encode with besides this one; the file with the
    lowest ``MSE + lmbda * bpp`` (bpp from its bytes) is kept. An encoder-side rate-distortion
    decision, like a conventional encoder's mode choice (the decoder reads the architecture from
    the header). Useful on small images, where the network weights can be most of the file (a
    192 px Kodak crop at lambda 4e-3: up to 68 %); each candidate adds its own encode time."""
    seed: int = 0
    """Seed of the initialisation and of the training noise."""
    threads: int = 1
    """torch CPU threads while encoding (1 is fastest for these small layers on a busy machine)."""

    def arch(self, height: int, width: int) -> Arch:
        if self.upsampling not in UPSAMPLING:
            raise DataError(f"upsampling {self.upsampling!r} is not one of {', '.join(UPSAMPLING)}")
        for name in ("arm_hidden", "syn_hidden"):  # one byte each in the header
            if not 1 <= getattr(self, name) <= 255:
                raise DataError(f"{name} must be 1..255 (the file stores it in one byte), got {getattr(self, name)}")
        return Arch(height, width, self.n_levels, self.ctx_k, self.n_ctx, self.arm_hidden,
                    self.arm_layers, self.syn_hidden, self.enhance, UPSAMPLING[self.upsampling])


UPSAMPLING = {"bilinear": UPS_BILINEAR, "learned": UPS_SHARED, "learned_per_step": UPS_PER_STEP}


@dataclass
class EncodeResult:
    """An encoded image with what the encoder knows about it."""

    data: bytes
    """The bitstream."""
    decoded: np.ndarray
    """uint8 [H, W, 3]: what :func:`decode` returns for ``data``."""
    estimated_bits: dict[str, float]
    """Entropy-model estimate: header, weights, latents, total."""
    arch: Arch
    steps: dict[str, int]
    """Weight group -> chosen k (step 2^-k)."""
    encode_seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)
    """(step, loss, bpp) at the periodic hard-rounded checks. That bpp is the latents' rate only
    (the rate term training minimises); the network weights are quantised and coded after
    training, so the file's rate is higher (``estimated_bits`` and the bytes of ``data`` have it)."""


# ----------------------------------------------------------------------------- helpers


def _group_of(name: str) -> str:
    return name[:3] + (".w" if name.endswith(".w") else ".b")


def _arm_lists(params: dict[str, torch.Tensor], arch: Arch) -> tuple[list, list]:
    n = len(arm_shapes(arch.n_ctx, arch.arm_hidden, arch.arm_layers))
    return [params[f"arm{i}.w"] for i in range(n)], [params[f"arm{i}.b"] for i in range(n)]


def _param_names(arch: Arch) -> list[str]:
    n = len(arm_shapes(arch.n_ctx, arch.arm_hidden, arch.arm_layers))
    names = [f"arm{i}.{t}" for i in range(n) for t in "wb"]
    names += ups_names(arch)
    names += [f"{layer}.{t}" for layer in layer_specs(arch) for t in "wb"]
    return names


def _group_names(arch: Arch) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {g: [] for g in bs.weight_groups(arch)}
    for n in _param_names(arch):
        out[_group_of(n)].append(n)
    return out


def _laplace_int_bits(q: np.ndarray, scale_idx: int, max_abs: int) -> float:
    """Estimated bits of integers q under the coder's Laplace(0, scale) on [-M, M]."""
    if max_abs == 0:
        return 0.0
    t = torch.from_numpy(q.astype(np.float64))
    b = torch.tensor(bs.weight_scale(scale_idx), dtype=torch.float64)
    p = laplace_bin_prob(t, torch.zeros_like(t), b, lo=-max_abs, hi=max_abs)
    return float(-torch.log2(p).sum())


def _scale_index(q: np.ndarray) -> int:
    b = max(float(np.abs(q).mean()) if q.size else 0.0, 2.0**-4)
    return int(np.clip(round(8 * (math.log2(b) + 4)), 0, 255))


class _Latents:
    """Training-time view of the grids: quantise, gather ARM contexts, rate and image."""

    def __init__(self, arch: Arch, sizes: list[tuple[int, int]] | None = None):
        self.arch = arch
        self.layout = latent_layout(sizes or arch.grid_sizes(),
                                    context_pattern(arch.ctx_k, arch.n_ctx), arch.ctx_k)
        self.grid_pos = [torch.from_numpy(p) for p in self.layout.grid_pos]
        self.ctx = torch.from_numpy(self.layout.ctx)
        self.pos = torch.from_numpy(self.layout.pos)

    def flat(self, grids: list[torch.Tensor]) -> torch.Tensor:
        buf = torch.zeros(self.layout.buffer_size, dtype=grids[0].dtype)
        idx = torch.cat(self.grid_pos)
        return buf.scatter(0, idx, torch.cat([g.reshape(-1) for g in grids]))

    def rate_bits(self, grids: list[torch.Tensor], params: dict[str, torch.Tensor]) -> torch.Tensor:
        buf = self.flat(grids)
        ws, bs_ = _arm_lists(params, self.arch)
        mu, logs = arm_float(buf[self.ctx], ws, bs_)
        p = laplace_bin_prob(buf[self.pos], mu, torch.exp(logs), floor=2.0**-16)
        return -torch.log2(p).sum()


def _image(grids: list[torch.Tensor], params: dict[str, torch.Tensor], arch: Arch) -> torch.Tensor:
    return synthesis(upsample_all(grids, arch, params=params), params, arch)


def _to_uint8_fixed(out: torch.Tensor) -> np.ndarray:
    v = torch.floor((out * 255.0 + float(2 ** (FA - 1))) / float(2**FA)).clamp(0, 255)
    return v[0].permute(1, 2, 0).to(torch.uint8).numpy()


# ----------------------------------------------------------------------------- encoder


def training_phase(
    step: int, n1: int, opt: CodecOptions, gen: torch.Generator
) -> tuple[float, float, Callable[[torch.Tensor], torch.Tensor]]:
    """(network learning rate, latent learning rate, latent quantiser) at ``step``: before ``n1``
    a cosine-annealed rate (latents at ``latent_lr_scale`` times it) and C3's noisy soft-round
    (temperature 0.3 -> 0.1, Kumaraswamy a 2 -> 1) or EQLINR's Gumbel annealing (tau 0.5 -> 0.05);
    from ``n1`` straight-through rounding at ``ste_lr`` cosine-annealed to 0 for both."""
    if step >= n1:
        f2 = (step - n1) / max(1, opt.steps - n1)
        lr2 = opt.ste_lr * 0.5 * (1 + math.cos(math.pi * f2))
        return lr2, lr2, ste_round
    f = step / max(1, n1 - 1)
    lr = opt.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))
    if opt.quantizer == "softround":
        t, a = 0.3 - 0.2 * f, 2.0 - f
        return lr, lr * opt.latent_lr_scale, lambda g: noisy_softround(g, t, a, gen)
    tau = 0.5 * (0.1**f)
    return lr, lr * opt.latent_lr_scale, lambda g: sga_round(g, tau, gen)


def overfit(
    opt: CodecOptions,
    gen: torch.Generator,
    latents: list[torch.Tensor],
    params: dict[str, torch.Tensor],
    loss_of: Callable[[list[torch.Tensor]], torch.Tensor],
    hard_loss: Callable[[], tuple[float, float]],
    progress: Progress,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], list[tuple[int, float, float]]]:
    """The two-phase training shared by the image and video encoders: Adam over the network
    ``params`` and the ``latents`` (at ``latent_lr_scale`` times the rate), the quantiser of
    :func:`training_phase`, ``loss_of(quantised latents)`` minimised; every tenth of the run
    ``hard_loss() -> (loss, bpp)`` with hard rounding, and the best such state is returned:
    (latents, params, history of (step, loss, bpp))."""
    optim = torch.optim.Adam(
        [{"params": list(params.values()), "latent": False},
         {"params": latents, "latent": True}], lr=opt.lr
    )
    n1 = max(1, int(round(opt.steps * (1 - opt.ste_fraction))))
    check_every = max(1, opt.steps // 10)
    best: tuple[float, list, dict] | None = None
    history: list[tuple[int, float, float]] = []
    last = time.perf_counter()
    for step in range(opt.steps):
        lr, lr_latent, quant = training_phase(step, n1, opt, gen)
        for grp in optim.param_groups:
            grp["lr"] = lr_latent if grp["latent"] else lr
        loss = loss_of([quant(g) for g in latents])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if (step + 1) % check_every == 0 or step == opt.steps - 1:
            hl, bpp = hard_loss()
            history.append((step + 1, hl, bpp))
            if best is None or hl < best[0]:
                best = (hl, [g.detach().clone() for g in latents],
                        {k: v.detach().clone() for k, v in params.items()})
        now = time.perf_counter()
        if now - last > 0.5:
            progress((step + 1) / opt.steps, f"training {step + 1}/{opt.steps}")
            last = now
    assert best is not None
    return best[1], best[2], history


def parse_arch_candidates(text: str) -> tuple[tuple[int, int], ...]:
    """``"8,12"`` or ``"8,12; 12,16"`` (also space-separated pairs) -> ((8, 12), (12, 16)): the
    (ARM hidden, synthesis hidden) pairs of :attr:`CodecOptions.arch_candidates`."""
    pairs = []
    for tok in text.replace(";", " ").split():
        parts = tok.split(",")
        try:
            a, h = (int(v) for v in parts)
        except ValueError:
            raise DataError(f"architecture candidate {tok!r} is not 'ARM,SYN' (two integers, e.g. "
                            f"'8,12')") from None
        if a < 1 or h < 1:
            raise DataError(f"architecture candidate {tok!r}: widths must be >= 1")
        pairs.append((a, h))
    return tuple(pairs)


def encode_image(
    image: np.ndarray, options: CodecOptions | None = None, progress: Progress = no_progress
) -> EncodeResult:
    """Overfit a decoder to ``image`` (uint8 [H, W, 3]) and write its bitstream."""
    opt = options or CodecOptions()
    image = np.asarray(image)
    tries = [replace(opt, arch_candidates=())]
    tries += [replace(opt, arm_hidden=a, syn_hidden=h, arch_candidates=()) for a, h in opt.arch_candidates]
    results: list[EncodeResult] = []
    n = len(tries)
    with encoder_settings(opt.threads):
        for i, o in enumerate(tries):
            results.append(_encode_image(
                image, o, lambda f, m, i=i: progress((i + f) / n, m if n == 1 else f"candidate {i + 1}/{n}: {m}")))
    if len(results) == 1:
        return results[0]
    target = image.astype(np.float64) / 255.0

    def cost(r: EncodeResult) -> float:
        mse = float(np.mean((r.decoded.astype(np.float64) / 255.0 - target) ** 2))
        return mse + opt.lmbda * 8 * len(r.data) / (image.shape[0] * image.shape[1])

    best = min(results, key=cost)
    best.encode_seconds = sum(r.encode_seconds for r in results)
    return best


@contextlib.contextmanager
def encoder_settings(threads: int) -> Iterator[None]:
    """torch at ``threads`` CPU threads and denormal floats flushed to zero while encoding (tiny
    Laplace tail probabilities and their gradients are denormals, which the CPU handles ~100x
    slower: flushing them halved a 256x256 training step, 0.42 -> 0.24 s); restored after."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(old_threads)


def _encode_image(image: np.ndarray, opt: CodecOptions, progress: Progress) -> EncodeResult:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"the INR codec takes a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    H, W = image.shape[:2]
    if not (8 <= H <= 65535 and 8 <= W <= 65535) or H * W > bs.MAX_PIXELS:
        raise DataError(f"image size {H}x{W} is outside 8..65535 pixels per side (64 Mpx at most)")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(opt.seed)
    arch = opt.arch(H, W)
    lat = _Latents(arch)
    target = torch.from_numpy(np.array(image)).float().permute(2, 0, 1)[None] / 255.0
    n_pix = H * W
    grids = [torch.zeros(h, w, requires_grad=True) for h, w in arch.grid_sizes()]
    params = {k: v.requires_grad_(True) for k, v in init_params(arch, gen).items()}

    def loss_of(q: list[torch.Tensor]) -> torch.Tensor:
        bits = lat.rate_bits(q, params)
        return torch.mean((_image(q, params, arch) - target) ** 2) + opt.lmbda * bits / n_pix

    def hard_loss() -> tuple[float, float]:
        with torch.no_grad():
            q = [torch.round(g) for g in grids]
            bits = lat.rate_bits(q, params)
            mse = torch.mean((_image(q, params, arch).clamp(0, 1) - target) ** 2)
            return float(mse + opt.lmbda * bits / n_pix), float(bits / n_pix)

    grids_best, params_best, history = overfit(
        opt, gen, grids, params, loss_of, hard_loss, lambda f, m: progress(0.9 * f, m))
    progress(0.9, "quantising weights")
    y_int = [torch.round(g).double() for g in grids_best]
    steps, q_params = _search_steps(y_int, params_best, arch, lat, target, opt.lmbda)
    progress(0.95, "entropy coding")
    data, est = _write(y_int, q_params, steps, arch, lat)
    decoded = decode(data)
    return EncodeResult(data, decoded, est, arch, steps, time.perf_counter() - t0, history)


def encode(image: np.ndarray, options: CodecOptions | None = None,
           progress: Progress = no_progress) -> bytes:
    """``image`` uint8 [H, W, 3] -> the bitstream (see :func:`encode_image` for the details)."""
    return encode_image(image, options, progress).data


def _search_steps(
    y_int: list[torch.Tensor], params: dict[str, torch.Tensor], arch: Arch, lat: _Latents,
    target: torch.Tensor, lmbda: float,
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Greedy per-group choice of the weight step 2^-k. Returns (group -> k, name -> int array)."""
    yf = [y.float() for y in y_int]

    def evaluate(trial: dict[str, torch.Tensor]) -> tuple[float, float]:
        mse = float(torch.mean((_image(yf, trial, arch).clamp(0, 1) - target) ** 2))
        return mse, float(lat.rate_bits(yf, trial))

    return search_weight_steps(params, arch, evaluate, lmbda, arch.height * arch.width)


def search_weight_steps(
    params: dict[str, torch.Tensor], arch: Arch,
    evaluate: Callable[[dict[str, torch.Tensor]], tuple[float, float]], lmbda: float, n_pix: int,
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Cool-chic's greedy search of the weight steps, group after group: for each group the k
    (step 2^-k) minimising ``mse + lmbda * (latent bits + weight bits) / n_pix``, where
    ``evaluate(params) -> (mse, latent bits)`` scores the decoder with the trial weights.
    Returns (group -> k, name -> int array)."""
    cur = {k: v.detach().clone() for k, v in params.items()}
    steps: dict[str, int] = {}
    q_params: dict[str, np.ndarray] = {}
    groups = _group_names(arch)
    with torch.no_grad():
        for g, names in groups.items():
            best = None
            for k in K_RANGE:
                ints = {n: quantize_weights(params[n], k) for n in names}
                flat = np.concatenate([v.numpy().ravel() for v in ints.values()])
                m = int(np.abs(flat).max()) if flat.size else 0
                if m > 65535:
                    break
                trial = dict(cur)
                for n in names:
                    trial[n] = ints[n].float() * 2.0**-k
                wbits = _laplace_int_bits(flat, _scale_index(flat), m)
                mse, lbits = evaluate(trial)
                loss = mse + lmbda * (lbits + wbits) / n_pix
                if best is None or loss < best[0]:
                    best = (loss, k, ints)
            assert best is not None
            _, k, ints = best
            steps[g] = k
            for n in names:
                cur[n] = ints[n].float() * 2.0**-k
                q_params[n] = ints[n].numpy()
    return steps, q_params


def _arm_int_lists(q: dict[str, np.ndarray], arch: Arch) -> tuple[list, list]:
    n = len(arm_shapes(arch.n_ctx, arch.arm_hidden, arch.arm_layers))
    return ([q[f"arm{i}.w"].astype(np.float64) for i in range(n)],
            [q[f"arm{i}.b"].astype(np.float64) for i in range(n)])


def _write(
    y_int: list[torch.Tensor], q: dict[str, np.ndarray], steps: dict[str, int], arch: Arch,
    lat: _Latents,
) -> tuple[bytes, dict[str, float]]:
    words, gheads, r, w_bits, lat_bits = code_payload(y_int, q, steps, arch, lat)
    header = bs.Header(arch, r, gheads)
    data = bs.pack(header, words)
    hbits = 8.0 * bs.header_size(arch)
    est = {"header": hbits, "weights": w_bits, "latents": lat_bits,
           "total": hbits + w_bits + lat_bits}
    return data, est


def code_payload(
    y_int: list[torch.Tensor], q: dict[str, np.ndarray], steps: dict[str, int], arch: Arch,
    lat: _Latents,
) -> tuple[np.ndarray, dict[str, bs.GroupHeader], int, float, float]:
    """Range-code the weights (group after group) then every latent in the layout's order.
    Returns (u32 words, group headers, latent support R, estimated weight bits, latent bits)."""
    enc = constriction.stream.queue.RangeEncoder()
    groups = _group_names(arch)
    gheads: dict[str, bs.GroupHeader] = {}
    w_bits = 0.0
    for g, names in groups.items():
        flat = np.concatenate([q[n].ravel() for n in names]).astype(np.int64)
        m = int(np.abs(flat).max()) if flat.size else 0
        si = _scale_index(flat)
        gheads[g] = bs.GroupHeader(steps[g], si, m)
        if m:
            model = constriction.stream.model.QuantizedLaplace(-m, m)
            enc.encode(flat.astype(np.int32), model, np.zeros(flat.size),
                       np.full(flat.size, bs.weight_scale(si)))
            w_bits += _laplace_int_bits(flat, si, m)
    buf = lat.flat(y_int).numpy()
    vals = buf[lat.layout.pos]
    r = max(1, int(np.abs(vals).max()))
    if r > 65535:
        raise DataError(f"latent magnitude {r} exceeds the format's limit 65535")
    ws, bs_ = _arm_int_lists(q, arch)
    mu_idx, s_idx = arm_fixed(buf[lat.layout.ctx], ws, bs_, steps["arm.w"], steps["arm.b"])
    means = mu_idx.astype(np.float64) * 2.0**-MU_FRAC
    scales = SCALE_TABLE[s_idx]
    enc.encode(vals.astype(np.int32), constriction.stream.model.QuantizedLaplace(-r, r), means, scales)
    lat_bits = float(-torch.log2(laplace_bin_prob(
        torch.from_numpy(vals), torch.from_numpy(means), torch.from_numpy(scales), lo=-r, hi=r
    )).sum())
    return enc.get_compressed(), gheads, r, w_bits, lat_bits


# ----------------------------------------------------------------------------- decoder


def decode(data: bytes, name: str = "bitstream") -> np.ndarray:
    """Bitstream -> uint8 [H, W, 3]. Raises DataError (naming ``name``) on a bad file."""
    header, words = bs.unpack(bytes(data), name)
    return checked_decode(name, _decode, header, words)


def checked_decode(name: str, fn: Callable[..., np.ndarray], *args: object) -> np.ndarray:
    """``fn(*args)``, any failure but a DataError turned into a DataError naming ``name`` (e.g.
    constriction on a stream that passed the CRC but is inconsistent)."""
    try:
        return fn(*args)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{name}: the payload could not be decoded ({type(e).__name__}: {e})") from e


def _decode(header: bs.Header, words: np.ndarray) -> np.ndarray:
    arch = header.arch
    q, steps, grids = decode_payload(words, arch, header, arch.grid_sizes())
    gsteps = {"syn": (steps["syn.w"], steps["syn.b"])}
    if arch.enhance:
        gsteps["enh"] = (steps["enh.w"], steps["enh.b"])
    tparams = {n: torch.from_numpy(v.astype(np.float64)) for n, v in q.items()}
    with torch.no_grad():
        planes = upsample_all(grids, arch, fixed=True, params=tparams, ku=steps.get("ups.w", 0))
        out = synthesis(planes, tparams, arch, fixed=True, steps=gsteps)
    return _to_uint8_fixed(out)


def decode_payload(
    words: np.ndarray, arch: Arch, header: bs.Header, sizes: list[tuple[int, int]]
) -> tuple[dict[str, np.ndarray], dict[str, int], list[torch.Tensor]]:
    """Inverse of :func:`code_payload`: (integer weights, group -> k, latent grids float64 of
    ``sizes``), the ARM run in exact fixed point wavefront after wavefront."""
    dec = constriction.stream.queue.RangeDecoder(words)
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (o, n) in enumerate(arm_shapes(arch.n_ctx, arch.arm_hidden, arch.arm_layers)):
        shapes[f"arm{i}.w"], shapes[f"arm{i}.b"] = (o, n), (o,)
    for name in ups_names(arch):
        shapes[name] = (4,)
    for layer, (o, n, kk) in layer_specs(arch).items():
        shapes[layer + ".w"], shapes[layer + ".b"] = (o, n, kk, kk), (o,)
    q: dict[str, np.ndarray] = {}
    for g, names in _group_names(arch).items():
        gh = header.groups[g]
        sizes_w = [int(np.prod(shapes[n])) for n in names]
        total = sum(sizes_w)
        if gh.max_abs:
            model = constriction.stream.model.QuantizedLaplace(-gh.max_abs, gh.max_abs)
            flat = dec.decode(model, np.zeros(total), np.full(total, bs.weight_scale(gh.scale_idx)))
        else:
            flat = np.zeros(total, dtype=np.int32)
        off = 0
        for n, s in zip(names, sizes_w):
            q[n] = np.asarray(flat[off : off + s], dtype=np.int64).reshape(shapes[n])
            off += s
    steps = {g: header.groups[g].k for g in header.groups}
    layout = latent_layout(sizes, context_pattern(arch.ctx_k, arch.n_ctx), arch.ctx_k)
    ws, bs_ = _arm_int_lists(q, arch)
    buf = np.zeros(layout.buffer_size, dtype=np.float64)
    r = header.latent_max
    model = constriction.stream.model.QuantizedLaplace(-r, r)
    kw, kb = steps["arm.w"], steps["arm.b"]
    for s in range(len(layout.steps) - 1):
        a, b = layout.steps[s], layout.steps[s + 1]
        mu_idx, s_idx = arm_fixed(buf[layout.ctx[a:b]], ws, bs_, kw, kb)
        v = dec.decode(model, mu_idx.astype(np.float64) * 2.0**-MU_FRAC, SCALE_TABLE[s_idx])
        buf[layout.pos[a:b]] = v
    grids = [torch.from_numpy(buf[p].reshape(h, w)) for p, (h, w) in zip(layout.grid_pos, sizes)]
    return q, steps, grids
