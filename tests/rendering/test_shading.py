"""GaussianShader's building blocks: shortest-axis normals, cube-map filtering, the split-sum
BRDF table and the GGX prefilter (against brute-force Monte Carlo), gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splatlab.rendering.shading.brdf import lut_lookup, smith_g1, split_sum_lut
from splatlab.rendering.shading.envmap import (
    EnvironmentMap,
    cube_directions,
    cube_from_function,
    ggx_ndf,
    ggx_prefilter_matrix,
    sample_cube,
    texel_solid_angles,
)
from splatlab.rendering.shading.gaussianshader import (
    gaussian_normals,
    normals_from_depth,
    quat_to_rotmat,
    shade_gaussians,
    shade_pixels,
    shortest_axis,
)


def _quat_axis_angle(axis, angle_deg: float) -> torch.Tensor:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    h = math.radians(angle_deg) / 2
    return torch.tensor([[math.cos(h), *(math.sin(h) * a)]], dtype=torch.float64)


# ---------------------------------------------------------------------------- normals


def test_shortest_axis_analytic_cases() -> None:
    ident = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    n = shortest_axis(ident, torch.tensor([[1.0, 2.0, 0.1]], dtype=torch.float64))
    assert torch.allclose(n.abs(), torch.tensor([[0.0, 0, 1]], dtype=torch.float64))
    # 90 degrees about z: local x -> world y
    q = _quat_axis_angle([0, 0, 1], 90)
    n = shortest_axis(q, torch.tensor([[0.05, 1.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(n.abs(), torch.tensor([[0.0, 1, 0]], dtype=torch.float64), atol=1e-12)
    # 120 degrees about (1,1,1): x -> y, y -> z, z -> x. Row 0 of R is (0, 0, 1): taking the row
    # (the official code's issue #19) would give z; the column gives y.
    q = _quat_axis_angle([1, 1, 1], 120)
    R = quat_to_rotmat(q)[0]
    assert torch.allclose(R[0], torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-12)
    n = shortest_axis(q, torch.tensor([[0.01, 1.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(n, torch.tensor([[0.0, 1, 0]], dtype=torch.float64), atol=1e-12)


def test_shortest_axis_is_smallest_eigenvector_of_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(200, 4, generator=g, dtype=torch.float64)
    s = torch.rand(200, 3, generator=g, dtype=torch.float64) + 0.05
    R = quat_to_rotmat(q)
    cov = R @ torch.diag_embed(s**2) @ R.transpose(1, 2)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    n = shortest_axis(q, torch.log(s))
    cos = (n * evecs[:, :, 0]).sum(-1).abs()
    assert float(cos.min()) > 1 - 1e-9


def test_gaussian_normals_face_the_camera_and_residual_rotates_with_gaussian() -> None:
    means = torch.zeros(2, 3, dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    scales = torch.tensor([[1.0, 1.0, 0.01]] * 2, dtype=torch.float64)
    up = gaussian_normals(
        means, quats, scales, None, torch.tensor([0.3, 0.0, 5.0], dtype=torch.float64)
    )
    down = gaussian_normals(
        means, quats, scales, None, torch.tensor([0.3, 0.0, -5.0], dtype=torch.float64)
    )
    assert torch.allclose(up, torch.tensor([[0.0, 0, 1]] * 2, dtype=torch.float64))
    assert torch.allclose(down, torch.tensor([[0.0, 0, -1]] * 2, dtype=torch.float64))
    # a local residual tilts the normal; rotating the whole configuration rotates the result
    res = torch.tensor([[0.3, -0.2, 0.0]] * 2, dtype=torch.float64)
    cam = torch.tensor([0.5, 0.2, 4.0], dtype=torch.float64)
    n0 = gaussian_normals(means, quats, scales, res, cam)
    expected = torch.nn.functional.normalize(
        torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64), dim=0
    )
    assert torch.allclose(n0[0], expected, atol=1e-12)
    q = _quat_axis_angle([0.2, 1.0, -0.4], 70)
    Rg = quat_to_rotmat(q)[0]
    from splatlab.scene.gaussians import _quat_multiply

    quats_r = _quat_multiply(q.expand(2, 4), quats)
    n1 = gaussian_normals(means, quats_r, scales, res, Rg @ cam)
    assert torch.allclose(n1, n0 @ Rg.T, atol=1e-12)


def test_normals_from_depth_of_a_tilted_plane() -> None:
    H, W = 40, 50
    K = torch.tensor([[60.0, 0, 25], [0, 60, 20], [0, 0, 1]], dtype=torch.float64)
    n_cam = torch.nn.functional.normalize(
        torch.tensor([0.3, -0.4, -1.0], dtype=torch.float64), dim=0
    )
    d0 = 3.0  # plane n . x = -d0 in camera space, facing the camera
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) + 0.5,
        torch.arange(W, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    rays = torch.stack([(u - 25) / 60, (v - 20) / 60, torch.ones_like(u)], -1)
    depth = -d0 / (rays @ n_cam)  # z of the ray-plane intersection
    Rw = quat_to_rotmat(_quat_axis_angle([1, 2, 3], 40))[0]
    vm = torch.eye(4, dtype=torch.float64)
    vm[:3, :3] = Rw
    vm[:3, 3] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    n, valid = normals_from_depth(depth, vm, K)
    assert bool(valid.all())
    assert torch.allclose(n, (Rw.T @ n_cam).expand(H, W, 3), atol=1e-9)


# ---------------------------------------------------------------------------- cube maps


def _smooth_env(d: np.ndarray) -> np.ndarray:
    b = np.array([0.48, -0.6, 0.64])
    b = b / np.linalg.norm(b)
    blob = np.clip(d @ b, 0, 1) ** 6
    return np.stack(
        [0.3 + 0.7 * blob, 0.2 + 0.3 * (d[:, 2] + 1) / 2, 0.5 + 0.4 * d[:, 0] * d[:, 1]], 1
    )


def test_texel_solid_angles_cover_the_sphere() -> None:
    for R in (1, 4, 16):
        assert abs(float(texel_solid_angles(R).sum()) - 4 * math.pi) < 1e-9


def test_sample_cube_exact_at_texels_and_seamless() -> None:
    R = 16
    tex = cube_from_function(_smooth_env, R, torch.float64)
    dirs = cube_directions(R, torch.float64).reshape(-1, 3)
    assert torch.allclose(sample_cube(tex, dirs), tex.reshape(-1, 3), atol=1e-12)
    # random directions (many near seams and corners): bilinear error stays that of the interior
    g = torch.Generator().manual_seed(1)
    d = torch.nn.functional.normalize(
        torch.randn(20000, 3, generator=g, dtype=torch.float64), dim=1
    )
    err = (sample_cube(tex, d) - torch.from_numpy(_smooth_env(d.numpy()))).abs()
    a = d.abs().sort(dim=1).values
    near_seam = (a[:, 2] - a[:, 1]) < 0.02
    assert int(near_seam.sum()) > 100
    assert float(err.max()) < 0.03
    assert float(err[near_seam].mean()) < 2.0 * float(err[~near_seam].mean()) + 1e-3
    # continuity across an edge: the two sides of a seam agree
    eps = 1e-7
    e1 = torch.tensor([[1.0, 0.3, 1.0 - eps], [1.0 - eps, -0.7, 1.0]], dtype=torch.float64)
    e2 = torch.tensor([[1.0 - eps, 0.3, 1.0], [1.0, -0.7, 1.0 - eps]], dtype=torch.float64)
    assert torch.allclose(sample_cube(tex, e1), sample_cube(tex, e2), atol=1e-5)


# ---------------------------------------------------------------------------- split sum


def _mc_directional_albedo(nv: float, r: float, n: int, seed: int) -> tuple[float, float]:
    """Brute force: uniform hemisphere sampling of f(l, v) (n.l) with F0 = 1 and F0 = 0."""
    rng = np.random.default_rng(seed)
    u1, u2 = rng.random(n), rng.random(n)
    z = u1
    s = np.sqrt(1 - z * z)
    l = np.stack([s * np.cos(2 * np.pi * u2), s * np.sin(2 * np.pi * u2), z], 1)
    v = np.array([math.sqrt(1 - nv * nv), 0.0, nv])
    h = l + v
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    nh, vh, nl = h[:, 2], h @ v, l[:, 2]
    a = r * r
    D = a * a / (np.pi * (nh * nh * (a * a - 1) + 1) ** 2)
    G = smith_g1(nv, r) * smith_g1(nl, r)
    spec = D * G / (4 * nl * nv) * nl * 2 * np.pi  # / pdf (1 / 2 pi)
    fc = (1 - vh) ** 5
    return float((spec * (1 - fc)).mean()), float((spec * fc).mean())


@pytest.mark.parametrize("r", [0.3, 0.55, 0.8])
def test_split_sum_lut_matches_brute_force(r: float) -> None:
    size = 32
    lut = split_sum_lut(size)
    for nv in (0.3, 0.7, 0.95):
        # lookup at an arbitrary point (bilinear between table cells)
        ab = lut_lookup(lut, torch.tensor([nv]), torch.tensor([r]))[0]
        A, B = _mc_directional_albedo(nv, r, 400_000, seed=int(nv * 100 + r * 10))
        assert abs(float(ab[0]) - A) < 0.012 + 0.03 * A, (nv, r, float(ab[0]), A)
        assert abs(float(ab[1]) - B) < 0.006 + 0.05 * B, (nv, r, float(ab[1]), B)
    assert float(lut.sum(-1).max()) <= 1.0 + 1e-3  # energy conservation


def _mc_prefiltered(
    tex: torch.Tensor, n: torch.Tensor, r: float, count: int, seed: int
) -> torch.Tensor:
    """Karis' estimator of the prefiltered radiance with v = n: GGX-importance-sampled h,
    l = reflect(-n, h), radiance weighted by n.l, the same bilinear texture lookup."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(count, 2, generator=g, dtype=torch.float64)
    a = r * r
    cos_h = torch.sqrt((1 - u[:, 1]) / (1 + (a * a - 1) * u[:, 1]))
    sin_h = torch.sqrt(1 - cos_h**2)
    phi = 2 * math.pi * u[:, 0]
    t = torch.nn.functional.normalize(
        torch.linalg.cross(n, torch.tensor([0.31, 0.77, 0.55], dtype=torch.float64)), dim=0
    )
    b = torch.linalg.cross(n, t)
    h = sin_h[:, None] * (phi.cos()[:, None] * t + phi.sin()[:, None] * b) + cos_h[:, None] * n
    l = 2 * (h @ n)[:, None] * h - n
    nl = (l @ n).clamp_min(0)
    L = sample_cube(tex, l)
    return (L * nl[:, None]).sum(0) / nl.sum()


