"""Compiled CPU kernels (numba) for tile-based alpha compositing, forward and backward.

These implement exactly the per-pixel loop of gsplat's ``rasterize_to_pixels_3dgs`` CUDA kernels
(front-to-back compositing over the depth-sorted Gaussians of the pixel's tile, alpha =
min(0.999, o * exp(-sigma)), skip sigma < 0 or alpha < 1/255, stop before transmittance would fall
to 1e-4) with one thread per tile instead of one per pixel. Gradients of the backward pass are
written per *intersection* (tile, Gaussian pair), which belongs to exactly one tile, so tiles run in
parallel without atomics; the caller scatters them to Gaussians with ``index_add_``.

The readable reference of the same mathematics is ``composite_reference`` in ``torch.py`` (pure
PyTorch, autograd); tests check both against a brute-force per-pixel loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
T_STOP = 1e-4


@njit(cache=True, nogil=True, inline="always")
def _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, n):
    """Copy one tile's Gaussians into contiguous arrays and compute, per Gaussian, the half
    extents (ex, ey) of the ellipse outside which alpha < 1/255 (sigma > log(255 o)), slightly
    enlarged so that the exact per-pixel test below decides every borderline case."""
    D = colors.shape[1]
    gx = np.empty(n, dtype=means2d.dtype)
    gy = np.empty(n, dtype=means2d.dtype)
    ca = np.empty(n, dtype=conics.dtype)
    cb = np.empty(n, dtype=conics.dtype)
    cc = np.empty(n, dtype=conics.dtype)
    op = np.empty(n, dtype=opacities.dtype)
    ex = np.empty(n, dtype=np.float64)
    ey = np.empty(n, dtype=np.float64)
    col = np.empty((n, D), dtype=colors.dtype)
    for k in range(n):
        g = flatten_ids[start + k]
        gx[k] = means2d[g, 0]
        gy[k] = means2d[g, 1]
        a = conics[g, 0]
        b = conics[g, 1]
        c = conics[g, 2]
        ca[k] = a
        cb[k] = b
        cc[k] = c
        o = opacities[g]
        op[k] = o
        for ch in range(D):
            col[k, ch] = colors[g, ch]
        det = a * c - b * b
        if o * 255.0 < 1.0 or det <= 0.0:
            ex[k] = -1.0  # never reaches the alpha threshold (or degenerate): culled everywhere
            ey[k] = -1.0
            if det <= 0.0 and o * 255.0 >= 1.0:
                ex[k] = np.inf  # degenerate conic: no bound, the exact test decides
                ey[k] = np.inf
        else:
            smax = np.log(o * 255.0)
            ex[k] = np.sqrt(2.0 * smax * c / det) * 1.001 + 1e-3
            ey[k] = np.sqrt(2.0 * smax * a / det) * 1.001 + 1e-3
    return gx, gy, ca, cb, cc, op, ex, ey, col


@njit(parallel=True, cache=True, nogil=True)
def composite_fwd(
    means2d: np.ndarray,  # [M, 2]  M = I * N flattened (image, gaussian)
    conics: np.ndarray,  # [M, 3]
    colors: np.ndarray,  # [M, D]
    opacities: np.ndarray,  # [M]
    backgrounds: np.ndarray,  # [I, D] (ignored when has_bg is False)
    has_bg: bool,
    tile_offsets: np.ndarray,  # [I * th * tw + 1] int64, start of each tile in flatten_ids
    flatten_ids: np.ndarray,  # [n_isects] int64, index into M
    n_images: int,
    width: int,
    height: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    out_colors: np.ndarray,  # [I, H, W, D]
    out_alphas: np.ndarray,  # [I, H, W]
    last_ids: np.ndarray,  # [I, H, W] int64, last contributing intersection (-1 if none)
) -> None:
    """Forward compositing. Within a tile the loop runs Gaussian-major (front to back) over the
    pixels of each Gaussian's threshold ellipse box, keeping per-pixel transmittance: every
    pixel sees its Gaussians in the same depth order as gsplat's per-pixel loop, so the result is
    the same, while the work is proportional to the actual (pixel, Gaussian) overlaps."""
    D = colors.shape[1]
    n_tiles = tile_width * tile_height
    for t in prange(n_images * n_tiles):
        img = t // n_tiles
        tile = t - img * n_tiles
        ty = tile // tile_width
        tx = tile - ty * tile_width
        start = tile_offsets[t]
        n = tile_offsets[t + 1] - start
        y0 = ty * tile_size
        x0 = tx * tile_size
        y1 = min(y0 + tile_size, height)
        x1 = min(x0 + tile_size, width)
        th = y1 - y0
        tw_ = x1 - x0
        gx, gy, ca, cb, cc, op, ex, ey, col = _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, n)
        T = np.ones((th, tw_), dtype=np.float64)
        acc = np.zeros((th, tw_, D), dtype=np.float64)
        last = np.full((th, tw_), -1, dtype=np.int64)
        done = np.zeros((th, tw_), dtype=np.bool_)
        n_alive = th * tw_
        for k in range(n):
            if n_alive == 0:
                break
            if ex[k] < 0.0:
                continue
            jlo = max(x0, int(np.ceil(gx[k] - ex[k] - 0.5))) if ex[k] < 1e30 else x0
            jhi = min(x1, int(np.floor(gx[k] + ex[k] - 0.5)) + 1) if ex[k] < 1e30 else x1
            ilo = max(y0, int(np.ceil(gy[k] - ey[k] - 0.5))) if ey[k] < 1e30 else y0
            ihi = min(y1, int(np.floor(gy[k] + ey[k] - 0.5)) + 1) if ey[k] < 1e30 else y1
            o = op[k]
            for i in range(ilo, ihi):
                dy = gy[k] - (i + 0.5)
                li = i - y0
                for j in range(jlo, jhi):
                    lj = j - x0
                    if done[li, lj]:
                        continue
                    dx = gx[k] - (j + 0.5)
                    sigma = 0.5 * (ca[k] * dx * dx + cc[k] * dy * dy) + cb[k] * dx * dy
                    if sigma < 0.0:
                        continue
                    alpha = min(ALPHA_MAX, o * np.exp(-sigma))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    Tp = T[li, lj]
                    next_T = Tp * (1.0 - alpha)
                    if next_T <= T_STOP:
                        done[li, lj] = True
                        n_alive -= 1
                        continue
                    vis = alpha * Tp
                    for c in range(D):
                        acc[li, lj, c] += col[k, c] * vis
                    T[li, lj] = next_T
                    last[li, lj] = start + k
        for li in range(th):
            for lj in range(tw_):
                i = y0 + li
                j = x0 + lj
                Tp = T[li, lj]
                out_alphas[img, i, j] = 1.0 - Tp
                last_ids[img, i, j] = last[li, lj]
                for c in range(D):
                    v = acc[li, lj, c]
                    if has_bg:
                        v += Tp * backgrounds[img, c]
                    out_colors[img, i, j, c] = v


@njit(parallel=True, cache=True, nogil=True)
def composite_bwd(
    means2d: np.ndarray,  # [M, 2]
    conics: np.ndarray,  # [M, 3]
    colors: np.ndarray,  # [M, D]
    opacities: np.ndarray,  # [M]
    backgrounds: np.ndarray,  # [I, D]
    has_bg: bool,
    tile_offsets: np.ndarray,  # [I * th * tw + 1]
    flatten_ids: np.ndarray,  # [n_isects]
    n_images: int,
    width: int,
    height: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    out_alphas: np.ndarray,  # [I, H, W] from the forward pass
    last_ids: np.ndarray,  # [I, H, W] from the forward pass
    v_out_colors: np.ndarray,  # [I, H, W, D]
    v_out_alphas: np.ndarray,  # [I, H, W]
    v_means2d_isect: np.ndarray,  # [n_isects, 2] (output)
    v_means2d_abs_isect: np.ndarray,  # [n_isects, 2] (output)
    v_conics_isect: np.ndarray,  # [n_isects, 3] (output)
    v_colors_isect: np.ndarray,  # [n_isects, D] (output)
    v_opacities_isect: np.ndarray,  # [n_isects] (output)
) -> None:
    """Backward of :func:`composite_fwd` (gsplat's analytic gradients), Gaussian-major from back to
    front: each pixel's transmittance is recovered from its final value by dividing out the
    alphas of the Gaussians behind, exactly as gsplat's per-pixel backward loop."""
    D = colors.shape[1]
    n_tiles = tile_width * tile_height
    for t in prange(n_images * n_tiles):
        img = t // n_tiles
        tile = t - img * n_tiles
        ty = tile // tile_width
        tx = tile - ty * tile_width
        start = tile_offsets[t]
        n = tile_offsets[t + 1] - start
        if n == 0:
            continue
        y0 = ty * tile_size
        x0 = tx * tile_size
        y1 = min(y0 + tile_size, height)
        x1 = min(x0 + tile_size, width)
        th = y1 - y0
        tw_ = x1 - x0
        gx, gy, ca, cb, cc, op, ex, ey, col = _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, n)
        T = np.empty((th, tw_), dtype=np.float64)
        T_final = np.empty((th, tw_), dtype=np.float64)
        last = np.empty((th, tw_), dtype=np.int64)
        buf = np.zeros((th, tw_, D), dtype=np.float64)
        bg_dot = np.zeros((th, tw_), dtype=np.float64)
        kmax = -1
        for li in range(th):
            for lj in range(tw_):
                i = y0 + li
                j = x0 + lj
                T_final[li, lj] = 1.0 - out_alphas[img, i, j]
                T[li, lj] = T_final[li, lj]
                last[li, lj] = last_ids[img, i, j] - start
                kmax = max(kmax, last[li, lj])
                if has_bg:
                    s_ = 0.0
                    for c in range(D):
                        s_ += backgrounds[img, c] * v_out_colors[img, i, j, c]
                    bg_dot[li, lj] = s_
        vcol = np.zeros(D, dtype=np.float64)
        for k in range(kmax, -1, -1):
            if ex[k] < 0.0:
                continue
            jlo = max(x0, int(np.ceil(gx[k] - ex[k] - 0.5))) if ex[k] < 1e30 else x0
            jhi = min(x1, int(np.floor(gx[k] + ex[k] - 0.5)) + 1) if ex[k] < 1e30 else x1
            ilo = max(y0, int(np.ceil(gy[k] - ey[k] - 0.5))) if ey[k] < 1e30 else y0
            ihi = min(y1, int(np.floor(gy[k] + ey[k] - 0.5)) + 1) if ey[k] < 1e30 else y1
            o = op[k]
            v_ca = 0.0
            v_cb = 0.0
            v_cc = 0.0
            v_x = 0.0
            v_y = 0.0
            v_xa = 0.0
            v_ya = 0.0
            v_o = 0.0
            for c in range(D):
                vcol[c] = 0.0
            touched = False
            for i in range(ilo, ihi):
                dy = gy[k] - (i + 0.5)
                li = i - y0
                for j in range(jlo, jhi):
                    lj = j - x0
                    if k > last[li, lj]:
                        continue
                    dx = gx[k] - (j + 0.5)
                    sigma = 0.5 * (ca[k] * dx * dx + cc[k] * dy * dy) + cb[k] * dx * dy
                    if sigma < 0.0:
                        continue
                    vis = np.exp(-sigma)
                    alpha = min(ALPHA_MAX, o * vis)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    touched = True
                    ra = 1.0 / (1.0 - alpha)
                    Tp = T[li, lj] * ra
                    T[li, lj] = Tp
                    fac = alpha * Tp
                    v_alpha = 0.0
                    ii = img
                    for c in range(D):
                        vc = v_out_colors[ii, i, j, c]
                        vcol[c] += fac * vc
                        v_alpha += (col[k, c] * Tp - buf[li, lj, c] * ra) * vc
                        buf[li, lj, c] += col[k, c] * fac
                    Tf = T_final[li, lj]
                    v_alpha += Tf * ra * v_out_alphas[ii, i, j]
                    if has_bg:
                        v_alpha -= Tf * ra * bg_dot[li, lj]
                    if o * vis <= ALPHA_MAX:
                        v_sigma = -o * vis * v_alpha
                        v_ca += 0.5 * v_sigma * dx * dx
                        v_cb += v_sigma * dx * dy
                        v_cc += 0.5 * v_sigma * dy * dy
                        vx = v_sigma * (ca[k] * dx + cb[k] * dy)
                        vy = v_sigma * (cb[k] * dx + cc[k] * dy)
                        v_x += vx
                        v_y += vy
                        v_xa += abs(vx)
                        v_ya += abs(vy)
                        v_o += vis * v_alpha
            if touched:
                row = start + k
                for c in range(D):
                    v_colors_isect[row, c] = vcol[c]
                v_conics_isect[row, 0] = v_ca
                v_conics_isect[row, 1] = v_cb
                v_conics_isect[row, 2] = v_cc
                v_means2d_isect[row, 0] = v_x
                v_means2d_isect[row, 1] = v_y
                v_means2d_abs_isect[row, 0] = v_xa
                v_means2d_abs_isect[row, 1] = v_ya
                v_opacities_isect[row] = v_o
