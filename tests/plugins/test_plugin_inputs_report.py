"""PluginInputs.from_path (run dir, scene file, image, wav, bad input) and Report.save."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.plugins.base import Cancelled, Plugin, PluginInputs, Report, _check_contract
from splatlab.scene.checkpoint import dataset_extra, save_checkpoint, save_json
from splatlab.scene.gaussians import init_gaussians, load_ply, save_ply


def _run_dir(out: Path, n_views: int = 8) -> Path:
    from splatlab.scene.synthetic import DemoConfig, make_demo_scene

    ds = make_demo_scene(DemoConfig(n_views=n_views, test_every=4))
    params = init_gaussians(
        ds.points, ds.points_rgb, sh_degree=1, init_opacity=0.8, init_scale=1.0, seed=0
    )
    save_checkpoint(out, 0, params, extra=dataset_extra(ds))
    save_json(out / "config.json", {"data": "<demo>", "train": {"downscale": 1, "test_every": 8}})
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _run_dir(tmp_path_factory.mktemp("run"))


def test_from_run_dir_scene_camera_render_and_lazy_dataset(run_dir):
    from splatlab.rendering.splats import render_splats
    from splatlab.scene.checkpoint import load_scene

    inputs = PluginInputs.from_path(run_dir)
    loaded = load_scene(run_dir)
    assert inputs.path == run_dir and inputs.kinds() == {"scene", "none"}
    assert inputs.params["means"].shape == loaded.params["means"].shape
    assert torch.equal(inputs.params["sh0"], loaded.params["sh0"].detach())
    cam = inputs.camera
    assert (cam.width, cam.height) == (
        int(loaded.cameras.widths[0]),
        int(loaded.cameras.heights[0]),
    )
    np.testing.assert_allclose(cam.viewmat, loaded.cameras.viewmats[0])
    img = inputs.render(cam, "RGB")
    assert img.dtype == np.uint8 and img.shape == (cam.height, cam.width, 3)
    ref, _, _ = render_splats(
        loaded.params,
        torch.as_tensor(cam.viewmat, dtype=torch.float32)[None],
        torch.as_tensor(cam.K, dtype=torch.float32)[None],
        cam.width,
        cam.height,
    )
    ref8 = (ref[0].detach().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(img.astype(int) - ref8.astype(int)).max() <= 1
    assert img.mean() > 5  # the demo's objects are in view
    alpha = inputs.render(cam, "alpha")
    depth = inputs.render(cam, "depth")
    assert alpha.shape == depth.shape == img.shape
    assert ((alpha[..., 0] < 128) == (depth.sum(-1) == 0)).mean() > 0.95
    with pytest.raises(ValueError, match="headless modes"):
        inputs.render(cam, "normals")
    # the dataset is loaded on first access only
    assert inputs.__dict__["_dataset"] is None and "_dataset_loader" in inputs.__dict__
    ds = inputs.dataset
    assert ds is not None and len(ds.frames) > 0 and inputs.dataset is ds
    im = ds.load_image(ds.test_ids[0])
    assert im.dtype == np.float32 and im.shape == (ds.frames[0].height, ds.frames[0].width, 3)
    # a plain field: assignment replaces the loader
    other = PluginInputs(dataset="x")
    assert other.dataset == "x" and PluginInputs().dataset is None


def test_from_scene_files_and_missing_dataset(tmp_path, run_dir):
    from splatlab.scene.checkpoint import load_scene

    params = load_scene(run_dir).params
    ply = save_ply(tmp_path / "s.ply", params)
    inputs = PluginInputs.from_path(ply)
    assert inputs.dataset is None and inputs.camera is None
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert torch.equal(inputs.params[k], params[k].detach()), k
    # a run whose dataset folder is gone: the scene loads, the dataset raises a clear error
    moved = _run_dir(tmp_path / "run2", n_views=4)
    save_json(moved / "config.json", {"data": str(tmp_path / "gone"), "train": {}})
    inputs = PluginInputs.from_path(moved)
    assert inputs.params is not None
    with pytest.raises(DataError, match="not on this machine"):
        _ = inputs.dataset


def test_from_image_and_wav(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    inputs = PluginInputs.from_path(tmp_path / "a.png")
    assert inputs.kinds() == {"image", "none"} and np.array_equal(inputs.image, rgb)
    rgba = np.dstack([rgb, np.full((9, 13), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.webp", lossless=True)
    im = PluginInputs.from_path(tmp_path / "b.webp").image
    assert im.shape == (9, 13, 3)
    assert np.abs(im.astype(int) - (rgb.astype(int) * 128 + 127) // 255).max() <= 1
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    assert PluginInputs.from_path(tmp_path / "c.jpg").image.shape == (9, 13, 3)

    t = np.arange(1600)
    left = (np.sin(t / 10) * 20000).astype("<i2")
    right = (np.cos(t / 7) * 10000).astype("<i2")
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.stack([left, right], 1).tobytes())
    inputs = PluginInputs.from_path(tmp_path / "s.wav")
    x, sr = inputs.audio
    assert sr == 16000 and x.dtype == np.float32 and x.shape == (1600,)
    want = (left.astype(np.float64) + right) / 2 / 32768.0
    assert np.abs(x - want).max() < 1e-6
    assert inputs.kinds() == {"audio", "none"}


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.png", b"\x89PNG\r\n\x1a\n garbage", "not a readable image"),
        ("bad.jpg", b"", "not a readable image"),
        ("bad.wav", b"RIFF1234WAVEjunk", "not a readable wav"),
        ("bad.ply", b"ply\nformat ascii 1.0\nend_header\n", "bad.ply"),
        ("notes.txt", b"hello", "unknown"),
    ],
)
def test_bad_inputs_raise_data_error_naming_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        PluginInputs.from_path(p)
    assert name in str(e.value)


def test_missing_input_and_non_run_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PluginInputs.from_path(tmp_path / "nope")
    with pytest.raises(DataError, match="run directory"):
        PluginInputs.from_path(tmp_path)


def test_report_save_round_trip(tmp_path, run_dir):
    from splatlab.scene.checkpoint import load_scene

    params = {k: v.detach() for k, v in load_scene(run_dir).params.items()}
    n = params["means"].shape[0]
    sel = np.zeros(n, bool)
    sel[::3] = True
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 4000)
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    rep = Report(
        "r",
        metrics={"psnr": np.float32(31.5)},
        tables={"t": {"a": list(np.arange(3)), "b": np.array([1.5, 2.5])}},
        images={"view 1": img, "mask": img[..., 0]},
        notes=["hello"],
        files={"stream.bin": b"\x00\x01\x02", "copy.bin": src, "scene.ply": b"not the scene"},
        scene=params,
        selection=sel,
    )
    out = tmp_path / "out"
    path = rep.save(out)
    meta = json.loads(path.read_text())
    assert meta["metrics"] == {"psnr": 31.5} and meta["notes"] == ["hello"]
    assert meta["tables"]["t"] == {"a": [0, 1, 2], "b": [1.5, 2.5]}
    assert meta["images"] == {"view 1": [5, 7, 3], "mask": [5, 7]}
    assert meta["files"] == {"stream.bin": 3, "copy.bin": 1024000, "scene.ply": 13}
    assert meta["scene"] == {"n_gaussians": n}
    assert meta["selection"] == {"n": n, "n_selected": int(sel.sum())}
    names = meta["outputs"]
    # a file named like a reserved output does not overwrite the scene
    assert names["files"]["scene.ply"] != "scene.ply"
    assert (out / names["files"]["scene.ply"]).read_bytes() == b"not the scene"
    assert (out / "stream.bin").read_bytes() == b"\x00\x01\x02"
    assert (out / "copy.bin").read_bytes() == src.read_bytes()
    import imageio.v3 as iio

    assert np.array_equal(iio.imread(out / names["images"]["view 1"]), img)
    assert np.array_equal(iio.imread(out / names["images"]["mask"]), img[..., 0])
    back = load_ply(out / "scene.ply")
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert torch.equal(back[k].detach(), params[k].float()), k
    assert np.array_equal(np.load(out / "selection.npy"), sel)
    assert not list(out.glob(".*tmp"))  # no temporary files left


def test_report_save_failure_leaves_no_report_json(tmp_path):
    rep = Report("r", files={"a.bin": b"1", "b.bin": tmp_path / "missing.bin"})
    with pytest.raises(FileNotFoundError):
        rep.save(tmp_path / "out")
    assert not (tmp_path / "out" / "report.json").exists()
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_accepts_is_checked_and_cancelled_is_an_error():
    class Bad(Plugin):
        name = "bad accepts"
        accepts = ("scene", "pointcloud")

    with pytest.raises(TypeError, match="accepts must be"):
        _check_contract(Bad, "t")

    class Good(Plugin):
        name = "good accepts"
        accepts = ("image", "audio")

    _check_contract(Good, "t")
    assert Plugin.accepts == ("scene",)
    from splatlab.errors import SplatlabError

    assert issubclass(Cancelled, SplatlabError)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG (mode I;16) maps 0..65535 to 0..255 (PIL's convert('RGB') clips it to
    white above 255), and a float TIFF is refused naming the file."""
    from PIL import Image

    from splatlab.errors import DataError
    from splatlab.plugins.base import PluginInputs

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    img = PluginInputs.from_path(tmp_path / "g16.png").image
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert abs(float(img.mean()) - 127.5) < 1.0 and img.max() == 255 and img.min() == 0
    assert np.abs(img[..., 0].astype(float) - ramp / 257.0).max() <= 0.5
    Image.fromarray(np.ones((16, 16), np.float32)).save(tmp_path / "f.tiff")
    (tmp_path / "f.png").write_bytes((tmp_path / "f.tiff").read_bytes())
    with pytest.raises(DataError, match="f.png"):
        PluginInputs.from_path(tmp_path / "f.png")


def test_option_names_of_the_cli_itself_are_refused_at_registration():
    """An option called ``device`` used to crash `splatlab plugin run` (a tyro name clash with
    its own --device); now the plugin fails to register with a message saying what to rename."""
    from dataclasses import dataclass

    @dataclass
    class Opts:
        device: str = "cpu"
        steps: int = 3

    class Clash(Plugin):
        name = "clash"
        Options = Opts

    with pytest.raises(TypeError, match=r"\['device'\].*rename"):
        _check_contract(Clash, "t")
