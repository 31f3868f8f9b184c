"""What the viewer shows: a scene (static, or live from a trainer) behind one lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...scene.checkpoint import StoredCameras

__all__ = ["SceneSource", "load_source"]


@dataclass
class SceneSource:
    """Gaussians plus what goes with them.

    params: name -> Tensor (stored activations), in the frame the cameras use.
    lock: held by writers (the trainer) while params change; :meth:`snapshot` takes it.
    static: params never change (snapshots are not copied).
    render_fn: optional ``(viewmat [4,4], K [3,3], w, h, sh_degree, background [3], render_mode)
        -> (colors [H,W,D], alpha [H,W,1], info)`` used instead of the generic path for the modes
        in ``render_fn_modes`` (a scene with its own shading: GaussianShader's RGB, normals,
        diffuse, specular, residual, environment).
    """

    params: Mapping[str, Tensor]
    name: str = "scene"
    lock: Any = field(default_factory=threading.RLock)
    static: bool = True
    cameras: StoredCameras | None = None
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    points: np.ndarray | None = None  # [P, 3] SfM points, frame of params
    points_rgb: np.ndarray | None = None  # [P, 3] in [0, 1]
    out_dir: Path = field(default_factory=lambda: Path("."))
    render_fn: Callable[..., Any] | None = None
    render_fn_modes: tuple[str, ...] = ("RGB",)  # the render modes render_fn draws
    version: int = 0
    feature_field: Any = (
        None  # splatlab.methods.feature3dgs.field.FeatureField when params have features
    )

    def replace(self, params: Mapping[str, Tensor]) -> None:
        """Show other parameters (a static scene after delete / extract in the viewer)."""
        if not self.static:
            raise RuntimeError(
                "a live training scene cannot be edited; pause or stop training first"
            )
        with self.lock:
            self.params = dict(params)
            self.bump()

    def snapshot(self) -> dict[str, Tensor]:
        """A consistent, detached view of the parameters (copied when they may change)."""
        with self.lock:
            if self.static:
                return {k: v.detach() for k, v in self.params.items()}
            return {k: v.detach().clone() for k, v in self.params.items()}

    def bump(self) -> None:
        """Record that the parameters changed (renders keyed on the version are redone)."""
        self.version += 1

    @property
    def n_gaussians(self) -> int:
        return int(self.params["means"].shape[0])


def load_source(path: Path, load_points: bool = True) -> SceneSource:
    """A static :class:`SceneSource` from a run directory, checkpoint, .ply or .splat."""
    from ...scene.checkpoint import load_scene

    loaded = load_scene(path)
    with torch.no_grad():
        params = {k: v.detach().float() for k, v in loaded.params.items()}
    run_dir = path if path.is_dir() else path.parent
    src = SceneSource(
        params=params,
        name=path.name,
        cameras=loaded.cameras,
        transform=np.asarray(loaded.transform, dtype=np.float64),
        out_dir=run_dir / "viewer",
    )
    from ...training.stored import open_stored

    parts = open_stored(loaded, params, strict=False)  # a failing part: the scene is still shown
    if parts.render_fn is not None:  # e.g. GaussianShader: RGB and the shading modes are its own
        shaded = parts.scene

        def render_fn(*args: Any, **kwargs: Any) -> Any:
            if shaded is not None:
                shaded.params = src.params  # follows delete / extract in the viewer
            return parts.render_fn(*args, **kwargs)

        src.render_fn = render_fn
        src.render_fn_modes = parts.render_modes
    src.feature_field = parts.feature_field
    if load_points and loaded.config and isinstance(loaded.config.get("data"), str):
        src.points, src.points_rgb = _dataset_points(
            loaded.config["data"], loaded.config.get("train", {})
        )
    return src


def _dataset_points(data: str, train_cfg: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """SfM points of the run's dataset when it is cheap to find (COLMAP / nerfstudio folders).
    The demo (procedural) and folders that need SfM are skipped."""
    import logging

    from ...scene.synthetic import DEMO_ROOT

    root = Path(data)
    if data == DEMO_ROOT or not root.is_dir():
        return None, None
    if not ((root / "sparse").is_dir() or (root / "transforms.json").is_file()):
        return None, None  # a folder of photos: finding points would mean running SfM
    try:
        from ...scene.datasets import load_dataset

        ds = load_dataset(Path(data), downscale=int(train_cfg.get("downscale", 1)))
    except Exception as e:  # points are a convenience; the scene is shown without them
        logging.getLogger(__name__).info("no SfM points from %s: %s", data, e)
        return None, None
    if ds.points is None:
        return None, None
    rgb = ds.points_rgb
    if rgb is not None and rgb.max() > 1.0:
        rgb = rgb / 255.0
    return np.asarray(ds.points, np.float32), None if rgb is None else np.asarray(rgb, np.float32)
