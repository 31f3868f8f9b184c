"""Run directories and checkpoints: atomic saves, pruning, restore, corrupt files, load_scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import CheckpointError
from splatlab.scene.cameras import intrinsics_matrix, look_at_viewmat
from splatlab.scene.checkpoint import (
    CKPT_DIR,
    EXTRA_CAMERAS,
    EXTRA_TRANSFORM,
    checkpoint_path,
    dataset_extra,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_scene,
    restore_optimizers,
    restore_params,
    save_checkpoint,
    save_json,
)
from splatlab.scene.datasets.base import Dataset, Frame
from splatlab.scene.gaussians import init_gaussians, save_ply, save_splat
from splatlab.utils import atomic_write


def make_params(n: int = 50, seed: int = 0) -> torch.nn.ParameterDict:
    pts = np.random.default_rng(seed).normal(size=(n, 3))
    return init_gaussians(pts, None, sh_degree=2, extras={"features": 4}, seed=seed)


def make_optimizers(params: torch.nn.ParameterDict) -> dict[str, torch.optim.Optimizer]:
    return {k: torch.optim.Adam([v], lr=1e-2, eps=1e-15) for k, v in params.items()}


def train_step(params: torch.nn.ParameterDict, opts: dict[str, torch.optim.Optimizer]) -> None:
    loss = sum((v.float() ** 2).sum() * (i + 1) for i, v in enumerate(params.values()))
    for opt in opts.values():
        opt.zero_grad()
    loss.backward()
    for opt in opts.values():
        opt.step()


def test_save_restore_continues_training_identically(tmp_path: Path) -> None:
    params = make_params()
    opts = make_optimizers(params)
    for _ in range(3):
        train_step(params, opts)
    strategy_state = {"grad2d": torch.arange(50.0), "count": torch.ones(50), "scene_scale": 1.5}
    extra = {
        "transform": np.diag([2.0, 2.0, 2.0, 1.0]),
        "note": "hello",
        "n": np.int64(7),
        "path": tmp_path,
    }
    path = save_checkpoint(tmp_path / "run", 123, params, opts, strategy_state, extra)
    assert path == tmp_path / "run" / CKPT_DIR / "step_000123.pt" and path.is_file()

    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 123 and ckpt["path"] == str(path)
    assert torch.equal(ckpt["strategy_state"]["grad2d"], torch.arange(50.0))
    assert ckpt["strategy_state"]["scene_scale"] == 1.5
    assert torch.equal(ckpt["extra"]["transform"], torch.from_numpy(np.diag([2.0, 2.0, 2.0, 1.0])))
    assert ckpt["extra"]["n"] == 7 and isinstance(ckpt["extra"]["n"], int)
    assert ckpt["extra"]["path"] == str(tmp_path) and ckpt["extra"]["note"] == "hello"

    restored = restore_params(ckpt)
    assert list(restored.keys()) == list(params.keys())
    for k in params.keys():
        assert torch.equal(restored[k], params[k]) and restored[k].requires_grad
    new_opts = make_optimizers(restored)
    restore_optimizers(ckpt, new_opts)
    # one more step on both: identical only if the Adam moments and step counts came back
    train_step(params, opts)
    train_step(restored, new_opts)
    for k in params.keys():
        assert torch.equal(restored[k], params[k]), k
    # and a fresh optimizer (no restored state) gives a different result
    fresh = restore_params(ckpt)
    fresh_opts = make_optimizers(fresh)
    train_step(fresh, fresh_opts)
    assert not torch.equal(fresh["means"], params["means"])


def test_keep_last_prunes_oldest_and_ignores_temp_files(tmp_path: Path) -> None:
    params = make_params(n=8)
    for step in (100, 200, 300, 400, 500):
        save_checkpoint(tmp_path, step, params, keep_last=3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [300, 400, 500]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 500)
    (tmp_path / CKPT_DIR / ".step_000900.pt.xyz.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 500)
    for step in (600, 700):
        save_checkpoint(tmp_path, step, params, keep_last=None)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [300, 400, 500, 600, 700]
    # steps beyond six digits still sort numerically
    save_checkpoint(tmp_path, 1_234_567, params, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [700, 1_234_567]
    assert latest_checkpoint(tmp_path / "nothing") is None


class _Boom:
    def __reduce__(self):  # raised while torch.save is pickling, i.e. mid-write
        raise RuntimeError("simulated failure while writing")


class _ExplodingSGD(torch.optim.SGD):
    def state_dict(self):  # type: ignore[override]
        return {"state": {}, "param_groups": [], "boom": _Boom()}


def test_failed_save_leaves_previous_checkpoints_intact(tmp_path: Path) -> None:
    params = make_params(n=8)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, params, keep_last=3)
    before = {p.name: p.read_bytes() for _, p in list_checkpoints(tmp_path)}
    bad = {"means": _ExplodingSGD([params["means"]], lr=0.1)}
    with pytest.raises(RuntimeError, match="simulated failure"):
        save_checkpoint(tmp_path, 4, params, bad, keep_last=3)
    after = {p.name: p.read_bytes() for p in (tmp_path / CKPT_DIR).iterdir()}
    assert after == before  # no step 4, no temp file, nothing pruned
    with pytest.raises(TypeError, match=r"extra\['s'\] holds a set"):
        save_checkpoint(tmp_path, 5, params, extra={"s": {1, 2}})
    assert not checkpoint_path(tmp_path, 5).exists()


def test_corrupt_checkpoint_names_file_and_previous(tmp_path: Path) -> None:
    params = make_params(n=8)
    for step in (10, 20):
        save_checkpoint(tmp_path, step, params)
    latest = checkpoint_path(tmp_path, 20)
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    msg = str(info.value)
    assert str(latest) in msg and "truncated or corrupt" in msg
    assert str(checkpoint_path(tmp_path, 10)) in msg
    # the previous one still loads
    assert load_checkpoint(checkpoint_path(tmp_path, 10))["step"] == 10
    first = checkpoint_path(tmp_path, 10)
    first.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="no earlier checkpoint"):
        load_checkpoint(first)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a splatlab checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "empty_run")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path / "empty_run")


def make_dataset(tmp_path: Path) -> Dataset:
    frames = []
    for i in range(3):
        eye = np.array([np.cos(i), np.sin(i), 0.5]) * 3
        frames.append(
            Frame(
                f"img_{i}.png",
                look_at_viewmat(eye, np.zeros(3)),
                intrinsics_matrix(100, 100, 32, 24),
                64,
                48,
            )
        )
    T = np.eye(4)
    T[:3, :3] = 0.5 * np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T[:3, 3] = [1.0, 2.0, 3.0]
    return Dataset(root=tmp_path, frames=frames, transform=T, scale=0.5)


def test_load_scene_from_run_dir_checkpoint_and_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    params = make_params(n=20)
    ds = make_dataset(tmp_path)
    save_json(run / "config.json", {"max_steps": 30, "sh_degree": 2})
    save_checkpoint(run, 30, params, make_optimizers(params), {}, dataset_extra(ds))

    scene = load_scene(run)
    assert (
        scene.kind == "checkpoint" and scene.step == 30 and scene.source == checkpoint_path(run, 30)
    )
    assert scene.config == {"max_steps": 30, "sh_degree": 2}
    assert np.array_equal(scene.transform, ds.transform)
    assert scene.cameras is not None
    assert np.array_equal(scene.cameras.viewmats, ds.viewmats) and np.array_equal(
        scene.cameras.Ks, ds.Ks
    )
    assert scene.cameras.widths.tolist() == [64] * 3 and scene.cameras.heights.tolist() == [48] * 3
    assert scene.cameras.names == ["img_0.png", "img_1.png", "img_2.png"]
    assert EXTRA_TRANSFORM in scene.extra and EXTRA_CAMERAS in scene.extra
    for k in params.keys():
        assert torch.equal(scene.params[k], params[k])
    # the checkpoint file itself gives the same, with the run's config
    direct = load_scene(checkpoint_path(run, 30))
    assert direct.step == 30 and direct.config == scene.config

    # a run without checkpoints falls back to scene.ply (original coordinates, identity transform)
    run2 = tmp_path / "run2"
    save_ply(run2 / "scene.ply", params, transform=ds.transform)
    s2 = load_scene(run2)
    assert s2.kind == "ply" and s2.step is None and np.array_equal(s2.transform, np.eye(4))
    expected = (
        params["means"].detach().double() @ torch.from_numpy(np.linalg.inv(ds.transform)[:3, :3]).T
    )
    expected += torch.from_numpy(np.linalg.inv(ds.transform)[:3, 3])
    assert torch.allclose(s2.params["means"].double(), expected, atol=1e-5)
    assert load_scene(run2 / "scene.ply").kind == "ply"
    save_splat(tmp_path / "x.splat", params)
    assert load_scene(tmp_path / "x.splat").params["means"].shape == (20, 3)

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither checkpoints"):
        load_scene(tmp_path / "empty")
    (tmp_path / "scene.obj").write_text("v 0 0 0\n")
    with pytest.raises(CheckpointError, match="unknown scene file type"):
        load_scene(tmp_path / "scene.obj")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_scene(tmp_path / "nope")


def test_save_json_is_atomic_json(tmp_path: Path) -> None:
    save_json(tmp_path / "metrics.json", {"psnr": 30.5, "ssim": 0.9})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"psnr": 30.5, "ssim": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    with atomic_write(target) as f:
        f.write(b"first")
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(target) as f:
            f.write(b"second, partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with atomic_write(tmp_path / "t.txt", "w") as f:
        f.write("é")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é"


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
