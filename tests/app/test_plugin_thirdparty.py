"""A third-party plugin (tests/fixtures/thirdparty_plugin, pip-installed into a temp folder and
found through its real ``splatlab.plugins`` entry point) from ``splatlab plugin run`` (a
subprocess) and from its viewer panel (headless, callbacks pressed): the same report; its render
mode, selection, files and scene; jobs with progress, cancel, errors and one job per panel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from viewer_util import REPO_ROOT, free_port, install_thirdparty_plugin, make_scene_run

NAME = "thirdparty opacity"


class _Event:
    client = None
    target = None


def _press(handle) -> None:
    for cb in handle._impl.update_cb:
        cb(_Event())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = install_thirdparty_plugin(tmp_path_factory.mktemp("thirdparty"))
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for m in [m for m in sys.modules if m.startswith("splat_thirdparty_demo")]:
            del sys.modules[m]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_scene_run(tmp_path_factory.mktemp("tp_run") / "run", n_views=4)


@pytest.fixture(scope="module")
def viewer(site, run):
    from splatlab.app.viewer.server import Viewer, config_from

    v = Viewer(config_from(run, port=free_port(), load_points=False))
    try:
        yield v
    finally:
        v.stop()


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "splatlab.app.plugin_cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _expected(run: Path, threshold: float = 0.5):
    from splatlab.scene.checkpoint import load_scene

    params = load_scene(run).params
    op = torch.sigmoid(params["opacities"].detach().double()).numpy()
    return params, op, op > threshold


def test_entry_point_is_discovered_not_patched(site, capsys):
    from splatlab.plugins.base import discover_plugins

    plugins, errors = discover_plugins()
    assert NAME in plugins and not errors
    mod = sys.modules[plugins[NAME].__module__]
    assert Path(mod.__file__).resolve().is_relative_to(site.resolve())  # the installed copy
    from splatlab.app.plugin_cli import plugin_main

    assert plugin_main(["list", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert listed[NAME]["accepts"] == ["scene"] and listed[NAME]["kind"] == "inspect"
    assert "view statistics" in listed


def test_cli_and_viewer_panel_give_the_same_report(site, run, viewer, tmp_path):
    # headless: splatlab plugin run (the same function `splatlab plugin` calls)
    out = tmp_path / "out"
    r = _cli(site, "run", NAME, str(run), "--threshold", "0.5", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    cli = json.loads((out / "report.json").read_text())
    params, op, sel = _expected(run)
    assert cli["metrics"]["n_selected"] == float(sel.sum()) > 0
    assert np.array_equal(np.load(out / "selection.npy"), sel)
    assert np.array_equal(
        np.load(out / cli["outputs"]["files"]["opacities.npy"]), op.astype(np.float32)
    )
    from splatlab.scene.gaussians import load_ply

    back = load_ply(out / "scene.ply")
    assert back["means"].shape[0] == sel.sum()
    assert torch.equal(back["means"], params["means"].detach()[torch.from_numpy(sel)])

    # the viewer panel: the same plugin, Run pressed, the job's report
    v = viewer
    plugin = v.panel("Plugins").instances[NAME]
    ctx = v.context(NAME)
    from splatlab.plugins.panel import PanelContext

    # built-in tabs and plugins get the same contract
    assert set(v.panels) <= set(v.contexts) and NAME in v.contexts
    assert all(isinstance(c, PanelContext) for c in v.contexts.values())
    assert plugin.panel_handles["options"]["threshold"].value == 0.5
    _press(plugin.panel_handles["run"])
    assert ctx.last_job.wait(30) and ctx.last_job.state == "done"
    deadline = time.monotonic() + 10
    while ctx.last_report is None and time.monotonic() < deadline:
        time.sleep(0.05)
    panel = ctx.last_report.to_json()
    assert {k: v_ for k, v_ in cli.items() if k != "outputs"} == panel
    # its selection became the viewer's, its scene is shown beside the current one
    assert np.array_equal(v.selection(), sel)
    assert v.side is not None and v.side.params["means"].shape[0] == sel.sum()
    shown = v.displayed_params()
    assert shown["means"].shape[0] == op.size + sel.sum()
    assert float(v.side.params["means"][:, 0].min()) > float(
        torch.quantile(params["means"][:, 0].detach(), 0.98)
    )
    assert "beside" in v.status_text()
    from splatlab.app.viewer.render import ViewCamera

    c = v.source.cameras
    cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0])).scaled(64)
    both = v.render(cam, "RGB")
    assert v.render(cam, "selection").shape == both.shape == (cam.height, cam.width, 3)
    # the report's buttons: downloads of both files, scene instead / hide
    ctx.clear_scene()
    assert v.side is None and v.displayed_params()["means"].shape[0] == op.size
    ctx.show_scene(ctx.last_report.scene, "instead")
    assert v.source.n_gaussians == sel.sum()
    ctx.clear_scene()
    assert v.source.n_gaussians == op.size


def test_render_mode_added_by_the_plugin(site, run, viewer):
    from splatlab.app.viewer.render import ViewCamera
    from splatlab.plugins.panel import apply_colormap

    v = viewer
    mod = sys.modules[v.panel("Plugins").plugins[NAME].__module__]
    assert mod.MODE in v.modes and mod.MODE in v.context(NAME).render_modes()
    c = v.source.cameras
    cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0])).scaled(96)
    img = v.render(cam, mod.MODE)
    want = apply_colormap(mod.opacity_map(cam, v.displayed_params()), "viridis", (0.0, 1.0))
    assert img.shape == (cam.height, cam.width, 3) and np.array_equal(img, want)
    assert np.abs(img.astype(int) - v.render(cam, "RGB").astype(int)).mean() > 5
    # the View tab's menu follows: set_mode switches it, removing the mode falls back to RGB
    v.set_mode(mod.MODE)
    assert v.panel("View").mode.value == mod.MODE and mod.MODE in v.panel("View").mode.options
    with pytest.raises(ValueError, match="taken by a built-in"):
        v.context(NAME).add_render_mode("depth", mod.opacity_map)
    v.context(NAME).remove_render_mode(mod.MODE)
    assert mod.MODE not in v.modes and v.gui_values["mode"] == "RGB"
    assert v.panel("View").mode.value == "RGB"
    v.context(NAME).add_render_mode(mod.MODE, mod.opacity_map, "viridis", (0.0, 1.0))


def test_job_cancel_error_busy_and_rendering_meanwhile(site, run, viewer):
    from splatlab.app.viewer.render import ViewCamera

    v = viewer
    plugin = v.panel("Plugins").instances[NAME]
    ctx = v.context(NAME)
    opts = plugin.panel_handles["options"]
    before_report = ctx.last_report
    v.set_selection(None)
    opts["seconds"].value = 5.0
    _press(plugin.panel_handles["run"])
    job = ctx.last_job
    assert job.running and plugin.panel_handles["run"].disabled
    # renders while the job runs are not held up by it
    c = v.source.cameras
    cam = ViewCamera(c.viewmats[0], c.Ks[0], int(c.widths[0]), int(c.heights[0])).scaled(96)
    t0 = time.monotonic()
    for _ in range(3):
        v.render(cam, "RGB")
    assert time.monotonic() - t0 < 3.0 and job.running
    time.sleep(0.5)
    assert 0.0 < job.fraction < 0.5 and ctx._job_ui["bar"].visible
    # a second run in the same panel is refused while the first runs
    n_err = len(v.errors)
    with pytest.raises(Exception, match="already running"):
        ctx.run_job(lambda p: None)
    _press(ctx._job_ui["cancel"])
    t_cancel = time.monotonic()
    assert job.wait(2.0) and time.monotonic() - t_cancel < 1.0
    assert job.state == "cancelled" and ctx.last_report is before_report
    assert v.selection().all()  # a cancelled job applies nothing
    assert not ctx._job_ui["bar"].visible and not plugin.panel_handles["run"].disabled
    # an error becomes a notification; the server keeps serving
    opts["seconds"].value = 0.0
    opts["fail"].value = True
    _press(plugin.panel_handles["run"])
    assert ctx.last_job.wait(10) and ctx.last_job.state == "failed"
    mod = sys.modules[plugin.__module__]
    assert len(v.errors) == n_err + 1 and mod.FAIL_MESSAGE in v.errors[-1]
    assert urllib.request.urlopen(f"http://127.0.0.1:{v.port}/", timeout=5).status == 200
    opts["fail"].value = False
    _press(plugin.panel_handles["run"])
    assert ctx.last_job.wait(30) and ctx.last_job.state == "done"


def test_cli_errors_are_one_line_exit_2(site, run, tmp_path, capsys):
    from PIL import Image

    from splatlab.app.plugin_cli import plugin_main

    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img)
    out = tmp_path / "o"
    for args, needle in (
        (["run", NAME, str(bad), "--out", str(out)], "bad.ply"),
        (["run", NAME, str(tmp_path / "missing"), "--out", str(out)], "does not exist"),
        (["run", "no such plugin", str(run)], "no plugin named"),
        (["run", NAME, str(img), "--out", str(out)], "accepts scene"),
    ):
        capsys.readouterr()
        assert plugin_main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert not out.exists()  # nothing written on a refused input