@pytest.mark.parametrize("r", [0.25, 0.5, 1.0])
def test_ggx_prefilter_matches_monte_carlo(r: float) -> None:
    R = 16
    tex = cube_from_function(_smooth_env, R, torch.float64)
    W = ggx_prefilter_matrix(R, r, dtype=torch.float64)
    filt = (W @ tex.reshape(-1, 3)).reshape(6, R, R, 3)
    dirs = cube_directions(R, torch.float64)
    rows = torch.sum(W.to_dense(), 1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-9)
    errs = []
    for k, (f, i, j) in enumerate([(0, 3, 5), (2, 8, 8), (4, 12, 1), (5, 7, 15), (3, 0, 0)]):
        n = dirs[f, i, j]
        ref = _mc_prefiltered(tex, n, r, 200_000, seed=k)
        errs.append(float((filt[f, i, j] - ref).abs().max()))
    assert max(errs) < 0.01, errs
    # the filter really blurs: the blob's peak drops with roughness
    assert float(filt[..., 0].max()) < float(tex[..., 0].max()) - (0.05 if r >= 0.5 else 0.01)


def test_environment_mips_and_lookup_by_roughness() -> None:
    base = cube_from_function(_smooth_env, 16, torch.float32)
    env = EnvironmentMap(16, 4, base=base)
    assert env.level_resolutions == [16, 8, 4]
    assert env.level_roughness == pytest.approx([0.08, 0.5, 1.0])
    mips = env.build_mips()
    g = torch.Generator().manual_seed(2)
    d = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=1)
    for lv, r in enumerate(env.level_roughness):
        got = env.specular(d, torch.full((500,), r), mips)
        assert torch.allclose(got, sample_cube(mips[lv], d), atol=1e-6)
    mid = 0.5 * (env.level_roughness[0] + env.level_roughness[1])
    got = env.specular(d, torch.full((500,), mid), mips)
    assert torch.allclose(got, 0.5 * (sample_cube(mips[0], d) + sample_cube(mips[1], d)), atol=1e-6)
    # level 1 (roughness 0.5, 8x8) agrees with Monte Carlo of the 2x2-averaged base
    src = base.reshape(6, 8, 2, 8, 2, 3).mean((2, 4)).double()
    ref = _mc_prefiltered(src, d[0].double(), 0.5, 100_000, 3)
    got = env.specular(d[:1], torch.tensor([0.5]), mips)[0].detach().double()
    assert float((got - ref).abs().max()) < 0.02


