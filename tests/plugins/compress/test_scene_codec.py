"""Our scene codec (.slsc): quantisation bounds, significance = sum of alpha_i T_i, rate order
over the quality knob, a bitstream decoded identically in a fresh process, corrupt input ->
DataError, and the compress plugin's report on test views."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from splatlab.errors import DataError
from splatlab.plugins.base import PluginInputs
from splatlab.plugins.compress.scene_codec import (
    QUALITY_PRESETS,
    SceneCodecOptions,
    SceneCodecPlugin,
    decode_scene,
    encode_scene,
    significance,
)
from splatlab.rendering.random_scenes import random_scene
from splatlab.rendering.splats import render_splats
from splatlab.scene.datasets.base import Dataset, Frame

W, H = 48, 36


def scene(n: int = 1500, seed: int = 0):
    """Random Gaussians in view; their SH are 32 prototypes plus 1% noise (trained scenes'
    view-dependent colour clusters; i.i.d. random SH would be incompressible by any VQ)."""
    r = random_scene(n, W, H, sh_degree=3, seed=seed, coverage=3.0)
    g = torch.Generator().manual_seed(seed + 100)
    protos = torch.randn(32, 15, 3, generator=g) * 0.2
    sh = (
        protos[torch.randint(0, 32, (n,), generator=g)] + torch.randn(n, 15, 3, generator=g) * 0.002
    )
    params = {
        "means": r["means"],
        "scales": torch.log(r["scales"]),
        "quats": r["quats"],
        "opacities": torch.logit(r["opacities"]),
        "sh0": r["colors"][:, :1],
        "shN": sh,
    }
    return params, r["viewmats"], r["Ks"]


def matched(p, d):
    dist, idx = cKDTree(p["means"].numpy()).query(d["means"].detach().numpy())
    return torch.from_numpy(idx), dist


def test_round_trip_bounds_without_pruning():
    p, _, _ = scene()
    st = QUALITY_PRESETS[5]
    d = decode_scene(encode_scene(p, 5, prune=0.0, kmeans_iterations=3))
    assert d["means"].shape == (1500, 3) and d["shN"].shape == (1500, 15, 3)
    idx, dist = matched(p, d)
    assert len(set(idx.tolist())) == 1500
    ext = (p["means"].max(0).values - p["means"].min(0).values).double()
    # uniform quantisers: half a step of the range
    assert (
        (d["means"].double() - p["means"][idx].double()).abs()
        <= 0.5 * ext / (2**st.pos_bits - 1) + 1e-5
    ).all()
    srng = (p["scales"].max(0).values - p["scales"].min(0).values).double()
    assert (
        (d["scales"].double() - p["scales"][idx].double()).abs()
        <= 0.5 * srng / (2**st.scale_bits - 1) + 1e-5
    ).all()
    a_err = (torch.sigmoid(d["opacities"]) - torch.sigmoid(p["opacities"][idx])).abs().max()
    assert a_err <= 0.5 / 255 + 1e-6
    q0 = p["quats"][idx] / p["quats"][idx].norm(dim=1, keepdim=True)
    s = torch.sign((q0 * d["quats"]).sum(1, keepdim=True))
    assert (d["quats"] * s - q0).abs().max() < 2.5 * (2**0.5) / (2**st.rot_bits - 1)


def test_significance_is_the_blending_weight():
    """One Gaussian: its score is the summed alpha of its render; several: the scores add up to
    the summed alpha image (sum_i alpha_i T_i = 1 - prod (1 - alpha_i) per pixel)."""
    p, vm, K = scene(n=40, seed=2)
    cams = [(vm[0].numpy(), K[0].numpy(), W, H)]
    score = significance(p, cams)
    _, alpha, _ = render_splats(p, vm, K, W, H)
    assert score.sum() == pytest.approx(float(alpha.sum()), rel=1e-4)
    one = {k: v[:1] for k, v in p.items()}
    _, a1, _ = render_splats(one, vm, K, W, H)
    assert significance(one, cams)[0] == pytest.approx(float(a1.sum()), rel=1e-4)


def test_pruning_removes_what_no_view_sees():
    p, vm, K = scene(n=600, seed=3)
    hidden = {k: v.clone() for k, v in p.items()}
    hidden["means"][:300, 2] *= -1.0  # behind the camera
    d = decode_scene(
        encode_scene(
            hidden, 3, prune=0.5, cameras=[(vm[0].numpy(), K[0].numpy(), W, H)], kmeans_iterations=2
        )
    )
    assert d["means"].shape[0] == 300
    assert (d["means"][:, 2] > 0).all()


def test_quality_walks_the_rate():
    p, _, _ = scene()
    sizes = [len(encode_scene(p, q, kmeans_iterations=2)) for q in (1, 3, 5)]
    assert sizes[0] < sizes[1] < sizes[2]
    ply_bytes = 1500 * 62 * 4
    assert ply_bytes / sizes[1] > 10


def test_fresh_process_decodes_the_same(tmp_path):
    p, _, _ = scene(n=500)
    data = encode_scene(p, 3, kmeans_iterations=2)
    (tmp_path / "s.slsc").write_bytes(data)
    here = decode_scene(data)
    code = (
        "import sys, torch; from splatlab.plugins.compress.scene_codec import decode_scene;"
        "d = decode_scene(open(sys.argv[1], 'rb').read());"
        "torch.save({k: v.detach() for k, v in d.items()}, sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.slsc"), str(tmp_path / "d.pt")],
        check=True,
        timeout=120,
    )
    there = torch.load(tmp_path / "d.pt")
    for k in here:
        assert torch.equal(here[k].detach(), there[k]), k


def test_corrupt_bitstreams_raise_data_error():
    p, _, _ = scene(n=300)
    data = encode_scene(p, 2, kmeans_iterations=1)
    rng = np.random.default_rng(0)
    bad = [b"", data[:8], data[: len(data) // 2], b"XXXX" + data[4:], data + b"\0"]
    for pos in rng.integers(4, len(data), 16):  # header (CRC-32) and zstd streams (checksums)
        b = bytearray(data)
        b[pos] ^= 0x10
        bad.append(bytes(b))
    for blob in bad:
        with pytest.raises(DataError, match="bits.slsc"):
            decode_scene(blob, name="bits.slsc")


def _views_dataset(p, vm, K):
    """4 views (3 train, 1 test) of ``p`` with 0.01 noise as the "photos"."""
    g = torch.Generator().manual_seed(0)
    frames, views = [], []
    for c in range(4):
        v = vm[0].clone()
        v[:3, 3] = torch.randn(3, generator=g) * 0.05
        frames.append(Frame(name=f"v{c}", viewmat=v.double().numpy(), K=K[0].double().numpy(), width=W, height=H))
        with torch.no_grad():
            img = render_splats(p, v[None], K, W, H, backgrounds=torch.zeros(1, 3))[0][0]
        views.append((img + torch.randn(img.shape, generator=g) * 0.01).clamp(0, 1).numpy())
    return Dataset(root=Path("."), frames=frames, train_ids=[0, 1, 2], test_ids=[3],
                   image_loader=lambda i: views[i])


def _train_psnr(params, ds) -> float:
    from splatlab.rendering.metrics import psnr

    out = []
    for i in ds.train_ids:
        f = ds.frames[i]
        with torch.no_grad():
            img = render_splats(params, torch.as_tensor(f.viewmat, dtype=torch.float32)[None],
                                torch.as_tensor(f.K, dtype=torch.float32)[None], W, H,
                                backgrounds=torch.zeros(1, 3))[0][0].clamp(0, 1)
        out.append(float(psnr(img, torch.as_tensor(ds.load_image(i)))))
    return float(np.mean(out))


def test_finetune_after_pruning_recovers_the_views():
    """LightGaussian's recovery step: 40 steps on the training views win back part of what
    pruning 40 % of a random scene cost (measured: 39.9 dB full, 26.1 dB pruned, 30.5 dB after)."""
    from splatlab.plugins.compress.scene_codec import prune_and_finetune

    p, vm, K = scene(n=800, seed=5)
    ds = _views_dataset(p, vm, K)
    full = _train_psnr(p, ds)
    pruned = prune_and_finetune(p, ds, prune=0.4, steps=0)
    tuned = prune_and_finetune(p, ds, prune=0.4, steps=40)
    assert pruned["means"].shape[0] == tuned["means"].shape[0] == 480
    before, after = _train_psnr(pruned, ds), _train_psnr(tuned, ds)
    assert after > before + 2.0, (full, before, after)
    # the plugin with fine-tuning reports on the pruned, tuned, encoded scene
    rep = SceneCodecPlugin().run(PluginInputs(params=p, dataset=ds),
                                 SceneCodecOptions(quality=4, prune=0.4, kmeans_iterations=3, finetune_steps=20))
    assert rep.metrics["n_gaussians"] == 800 and rep.metrics["n_kept"] == 480
    assert rep.metrics["finetune_s"] > 0


def test_plugin_reports_size_ratio_and_test_psnr():
    p, vm, K = scene(n=800, seed=5)
    views = []
    g = torch.Generator().manual_seed(0)
    frames = []
    for c in range(4):
        v = vm[0].clone()
        v[:3, 3] = torch.randn(3, generator=g) * 0.05
        frames.append(
            Frame(
                name=f"v{c}", viewmat=v.double().numpy(), K=K[0].double().numpy(), width=W, height=H
            )
        )
        with torch.no_grad():
            img = render_splats(p, v[None], K, W, H, backgrounds=torch.zeros(1, 3))[0][0]
        views.append((img + torch.randn(img.shape, generator=g) * 0.01).clamp(0, 1).numpy())
    ds = Dataset(
        root=Path("."),
        frames=frames,
        train_ids=[0, 1, 2],
        test_ids=[3],
        image_loader=lambda i: views[i],
    )
    plugin = SceneCodecPlugin()
    assert plugin.kind == "compress" and plugin.accepts == ("scene",)
    calls = []
    rep = plugin.run(
        PluginInputs(params=p, dataset=ds),
        SceneCodecOptions(quality=4, prune=0.0, kmeans_iterations=3),
        lambda f, m="": calls.append(f),
    )
    m = rep.metrics
    assert m["size_bytes"] == len(rep.files["scene.slsc"])
    assert m["ratio_vs_ply"] > 8
    assert 35 < m["psnr_original"] < 45  # the 0.01 noise of the "ground truth"
    # no pruning: a random scene has no redundant Gaussians to drop (trained scenes do)
    assert m["psnr_loss_db"] < 1.0
    assert calls and max(calls) <= 1.0
    dec = decode_scene(rep.files["scene.slsc"])
    for k in dec:  # the reported scene IS the decode of the bytes
        assert torch.equal(dec[k], rep.scene[k])
    # the formats table: PLY, SPZ, compressed PLY and ours, each measured from its own file
    t = rep.tables["formats"]
    assert t["format"] == ["INRIA PLY", "SPZ v4", "compressed PLY", "slsc q4 (ours)"]
    assert t["size_kB"][-1] * 1e3 == m["size_bytes"] and t["ratio_vs_ply"][0] == 1.0
    assert t["size_kB"][1] < t["size_kB"][2] < t["size_kB"][0]  # SPZ < compressed PLY < PLY
    assert t["test_psnr_dB"][0] == pytest.approx(m["psnr_original"])
    assert all(p > 30 for p in t["test_psnr_dB"])
