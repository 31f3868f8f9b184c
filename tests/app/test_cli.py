"""The ``splatlab`` command end to end on a tiny demo run: train, eval, export, render."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splatlab import __version__
from splatlab.app.cli import main
from splatlab.scene.camera_path import CameraPath, interpolate_path, write_camera_path
from splatlab.scene.gaussians import load_ply, load_splat


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["demo", "--steps", "40", "--out", str(out)]) == 0
    return out


def test_version_and_help() -> None:
    r = subprocess.run([sys.executable, "-m", "splatlab.app.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"splatlab {__version__}"
    r = subprocess.run([sys.executable, "-m", "splatlab.app.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("demo", "train", "eval", "render", "export", "view", "query"):
        assert cmd in r.stdout


def test_demo_writes_a_complete_run(run_dir: Path) -> None:
    for name in ("config.json", "scene.ply", "metrics.json"):
        assert (run_dir / name).is_file()
    assert list((run_dir / "ckpts").glob("step_*.pt"))
    ply = load_ply(run_dir / "scene.ply")
    assert ply["means"].shape[0] > 1000 and torch.isfinite(ply["means"]).all()


def test_eval_and_export(run_dir: Path, tmp_path: Path) -> None:
    assert main(["eval", str(run_dir), "--no-renders"]) == 0
    out = tmp_path / "scene.splat"
    assert main(["export", str(run_dir), "--format", "splat", "--out", str(out)]) == 0
    splat = load_splat(out)
    ply = load_ply(run_dir / "scene.ply")
    assert splat["means"].shape == ply["means"].shape
    order = torch.argsort(splat["means"][:, 0])  # .splat is sorted by importance, compare as sets
    ref = torch.sort(ply["means"][:, 0]).values
    assert torch.allclose(splat["means"][order, 0], ref, atol=1e-5)


def test_render_camera_path_to_mp4(run_dir: Path, tmp_path: Path) -> None:
    from splatlab.scene.checkpoint import load_scene

    cams = load_scene(run_dir).cameras
    vms, Ks = interpolate_path(cams.viewmats[:3], cams.Ks[:3], 12)
    path = CameraPath(viewmats=vms, Ks=Ks, width=int(cams.widths[0]), height=int(cams.heights[0]), fps=12)
    write_camera_path(tmp_path / "camera_path.json", path)
    out = tmp_path / "path.mp4"
    assert main(["render", str(run_dir), "--camera-path", str(tmp_path / "camera_path.json"), "--out", str(out)]) == 0
    frames = np.stack(list(iio.imiter(out)))  # read back through imageio-ffmpeg
    assert frames.shape == (12, path.height, path.width, 3)
    assert frames.mean() > 10  # the scene is visible, not a black video


def test_bad_data_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing_here"
    assert main(["train", str(missing), "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().out
    assert "nothing_here" in err


def test_view_command_serves_the_viewer(run_dir: Path) -> None:
    """`splatlab view RUN --port P` starts viser on 127.0.0.1 and serves its page."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "splatlab.app.cli", "view", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        page = None
        while time.time() < deadline and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert page is not None and "<html" in page.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_query_writes_the_matching_gaussians_and_heatmaps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from viewer_util import make_feature_run

    from splatlab.scene.checkpoint import load_scene
    from splatlab.scene.synthetic import object_label_at

    run = make_feature_run(tmp_path / "run")
    out = tmp_path / "cube.ply"
    assert main(["query", str(run), "red cube", "--out", str(out), "--heatmap-views", "0", "1"]) == 0
    s = load_scene(run)
    labels = object_label_at(s.params["means"].detach().numpy())
    vis = torch.sigmoid(s.params["opacities"].detach()).numpy() >= 0.1
    sel = load_ply(out)
    want = (labels == 2) & vis
    assert len(sel["means"]) == int(want.sum()) > 50
    assert torch.allclose(sel["means"], s.params["means"].detach()[torch.from_numpy(want)], atol=1e-5)
    for i in (0, 1):
        img = iio.imread(tmp_path / f"cube_heatmap_{i:03d}.png")
        assert img.ndim == 3 and (img.max(-1).astype(int) - img.min(-1)).max() > 100  # coloured hits
    # a scene without features, or a camera index out of range: clear errors
    capsys.readouterr()
    assert main(["query", str(run), "red cube", "--heatmap-views", "99"]) == 2
    assert "--heatmap-views 99" in capsys.readouterr().out
    assert main(["query", str(run), "unicorn"]) == 2
    assert "knows only the labels" in capsys.readouterr().out
    from viewer_util import make_scene_run

    plain = make_scene_run(tmp_path / "plain", n_views=4)
    assert main(["query", str(plain), "red cube"]) == 2
    assert "train it with --features" in capsys.readouterr().out


def test_train_with_features_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "feat"
    argv = ["train", "demo", "--features", "labels", "--features.dim", "4", "--steps", "20"]
    assert main([*argv, "--checkpoint-every", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "features (labels, d=4): test cosine" in printed and "label mIoU" in printed
    import json

    fm = json.loads((out / "feature_metrics.json").read_text())
    assert fm["dim"] == 4 and -1.0 <= fm["cosine"] <= 1.0 and fm["n_views"] > 0
    assert (out / "feature_decoder.pt").is_file()
    assert main(["query", str(out), "red cube", "--threshold", "-1", "--heatmap-views"]) == 0
    assert "Gaussians match 'red cube'" in capsys.readouterr().out
