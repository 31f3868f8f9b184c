"""GaussianShader (Jiang et al., CVPR 2024, arXiv 2311.17977): shading functions per Gaussian.

Each Gaussian carries shading attributes besides its geometry and opacity, and its colour for a
camera at ``o`` is computed BEFORE rasterization (so one rasterization call renders it):

    wo        = normalize(o - mean)                            direction towards the camera
    n         = s * normalize(a + R_q delta)                    a: shortest scale axis (column of
                                                                the rotation), delta: learned
                                                                residual in the Gaussian's frame,
                                                                s = +-1 turns a towards the camera
    r         = 2 (n . wo) n - wo                               reflected view direction
    (A, B)    = LUT(n . wo, roughness)                          split-sum BRDF table (brdf.py)
    specular  = L_pre(r, roughness) * (tint * A + B)            prefiltered environment (envmap.py)
    colour    = diffuse + specular + residual(wo)               residual: SH bands 1..d

``tint_model`` chooses how the specular tint enters the split sum:

* ``"official"``: ``L_pre * (tint A + B)``, the authors' code (nvdiffrec's ``spec_col * A + B``):
  the tint is the Fresnel F0, so the grazing-angle term ``B L_pre`` is there for EVERY Gaussian and
  no Gaussian can switch its reflection off;
* ``"paper"``: ``tint * L_pre * (A + B)``, the paper's ``c = c_d + s * L_s`` read literally (the
  tint scales the whole specular light; the table's integral taken with F0 = 1): a Gaussian with
  tint 0 has no specular at all, which is how matte objects are shaded (e.g. the demo scene's).

Parameter layout (a ``ParameterDict`` as splatlab's trainer keeps it; activations applied here):

    sh0:        [N, 1, 3]   diffuse colour as an SH DC coefficient: diffuse = max(C0 sh0 + 0.5, 0),
                            so an INRIA PLY of the scene shows the diffuse colour in any viewer
    shN:        [N, K-1, 3] residual colour, SH bands 1..d (no DC: the diffuse holds it)
    tint:       [N, 3]      specular tint (Fresnel F0) logit: tint = sigmoid(.)
    roughness:  [N, 1]      roughness logit: roughness = sigmoid(.)
    normal_res: [N, 3]      normal residual in the Gaussian's local frame

The residual is expressed in the local frame so that it rotates with the Gaussian (a similarity
transform of the scene leaves it valid, and densification copies stay consistent).

The shortest-axis normal is the COLUMN of R(q) belonging to the smallest scale: R maps local axes
to world, so world axis k is ``R[:, k]`` (the official code's issue #19 took a row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backends.torch import quat_to_rotmat
from ..sh import SH_C0, sh_basis
from .brdf import lut_lookup
from .envmap import EnvironmentMap, sample_cube

__all__ = [
    "SHADING_KEYS",
    "ShadedGaussians",
    "quat_to_rotmat",
    "shortest_axis",
    "gaussian_normals",
    "shade_gaussians",
    "shade_pixels",
    "camera_center",
    "normals_from_depth",
    "normal_consistency_loss",
    "zero_one_loss",
    "delta_normal_loss",
    "erode_alpha",
]

SHADING_KEYS = {"tint": 3, "roughness": 1, "normal_res": 3}  # per-Gaussian extras (name -> width)


def shortest_axis(quats: Tensor, scales: Tensor) -> Tensor:
    """World direction of each Gaussian's shortest axis (unit, sign arbitrary).

    Args:
        quats: Tensor  # [N, 4] wxyz
        scales: Tensor  # [N, 3] (linear or log: only the order matters)

    Returns:
        Tensor  # [N, 3]
    """
    R = quat_to_rotmat(quats)
    k = scales.argmin(dim=-1)  # [N]
    return R.gather(2, k[:, None, None].expand(-1, 3, 1))[..., 0]  # column k


def gaussian_normals(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    normal_res: Tensor | None,  # [N, 3] local-frame residual (None: zero)
    cam_center: Tensor,  # [3]
) -> Tensor:
    """Shading normals: the shortest axis plus the residual, turned towards the camera.

    Returns:
        Tensor  # [N, 3] unit normals with n . (cam_center - mean) >= 0 for the axis part
    """
    R = quat_to_rotmat(quats)
    k = scales.argmin(dim=-1)
    axis = R.gather(2, k[:, None, None].expand(-1, 3, 1))[..., 0]
    to_cam = cam_center[None] - means
    sign = torch.where((axis * to_cam).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(axis)
    n = axis
    if normal_res is not None:
        n = n + (R @ normal_res[..., None])[..., 0]
    return sign * F.normalize(n, dim=-1)


def camera_center(viewmat: Tensor) -> Tensor:
    """Camera centre in world coordinates of a world-to-camera matrix [4, 4] -> [3]."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    return -(R.T @ t)


