"""Methods as registered extensions: every strategy x appearance x fields combination trains in
one rasterization per step (or is refused when the config is built), stored runs reopen through
the registry alone, and a third-party method registered by a real entry point is found."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import splatlab.rendering.channels as channels
from splatlab.scene.checkpoint import load_scene
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training import registry
from splatlab.training.stored import open_stored
from splatlab.training.trainer import TrainConfig, Trainer, load_trainer


@pytest.fixture(scope="module")
def demo():
    return make_demo_scene(DemoConfig(n_views=8, width=40, height=30, n_points=400, supersample=1))


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(
        out=out, steps=20, refine_start_iter=5, refine_stop_iter=15, refine_every=5,
        reset_every=10**6, sh_degree=1, sh_degree_interval=5, checkpoint_every=10, device="cpu",
        mcmc_cap_max=600,
    )
    base.update(kw)
    return TrainConfig(**base)


def _configs() -> dict:
    from splatlab.methods.feature3dgs.config import FeatureConfig
    from splatlab.methods.gaussianshader.shader import ShaderConfig

    return {
        "shader": ShaderConfig(env_resolution=8, env_min_resolution=4),
        "features": FeatureConfig(teacher="labels", dim=3, labels_dim=16),
    }


def test_builtins_are_registered_through_entry_points() -> None:
    reg = registry.registered()
    assert set(reg["strategy"]) >= {"3dgs", "mcmc"}
    assert set(reg["appearance"]) >= {"sh", "gaussianshader"}
    assert "features" in reg["field"]
    with pytest.raises(registry.MethodError, match="unknown appearance 'nope'.*gaussianshader"):
        registry.resolve(TrainConfig(appearance="nope"))
    with pytest.raises(registry.MethodError, match="--method 'splat'"):
        registry.resolve(TrainConfig(method="splat"))


COMBOS = list(
    itertools.product(
        registry.names("strategy"), registry.names("appearance"), [(), *((f,) for f in registry.names("field"))]
    )
)


@pytest.mark.parametrize("strategy,appearance,fields", COMBOS)
def test_every_combination_trains_20_steps_in_one_pass_and_reopens(
    strategy: str, appearance: str, fields: tuple, demo, tmp_path: Path, monkeypatch
) -> None:
    cfg = _cfg(tmp_path / "run", strategy=strategy, appearance=appearance, fields=fields)
    tr = Trainer(demo, cfg, configs=_configs())
    assert (tr.components.strategy, tr.components.appearance, tr.components.fields) == (strategy, appearance, fields)
    calls = []
    real = channels.rasterize

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(channels, "rasterize", counting)
    i = demo.train_ids[0]
    vm, K, w, h = tr.camera(i)
    out = tr.forward(0, i, vm, K, w, h, 1, None)
    tr.compute_loss(0, out, tr.image(i)).backward()
    assert len(calls) == 1, "one rasterization per training step"
    for name in fields:
        assert name in out and out[name].shape[:2] == (h, w)
    for opt in [*tr.optimizers.values(), *tr.aux_optimizers()]:
        opt.zero_grad(set_to_none=True)
    monkeypatch.setattr(channels, "rasterize", real)
    result = tr.train()
    assert result.steps == 20 and torch.isfinite(tr.params["means"]).all()
    m = tr.evaluate(write_renders=False, lpips_net=None)
    assert m["psnr"] > 8.0  # 20 steps: far from converged, but a picture, not noise or NaN
    # the stored run reopens from config.json through the registry alone
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["components"] == {"strategy": strategy, "appearance": appearance, "fields": list(fields)}
    back = load_trainer(tmp_path / "run", dataset=demo)
    assert type(back.appearance) is type(tr.appearance) and back.step == 20
    assert [type(f) for f in back.fields] == [type(f) for f in tr.fields]
    for k in tr.params:
        assert torch.equal(back.params[k].detach(), tr.params[k].detach()), k
    with torch.no_grad():
        a, _, _ = tr.render(vm, K, w, h)
        b, _, _ = back.render(vm, K, w, h)
    assert torch.allclose(a, b, atol=1e-6)
    parts = open_stored(load_scene(tmp_path / "run"))
    assert (parts.render_fn is not None) == (appearance == "gaussianshader")
    assert (parts.feature_field is not None) == ("features" in fields)


def test_gaussianshader_with_features_from_the_cli_trains(tmp_path: Path, capsys) -> None:
    from splatlab.app.cli import main

    out = tmp_path / "gsf"
    argv = ["train", "demo", "--method", "gaussianshader", "--features", "labels", "--features.dim", "3",
            "--features.labels-dim", "16", "--steps", "20", "--checkpoint-every", "0", "--out", str(out),
            "--shader.env-resolution", "8", "--shader.env-min-resolution", "4", "--no-evaluate"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "appearance 'gaussianshader', fields features" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["components"]["fields"] == ["features"] and cfg["shader"]["env_resolution"] == 8
    assert (out / "feature_decoder.pt").is_file() and (out / "envmap.pt").is_file()


def _install_thirdparty_method(tmp_path: Path, monkeypatch) -> None:
    """A method package registered by a REAL entry point (a .dist-info on sys.path)."""
    pkg = tmp_path / "site"
    (pkg / "toy_method").mkdir(parents=True)
    (pkg / "toy_method" / "__init__.py").write_text(textwrap.dedent('''
        from splatlab.training.extension import Field

        class Glow(Field):
            """A per-Gaussian scalar rendered with the colour; refuses MCMC (for the test)."""
            name = "glow"
            description = "toy field"
            incompatible = ("mcmc",)

            def extra_channels(self):
                return {"glow": 1}

            def param_lrs(self):
                return {"glow": 1e-2}

            def channels(self, params):
                return {"glow": params["glow"]}
    '''))
    dist = pkg / "toy_method-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[splatlab.methods]\nglow = toy_method:Glow\n")
    monkeypatch.syspath_prepend(str(pkg))
    importlib.invalidate_caches()
    registry.registered.cache_clear()


def test_third_party_field_by_entry_point_trains_or_is_refused(demo, tmp_path: Path, monkeypatch) -> None:
    _install_thirdparty_method(tmp_path, monkeypatch)
    try:
        assert "glow" in registry.names("field")
        with pytest.raises(registry.MethodError, match="field 'glow' cannot be combined with mcmc"):
            Trainer(demo, _cfg(tmp_path / "refused", method="mcmc", fields=("glow",)))
        assert not (tmp_path / "refused").exists()  # refused before anything was written
        tr = Trainer(demo, _cfg(tmp_path / "glow", steps=5, fields=("glow",)))
        i = demo.train_ids[0]
        vm, K, w, h = tr.camera(i)
        out = tr.forward(0, i, vm, K, w, h, 0, None)
        assert out["glow"].shape == (h, w, 1)
        tr.train()
        assert load_trainer(tmp_path / "glow", dataset=demo).fields[0].name == "glow"
    finally:
        sys.modules.pop("toy_method", None)
        monkeypatch.undo()
        importlib.invalidate_caches()
        registry.registered.cache_clear()
    assert "glow" not in registry.names("field")
