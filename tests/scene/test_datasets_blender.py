"""Blender-synthetic folders: split from the files, camera_angle_x, RGBA on a background."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from splatlab.errors import DataError
from splatlab.scene.datasets import detect_format, load_dataset


def write_blender(root: Path, scene, helpers) -> float:
    fov = float(2 * np.arctan(0.5 * scene.width / scene.Ks[0][0, 0]))
    splits = {"train": [0, 1, 2, 3], "val": [1], "test": [4, 5]}
    for split, ids in splits.items():
        frames = []
        for i in ids:
            rgba = helpers.noise_image(scene.width, scene.height, seed=i, channels=4)
            helpers.write_image(root / split / f"r_{i}.png", rgba)
            frames.append(
                {
                    "file_path": f"./{split}/r_{i}",
                    "rotation": 0.0,
                    "transform_matrix": helpers.gl_c2w(scene.viewmats[i]).tolist(),
                }
            )
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": fov, "frames": frames})
        )
    return fov


def test_blender_split_reprojection_background(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(same_K=True)
    write_blender(tmp_path, scene, ds_synth)
    assert detect_format(tmp_path) == "blender"
    ds = load_dataset(tmp_path)
    assert len(ds) == 6 and ds.train_ids == [0, 1, 2, 3] and ds.test_ids == [4, 5]
    assert [f.name for f in ds.frames][:2] == ["train/r_0.png", "train/r_1.png"]
    assert ds_synth.reprojection_error(ds, scene) < 1e-4
    assert ds.background == (1.0, 1.0, 1.0)
    rgba = ds_synth.noise_image(64, 48, seed=4, channels=4) / 255.0
    a = rgba[..., 3:]
    np.testing.assert_allclose(ds.load_image(4), rgba[..., :3] * a + (1 - a), atol=1e-6)
    black = load_dataset(tmp_path, background=(0.0, 0.0, 0.0))
    np.testing.assert_allclose(black.load_image(4), rgba[..., :3] * a, atol=1e-6)
    # downscale 2: K scaled, RGBA averaged with premultiplied alpha
    ds2 = load_dataset(tmp_path, downscale=2)
    assert (ds2.frames[0].width, ds2.frames[0].height) == (32, 24)
    assert ds_synth.reprojection_error(ds2, scene, sx=0.5, sy=0.5) < 1e-4
    want = (rgba[..., :3] * a + (1 - a)).reshape(24, 2, 32, 2, 3).mean((1, 3))
    np.testing.assert_allclose(ds2.load_image(4), want, atol=2.5 / 255)


def test_blender_bad_inputs(tmp_path: Path, ds_synth) -> None:
    scene = ds_synth.make_scene(same_K=True)
    write_blender(tmp_path, scene, ds_synth)
    (tmp_path / "test" / "r_5.png").unlink()
    with pytest.raises(DataError, match=r"frame 1 \(\./test/r_5\) of .*transforms_test\.json"):
        load_dataset(tmp_path)
    write_blender(tmp_path, scene, ds_synth)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][2]["transform_matrix"][1][1] = float("inf")
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"frame 2 .*transforms_train\.json.*NaN or inf"):
        load_dataset(tmp_path)
    del meta["camera_angle_x"]
    meta["frames"][2]["transform_matrix"][1][1] = 0.0
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="camera_angle_x missing"):
        load_dataset(tmp_path)