@dataclass
class ShadedGaussians:
    """Per-Gaussian shading results for one camera (all [N, 3] unless noted)."""

    color: Tensor  # diffuse + specular + residual
    diffuse: Tensor
    specular: Tensor  # L_pre(r, roughness) * (tint A + B)
    residual: Tensor
    normal: Tensor
    normal_res_norm: Tensor  # [N, 1] |R delta| (regularised towards 0)
    roughness: Tensor  # [N, 1]
    tint: Tensor


def shade_gaussians(
    params: Mapping[str, Tensor],
    cam_center: Tensor,  # [3]
    env: EnvironmentMap,
    lut: Tensor,  # [S, S, 2]
    sh_degree: int,
    mips: list[Tensor] | None = None,
    tint_model: str = "official",
    env_rotation: Tensor | None = None,  # [3, 3]
    ambient: bool = False,
    diffuse_activation: str = "clamp",
) -> ShadedGaussians:
    """Colour of every Gaussian seen from ``cam_center`` (GaussianShader's shading function).

    Args:
        params: the scene (see the module docstring for the keys and activations).
        cam_center: camera centre, world coordinates.
        env: the environment light.
        lut: split-sum table from :func:`splatlab.rendering.shading.brdf.split_sum_lut`.
        sh_degree: degree of the residual colour used (0 = no residual; <= shN's degree).
        mips: ``env.build_mips()`` when already built this step.
        tint_model: "official" (``L_pre (tint A + B)``) or "paper" (``tint L_pre (A + B)``); see
            the module docstring.
        env_rotation: rotation from the frame of ``params`` to the environment's frame (a scene
            exported in original coordinates whose environment was learned in the normalised
            frame); None = the same frame.
        ambient: add the authors' ambient term ``(1 - tint) * E(n)``, E = the environment's
            coarsest level (prefiltered at roughness 1, i.e. the cosine-weighted irradiance / pi)
            looked up along the normal; it is part of ``diffuse`` in the result.
        diffuse_activation: "clamp" ``max(raw, 0)`` or "sigmoid" ``sigmoid(raw - log 3)`` (the
            authors' code), with ``raw = C0 sh0 + 0.5`` (the point colour at initialisation).
    """
    if tint_model not in ("official", "paper"):
        raise ValueError(f"tint_model must be 'official' or 'paper', got {tint_model!r}")
    if diffuse_activation not in ("clamp", "sigmoid"):
        raise ValueError(
            f"diffuse_activation must be 'clamp' or 'sigmoid', got {diffuse_activation!r}"
        )
    means = params["means"]
    scales = params["scales"]
    normal = gaussian_normals(means, params["quats"], scales, params["normal_res"], cam_center)
    wo = F.normalize(cam_center[None] - means, dim=-1)
    nv = (normal * wo).sum(-1, keepdim=True)
    refl = 2.0 * nv * normal - wo
    roughness = torch.sigmoid(params["roughness"])  # [N, 1]
    tint = torch.sigmoid(params["tint"])  # [N, 3]
    ab = lut_lookup(lut, nv.clamp(1e-4, 1.0)[:, 0], roughness[:, 0])  # [N, 2]
    env_dirs = refl if env_rotation is None else refl @ env_rotation.to(refl).T
    mips = env.build_mips() if mips is None else mips
    light = env.specular(env_dirs, roughness, mips)  # [N, 3]
    if tint_model == "paper":
        specular = tint * light * (ab[:, 0:1] + ab[:, 1:2])
    else:
        specular = light * (tint * ab[:, 0:1] + ab[:, 1:2])
    raw = params["sh0"][:, 0, :] * SH_C0 + 0.5
    if diffuse_activation == "sigmoid":
        diffuse = torch.sigmoid(raw - math.log(3.0))
    else:
        diffuse = raw.clamp_min(0.0)
    if ambient:
        n_env = normal if env_rotation is None else normal @ env_rotation.to(normal).T
        diffuse = diffuse + (1.0 - tint) * sample_cube(mips[-1], n_env)
    shN = params["shN"]
    d = min(int(sh_degree), _degree_of(shN.shape[1]))
    if d > 0:
        k = (d + 1) ** 2
        basis = sh_basis(d, -wo)[:, 1:k]  # [N, k-1]; gsplat's convention: dirs = mean - camera
        residual = (basis[..., None] * shN[:, : k - 1]).sum(1)
    else:
        residual = torch.zeros_like(diffuse)
    R = quat_to_rotmat(params["quats"])
    res_norm = (R @ params["normal_res"][..., None])[..., 0].norm(dim=-1, keepdim=True)
    return ShadedGaussians(
        color=diffuse + specular + residual,
        diffuse=diffuse,
        specular=specular,
        residual=residual,
        normal=normal,
        normal_res_norm=res_norm,
        roughness=roughness,
        tint=tint,
    )


