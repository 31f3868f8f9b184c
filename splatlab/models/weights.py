"""Where pretrained weights are looked for, and the error that says how to get them.

Search order for a checkpoint file name: an explicit path; ``$SPLATLAB_WEIGHTS``; the splatlab
cache ``~/.cache/splatlab/weights`` (or ``$XDG_CACHE_HOME/splatlab/weights``); torch hub's
``<hub dir>/checkpoints``. Nothing is downloaded unless the caller asks for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, WeightsNotFoundError

logger = logging.getLogger(__name__)


def weights_dirs() -> list[Path]:
    """Folders searched for checkpoint files, in order."""
    dirs = []
    env = os.environ.get("SPLATLAB_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    dirs.append(cache / "splatlab" / "weights")
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(
    name_or_path: str | os.PathLike | None, filenames: Sequence[str], what: str, url: str
) -> Path:
    """The checkpoint file: ``name_or_path`` if it is an existing file, else the first of
    ``filenames`` found in :func:`weights_dirs`.

    Raises:
        WeightsNotFoundError: with the URL to download and the folders where the file may go.
    """
    if name_or_path is not None:
        p = Path(name_or_path).expanduser()
        if p.is_file():
            return p
        if p.suffix or os.sep in str(name_or_path):
            raise WeightsNotFoundError(
                f"{what}: checkpoint {p} does not exist. Download it from {url} and pass its path."
            )
    for d in weights_dirs():
        for fn in filenames:
            if (d / fn).is_file():
                return d / fn
    places = ", ".join(str(d) for d in weights_dirs())
    raise WeightsNotFoundError(
        f"{what}: no checkpoint found (looked for {list(filenames)} in {places}). Download {url} "
        f"into one of those folders (e.g. {weights_dirs()[-2]}) or pass the file's path."
    )


class _Opaque(dict):
    """Stands in for a non-tensor object of a checkpoint (a Lightning hyper-parameter object, a
    Namespace): it takes any arguments and state and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self["_args"] = args

    def __setstate__(self, state: Any) -> None:
        self["_state"] = state


def _restricted_pickle_module() -> Any:
    """A pickle module whose Unpickler resolves only the globals that torch's weights-only loader
    allows; every other global becomes :class:`_Opaque` (never imported, never called)."""
    import pickle
    import types

    from torch import _weights_only_unpickler as wou

    allowed = wou._get_allowed_globals()
    stubbed: list[str] = []

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            key = f"{module}.{name}"
            if key in allowed:
                return allowed[key]
            stubbed.append(key)
            return _Opaque

    mod = types.SimpleNamespace(**{k: getattr(pickle, k) for k in ("load", "loads", "dump", "dumps", "Pickler")})
    mod.Unpickler = Unpickler
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()
    mod.__name__ = "splatlab_restricted_pickle"
    mod.stubbed = stubbed
    return mod


def load_state_dict_file(path: Path, what: str) -> dict[str, Any]:
    """torch.load a checkpoint on CPU without ever running code from it.

    The weights-only loader first; a file that also pickles other objects (PyTorch Lightning
    checkpoints with hyper-parameter objects) is read with an unpickler that resolves only the
    globals torch's weights-only loader allows and replaces every other object by an inert
    placeholder, so tensors load and nothing from the file is imported or called."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as e:
        raise CheckpointError(f"{what}: {path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    mod = _restricted_pickle_module()
    try:
        out = torch.load(path, map_location="cpu", weights_only=False, pickle_module=mod)
    except Exception as e:
        raise CheckpointError(f"{what}: {path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if mod.stubbed:
        logger.info("%s: %s: ignored non-tensor objects %s", what, path, sorted(set(mod.stubbed)))
    if not isinstance(out, dict):
        raise CheckpointError(f"{what}: {path} does not hold a state dict (got {type(out).__name__})")
    return out
