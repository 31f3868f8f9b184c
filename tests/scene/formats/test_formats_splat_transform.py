"""Interop with the real client, PlayCanvas ``splat-transform`` (npm), for PLY, SPZ (v3, v4),
compressed PLY and SOG: it reads every file we write and we read every file it writes.

Per file we compare OUR decode with ITS decode (it converts the file to an INRIA PLY, read with
load_ply): attributes agree to float rounding (both implement the same formulas), and renders of
the two decodes match (PSNR >= 45 dB). Against the original scene each attribute must stay within
its format's quantisation step (bounds below).

Needs node >= 22 and splat-transform; install them with
``npm install --prefix .tools @playcanvas/splat-transform@2.7.1 node@22`` (repo root), or point
SPLAT_TRANSFORM_DIR at another npm prefix holding them. Pinned to 2.7.1: it stores SPZ in the
spec's RUB frame as we do; splat-transform 3.x writes and reads SPZ bytes without the axis flip,
so its SPZ files appear turned 180 degrees about x to every RUB reader (ours, Niantic's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from splatlab.rendering.metrics import psnr
from splatlab.rendering.random_scenes import random_scene
from splatlab.rendering.splats import render_splats
from splatlab.scene.formats import load_scene_file, save_scene_file
from splatlab.scene.gaussians import load_ply, save_ply

REPO = Path(__file__).resolve().parents[3]
INSTALL = (
    "npm install --prefix .tools @playcanvas/splat-transform@2.7.1 node@22  (in the repo root)"
)


def _tool() -> tuple[str, str] | None:
    prefix = Path(os.environ.get("SPLAT_TRANSFORM_DIR", REPO / ".tools"))
    cli = prefix / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
    if not cli.is_file():
        return None
    node = prefix / "node_modules" / ".bin" / "node"
    candidates = [str(node)] if node.exists() else []
    if shutil.which("node"):
        candidates.append(shutil.which("node"))
    for exe in candidates:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
            if int(out.stdout.strip().lstrip("v").split(".")[0]) >= 22:
                return exe, str(cli)
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
    return None


TOOL = _tool()
pytestmark = pytest.mark.skipif(
    TOOL is None, reason=f"splat-transform with node >= 22 not found; install: {INSTALL}"
)


def st(*args: str | Path, cwd: Path) -> None:
    assert TOOL is not None
    cmd = [TOOL[0], TOOL[1], "-w", "-q", "-g", "cpu", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"


W, H, N = 64, 48, 2000


def make_original():
    """A few thousand random Gaussians filling a small camera's view, SH degree 3."""
    r = random_scene(N, W, H, sh_degree=3, seed=3, coverage=3.0)
    colors = r["colors"]
    params = {
        "means": r["means"],
        "scales": torch.log(r["scales"]),
        "quats": r["quats"],
        "opacities": torch.logit(r["opacities"]),
        "sh0": colors[:, :1],
        "shN": colors[:, 1:].clamp(-0.95, 0.95),
    }
    return params, r["viewmats"], r["Ks"]


@pytest.fixture(scope="module")
def original():
    return make_original()


def render(params, viewmats, Ks) -> torch.Tensor:
    with torch.no_grad():
        img, _, _ = render_splats({k: v.detach() for k, v in params.items()}, viewmats, Ks, W, H,
                                  backgrounds=torch.zeros(1, 3))  # fmt: skip
    return img.clamp(0, 1)


def agree(ours, theirs, atol=1e-5) -> None:
    """Same Gaussians in the same order, equal up to float32 rounding."""
    assert ours["means"].shape == theirs["means"].shape
    for k in ("means", "scales", "sh0", "shN"):
        assert torch.allclose(ours[k].detach(), theirs[k].detach(), atol=atol), k
    a_o, a_t = torch.sigmoid(ours["opacities"]), torch.sigmoid(theirs["opacities"])
    assert torch.allclose(a_o.detach(), a_t.detach(), atol=1e-5)
    qo = ours["quats"].detach() / ours["quats"].detach().norm(dim=1, keepdim=True)
    qt = theirs["quats"].detach() / theirs["quats"].detach().norm(dim=1, keepdim=True)
    assert torch.allclose(qo * torch.sign((qo * qt).sum(1, keepdim=True)), qt, atol=1e-5)


# format -> (suffix, extra splat-transform args, bounds of OUR files vs the original, overrides
# for ITS files). Keys: means (absolute), log scales, sh0, shN (max abs), shN_rms, alpha
# (sigmoid space), quats (components of the unit quaternion, sign-aligned).
_SPZ = dict(
    means=2.0**-13,  # 24-bit fixed point, 12 fractional bits
    scales=1 / 32,  # u8 of (s + 10) * 16
    sh0=0.5 / (0.15 * 255),  # u8 of f_dc * 0.15 * 255 + 127.5
    shN=8.5 / 128,  # 1/128 then 16-level buckets (4 bits; degree 1 has 5 bits)
    alpha=0.5 / 255,
    quats=2e-3,  # smallest three, 9-bit magnitudes of |c| / sqrt(1/2)
)
BOUNDS = {
    "spz4": (".spz", [], _SPZ, {}),
    "spz3": (".spz", ["--spz-version", "3"], _SPZ, {}),
    # 8 chunks of 256: 11-10-11 bits of each chunk's extent (~4 units here), colour 8 bits of
    # the chunk's range, SH bins of 8/256 decoded at their centre
    "compressed_ply": (
        ".compressed.ply", [],
        dict(means=0.002, scales=0.002, sh0=0.005, shN=4 / 256, alpha=0.5 / 255, quats=2e-3), {},
    ),
    # 16-bit log-space means; 256-level codebooks (measured max 0.0059 / 0.0062 here); a
    # palette of 1024 SH vectors for 2000 Gaussians of i.i.d. noise SH: only an RMS bound.
    # splat-transform truncates where we round (bytes of alpha, quaternion and means).
    "sog": (
        ".sog", ["-i", "3"],
        dict(means=2e-4, scales=0.01, sh0=0.01, shN_rms=0.2, alpha=0.5 / 255, quats=6.5e-3),
        dict(means=4e-4, alpha=1 / 255, quats=0.012),
    ),
}  # fmt: skip