# ---------------------------------------------------------------------------- gradients


def test_gradients_reach_every_shading_attribute_and_the_environment() -> None:
    g = torch.Generator().manual_seed(3)
    N = 64
    params = {
        "means": torch.randn(N, 3, generator=g) * 0.5,
        "scales": torch.log(torch.rand(N, 3, generator=g) * 0.1 + 0.01),
        "quats": torch.randn(N, 4, generator=g),
        "opacities": torch.zeros(N),
        "sh0": torch.randn(N, 1, 3, generator=g) * 0.3,
        "shN": torch.randn(N, 3, 3, generator=g) * 0.1,
        "tint": torch.randn(N, 3, generator=g),
        "roughness": torch.randn(N, 1, generator=g),
        "normal_res": torch.randn(N, 3, generator=g) * 0.1,
    }
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}
    base = cube_from_function(_smooth_env, 8, torch.float32)
    env = EnvironmentMap(8, 2, base=base)
    lut = split_sum_lut(16)
    sh = shade_gaussians(params, torch.tensor([0.2, -3.0, 1.0]), env, lut, sh_degree=1)
    target = torch.rand(N, 3, generator=g)
    ((sh.color - target) ** 2).sum().backward()
    for key in ("means", "quats", "sh0", "shN", "tint", "roughness", "normal_res"):
        grad = params[key].grad
        assert grad is not None and float(grad.abs().sum()) > 0, key
        assert bool(torch.isfinite(grad).all()), key
    assert env.base.grad is not None and int((env.base.grad != 0).sum()) > 10
    assert params["scales"].grad is None  # only the ORDER of the scales picks the normal
    # specular is exactly tint-linear plus the B term
    with torch.no_grad():
        sh2 = shade_gaussians(params, torch.tensor([0.2, -3.0, 1.0]), env, lut, sh_degree=0)
        assert torch.allclose(sh2.color, sh2.diffuse + sh2.specular, atol=1e-6)
        assert torch.allclose(sh2.residual, torch.zeros_like(sh2.residual))


