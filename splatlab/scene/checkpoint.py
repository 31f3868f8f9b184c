"""Run directories and checkpoints.

Layout of a run directory::

    <run>/config.json            trainer config (written by the trainer, :func:`save_json`)
    <run>/ckpts/step_000123.pt   torch.save of the training state (see :func:`save_checkpoint`)
    <run>/scene.ply              export in the ORIGINAL coordinates (``gaussians.save_ply``)
    <run>/metrics.json           evaluation results

A checkpoint is a dict::

    {"format": "splatlab-checkpoint", "version": 1, "step": int,
     "params": {name: Tensor},                  # the ParameterDict's state_dict (normalised frame)
     "optimizers": {name: optimizer.state_dict()},
     "strategy_state": {...},                   # gsplat strategy state (tensors, numbers)
     "extra": {...}}                            # anything else; see EXTRA_* below

Checkpoints are loaded with ``torch.load(weights_only=True)`` (no arbitrary pickles), so what is
saved must be tensors, numbers, strings, None and lists/tuples/dicts of them; numpy arrays and
scalars are converted to tensors / Python numbers on save, paths to strings.

By convention the trainer stores in ``extra`` the Dataset's ``transform`` (normalised <- original)
under ``EXTRA_TRANSFORM`` and its cameras under ``EXTRA_CAMERAS`` (:func:`dataset_extra` builds
both); :func:`load_scene` hands them back with the parameters.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, DataError
from ..utils import atomic_write, atomic_write_json

__all__ = [
    "CKPT_DIR",
    "SCENE_PLY",
    "CONFIG_JSON",
    "METRICS_JSON",
    "EXTRA_TRANSFORM",
    "EXTRA_CAMERAS",
    "checkpoint_path",
    "list_checkpoints",
    "save_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_params",
    "restore_optimizers",
    "save_json",
    "load_json",
    "dataset_extra",
    "StoredCameras",
    "LoadedScene",
    "load_scene",
]

CKPT_DIR = "ckpts"
SCENE_PLY = "scene.ply"
CONFIG_JSON = "config.json"
METRICS_JSON = "metrics.json"
EXTRA_TRANSFORM = "transform"  # [4, 4] float64 tensor, normalised <- original
EXTRA_CAMERAS = "cameras"  # {"viewmats", "Ks", "widths", "heights", "names"}

_FORMAT = "splatlab-checkpoint"
_VERSION = 1
_CKPT_RE = re.compile(r"step_(\d+)\.pt")


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``<run>/ckpts/step_<step:06d>.pt``"""
    return Path(run_dir) / CKPT_DIR / f"step_{int(step):06d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``<run>/ckpts``, by increasing step. Temporary files
    of interrupted writes are not listed."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CKPT_RE.fullmatch(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``<run>/ckpts``, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def _sanitize(obj: Any, where: str) -> Any:
    """Make ``obj`` loadable with ``torch.load(weights_only=True)``."""
    if isinstance(obj, Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(
                    f"checkpoint {where} has a key of type {type(k).__name__}; use str or int"
                )
            out[k] = _sanitize(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        seq = [_sanitize(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return seq if isinstance(obj, list) else tuple(seq)
    raise TypeError(
        f"checkpoint {where} holds a {type(obj).__name__}, which weights-only loading refuses; "
        "store tensors, numbers, strings, None, or lists/dicts of them"
    )


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    params: Mapping[str, Tensor],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    strategy_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None = 3,
) -> Path:
    """Write ``<run>/ckpts/step_<step>.pt`` atomically; then prune old checkpoints.

    Args:
        params: the Gaussians (ParameterDict or name -> tensor).
        optimizers: name -> optimizer; their ``state_dict()`` is stored.
        strategy_state: the gsplat strategy's state dict.
        extra: anything else (see the module docstring for the conventions).
        keep_last: keep this many checkpoints with the highest steps (the one just written is
            always kept); None or 0 keeps all. Pruning happens only after the new file is
            complete, so an interruption never leaves the run without a checkpoint.

    Returns the path written.
    """
    if int(step) < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": int(step),
        "params": {k: v.detach() for k, v in params.items()},
        "optimizers": {k: opt.state_dict() for k, opt in (optimizers or {}).items()},
        "strategy_state": _sanitize(dict(strategy_state or {}), "strategy_state"),
        "extra": _sanitize(dict(extra or {}), "extra"),
    }
    path = checkpoint_path(run_dir, step)
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    # temp files of writes that were killed before their rename (this one is complete)
    for stale in path.parent.glob(".step_*.pt.*.tmp"):
        stale.unlink(missing_ok=True)
    if keep_last:
        ckpts = list_checkpoints(run_dir)
        keep = {p for _, p in ckpts[-int(keep_last) :]} | {path}
        for _, p in ckpts:
            if p not in keep:
                p.unlink(missing_ok=True)
    return path


def _previous_checkpoint(path: Path) -> Path | None:
    m = _CKPT_RE.fullmatch(path.name)
    if not m:
        return None
    step = int(m.group(1))
    older = [p for s, p in list_checkpoints(path.parent.parent) if s < step]
    return older[-1] if older else None


def _unreadable(path: Path, e: BaseException) -> str:
    prev = _previous_checkpoint(path)
    hint = (
        f"load the previous checkpoint {prev} instead (or delete {path.name})"
        if prev is not None
        else "no earlier checkpoint exists in that run; retrain or restore the file"
    )
    return (
        f"checkpoint {path} is unreadable, probably truncated or corrupt "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {hint}"
    )


def load_checkpoint(
    path_or_run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict:
    """Load a checkpoint file, or the latest checkpoint of a run directory.

    Raises CheckpointError when nothing is found, and, for a truncated or corrupt file, one
    that names the file and the previous checkpoint to load instead.
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"no checkpoint in {path / CKPT_DIR} (expected files named step_000123.pt); "
                "train first or pass a checkpoint file"
            )
        path = found
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # garbage or a truncated legacy file, not a refused object
            raise CheckpointError(_unreadable(path, e)) from e
        # objects other than tensors: possibly code, never run
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds pickled objects other than tensors and plain "
            "data (it may carry code), which splatlab never unpickles; use a checkpoint written by "
            "`splatlab train`"
        ) from e
    except Exception as e:  # zip/EOF errors of a truncated or foreign file
        raise CheckpointError(_unreadable(path, e)) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT or "params" not in ckpt:
        raise CheckpointError(f"{path} is not a splatlab checkpoint (no 'format'/'params' entries)")
    if int(ckpt.get("version", 0)) > _VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt['version']}, newer than this splatlab "
            f"reads ({_VERSION}); upgrade splatlab"
        )
    ckpt["path"] = str(path)
    return ckpt


def restore_params(ckpt: Mapping[str, Any], requires_grad: bool = True) -> torch.nn.ParameterDict:
    """The Gaussians of a loaded checkpoint as a ParameterDict (same keys and order)."""
    # a list of pairs keeps the stored order (ParameterDict sorts the keys of a plain dict)
    return torch.nn.ParameterDict(
        [
            (k, torch.nn.Parameter(v.clone(), requires_grad=requires_grad))
            for k, v in ckpt["params"].items()
        ]
    )


def restore_optimizers(
    ckpt: Mapping[str, Any], optimizers: Mapping[str, torch.optim.Optimizer]
) -> None:
    """Load the stored optimizer states into ``optimizers`` (built on the restored params)."""
    stored = ckpt.get("optimizers", {})
    missing = [k for k in optimizers if k not in stored]
    if missing:
        raise CheckpointError(
            f"checkpoint {ckpt.get('path', '?')} has no optimizer state for {missing}"
        )
    for k, opt in optimizers.items():
        opt.load_state_dict(stored[k])


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (config.json, metrics.json)."""
    atomic_write_json(path, obj)
    return Path(path)


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; DataError naming the file when it is unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read JSON file {path}: {e}") from e


# --------------------------------------------------------------------------------------------
# Scenes with their cameras
# --------------------------------------------------------------------------------------------


@dataclass
class StoredCameras:
    """Cameras saved with a run (the training views), in the frame of the stored params."""

    viewmats: np.ndarray  # [C, 4, 4] float64, OpenCV world-to-camera
    Ks: np.ndarray  # [C, 3, 3] float64
    widths: np.ndarray  # [C] int
    heights: np.ndarray  # [C] int
    names: list[str] = field(default_factory=list)

    def to_extra(self) -> dict:
        return {
            "viewmats": torch.from_numpy(np.asarray(self.viewmats, dtype=np.float64)),
            "Ks": torch.from_numpy(np.asarray(self.Ks, dtype=np.float64)),
            "widths": torch.as_tensor(np.asarray(self.widths, dtype=np.int64)),
            "heights": torch.as_tensor(np.asarray(self.heights, dtype=np.int64)),
            "names": list(self.names),
        }

    @classmethod
    def from_extra(cls, d: Mapping[str, Any]) -> StoredCameras:
        def arr(x: Any, dtype: type) -> np.ndarray:
            return (
                x.cpu().numpy().astype(dtype)
                if isinstance(x, Tensor)
                else np.asarray(x, dtype=dtype)
            )

        return cls(
            viewmats=arr(d["viewmats"], np.float64),
            Ks=arr(d["Ks"], np.float64),
            widths=arr(d["widths"], np.int64),
            heights=arr(d["heights"], np.int64),
            names=list(d.get("names", [])),
        )


def dataset_extra(dataset: Any) -> dict:
    """``extra`` entries for a checkpoint from a ``splatlab.scene.datasets.base.Dataset``: its
    transform (normalised <- original) and its cameras (normalised frame)."""
    frames = dataset.frames
    cams = StoredCameras(
        viewmats=np.stack([f.viewmat for f in frames]) if frames else np.zeros((0, 4, 4)),
        Ks=np.stack([f.K for f in frames]) if frames else np.zeros((0, 3, 3)),
        widths=np.array([f.width for f in frames], dtype=np.int64),
        heights=np.array([f.height for f in frames], dtype=np.int64),
        names=[f.name for f in frames],
    )
    return {
        EXTRA_TRANSFORM: torch.from_numpy(np.asarray(dataset.transform, dtype=np.float64)),
        EXTRA_CAMERAS: cams.to_extra(),
    }


@dataclass
class LoadedScene:
    """What :func:`load_scene` returns."""

    params: torch.nn.ParameterDict
    source: Path  # the file the params came from
    kind: str  # "checkpoint" or a format of splatlab.scene.formats ("ply", "splat", "spz", ...)
    step: int | None = None  # training step (checkpoints only)
    # [4, 4] maps ORIGINAL coordinates to the frame of ``params`` (x_params = transform @ x_orig):
    # the Dataset's normalisation for a checkpoint, the identity for a .ply/.splat file.
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    cameras: StoredCameras | None = None  # in the frame of ``params``
    config: dict | None = None  # the run's config.json, if any
    extra: dict = field(default_factory=dict)  # the checkpoint's extra dict


def load_scene(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedScene:
    """Load a scene from a run directory (latest checkpoint, else ``scene.ply``), a checkpoint
    file (``.pt``) or a scene file of any format of :mod:`splatlab.scene.formats` (.ply, .splat,
    .spz, .compressed.ply, .sog, .slsc)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist; pass a run directory, a .pt checkpoint or a scene file "
            "(.ply, .splat, .spz, .compressed.ply, .sog, .slsc)"
        )
    run_dir: Path | None = None
    if path.is_dir() and (path / "meta.json").is_file() and not (path / CONFIG_JSON).is_file():
        pass  # a SOG scene in folder form
    elif path.is_dir():
        run_dir = path
        ckpt_path = latest_checkpoint(path)
        if ckpt_path is None:
            if (path / SCENE_PLY).is_file():
                path = path / SCENE_PLY
            else:
                raise CheckpointError(
                    f"{path} has neither checkpoints in {CKPT_DIR}/ nor a {SCENE_PLY}; "
                    "is it a splatlab run directory?"
                )
        else:
            path = ckpt_path
    elif path.suffix == ".pt" and path.parent.name == CKPT_DIR:
        run_dir = path.parent.parent

    config = None
    if run_dir is not None and (run_dir / CONFIG_JSON).is_file():
        config = load_json(run_dir / CONFIG_JSON)

    suffix = path.suffix.lower()
    if suffix != ".pt" or path.is_dir():
        from .formats import FORMATS, detect_format, load_scene_file

        try:
            fmt = detect_format(path)
        except DataError as e:
            known = ", ".join(sorted({x for v in FORMATS.values() for x in v}))
            raise CheckpointError(f"{path}: unknown scene file type (expected .pt, {known})") from e
        return LoadedScene(params=load_scene_file(path, format=fmt), source=path, kind=fmt, config=config)

    ckpt = load_checkpoint(path, map_location=map_location)
    extra = dict(ckpt.get("extra", {}))
    transform = np.eye(4)
    if EXTRA_TRANSFORM in extra:
        t = extra[EXTRA_TRANSFORM]
        transform = (
            t.cpu().numpy().astype(np.float64)
            if isinstance(t, Tensor)
            else np.asarray(t, np.float64)
        )
    cameras = StoredCameras.from_extra(extra[EXTRA_CAMERAS]) if EXTRA_CAMERAS in extra else None
    return LoadedScene(
        params=restore_params(ckpt),
        source=path,
        kind="checkpoint",
        step=int(ckpt["step"]),
        transform=transform,
        cameras=cameras,
        config=config,
        extra=extra,
    )
