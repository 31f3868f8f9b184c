"""`splatlab export --format spz|compressed_ply|sog|slsc` writes files that every command reopens
(load_scene is the one reader of view / eval / render / export), rendering like the original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.app.cli import main
from splatlab.rendering.metrics import psnr
from splatlab.rendering.splats import render_splats
from splatlab.scene.checkpoint import load_scene
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    ds = make_demo_scene(DemoConfig(n_views=6, width=48, height=36, n_points=500, supersample=1))
    out = tmp_path_factory.mktemp("fmt") / "run"
    Trainer(ds, TrainConfig(out=out, steps=30, checkpoint_every=0, refine_start_iter=1000, device="cpu")).train()
    return out


@pytest.mark.parametrize("fmt,suffix,bound,extra", [
    ("spz", ".spz", 30.0, []), ("compressed_ply", ".compressed.ply", 30.0, []), ("sog", ".sog", 25.0, []),
    ("slsc", ".slsc", 28.0, ["--slsc-quality", "5"]),  # quality 5 prunes nothing
])
def test_export_and_reopen_each_format(run: Path, tmp_path: Path, fmt: str, suffix: str, bound: float,
                                       extra: list[str]) -> None:
    out = tmp_path / f"scene{suffix}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out), *extra]) == 0
    back = load_scene(out)
    ref = load_scene(run / "scene.ply")  # original coordinates, as the export
    assert back.kind == fmt and back.params["means"].shape == ref.params["means"].shape
    c = load_scene(run).cameras
    T = torch.as_tensor(load_scene(run).transform, dtype=torch.float32)
    vm = torch.as_tensor(c.viewmats[0], dtype=torch.float32) @ T  # a training camera, original frame
    K = torch.as_tensor(c.Ks[0], dtype=torch.float32)
    w, h = int(c.widths[0]), int(c.heights[0])
    with torch.no_grad():
        a = render_splats(ref.params, vm[None], K[None], w, h)[0][0].clamp(0, 1)
        b = render_splats(back.params, vm[None], K[None], w, h)[0][0].clamp(0, 1)
    assert float(a.mean()) > 0.05  # the camera sees the scene
    assert float(psnr(b, a)) > bound
    # and the render command reads it too
    c2w = np.linalg.inv(vm.numpy().astype(np.float64))
    c2w[:3, 1:3] *= -1  # OpenCV -> OpenGL camera axes
    cp = tmp_path / "path.json"
    fov = float(np.degrees(2 * np.arctan(h / 2 / float(K[1, 1]))))
    cp.write_text(json.dumps({"render_width": 32, "render_height": 24, "fps": 2, "camera_path": [
        {"camera_to_world": c2w.reshape(-1).tolist(), "fov": fov}]}))
    frames = tmp_path / "frames"
    assert main(["render", str(out), "--camera-path", str(cp), "--out", str(frames)]) == 0
    assert len(list(frames.glob("*.png"))) == 1