def within(decoded, original, bound: dict) -> dict[str, float]:
    _, idx = cKDTree(original["means"].numpy()).query(decoded["means"].detach().numpy())
    assert len(set(idx.tolist())) == len(idx), "decoded Gaussians do not map 1:1 to the input"
    ref = {k: v[torch.from_numpy(idx)].double() for k, v in original.items()}
    dec = {k: v.detach().double() for k, v in decoded.items()}
    err = {k: float((dec[k] - ref[k]).abs().max()) for k in ("means", "scales", "sh0", "shN")}
    err["shN_rms"] = float((dec["shN"] - ref["shN"]).pow(2).mean().sqrt())
    err["alpha"] = float(
        (torch.sigmoid(dec["opacities"]) - torch.sigmoid(ref["opacities"])).abs().max()
    )
    qa = ref["quats"] / ref["quats"].norm(dim=1, keepdim=True)
    qd = dec["quats"] / dec["quats"].norm(dim=1, keepdim=True)
    err["quats"] = float((qd * torch.sign((qa * qd).sum(1, keepdim=True)) - qa).abs().max())
    for k, b in bound.items():
        assert err[k] <= b + 1e-6, f"{k}: error {err[k]:.3g} > bound {b:.3g}"
    return err


def test_ply_both_ways(tmp_path, original):
    params, viewmats, Ks = original
    save_ply(tmp_path / "ours.ply", params)
    st("ours.ply", "theirs.ply", cwd=tmp_path)
    back = load_ply(tmp_path / "theirs.ply")
    for k in params:
        assert torch.allclose(back[k].detach(), params[k], atol=1e-6), k


@pytest.mark.parametrize("fmt", list(BOUNDS))
def test_they_read_what_we_write(tmp_path, original, fmt):
    params, viewmats, Ks = original
    suffix, _, bound, _ = BOUNDS[fmt]
    opts = {"version": 3} if fmt == "spz3" else {"iterations": 4} if fmt == "sog" else {}
    path = save_scene_file(tmp_path / f"ours{suffix}", params, **opts)
    st(path.name, "decoded.ply", cwd=tmp_path)
    ours, theirs = load_scene_file(path), load_ply(tmp_path / "decoded.ply")
    agree(ours, theirs)
    within(ours, params, bound)
    a, b = render(ours, viewmats, Ks), render(theirs, viewmats, Ks)
    assert float(psnr(a, b).min()) >= 45.0
    # and the decode is close to the original's render (a sanity check of the whole chain;
    # SOG's SH palette loses most of this scene's i.i.d. noise SH, hence its lower floor)
    floor = {"sog": 20.0, "compressed_ply": 35.0}.get(fmt, 30.0)
    assert float(psnr(a, render(params, viewmats, Ks)).min()) >= floor


@pytest.mark.parametrize("fmt", list(BOUNDS))
def test_we_read_what_they_write(tmp_path, original, fmt):
    params, viewmats, Ks = original
    suffix, args, bound, theirs_bound = BOUNDS[fmt]
    save_ply(tmp_path / "in.ply", params)
    st(*args, "in.ply", f"theirs{suffix}", cwd=tmp_path)
    st(f"theirs{suffix}", "decoded.ply", cwd=tmp_path)
    ours, theirs = load_scene_file(tmp_path / f"theirs{suffix}"), load_ply(tmp_path / "decoded.ply")
    agree(ours, theirs)
    within(ours, params, {**bound, **theirs_bound})
    assert float(psnr(render(ours, viewmats, Ks), render(theirs, viewmats, Ks)).min()) >= 45.0


def test_sizes_are_comparable(tmp_path, original):
    """Our writers' files are within 10% of splat-transform's for the same scene (same layout,
    same entropy coders)."""
    params, _, _ = original
    save_ply(tmp_path / "in.ply", params)
    for fmt in ("spz4", "compressed_ply"):
        suffix, args, _, _ = BOUNDS[fmt]
        ours = save_scene_file(tmp_path / f"ours{suffix}", params)
        st(*args, "in.ply", f"theirs{suffix}", cwd=tmp_path)
        ratio = ours.stat().st_size / (tmp_path / f"theirs{suffix}").stat().st_size
        assert 0.9 < ratio < 1.1, (fmt, ratio)


def test_no_nan_inf_reaches_the_files(tmp_path, original):
    params, _, _ = original
    bad = {k: v.clone() for k, v in params.items()}
    bad["scales"][5, 0] = float("inf")
    for suffix in (".spz", ".compressed.ply", ".sog"):
        with pytest.raises(ValueError, match="non-finite"):
            save_scene_file(tmp_path / f"bad{suffix}", bad)
    kept = save_scene_file(tmp_path / "kept.spz", bad, drop_invalid=True)
    assert load_scene_file(kept)["means"].shape[0] == N - 1
    assert np.isfinite(load_scene_file(kept)["scales"].detach().numpy()).all()