def shade_pixels(
    normal: Tensor,  # [H, W, 3] alpha-blended shading normals
    tint: Tensor,  # [H, W, 3] alpha-blended tint
    roughness: Tensor,  # [H, W, 1] alpha-blended roughness
    alpha: Tensor,  # [H, W, 1]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    env: EnvironmentMap,
    lut: Tensor,  # [S, S, 2]
    tint_model: str = "official",
    env_rotation: Tensor | None = None,  # [3, 3]
    ambient: bool = False,
) -> tuple[Tensor, Tensor]:
    """Deferred split-sum shading (3DGS-DR's order): the normal, tint and roughness are blended
    first and the reflection is looked up ONCE per pixel, along the pixel's own ray, instead of
    per Gaussian and then blended. Blended attributes are divided by alpha (they are
    premultiplied) and the results multiplied by it again, so empty pixels get nothing.

    Returns:
        specular: Tensor  # [H, W, 3] ``alpha L_pre(r, rough) (tint A + B)`` (or the paper form)
        ambient: Tensor  # [H, W, 3] ``alpha (1 - tint) E(n)`` (zeros unless ``ambient``)
    """
    H, W, _ = normal.shape
    dev, dt = normal.device, normal.dtype
    a = alpha.clamp_min(1e-6)
    n = F.normalize(normal, dim=-1).reshape(-1, 3)
    t = (tint / a).clamp(0.0, 1.0).reshape(-1, 3)
    r = (roughness / a).clamp(0.0, 1.0).reshape(-1, 1)
    v, u = torch.meshgrid(
        torch.arange(H, device=dev, dtype=dt) + 0.5,
        torch.arange(W, device=dev, dtype=dt) + 0.5,
        indexing="ij",
    )
    Kd = K.to(dt)
    cam = torch.stack([(u - Kd[0, 2]) / Kd[0, 0], (v - Kd[1, 2]) / Kd[1, 1], torch.ones_like(u)], -1)
    d = F.normalize(cam.reshape(-1, 3) @ viewmat[:3, :3].to(dt), dim=-1)  # world ray, R^T d
    wo = -d
    nv = (n * wo).sum(-1, keepdim=True)
    n = torch.where(nv < 0, -n, n)  # blended normals face the camera
    nv = nv.abs()
    refl = 2.0 * nv * n - wo
    ab = lut_lookup(lut, nv.clamp(1e-4, 1.0)[:, 0], r[:, 0])
    mips = env.build_mips()
    env_dirs = refl if env_rotation is None else refl @ env_rotation.to(refl).T
    light = env.specular(env_dirs, r, mips)
    if tint_model == "paper":
        spec = t * light * (ab[:, 0:1] + ab[:, 1:2])
    else:
        spec = light * (t * ab[:, 0:1] + ab[:, 1:2])
    amb = torch.zeros_like(spec)
    if ambient:
        n_env = n if env_rotation is None else n @ env_rotation.to(n).T
        amb = (1.0 - t) * sample_cube(mips[-1], n_env)
    return spec.reshape(H, W, 3) * alpha, amb.reshape(H, W, 3) * alpha


