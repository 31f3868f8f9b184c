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


def load_state_dict_file(path: Path, what: str) -> dict[str, Any]:
    """torch.load a checkpoint on CPU. Tries the safe ``weights_only`` loader first; files that need
    full unpickling (PyTorch Lightning checkpoints with hyper-parameter objects) are loaded with
    ``weights_only=False``, so only load files from a source you trust."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as e:  # UnpicklingError for Lightning objects; anything else is re-raised below
        if "weights_only" not in str(e) and "Unsupported global" not in str(e):
            raise CheckpointError(
                f"{what}: {path} is not a readable PyTorch checkpoint ({e})"
            ) from e
        logger.warning(
            "%s: %s needs full unpickling (weights_only=False); trust its source", what, path
        )
        return torch.load(path, map_location="cpu", weights_only=False)