def test_tint_models_official_and_paper() -> None:
    """ "official": L (tint A + B), a Gaussian cannot switch its reflection off; "paper":
    tint L (A + B), zero tint means zero specular; both agree when tint = 1."""
    g = torch.Generator().manual_seed(5)
    N = 32
    params = {
        "means": torch.randn(N, 3, generator=g) * 0.5,
        "scales": torch.log(torch.rand(N, 3, generator=g) * 0.1 + 0.01),
        "quats": torch.randn(N, 4, generator=g),
        "sh0": torch.zeros(N, 1, 3),
        "shN": torch.zeros(N, 3, 3),
        "tint": torch.full((N, 3), -30.0),  # sigmoid -> 0
        "roughness": torch.randn(N, 1, generator=g),
        "normal_res": torch.zeros(N, 3),
    }
    env = EnvironmentMap(8, 2, base=cube_from_function(_smooth_env, 8, torch.float32))
    lut = split_sum_lut(16)
    cam = torch.tensor([0.2, -3.0, 1.0])
    off = shade_gaussians(params, cam, env, lut, 0, tint_model="official")
    pap = shade_gaussians(params, cam, env, lut, 0, tint_model="paper")
    assert float(off.specular.detach().mean()) > 1e-3  # the B term
    assert float(pap.specular.detach().abs().max()) < 1e-9
    params["tint"] = torch.full((N, 3), 30.0)  # sigmoid -> 1
    off = shade_gaussians(params, cam, env, lut, 0, tint_model="official")
    pap = shade_gaussians(params, cam, env, lut, 0, tint_model="paper")
    assert torch.allclose(off.specular, pap.specular, atol=1e-6)
    with pytest.raises(ValueError, match="tint_model"):
        shade_gaussians(params, cam, env, lut, 0, tint_model="nvdiffrec")


def test_ggx_ndf_normalised() -> None:
    # integral of D(h) (n.h) over the hemisphere is 1
    for r in (0.2, 0.5, 0.9):
        t = torch.linspace(0, math.pi / 2, 200_001, dtype=torch.float64)
        f = ggx_ndf(t.cos(), r * r) * t.cos() * t.sin() * 2 * math.pi
        assert abs(float(torch.trapezoid(f, t)) - 1.0) < 1e-4


