"""The rasterizer contract on the CPU backend: parity with gsplat's reference functions and with a
brute-force per-pixel compositor, analytic gradients against finite differences, robustness."""

from __future__ import annotations

import math

import pytest
import torch

from splatlab.rendering import rasterize
from splatlab.rendering.backends.torch import project_gaussians, quat_scale_to_covar
from splatlab.rendering.random_scenes import random_scene
from splatlab.rendering.sh import eval_sh


def _scene(n=60, w=40, h=30, cams=2, dtype=torch.float32, seed=0, **kw):
    s = random_scene(n, w, h, n_cameras=cams, seed=seed, dtype=dtype, coverage=3.0, **kw)
    return s, w, h


# ----------------------------------------------------------------------------- projection / SH


@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_gsplat_torch_reference(antialiased: bool) -> None:
    from gsplat.cuda._torch_impl import _fully_fused_projection

    s, w, h = _scene(n=500, w=64, h=48, cams=3)
    covars = quat_scale_to_covar(s["quats"], s["scales"])
    ours = project_gaussians(
        s["means"], covars, None, s["viewmats"], s["Ks"], w, h, calc_compensations=antialiased
    )
    ref = _fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], w, h, calc_compensations=antialiased
    )
    radii, means2d, depths, conics, comp = ours
    r_radii, r_means2d, r_depths, r_conics, r_comp = ref
    vis = (r_radii > 0).all(-1)
    assert vis.sum() > 300
    assert torch.equal(radii, r_radii)
    assert (means2d[vis] - r_means2d[vis]).abs().max() <= 1e-5 * max(1.0, r_means2d[vis].abs().max().item() / 64)
    assert (depths - r_depths).abs().max() <= 1e-5
    assert (conics[vis] - r_conics[vis]).abs().max() <= 1e-5
    if antialiased:
        assert (comp[vis] - r_comp[vis]).abs().max() <= 1e-5


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat_torch_reference(degree: int) -> None:
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(1000, 3, generator=g)
    coeffs = torch.randn(1000, 16, 3, generator=g)
    ours = eval_sh(degree, dirs, coeffs)
    ref = _spherical_harmonics(degree, dirs, coeffs)
    assert (ours - ref).abs().max() <= 1e-5


# ----------------------------------------------------------------------------- compositing


def _brute_force(info, colors, backgrounds, w, h):
    """Per pixel: every visible Gaussian (no tiles), sorted by depth, gsplat's loop verbatim."""
    C = info["means2d"].shape[0]
    D = colors.shape[-1]
    out = torch.zeros(C, h, w, D, dtype=torch.float64)
    alphas = torch.zeros(C, h, w, 1, dtype=torch.float64)
    for c in range(C):
        vis = torch.nonzero((info["radii"][c] > 0).all(-1)).flatten()
        order = vis[torch.argsort(info["depths"][c, vis])]
        m = info["means2d"][c, order].double()
        cn = info["conics"][c, order].double()
        op = info["opacities"][c, order].double()
        col = colors[c, order].double()
        for i in range(h):
            for j in range(w):
                T = 1.0
                acc = torch.zeros(D, dtype=torch.float64)
                for k in range(len(order)):
                    dx, dy = m[k, 0] - (j + 0.5), m[k, 1] - (i + 0.5)
                    sigma = 0.5 * (cn[k, 0] * dx * dx + cn[k, 2] * dy * dy) + cn[k, 1] * dx * dy
                    alpha = min(0.999, float(op[k] * torch.exp(-sigma)))
                    if sigma < 0 or alpha < 1 / 255:
                        continue
                    if T * (1 - alpha) <= 1e-4:
                        break
                    acc += col[k] * alpha * T
                    T *= 1 - alpha
                if backgrounds is not None:
                    acc += T * backgrounds[c].double()
                out[c, i, j] = acc
                alphas[c, i, j, 0] = 1 - T
    return out, alphas


