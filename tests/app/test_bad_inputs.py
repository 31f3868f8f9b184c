"""Reliability and data safety (issue 17): malformed inputs per format and per command end in exit
code 2 and ONE line naming the file, never a traceback, and nothing on disk changes; no code runs
from a file the project reads; nothing a user has is deleted or overwritten."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.app.cli import main
from splatlab.scene.gaussians import save_ply
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    ds = make_demo_scene(DemoConfig(n_views=6, width=32, height=24, n_points=300, supersample=1))
    out = tmp_path_factory.mktemp("bad") / "run"
    Trainer(ds, TrainConfig(out=out, steps=4, checkpoint_every=0, refine_start_iter=100, device="cpu")).train()
    return out


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _params(n: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.full((n, 3), -2.0),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacities": torch.zeros(n),
        "sh0": torch.rand(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 15, 3),
    }


def _ply_with(tmp: Path, name: str, edit) -> Path:
    """A valid PLY, then ``edit(text_header, body_bytes)`` to break it."""
    from plyfile import PlyData, PlyElement

    path = tmp / name
    save_ply(path, _params())
    if edit is None:
        return path
    ply = PlyData.read(str(path))
    arr = ply["vertex"].data
    arr = edit(arr)
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    return path


def _set(field: str, value: float):
    def edit(arr):
        arr = arr.copy()
        arr[field][0] = value
        return arr

    return edit


def _degree4(arr):
    import numpy.lib.recfunctions as rfn

    extra = [(f"f_rest_{i}", "f4") for i in range(45, 72)]
    return rfn.merge_arrays([arr, np.zeros(len(arr), dtype=extra)], flatten=True)


def _camera_path(tmp: Path, name: str, **over) -> Path:
    c2w = np.eye(4)
    c2w[2, 3] = 3.0
    data = {"render_width": 32, "render_height": 24, "fps": 4, "seconds": 1,
            "camera_path": [{"camera_to_world": c2w.reshape(-1).tolist(), "fov": 50.0}]}
    frame_over = over.pop("frame", {})
    data.update(over)
    data["camera_path"][0].update(frame_over)
    p = tmp / name
    p.write_text(json.dumps(data))
    return p


def _cases(tmp: Path, run: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, the file the message must name)."""
    cases = []
    plys = {
        "empty.ply": lambda a: a[:0],
        "nan.ply": _set("x", float("nan")),
        "absurd_scale.ply": _set("scale_0", 1e4),
        "sh_degree4.ply": _degree4,
        "zero_rotation.ply": lambda a: _set("rot_0", 0.0)(a),
    }
    for name, edit in plys.items():
        p = _ply_with(tmp, name, edit)
        if name == "sh_degree4.ply":  # a valid file (gsplat renders degree 4): export converts it,
            cases.append((f"render {name}", ["render", str(p), "--camera-path",  # render refuses
                                             str(_camera_path(tmp, "ok.json")), "--out", str(tmp / "o.mp4")], name))
            continue
        if name == "zero_rotation.ply":
            import plyfile

            d = plyfile.PlyData.read(str(p))["vertex"].data.copy()
            for k in ("rot_0", "rot_1", "rot_2", "rot_3"):
                d[k][0] = 0.0
            plyfile.PlyData([plyfile.PlyElement.describe(d, "vertex")]).write(str(p))
        cases.append((f"export {name}", ["export", str(p), "--format", "splat", "--out", str(tmp / "o.splat")], name))
        cases.append((f"render {name}", ["render", str(p), "--camera-path", str(_camera_path(tmp, "ok.json")),
                                         "--out", str(tmp / "o.mp4")], name))
    good = _ply_with(tmp, "good.ply", None)
    trunc = tmp / "truncated.ply"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    cases.append(("export truncated.ply", ["export", str(trunc), "--format", "splat", "--out", str(tmp / "o.splat")], "truncated.ply"))
    garbage = tmp / "garbage.ply"
    garbage.write_bytes(os.urandom(500))
    cases.append(("export garbage.ply", ["export", str(garbage), "--out", str(tmp / "o2.ply")], "garbage.ply"))
    bad_splat = tmp / "bad.splat"
    bad_splat.write_bytes(b"\0" * 33)
    cases.append(("export bad.splat", ["export", str(bad_splat), "--out", str(tmp / "o3.ply")], "bad.splat"))
    bad_spz = tmp / "bad.spz"
    bad_spz.write_bytes(os.urandom(300))
    not_scene = tmp / "notascene.txt"
    not_scene.write_text("x")
    # the viewer shares the load-time validation: it refuses before it serves anything
    for p in (tmp / "empty.ply", tmp / "nan.ply", tmp / "absurd_scale.ply", trunc, garbage, bad_splat,
              bad_spz, not_scene, tmp / "missing.ply"):
        cases.append((f"view {p.name}", ["view", str(p), "--port", "9"], p.name))
    for name, over in {
        "fov_null.json": {"frame": {"fov": None}},
        "fov_list.json": {"frame": {"fov": [50.0]}},
        "fov_string.json": {"frame": {"fov": "wide"}},
        "width_null.json": {"render_width": None},
        "width_string.json": {"render_width": "640"},
        "matrix_strings.json": {"frame": {"camera_to_world": ["a"] * 16}},
        "tiny.json": {"render_width": 3, "render_height": 2},
    }.items():
        cp = _camera_path(tmp, name, **over)
        cases.append((f"render {name}", ["render", str(run), "--camera-path", str(cp), "--out", str(tmp / "v.mp4")], name))
    # run directories with a broken config.json
    for name, text in {"no_train": json.dumps({"data": "x"}), "not_json": "{oops"}.items():
        d = tmp / f"run_{name}"
        d.mkdir()
        (d / "config.json").write_text(text)
        cases.append((f"eval {name}", ["eval", str(d)], "config.json"))
    # a dataset whose intrinsics are not numbers
    ds = tmp / "ns"
    ds.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ds / "a.png")
    (ds / "transforms.json").write_text(json.dumps({
        "fl_x": "abc", "fl_y": 10, "cx": 4, "cy": 4, "w": 8, "h": 8,
        "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}],
    }))
    cases.append(("train fl_x string", ["train", str(ds), "--steps", "1", "--out", str(tmp / "r")], "transforms.json"))
    return cases


