"""The hooks a training method implements, and the plain SH appearance.

A scene is fitted by ONE :class:`~splatlab.training.trainer.Trainer` composed of

* a densification **strategy** (:mod:`splatlab.training.strategies`: ``3dgs``, ``mcmc``),
* one **appearance** (how a Gaussian's colour is produced: :class:`SHAppearance` = spherical
  harmonics; GaussianShader's split-sum shading in :mod:`splatlab.methods.gaussianshader`),
* any number of **fields** (extra per-Gaussian quantities rendered with the colour: Feature 3DGS's
  distilled features in :mod:`splatlab.methods.feature3dgs`).

Each is a class registered in the ``splatlab.methods`` entry-point group
(:mod:`splatlab.training.registry`); its options are a dataclass (``Config``) stored in
``config.json`` under ``section``. The trainer asks every extension for its per-Gaussian channels
and rasterizes them all in ONE :func:`~splatlab.rendering.channels.render_channels` call per step,
then lets each add its loss terms. The trainer never names an extension.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..rendering.channels import SH, sh_of
from ..rendering.splats import render_splats

if TYPE_CHECKING:  # pragma: no cover
    from ..scene.checkpoint import LoadedScene
    from .trainer import Trainer

__all__ = ["Extension", "Appearance", "Field", "SHAppearance", "StoredSceneParts"]


@dataclasses.dataclass
class StoredSceneParts:
    """What an extension contributes when a stored scene is reopened (viewer, eval, plugins).

    render_fn: ``(viewmat, K, w, h, sh_degree=None, background=None, render_mode="RGB") ->
        (colors [H, W, D], alpha [H, W, 1], info)`` for ``render_modes`` (an appearance that
        shades its own way), or None.
    render_modes: the modes ``render_fn`` draws (besides the generic ones).
    feature_field: a queryable feature field (Feature 3DGS), or None.
    scene: the extension's own scene object (e.g. a ShadedScene), or None.
    """

    render_fn: Any = None
    render_modes: tuple[str, ...] = ()
    feature_field: Any = None
    scene: Any = None


class Extension:
    """Base of appearances and fields. Subclasses set ``kind``, ``name``, optionally ``Config``
    (a dataclass of options, stored in config.json under ``section``) and override hooks."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type | None] = None
    section: ClassVar[str | None] = None
    incompatible: ClassVar[tuple[str, ...]] = ()
    """Names of strategies / appearances / fields this extension cannot be combined with."""
    cli_switch: ClassVar[tuple[str, tuple[str, ...], str] | None] = None
    """(flag, choices, config field): ``--flag CHOICE`` enables this field and sets the field."""

    def __init__(self, config: Any = None) -> None:
        if config is None and self.Config is not None:
            config = self.Config()
        self.config = config
        validate = getattr(config, "validate", None)
        if callable(validate):
            validate()

    # ------------------------------------------------------------ training hooks
    def adjust_train_config(self, cfg: Any) -> Any:
        """Return the TrainConfig this extension trains with (e.g. another SH degree)."""
        return cfg

    def extra_channels(self) -> dict[str, int]:
        """Extra per-Gaussian parameters (name -> width), zero-initialised."""
        return {}

    def param_lrs(self) -> dict[str, float]:
        """Learning rates of the extra per-Gaussian parameters."""
        return {}

    def attach(self, trainer: Trainer) -> None:
        """Called once the trainer's parameters exist: initialise extras, build modules."""

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers of parameters that are not per-Gaussian (an environment map, a decoder)."""
        return []

    def aux_state_dict(self) -> dict[str, Any]:
        """Checkpointed state of the non-per-Gaussian parameters (keys must be unique)."""
        return {}

    def load_aux_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`aux_state_dict` (called on resume with the whole aux dict)."""

    def loss(self, trainer: Trainer, step: int, out: dict[str, Any], gt: Tensor) -> Tensor | None:
        """Loss terms added to the photometric loss (None: none)."""
        return None

    def after_train(self, trainer: Trainer) -> None:
        """Write outputs beside scene.ply when training ends (atomically)."""

    def export(self, trainer: Trainer, ply_path: Path) -> None:
        """Write the files that go with an exported PLY (e.g. an environment map)."""

    def evaluate(self, trainer: Trainer) -> dict[str, Any] | None:
        """Extension-specific metrics after training (None: none)."""
        return None

    def summary(self, metrics: Mapping[str, Any]) -> list[str]:
        """Lines the CLI prints about :meth:`evaluate`'s metrics."""
        return []

    def viewer_parts(self, trainer: Trainer) -> StoredSceneParts:
        """What a live viewer of ``trainer`` gets from this extension."""
        return StoredSceneParts()

    # ------------------------------------------------------------ stored scenes
    @classmethod
    def open_stored(
        cls, loaded: LoadedScene, params: Mapping[str, Tensor]
    ) -> StoredSceneParts | None:
        """Recognise a stored scene trained with this extension (None: not this one)."""
        return None

    def config_json(self) -> dict[str, Any]:
        if self.config is None:
            return {}
        d = dataclasses.asdict(self.config)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


class Field(Extension):
    """Extra per-Gaussian quantities rendered together with the colour."""

    kind: ClassVar[str] = "field"

    def channels(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """name -> per-Gaussian values [N, c] to rasterize (background 0)."""
        return {}


class Appearance(Extension):
    """How a Gaussian's colour is produced for a camera."""

    kind: ClassVar[str] = "appearance"
    needs_depth: ClassVar[bool] = False
    render_modes: ClassVar[tuple[str, ...]] = ()

    def channels(
        self, params: Mapping[str, Tensor], viewmat: Tensor, sh_degree: int
    ) -> dict[str, Tensor | SH]:
        """Per-Gaussian channels for a camera [4, 4]; must contain "rgb" (first)."""
        raise NotImplementedError

    def finish(self, out: dict[str, Any]) -> dict[str, Any]:
        """Post-process a training render (``out["rgb"]`` etc. [H, W, c]); sets ``out["img"]``."""
        out["img"] = out["rgb"]
        return out

    def render(
        self,
        params: Mapping[str, Tensor],
        viewmat: Tensor,  # [4, 4]
        K: Tensor,  # [3, 3]
        width: int,
        height: int,
        sh_degree: int,
        background: Tensor,  # [3]
        render_mode: str,
        **raster: Any,
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """One view in ``render_mode``: ([H, W, D], [H, W, 1], info)."""
        raise NotImplementedError


class SHAppearance(Appearance):
    """3DGS's view-dependent colour: spherical harmonics (sh0 + shN), evaluated per camera."""

    name: ClassVar[str] = "sh"
    description: ClassVar[str] = "spherical-harmonics colour (3DGS)"

    def channels(
        self, params: Mapping[str, Tensor], viewmat: Tensor, sh_degree: int
    ) -> dict[str, Tensor | SH]:
        return {"rgb": sh_of(params, sh_degree)}

    def render(
        self,
        params: Mapping[str, Tensor],
        viewmat: Tensor,
        K: Tensor,
        width: int,
        height: int,
        sh_degree: int,
        background: Tensor,
        render_mode: str,
        **raster: Any,
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        out, alpha, info = render_splats(
            params, viewmat[None], K[None], width, height, sh_degree=sh_degree,
            backgrounds=background[None], render_mode=render_mode, **raster,
        )
        return out[0], alpha[0], info
