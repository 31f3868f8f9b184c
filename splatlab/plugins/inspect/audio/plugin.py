"""The ``audio deepfake`` inspect plugin: score a wav with a trained countermeasure, show its
spectrogram and the Grad-CAM time curve, and the RCQ per region type for labelled files.

Input: ``splatlab plugin run "audio deepfake" clip.wav --weights detector.pt`` (``inputs.audio``)
or one ``.wav`` uploaded in the viewer panel (``inputs.uploads``). The detector is a checkpoint of
:mod:`splatlab.plugins.inspect.audio.detector` (trained on the synthetic espeak-ng / vocoder set
by ``python benchmarks/audio_deepfake.py --save detector.pt``); without one the plugin refuses to
run (never random weights).

Scoring follows the training clips: the audio (resampled to 16 kHz) is cut into windows of the
checkpoint's clip length (hop = half a window; a shorter file is tiled, as AASIST's evaluation
pads); the score is the mean window score (``logits[:, 1]``, higher = more bona fide) and the
Grad-CAM curves of overlapping windows are averaged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from ....errors import DataError, WeightsNotFoundError
from ...base import Plugin, PluginInputs, Progress, Report, check_upload, no_progress
from .detector import TRAIN_HINT, load_detector
from .gradcam import REGION_TYPES, gradcam_time, rcq, region_masks
from .synth import FRAME, FS, speech_frames

__all__ = ["AudioDeepfakeOptions", "AudioDeepfakePlugin", "decode_wav", "read_frame_labels"]

MAX_SECONDS = 120.0
MIN_SECONDS = 0.25


@dataclass
class AudioDeepfakeOptions:
    """Options of the audio deepfake inspector."""

    weights: str = ""
    """Path of a trained detector checkpoint (.pt from benchmarks/audio_deepfake.py --save)."""
    labels: str = ""
    """Optional 20 ms frame labels of the wav (text or .npy, one 0/1 per frame, 1 = spoofed) for RCQ."""
    gradcam_target: str = "spoof"
    """Which class Grad-CAM explains: spoof or bonafide."""


def decode_wav(name: str, content: bytes) -> tuple[np.ndarray, int]:
    """Uploaded wav bytes -> (float32 [T] mono, sample rate). DataError naming the file."""
    import soundfile as sf

    if not content:
        raise DataError(f"upload {name!r} is empty; upload a .wav file")
    try:
        data, sr = sf.read(io.BytesIO(content), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise DataError(f"upload {name!r} is not a readable wav file ({e})") from e
    if data.size == 0:
        raise DataError(f"upload {name!r} holds no audio samples")
    return np.ascontiguousarray(data.mean(axis=1)), int(sr)


def read_frame_labels(path: str | Path, n_frames: int) -> np.ndarray:
    """20 ms frame labels from a text file (0/1 separated by spaces / newlines) or a .npy.
    Returns int8 ``[n_frames]`` (a label list one frame short or long is cut / edge-padded)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"labels file {p} does not exist (one 0/1 per 20 ms frame)")
    try:
        lab = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as e:
        raise DataError(f"labels file {p} is not a list of 0/1 frame labels ({e})") from e
    lab = np.asarray(lab).ravel()
    if lab.size == 0 or not np.all(np.isin(lab, (0, 1))):
        raise DataError(f"labels file {p}: labels must be 0 (bona fide) or 1 (spoofed)")
    if abs(lab.size - n_frames) > 2:
        raise DataError(
            f"labels file {p} has {lab.size} frames but the wav has {n_frames} 20 ms frames"
        )
    lab = lab[:n_frames]
    if lab.size < n_frames:
        lab = np.pad(lab, (0, n_frames - lab.size), mode="edge")
    return lab.astype(np.int8)


def _windows(n: int, clip: int) -> list[int]:
    if n <= clip:
        return [0]
    hop = clip // 2
    starts = list(range(0, n - clip + 1, hop))
    if starts[-1] != n - clip:
        starts.append(n - clip)
    return starts


def _spectrogram_figure(x: np.ndarray, sr: int) -> Any:
    import plotly.graph_objects as go

    f, t, z = signal.stft(x, fs=sr, nperseg=512, noverlap=512 - 160)
    db = 20 * np.log10(np.abs(z) + 1e-6)
    fig = go.Figure(go.Heatmap(x=t, y=f, z=db, colorscale="Viridis", colorbar={"title": "dB"}))
    fig.update_layout(title="Spectrogram", xaxis_title="time (s)", yaxis_title="frequency (Hz)")
    return fig


def _cam_figure(cam: np.ndarray, labels: np.ndarray | None, target: str) -> Any:
    import plotly.graph_objects as go

    t = (np.arange(len(cam)) + 0.5) * FRAME / FS
    fig = go.Figure(go.Scatter(x=t, y=cam, mode="lines", name=f"Grad-CAM ({target})"))
    if labels is not None:
        fig.add_trace(
            go.Scatter(
                x=t,
                y=labels.astype(float),
                mode="lines",
                name="spoofed (label)",
                line={"dash": "dot"},
            )
        )
    fig.update_layout(
        title="Grad-CAM over time (20 ms frames)",
        xaxis_title="time (s)",
        yaxis_title="relevance",
        yaxis_range=[0, 1.05],
    )
    return fig


