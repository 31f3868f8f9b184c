"""Reopen a stored scene through the registry: each registered extension recognises what it wrote
(an environment map, a feature decoder) and contributes its renderer or field."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from . import registry
from .extension import StoredSceneParts

__all__ = ["open_stored"]

logger = logging.getLogger(__name__)


def open_stored(loaded: Any, params: Mapping[str, Tensor] | None = None, strict: bool = True) -> StoredSceneParts:
    """The merged :class:`StoredSceneParts` of every registered extension that recognises the
    :class:`~splatlab.scene.checkpoint.LoadedScene` ``loaded`` (its params, or ``params``).

    With ``strict=False`` an extension that fails (e.g. a feature decoder missing beside a PLY) is
    logged and skipped, so the scene still opens without that part (the viewer's choice)."""
    params = loaded.params if params is None else params
    out = StoredSceneParts()
    for cls in registry.extension_classes():
        try:
            parts = cls.open_stored(loaded, params)
        except Exception as e:
            if strict:
                raise
            logger.warning("%s part of %s not loaded: %s", cls.name, loaded.source, e)
            continue
        if parts is None:
            continue
        if parts.render_fn is not None:
            if out.render_fn is not None:
                raise registry.MethodError(f"{loaded.source}: two appearances claim this scene")
            out.render_fn, out.render_modes, out.scene = parts.render_fn, parts.render_modes, parts.scene
        if parts.feature_field is not None:
            out.feature_field = parts.feature_field
    return out