def _degree_of(k_rest: int) -> int:
    d = 0
    while (d + 1) ** 2 - 1 < k_rest:
        d += 1
    return d if (d + 1) ** 2 - 1 == k_rest else 0


def normals_from_depth(
    depth: Tensor,  # [H, W] z-depth along the camera axis
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
) -> tuple[Tensor, Tensor]:
    """World-space normals of the surface a depth map describes (central differences).

    Returns:
        normals: Tensor  # [H, W, 3] unit, facing the camera (0 where undefined)
        valid: Tensor  # [H, W] bool: depth > 0 at the pixel and its 4 neighbours (image
            borders use one-sided differences)
    """
    H, W = depth.shape
    dev, dt = depth.device, depth.dtype
    v, u = torch.meshgrid(
        torch.arange(H, device=dev, dtype=dt) + 0.5,
        torch.arange(W, device=dev, dtype=dt) + 0.5,
        indexing="ij",
    )
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    P = torch.stack([x, y, depth], -1)  # camera space [H, W, 3]
    Pp = F.pad(P.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    dx = Pp[1:-1, 2:] - Pp[1:-1, :-2]
    dy = Pp[2:, 1:-1] - Pp[:-2, 1:-1]
    n = torch.cross(dx, dy, dim=-1)  # x right, y down: dx x dy points away from the camera
    n = -F.normalize(n, dim=-1)
    n_world = n @ viewmat[:3, :3].to(dt)  # R^T n
    ok = depth > 0
    okp = F.pad(ok[None, None].to(dt), (1, 1, 1, 1), mode="replicate")[0, 0] > 0
    valid = ok & okp[1:-1, 2:] & okp[1:-1, :-2] & okp[2:, 1:-1] & okp[:-2, 1:-1]
    return torch.where(valid[..., None], n_world, torch.zeros_like(n_world)), valid


def erode_alpha(alpha: Tensor, radius: int) -> Tensor:
    """Min-filter of an alpha map [H, W] over a (2 radius + 1)^2 window (the official code erodes
    its normal-loss weight so silhouettes, where depth normals are wrong, do not count)."""
    if radius <= 0:
        return alpha
    return -F.max_pool2d(-alpha[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]


def normal_consistency_loss(
    normal: Tensor,  # [H, W, 3] rendered (alpha-blended) normals
    normal_ref: Tensor,  # [H, W, 3] normals from the rendered depth
    weight: Tensor,  # [H, W] e.g. eroded alpha
    detach_ref: bool = True,
) -> Tensor:
    """mean(w (1 - n . n_ref)) with n normalised and w held fixed (Ref-NeRF's predicted-normal
    loss, as GaussianShader uses it). ``detach_ref``: n_ref held fixed (GaussianShader); False lets
    the gradient reach the depth too (the two-way depth-normal consistency of 3DGS-DR / GS-IR)."""
    n = F.normalize(normal, dim=-1)
    ref = normal_ref.detach() if detach_ref else normal_ref
    return (weight.detach() * (1.0 - (n * ref).sum(-1))).mean()


def zero_one_loss(alpha: Tensor, eps: float = 1e-3) -> Tensor:
    """mean(log a + log(1 - a)): pushes the rendered alpha towards 0 or 1."""
    a = alpha.clamp(eps, 1.0 - eps)
    return (torch.log(a) + torch.log(1.0 - a)).mean()


def delta_normal_loss(delta: Tensor, weight: Tensor) -> Tensor:
    """mean(w |delta|) of the rendered normal-residual magnitude [H, W] (w held fixed)."""
    return (weight.detach() * delta).mean()