class AudioDeepfakePlugin(Plugin):
    """Countermeasure score, spectrogram, Grad-CAM over time and RCQ of a wav."""

    name = "audio deepfake"
    kind = "inspect"
    description = (
        "Score a .wav with a trained AASIST countermeasure (higher = more bona fide), show its "
        "spectrogram and Grad-CAM over time; with 20 ms labels, the Grad-CAM share per region type."
    )
    Options = AudioDeepfakeOptions
    accepts = ("audio",)
    upload_types = (".wav",)
    max_upload_bytes = 20 * 1024 * 1024

    def _audio(self, inputs: PluginInputs) -> tuple[np.ndarray, int, str]:
        if inputs.uploads:
            if len(inputs.uploads) != 1:
                raise DataError(f"upload exactly one .wav file (got {sorted(inputs.uploads)})")
            name, content = next(iter(inputs.uploads.items()))
            check_upload(name, content, self.upload_types, self.max_upload_bytes)
            x, sr = decode_wav(name, content)
            return x, sr, name
        if inputs.audio is not None:
            x, sr = inputs.audio
            return np.asarray(x, dtype=np.float32).ravel(), int(sr), str(inputs.path or "audio")
        raise DataError("no audio: pass a .wav as INPUT or upload one in the panel")

    def run(
        self,
        inputs: PluginInputs,
        options: AudioDeepfakeOptions,
        progress: Progress = no_progress,
    ) -> Report:
        if options.gradcam_target not in ("spoof", "bonafide"):
            raise DataError(
                f"gradcam_target must be 'spoof' or 'bonafide', got {options.gradcam_target!r}"
            )
        x, sr, name = self._audio(inputs)
        if x.size == 0:
            raise DataError(f"{name}: holds no audio samples")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{name}: contains NaN or infinite samples")
        dur = x.size / sr
        if dur > MAX_SECONDS:
            raise DataError(
                f"{name} is {dur:.0f} s long; the limit is {MAX_SECONDS:.0f} s (cut it)"
            )
        if dur < MIN_SECONDS:
            raise DataError(f"{name} is {dur * 1000:.0f} ms long; give at least {MIN_SECONDS} s")
        if not str(options.weights):
            raise WeightsNotFoundError(f"the audio deepfake plugin needs --weights; {TRAIN_HINT}")
        model, info = load_detector(options.weights)
        progress(0.05, "detector loaded")
        if sr != FS:
            g = np.gcd(FS, sr)
            x = signal.resample_poly(x, FS // g, sr // g).astype(np.float32)
        n_frames = max(1, x.size // FRAME)
        labels = read_frame_labels(options.labels, n_frames) if options.labels else None

        meta = info.get("meta", {})
        clip = int(meta.get("clip_samples", 2 * FS))
        target = 0 if options.gradcam_target == "spoof" else 1
        starts = _windows(x.size, clip)
        cam_sum = np.zeros(n_frames)
        cam_cnt = np.zeros(n_frames)
        scores = []
        for i, s in enumerate(starts):
            seg = x[s : s + clip]
            if seg.size < clip:
                seg = np.tile(seg, clip // seg.size + 1)[:clip]  # AASIST's evaluation padding
            cam, score = gradcam_time(model, seg, n_frames=clip // FRAME, target=target)
            scores.append(score)
            f0 = s // FRAME
            k = min(len(cam), n_frames - f0)  # a tiled short file keeps its own frames only
            cam_sum[f0 : f0 + k] += cam[:k]
            cam_cnt[f0 : f0 + k] += 1
            progress(0.1 + 0.8 * (i + 1) / len(starts), f"window {i + 1}/{len(starts)}")
        cam = cam_sum / np.maximum(cam_cnt, 1)
        if cam.max() > 0:
            cam = cam / cam.max()
        score = float(np.mean(scores))

        rep = Report(title=f"Audio deepfake: {Path(name).name}")
        rep.metrics["score"] = score
        rep.metrics["duration_s"] = float(dur)
        thr = meta.get("threshold")
        if thr is not None:
            rep.metrics["threshold"] = float(thr)
            verdict = "bona fide" if score > float(thr) else "spoof"
            rep.notes.append(
                f"score {score:.3f} vs the EER threshold {float(thr):.3f} of the detector's "
                f"test set: **{verdict}**"
            )
        rep.notes.append(
            f"detector {info['arch']} ({options.weights}); trained on "
            f"{meta.get('data', 'unknown data')}, spoof methods "
            f"{', '.join(meta.get('train_methods', [])) or '?'}; scores of other kinds of audio "
            "are not calibrated."
        )
        rep.tables["windows"] = {
            "start_s": [s / FS for s in starts],
            "score": [float(v) for v in scores],
        }
        rep.plots["spectrogram"] = _spectrogram_figure(x, FS)
        rep.plots["gradcam"] = _cam_figure(cam, labels, options.gradcam_target)
        if labels is not None:
            masks = region_masks(labels, speech_frames(x)[:n_frames])
            q = rcq([cam], [masks])
            rep.tables["rcq"] = {
                "region": list(REGION_TYPES),
                "rcq": [q[r]["rcq"] for r in REGION_TYPES],
                "gradcam_share": [q[r]["cam_share"] for r in REGION_TYPES],
                "frame_share": [q[r]["frame_share"] for r in REGION_TYPES],
            }
            for r in REGION_TYPES:
                if np.isfinite(q[r]["rcq"]):
                    rep.metrics["rcq " + r] = float(q[r]["rcq"])
        progress(1.0, "done")
        return rep
