"""The procedural demo scene: a small table-top world ray traced analytically in numpy.

``splatlab demo`` trains on it, the GaussianShader plugin is evaluated on its glossy balls and the
Feature-3DGS text query on its labelled objects, so besides the images it carries the ground truth
those evaluations need (depth, normals, per-pixel labels with names, the environment map).

The world (z up, metres do not matter; everything fits in a sphere of radius ~1 around the origin):

======  =================  ==========  ==================================================
label   name               kind        material
======  =================  ==========  ==================================================
0       background         -           constant ``DemoConfig.background`` (alpha 0)
1       checkered floor    disk z=0    matte, checker texture
2       red cube           box         matte
3       green cylinder     cylinder    matte
4       striped ball       sphere      matte, orange/cream longitude stripes
5       chrome ball        sphere      glossy metal: tiny diffuse + coloured-F0 reflection
6       glossy blue ball   sphere      glossy dielectric: blue diffuse + Fresnel reflection
======  =================  ==========  ==================================================

Shading of a surface point ``p`` with unit normal ``n`` seen along the unit ray ``d``::

    diffuse  = albedo(p) * (AMBIENT + SUN_INTENSITY * max(0, n . L) * unshadowed(p))
    specular = F(n . -d) * envmap(reflect(d, n))           (glossy objects only)
    F(c)     = F0 + (1 - F0) * (1 - c)^5                     (Fresnel-Schlick)
    colour   = clip(kd * diffuse + specular, 0, 1)

``L`` is the direction towards the sun (the same sun is the brightest blob of the environment
map); shadows are hard (one shadow ray). Reflected rays see only the environment map (no
inter-object reflections), which is exactly what environment-lit shading models assume. Matte
colours therefore do not depend on the viewing direction, glossy ones do.

Environment map convention (equirectangular, :func:`make_envmap`, :func:`sample_envmap`): row
``i`` of an ``[He, We, 3]`` image is the polar angle ``theta = pi * (i + 0.5) / He`` from world
+z (row 0 looks straight up), column ``j`` the azimuth ``phi = 2 pi (j + 0.5) / We - pi`` with
``phi = atan2(y, x)``; a direction is ``(sin theta cos phi, sin theta sin phi, cos theta)``.
The renderer samples the stored image bilinearly (wrapping in azimuth), so the image in
``Dataset.meta["envmap"]`` is the lighting the glossy pixels really saw.

Cameras sit on a hemisphere ring around the scene (azimuth going round once, elevation spread by a
golden-ratio sequence, small seeded jitter), all looking at a point just above the floor centre.
Pixel ``(u, v)`` covers ``[u, u + 1) x [v, v + 1)`` (gsplat/COLMAP convention); RGB is the mean of
``supersample**2`` stratified rays per pixel (anti-aliased); depth, normals and labels come from
the single ray through the pixel centre.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cameras import look_at_viewmat, opencv_viewmat_to_opengl_c2w
from .datasets.base import Dataset, Frame, split_every_nth

DEMO_ROOT = "<demo>"  # Dataset.root of the in-memory demo scene (not a folder)

__all__ = [
    "AMBIENT",
    "SCENE_OBJECTS",
    "SUN_DIR",
    "SUN_INTENSITY",
    "DemoConfig",
    "RayHits",
    "SceneObject",
    "make_demo_scene",
    "make_envmap",
    "object_label_at",
    "render_demo_views",
    "sample_envmap",
    "trace_rays",
    "write_demo_dataset",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One object of the demo world.

    ``size`` depends on ``kind``: sphere ``(radius,)``, box ``(hx, hy, hz)`` half extents (box
    rotated by ``yaw_deg`` about world z), cylinder ``(radius, half_height)`` with a vertical axis,
    disk ``(radius,)`` lying in the plane z = center[2] facing +z.
    """

    label: int
    name: str
    kind: str  # "sphere" | "box" | "cylinder" | "disk"
    center: tuple[float, float, float]
    size: tuple[float, ...]
    albedo: tuple[float, float, float]
    albedo2: tuple[float, float, float] | None = None  # second texture colour
    texture: str = "plain"  # "plain" | "checker" (world xy) | "stripes" (longitude segments)
    texture_scale: float = 1.0  # checker: tile size; stripes: number of segments
    yaw_deg: float = 0.0
    kd: float = 1.0  # diffuse weight
    f0: tuple[float, float, float] | None = None  # Fresnel F0 of the reflection (None = matte)

    @property
    def glossy(self) -> bool:
        return self.f0 is not None

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere around ``center`` that contains the object."""
        if self.kind in ("sphere", "disk"):
            return float(self.size[0])
        if self.kind == "box":
            return float(np.linalg.norm(self.size))
        if self.kind == "cylinder":
            return float(math.hypot(*self.size))
        raise ValueError(f"unknown object kind {self.kind!r}")

    def as_meta(self) -> dict:
        """JSON-friendly description (the ``Dataset.meta["objects"]`` entries)."""
        return {
            "label": self.label,
            "name": self.name,
            "kind": self.kind,
            "center": [float(c) for c in self.center],
            "size": [float(s) for s in self.size],
            "yaw_deg": float(self.yaw_deg),
            "bounding_radius": self.bounding_radius,
            "glossy": self.glossy,
            "albedo": [float(a) for a in self.albedo],
            "f0": None if self.f0 is None else [float(f) for f in self.f0],
        }


SCENE_OBJECTS: tuple[SceneObject, ...] = (
    SceneObject(
        1,
        "checkered floor",
        "disk",
        (0.0, 0.0, 0.0),
        (0.92,),
        albedo=(0.78, 0.74, 0.66),
        albedo2=(0.40, 0.42, 0.48),
        texture="checker",
        texture_scale=0.2,
    ),
    SceneObject(
        2,
        "red cube",
        "box",
        (0.36, 0.40, 0.14),
        (0.14, 0.14, 0.14),
        albedo=(0.80, 0.14, 0.12),
        yaw_deg=30.0,
    ),
    SceneObject(
        3,
        "green cylinder",
        "cylinder",
        (-0.46, 0.40, 0.18),
        (0.11, 0.18),
        albedo=(0.20, 0.66, 0.26),
    ),
    SceneObject(
        4,
        "striped ball",
        "sphere",
        (-0.44, -0.32, 0.18),
        (0.18,),
        albedo=(0.95, 0.52, 0.12),
        albedo2=(0.93, 0.90, 0.82),
        texture="stripes",
        texture_scale=8,
    ),
    SceneObject(
        5,
        "chrome ball",
        "sphere",
        (-0.04, 0.04, 0.25),
        (0.25,),
        albedo=(0.5, 0.5, 0.5),
        kd=0.06,
        f0=(0.86, 0.86, 0.90),
    ),
    SceneObject(
        6,
        "glossy blue ball",
        "sphere",
        (0.42, -0.34, 0.16),
        (0.16,),
        albedo=(0.10, 0.24, 0.80),
        f0=(0.08, 0.08, 0.08),
    ),
)

# A sphere around everything: rays that miss it are background without further tests.
_SCENE_CENTRE = np.array([0.0, 0.0, 0.1])
_SCENE_RADIUS = 1.001 * max(
    float(np.linalg.norm(np.asarray(o.center) - _SCENE_CENTRE)) + o.bounding_radius
    for o in SCENE_OBJECTS
)
LABEL_NAMES: list[str] = ["background"] + [o.name for o in SCENE_OBJECTS]

AMBIENT = 0.28
SUN_INTENSITY = 0.72


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dir_from_angles(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


SUN_DIR: np.ndarray = _dir_from_angles(35.0, 55.0)  # unit vector TOWARDS the sun (world)

# Environment blobs: (direction, colour, angular radius in degrees)
_ENV_BLOBS: tuple[tuple[np.ndarray, tuple[float, float, float], float], ...] = (
    (SUN_DIR, (1.0, 0.96, 0.85), 7.0),
    (_dir_from_angles(160.0, 22.0), (1.0, 0.55, 0.15), 14.0),  # warm lamp
    (_dir_from_angles(-95.0, 38.0), (0.85, 0.25, 0.85), 12.0),  # magenta lamp
    (_dir_from_angles(-30.0, 8.0), (0.2, 0.95, 0.85), 10.0),  # cyan lamp near the horizon
)

ENVMAP_HEIGHT = 128  # default resolution [128, 256, 3]

# --------------------------------------------------------------------------------------------
# Environment map
# --------------------------------------------------------------------------------------------


def _env_analytic(dirs: np.ndarray) -> np.ndarray:
    """Sky gradient + ground tone + soft coloured blobs. dirs: [N, 3] unit -> [N, 3] in [0, 1]."""
    z = np.clip(dirs[:, 2], -1.0, 1.0)
    up = np.clip(z, 0.0, 1.0)[:, None]
    down = np.clip(-z, 0.0, 1.0)[:, None]
    horizon = np.array([0.86, 0.88, 0.92])
    zenith = np.array([0.22, 0.42, 0.82])
    ground_near = np.array([0.42, 0.34, 0.26])
    ground_far = np.array([0.14, 0.12, 0.10])
    sky = horizon + (zenith - horizon) * np.sqrt(up)
    ground = ground_near + (ground_far - ground_near) * np.sqrt(down)
    col = np.where((z >= 0.0)[:, None], sky, ground)
    for centre, colour, radius_deg in _ENV_BLOBS:
        cosang = np.clip(dirs @ centre, -1.0, 1.0)
        ang = np.degrees(np.arccos(cosang))
        w = np.clip(1.25 - 0.5 * (ang / radius_deg) ** 2, 0.0, 1.0)[:, None]  # flat core, soft rim
        col = col * (1.0 - w) + np.asarray(colour) * w
    return col


def _envmap_dirs(height: int) -> np.ndarray:
    """Directions of the pixel centres of an equirectangular map [height, 2*height, 3]."""
    width = 2 * height
    theta = np.pi * (np.arange(height) + 0.5) / height
    phi = 2.0 * np.pi * (np.arange(width) + 0.5) / width - np.pi
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], axis=-1)


@lru_cache(maxsize=4)
def _envmap_cached(height: int) -> np.ndarray:
    dirs = _envmap_dirs(height).reshape(-1, 3)
    env = _env_analytic(dirs).reshape(height, 2 * height, 3).astype(np.float32)
    env.setflags(write=False)
    return env


def make_envmap(height: int = ENVMAP_HEIGHT) -> np.ndarray:
    """The demo's environment map as an equirectangular image.

    Returns envmap: [height, 2 * height, 3] float32 in [0, 1] (convention in the module docstring).
    """
    if height < 4:
        raise DataError(f"envmap height must be >= 4, got {height}")
    return _envmap_cached(int(height)).copy()


def sample_envmap(envmap: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an equirectangular map along world directions.

    envmap: [He, We, 3]; dirs: [N, 3] (need not be unit). Returns [N, 3] float64.
    Azimuth wraps around; the polar angle is clamped at the poles.
    """
    env = np.asarray(envmap)
    if env.ndim != 3 or env.shape[2] < 1:
        raise DataError(f"envmap must be [He, We, C], got shape {env.shape}")
    he, we = env.shape[:2]
    d = _unit(dirs)
    theta = np.arccos(np.clip(d[:, 2], -1.0, 1.0))
    phi = np.arctan2(d[:, 1], d[:, 0])
    x = (phi + np.pi) / (2.0 * np.pi) * we - 0.5
    y = theta / np.pi * he - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    xa, xb = x0 % we, (x0 + 1) % we
    ya, yb = np.clip(y0, 0, he - 1), np.clip(y0 + 1, 0, he - 1)
    e = env.astype(np.float64, copy=False)
    top = e[ya, xa] * (1.0 - fx) + e[ya, xb] * fx
    bot = e[yb, xa] * (1.0 - fx) + e[yb, xb] * fx
    return top * (1.0 - fy) + bot * fy


