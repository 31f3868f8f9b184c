"""GaussianShaderTrainer on a small demo scene (CPU): one rasterization per step, training,
export / reload, resume; the quality comparison with plain 3DGS is marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import splatlab.methods.gaussianshader.shader as ts
from splatlab.errors import DataError
from splatlab.methods.gaussianshader.shader import (
    ENVMAP_NPY,
    ENVMAP_PNG,
    ENVMAP_PT,
    SHADER_RENDER_MODES,
    ShaderConfig,
    export_buffers,
    load_shader_scene,
    load_shader_trainer,
    make_trainer,
)
from splatlab.scene.gaussians import load_ply
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def small_demo():
    return make_demo_scene(
        DemoConfig(n_views=16, width=80, height=60, n_points=1500, supersample=1)
    )


def _cfg(out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(
        out=out,
        steps=steps,
        refine_start_iter=40,
        refine_stop_iter=int(steps * 0.8),
        refine_every=40,
        reset_every=10_000,
        sh_degree_interval=max(steps // 2, 1),
        checkpoint_every=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _shader_cfg(**kw) -> ShaderConfig:
    base = dict(env_resolution=16, env_min_resolution=4)
    base.update(kw)
    return ShaderConfig(**base)


def test_one_rasterization_per_step_and_render_modes(
    small_demo, tmp_path: Path, monkeypatch
) -> None:
    tr = make_trainer(small_demo, _cfg(tmp_path / "run", 10), _shader_cfg())
    calls = []
    import splatlab.rendering.channels as channels

    real = channels.rasterize

    def counting(*a, **k):
        calls.append(k.get("render_mode"))
        return real(*a, **k)

    monkeypatch.setattr(channels, "rasterize", counting)
    i = small_demo.train_ids[0]
    vm, K, w, h = tr.camera(i)
    out = tr.forward(0, i, vm, K, w, h, 1, None)
    assert calls == ["RGB+ED"]
    assert out["img"].shape == (h, w, 3) and out["normal"].shape == (h, w, 3)
    assert out["depth"].shape == (h, w, 1) and out["alpha"].shape == (h, w, 1)
    loss = tr.compute_loss(0, out, tr.image(i))
    loss.backward()
    assert len(calls) == 1  # the losses (normal consistency included) need no second pass
    assert tr.appearance.env.base.grad is not None and float(tr.appearance.env.base.grad.abs().sum()) > 0
    for key in ("tint", "roughness", "normal_res", "sh0", "shN", "quats", "means"):
        assert tr.params[key].grad is not None and float(tr.params[key].grad.abs().sum()) > 0, key
    with torch.no_grad():
        for mode in ("RGB", "ED", "D", "RGB+ED", *SHADER_RENDER_MODES):
            img, alpha, _ = tr.render(vm, K, w, h, render_mode=mode)
            depth_like = mode in ("ED", "D")
            assert img.shape == (h, w, 1 if depth_like else 4 if mode == "RGB+ED" else 3), mode
            assert bool(torch.isfinite(img).all()), mode
        # the diffuse + specular + residual buffers add up to the colour (black background)
        d, _, _ = tr.render(vm, K, w, h, render_mode="diffuse")
        s, _, _ = tr.render(vm, K, w, h, render_mode="specular")
        r, a, _ = tr.render(vm, K, w, h, render_mode="residual")
        rgb, _, _ = tr.render(vm, K, w, h, render_mode="RGB", background=torch.zeros(3))
        assert torch.allclose(d + s + (r - 0.5 * a), rgb, atol=1e-4)
        env_img, _, _ = tr.render(vm, K, w, h, render_mode="environment")
        assert torch.allclose(
            env_img, torch.full_like(env_img, 0.5), atol=1e-6
        )  # the initial constant map
    with pytest.raises(ValueError, match="render_mode"):
        tr.render(vm, K, w, h, render_mode="albedo")


def test_shader_config_rejects_bad_values(small_demo, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="residual_sh_degree"):
        make_trainer(small_demo, _cfg(tmp_path / "r", 5), ShaderConfig(residual_sh_degree=4))
    with pytest.raises(ValueError, match="init_tint"):
        make_trainer(small_demo, _cfg(tmp_path / "r", 5), ShaderConfig(init_tint=1.0))
    with pytest.raises(ValueError, match="diffuse_activation"):
        make_trainer(small_demo, _cfg(tmp_path / "r", 5), ShaderConfig(diffuse_activation="relu"))
    with pytest.raises(ValueError, match="lambda_residual"):
        make_trainer(small_demo, _cfg(tmp_path / "r", 5), ShaderConfig(lambda_residual=-1.0))


def test_delayed_residual_and_extra_loss_terms(small_demo, tmp_path: Path) -> None:
    """residual_from_iter: the residual colour is zero before that step and back after it;
    the residual L2, environment TV and two-way normal loss add gradients where they should."""
    sc = _shader_cfg(
        residual_from_iter=5, lambda_residual=1.0, lambda_env_smooth=1.0, normal_loss_two_way=True
    )
    tr = make_trainer(small_demo, _cfg(tmp_path / "run", 10), sc)
    with torch.no_grad():
        tr.params["shN"].normal_(0.0, 0.2)
        tr.appearance.env.base.uniform_(0.2, 0.8)
    i = small_demo.train_ids[0]
    vm, K, w, h = tr.camera(i)
    tr.step = 2
    off = tr.appearance.render_buffers(tr.params, vm, K, w, h, 3, tr.background(), buffers=True)
    assert float(off["residual"].detach().abs().max()) == 0.0
    tr.step = 5
    on = tr.appearance.render_buffers(tr.params, vm, K, w, h, 3, tr.background(), buffers=True)
    assert float(on["residual"].detach().abs().max()) > 0.05
    for two_way in (True, False):
        tr.appearance.config.normal_loss_two_way = two_way
        out = tr.forward(5, i, vm, K, w, h, 3, None)
        out["depth"].retain_grad()
        tr.appearance.loss(tr, 5, out, tr.image(i)).backward()
        depth_grad = out["depth"].grad
        if two_way:  # only the normal term reads the depth
            assert depth_grad is not None and float(depth_grad.abs().sum()) > 0
        else:
            assert depth_grad is None or float(depth_grad.abs().sum()) == 0.0
    assert float(tr.params["shN"].grad.abs().sum()) > 0  # residual L2
    assert float(tr.appearance.env.base.grad.abs().sum()) > 0  # environment TV


def test_training_export_reload_and_resume(small_demo, tmp_path: Path) -> None:
    """120 steps (~15-25 s on 2 busy cores): PSNR rises well above the untrained render, the
    environment and the shading attributes move, the export reloads exactly, resume restores the
    environment map and its optimizer."""
    run = tmp_path / "run"
    tr = make_trainer(small_demo, _cfg(run, 120, checkpoint_every=60), _shader_cfg())
    before = tr.evaluate(write_renders=False, lpips_net=None)["psnr"]
    env0 = tr.appearance.env.base.detach().clone()
    tint0 = float(torch.sigmoid(tr.params["tint"].detach()).mean())
    result = tr.train()
    after = tr.evaluate(write_renders=False, lpips_net=None)["psnr"]
    assert after > before + 4.0, (before, after)
    assert float((tr.appearance.env.base.detach() - env0).abs().max()) > 0.05
    assert abs(float(torch.sigmoid(tr.params["tint"].detach()).mean()) - tint0) > 1e-3
    assert result.n_gaussians == len(tr.params["means"]) == len(tr.params["tint"])
    assert float(tr.appearance.env.base.detach().min()) >= 0.0 and float(tr.appearance.env.base.detach().max()) <= 1.0

    # export: INRIA PLY with SH DC = the diffuse colour and the shading extras; env map beside
    ply = run / "scene.ply"
    assert ply.is_file()
    for name in (ENVMAP_PT, ENVMAP_NPY, ENVMAP_PNG):
        assert (run / name).is_file(), name
    assert "shader" in json.loads((run / "config.json").read_text())
    plain = load_ply(ply)
    assert torch.equal(plain["sh0"], tr.params["sh0"].detach().cpu())
    params, env = load_shader_scene(ply)
    for key in ("means", "tint", "roughness", "normal_res", "shN"):
        assert torch.equal(params[key], tr.params[key].detach().cpu()), key
    assert torch.equal(env.base.detach(), tr.appearance.env.base.detach().cpu())
    png = iio.imread(run / ENVMAP_PNG)
    assert png.shape == (128, 256, 3)
    latlong = np.load(run / ENVMAP_NPY)
    assert np.allclose(latlong, tr.appearance.env.to_latlong(128).numpy(), atol=1e-6)

    # buffers as images
    files = export_buffers(tr, tmp_path / "buffers", ids=small_demo.test_ids[:1])
    assert sorted(p.name.split("_")[0] for p in files) == [
        "diffuse",
        "normals",
        "residual",
        "specular",
    ]

    # resume from the step-60 checkpoint restores the environment and the shading params
    back = load_shader_trainer(run, dataset=small_demo)
    assert back.step == 120
    assert torch.equal(back.appearance.env.base.detach(), tr.appearance.env.base.detach())
    assert torch.equal(back.params["roughness"].detach(), tr.params["roughness"].detach())
    assert (
        back.appearance.env_optimizer.state_dict()["state"][0]["step"]
        == tr.appearance.env_optimizer.state_dict()["state"][0]["step"]
    )
    with pytest.raises(DataError, match="GaussianShader"):
        load_shader_scene(_plain_ply(tmp_path, small_demo))

    # plugins see the scene as it was trained: their RGB is the shader's, not the plain SH
    from splatlab.app.viewer.source import load_source
    from splatlab.plugins.base import PluginInputs

    for where in (run, ply):
        inputs = PluginInputs.from_path(where)
        cam = inputs.camera
        if cam is None:  # a bare PLY has no cameras: use the run's first test view
            cam = PluginInputs.from_path(run).camera
        got = inputs.render(cam, "RGB").astype(np.float64)
        src = load_source(where, load_points=False)
        with torch.no_grad():
            ref, _, _ = src.render_fn(torch.as_tensor(cam.viewmat, dtype=torch.float32),
                                      torch.as_tensor(cam.K, dtype=torch.float32),
                                      cam.width, cam.height, render_mode="RGB")
        ref = (ref[..., :3].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8).astype(np.float64)
        from splatlab.plugins.base import make_scene_renderer

        sh_only = make_scene_renderer(inputs.params)(cam, "RGB").astype(np.float64)
        assert np.abs(got - ref).max() <= 1.0, where
        assert np.abs(sh_only - ref).mean() > 2.0, (where, np.abs(sh_only - ref).mean())


def _plain_ply(tmp_path: Path, ds) -> Path:
    t = Trainer(ds, _cfg(tmp_path / "plain", 1))
    return t.export_ply(tmp_path / "plain" / "scene.ply")


@pytest.mark.slow
def test_beats_3dgs_on_glossy_pixels(tmp_path: Path) -> None:
    """Issue 5's requirement: on the demo scene (default DemoConfig, 160x120, 48 views) at 600
    steps with the schedule of ``benchmarks/shading.py`` and 1 thread, GaussianShader with its
    default ShaderConfig beats plain 3DGS (its own defaults) on the glossy balls' pixels.

    Measured 2026-11-23 (2-core x86-64, 1 thread): 3DGS 22.59 dB, GaussianShader 22.78 dB
    (+0.19 dB); ~50 s + ~75 s of training. The previous defaults (residual SH degree 1) gave
    22.53 dB and fail this. 2026-12-01 (issue 18): deferred shading, tint / roughness learning
    rate 5e-2 and the two-way depth-normal loss give 25.30 dB (+2.71 dB; test PSNR 30.56 vs
    29.97; benchmarks/results/shading_env.md), so the bound is now 1 dB (the issue's goal). A reduced image
    size is NOT used: at 80x60 the issue-5 defaults lost (23.88 vs 23.96 dB)."""
    import numba

    ds = make_demo_scene()
    threads, nb_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)  # reductions in the order they were measured in
    numba.set_num_threads(1)
    try:
        glossy = {}
        for name in ("3dgs", "gaussianshader"):
            steps = 600
            cfg = TrainConfig(
                out=tmp_path / name,
                steps=steps,
                refine_start_iter=100,
                refine_stop_iter=int(steps * 0.8),
                refine_every=100,
                reset_every=10_000,
                sh_degree_interval=max(steps // 4, 1),
                checkpoint_every=0,
                device="cpu",
            )
            tr = (
                make_trainer(ds, cfg, ShaderConfig())
                if name == "gaussianshader"
                else Trainer(ds, cfg)
            )
            tr.train()
            glossy[name] = ts.shading_metrics(tr)["psnr_glossy"]
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(nb_threads)
    margin = glossy["gaussianshader"] - glossy["3dgs"]
    assert margin > 1.0, glossy


def test_a_run_stored_before_deferred_shading_resumes_with_its_own_shading(tmp_path):
    from splatlab.training.trainer import stored_train_config

    train = {"method": "gaussianshader", "steps": 10}
    old = {"train": train, "shader": {"lr_tint": 0.005, "env_resolution": 32}}
    _, configs = stored_train_config(old, tmp_path)
    cfg = configs["shader"]
    assert cfg.shading == "gaussian" and cfg.normal_loss_two_way is False
    assert cfg.lr_tint == 0.005 and cfg.env_resolution == 32
    new = {"train": train, "shader": {"shading": "deferred"}}
    assert stored_train_config(new, tmp_path)[1]["shader"].normal_loss_two_way is True
