"""A learnable environment cube map with GGX-prefiltered mip levels, in plain PyTorch.

GaussianShader (and nvdiffrec, whose light model it uses) look the environment up with
nvdiffrast's cube-map texture units; here everything is ordinary tensor code, so it runs on CPU
and GPU alike and autograd reaches the texels:

* Faces follow the OpenGL cube-map layout (+x, -x, +y, -y, +z, -z). Face ``f`` pixel ``(i, j)``
  (row, column) has centre ``(s, t) = (2 (j + 0.5) / R - 1, 2 (i + 0.5) / R - 1)`` on the face
  plane and direction ``normalize(N_f + s U_f + t V_f)`` (:data:`FACE_N`, :data:`FACE_U`,
  :data:`FACE_V`).
* :func:`sample_cube` filters bilinearly ACROSS face seams: each of the four taps is turned into a
  direction on the extended face plane and looked up on whichever face it falls, so there is no
  seam and no clamp-to-edge artefact.
* :func:`ggx_prefilter_matrix` is the split-sum prefilter (Karis 2013, the ``specular_cubemap``
  of nvdiffrec) written as a fixed sparse linear operator: texel ``o`` of the filtered map is
  ``sum_k w_ok L_k`` with ``w_ok ~ D_GGX(n_o . h) (n_o . l_k) dOmega_k`` (``v = n = r``), rows
  normalised, taps outside the cone holding ``cutoff`` of the lobe's mass left out. The operator
  depends only on (resolution, roughness), so it is built once and each training step costs one
  sparse product per level.
* :class:`EnvironmentMap` keeps the base cube map as a parameter, builds the mip chain (2x2
  average pooling, then per-level prefiltering, with nvdiffrec's roughness schedule) and answers
  ``specular(dirs, roughness)`` by trilinear (bilinear + between-level) filtering.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FACE_N",
    "FACE_U",
    "FACE_V",
    "EnvironmentMap",
    "cube_directions",
    "cube_from_function",
    "dirs_to_cube",
    "ggx_ndf",
    "ggx_prefilter_matrix",
    "sample_cube",
    "texel_solid_angles",
]

# OpenGL cube-map convention: direction = N + s U + t V for (s, t) in [-1, 1]^2.
FACE_N = torch.tensor(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64
)
FACE_U = torch.tensor(
    [[0, 0, -1], [0, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [-1, 0, 0]], dtype=torch.float64
)
FACE_V = torch.tensor(
    [[0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0, -1, 0], [0, -1, 0]], dtype=torch.float64
)


def _face_coords(R: int, dtype: torch.dtype, device: torch.device | str) -> tuple[Tensor, Tensor]:
    c = (torch.arange(R, dtype=dtype, device=device) + 0.5) / R * 2.0 - 1.0
    t, s = torch.meshgrid(c, c, indexing="ij")  # row i -> t, column j -> s
    return s, t


def cube_directions(
    R: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Tensor:
    """Unit directions of the texel centres. Returns Tensor  # [6, R, R, 3]"""
    s, t = _face_coords(R, torch.float64, "cpu")
    d = (
        FACE_N[:, None, None]
        + s[None, ..., None] * FACE_U[:, None, None]
        + t[None, ..., None] * FACE_V[:, None, None]
    )
    d = d / d.norm(dim=-1, keepdim=True)
    return d.to(dtype=dtype, device=device)


