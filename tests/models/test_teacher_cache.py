"""TeacherCache: fp16 on disk, computed once, streamed; the synthetic label teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.models.label_teacher import LabelEmbeddingTeacher
from splatlab.models.teacher_cache import TeacherCache
from splatlab.scene.synthetic import DemoConfig, make_demo_scene


@pytest.fixture(scope="module")
def demo():
    return make_demo_scene(DemoConfig(n_views=6, width=40, height=30, n_points=200, supersample=1))


def test_label_teacher_maps_and_text(demo) -> None:
    t = LabelEmbeddingTeacher(demo.meta["label_names"], dim=64, rgb_weight=0.25, downsample=1)
    f = t.encode_frame(demo, 0)
    assert f.shape == (64, 30, 40)
    assert torch.allclose(f.norm(dim=0), torch.ones(30, 40), atol=1e-5)
    labels = torch.from_numpy(demo.meta["labels"][0].astype(np.int64))
    text = t.encode_text(demo.meta["label_names"])
    pred = torch.einsum("dhw,pd->phw", f, text).argmax(0)
    assert (pred == labels).float().mean() == 1.0  # the teacher itself segments perfectly
    with pytest.raises(DataError, match="knows only"):
        t.encode_text(["a dragon"])
    assert t.encode_text(["RED CUBE"]).shape == (1, 64)


def test_cache_computes_once_and_round_trips_fp16(tmp_path: Path, demo) -> None:
    t = LabelEmbeddingTeacher(demo.meta["label_names"], dim=32, downsample=2)
    cache = TeacherCache(tmp_path, t, demo)
    a = cache.get(1)
    assert cache.n_computed == 1 and a.shape == (32, 15, 20) and a.dtype == torch.float32
    ref = t.encode_frame(demo, 1)
    assert torch.equal(a, ref.half().float())  # stored as fp16, exactly
    b = cache.get(1)
    assert cache.n_computed == 1 and torch.equal(a, b)
    assert cache.precompute(range(6)) == 5 and cache.n_computed == 6
    files = sorted(cache.folder.glob("*.npy"))
    assert len(files) == 6 and not list(cache.folder.glob("*.tmp"))
    assert cache.nbytes() == sum(f.stat().st_size for f in files)
    assert all(np.load(f).dtype == np.float16 for f in files)
    # a new cache over the same folder reads, never recomputes
    again = TeacherCache(tmp_path, t, demo)
    assert torch.equal(again.get(1), a) and again.n_computed == 0
    # a different teacher config gets another folder
    other = TeacherCache(
        tmp_path, LabelEmbeddingTeacher(demo.meta["label_names"], dim=32, downsample=1), demo
    )
    assert other.folder != cache.folder


def test_corrupt_cache_file_is_reported(tmp_path: Path, demo) -> None:
    t = LabelEmbeddingTeacher(demo.meta["label_names"], dim=16)
    cache = TeacherCache(tmp_path, t, demo)
    cache.get(0)
    cache.path(0).write_bytes(b"garbage")
    with pytest.raises(DataError, match="delete it"):
        cache.get(0)