# --------------------------------------------------------------------------------------------
# Ray tracing
# --------------------------------------------------------------------------------------------


def _yaw_matrix(yaw_deg: float) -> np.ndarray:
    """World-from-local rotation about z."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _intersect(obj: SceneObject, o: np.ndarray, d: np.ndarray, tmin: float) -> np.ndarray:
    """Nearest hit distance t > tmin along o + t d ([N, 3] each, d unit); inf where missed."""
    inf = np.inf
    c = np.asarray(obj.center)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if obj.kind == "sphere":
            r = obj.size[0]
            oc = o - c
            b = np.einsum("ij,ij->i", oc, d)
            cc = np.einsum("ij,ij->i", oc, oc) - r * r
            disc = b * b - cc
            sq = np.sqrt(np.maximum(disc, 0.0))
            t0, t1 = -b - sq, -b + sq
            t = np.where(t0 > tmin, t0, np.where(t1 > tmin, t1, inf))
            return np.where(disc >= 0.0, t, inf)
        if obj.kind == "disk":
            t = (c[2] - o[:, 2]) / d[:, 2]
            px = o[:, 0] + t * d[:, 0] - c[0]
            py = o[:, 1] + t * d[:, 1] - c[1]
            ok = (t > tmin) & (px * px + py * py <= obj.size[0] ** 2)
            return np.where(ok, t, inf)
        if obj.kind == "box":
            rot = _yaw_matrix(obj.yaw_deg)
            ol = (o - c) @ rot  # local = rot^T (p - c)
            dl = d @ rot
            h = np.asarray(obj.size)
            ta = (-h - ol) / dl
            tb = (h - ol) / dl
            lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
            # fmax/fmin skip the NaN of 0/0 (a ray lying exactly in a slab plane)
            tnear = np.fmax(np.fmax(lo[:, 0], lo[:, 1]), lo[:, 2])
            tfar = np.fmin(np.fmin(hi[:, 0], hi[:, 1]), hi[:, 2])
            ok = (tnear <= tfar) & (tfar > tmin)
            t = np.where(tnear > tmin, tnear, tfar)
            return np.where(ok, t, inf)
        if obj.kind == "cylinder":
            r, hh = obj.size
            ox, oy, oz = o[:, 0] - c[0], o[:, 1] - c[1], o[:, 2] - c[2]
            dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
            a = dx * dx + dy * dy
            b = ox * dx + oy * dy
            cc = ox * ox + oy * oy - r * r
            disc = b * b - a * cc
            sq = np.sqrt(np.maximum(disc, 0.0))
            best = np.full(o.shape[0], inf)
            for ts in ((-b - sq) / a, (-b + sq) / a):
                z = oz + ts * dz
                ok = (disc >= 0.0) & (a > 0.0) & (ts > tmin) & (np.abs(z) <= hh)
                best = np.where(ok & (ts < best), ts, best)
            for zc in (-hh, hh):
                ts = (zc - oz) / dz
                x = ox + ts * dx
                y = oy + ts * dy
                ok = (ts > tmin) & (x * x + y * y <= r * r)
                best = np.where(ok & (ts < best), ts, best)
            return best
    raise ValueError(f"unknown object kind {obj.kind!r}")


def _normal(obj: SceneObject, p: np.ndarray) -> np.ndarray:
    """Outward unit normals [N, 3] of points p [N, 3] lying on the object's surface."""
    c = np.asarray(obj.center)
    q = p - c
    if obj.kind == "sphere":
        return _unit(q)
    if obj.kind == "disk":
        return np.broadcast_to(np.array([0.0, 0.0, 1.0]), p.shape).copy()
    if obj.kind == "box":
        rot = _yaw_matrix(obj.yaw_deg)
        ql = q @ rot
        rel = np.abs(ql) / np.asarray(obj.size)
        axis = np.argmax(rel, axis=1)
        nl = np.zeros_like(ql)
        rows = np.arange(len(ql))
        nl[rows, axis] = np.sign(ql[rows, axis])
        return nl @ rot.T
    if obj.kind == "cylinder":
        r, hh = obj.size
        rho = np.hypot(q[:, 0], q[:, 1])
        on_cap = np.abs(np.abs(q[:, 2]) - hh) < np.abs(rho - r)
        side = (
            np.stack([q[:, 0], q[:, 1], np.zeros(len(q))], axis=1) / np.maximum(rho, 1e-12)[:, None]
        )
        cap = np.zeros_like(q)
        cap[:, 2] = np.sign(q[:, 2])
        return np.where(on_cap[:, None], cap, side)
    raise ValueError(f"unknown object kind {obj.kind!r}")