def test_malformed_inputs_exit_2_with_one_line_naming_the_file(tmp_path: Path, run_dir: Path, capsys) -> None:
    cases = _cases(tmp_path, run_dir)
    capsys.readouterr()
    failures = []
    for case, argv, name in cases:
        before_run, before_tmp = _snapshot(run_dir), _snapshot(tmp_path)
        rc = main(argv)
        cap = capsys.readouterr()
        out = (cap.out + cap.err).strip()
        errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
        problems = []
        if rc != 2:
            problems.append(f"exit {rc}")
        if "Traceback" in out:
            problems.append("traceback")
        if len(errors) != 1 or name not in errors[0]:
            problems.append(f"message {out[-300:]!r}")
        if _snapshot(run_dir) != before_run or _snapshot(tmp_path) != before_tmp:
            problems.append("files changed")
        if problems:
            failures.append(f"{case}: {', '.join(problems)}")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 20


def test_sh_degree_4_is_converted_by_export(tmp_path: Path) -> None:
    from splatlab.scene.gaussians import load_splat

    p = _ply_with(tmp_path, "d4.ply", _degree4)
    assert main(["export", str(p), "--format", "splat"]) == 0
    assert load_splat(tmp_path / "d4.splat")["means"].shape == (5, 3)


def test_odd_render_size_makes_a_readable_video(tmp_path: Path, run_dir: Path) -> None:
    import imageio.v3 as iio

    cp = _camera_path(tmp_path, "odd.json", render_width=81, render_height=61)
    out = tmp_path / "odd.mp4"
    assert main(["render", str(run_dir), "--camera-path", str(cp), "--out", str(out)]) == 0
    frames = iio.imread(out, plugin="pyav") if False else iio.imread(out)
    assert frames.shape[1:3] == (62, 82)  # padded to even sides by repeating the edge


