"""RawBoost data augmentation (Tak et al., ICASSP 2022), algorithms 1-8.

Written from the reference implementation's definitions (``RawBoost.py`` and
``data_utils_SSL.process_Rawboost_feature`` of github.com/TakHemlata/SSL_Anti-spoofing, the same
code as github.com/TakHemlata/RawBoost-antispoofing), with the default parameters of its
``main_SSL_LA.py`` argument parser (:class:`RawBoostConfig`). Randomness comes from an explicit
``numpy.random.Generator`` (or legacy ``RandomState``) instead of numpy's global state, so
augmentation is reproducible; the draws are made in the reference's order, so with
``np.random.RandomState(s)`` the outputs equal the reference's after ``np.random.seed(s)`` bit for
bit (checked in the tests against values computed with the reference code).

1. linear and non-linear convolutive noise (``LnL_convolutive_noise``): the signal's powers
   ``x, x^2, ..., x^N_f`` through random multi-band FIR filters (notch bands, gain in dB);
2. impulsive signal-dependent additive noise (``ISD_additive_noise``): up to ``P`` % of the
   samples (uniform fraction in [0, P]) get ``x += g_sd * x * u1 * u2``, ``u1, u2 ~ U(-1, 1)``;
3. stationary signal-independent additive coloured noise (``SSI_additive_noise``): white noise
   through a random FIR filter, added at an SNR drawn uniformly in [SNRmin, SNRmax] dB;
4. 1 + 2 + 3 in series; 5. 1 + 2; 6. 1 + 3; 7. 2 + 3; 8. 1 and 2 in parallel (sum, normalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

__all__ = [
    "RawBoostConfig",
    "ALGORITHMS",
    "notch_coeffs",
    "filter_fir",
    "lnl_convolutive_noise",
    "isd_additive_noise",
    "ssi_additive_noise",
    "rawboost",
]

Rng = np.random.Generator | np.random.RandomState

ALGORITHMS = {
    0: "none",
    1: "LnL convolutive noise",
    2: "ISD impulsive noise",
    3: "SSI coloured additive noise",
    4: "series 1+2+3",
    5: "series 1+2",
    6: "series 1+3",
    7: "series 2+3",
    8: "parallel 1||2",
}


@dataclass
class RawBoostConfig:
    """RawBoost parameters (defaults: SSL_Anti-spoofing main_SSL_LA.py)."""

    n_bands: int = 5
    """Number of notch filters (nBands); more bands = more aggressive distortion."""
    min_f: float = 20.0
    """Minimum centre frequency of a notch filter in Hz (minF)."""
    max_f: float = 8000.0
    """Maximum centre frequency in Hz (maxF; band edges are clipped below fs/2)."""
    min_bw: float = 100.0
    """Minimum filter width in Hz (minBW)."""
    max_bw: float = 1000.0
    """Maximum filter width in Hz (maxBW)."""
    min_coeff: int = 10
    """Minimum number of FIR coefficients (minCoeff; made odd)."""
    max_coeff: int = 100
    """Maximum number of FIR coefficients (maxCoeff)."""
    min_g: float = 0.0
    """Minimum gain of the linear component in dB (minG)."""
    max_g: float = 0.0
    """Maximum gain of the linear component in dB (maxG)."""
    min_bias_lin_nonlin: float = 5.0
    """Minimum gain difference between linear and non-linear components in dB."""
    max_bias_lin_nonlin: float = 20.0
    """Maximum gain difference between linear and non-linear components in dB."""
    n_f: int = 5
    """Order of the (non-)linearity (N_f); 1 = linear only."""
    p: float = 10.0
    """Maximum percentage of samples hit by impulsive noise (P)."""
    g_sd: float = 2.0
    """Gain of the impulsive noise (g_sd > 0)."""
    snr_min: float = 10.0
    """Minimum SNR of the coloured additive noise in dB."""
    snr_max: float = 40.0
    """Maximum SNR of the coloured additive noise in dB."""


def _uniform(rng: Rng, low: float, high: float) -> float:
    """``low + (high - low) * U[0, 1)`` like the reference's ``np.random.uniform``, which also
    accepts ``low > high`` (the non-linear gains: U(minG - 5, maxG - 20) = U(-5, -20) dB)."""
    return float(low + (high - low) * rng.random())


def _norm_wav(x: np.ndarray, always: bool) -> np.ndarray:
    peak = np.amax(np.abs(x))
    if peak == 0:
        return x
    if always or peak > 1:
        return x / peak
    return x


def notch_coeffs(cfg: RawBoostConfig, fs: int, rng: Rng, min_g: float, max_g: float) -> np.ndarray:
    """A random multi-band FIR filter (``genNotchCoeffs``): the convolution of ``n_bands``
    Hamming-window band-pass filters, scaled so that its peak gain is ``G`` dB, ``G ~ U(min_g,
    max_g)``. Returns the coefficients ``[L]``."""
    b = np.ones(1)
    for _ in range(cfg.n_bands):
        fc = _uniform(rng, cfg.min_f, cfg.max_f)
        bw = _uniform(rng, cfg.min_bw, cfg.max_bw)
        c = int(_uniform(rng, cfg.min_coeff, cfg.max_coeff))
        if c % 2 == 0:
            c += 1
        f1, f2 = fc - bw / 2, fc + bw / 2
        if f1 <= 0:
            f1 = 1 / 1000
        if f2 >= fs / 2:
            f2 = fs / 2 - 1 / 1000
        b = np.convolve(signal.firwin(c, [float(f1), float(f2)], window="hamming", fs=fs), b)
    g = _uniform(rng, min_g, max_g)
    _, h = signal.freqz(b, 1, fs=fs)
    return 10 ** (g / 20) * b / np.amax(np.abs(h))


def filter_fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``filterFIR``: zero-pad, filter, and cut half the filter length at both ends so the
    output is aligned with and as long as ``x: [T]``."""
    n = b.shape[0] + 1
    y = signal.lfilter(b, 1, np.pad(x, (0, n), "constant"))
    return y[int(n / 2) : int(y.shape[0] - n / 2)]