def test_ambient_term_and_sigmoid_diffuse() -> None:
    """The authors' ambient ``(1 - tint) E(n)`` (E = the roughness-1 level, the cosine-weighted
    irradiance / pi): a constant environment c gives exactly (1 - tint) c; a bright sky over a
    dark ground lights up-facing normals more. ``sigmoid(raw - log 3)`` diffuse as in their code."""
    g = torch.Generator().manual_seed(11)
    N = 16
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(N, 1)  # shortest axis = z (scales below)
    params = {
        "means": torch.randn(N, 3, generator=g) * 0.1,
        "scales": torch.log(torch.tensor([[0.1, 0.1, 0.001]]).repeat(N, 1)),
        "quats": quats,
        "sh0": torch.randn(N, 1, 3, generator=g) * 0.3,
        "shN": torch.zeros(N, 3, 3),
        "tint": torch.randn(N, 3, generator=g),
        "roughness": torch.randn(N, 1, generator=g),
        "normal_res": torch.zeros(N, 3),
    }
    lut = split_sum_lut(16)
    const = EnvironmentMap(8, 2, base=torch.full((6, 8, 8, 3), 0.3))
    above, below = torch.tensor([0.0, 0.0, 3.0]), torch.tensor([0.0, 0.0, -3.0])
    plain = shade_gaussians(params, above, const, lut, 0)
    amb = shade_gaussians(params, above, const, lut, 0, ambient=True)
    tint = torch.sigmoid(params["tint"])
    assert torch.allclose(amb.diffuse - plain.diffuse, (1 - tint) * 0.3, atol=1e-4)
    assert torch.allclose(amb.specular, plain.specular)
    sky = EnvironmentMap(
        8, 2, base=cube_from_function(lambda d: np.repeat((d[:, 2:3] > 0) * 1.0, 3, 1), 8)
    )
    up = shade_gaussians(params, above, sky, lut, 0, ambient=True)  # normals turn to +z
    down = shade_gaussians(params, below, sky, lut, 0, ambient=True)  # ... and to -z
    e_up = (up.diffuse - plain.diffuse) / (1 - tint)
    e_down = (down.diffuse - plain.diffuse) / (1 - tint)
    assert float(e_up.detach().min()) > 0.8 and float(e_down.detach().max()) < 0.2
    sig = shade_gaussians(params, above, const, lut, 0, diffuse_activation="sigmoid")
    raw = params["sh0"][:, 0] * 0.28209479177387814 + 0.5
    assert torch.allclose(sig.diffuse, torch.sigmoid(raw - math.log(3.0)), atol=1e-6)
    with pytest.raises(ValueError, match="diffuse_activation"):
        shade_gaussians(params, above, const, lut, 0, diffuse_activation="relu")


def test_deferred_pixel_shading_mirror() -> None:
    """shade_pixels: a camera on +x looking down -x at a mirror facing +x sees the environment
    behind itself (+x); a constant environment c gives c (tint A + B); premultiplied buffers are
    un-premultiplied (alpha 0.5 -> half the light), empty pixels get nothing."""
    H = W = 8
    K = torch.tensor([[20.0, 0, W / 2], [0, 20.0, H / 2], [0, 0, 1]])
    # camera at (3, 0, 0) looking along -x: camera z = -x, x = +y, y = -z (world-to-camera R)
    R = torch.tensor([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]])
    vm = torch.eye(4)
    vm[:3, :3] = R
    vm[:3, 3] = -(R @ torch.tensor([3.0, 0, 0]))
    alpha = torch.ones(H, W, 1)
    alpha[0] = 0.5
    alpha[-1] = 0.0
    normal = torch.tensor([1.0, 0, 0]).expand(H, W, 3) * alpha
    tint = torch.full((H, W, 3), 0.9) * alpha
    rough = torch.full((H, W, 1), 0.08) * alpha
    lut = split_sum_lut(16)
    half = EnvironmentMap(8, 2, base=cube_from_function(lambda d: np.repeat((d[:, :1] > 0) * 1.0, 3, 1), 8))
    spec, amb = shade_pixels(normal, tint, rough, alpha, vm, K, half, lut)
    assert float(spec[1:-1].min()) > 0.7  # mirror shows the bright +x half
    assert float(spec[-1].abs().max()) == 0.0 and float(amb.abs().max()) == 0.0
    const = EnvironmentMap(8, 2, base=torch.full((6, 8, 8, 3), 0.4))
    spec, amb = shade_pixels(normal, tint, rough, alpha, vm, K, const, lut, ambient=True)
    ab = lut_lookup(lut, torch.tensor([1.0]), torch.tensor([0.08]))[0]
    expect = 0.4 * (0.9 * ab[0] + ab[1])
    assert abs(float(spec[H // 2, W // 2, 0]) - float(expect)) < 0.02
    assert abs(float(spec[0, W // 2, 0]) - 0.5 * float(expect)) < 0.01
    assert torch.allclose(amb[1:-1], torch.full_like(amb[1:-1], 0.1 * 0.4), atol=1e-3)
