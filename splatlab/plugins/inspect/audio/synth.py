"""A spoofing data set made on this machine, labelled honestly.

What it is:

- **bona fide** = a text-to-speech engine's own output, resampled to 16 kHz, from sentences built
  from a fixed word list with random pitch and speed. The engines (``make_dataset(engines=...)``):
  ``espeak`` (espeak-ng formant synthesis, several English voices and variants; the default),
  ``sung`` (espeak-ng through SSML: one held note per word, a random melody on a pentatonic scale,
  flat intonation inside a word, slow rate; a sung-like pitch contour, not real singing),
  ``flite`` (CMU flite: the ``kal16`` diphone voice and the ``awb`` / ``rms`` / ``slt`` CLUSTERGEN
  voices, which are statistical parametric synthesis with flite's own vocoder) and ``festival``
  (Festival's ``kal_diphone``, residual-excited LPC diphones). Optionally (``human_test``) the eight
  human voice recordings that Debian's alsa-utils ships (``/usr/share/sounds/alsa``, "Front
  left" ...) are added to the *test* splits only, with their resyntheses as spoofs. Apart from
  those, this is *not* human speech: "bona fide" means "the engine's output, not passed through
  one of the spoof vocoders below";
- **spoofs** = the same utterances re-synthesised by a vocoder: ``griffin_lim`` (magnitude STFT +
  torchaudio's Griffin-Lim), ``world`` (WORLD analysis / synthesis via pyworld: DIO + StoneMask
  F0, CheapTrick envelope, D4C aperiodicity) and ``lpc`` (an order-18 LPC vocoder with a pulse /
  noise excitation from an autocorrelation pitch tracker, written here);
- **partial spoofs** = a bona fide utterance with 1-2 segments (multiples of 20 ms) replaced by
  the time-aligned resynthesis, with a label per 20 ms frame (1 = spoofed) and a speech /
  non-speech label per frame (energy VAD).

A detector trained on it learns vocoder artefacts on top of these engines; its EERs say nothing
about real deepfakes of human voices. All signals are RMS-normalised to the same level so loudness
is no cue. The engines are system packages (``apt-get install -y espeak-ng flite festival
festvox-kallpc16k alsa-utils``); pyworld is optional (the ``world`` method is skipped, and said so,
when it is missing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg, signal

from ....errors import DataError

__all__ = [
    "FS",
    "FRAME",
    "ESPEAK_VOICES",
    "SPOOF_METHODS",
    "BONA_FIDE_ENGINES",
    "FLITE_VOICES",
    "HUMAN_DIR",
    "have_espeak",
    "have_engine",
    "have_world",
    "espeak",
    "espeak_sung",
    "flite",
    "festival",
    "human_recordings",
    "griffin_lim",
    "world_resynth",
    "lpc_resynth",
    "resynthesize",
    "speech_frames",
    "make_partial_spoof",
    "Utterance",
    "SynthSet",
    "engine_of",
    "make_dataset",
]

FS = 16000
FRAME = 320  # 20 ms label frames
ESPEAK_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-us+f3",
    "en-gb+f2",
    "en-us+m3",
    "en-gb-x-gbcwmd+f4",
)
_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars shine above quiet "
    "rivers and old bridges near green hills where children sing songs about summer rain "
    "gentle winds carry paper boats past golden fields of wheat under silver clouds tonight"
).split()


FLITE_VOICES = ("kal16", "awb", "rms", "slt")
"""flite's 16 kHz voices (its 8 kHz ``kal`` and the time-only ``awb_time`` are left out)."""
BONA_FIDE_ENGINES = ("espeak", "sung", "flite", "festival")
HUMAN_DIR = Path("/usr/share/sounds/alsa")
"""alsa-utils' speaker-test recordings: a human voice saying "Front left", "Rear center", ..."""
_PENTATONIC = (0, 2, 4, 7, 9, 12)  # semitones above the tonic
_INSTALL = {
    "espeak": "apt-get install -y espeak-ng",
    "sung": "apt-get install -y espeak-ng",
    "flite": "apt-get install -y flite",
    "festival": "apt-get install -y festival festvox-kallpc16k",
    "human": "apt-get install -y alsa-utils",
}


