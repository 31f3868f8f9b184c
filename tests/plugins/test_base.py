"""The Plugin contract: entry-point discovery, contract checks, uploads, the built-in stats plugin."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.plugins.base import (
    Plugin,
    PluginInputs,
    Report,
    check_upload,
    discover_plugins,
    load_plugin_class,
)
from splatlab.plugins.stats import StatsOptions, StatsPlugin


def _install_fake_dist(root: Path, body: str, entry: str) -> None:
    (root / "fake_splat_plugin.py").write_text(textwrap.dedent(body))
    dist = root / "fake_splat_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-splat-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[splatlab.plugins]\n{entry}\n")


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    _install_fake_dist(
        tmp_path,
        """
        from dataclasses import dataclass
        from splatlab.plugins.base import Plugin, Report

        @dataclass
        class O:
            k: int = 2

        class Good(Plugin):
            name = "good one"
            kind = "compress"
            Options = O

            def run(self, inputs, options, progress):
                return Report("good", metrics={"k2": options.k * 2})

        class NotAPlugin:
            name = "bad"
        """,
        "good = fake_splat_plugin:Good\nbroken = fake_splat_plugin:NotAPlugin\nmissing = no_such_module:X",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("fake_splat_plugin", None)


def test_discovery_through_entry_points(fake_dist):
    plugins, errors = discover_plugins()
    assert "view statistics" in plugins and plugins["view statistics"] is StatsPlugin
    assert "good one" in plugins
    good = plugins["good one"]()
    assert good.run(PluginInputs(), good.default_options(), lambda f, m="": None).metrics == {
        "k2": 4
    }
    by_name = {e.name: e for e in errors}
    assert set(by_name) == {"broken", "missing"}
    assert "not a subclass" in by_name["broken"].error
    assert "ModuleNotFoundError" in by_name["missing"].error


def test_contract_checks_and_duplicates():
    with pytest.raises(TypeError, match="module:ClassName"):
        load_plugin_class("splatlab.plugins.stats")
    plugins, errors = discover_plugins(extra=["splatlab.plugins.stats:StatsPlugin"])
    assert list(plugins).count("view statistics") == 1 and not [
        e for e in errors if "stats" in e.target
    ]

    class NoKind(Plugin):
        name = "x"
        kind = "paint"  # type: ignore[assignment]

    from splatlab.plugins import base

    with pytest.raises(TypeError, match="kind must be one of"):
        base._check_contract(NoKind, "t")


def test_check_upload_size_type_and_magic():
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    check_upload("a.png", png, (".png", ".jpg"), 1000)
    with pytest.raises(DataError, match="limit"):
        check_upload("a.png", png, (".png",), 50)
    with pytest.raises(DataError, match="not accepted"):
        check_upload("a.exe", b"MZ", (".png",), 1000)
    with pytest.raises(DataError, match="does not look like"):
        check_upload("fake.png", b"GIF89a....", (".png",), 1000)
    with pytest.raises(DataError, match="does not look like"):
        check_upload("p.json", b"{not json", (".json",), 1000)
    check_upload("p.json", b'{"a": 1}', (".json",), 1000)


def _params(n: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.randn(n, 3, generator=g) - 4.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2,
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 0, 3),
    }


def test_stats_plugin_histograms_are_exact():
    p = _params()
    calls = []
    rep = StatsPlugin().run(
        PluginInputs(params=p), StatsOptions(bins=17), lambda f, m="": calls.append(f)
    )
    assert isinstance(rep, Report) and calls[0] == 0.0 and calls[-1] == 1.0
    opac = torch.sigmoid(p["opacities"].double()).numpy()
    counts, _ = np.histogram(opac, bins=17, range=(0, 1))
    assert rep.tables["opacity_histogram"]["counts"] == counts.tolist()
    assert sum(rep.tables["log10_scale_histogram"]["counts"]) == 1000
    assert rep.metrics["opacity_median"] == pytest.approx(np.median(opac), rel=1e-12)
    log10_size = p["scales"].double().numpy().max(1) / np.log(10)
    assert rep.metrics["scale_median"] == pytest.approx(10 ** np.median(log10_size), rel=1e-9)
    assert set(rep.plots) == {"opacity_histogram", "log10_scale_histogram"} or rep.notes
    assert rep.to_json()["metrics"]["n_gaussians"] == 1000.0
    # selection subset
    mask = np.zeros(1000, bool)
    mask[:100] = True
    sub = StatsPlugin().run(
        PluginInputs(params=p, selection=mask), StatsOptions(subset="selection")
    )
    assert sub.metrics["n_gaussians"] == 100.0
    with pytest.raises(DataError, match="needs a scene"):
        StatsPlugin().run(PluginInputs(), StatsOptions())