def lnl_convolutive_noise(x: np.ndarray, cfg: RawBoostConfig, fs: int, rng: Rng) -> np.ndarray:
    """Algorithm 1. ``x: [T]`` -> ``[T]`` (zero mean, peak <= 1)."""
    y = np.zeros(x.shape[0])
    min_g, max_g = cfg.min_g, cfg.max_g
    for i in range(cfg.n_f):
        if i == 1:  # the non-linear components are attenuated relative to the linear one
            min_g -= cfg.min_bias_lin_nonlin
            max_g -= cfg.max_bias_lin_nonlin
        b = notch_coeffs(cfg, fs, rng, min_g, max_g)
        y = y + filter_fir(np.power(x, i + 1), b)
    y = y - np.mean(y)
    return _norm_wav(y, False)


def isd_additive_noise(x: np.ndarray, cfg: RawBoostConfig, rng: Rng) -> np.ndarray:
    """Algorithm 2. ``x: [T]`` -> ``[T]``: ``int(T * beta / 100)`` random samples,
    ``beta ~ U(0, P)``, become ``x + g_sd * x * u1 * u2``."""
    beta = _uniform(rng, 0, cfg.p)
    y = np.array(x, dtype=np.float64, copy=True)
    n = int(x.shape[0] * (beta / 100))
    idx = rng.permutation(x.shape[0])[:n]
    f_r = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
    y[idx] = x[idx] + cfg.g_sd * x[idx] * f_r
    return _norm_wav(y, False)


def ssi_additive_noise(x: np.ndarray, cfg: RawBoostConfig, fs: int, rng: Rng) -> np.ndarray:
    """Algorithm 3. ``x: [T]`` -> ``[T]``: coloured noise added at ``SNR ~ U(snr_min, snr_max)``
    dB (SNR = 20 log10(||x|| / ||noise||))."""
    noise = rng.normal(0, 1, x.shape[0])
    b = notch_coeffs(cfg, fs, rng, cfg.min_g, cfg.max_g)
    noise = _norm_wav(filter_fir(noise, b), True)
    snr = _uniform(rng, cfg.snr_min, cfg.snr_max)
    noise = noise / np.linalg.norm(noise, 2) * np.linalg.norm(x, 2) / 10.0 ** (0.05 * snr)
    return x + noise


def rawboost(
    x: np.ndarray,
    algo: int,
    fs: int = 16000,
    cfg: RawBoostConfig | None = None,
    rng: Rng | None = None,
) -> np.ndarray:
    """Apply RawBoost algorithm ``algo`` (0 = none, 1-8 see :data:`ALGORITHMS`) to ``x: [T]``.
    Returns float64 ``[T]``."""
    if algo not in ALGORITHMS:
        raise ValueError(f"RawBoost algorithm must be one of {sorted(ALGORITHMS)}, got {algo}")
    cfg = cfg or RawBoostConfig()
    rng = rng if rng is not None else np.random.default_rng()
    x = np.asarray(x, dtype=np.float64)
    if algo == 1:
        return lnl_convolutive_noise(x, cfg, fs, rng)
    if algo == 2:
        return isd_additive_noise(x, cfg, rng)
    if algo == 3:
        return ssi_additive_noise(x, cfg, fs, rng)
    if algo == 4:
        x = lnl_convolutive_noise(x, cfg, fs, rng)
        x = isd_additive_noise(x, cfg, rng)
        return ssi_additive_noise(x, cfg, fs, rng)
    if algo == 5:
        return isd_additive_noise(lnl_convolutive_noise(x, cfg, fs, rng), cfg, rng)
    if algo == 6:
        return ssi_additive_noise(lnl_convolutive_noise(x, cfg, fs, rng), cfg, fs, rng)
    if algo == 7:
        return ssi_additive_noise(isd_additive_noise(x, cfg, rng), cfg, fs, rng)
    if algo == 8:
        y1 = lnl_convolutive_noise(x, cfg, fs, rng)
        y2 = isd_additive_noise(x, cfg, rng)
        return _norm_wav(y1 + y2, False)
    return x.copy()
