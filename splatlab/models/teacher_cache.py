"""2D teachers for feature distillation and the on-disk cache of their feature maps.

A :class:`Teacher` turns one view of a dataset into a feature map ``[D, h, w]`` (its own
resolution; the distillation loss resizes the rendered map to it). Teachers are expensive (a
ViT-L per image) and their maps big (LSeg: 512 x 240 x 320 fp32 = 157 MB per image), so
:class:`TeacherCache` computes each map once, writes it to disk in float16 (atomically) and reads
it back, memory-mapped, one view at a time during training: nothing keeps all maps in memory
(Feature 3DGS preloads them all, the out-of-memory its users report).
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..utils import atomic_write, atomic_write_json

if TYPE_CHECKING:
    from ..scene.datasets.base import Dataset

logger = logging.getLogger(__name__)


class Teacher(abc.ABC):
    """A 2D foundation model (or a synthetic stand-in) that produces per-pixel features.

    Subclasses set ``name`` and ``dim`` and implement :meth:`encode_image` (and
    :meth:`encode_text` when ``text_aligned``); :meth:`cache_id` must change whenever the weights
    or the preprocessing change, because it names the cache folder.
    """

    name: str = "teacher"
    dim: int = 0
    text_aligned: bool = False

    @abc.abstractmethod
    def cache_id(self) -> str:
        """Names the cache folder; changes with the weights and the preprocessing."""

    def meta(self) -> dict:
        """JSON-friendly settings that rebuild this teacher's text side without its dataset
        (stored with the feature decoder; empty for pretrained teachers, whose config suffices)."""
        return {}

    @abc.abstractmethod
    def encode_image(self, image: Tensor) -> Tensor:
        """image: [H, W, 3] float in [0, 1] -> features [D, h, w] float32."""

    def encode_frame(self, dataset: Dataset, i: int) -> Tensor:
        """Features of view i of ``dataset``: [D, h, w]. Default: :meth:`encode_image` of its image."""
        img = torch.from_numpy(np.ascontiguousarray(dataset.load_image(i), dtype=np.float32))
        return self.encode_image(img)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Text embeddings in the same space as the image features: [P, D] (unit norm)."""
        raise TypeError(
            f"the {self.name} teacher has no text encoder; use 'lseg', 'clip' or 'labels'"
        )


def _frame_key(dataset: Dataset, i: int) -> str:
    f = dataset.frames[i]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f.name)[-80:]
    h = hashlib.sha1()
    h.update(f.name.encode())
    h.update(np.asarray([f.width, f.height], np.int64).tobytes())
    h.update(np.ascontiguousarray(f.viewmat, np.float64).tobytes())
    h.update(np.ascontiguousarray(f.K, np.float64).tobytes())
    return f"{stem}.{h.hexdigest()[:12]}"


class TeacherCache:
    """Teacher feature maps of a dataset's views, computed on first use and cached on disk.

    Files: ``root / teacher.cache_id() / <frame>.<hash>.npy`` float16 ``[D, h, w]`` plus an
    ``index.json`` naming the teacher. The hash covers the frame name, size and pose, so a
    different dataset never reads stale maps. ``ram_items`` maps (most recently used) are also
    kept in memory; 0 keeps none, so memory stays at one map whatever the number of views.

    Args:
        root: cache directory (created).
        teacher: the :class:`Teacher`.
        dataset: the views.
        ram_items: size of the in-memory LRU.
    """

    def __init__(
        self, root: str | Path, teacher: Teacher, dataset: Dataset, ram_items: int = 0
    ) -> None:
        self.teacher = teacher
        self.dataset = dataset
        self.folder = Path(root) / teacher.cache_id()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ram_items = int(ram_items)
        self._ram: OrderedDict[int, Tensor] = OrderedDict()
        self.n_computed = 0
        index = self.folder / "index.json"
        if not index.is_file():
            atomic_write_json(
                index, {"teacher": teacher.name, "cache_id": teacher.cache_id(), "dim": teacher.dim}
            )

    def path(self, i: int) -> Path:
        return self.folder / f"{_frame_key(self.dataset, i)}.npy"

    def has(self, i: int) -> bool:
        return self.path(i).is_file()

    def _compute(self, i: int) -> np.ndarray:
        feat = self.teacher.encode_frame(self.dataset, i)
        if feat.dim() != 3 or feat.shape[0] != self.teacher.dim:
            raise DataError(
                f"teacher {self.teacher.name} returned shape {list(feat.shape)} for frame "
                f"{self.dataset.frames[i].name!r}; expected [{self.teacher.dim}, h, w]"
            )
        arr = feat.detach().to("cpu", torch.float16).numpy()
        if not np.isfinite(arr).all():
            raise DataError(
                f"teacher {self.teacher.name} produced non-finite features (or values beyond the fp16 range) "
                f"for frame {self.dataset.frames[i].name!r}"
            )
        with atomic_write(self.path(i), "wb") as f:
            np.save(f, arr)
        self.n_computed += 1
        return arr

    def get(self, i: int, device: str | torch.device = "cpu") -> Tensor:
        """Feature map of view i as float32 [D, h, w] on ``device`` (computed and cached if absent)."""
        if i in self._ram:
            self._ram.move_to_end(i)
            return self._ram[i].to(device, torch.float32)
        p = self.path(i)
        if p.is_file():
            try:
                arr = np.load(p, mmap_mode="r")
            except (ValueError, OSError) as e:
                raise DataError(
                    f"teacher cache file {p} is unreadable ({e}); delete it to recompute"
                ) from e
            if arr.ndim != 3 or arr.shape[0] != self.teacher.dim:
                raise DataError(
                    f"teacher cache file {p} has shape {arr.shape}; delete {self.folder} to recompute"
                )
            out = torch.from_numpy(np.array(arr))
        else:
            out = torch.from_numpy(self._compute(i))
        if self.ram_items > 0:
            self._ram[i] = out
            while len(self._ram) > self.ram_items:
                self._ram.popitem(last=False)
        return out.to(device, torch.float32)

    def precompute(
        self, ids: Iterable[int], progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Compute the missing maps of ``ids``; returns how many were computed."""
        ids = list(ids)
        done = 0
        for k, i in enumerate(ids):
            if not self.has(i):
                self._compute(i)
                done += 1
            if progress is not None:
                progress(k + 1, len(ids))
        return done

    def nbytes(self) -> int:
        """Bytes of the cached maps on disk."""
        return sum(p.stat().st_size for p in self.folder.glob("*.npy"))

    def info(self) -> dict:
        return json.loads((self.folder / "index.json").read_text())