def texel_solid_angles(R: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Exact solid angle of every texel (they sum to 4 pi). Returns Tensor  # [6, R, R]"""
    edges = torch.linspace(-1.0, 1.0, R + 1, dtype=torch.float64)

    def area(x: Tensor, y: Tensor) -> Tensor:  # solid angle of [0, x] x [0, y] on the face plane
        return torch.atan2(x * y, torch.sqrt(x * x + y * y + 1.0))

    y0, x0 = torch.meshgrid(edges[:-1], edges[:-1], indexing="ij")
    y1, x1 = torch.meshgrid(edges[1:], edges[1:], indexing="ij")
    w = area(x1, y1) - area(x0, y1) - area(x1, y0) + area(x0, y0)
    return w[None].expand(6, R, R).to(dtype).contiguous()


def dirs_to_cube(dirs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Face index and face-plane coordinates of directions (need not be unit).

    Args:
        dirs: Tensor  # [M, 3]

    Returns:
        face: Tensor  # [M] int64 in 0..5
        s, t: Tensor  # [M] in [-1, 1]
    """
    a = dirs.abs()
    major = a.argmax(dim=-1)  # 0, 1, 2
    comp = dirs.gather(-1, major[:, None])[:, 0]
    face = 2 * major + (comp < 0).long()
    ma = comp.abs().clamp_min(1e-12)
    U = FACE_U.to(dirs)[face]
    V = FACE_V.to(dirs)[face]
    s = (dirs * U).sum(-1) / ma
    t = (dirs * V).sum(-1) / ma
    return face, s, t


def _nearest_flat(dirs: Tensor, R: int) -> Tensor:
    face, s, t = dirs_to_cube(dirs)
    j = ((s + 1.0) * 0.5 * R).floor().long().clamp(0, R - 1)
    i = ((t + 1.0) * 0.5 * R).floor().long().clamp(0, R - 1)
    return face * R * R + i * R + j


def _bilinear_taps(face: Tensor, x: Tensor, y: Tensor, R: int) -> tuple[list[Tensor], list[Tensor]]:
    """Flat texel indices and weights of the 4 bilinear taps at continuous texel coordinates
    (x, y) of ``face``. Taps off the face are mapped through their direction on the extended face
    plane to the texel of the neighbouring face they fall in (seamless filtering)."""
    with torch.no_grad():
        x0 = x.floor()
        y0 = y.floor()
        idx = []
        for dy in (0, 1):
            for dx in (0, 1):
                ix, iy = x0 + dx, y0 + dy
                k = face * R * R + iy.long().clamp(0, R - 1) * R + ix.long().clamp(0, R - 1)
                off = (ix < 0) | (ix > R - 1) | (iy < 0) | (iy > R - 1)
                if bool(off.any()):
                    f = face[off]
                    sc = 2.0 * (ix[off] + 0.5) / R - 1.0
                    tc = 2.0 * (iy[off] + 0.5) / R - 1.0
                    d = (
                        FACE_N.to(x)[f]
                        + sc[:, None] * FACE_U.to(x)[f]
                        + tc[:, None] * FACE_V.to(x)[f]
                    )
                    k = k.clone()
                    k[off] = _nearest_flat(d, R)
                idx.append(k)
    fx = x - x0
    fy = y - y0
    return idx, [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]


def sample_cube(tex: Tensor, dirs: Tensor) -> Tensor:
    """Bilinear lookup of a cube map along directions, filtered across face seams.

    Args:
        tex: Tensor  # [6, R, R, C]
        dirs: Tensor  # [M, 3] (need not be unit)

    Returns:
        Tensor  # [M, C]; differentiable w.r.t. ``tex`` and ``dirs``.
    """
    if tex.dim() != 4 or tex.shape[0] != 6 or tex.shape[1] != tex.shape[2]:
        raise ValueError(f"tex must be a cube map [6, R, R, C], got {list(tex.shape)}")
    if dirs.dim() != 2 or dirs.shape[1] != 3:
        raise ValueError(f"dirs must be [M, 3], got {list(dirs.shape)}")
    R, C = tex.shape[1], tex.shape[3]
    face, s, t = dirs_to_cube(dirs)
    x = (s + 1.0) * 0.5 * R - 0.5  # continuous texel coordinates on the face
    y = (t + 1.0) * 0.5 * R - 0.5
    idx, weights = _bilinear_taps(face, x, y, R)
    flat = tex.reshape(6 * R * R, C)
    out = 0.0
    for k, w in zip(idx, weights):
        out = out + w[:, None] * flat[k]
    return out


def cube_from_function(fn, R: int, dtype: torch.dtype = torch.float32) -> Tensor:  # noqa: ANN001
    """A cube map whose texels hold ``fn(directions [M, 3] float64 numpy) -> [M, C]``.

    Returns Tensor  # [6, R, R, C]
    """
    d = cube_directions(R, torch.float64).reshape(-1, 3).numpy()
    vals = np.asarray(fn(d), dtype=np.float64)
    return torch.from_numpy(vals.reshape(6, R, R, -1)).to(dtype)


def ggx_ndf(cos_h: Tensor, alpha: float) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution D(h) with alpha = roughness^2."""
    a2 = alpha * alpha
    d = cos_h * cos_h * (a2 - 1.0) + 1.0
    return a2 / (math.pi * d * d)


@lru_cache(maxsize=32)
def _prefilter_cached(R: int, roughness: float, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    alpha = max(roughness, 1e-3) ** 2
    dirs = cube_directions(R, torch.float64).reshape(-1, 3)
    omega = texel_solid_angles(R).reshape(-1)
    M = dirs.shape[0]
    # GGX half-vector polar CDF: P(theta_h <= th) = tan^2 / (alpha^2 + tan^2) => cone holding `cutoff`
    tan_h = alpha * math.sqrt(cutoff / max(1.0 - cutoff, 1e-12))
    theta_l = min(2.0 * math.atan(tan_h), 0.5 * math.pi)
    cos_min = max(math.cos(theta_l), 0.0)
    # Tiles of T x T texels with a bounding cone each: only tile pairs whose cones can meet
    # within the lobe's cone are tested texel by texel, so sharp lobes cost little.
    T = max(1, min(R, 8))
    nt = R // T
    tdirs = (
        dirs.reshape(6, nt, T, nt, T, 3).permute(0, 1, 3, 2, 4, 5).reshape(6 * nt * nt, T * T, 3)
    )
    tids = (
        torch.arange(M).reshape(6, nt, T, nt, T).permute(0, 1, 3, 2, 4).reshape(6 * nt * nt, T * T)
    )
    centre = tdirs.mean(1)
    centre = centre / centre.norm(dim=-1, keepdim=True)
    radius = torch.arccos((tdirs * centre[:, None]).sum(-1).clamp(-1.0, 1.0)).amax(1)  # [tiles]
    centre_ang = torch.arccos((centre @ centre.T).clamp(-1.0, 1.0))
    near = centre_ang <= theta_l + radius[:, None] + radius[None, :] + 1e-6
    rows, cols, vals = [], [], []
    for ti in range(tdirs.shape[0]):
        cand = tids[near[ti]].reshape(-1)
        n = tdirs[ti]  # [T*T, 3]
        cos_l = n @ dirs[cand].T  # with v = n, l makes the angle 2 theta_h with n
        # the texel itself (cos = 1) is always kept: very sharp lobes degrade to the identity
        r, k = (cos_l > cos_min - 1e-9).nonzero(as_tuple=True)
        c = cand[k]
        cl = cos_l[r, k].clamp(0.0, 1.0)
        cos_h = torch.sqrt((1.0 + cl) * 0.5)  # h = normalize(n + l)
        w = ggx_ndf(cos_h, alpha) * cl * omega[c]
        w = torch.where(w > 0, w, torch.full_like(w, 1e-30))
        sums = torch.zeros(n.shape[0], dtype=torch.float64).index_add_(0, r, w)
        vals.append(w / sums[r])
        rows.append(tids[ti][r])
        cols.append(c)
    r, c, v = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    order = torch.argsort(r * M + c)
    return r[order], c[order], v[order]


def _csr(r: Tensor, c: Tensor, v: Tensor, M: int, dtype: torch.dtype) -> Tensor:
    crow = torch.zeros(M + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(r, minlength=M).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, c, v.to(dtype), (M, M), check_invariants=False)


def ggx_prefilter_matrix(
    R: int, roughness: float, cutoff: float = 0.99, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The GGX split-sum prefilter of an R x R cube map as a sparse CSR matrix [6R^2, 6R^2].

    ``filtered.reshape(6R^2, C) = W @ base.reshape(6R^2, C)``; each row sums to 1. The entries are
    built once per (R, roughness, cutoff) and cached.
    """
    if R < 1:
        raise ValueError(f"cube resolution must be >= 1, got {R}")
    if not 0.0 < cutoff < 1.0:
        raise ValueError(f"cutoff must be in (0, 1), got {cutoff}")
    r, c, v = _prefilter_cached(int(R), float(roughness), float(cutoff))
    return _csr(r, c, v, 6 * R * R, dtype)


class _SparseApply(torch.autograd.Function):
    """y = W x with a fixed sparse W; the backward uses a stored CSR of W^T (torch's own backward
    of a CSR product transposes W on every call, which costs 50x the product itself)."""

    @staticmethod
    def forward(ctx, W: Tensor, WT: Tensor, x: Tensor) -> Tensor:  # noqa: ANN001
        ctx.WT = WT
        return W @ x

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[None, None, Tensor]:  # noqa: ANN001
        return None, None, ctx.WT @ g.contiguous()


class EnvironmentMap(torch.nn.Module):
    """Learnable cube-map lighting with prefiltered mip levels (nvdiffrec's EnvironmentLight).

    Levels: level 0 is the base (``resolution``), each next level 2x2-averages the previous one
    until ``min_resolution``. Level ``l < L-1`` is GGX-prefiltered at roughness
    ``min_roughness + (max_roughness - min_roughness) l / (L - 2)``, the last level at roughness 1.
    A lookup at roughness r reads the fractional level of :meth:`mip_level` (linear in r on
    [min_roughness, max_roughness] over levels 0..L-2, then on [max_roughness, 1] to L-1).
    """

    def __init__(
        self,
        resolution: int = 64,
        min_resolution: int = 8,
        init_value: float = 0.5,
        min_roughness: float = 0.08,
        max_roughness: float = 0.5,
        cutoff: float = 0.99,
        base: Tensor | None = None,  # [6, R, R, 3] initial texels (overrides init_value)
    ) -> None:
        super().__init__()
        if resolution < 2 or resolution & (resolution - 1):
            raise ValueError(f"env resolution must be a power of two >= 2, got {resolution}")
        if (
            min_resolution < 1
            or min_resolution > resolution
            or min_resolution & (min_resolution - 1)
        ):
            raise ValueError(
                f"env min_resolution must be a power of two in [1, {resolution}], got {min_resolution}"
            )
        if not 0.0 < min_roughness < max_roughness < 1.0:
            raise ValueError(
                f"need 0 < min_roughness < max_roughness < 1, got {min_roughness}, {max_roughness}"
            )
        if base is None:
            base = torch.full((6, resolution, resolution, 3), float(init_value))
        elif tuple(base.shape) != (6, resolution, resolution, 3):
            raise ValueError(
                f"base must be [6, {resolution}, {resolution}, 3], got {list(base.shape)}"
            )
        self.base = torch.nn.Parameter(base.detach().clone().float())
        self.resolution = resolution
        self.min_roughness = min_roughness
        self.max_roughness = max_roughness
        self.cutoff = cutoff
        res = [resolution]
        while res[-1] > min_resolution:
            res.append(res[-1] // 2)
        self.level_resolutions = res
        L = len(res)
        if L == 1:
            self.level_roughness = [1.0]
        else:
            self.level_roughness = [
                min_roughness + (max_roughness - min_roughness) * lv / max(L - 2, 1)
                for lv in range(L - 1)
            ] + [1.0]
        self._ops: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}

    @property
    def n_levels(self) -> int:
        return len(self.level_resolutions)

    def _op(self, level: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (level, str(device))
        if key not in self._ops:
            R = self.level_resolutions[level]
            r, c, v = _prefilter_cached(R, float(self.level_roughness[level]), float(self.cutoff))
            M = 6 * R * R
            order = torch.argsort(c * M + r)
            W = _csr(r, c, v, M, torch.float32).to(device)
            WT = _csr(c[order], r[order], v[order], M, torch.float32).to(device)
            self._ops[key] = (W, WT)
        return self._ops[key]

    def build_mips(self) -> list[Tensor]:
        """Prefiltered levels, differentiable w.r.t. the base. Returns [6, R_l, R_l, 3] per level."""
        levels = [self.base]
        for _ in range(1, self.n_levels):
            p = levels[-1]
            R = p.shape[1] // 2
            levels.append(p.reshape(6, R, 2, R, 2, 3).mean(dim=(2, 4)))
        out = []
        for lv, tex in enumerate(levels):
            R = tex.shape[1]
            W, WT = self._op(lv, tex.device)
            flat = tex.reshape(6 * R * R, 3).contiguous()
            out.append(_SparseApply.apply(W, WT, flat).reshape(6, R, R, 3))
        return out

    def mip_level(self, roughness: Tensor) -> Tensor:
        """Fractional level in [0, L-1] for roughness values (any shape)."""
        L = self.n_levels
        if L == 1:
            return torch.zeros_like(roughness)
        lo, hi = self.min_roughness, self.max_roughness
        low = (roughness.clamp(lo, hi) - lo) / (hi - lo) * (L - 2)
        high = (roughness.clamp(hi, 1.0) - hi) / (1.0 - hi) + (L - 2)
        return torch.where(roughness < hi, low, high)

    def specular(self, dirs: Tensor, roughness: Tensor, mips: list[Tensor] | None = None) -> Tensor:
        """Prefiltered radiance along reflected directions.

        Args:
            dirs: Tensor  # [M, 3] world directions
            roughness: Tensor  # [M] or [M, 1] in [0, 1]
            mips: the output of :meth:`build_mips` (built here when None)

        Returns:
            Tensor  # [M, 3]
        """
        mips = self.build_mips() if mips is None else mips
        lv = self.mip_level(roughness.reshape(-1))
        face, s, t = dirs_to_cube(dirs)
        out = 0.0
        for i, tex in enumerate(mips):
            w = (1.0 - (lv - i).abs()).clamp_min(0.0)
            sel = (w > 0).nonzero()[:, 0]
            if sel.numel() == 0:
                continue
            R = tex.shape[1]
            x = (s[sel] + 1.0) * 0.5 * R - 0.5
            y = (t[sel] + 1.0) * 0.5 * R - 0.5
            idx, weights = _bilinear_taps(face[sel], x, y, R)
            flat = tex.reshape(6 * R * R, -1)
            val = 0.0
            for k, bw in zip(idx, weights):
                val = val + bw[:, None] * flat[k]
            contrib = torch.zeros(
                dirs.shape[0], flat.shape[1], dtype=flat.dtype, device=flat.device
            )
            out = out + contrib.index_add(0, sel, w[sel, None] * val)
        return out

    def radiance(self, dirs: Tensor) -> Tensor:
        """Unfiltered base radiance along directions [M, 3] -> [M, 3]."""
        return sample_cube(self.base, dirs)

    @torch.no_grad()
    def to_latlong(self, height: int = 128, level: int | None = None) -> Tensor:
        """Equirectangular image [height, 2 height, 3] in splatlab's demo convention (z up; row i
        at polar angle pi (i + 0.5) / H from +z; column j at azimuth 2 pi (j + 0.5) / W - pi =
        atan2(y, x)). ``level`` None: the base map; else that prefiltered level."""
        H, W = height, 2 * height
        theta = math.pi * (torch.arange(H, dtype=torch.float64) + 0.5) / H
        phi = 2.0 * math.pi * (torch.arange(W, dtype=torch.float64) + 0.5) / W - math.pi
        th, ph = torch.meshgrid(theta, phi, indexing="ij")
        d = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
        d = d.to(self.base)
        tex = self.base if level is None else self.build_mips()[level]
        return sample_cube(tex, d).reshape(H, W, 3)
