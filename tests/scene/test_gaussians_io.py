"""Gaussian parameters: initialisation, similarity transforms, PLY and .splat files.

gsplat's pure-PyTorch reference functions (SH evaluation, quaternion -> matrix) and its exporter
serve as independent references for conventions and file layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _quat_to_rotmat, _spherical_harmonics
from gsplat.exporter import export_splats
from plyfile import PlyData, PlyElement
from scipy.spatial.transform import Rotation

from splatlab.errors import DataError
from splatlab.scene.gaussians import (
    SH_C0,
    init_gaussians,
    load_ply,
    load_splat,
    random_init_points,
    rotate_sh,
    save_ply,
    save_splat,
    sh_degree_of,
    sh_to_rgb,
    transform_gaussians,
)


def random_scene(
    n: int = 64, degree: int = 3, seed: int = 0, extras: bool = True
) -> torch.nn.ParameterDict:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    t = {
        "means": torch.randn(n, 3, generator=g) * 2.0,
        "scales": torch.randn(n, 3, generator=g) - 3.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.5,
        "shN": torch.randn(n, k - 1, 3, generator=g) * 0.2,
    }
    if extras:
        t["features"] = torch.randn(n, 5, generator=g)
        t["roughness"] = torch.rand(n, 1, generator=g)
        t["tint"] = torch.rand(n, generator=g)  # a [N] extra
        t["normal_res"] = torch.randn(n, 2, 3, generator=g)  # a [N, 2, 3] extra
    return torch.nn.ParameterDict([(k, torch.nn.Parameter(v)) for k, v in t.items()])


def similarity(seed: int = 3, scale: float = 2.5, rotate: bool = True) -> np.ndarray:
    T = np.eye(4)
    R = Rotation.random(random_state=seed).as_matrix() if rotate else np.eye(3)
    T[:3, :3] = scale * R
    T[:3, 3] = [0.3, -1.2, 4.0]
    return T


def inria_names(k_rest: int) -> list[str]:
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k_rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def write_ply_columns(path: Path, columns: dict[str, np.ndarray], dtype: str = "<f4") -> None:
    names = list(columns)
    rec = np.empty(len(next(iter(columns.values()))), dtype=[(nm, dtype) for nm in names])
    for nm in names:
        rec[nm] = columns[nm]
    PlyData([PlyElement.describe(rec, "vertex")], byte_order="<").write(str(path))


def inria_columns(p: torch.nn.ParameterDict, normals: bool = True) -> dict[str, np.ndarray]:
    n = p["means"].shape[0]
    m = p["means"].detach().numpy()
    cols = {"x": m[:, 0], "y": m[:, 1], "z": m[:, 2]}
    if normals:
        cols.update({"nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n)})
    sh0 = p["sh0"].detach().numpy().reshape(n, 3)
    rest = p["shN"].detach().transpose(1, 2).reshape(n, -1).numpy()
    for i in range(3):
        cols[f"f_dc_{i}"] = sh0[:, i]
    for i in range(rest.shape[1]):
        cols[f"f_rest_{i}"] = rest[:, i]
    cols["opacity"] = p["opacities"].detach().numpy()
    for i in range(3):
        cols[f"scale_{i}"] = p["scales"].detach().numpy()[:, i]
    for i in range(4):
        cols[f"rot_{i}"] = p["quats"].detach().numpy()[:, i]
    return cols


# ------------------------------------------------------------------------------ initialisation


def test_init_gaussians_follows_gsplat_layout_and_values() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(300, 3)).astype(np.float32)
    rgb = rng.random((300, 3)).astype(np.float32)
    p = init_gaussians(
        pts,
        rgb,
        sh_degree=3,
        init_opacity=0.1,
        init_scale=0.5,
        extras={"features": 8, "roughness": 1},
    )
    assert list(p.keys()) == [
        "means",
        "scales",
        "quats",
        "opacities",
        "sh0",
        "shN",
        "features",
        "roughness",
    ]
    assert p["shN"].shape == (300, 15, 3) and p["sh0"].shape == (300, 1, 3)
    assert all(v.dtype == torch.float32 and v.requires_grad for v in p.values())
    assert torch.equal(p["means"], torch.from_numpy(pts))
    assert torch.allclose(sh_to_rgb(p["sh0"][:, 0]), torch.from_numpy(rgb), atol=1e-6)
    assert torch.count_nonzero(p["shN"]) == 0
    assert torch.allclose(torch.sigmoid(p["opacities"]), torch.full((300,), 0.1), atol=1e-6)
    assert torch.allclose(p["quats"].norm(dim=-1), torch.ones(300), atol=1e-6)
    assert p["features"].shape == (300, 8) and p["roughness"].shape == (300, 1)
    assert torch.count_nonzero(p["features"]) == 0
    # scale = init_scale * RMS distance to the 3 nearest neighbours, brute force
    d = torch.cdist(torch.from_numpy(pts).double(), torch.from_numpy(pts).double())
    d.fill_diagonal_(float("inf"))
    rms = d.topk(3, largest=False).values.pow(2).mean(dim=1).sqrt()
    expected = torch.log(0.5 * rms).float()
    assert torch.allclose(p["scales"], expected[:, None].expand(-1, 3), atol=1e-5)


def test_init_gaussians_is_seeded_and_handles_duplicates_and_uint8() -> None:
    pts = np.zeros((10, 3))
    pts[5:] = 1.0  # two clusters of five identical points
    rgb = np.full((10, 3), 255, dtype=np.uint8)
    a = init_gaussians(pts, rgb, sh_degree=1, seed=1)
    b = init_gaussians(pts, rgb, sh_degree=1, seed=1)
    c = init_gaussians(pts, rgb, sh_degree=1, seed=2)
    assert torch.equal(a["quats"], b["quats"]) and not torch.equal(a["quats"], c["quats"])
    assert torch.isfinite(a["scales"]).all()
    assert torch.allclose(a["scales"], torch.full((10, 3), 0.5 * math.log(1e-7)), atol=1e-5)
    assert torch.allclose(sh_to_rgb(a["sh0"]), torch.ones(10, 1, 3), atol=1e-6)
    # random colours when rgb is None: in [0, 1], seeded
    r1, r2 = init_gaussians(pts, None, seed=4), init_gaussians(pts, None, seed=4)
    assert torch.equal(r1["sh0"], r2["sh0"])
    rgb_r = sh_to_rgb(r1["sh0"])
    assert (rgb_r >= -1e-6).all() and (rgb_r <= 1 + 1e-6).all() and rgb_r.std() > 0.1


def test_init_gaussians_rejects_bad_points() -> None:
    with pytest.raises(DataError, match="at least 2 points"):
        init_gaussians(np.zeros((1, 3)))
    pts = np.random.default_rng(0).normal(size=(5, 3))
    pts[3, 1] = np.nan
    with pytest.raises(DataError, match="point 3"):
        init_gaussians(pts)
    with pytest.raises(ValueError, match="extra 'means'"):
        init_gaussians(np.random.default_rng(0).normal(size=(5, 3)), extras={"means": 2})


def test_random_init_points_box_and_seed() -> None:
    a = random_init_points(5000, extent=2.0, seed=7, center=(1.0, 0.0, -1.0))
    b = random_init_points(5000, extent=2.0, seed=7, center=(1.0, 0.0, -1.0))
    assert a.shape == (5000, 3) and a.dtype == np.float32 and np.array_equal(a, b)
    lo, hi = a.min(0), a.max(0)
    assert np.all(lo >= np.array([-1.0, -2.0, -3.0]) - 1e-6) and np.all(
        hi <= np.array([3.0, 2.0, 1.0]) + 1e-6
    )
    assert np.all(lo < np.array([-0.95, -1.95, -2.95])) and np.all(
        hi > np.array([2.95, 1.95, 0.95])
    )
    assert np.allclose(a.mean(0), [1.0, 0.0, -1.0], atol=0.06)


# ------------------------------------------------------------------------------ PLY round trips


def test_ply_round_trip_is_bitwise_exact_with_extras(tmp_path: Path) -> None:
    p = random_scene(n=97, degree=3)
    path = save_ply(tmp_path / "sub" / "scene.ply", p)
    q = load_ply(path)
    assert list(q.keys()) == list(p.keys())
    for k in p.keys():
        assert q[k].shape == p[k].shape, k
        assert torch.equal(q[k], p[k]), k
    assert not list((tmp_path / "sub").glob("*.tmp"))


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_ply_property_order_and_sh_degrees(tmp_path: Path, degree: int) -> None:
    p = random_scene(n=20, degree=degree, extras=False)
    save_ply(tmp_path / "s.ply", p)
    ply = PlyData.read(str(tmp_path / "s.ply"))
    k_rest = (degree + 1) ** 2 - 1
    assert [prop.name for prop in ply["vertex"].properties] == inria_names(k_rest)
    assert all(prop.val_dtype in ("f4", "<f4") for prop in ply["vertex"].properties)
    v = ply["vertex"]
    if k_rest:
        # channel-major f_rest: the first k_rest values are the red channel of shN
        red = np.stack([v[f"f_rest_{i}"] for i in range(k_rest)], axis=1)
        assert np.array_equal(red, p["shN"].detach().numpy()[:, :, 0])
        green0 = v[f"f_rest_{k_rest}"]
        assert np.array_equal(green0, p["shN"].detach().numpy()[:, 0, 1])
    assert np.array_equal(v["nx"], np.zeros(20, np.float32))
    q = load_ply(tmp_path / "s.ply")
    assert sh_degree_of(q) == degree
    assert torch.equal(q["shN"], p["shN"])


def test_reads_gsplat_exporter_ply(tmp_path: Path) -> None:
    p = random_scene(n=50, degree=3, extras=False)
    path = tmp_path / "gsplat.ply"
    export_splats(
        p["means"].detach(),
        p["scales"].detach(),
        p["quats"].detach(),
        p["opacities"].detach(),
        p["sh0"].detach(),
        p["shN"].detach(),
        format="ply",
        save_to=str(path),
    )
    q = load_ply(path)
    assert list(q.keys()) == ["means", "scales", "quats", "opacities", "sh0", "shN"]
    for k in p.keys():
        assert torch.equal(q[k], p[k]), k


def test_reads_nerfstudio_and_double_precision_layouts(tmp_path: Path) -> None:
    p = random_scene(n=40, degree=2, extras=False)
    write_ply_columns(tmp_path / "ns.ply", inria_columns(p))  # splatfacto export layout
    q = load_ply(tmp_path / "ns.ply")
    for k in p.keys():
        assert torch.equal(q[k], p[k]), k
    write_ply_columns(tmp_path / "f64.ply", inria_columns(p, normals=False), dtype="<f8")
    r = load_ply(tmp_path / "f64.ply")
    assert r["means"].dtype == torch.float32
    for k in p.keys():
        assert torch.equal(r[k], p[k]), k


def test_foreign_extra_properties_become_extras(tmp_path: Path) -> None:
    p = random_scene(n=12, degree=1, extras=False)
    cols = inria_columns(p)
    cols["feat_1"] = np.arange(12.0)
    cols["feat_0"] = -np.arange(12.0)
    cols["label"] = np.full(12, 3.0)
    write_ply_columns(tmp_path / "x.ply", cols)
    q = load_ply(tmp_path / "x.ply")
    assert q["feat"].shape == (12, 2) and q["label"].shape == (12,)
    assert torch.equal(q["feat"][:, 0], -torch.arange(12.0)) and torch.equal(
        q["feat"][:, 1], torch.arange(12.0)
    )


# ------------------------------------------------------------------------------ transforms


def test_transform_keeps_covariances_and_view_dependent_colour() -> None:
    p = random_scene(n=80, degree=3, extras=False)
    T = similarity()
    q = transform_gaussians(p, T)
    A = torch.from_numpy(T[:3, :3])
    R = torch.from_numpy(T[:3, :3] / 2.5)

    def cov(params: torch.nn.ParameterDict) -> torch.Tensor:
        Rm = _quat_to_rotmat(params["quats"].detach().double())
        M = Rm * torch.exp(params["scales"].detach().double())[:, None, :]
        return M @ M.transpose(1, 2)

    expected = A @ cov(p) @ A.T
    assert ((cov(q) - expected).abs().max() / expected.abs().max()) < 1e-5
    means = p["means"].detach().double() @ A.T + torch.from_numpy(T[:3, 3])
    assert torch.allclose(q["means"].double(), means, atol=1e-5)
    assert torch.allclose(q["quats"].norm(dim=-1), p["quats"].norm(dim=-1), rtol=1e-5)
    # colour seen along R d after == colour seen along d before (gsplat's own SH evaluation)
    dirs = torch.randn(80, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = _spherical_harmonics(3, dirs, torch.cat([p["sh0"], p["shN"]], 1).detach().double())
    after = _spherical_harmonics(
        3, dirs @ R.T, torch.cat([q["sh0"], q["shN"]], 1).detach().double()
    )
    assert (before - after).abs().max() < 1e-5
    # without the SH rotation the colours would differ a lot: the test can fail
    unrotated = _spherical_harmonics(
        3, dirs @ R.T, torch.cat([p["sh0"], p["shN"]], 1).detach().double()
    )
    assert (before - unrotated).abs().max() > 0.05


def test_rotate_sh_composes_and_inverts() -> None:
    shN = torch.randn(30, 15, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    R1 = Rotation.random(random_state=1).as_matrix()
    R2 = Rotation.random(random_state=2).as_matrix()
    both = rotate_sh(rotate_sh(shN, R1), R2)
    assert torch.allclose(both, rotate_sh(shN, R2 @ R1), atol=1e-10)
    assert torch.allclose(rotate_sh(rotate_sh(shN, R1), R1.T), shN, atol=1e-10)
    # a rotation keeps the energy of each band
    out = rotate_sh(shN, R1)
    for lo, hi in ((0, 3), (3, 8), (8, 15)):
        assert torch.allclose(out[:, lo:hi].pow(2).sum(1), shN[:, lo:hi].pow(2).sum(1), rtol=1e-10)


def test_ply_export_in_original_coordinates(tmp_path: Path) -> None:
    p = random_scene(n=60, degree=3)
    T = similarity()
    save_ply(tmp_path / "orig.ply", p, transform=T)
    file_params = load_ply(tmp_path / "orig.ply")  # original coordinates
    Tinv = np.linalg.inv(T)
    expected = p["means"].detach().double() @ torch.from_numpy(Tinv[:3, :3]).T + torch.from_numpy(
        Tinv[:3, 3]
    )
    assert torch.allclose(file_params["means"].double(), expected, atol=1e-5)
    assert torch.allclose(file_params["scales"], p["scales"] - math.log(2.5), atol=1e-5)
    back = load_ply(tmp_path / "orig.ply", transform=T)  # normalised again
    assert torch.allclose(back["means"], p["means"], atol=1e-5)
    assert torch.allclose(back["scales"], p["scales"], atol=1e-5)
    assert torch.allclose(back["shN"], p["shN"], atol=1e-5)
    dots = (back["quats"] * p["quats"]).sum(-1) / (
        back["quats"].norm(dim=-1) * p["quats"].norm(dim=-1)
    )
    assert torch.allclose(dots.abs(), torch.ones(60), atol=1e-5)
    for k in ("opacities", "sh0", "features", "roughness", "tint", "normal_res"):
        assert torch.equal(back[k], p[k]), k


def test_transform_rules(tmp_path: Path) -> None:
    p4 = random_scene(n=10, degree=4, extras=False)
    with pytest.raises(ValueError, match="degree 4"):
        save_ply(tmp_path / "a.ply", p4, transform=similarity())
    # scale + translation only: allowed for any SH degree, shN untouched
    save_ply(tmp_path / "b.ply", p4, transform=similarity(rotate=False))
    q = load_ply(tmp_path / "b.ply")
    assert torch.equal(q["shN"], p4["shN"])
    assert torch.allclose(q["scales"], p4["scales"] - math.log(2.5), atol=1e-6)
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="not a similarity"):
        transform_gaussians(p4, shear)
    with pytest.raises(ValueError, match="det > 0"):
        transform_gaussians(p4, np.diag([1.0, 1.0, -1.0, 1.0]))


# ------------------------------------------------------------------------------ PLY errors


def test_load_ply_errors_name_file_property_and_row(tmp_path: Path) -> None:
    p = random_scene(n=10, degree=1, extras=False)
    cols = inria_columns(p)
    del cols["opacity"]
    write_ply_columns(tmp_path / "noop.ply", cols)
    with pytest.raises(DataError, match=r"noop\.ply.*'opacity'"):
        load_ply(tmp_path / "noop.ply")

    cols = inria_columns(p)
    cols["scale_1"] = cols["scale_1"].copy()
    cols["scale_1"][7] = np.inf
    write_ply_columns(tmp_path / "inf.ply", cols)
    with pytest.raises(DataError, match=r"inf\.ply: property 'scale_1' is inf at row 7"):
        load_ply(tmp_path / "inf.ply")

    cols = inria_columns(p)
    del cols["f_rest_8"]  # 8 f_rest values: not 3 * ((d+1)^2 - 1)
    write_ply_columns(tmp_path / "rest.ply", cols)
    with pytest.raises(DataError, match="8 f_rest properties"):
        load_ply(tmp_path / "rest.ply")

    (tmp_path / "text.ply").write_text("this is not a ply file\n")
    with pytest.raises(DataError, match=r"text\.ply is not a readable PLY"):
        load_ply(tmp_path / "text.ply")

    save_ply(tmp_path / "ok.ply", p)
    data = (tmp_path / "ok.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) - 50])
    with pytest.raises(DataError, match=r"cut\.ply is not a readable PLY"):
        load_ply(tmp_path / "cut.ply")

    with pytest.raises(DataError, match="does not exist"):
        load_ply(tmp_path / "missing.ply")

    export_splats(
        *(p[k].detach() for k in ("means", "scales", "quats", "opacities", "sh0", "shN")),
        format="ply_compressed",
        save_to=str(tmp_path / "comp.ply"),
    )
    with pytest.raises(DataError, match="compressed PLY"):
        load_ply(tmp_path / "comp.ply")


def test_save_ply_refuses_or_drops_non_finite(tmp_path: Path) -> None:
    p = random_scene(n=10, degree=1)
    with torch.no_grad():
        p["means"][4, 0] = float("nan")
        p["features"][6, 2] = float("inf")
    with pytest.raises(DataError, match="2 of 10 Gaussians"):
        save_ply(tmp_path / "x.ply", p)
    assert not (tmp_path / "x.ply").exists()
    save_ply(tmp_path / "x.ply", p, drop_invalid=True)
    q = load_ply(tmp_path / "x.ply")
    keep = [i for i in range(10) if i not in (4, 6)]
    assert q["means"].shape[0] == 8
    assert torch.equal(q["features"], p["features"][keep])


def test_save_ply_failure_keeps_previous_file(tmp_path: Path) -> None:
    p = random_scene(n=10, degree=1, extras=False)
    save_ply(tmp_path / "s.ply", p)
    before = (tmp_path / "s.ply").read_bytes()
    bad = dict(p.items())
    bad["scale"] = torch.zeros(10, 3)  # 'scale_0' clashes with the INRIA names
    with pytest.raises(ValueError, match="clashes"):
        save_ply(tmp_path / "s.ply", bad)
    assert (tmp_path / "s.ply").read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.ply"]


# ------------------------------------------------------------------------------ .splat


def test_splat_round_trip_within_quantisation(tmp_path: Path) -> None:
    n = 200
    p = random_scene(n=n, degree=2, extras=False)
    with torch.no_grad():  # colours inside [0, 1] so the byte range does not clip
        p["sh0"].copy_(
            (torch.rand(n, 1, 3, generator=torch.Generator().manual_seed(5)) - 0.5) / SH_C0
        )
    path = save_splat(tmp_path / "s.splat", p)
    assert path.stat().st_size == 32 * n
    q = load_splat(path)
    assert q["shN"].shape == (n, 0, 3)
    importance = (
        torch.exp(p["scales"].double().sum(1)) * torch.sigmoid(p["opacities"].double())
    ).detach()
    order = torch.argsort(-importance, stable=True)
    assert torch.equal(q["means"], p["means"][order])
    assert torch.allclose(q["scales"], p["scales"][order], atol=1e-5)
    rgb_err = (sh_to_rgb(q["sh0"]) - sh_to_rgb(p["sh0"][order])).abs().max()
    assert rgb_err <= 0.5 / 255 + 1e-6
    alpha_err = (torch.sigmoid(q["opacities"]) - torch.sigmoid(p["opacities"][order])).abs().max()
    assert alpha_err <= 0.5 / 255 + 1e-6
    qn = p["quats"][order] / p["quats"][order].norm(dim=-1, keepdim=True)
    assert (q["quats"] - qn).abs().max() <= 1.0 / 128 + 1e-6
    q_importance = torch.exp(q["scales"].double().sum(1)) * torch.sigmoid(
        p["opacities"][order].double()
    )
    assert (q_importance[1:] <= q_importance[:-1] + 1e-12).all()


def test_reads_gsplat_splat_export(tmp_path: Path) -> None:
    n = 60
    p = random_scene(n=n, degree=1, extras=False)
    export_splats(
        *(p[k].detach() for k in ("means", "scales", "quats", "opacities", "sh0", "shN")),
        format="splat",
        save_to=str(tmp_path / "g.splat"),
    )
    q = load_splat(tmp_path / "g.splat")
    # gsplat sorts by Morton code: match Gaussians by their (exact) positions
    src = {tuple(m.tolist()): i for i, m in enumerate(p["means"].detach())}
    idx = torch.tensor([src[tuple(m.tolist())] for m in q["means"].detach()])
    assert sorted(idx.tolist()) == list(range(n))
    assert torch.allclose(q["scales"], p["scales"][idx], atol=1e-5)
    alpha_err = (torch.sigmoid(q["opacities"]) - torch.sigmoid(p["opacities"][idx])).abs().max()
    assert alpha_err <= 1.0 / 255 + 1e-6  # gsplat truncates
    clamped = sh_to_rgb(p["sh0"][idx]).clamp(0, 1)
    assert (sh_to_rgb(q["sh0"]) - clamped).abs().max() <= 1.0 / 255 + 1e-6


def test_load_splat_rejects_bad_sizes(tmp_path: Path) -> None:
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    with pytest.raises(DataError, match=r"bad\.splat.*multiple of 32"):
        load_splat(tmp_path / "bad.splat")
