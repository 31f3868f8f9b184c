"""The live training viewer: ``attach_training_viewer(trainer, host, port)``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...scene.checkpoint import StoredCameras
from .server import Viewer, ViewerConfig
from .source import SceneSource

__all__ = ["TrainingViewer", "attach_training_viewer"]


class TrainerSource(SceneSource):
    """A :class:`SceneSource` reading ``trainer.params`` (which densification and resume may
    replace) under ``trainer.control.lock``."""

    trainer: Any = None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.params = self.trainer.params
            return {k: v.detach().clone() for k, v in self.trainer.params.items()}

    @property
    def n_gaussians(self) -> int:
        return int(self.trainer.params["means"].shape[0])


def _trainer_source(trainer: Any) -> TrainerSource:
    frames = trainer.dataset.frames
    cams = (
        StoredCameras(
            viewmats=np.stack([f.viewmat for f in frames]),
            Ks=np.stack([f.K for f in frames]),
            widths=np.array([f.width for f in frames]),
            heights=np.array([f.height for f in frames]),
            names=[f.name for f in frames],
        )
        if frames
        else None
    )
    parts = [ext.viewer_parts(trainer) for ext in trainer.extensions]
    shading = next((p for p in parts if p.render_fn is not None), None)  # an appearance's own modes
    src = TrainerSource(
        params=trainer.params,
        name=str(trainer.run_dir),
        lock=trainer.control.lock,
        static=False,
        cameras=cams,
        transform=np.asarray(trainer.dataset.transform, dtype=np.float64),
        points=None
        if trainer.dataset.points is None
        else np.asarray(trainer.dataset.points, np.float32),
        points_rgb=None
        if trainer.dataset.points_rgb is None
        else np.asarray(trainer.dataset.points_rgb, np.float32),
        out_dir=Path(trainer.run_dir) / "viewer",
        render_fn=None if shading is None else shading.render_fn,
        render_fn_modes=("RGB",) if shading is None else tuple(shading.render_modes),
    )
    if src.points_rgb is not None and src.points_rgb.max() > 1.0:
        src.points_rgb = src.points_rgb / 255.0
    src.trainer = trainer
    src.feature_field = next((p.feature_field for p in parts if p.feature_field is not None), None)
    return src


class TrainingViewer:
    """A viewer following a :class:`splatlab.training.trainer.Trainer`: splats and server renders
    refreshed on a throttle, a loss plot, pause/resume. ``stop()`` ends it."""

    def __init__(self, trainer: Any, cfg: ViewerConfig) -> None:
        self.trainer = trainer
        self.history: list[tuple[int, float, float]] = []  # (step, loss, psnr)
        self.refreshes = 0
        self._last_refresh = time.monotonic()
        self._last_plot = 0.0
        self._dirty = threading.Event()
        self._stop = False
        self.source = _trainer_source(trainer)
        self.viewer = Viewer(cfg, source=self.source, training=self)
        self._previous = trainer.on_step
        trainer.on_step = self._on_step
        self._thread = threading.Thread(
            target=self._refresher, name="viewer-train-refresh", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self.viewer.port

    @property
    def gui(self) -> dict[str, Any]:
        """The Train tab's handles ("stats", "pause", "plot", "refresh_s")."""
        viewer = getattr(self, "viewer", None)
        panel = None if viewer is None else viewer.panels.get("Train")
        return {} if panel is None else panel.handles

    def _on_step(self, stats: Any) -> None:
        self._previous(stats)
        self.history.append((int(stats.step), float(stats.loss), float(stats.psnr)))
        self._last_stats = stats
        self._dirty.set()

    def _refresher(self) -> None:
        """Runs beside training: updates the plot (<= 1 Hz) and the scene (every refresh_s)."""
        while not self._stop:
            self._dirty.wait(timeout=0.5)
            if self._stop:
                break
            now = time.monotonic()
            try:
                if self.history and now - self._last_plot >= 1.0:
                    self._update_plot()
                    self._last_plot = now
                period = float(self.gui["refresh_s"].value) if "refresh_s" in self.gui else 2.0
                if self._dirty.is_set() and now - self._last_refresh >= period:
                    self._dirty.clear()
                    self.viewer.refresh_splats()
                    self.source.bump()
                    self.viewer.changed()
                    self.refreshes += 1
                    self._last_refresh = time.monotonic()
            except Exception as e:  # the viewer must never stop training
                self.viewer.notify_error("Viewer refresh failed", f"{type(e).__name__}: {e}")
                time.sleep(1.0)

    def _update_plot(self) -> None:
        h = np.asarray(self.history, dtype=np.float64)
        if "plot" in self.gui:
            self.gui["plot"].data = (h[:, 0], h[:, 1])
        s = getattr(self, "_last_stats", None)
        if s is not None and "stats" in self.gui:
            state = "paused" if self.trainer.control.paused else "training"
            self.gui["stats"].content = (
                f"**{state}** · step {s.step} · loss {s.loss:.4f} · PSNR {s.psnr:.2f} dB · "
                f"{s.n_gaussians:,} Gaussians · {s.its_per_s:.1f} it/s"
            )

    def stop(self) -> None:
        self._stop = True
        self._dirty.set()
        if self.trainer.on_step == self._on_step:
            self.trainer.on_step = self._previous
        self.viewer.stop()


def attach_training_viewer(
    trainer: Any, host: str = "127.0.0.1", port: int = 8080, **kw: Any
) -> TrainingViewer:
    """Serve a live view of ``trainer`` (a ``splatlab.training.trainer.Trainer``) on host:port and
    return at once; training then runs as usual (``trainer.train()``). ``kw``: other
    :class:`ViewerConfig` fields."""
    cfg = ViewerConfig(scene=Path(trainer.run_dir), host=host, port=port, load_points=False, **kw)
    return TrainingViewer(trainer, cfg)