@pytest.mark.parametrize("compositor", ["numba", "torch"])
def test_compositing_matches_brute_force(compositor: str) -> None:
    s, w, h = _scene(n=40, w=21, h=19, cams=2, seed=3)
    s["opacities"] = s["opacities"].clamp(0.3, 1.0)  # includes opacities that hit the 0.999 clamp region
    s["scales"] = s["scales"] * 4
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]])
    img, alpha, info = rasterize(**s, width=w, height=h, backgrounds=bg, compositor=compositor, tile_size=8)
    colors = s["colors"][None].expand(2, -1, -1)
    ref, ref_a = _brute_force(info, colors, bg, w, h)
    assert alpha.mean() > 0.3  # the scene really covers the image
    assert (img.double() - ref).abs().max() <= 1e-5
    assert (alpha.double() - ref_a).abs().max() <= 1e-5


def test_early_stop_and_clamp_semantics() -> None:
    """Ten opaque Gaussians stacked on the optical axis: alpha clamps at 0.999 and compositing
    stops before transmittance falls to 1e-4, exactly like gsplat."""
    n = 10
    means = torch.tensor([[0.0, 0.0, 2.0 + i] for i in range(n)])
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    scales = torch.full((n, 3), 200.0)  # so wide that exp(-sigma) ~ 1 on all 64 pixels
    opacities = torch.ones(n)
    colors = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3) / n
    K = torch.tensor([[[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]])
    img, alpha, _ = rasterize(means, quats, scales, opacities, colors, torch.eye(4)[None], K, 8, 8)
    # Gaussian 0: alpha 0.999 -> T = 1e-3; Gaussian 1 would make T = 1e-6 <= 1e-4 -> stop.
    assert torch.allclose(alpha, torch.full_like(alpha, 0.999), atol=1e-4)
    assert torch.allclose(img, torch.zeros_like(img), atol=1e-6)  # colour of Gaussian 0 is 0


def test_numba_and_torch_compositors_agree_with_gradients() -> None:
    s, w, h = _scene(n=800, w=70, h=45, cams=2, sh_degree=3)
    bg = torch.rand(2, 3, generator=torch.Generator().manual_seed(0))
    grads = {}
    for comp in ("numba", "torch"):
        leaves = {k: s[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "colors")}
        bgl = bg.clone().requires_grad_()
        img, a, _ = rasterize(**{**s, **leaves}, width=w, height=h, sh_degree=3, backgrounds=bgl,
                              render_mode="RGB+ED", compositor=comp)
        g = torch.Generator().manual_seed(1)
        loss = (img * torch.randn(img.shape, generator=g)).sum() + (a * torch.randn(a.shape, generator=g)).sum()
        loss.backward()
        grads[comp] = [img.detach(), a.detach(), bgl.grad] + [leaves[k].grad for k in leaves]
    for x, y in zip(grads["numba"], grads["torch"]):
        assert (x - y).abs().max() <= 2e-4 * max(1.0, y.abs().max().item())


# ----------------------------------------------------------------------------- gradients


def _gradcheck_scene(sh: bool):
    s, w, h = _scene(n=6, w=12, h=10, cams=2, dtype=torch.float64, seed=7, channels=16,
                     sh_degree=2 if sh else None)
    s["opacities"] = s["opacities"].clamp(0.2, 0.8)
    s["scales"] = s["scales"] * 6
    return s, w, h


@pytest.mark.parametrize("sh", [True, False], ids=["sh2", "features16"])
def test_gradcheck_float64(sh: bool) -> None:
    s, w, h = _gradcheck_scene(sh)
    names = ("means", "quats", "scales", "opacities", "colors")
    bg = torch.rand(2, 3 if sh else 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def f(means, quats, scales, opacities, colors, backgrounds):
        img, a, _ = rasterize(means, quats, scales, opacities, colors, s["viewmats"], s["Ks"], w, h,
                              sh_degree=2 if sh else None, backgrounds=backgrounds, render_mode="RGB+ED")
        return img, a

    inputs = tuple(s[k].clone().requires_grad_() for k in names) + (bg.requires_grad_(),)
    img, a = f(*inputs)
    assert a.max() > 0.5  # the Gaussians are really on screen
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_absgrad_and_means2d_grad_for_strategies() -> None:
    s, w, h = _scene(n=200, w=32, h=32, cams=2)
    s["means"].requires_grad_()
    img, a, info = rasterize(**s, width=w, height=h, absgrad=True)
    info["means2d"].retain_grad()
    (img.sum() - a.sum() * 0.5).backward()
    grad = info["means2d"].grad
    absgrad = info["means2d"].absgrad
    assert grad.shape == (2, 200, 2) and absgrad.shape == (2, 200, 2)
    assert (absgrad >= grad.abs() - 1e-6).all()
    assert (absgrad > 0).sum() > 100


def test_default_strategy_drives_densification_on_cpu() -> None:
    from gsplat.strategy import DefaultStrategy

    s, w, h = _scene(n=300, w=48, h=48, cams=1, seed=5)
    params = torch.nn.ParameterDict({
        "means": s["means"], "quats": s["quats"], "scales": s["scales"].log(),
        "opacities": torch.logit(s["opacities"]), "colors": s["colors"],
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=1, refine_every=2, grow_grad2d=1e-9, reset_every=10_000,
                               prune_opa=0.0, verbose=False)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state()
    target = torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0))
    n0 = len(params["means"])
    for step in range(3):
        img, _, info = rasterize(params["means"], params["quats"], params["scales"].exp(),
                                 torch.sigmoid(params["opacities"]), params["colors"], s["viewmats"], s["Ks"], w, h)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (img - target).abs().mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        for o in optimizers.values():
            o.step()
            o.zero_grad()
    assert len(params["means"]) > n0  # Gaussians with screen-space gradient were duplicated/split


# ----------------------------------------------------------------------------- modes & robustness


def test_depth_render_modes() -> None:
    s, w, h = _scene(n=300, w=40, h=32, cams=2)
    rgb, a, _ = rasterize(**s, width=w, height=h)
    d, a2, _ = rasterize(**s, width=w, height=h, render_mode="D")
    ed, _, _ = rasterize(**s, width=w, height=h, render_mode="ED")
    rgbd, _, _ = rasterize(**s, width=w, height=h, render_mode="RGB+D")
    rgbed, _, _ = rasterize(**s, width=w, height=h, render_mode="RGB+ED")
    assert d.shape == (2, h, w, 1) and rgbd.shape == (2, h, w, 4)
    assert torch.allclose(rgbd[..., :3], rgb, atol=1e-6) and torch.allclose(rgbd[..., 3:], d, atol=1e-5)
    assert torch.allclose(ed, d / a2.clamp_min(1e-10), atol=1e-4)
    assert torch.allclose(rgbed[..., 3:], ed, atol=1e-4)
    covered = a2[..., 0] > 0.9
    # expected depth lies within the scene's depth range where the image is covered
    assert ((ed[..., 0][covered] > 1.9) & (ed[..., 0][covered] < 6.1)).all()


def test_per_camera_colors_and_many_channels() -> None:
    s, w, h = _scene(n=200, w=24, h=24, cams=2)
    feats = torch.rand(2, 200, 512, generator=torch.Generator().manual_seed(0))
    img, _, _ = rasterize(**{**s, "colors": feats}, width=w, height=h)
    img0, _, _ = rasterize(**{**s, "colors": feats[0]}, width=w, height=h)
    assert img.shape == (2, h, w, 512)
    assert torch.allclose(img[0], img0[0], atol=1e-6)


def test_degenerate_and_offscreen_gaussians_are_finite() -> None:
    g = torch.Generator().manual_seed(11)
    n = 400
    means = torch.randn(n, 3, generator=g) * 4  # many behind the camera and outside the image
    means[:5] = torch.tensor([[0.0, 0.0, 0.011], [0.0, 0.0, -1.0], [0.0, 0.0, 1e-4], [50.0, 0, 1.0], [0, 0, 1e6]])
    scales = torch.exp(torch.randn(n, 3, generator=g) * 3)  # huge and tiny
    scales[5:10] = torch.tensor([1e3, 1e3, 1e3])
    scales[10:15] = torch.tensor([1e-8, 1e-8, 1e-8])
    scales[15:20] = torch.tensor([0.0, 0.1, 0.1])
    quats = torch.randn(n, 4, generator=g)
    opac = torch.rand(n, generator=g)
    colors = torch.randn(n, 16, 3, generator=g)
    leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    K = torch.tensor([[[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]])
    for mode in ("classic", "antialiased"):
        img, a, info = rasterize(*leaves, torch.eye(4)[None], K, 32, 32, sh_degree=3, render_mode="RGB+ED",
                                 rasterize_mode=mode)
        (img.sum() + a.sum()).backward()
        assert torch.isfinite(img).all() and torch.isfinite(a).all()
        for t in leaves:
            assert torch.isfinite(t.grad).all()
            t.grad = None
        assert (info["radii"][0, 1] == 0).all()  # behind the camera: culled


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.update(means=s["means"][:, :2]), r"means must have shape \[N, 3\]"),
        (lambda s: s.update(quats=s["quats"][:-1]), "quats"),
        (lambda s: s.update(scales=s["scales"].long()), "scales must be a floating-point"),
        (lambda s: s.update(opacities=s["opacities"][:, None]), r"opacities must have shape \[N\]"),
        (lambda s: s.update(viewmats=s["viewmats"][:, :3]), r"viewmats must have shape \[C, 4, 4\]"),
        (lambda s: s.update(Ks=s["Ks"][:1].repeat(3, 1, 1)), r"Ks must have shape \[C, 3, 3\]"),
        (lambda s: s.update(colors=s["colors"][:5]), "colors must have shape"),
        (lambda s: s["means"].__setitem__((3, 0), float("nan")), "means holds 1 non-finite"),
        (lambda s: s["colors"].__setitem__((0, 0), float("inf")), "colors holds 1 non-finite"),
        (lambda s: s.update(Ks=s["Ks"].double()), "Ks has dtype torch.float64"),
        (lambda s: s.update(Ks=s["Ks"].to("meta")), "Ks is on meta"),
        (lambda s: s.update(opacities=s["opacities"] * 5), "post-sigmoid"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(change, match) -> None:
    s, w, h = _scene(n=20, w=16, h=16, cams=2)
    change(s)
    with pytest.raises(ValueError, match=match):
        rasterize(**s, width=w, height=h)


def test_bad_sh_and_background_shapes() -> None:
    s, w, h = _scene(n=20, w=16, h=16, cams=2, sh_degree=1)
    with pytest.raises(ValueError, match=r"sh_degree=3"):
        rasterize(**s, width=w, height=h, sh_degree=3)
    with pytest.raises(ValueError, match=r"backgrounds must have shape \[C, D\] = \[2, 3\]"):
        rasterize(**s, width=w, height=h, sh_degree=1, backgrounds=torch.zeros(3))
    with pytest.raises(ValueError, match="render_mode"):
        rasterize(**s, width=w, height=h, sh_degree=1, render_mode="RGBD")


def test_gsplat_backend_refuses_cpu_tensors_clearly() -> None:
    s, w, h = _scene(n=20, w=16, h=16, cams=1)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        rasterize(**s, width=w, height=h, backend="gsplat")


def test_image_borders_and_non_multiple_of_tile() -> None:
    """A Gaussian centred exactly on a corner is rendered with its quarter in the image."""
    means = torch.tensor([[0.0, 0.0, 4.0]])
    K = torch.tensor([[[20.0, 0, 0.0], [0, 20.0, 0.0], [0, 0, 1]]])  # principal point at the corner
    img, a, _ = rasterize(means, torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.3), torch.tensor([0.9]),
                          torch.ones(1, 1), torch.eye(4)[None], K, 19, 13)
    # analytic: sigma = r^2 / (2 var), var = (20 * 0.3 / 4)^2 + 0.3
    var = (20 * 0.3 / 4) ** 2 + 0.3
    expected = 0.9 * math.exp(-(0.5**2 + 0.5**2) / (2 * var))
    assert abs(a[0, 0, 0, 0].item() - expected) < 1e-5
    assert a[0, -1, -1, 0] < 1 / 255 + 1e-6