class _Payload:
    """Unpickling this runs a command; the tests check it never does."""

    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payload(marker: Path) -> _Payload:
    p = _Payload()
    p.marker = marker
    return p


def test_pickle_payload_beside_a_gaussianshader_scene_never_runs(tmp_path: Path) -> None:
    from splatlab.methods.gaussianshader.shader import SHADING_KEYS

    params = _params()
    for k, w in SHADING_KEYS.items():
        params[k] = torch.zeros(5, w)
    save_ply(tmp_path / "scene.ply", params)
    marker = tmp_path / "pwned"
    torch.save({"cube": torch.ones(6, 8, 8, 3), "transform": _payload(marker)}, tmp_path / "envmap.pt")
    from splatlab.app.viewer.source import load_source

    src = load_source(tmp_path / "scene.ply")  # the scene opens, without the refused environment
    assert src.n_gaussians == 5 and src.render_fn is None
    assert main(["export", str(tmp_path / "scene.ply"), "--format", "splat"]) == 0
    assert not marker.exists()


def test_pickle_payload_in_a_checkpoint_or_weights_file_never_runs(tmp_path: Path, capsys) -> None:
    from splatlab.models.weights import load_state_dict_file

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "ckpts").mkdir(parents=True)
    torch.save({"format": "splatlab-checkpoint", "params": {}, "x": _payload(marker)}, run / "ckpts" / "step_000001.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "x.ply")]) == 2
    msg = capsys.readouterr().out
    assert "refused" in msg and "weights_only=False" not in msg
    torch.save({"state_dict": {"w": torch.ones(3)}, "hparams": _payload(marker)}, tmp_path / "lseg.ckpt")
    sd = load_state_dict_file(tmp_path / "lseg.ckpt", "LSeg")
    assert torch.equal(sd["state_dict"]["w"], torch.ones(3))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the plain weights-only loader refuses it too
        torch.load(tmp_path / "lseg.ckpt", weights_only=True)


def test_demo_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert main(["demo", "--steps", "2", "--out", str(precious)]) == 2
    assert "not a splatlab run" in capsys.readouterr().out
    assert (precious / "holiday.jpg").read_bytes() == b"\xff\xd8\xff not really"
    assert sorted(p.name for p in precious.iterdir()) == ["holiday.jpg"]


def test_export_never_overwrites_an_unrelated_file(tmp_path: Path, run_dir: Path, capsys) -> None:
    src = tmp_path / "mine.ply"
    save_ply(src, _params())
    other = tmp_path / "mine.splat"
    other.write_bytes(b"user data")
    assert main(["export", str(src), "--format", "splat"]) == 2
    assert "--overwrite" in capsys.readouterr().out and other.read_bytes() == b"user data"
    unrelated = tmp_path / "scene.ply"
    unrelated.write_bytes(b"ply\nnot mine")
    assert main(["export", str(src), "--format", "ply", "--out", str(unrelated)]) == 2
    assert unrelated.read_bytes() == b"ply\nnot mine"
    assert main(["export", str(src), "--format", "splat", "--overwrite"]) == 0
    assert other.stat().st_size == 5 * 32
    # a run's own export is the run's file: rewritten without --overwrite
    assert main(["export", str(run_dir), "--format", "splat"]) == 0
    assert main(["export", str(run_dir), "--format", "splat"]) == 0


def test_killed_checkpoint_writes_leave_no_temp_files(tmp_path: Path) -> None:
    from splatlab.scene.checkpoint import save_checkpoint

    ck = tmp_path / "ckpts"
    ck.mkdir()
    for i in range(3):  # what a SIGKILL during atomic_write leaves behind
        (ck / f".step_00000{i}.pt.abc{i}.tmp").write_bytes(b"x" * 1000)
    save_checkpoint(tmp_path, 5, {"means": torch.zeros(2, 3)})
    assert sorted(p.name for p in ck.iterdir()) == ["step_000005.pt"]


def test_plugin_inputs_malformed_exit_2_with_one_line_naming_the_file(tmp_path: Path, capsys) -> None:
    """`splatlab plugin run NAME INPUT` on broken images, wavs and scenes, for every built-in
    plugin family that reads them: exit 2, one error line naming the input, nothing written.
    Plugins are found by their registered (entry-point) name as well as their display name."""
    import soundfile as sf
    from PIL import Image

    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    (tmp_path / "text.png").write_text("hello")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + b"\0" * 40)
    sf.write(tmp_path / "short.wav", np.zeros(10, np.float32), 16000)
    (tmp_path / "garbage.ply").write_bytes(os.urandom(500))
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(3000))
    (tmp_path / "empty.mkv").write_bytes(b"")
    cases = [
        ("inr-video-codec", "corrupt.mp4"), ("inr-video-codec", "empty.mkv"),
        ("inr-video-codec", "garbage.ply"), ("inr-video-codec", "ok.png"),
        ("inr-image-codec", "corrupt.png"), ("inr-image-codec", "text.png"),
        ("inr-image-codec", "tiny.png"), ("inr-image-codec", "short.wav"),
        ("anomaly-rd4ad", "corrupt.png"), ("anomaly-rd4ad", "ok.png"),  # ok image, no weights
        ("anomaly-rd4ad", "garbage.ply"),
        ("audio-deepfake", "corrupt.wav"), ("audio-deepfake", "short.wav"),
        ("audio-deepfake", "ok.png"),
        ("scene-codec", "garbage.ply"), ("scene-codec", "ok.png"),
        ("view statistics", "missing.ply"),
    ]
    capsys.readouterr()
    failures = []
    for plugin, name in cases:
        before = _snapshot(tmp_path)
        rc = main(["plugin", "run", plugin, str(tmp_path / name), "--out", str(tmp_path / "out")])
        cap = capsys.readouterr()
        out = (cap.out + cap.err).strip()
        errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
        problems = []
        if rc != 2:
            problems.append(f"exit {rc}")
        if "Traceback" in out:
            problems.append("traceback")
        if len(errors) != 1 or name not in errors[0]:
            problems.append(f"message {out[-300:]!r}")
        if _snapshot(tmp_path) != before:
            problems.append("files changed")
        if problems:
            failures.append(f"{plugin} {name}: {', '.join(problems)}")
    assert not failures, "\n".join(failures)


def test_plugin_run_never_writes_into_a_folder_that_is_not_a_report(tmp_path: Path, run_dir: Path, capsys) -> None:
    """--out with a user's files (or a run) is refused before the plugin runs; a previous report
    folder is reused; nothing of the user's is touched."""
    user = tmp_path / "photos"
    user.mkdir()
    (user / "scene.ply").write_bytes(b"mine")
    before = _snapshot(user), _snapshot(run_dir)
    for out in (user, run_dir):
        assert main(["plugin", "run", "view-statistics", str(run_dir), "--out", str(out)]) == 2
        msg = capsys.readouterr()
        assert f"--out {out} is not empty" in msg.out + msg.err
    assert (_snapshot(user), _snapshot(run_dir)) == before
    report = tmp_path / "report"
    assert main(["plugin", "run", "view-statistics", str(run_dir), "--out", str(report)]) == 0
    assert main(["plugin", "run", "view-statistics", str(run_dir), "--out", str(report)]) == 0  # reused
    assert (report / "report.json").is_file()