def have_espeak() -> bool:
    """Whether the ``espeak-ng`` program is installed."""
    return shutil.which("espeak-ng") is not None


def have_engine(engine: str) -> bool:
    """Whether bona fide engine ``engine`` (one of :data:`BONA_FIDE_ENGINES` or ``"human"``) can run
    here."""
    if engine in ("espeak", "sung"):
        return have_espeak()
    if engine == "flite":
        return shutil.which("flite") is not None
    if engine == "festival":
        return (
            shutil.which("text2wave") is not None
            and Path("/usr/share/festival/voices/english/kal_diphone").is_dir()
        )
    if engine == "human":
        return bool(_human_files())
    raise DataError(f"unknown bona fide engine {engine!r}; choose from {BONA_FIDE_ENGINES}")


def _load_pyworld() -> Any | None:
    """pyworld's compiled module, or None. pyworld 0.3.5's ``__init__`` imports
    ``pkg_resources`` (gone from setuptools >= 81) only to read its version, so when that import
    fails the compiled extension is loaded directly from the installed package folder."""
    try:
        import pyworld

        return pyworld
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            return None
    spec = importlib.util.find_spec("pyworld")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    for f in folder.iterdir():
        if f.name.startswith("pyworld.") and f.suffix in (".so", ".pyd"):
            s = importlib.util.spec_from_file_location("pyworld.pyworld", f)
            if s is None or s.loader is None:
                return None
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)
            return mod
    return None


_PYWORLD: Any = None


def have_world() -> bool:
    """Whether pyworld (the WORLD vocoder) can be used."""
    global _PYWORLD
    if _PYWORLD is None:
        _PYWORLD = _load_pyworld() or False
    return bool(_PYWORLD)


def _rms_normalize(x: np.ndarray, rms: float = 0.05) -> np.ndarray:
    r = float(np.sqrt(np.mean(x**2)))
    if r < 1e-8:
        return x.astype(np.float32)
    y = x * (rms / r)
    peak = np.abs(y).max()
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


