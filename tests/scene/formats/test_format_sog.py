"""PlayCanvas SOG (meta v2 + lossless WebP): bundle and folder forms, texture layout, and the
error of each attribute against its quantiser."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import torch
from PIL import Image
from scipy.spatial import cKDTree

from splatlab.scene.formats import load_scene_file, save_scene_file
from splatlab.scene.formats.sog import kmeans, load_sog, quantize_1d, save_sog


def scene(n: int = 1500, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return {
        "means": torch.randn(n, 3, generator=g) * 2.0,
        "scales": torch.randn(n, 3, generator=g) * 0.5 - 4.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.7,
        "shN": torch.randn(n, k, 3, generator=g) * 0.1,
    }


def matched(p, d):
    _, idx = cKDTree(p["means"].numpy()).query(d["means"].detach().numpy())
    assert len(set(idx.tolist())) == len(idx)
    return torch.from_numpy(idx)


def test_bundle_layout_and_bounds(tmp_path):
    p = scene()
    path = save_sog(tmp_path / "s.sog", p, iterations=4)
    z = zipfile.ZipFile(path)
    meta = json.loads(z.read("meta.json"))
    assert meta["version"] == 2 and meta["count"] == 1500
    names = set(z.namelist())
    assert names == {"meta.json", "means_l.webp", "means_u.webp", "quats.webp", "scales.webp",
                     "sh0.webp", "shN_centroids.webp", "shN_labels.webp"}  # fmt: skip
    img = Image.open(io.BytesIO(z.read("quats.webp")))
    assert img.format == "WEBP" and img.size == (40, 40)  # ceil(sqrt(1500)/4)*4, ceil(1500/40/4)*4
    # palette as splat-transform: min(64, 2^floor(log2(1500/1024))) * 1024 = 1024
    assert meta["shN"]["count"] == 1024 and meta["shN"]["bands"] == 3
    assert Image.open(io.BytesIO(z.read("shN_centroids.webp"))).size == (64 * 15, 16)

    d = load_sog(path)
    idx = matched(p, d)
    ref = {k: v[idx].double() for k, v in p.items()}
    # means: 16-bit unorm of sign(x) ln(|x|+1): error <= (|x| + 1) * half a step of the range
    lt_range = np.array(meta["means"]["maxs"]) - np.array(meta["means"]["mins"])
    bound = (ref["means"].abs().numpy() + 1) * 0.5 * lt_range / 65535 * 1.01 + 1e-6
    assert ((d["means"].detach().double() - ref["means"]).abs().numpy() <= bound).all()
    # scales / sh0: each value decodes to its nearest codebook entry
    for key, section in (("scales", "scales"), ("sh0", "sh0")):
        code = np.asarray(meta[section]["codebook"], np.float64)
        v = ref[key].reshape(1500, 3).numpy()
        nearest = np.abs(v[..., None] - code).min(axis=-1)
        got = np.abs(d[key].detach().double().reshape(1500, 3).numpy() - v)
        assert np.allclose(got, nearest, atol=1e-6), key
        assert got.mean() < 0.01, key
    a_err = (torch.sigmoid(d["opacities"].double()) - torch.sigmoid(ref["opacities"])).abs()
    assert a_err.max() <= 0.5 / 255 + 1e-6
    qa = ref["quats"] / ref["quats"].norm(dim=1, keepdim=True)
    qd = d["quats"].detach().double()
    s = torch.sign((qa * qd).sum(dim=1, keepdim=True))
    # three 8-bit components of c * sqrt2 in [-1, 1]: half a step is 1/(255 sqrt2)
    assert (qd * s - qa).abs().max() <= 8e-3
    # SH palette of 1024 for 1500 vectors: most of the energy kept
    sh_err = (d["shN"].detach().double() - ref["shN"]).pow(2).mean().sqrt()
    assert sh_err < 0.5 * ref["shN"].pow(2).mean().sqrt()


def test_folder_form_matches_the_bundle(tmp_path):
    p = scene(n=400, degree=1)
    a = load_scene_file(save_scene_file(tmp_path / "b.sog", p, iterations=3))
    folder = tmp_path / "folder"
    folder.mkdir()
    meta = save_scene_file(folder / "meta.json", p, iterations=3)
    assert meta == folder / "meta.json" and (folder / "means_l.webp").is_file()
    for b in (load_scene_file(meta), load_scene_file(folder)):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_degree_zero_has_no_shN(tmp_path):
    p = scene(n=200, degree=0)
    path = save_sog(tmp_path / "z.sog", p)
    assert "shN" not in json.loads(zipfile.ZipFile(path).read("meta.json"))
    assert load_sog(path)["shN"].shape == (200, 0, 3)


def test_quantisers():
    rng = np.random.default_rng(0)
    v = rng.normal(size=5000)
    code, lab = quantize_1d(v)
    assert code.shape == (256,) and np.all(np.diff(code) >= 0) and lab.dtype == np.uint8
    # labels are the nearest entries, and 256 levels of a unit Gaussian are fine-grained
    assert np.array_equal(lab, np.abs(v[:, None] - code[None].astype(np.float64)).argmin(axis=1))
    assert np.abs(code[lab] - v).mean() < 0.01
    # k-means (Lloyd): labels are the nearest centroids, and it beats its random seeding
    x = rng.normal(size=(800, 6))
    c1, l1 = kmeans(x, 16, iterations=0, seed=0)
    c, labels = kmeans(x, 16, iterations=10, seed=0)
    d2 = ((x[:, None, :] - c[None].astype(np.float64)) ** 2).sum(-1)
    assert np.array_equal(labels, d2.argmin(axis=1))
    sse = lambda c, lab: float(((x - c[lab]) ** 2).sum())  # noqa: E731
    assert sse(c, labels) < 0.8 * sse(c1, l1)
