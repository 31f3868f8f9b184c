"""The synthetic spoofing set: espeak-ng bona fide, vocoder spoofs, partial spoofs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from splatlab.errors import DataError
from splatlab.plugins.inspect.audio import synth as S

needs_espeak = pytest.mark.skipif(
    not S.have_espeak(), reason="needs espeak-ng: apt-get install -y espeak-ng"
)


def vowel(f0: float = 120.0, formants=(700.0, 1200.0), seconds: float = 1.0) -> np.ndarray:
    """A pulse train at f0 through two resonators (a synthetic /a/)."""
    n = int(seconds * S.FS)
    exc = np.zeros(n)
    exc[:: int(S.FS / f0)] = 1.0
    y = exc
    for f in formants:
        r = np.exp(-np.pi * 80 / S.FS)
        a = [1, -2 * r * np.cos(2 * np.pi * f / S.FS), r * r]
        y = signal.lfilter([1.0], a, y)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def log_spectrum(x: np.ndarray) -> np.ndarray:
    f, p = signal.welch(x, fs=S.FS, nperseg=512)
    return 10 * np.log10(p[(f > 100) & (f < 4000)] + 1e-12)


def test_lpc_vocoder_keeps_the_formants_and_pitch() -> None:
    x = vowel()
    y = S.lpc_resynth(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    f, p = signal.welch(y[1600:-1600], fs=S.FS, nperseg=1024)
    peak_low = f[np.argmax(np.where(f < 950, p, 0))]
    assert abs(peak_low - 700) < 80  # first formant kept
    # pitch: autocorrelation peak of the resynthesis at the 120 Hz period
    ac = np.correlate(y[4000:8000], y[4000:8000], "full")[3999:]
    lag = 40 + np.argmax(ac[40:300])
    assert abs(S.FS / lag - 120) < 6
    assert np.corrcoef(x, y)[0, 1] < 0.9  # a different waveform


@pytest.mark.parametrize("method", ["griffin_lim", "lpc", "world"])
def test_vocoders_resynthesize_with_the_same_envelope(method: str) -> None:
    if method == "world" and not S.have_world():
        pytest.skip("pyworld not installed: pip install pyworld")
    x = S._rms_normalize(vowel(seconds=0.8))
    y = S.resynthesize(x, method)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    assert np.corrcoef(log_spectrum(x), log_spectrum(y))[0, 1] > 0.6
    assert not np.allclose(x, y, atol=1e-3)
    with pytest.raises(DataError, match="unknown spoof method"):
        S.resynthesize(x, "hifigan")


def test_partial_spoof_labels_mark_exactly_the_spliced_frames() -> None:
    rng = np.random.default_rng(0)
    bona = vowel(seconds=2.0)
    spoof = -bona  # easy to tell apart sample by sample
    y, lab = S.make_partial_spoof(bona, spoof, rng)
    assert lab.shape == (100,) and 0 < lab.sum() < 100
    frames = y.reshape(100, S.FRAME)
    is_spoof = np.all(frames == -bona.reshape(100, S.FRAME), axis=1) & np.any(frames != 0, axis=1)
    np.testing.assert_array_equal(is_spoof, lab.astype(bool))
    n_segments = int(np.sum(np.diff(np.r_[0, lab]) == 1))
    assert 1 <= n_segments <= 2
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, lab, 0])))[::2]
    assert np.all((runs >= 15) & (runs <= 35))  # 0.3-0.7 s


def test_speech_frames_vad() -> None:
    x = np.r_[np.zeros(3200), vowel(seconds=0.5), np.zeros(3200)].astype(np.float32)
    sp = S.speech_frames(x)
    assert sp.shape == (45,)
    assert not sp[:10].any() and sp[11:34].all() and not sp[36:].any()


@needs_espeak
def test_espeak_and_a_tiny_dataset() -> None:
    x = S.espeak("seven bright stars", "en-gb+f2", pitch=60, speed=150)
    assert x.dtype == np.float32 and x.size > 0.5 * S.FS and np.abs(x).max() > 0.05
    ds = S.make_dataset(n_train=4, n_test=2, n_partial=2, seconds=1.0, heldout="lpc", seed=1)
    assert len(ds.train) == 8 and {u.method for u in ds.train} <= {"bonafide", *ds.train_methods}
    assert "lpc" not in {u.method for u in ds.train} and ds.heldout_method == "lpc"
    assert {u.method for u in ds.test_heldout} == {"bonafide", "lpc"}
    assert len(ds.test_seen) == 2 * (1 + len(ds.train_methods))
    assert all(u.audio.shape == (S.FS,) for u in ds.train + ds.test_seen + ds.partial)
    assert all(u.frame_labels.shape == (50,) and u.label == 0 for u in ds.partial)
    with pytest.raises(DataError, match="held-out method"):
        S.make_dataset(n_train=1, n_test=1, n_partial=0, heldout="nope")


def median_f0(x: np.ndarray) -> float:
    f0 = S._pitch_track(x, S.FS, S.FS // 100, int(0.04 * S.FS))
    return float(np.median(f0[f0 > 0]))


def needs(engine: str):
    return pytest.mark.skipif(
        not S.have_engine(engine), reason=f"needs the {engine} voices: {S._INSTALL[engine]}"
    )


@needs("sung")
def test_sung_clip_holds_each_word_on_its_note() -> None:
    low = S.espeak_sung(["laa"], [0], "en-us")
    high = S.espeak_sung(["laa"], [12], "en-us")
    fifth = S.espeak_sung(["laa"], [7], "en-us")
    r12, r7 = median_f0(high) / median_f0(low), median_f0(fifth) / median_f0(low)
    assert 1.6 < r12 < 2.2 and 1.25 < r7 < 1.6  # an octave, a fifth (espeak's % scale, ~+-10 %)
    f0 = S._pitch_track(low, S.FS, S.FS // 100, int(0.04 * S.FS))
    voiced = f0[f0 > 0]
    assert np.percentile(voiced, 90) / np.percentile(voiced, 10) < 1.15  # a held, flat note
    with pytest.raises(DataError, match="2 words but 1 notes"):
        S.espeak_sung(["a", "b"], [0])


@needs("flite")
@pytest.mark.parametrize("voice", ["slt", "kal16"])
def test_flite_follows_the_requested_pitch(voice: str) -> None:
    lo = S.flite("seven bright stars shine above", voice, f0_mean=95)
    hi = S.flite("seven bright stars shine above", voice, f0_mean=180)
    assert lo.dtype == np.float32 and lo.size > 1.0 * S.FS
    assert median_f0(lo) == pytest.approx(95, rel=0.15)
    assert median_f0(hi) == pytest.approx(180, rel=0.15)
    slow = S.flite("seven bright stars shine above", voice, stretch=1.5)
    assert slow.size > 1.3 * S.flite("seven bright stars shine above", voice).size


@needs("festival")
def test_festival_follows_the_requested_pitch() -> None:
    lo = S.festival("seven bright stars shine above", f0_mean=90)
    hi = S.festival("seven bright stars shine above", f0_mean=160)
    assert median_f0(hi) / median_f0(lo) > 1.4 and lo.size > 1.0 * S.FS


def test_missing_engines_name_their_install_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install -y flite"):
        S.flite("a")
    with pytest.raises(DataError, match="festvox-kallpc16k"):
        S.festival("a")
    with pytest.raises(DataError, match="apt-get install -y espeak-ng"):
        S.espeak_sung(["a"], [0])
    with pytest.raises(DataError, match="espeak-ng"):
        S.make_dataset(n_train=1, n_test=1, n_partial=0, engines=("sung",))
    monkeypatch.setattr(S, "HUMAN_DIR", tmp_path)
    with pytest.raises(DataError, match="alsa-utils"):
        S.human_recordings()
    with pytest.raises(DataError, match="unknown bona fide engine"):
        S.have_engine("piper")


@needs("flite")
@needs("festival")
@needs("human")
@needs_espeak
def test_mixed_engines_dataset_keeps_humans_out_of_training() -> None:
    ds = S.make_dataset(
        n_train=8, n_test=6, n_partial=1, seconds=1.0, heldout="griffin_lim", seed=3,
        engines=S.BONA_FIDE_ENGINES, human_test=True,
    )
    train_eng = {S.engine_of(u.voice) for u in ds.train}
    assert "human" not in train_eng and len(train_eng) >= 3
    humans = [u for u in ds.test_heldout if S.engine_of(u.voice) == "human"]
    n_h = len(S.human_recordings())
    assert n_h >= 4 and len(humans) == 2 * n_h  # each recording + its held-out resynthesis
    assert sum(u.label for u in humans) == n_h and {u.method for u in humans} == {"bonafide", "griffin_lim"}
    assert all(u.audio.shape == (S.FS,) and np.isfinite(u.audio).all() for u in ds.test_seen)
    rms = [float(np.sqrt(np.mean(u.audio**2))) for u in ds.train]
    assert np.allclose(rms, 0.05, rtol=1e-3)
    # the espeak-only default keeps bare espeak-ng voice names (its draws were checked equal to the
    # previous, espeak-only version of make_dataset when engines were added)
    ds1 = S.make_dataset(n_train=2, n_test=1, n_partial=0, seconds=1.0, seed=3)
    assert all(u.voice in S.ESPEAK_VOICES for u in ds1.train + ds1.test_seen)