def _read_16k(path: str | Path) -> np.ndarray:
    """A wav file as mono float32 at :data:`FS`."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float64")
    if x.ndim > 1:
        x = x.mean(axis=1)
    g = np.gcd(FS, sr)
    return signal.resample_poly(x, FS // g, sr // g).astype(np.float32)


def _tts(engine: str, cmd: Sequence[str], what: str, stdin: str | None = None) -> np.ndarray:
    """Run a TTS command line with ``{out}`` standing for the wav it writes; its audio at 16 kHz.

    Raises:
        DataError: the program is missing (with its install line) or failed.
    """
    if not have_engine(engine):
        raise DataError(f"the {engine!r} voices need {cmd[0]}; install it with `{_INSTALL[engine]}`")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "a.wav")
        r = subprocess.run(
            [c.replace("{out}", out) for c in cmd],
            input=None if stdin is None else stdin.encode(),
            capture_output=True,
            timeout=60,
        )
        if r.returncode != 0 or not os.path.exists(out):
            raise DataError(f"{cmd[0]} failed for {what}: {r.stderr.decode()[:200]}")
        return _read_16k(out)


def espeak(text: str, voice: str = "en-us", pitch: int = 50, speed: int = 160) -> np.ndarray:
    """espeak-ng speech for ``text`` at 16 kHz, float32 ``[T]``.

    Raises:
        DataError: espeak-ng is not installed (``apt-get install -y espeak-ng``) or failed.
    """
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", "{out}", text]
    return _tts("espeak", cmd, f"voice {voice!r}")


def espeak_sung(
    words: Sequence[str], notes: Sequence[int], voice: str = "en-us", rate: int = 55
) -> np.ndarray:
    """A sung-like espeak-ng clip: word ``i`` held on ``notes[i]`` semitones above the voice's
    base pitch (SSML ``prosody pitch="+p%"`` with ``range="x-low"``, which flattens the
    intonation inside the word), at ``rate`` % of the normal speed. float32 ``[T]`` at 16 kHz.

    Raises:
        DataError: espeak-ng missing or failed, or ``len(words) != len(notes)``.
    """
    if len(words) != len(notes):
        raise DataError(f"{len(words)} words but {len(notes)} notes")
    parts = [
        f'<prosody pitch="+{100 * (2 ** (n / 12) - 1):.0f}%" range="x-low" rate="{rate}%">{w}'
        "</prosody>"
        for w, n in zip(words, notes, strict=True)
    ]
    cmd = ["espeak-ng", "-m", "-v", voice, "-w", "{out}", "<speak>" + " ".join(parts) + "</speak>"]
    return _tts("sung", cmd, f"sung voice {voice!r}")


def flite(text: str, voice: str = "slt", f0_mean: float = 110.0, stretch: float = 1.0) -> np.ndarray:
    """CMU flite speech (voice one of :data:`FLITE_VOICES`) with mean F0 ``f0_mean`` Hz (the
    ``rms`` voice ignores it) and durations scaled by ``stretch``. float32 ``[T]`` at 16 kHz.

    Raises:
        DataError: flite missing (``apt-get install -y flite``) or failed.
    """
    cmd = ["flite", "-voice", voice, "-t", text, "-o", "{out}",
           "--setf", f"int_f0_target_mean={f0_mean:.0f}", "--setf", f"duration_stretch={stretch:.2f}"]
    return _tts("flite", cmd, f"voice {voice!r}")


def festival(text: str, f0_mean: float = 105.0, stretch: float = 1.0) -> np.ndarray:
    """Festival's ``kal_diphone`` voice (``text2wave``) with target mean F0 ``f0_mean`` Hz and
    durations scaled by ``stretch``. float32 ``[T]`` at 16 kHz.

    Raises:
        DataError: Festival or the voice missing (``apt-get install -y festival
            festvox-kallpc16k``) or failed.
    """
    cmd = [
        "text2wave", "-o", "{out}", "-eval", "(voice_kal_diphone)",
        "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.2f})",
        "-eval", f"(set! int_lr_params '((target_f0_mean {f0_mean:.0f}) (target_f0_std 15) "
        "(model_f0_mean 170) (model_f0_std 34)))",
    ]
    return _tts("festival", cmd, "voice kal_diphone", stdin=text)


def _human_files() -> list[Path]:
    if not HUMAN_DIR.is_dir():
        return []
    return sorted(f for f in HUMAN_DIR.glob("*.wav") if f.stem != "Noise")


def human_recordings() -> list[tuple[str, np.ndarray]]:
    """The human voice recordings alsa-utils ships (``/usr/share/sounds/alsa/*.wav`` except
    ``Noise.wav``): ``[(name, float32 [T] at 16 kHz)]``.

    Raises:
        DataError: none found (``apt-get install -y alsa-utils``).
    """
    files = _human_files()
    if not files:
        raise DataError(
            f"no human recordings in {HUMAN_DIR}; install them with `{_INSTALL['human']}`"
        )
    return [(f.stem, _read_16k(f)) for f in files]


# ----------------------------------------------------------------------------- vocoders


def griffin_lim(x: np.ndarray, n_iter: int = 32, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Magnitude STFT -> torchaudio Griffin-Lim (random initial phase, seeded). ``[T] -> [T]``."""
    import torch
    import torchaudio

    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    win = torch.hann_window(n_fft)
    mag = torch.stft(xt, n_fft, hop, window=win, return_complex=True).abs()
    gl = torchaudio.transforms.GriffinLim(
        n_fft=n_fft, hop_length=hop, n_iter=n_iter, power=1.0, length=xt.shape[0]
    )
    with torch.random.fork_rng(devices=[]):  # seeded random initial phase, global RNG untouched
        torch.manual_seed(0)
        y = gl(mag)
    return y.numpy().astype(np.float32)


def world_resynth(x: np.ndarray, fs: int = FS) -> np.ndarray:
    """WORLD analysis / synthesis (DIO + StoneMask F0, CheapTrick, D4C). ``[T] -> [T]``."""
    if not have_world():
        raise DataError("the WORLD vocoder needs pyworld: `pip install pyworld`")
    pw = _PYWORLD
    xd = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(xd, fs, frame_period=5.0)
    f0 = pw.stonemask(xd, f0, t, fs)
    sp = pw.cheaptrick(xd, f0, t, fs)
    ap = pw.d4c(xd, f0, t, fs)
    y = pw.synthesize(f0, sp, ap, fs, frame_period=5.0)
    y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
    return y.astype(np.float32)


def _pitch_track(x: np.ndarray, fs: int, hop: int, win: int) -> np.ndarray:
    """Autocorrelation F0 per hop (0 = unvoiced), 60-400 Hz."""
    n = 1 + max(0, (len(x) - win) // hop)
    lo, hi = fs // 400, fs // 60
    f0 = np.zeros(n)
    for i in range(n):
        fr = x[i * hop : i * hop + win] * np.hanning(win)
        if np.sqrt(np.mean(fr**2)) < 1e-3:
            continue
        ac = np.correlate(fr, fr, "full")[win - 1 :]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.45:
            f0[i] = fs / lag
    return f0


def lpc_resynth(x: np.ndarray, fs: int = FS, order: int = 18) -> np.ndarray:
    """An LPC vocoder: per 10 ms hop, order-``order`` LPC (autocorrelation method, 25 ms Hann
    window) of the signal, excitation = a pulse train at the tracked F0 (voiced) or white noise
    (unvoiced), scaled to the prediction-error power, through the all-pole filter (state carried
    across hops). ``[T] -> [T]``."""
    x = np.asarray(x, dtype=np.float64)
    hop, win = fs // 100, int(0.025 * fs)
    xp = np.pad(x, (win // 2, win))
    f0 = _pitch_track(xp, fs, hop, win)
    rng = np.random.default_rng(0)
    y = np.zeros(len(x) + hop)
    zi = np.zeros(order)
    phase = 0.0
    w = np.hanning(win)
    for i in range(len(f0)):
        s = i * hop
        if s >= len(x):
            break
        fr = xp[s : s + win] * w
        r = np.correlate(fr, fr, "full")[win - 1 : win + order]
        if r[0] < 1e-10:
            a, err = np.zeros(order), 0.0
        else:
            r[0] *= 1 + 1e-6
            a = linalg.solve_toeplitz(r[:order], -r[1 : order + 1])
            err = max(float(r[0] + np.dot(a, r[1 : order + 1])), 0.0) / np.sum(w**2)
        if f0[i] > 0:
            exc = np.zeros(hop)
            period = fs / f0[i]
            for k in range(hop):
                phase += 1.0
                if phase >= period:
                    phase -= period
                    exc[k] = np.sqrt(period)
        else:
            exc = rng.standard_normal(hop)
        exc *= np.sqrt(err)
        seg, zi = signal.lfilter([1.0], np.r_[1.0, a], exc, zi=zi)
        y[s : s + hop] = seg
    return y[: len(x)].astype(np.float32)


SPOOF_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "griffin_lim": griffin_lim,
    "world": world_resynth,
    "lpc": lpc_resynth,
}


def resynthesize(x: np.ndarray, method: str) -> np.ndarray:
    """``x`` through vocoder ``method`` (a key of :data:`SPOOF_METHODS`), RMS-normalised."""
    if method not in SPOOF_METHODS:
        raise DataError(f"unknown spoof method {method!r}; choose one of {sorted(SPOOF_METHODS)}")
    return _rms_normalize(SPOOF_METHODS[method](x))


# ----------------------------------------------------------------------------- partial spoofs


def speech_frames(x: np.ndarray, frame: int = FRAME, floor_db: float = -35.0) -> np.ndarray:
    """Energy VAD: bool ``[ceil(T / frame)]``, True where the 20 ms frame's energy is within
    ``floor_db`` of the loudest frame."""
    n = int(np.ceil(len(x) / frame))
    xp = np.pad(x, (0, n * frame - len(x))).reshape(n, frame)
    e = 10 * np.log10(np.mean(xp.astype(np.float64) ** 2, axis=1) + 1e-12)
    return e > e.max() + floor_db


def make_partial_spoof(
    bona: np.ndarray,
    spoof: np.ndarray,
    rng: np.random.Generator,
    n_segments: int = 2,
    seg_range: tuple[float, float] = (0.3, 0.7),
) -> tuple[np.ndarray, np.ndarray]:
    """Splice segments of the time-aligned ``spoof`` into ``bona`` (both ``[T]``). Segment edges
    fall on 20 ms frame boundaries, segments do not touch. Returns ``(audio [T], labels
    [T // 320] int8, 1 = spoofed frame)``."""
    if bona.shape != spoof.shape:
        raise DataError(f"bona fide {bona.shape} and spoof {spoof.shape} must be aligned")
    n = len(bona) // FRAME
    labels = np.zeros(n, np.int8)
    out = bona[: n * FRAME].copy()
    for _ in range(n_segments):
        for _try in range(20):
            length = int(rng.uniform(*seg_range) * FS / FRAME)
            if length >= n - 4:
                break
            start = int(rng.integers(2, n - length - 2))
            if labels[max(0, start - 2) : start + length + 2].any():
                continue
            labels[start : start + length] = 1
            out[start * FRAME : (start + length) * FRAME] = spoof[
                start * FRAME : (start + length) * FRAME
            ]
            break
    return out, labels


# ----------------------------------------------------------------------------- data set


@dataclass
class Utterance:
    """One clip of the data set."""

    audio: np.ndarray
    """float32 [T] at 16 kHz."""
    label: int
    """1 = bona fide, 0 = spoof (fully or partially)."""
    method: str
    """'bonafide', a spoof method, or 'partial:<method>'."""
    voice: str
    """The voice: an espeak-ng voice name (engine ``espeak``), else ``"<engine>:<voice>"``
    (``sung:en-us``, ``flite:slt``, ``festival:kal_diphone``, ``human:Front_Left``)."""
    frame_labels: np.ndarray | None = None
    """Partial spoofs: int8 [T // 320], 1 = spoofed 20 ms frame."""


@dataclass
class SynthSet:
    """Train / test splits of the synthetic set."""

    train: list[Utterance] = field(default_factory=list)
    """Bona fide + the training spoof methods."""
    test_seen: list[Utterance] = field(default_factory=list)
    """Held-out utterances: bona fide + the training spoof methods."""
    test_heldout: list[Utterance] = field(default_factory=list)
    """Held-out utterances: bona fide + the held-out spoof method only."""
    partial: list[Utterance] = field(default_factory=list)
    """Partial spoofs (training methods spliced into held-out bona fide utterances)."""
    train_methods: tuple[str, ...] = ()
    """Spoof methods in the training split."""
    heldout_method: str = ""
    """The spoof method never seen in training."""


def _sentence(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(_WORDS, size=int(rng.integers(6, 10))))


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def engine_of(voice: str) -> str:
    """The bona fide engine of an :attr:`Utterance.voice` (``"espeak"`` for a bare espeak-ng voice
    name)."""
    return voice.split(":", 1)[0] if ":" in voice else "espeak"


def make_dataset(
    n_train: int = 96,
    n_test: int = 48,
    n_partial: int = 24,
    seconds: float = 2.0,
    heldout: str = "lpc",
    seed: int = 0,
    voices: Sequence[str] = ESPEAK_VOICES,
    progress: Callable[[float, str], None] | None = None,
    engines: Sequence[str] = ("espeak",),
    human_test: bool = False,
) -> SynthSet:
    """Build the splits. Each utterance is a fresh sentence from a random engine of ``engines``
    (:data:`BONA_FIDE_ENGINES`; espeak-ng / sung: a random voice of ``voices``, pitch 25-75, speed
    130-185 wpm; flite: a random voice of :data:`FLITE_VOICES`, mean F0 85-200 Hz, durations x
    0.85-1.2; festival: mean F0 85-160 Hz, same durations), cut / zero-padded to ``seconds``.
    Train: ``n_train`` bona fide + as many spoofs, split evenly over the training methods (each
    spoof from its own utterance). Test: ``n_test`` other bona fide utterances, each also
    re-synthesised by every method (seen: training methods; held-out: ``heldout``), and
    ``n_partial`` partial spoofs. ``human_test`` adds the alsa-utils human recordings
    (:func:`human_recordings`) and their resyntheses to both test splits, never to training.
    With the default ``engines=("espeak",)`` the draws are those of the espeak-only set of earlier
    versions, so its figures repeat.

    Raises:
        DataError: an engine unknown or not installed (with its install line), or ``heldout``
            unknown.
    """
    methods = [m for m in SPOOF_METHODS if m != "world" or have_world()]
    if heldout not in methods:
        raise DataError(f"held-out method {heldout!r} not available; choose one of {methods}")
    engines = tuple(engines)
    if not engines:
        raise DataError(f"no bona fide engine given; choose from {BONA_FIDE_ENGINES}")
    for e in (*engines, *(("human",) if human_test else ())):
        if not have_engine(e):
            raise DataError(f"bona fide engine {e!r} is not installed: `{_INSTALL[e]}`")
    humans = human_recordings() if human_test else []
    train_methods = tuple(m for m in methods if m != heldout)
    rng = np.random.default_rng(seed)
    n_samples = int(seconds * FS)
    total = 2 * n_train + (n_test + len(humans)) * (1 + len(methods)) + n_partial
    done = 0

    def tick(msg: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / total, msg)

    def bona() -> tuple[np.ndarray, str]:
        engine = engines[0] if len(engines) == 1 else str(rng.choice(list(engines)))
        if engine == "espeak":
            name = str(rng.choice(list(voices)))
            x = espeak(_sentence(rng), name, int(rng.integers(25, 76)), int(rng.integers(130, 186)))
        elif engine == "sung":
            voice = str(rng.choice(list(voices)))
            n = int(rng.integers(4, 8))
            tonic = int(rng.integers(-4, 5))
            notes = [tonic + int(k) for k in rng.choice(_PENTATONIC, size=n)]
            words = [str(w) for w in rng.choice(_WORDS, size=n)]
            x = espeak_sung(words, notes, voice, rate=int(rng.integers(45, 71)))
            name = f"sung:{voice}"
        elif engine == "flite":
            voice = str(rng.choice(FLITE_VOICES))
            x = flite(_sentence(rng), voice, float(rng.uniform(85, 200)), float(rng.uniform(0.85, 1.2)))
            name = f"flite:{voice}"
        else:
            x = festival(_sentence(rng), float(rng.uniform(85, 160)), float(rng.uniform(0.85, 1.2)))
            name = "festival:kal_diphone"
        return _rms_normalize(_fit(x, n_samples)), name

    ds = SynthSet(train_methods=train_methods, heldout_method=heldout)
    for _ in range(n_train):
        x, v = bona()
        ds.train.append(Utterance(x, 1, "bonafide", v))
        tick("bona fide")
    for i in range(n_train):
        m = train_methods[i % len(train_methods)]
        x, v = bona()
        ds.train.append(Utterance(resynthesize(x, m), 0, m, v))
        tick(m)

    def add_test(x: np.ndarray, v: str) -> None:
        ds.test_seen.append(Utterance(x, 1, "bonafide", v))
        ds.test_heldout.append(Utterance(x, 1, "bonafide", v))
        tick("bona fide")
        for m in methods:
            u = Utterance(resynthesize(x, m), 0, m, v)
            (ds.test_heldout if m == heldout else ds.test_seen).append(u)
            tick(m)

    for _ in range(n_test):
        add_test(*bona())
    for i in range(n_partial):
        m = train_methods[i % len(train_methods)]
        x, v = bona()
        y, lab = make_partial_spoof(x, resynthesize(x, m), rng)
        ds.partial.append(Utterance(_fit(y, n_samples), 0, f"partial:{m}", v, lab))
        tick("partial " + m)
    for name, x in humans:
        add_test(_rms_normalize(_fit(x, n_samples)), f"human:{name}")
    return ds
