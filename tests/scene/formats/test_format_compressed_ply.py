"""PlayCanvas compressed PLY: layout, per-chunk quantisation bounds, and gsplat's exporter as an
independent writer of the same format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData
from scipy.spatial import cKDTree

from splatlab.rendering.sh import SH_C0
from splatlab.scene.formats import detect_format, load_scene_file
from splatlab.scene.formats.compressed_ply import (
    CHUNK_SIZE,
    load_compressed_ply,
    save_compressed_ply,
)


def scene(n: int = 700, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return {
        "means": torch.randn(n, 3, generator=g) * 2.0,
        "scales": torch.randn(n, 3, generator=g) * 0.5 - 4.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": (torch.rand(n, k, 3, generator=g) - 0.5) * 3.0,
    }


def matched(p, d):
    """Indices into p of each decoded Gaussian (the writer sorts in Morton order)."""
    _, idx = cKDTree(p["means"].numpy()).query(d["means"].detach().numpy())
    assert len(set(idx.tolist())) == len(idx)
    return torch.from_numpy(idx)


def test_layout_and_quantisation_bounds(tmp_path):
    p = scene()
    path = save_compressed_ply(tmp_path / "s.compressed.ply", p)
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["chunk", "vertex", "sh"]
    assert ply["chunk"].count == -(-700 // CHUNK_SIZE) and ply["vertex"].count == 700
    assert len(ply["sh"].properties) == 45 and ply["vertex"]["packed_color"].dtype == np.uint32
    d = load_compressed_ply(path)
    idx = matched(p, d)
    ref = {k: v[idx].double() for k, v in p.items()}
    chunk = {
        name: np.asarray(ply["chunk"][name], np.float64) for name in ply["chunk"].data.dtype.names
    }
    ci = np.arange(700) // CHUNK_SIZE

    def bound(prefix_lo, prefix_hi, axes, bits):
        return np.stack(
            [
                0.5 * (chunk[f"{prefix_hi}{a}"][ci] - chunk[f"{prefix_lo}{a}"][ci]) / (2**b - 1)
                for a, b in zip(axes, bits)
            ],
            axis=1,
        )

    # positions and log scales: 11-10-11 bit unorms of each chunk's range
    pos_b = bound("min_", "max_", "xyz", (11, 10, 11))
    assert ((d["means"].detach().double() - ref["means"]).abs().numpy() <= pos_b + 1e-5).all()
    sc_b = bound("min_scale_", "max_scale_", "xyz", (11, 10, 11))
    assert ((d["scales"].detach().double() - ref["scales"]).abs().numpy() <= sc_b + 1e-5).all()
    # DC colour 0.5 + SH_C0 f_dc: 8 bits of the chunk's colour range
    col_b = bound("min_", "max_", "rgb", (8, 8, 8)) / SH_C0
    sh0_err = (d["sh0"].detach().double() - ref["sh0"]).abs().reshape(700, 3).numpy()
    assert (sh0_err <= col_b + 1e-5).all()
    # opacity byte of sigmoid(opacity)
    a_err = (torch.sigmoid(d["opacities"].double()) - torch.sigmoid(ref["opacities"])).abs()
    assert a_err.max() <= 0.5 / 255 + 1e-6
    # SH bytes: bins of 8/256, decoded at the bin centre
    assert (d["shN"].detach().double() - ref["shN"]).abs().max() <= 8.0 / 256 * 0.5 + 1e-6
    # rotations 2-10-10-10: components in [-1/sqrt2, 1/sqrt2] on 10 bits
    qa = ref["quats"] / ref["quats"].norm(dim=1, keepdim=True)
    qd = d["quats"].detach().double()
    s = torch.sign((qa * qd).sum(dim=1, keepdim=True))
    assert (qd * s - qa).abs().max() <= 2e-3


def test_degree_zero_has_no_sh_element_and_is_detected_as_compressed(tmp_path):
    p = scene(n=300, degree=0)
    # a plain .ply name: the reader still knows it from the chunk element
    path = save_compressed_ply(tmp_path / "plain_name.ply", p)
    assert [e.name for e in PlyData.read(str(path)).elements] == ["chunk", "vertex"]
    assert detect_format(path) == "compressed_ply"
    d = load_scene_file(path)
    assert d["shN"].shape == (300, 0, 3)


def test_reads_gsplat_ply_compressed(tmp_path):
    """gsplat's exporter (an independent writer of the same format) -> our reader."""
    from gsplat.exporter import export_splats

    p = scene(n=512, degree=1)
    out = tmp_path / "gsplat.ply"
    try:
        export_splats(
            p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"],
            format="ply_compressed", save_to=str(out),
        )  # fmt: skip
    except (ImportError, ModuleNotFoundError) as e:  # its compressed writer may need extras
        pytest.skip(f"gsplat's ply_compressed exporter is unavailable: {e}")
    d = load_scene_file(out)
    idx = matched(p, d)
    assert (d["means"].detach() - p["means"][idx]).abs().max() < 0.01
    assert (d["scales"].detach() - p["scales"][idx]).abs().max() < 0.01
    assert (d["shN"].detach() - p["shN"][idx]).abs().max() <= 8.0 / 256 + 1e-6
    a_err = (torch.sigmoid(d["opacities"]) - torch.sigmoid(p["opacities"][idx])).abs().max()
    assert a_err <= 1.0 / 255 + 1e-6