def _albedo(obj: SceneObject, p: np.ndarray) -> np.ndarray:
    """Texture colour [N, 3] at surface points p [N, 3]."""
    a = np.broadcast_to(np.asarray(obj.albedo, dtype=np.float64), p.shape)
    if obj.texture == "plain":
        return a.copy()
    b = np.broadcast_to(np.asarray(obj.albedo2, dtype=np.float64), p.shape)
    q = p - np.asarray(obj.center)
    if obj.texture == "checker":
        s = obj.texture_scale
        parity = (np.floor(q[:, 0] / s) + np.floor(q[:, 1] / s)).astype(np.int64) % 2
    elif obj.texture == "stripes":
        n = int(obj.texture_scale)
        phi = np.arctan2(q[:, 1], q[:, 0]) + np.pi
        parity = np.floor(phi / (2.0 * np.pi) * n).astype(np.int64) % 2
    else:
        raise ValueError(f"unknown texture {obj.texture!r}")
    return np.where(parity[:, None] == 0, a, b)


def _sphere_overlap(o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """[N] bool: the ray o + t d (t >= 0, d unit) passes within ``radius`` of ``centre``."""
    oc = centre - o
    b = np.einsum("ij,ij->i", oc, d)  # projection of oc on d
    dist2 = np.einsum("ij,ij->i", oc, oc) - np.maximum(b, 0.0) ** 2
    return dist2 <= radius * radius


def _first_hit(
    o: np.ndarray, d: np.ndarray, tmin: float, objects: tuple[SceneObject, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(t [N], index into objects [N], -1 where nothing is hit).

    Boxes and cylinders are only intersected with the rays that pass through their bounding
    sphere (the exact test is the expensive one)."""
    t = np.full(o.shape[0], np.inf)
    idx = np.full(o.shape[0], -1, dtype=np.int64)
    for k, obj in enumerate(objects):
        if obj.kind in ("box", "cylinder"):
            sel = np.flatnonzero(
                _sphere_overlap(o, d, np.asarray(obj.center), obj.bounding_radius * 1.001)
            )
            if sel.size == 0:
                continue
            tk = _intersect(obj, o[sel], d[sel], tmin)
            closer = tk < t[sel]
            t[sel[closer]] = tk[closer]
            idx[sel[closer]] = k
        else:
            tk = _intersect(obj, o, d, tmin)
            closer = tk < t
            t[closer] = tk[closer]
            idx[closer] = k
    return t, idx


@dataclass
class RayHits:
    """What :func:`trace_rays` finds along N rays."""

    t: np.ndarray  # [N] float64 distance along the unit ray; inf where nothing is hit
    points: np.ndarray  # [N, 3] float64 hit points (0 where missed)
    normals: np.ndarray  # [N, 3] float64 outward unit normals (0 where missed)
    labels: np.ndarray  # [N] int16 object label (0 = background)
    rgb: np.ndarray  # [N, 3] float64 shaded colour in [0, 1] (background colour where missed)

    @property
    def hit(self) -> np.ndarray:
        """[N] bool"""
        return self.labels > 0


def trace_rays(
    origins: np.ndarray,
    dirs: np.ndarray,
    *,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    envmap: np.ndarray | None = None,
    shadows: bool = True,
) -> RayHits:
    """Trace rays through the demo world and shade what they hit.

    origins: [N, 3]; dirs: [N, 3] (normalised here); envmap: [He, We, 3] equirectangular
    (default :func:`make_envmap`). Deterministic: the same inputs give bit-identical outputs.
    """
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = _unit(np.asarray(dirs, dtype=np.float64).reshape(-1, 3))
    if o.shape != d.shape:
        raise DataError(f"origins {o.shape} and dirs {d.shape} must both be [N, 3]")
    env = _envmap_cached(ENVMAP_HEIGHT) if envmap is None else envmap
    n = o.shape[0]
    t = np.full(n, np.inf)
    idx = np.full(n, -1, dtype=np.int64)
    near = np.flatnonzero(_sphere_overlap(o, d, _SCENE_CENTRE, _SCENE_RADIUS))
    t[near], idx[near] = _first_hit(o[near], d[near], 0.0, SCENE_OBJECTS)
    hit = idx >= 0
    points = np.zeros((n, 3))
    normals = np.zeros((n, 3))
    labels = np.zeros(n, dtype=np.int16)
    rgb = np.broadcast_to(np.asarray(background, dtype=np.float64), (n, 3)).copy()
    if not hit.any():
        return RayHits(t, points, normals, labels, rgb)
    hit_ids = np.nonzero(hit)[0]
    p = o[hit_ids] + t[hit_ids, None] * d[hit_ids]
    points[hit_ids] = p
    nrm = np.zeros_like(p)
    alb = np.zeros_like(p)
    kd = np.ones(len(p))
    f0 = np.zeros_like(p)
    glossy = np.zeros(len(p), dtype=bool)
    for k, obj in enumerate(SCENE_OBJECTS):
        sel = idx[hit_ids] == k
        if not sel.any():
            continue
        nrm[sel] = _normal(obj, p[sel])
        alb[sel] = _albedo(obj, p[sel])
        kd[sel] = obj.kd
        labels[hit_ids[sel]] = obj.label
        if obj.f0 is not None:
            f0[sel] = obj.f0
            glossy[sel] = True
    normals[hit_ids] = nrm
    # Diffuse: ambient + sun with a hard shadow.
    ndl = np.clip(nrm @ SUN_DIR, 0.0, None)
    lit = ndl > 0.0
    if shadows and lit.any():
        lit_ids = np.nonzero(lit)[0]
        so = p[lit_ids] + 1e-6 * nrm[lit_ids]
        sd = np.broadcast_to(SUN_DIR, so.shape)
        ts, _ = _first_hit(so, sd, 1e-9, SCENE_OBJECTS)
        ndl[lit_ids[np.isfinite(ts)]] = 0.0
    col = kd[:, None] * alb * (AMBIENT + SUN_INTENSITY * ndl)[:, None]
    # Specular: Fresnel-Schlick weighted environment reflection.
    if glossy.any():
        g = np.nonzero(glossy)[0]
        dg, ng = d[hit_ids[g]], nrm[g]
        cos_v = np.clip(-np.einsum("ij,ij->i", dg, ng), 0.0, 1.0)
        refl = dg - 2.0 * np.einsum("ij,ij->i", dg, ng)[:, None] * ng
        fres = f0[g] + (1.0 - f0[g]) * ((1.0 - cos_v) ** 5)[:, None]
        col[g] += fres * sample_envmap(env, refl)
    rgb[hit_ids] = np.clip(col, 0.0, 1.0)
    return RayHits(t, points, normals, labels, rgb)


def object_label_at(points: np.ndarray, tol: float = 0.02) -> np.ndarray:
    """Label of the object each 3D point lies inside or within ``tol`` of (0 = none).

    points: [P, 3] world coordinates. Returns [P] int64. Where several objects qualify the one
    with the smallest signed distance wins (inside beats near), so a Gaussian centre on the
    floor right next to the cube is "checkered floor" only if it is closer to the floor.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise DataError(f"points must be [P, 3], got shape {p.shape}")
    sdf = np.full((len(SCENE_OBJECTS), len(p)), np.inf)
    for k, obj in enumerate(SCENE_OBJECTS):
        q = p - np.asarray(obj.center)
        if obj.kind == "sphere":
            sdf[k] = np.linalg.norm(q, axis=1) - obj.size[0]
        elif obj.kind == "disk":
            rho = np.hypot(q[:, 0], q[:, 1])
            sdf[k] = np.hypot(np.maximum(rho - obj.size[0], 0.0), q[:, 2])
        elif obj.kind == "box":
            e = np.abs(q @ _yaw_matrix(obj.yaw_deg)) - np.asarray(obj.size)
            outside = np.linalg.norm(np.maximum(e, 0.0), axis=1)
            sdf[k] = outside + np.minimum(e.max(axis=1), 0.0)
        elif obj.kind == "cylinder":
            r, hh = obj.size
            e = np.stack([np.hypot(q[:, 0], q[:, 1]) - r, np.abs(q[:, 2]) - hh], axis=1)
            outside = np.linalg.norm(np.maximum(e, 0.0), axis=1)
            sdf[k] = outside + np.minimum(e.max(axis=1), 0.0)
    best = np.argmin(sdf, axis=0)
    labels = np.array([o.label for o in SCENE_OBJECTS])[best]
    return np.where(sdf[best, np.arange(len(p))] <= tol, labels, 0)


# --------------------------------------------------------------------------------------------
# Cameras and views
# --------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    """The procedural demo scene (``splatlab demo``)."""

    n_views: int = 48  # number of camera views (every ``test_every``-th is a test view)
    width: int = 160  # image width in pixels
    height: int = 120  # image height in pixels
    seed: int = 0  # seeds the camera jitter and the stand-in SfM points
    radius: float = 2.6  # distance of the cameras from the look-at point
    elevation_deg: tuple[float, float] = (15.0, 50.0)  # camera elevation range above the floor
    fov_y_deg: float = 36.0  # vertical field of view in degrees
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour of rays that miss
    supersample: int = 2  # RGB rays per pixel along each axis (anti-aliasing)
    n_points: int = 4000  # stand-in SfM points sampled on visible surfaces
    test_every: int = 8  # every n-th view is a test view (3DGS split)
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.12)  # the point the cameras aim at

    def validate(self) -> None:
        """Raise DataError naming the bad field."""
        if self.n_views < 2:
            raise DataError(f"DemoConfig.n_views must be >= 2, got {self.n_views}")
        if self.width < 8 or self.height < 8:
            raise DataError(f"DemoConfig image size must be >= 8x8, got {self.width}x{self.height}")
        if self.supersample < 1:
            raise DataError(f"DemoConfig.supersample must be >= 1, got {self.supersample}")
        if not 1.0 < self.fov_y_deg < 170.0:
            raise DataError(f"DemoConfig.fov_y_deg must be in (1, 170), got {self.fov_y_deg}")
        lo, hi = self.elevation_deg
        if not -89.0 <= lo <= hi <= 89.0:
            raise DataError(
                f"DemoConfig.elevation_deg must be (low, high) within [-89, 89], got {self.elevation_deg}"
            )
        if self.radius <= 1.2:
            raise DataError(
                f"DemoConfig.radius must exceed 1.2 (the scene fits a unit sphere), got {self.radius}"
            )
        if self.n_points < 0 or self.test_every < 2:
            raise DataError("DemoConfig.n_points must be >= 0 and test_every >= 2")
        if len(self.background) != 3:
            raise DataError(f"DemoConfig.background must be 3 floats, got {self.background}")


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _demo_cameras(cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """(viewmats [C, 4, 4], K [3, 3]) of the demo ring of cameras."""
    rng = np.random.default_rng([cfg.seed, 1])
    c = cfg.n_views
    jit = rng.uniform(-1.0, 1.0, size=(c, 3))
    lo, hi = cfg.elevation_deg
    target = np.asarray(cfg.look_at, dtype=np.float64)
    viewmats = np.empty((c, 4, 4))
    for i in range(c):
        az = 360.0 * i / c + 0.3 * (360.0 / c) * jit[i, 0]
        frac = (0.5 + i * _GOLDEN) % 1.0
        el = lo + (hi - lo) * np.clip(frac + 0.05 * jit[i, 1], 0.0, 1.0)
        rad = cfg.radius * (1.0 + 0.03 * jit[i, 2])
        eye = target + rad * _dir_from_angles(az, el)
        viewmats[i] = look_at_viewmat(eye, target)
    f = 0.5 * cfg.height / math.tan(math.radians(cfg.fov_y_deg) / 2.0)
    K = np.array([[f, 0.0, cfg.width / 2.0], [0.0, f, cfg.height / 2.0], [0.0, 0.0, 1.0]])
    return viewmats, K


def _pixel_rays(
    viewmat: np.ndarray, K: np.ndarray, width: int, height: int, du: float, dv: float
) -> tuple[np.ndarray, np.ndarray]:
    """World rays through (u + du, v + dv) of every pixel, row-major: origins, dirs [H*W, 3]."""
    R, tr = viewmat[:3, :3], viewmat[:3, 3]
    centre = -R.T @ tr
    u, v = np.meshgrid(np.arange(width) + du, np.arange(height) + dv)
    cam = np.stack(
        [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=np.float64)],
        axis=-1,
    ).reshape(-1, 3)
    dirs = _unit(cam @ R)  # rows: R^T @ cam
    return np.broadcast_to(centre, dirs.shape), dirs


def render_demo_views(
    viewmats: np.ndarray,
    Ks: np.ndarray,
    width: int,
    height: int,
    *,
    supersample: int = 2,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> dict[str, np.ndarray]:
    """Ray trace the demo world from arbitrary OpenCV cameras.

    viewmats: [C, 4, 4]; Ks: [C, 3, 3]. Returns a dict with
    ``rgb`` [C, H, W, 3] float32 (mean of supersample**2 rays, misses show ``background``),
    ``alpha`` [C, H, W] float32 (fraction of those rays that hit),
    ``depth`` [C, H, W] float32 (z along the camera axis at pixel centres, 0 where background),
    ``normals`` [C, H, W, 3] float32 (world unit normals at pixel centres, 0 where background),
    ``labels`` [C, H, W] int16 (0 = background).
    """
    viewmats = np.asarray(viewmats, dtype=np.float64).reshape(-1, 4, 4)
    Ks = np.asarray(Ks, dtype=np.float64).reshape(-1, 3, 3)
    if len(Ks) != len(viewmats):
        raise DataError(f"{len(viewmats)} viewmats but {len(Ks)} Ks")
    c, h, w = len(viewmats), height, width
    out = {
        "rgb": np.empty((c, h, w, 3), np.float32),
        "alpha": np.empty((c, h, w), np.float32),
        "depth": np.empty((c, h, w), np.float32),
        "normals": np.empty((c, h, w, 3), np.float32),
        "labels": np.empty((c, h, w), np.int16),
    }
    offsets = (np.arange(supersample) + 0.5) / supersample

    def render_one(i: int) -> None:
        o, d = _pixel_rays(viewmats[i], Ks[i], w, h, 0.5, 0.5)
        centre_hits = trace_rays(o, d, background=background)
        forward = viewmats[i, 2, :3]
        depth = centre_hits.t * (d @ forward)
        out["depth"][i] = np.where(centre_hits.hit, depth, 0.0).reshape(h, w)
        out["normals"][i] = centre_hits.normals.reshape(h, w, 3)
        out["labels"][i] = centre_hits.labels.reshape(h, w)
        if supersample == 1:
            out["rgb"][i] = centre_hits.rgb.reshape(h, w, 3)
            out["alpha"][i] = centre_hits.hit.reshape(h, w)
            return
        subs = [_pixel_rays(viewmats[i], Ks[i], w, h, du, dv) for dv in offsets for du in offsets]
        so = np.concatenate([s[0] for s in subs])
        sd = np.concatenate([s[1] for s in subs])
        sub = trace_rays(so, sd, background=background)
        n_sub = len(subs)
        out["rgb"][i] = sub.rgb.reshape(n_sub, h, w, 3).mean(axis=0)
        out["alpha"][i] = sub.hit.reshape(n_sub, h, w).mean(axis=0)

    # Views are independent and numpy releases the GIL in its loops: a few threads overlap them.
    # Each view is computed exactly as it would be serially, so the output stays bit-identical.
    workers = min(4, os.cpu_count() or 1, c)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(render_one, range(c)))
    else:
        for i in range(c):
            render_one(i)
    return out


def _unproject(
    depth: np.ndarray, viewmat: np.ndarray, K: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """World points [N, 3] of pixel centres (u, v) [N] with z-depth [N]."""
    cam = np.stack(
        [(u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(u))], axis=1
    )
    cam = cam * depth[:, None]
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    return (cam - t) @ R  # R^T (x_cam - t)


def make_demo_scene(cfg: DemoConfig | None = None) -> Dataset:
    """Render the demo world into an in-memory :class:`Dataset`.

    Frames are named ``images/frame_XXXX.png`` (the names :func:`write_demo_dataset` uses), the
    pixels are served by ``Dataset.image_loader`` (float32 [H, W, 3], composited on
    ``cfg.background``), the split is :func:`split_every_nth` with ``cfg.test_every``.

    ``Dataset.points`` / ``points_rgb`` stand in for SfM points: ``cfg.n_points`` pixel centres
    drawn at random from the TRAIN views' foreground, unprojected with the ground-truth depth,
    jittered by N(0, 0.004) in position and N(0, 0.02) in colour (the colour is the rendered
    pixel, so shading is baked in as it would be for real SfM).

    ``Dataset.meta`` holds the ground truth:
      ``depth`` [C, H, W] float32 z-depth along the camera axis, 0 where background;
      ``normals`` [C, H, W, 3] float32 world-space unit normals, 0 where background;
      ``labels`` [C, H, W] int16, 0 = background; ``label_names`` list[str] indexed by label;
      ``glossy_labels`` list[int]; ``alpha`` [C, H, W] float32 coverage in [0, 1];
      ``envmap`` [He, We, 3] float32 equirectangular (module docstring) with
      ``envmap_convention`` describing it; ``objects`` list of dicts (label, name, kind, center,
      size, yaw_deg, bounding_radius, glossy, albedo, f0); ``sun_dir`` [3] towards the sun,
      ``ambient``, ``sun_intensity``; ``config`` (asdict of cfg); ``source`` = "splatlab-demo".
    """
    cfg = DemoConfig() if cfg is None else cfg
    cfg.validate()
    viewmats, K = _demo_cameras(cfg)
    c = cfg.n_views
    Ks = np.broadcast_to(K, (c, 3, 3))
    views = render_demo_views(
        viewmats, Ks, cfg.width, cfg.height, supersample=cfg.supersample, background=cfg.background
    )
    train_ids, test_ids = split_every_nth(c, cfg.test_every)
    frames = [
        Frame(
            name=f"images/frame_{i:04d}.png",
            viewmat=viewmats[i].copy(),
            K=K.copy(),
            width=cfg.width,
            height=cfg.height,
        )
        for i in range(c)
    ]
    images = views["rgb"]
    images.setflags(write=False)

    def image_loader(i: int) -> np.ndarray:
        if not 0 <= i < c:
            raise IndexError(f"demo scene has {c} frames, asked for frame {i}")
        return images[i].copy()

    points, points_rgb = _sample_points(cfg, viewmats, K, views, train_ids)
    meta = {
        "source": "splatlab-demo",
        "config": asdict(cfg),
        "depth": views["depth"],
        "normals": views["normals"],
        "labels": views["labels"],
        "alpha": views["alpha"],
        "label_names": list(LABEL_NAMES),
        "glossy_labels": [o.label for o in SCENE_OBJECTS if o.glossy],
        "objects": [o.as_meta() for o in SCENE_OBJECTS],
        "envmap": make_envmap(),
        "envmap_convention": (
            "equirectangular, z up: row i -> polar angle pi*(i+0.5)/He from +z, column j -> "
            "azimuth 2*pi*(j+0.5)/We - pi = atan2(y, x); bilinear, azimuth wraps"
        ),
        "sun_dir": SUN_DIR.copy(),
        "ambient": AMBIENT,
        "sun_intensity": SUN_INTENSITY,
    }
    return Dataset(
        root=Path(DEMO_ROOT),
        frames=frames,
        points=points,
        points_rgb=points_rgb,
        train_ids=train_ids,
        test_ids=test_ids,
        background=tuple(float(b) for b in cfg.background),
        image_loader=image_loader,
        meta=meta,
    )


def _sample_points(
    cfg: DemoConfig, viewmats: np.ndarray, K: np.ndarray, views: dict, train_ids: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in SfM points [P, 3] float32 and colours [P, 3] uint8 (see make_demo_scene)."""
    rng = np.random.default_rng([cfg.seed, 2])
    ids = np.asarray(train_ids if train_ids else range(cfg.n_views))
    fg = views["labels"][ids] > 0  # [T, H, W]
    cand = np.flatnonzero(fg)
    if cfg.n_points == 0 or cand.size == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    pick = rng.choice(cand, size=cfg.n_points, replace=cand.size < cfg.n_points)
    pick.sort()
    t_idx, v, u = np.unravel_index(pick, fg.shape)
    pts = np.empty((len(pick), 3))
    for j in np.unique(t_idx):
        sel = t_idx == j
        cam = ids[j]
        z = views["depth"][cam, v[sel], u[sel]].astype(np.float64)
        pts[sel] = _unproject(z, viewmats[cam], K, u[sel], v[sel])
    rgb = views["rgb"][ids[t_idx], v, u].astype(np.float64)
    pts += rng.normal(0.0, 0.004, size=pts.shape)
    rgb += rng.normal(0.0, 0.02, size=rgb.shape)
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    return pts.astype(np.float32), rgb8


# --------------------------------------------------------------------------------------------
# Writing a nerfstudio-style folder
# --------------------------------------------------------------------------------------------


def write_demo_dataset(
    out_dir: str | os.PathLike, cfg: DemoConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Write the demo scene as a nerfstudio-style folder and return its path.

    Layout::

        transforms.json          camera_model OPENCV, fl_x fl_y cx cy w h, frames with file_path and
                                 OpenGL camera-to-world transform_matrix, train/val/test_filenames
                                 (val = test), ply_file_path, background
        images/frame_XXXX.png    8-bit RGB, composited on cfg.background
        sparse_pc.ply            the stand-in SfM points (x y z red green blue)
        gt/depth_XXXX.npy        [H, W] float32 z-depth, 0 = background
        gt/normals_XXXX.npy      [H, W, 3] float32 world unit normals
        gt/alpha_XXXX.npy        [H, W] float32 coverage
        gt/labels_XXXX.png       [H, W] uint8 labels
        gt/labels.json           label_names, glossy_labels, objects, sun_dir, ambient, sun_intensity,
                                 envmap_convention
        gt/envmap.npy            [He, We, 3] float32 equirectangular environment map

    The folder is built in a temporary sibling and renamed into place, so a reader never sees a
    half-written dataset. An existing ``out_dir`` raises DataError unless ``overwrite``.
    """
    import imageio.v3 as iio
    from plyfile import PlyData, PlyElement

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; choose another folder or pass overwrite=True")
    cfg = DemoConfig() if cfg is None else cfg
    ds = make_demo_scene(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "gt").mkdir()
        meta = ds.meta
        k = ds.frames[0].K
        frames_json = []
        for i, frame in enumerate(ds.frames):
            img8 = np.clip(np.round(ds.load_image(i) * 255.0), 0, 255).astype(np.uint8)
            iio.imwrite(tmp / frame.name, img8)
            np.save(tmp / "gt" / f"depth_{i:04d}.npy", meta["depth"][i])
            np.save(tmp / "gt" / f"normals_{i:04d}.npy", meta["normals"][i])
            np.save(tmp / "gt" / f"alpha_{i:04d}.npy", meta["alpha"][i])
            iio.imwrite(tmp / "gt" / f"labels_{i:04d}.png", meta["labels"][i].astype(np.uint8))
            c2w = opencv_viewmat_to_opengl_c2w(frame.viewmat)
            frames_json.append({"file_path": frame.name, "transform_matrix": c2w.tolist()})
        names = [f.name for f in ds.frames]
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": float(k[0, 0]),
            "fl_y": float(k[1, 1]),
            "cx": float(k[0, 2]),
            "cy": float(k[1, 2]),
            "w": int(cfg.width),
            "h": int(cfg.height),
            "k1": 0.0,
            "k2": 0.0,
            "p1": 0.0,
            "p2": 0.0,
            "frames": frames_json,
            "train_filenames": [names[i] for i in ds.train_ids],
            "val_filenames": [names[i] for i in ds.test_ids],
            "test_filenames": [names[i] for i in ds.test_ids],
            "ply_file_path": "sparse_pc.ply",
            "background": list(ds.background),
            "splatlab_demo_config": meta["config"],
        }
        (tmp / "transforms.json").write_text(json.dumps(transforms, indent=2))
        gt_index = {
            key: meta[key]
            for key in ("label_names", "glossy_labels", "objects", "ambient", "sun_intensity")
        }
        gt_index["sun_dir"] = [float(x) for x in meta["sun_dir"]]
        gt_index["envmap_convention"] = meta["envmap_convention"]
        gt_index["depth"] = "z along the camera axis (OpenCV), 0 where background"
        (tmp / "gt" / "labels.json").write_text(json.dumps(gt_index, indent=2))
        np.save(tmp / "gt" / "envmap.npy", meta["envmap"])
        vertex = np.empty(
            len(ds.points),
            dtype=[
                ("x", "f4"),
                ("y", "f4"),
                ("z", "f4"),
                ("red", "u1"),
                ("green", "u1"),
                ("blue", "u1"),
            ],
        )
        for j, key in enumerate("xyz"):
            vertex[key] = ds.points[:, j]
        for j, key in enumerate(("red", "green", "blue")):
            vertex[key] = ds.points_rgb[:, j]
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp / "sparse_pc.ply"))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote the demo dataset (%d views) to %s", len(ds.frames), out)
    return out
