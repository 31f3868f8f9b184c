"""``splatlab train --method gaussianshader``: the 3DGS trainer with GaussianShader's shading.

:class:`GaussianShaderTrainer` subclasses :class:`splatlab.training.trainer.Trainer` through its hooks:

* ``extra_channels``: the per-Gaussian shading attributes (tint, roughness, normal residual) are
  extras of the ParameterDict, so gsplat's strategies clone/split/prune/relocate them with the
  geometry. ``sh0`` is the diffuse colour and ``shN`` the residual colour (SH bands 1..d, with
  d = ``ShaderConfig.residual_sh_degree``).
* ``aux_optimizers`` / ``aux_state_dict``: the environment cube map and its Adam state.
* ``channels``: colour, normal, normal-residual magnitude (and, for the viewer, diffuse /
  specular / residual buffers) are shaded per Gaussian and rendered together with the expected
  depth (and any field's channels) in ONE ``render_channels`` call; the official code rasterizes
  4-5 times per step for the same outputs.
* ``loss``: added to (1 - l) L1 + l D-SSIM (the trainer): GaussianShader's terms with the
  official defaults (``arguments/__init__.py`` of the authors' code after their fix of issue #2):
  ``lambda_normal = 0.2`` (rendered normal vs normal of the rendered depth, Ref-NeRF's
  predicted-normal loss, weight = eroded alpha), ``lambda_zero_one = 1e-3`` (alpha towards 0/1),
  ``lambda_delta = 1e-3`` (magnitude of the normal residual).

Differences from the official defaults, chosen for short CPU runs and stated in ShaderConfig: the
learning rates of tint / roughness / normal residual (official 2e-4 each over 30k steps) and the
environment (official 1.6e-2 decayed to 1.6e-3) and the cube resolution (official 64); the
residual colour is SH degree 3 (the authors' scripts choose it with --brdf_dim).
``ShaderConfig.tint_model`` = "paper" offers the paper's ``c_d + s L_s`` (the tint scales the whole
split-sum specular) instead of the authors' ``L (s A + B)``; the default is the authors' form.
Ablation options (issue 18, ``benchmarks/results/shading_env.md``): ``shading`` = "deferred"
(3DGS-DR's per-pixel split sum), ``ambient`` and ``diffuse_activation`` = "sigmoid" (the authors'
ambient irradiance term and diffuse activation), ``residual_from_iter`` / ``lambda_residual``
(delayed / penalised residual colour), ``normal_loss_two_way`` (depth-normal consistency that also
moves the depth), ``lambda_env_smooth`` (TV on the environment).
"""

from __future__ import annotations

import dataclasses
import io
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ...errors import CheckpointError, DataError
from ...rendering.channels import render_channels
from ...rendering.shading.brdf import split_sum_lut
from ...rendering.shading.envmap import EnvironmentMap, sample_cube
from ...rendering.shading.gaussianshader import (
    SHADING_KEYS,
    ShadedGaussians,
    camera_center,
    delta_normal_loss,
    erode_alpha,
    normal_consistency_loss,
    normals_from_depth,
    shade_gaussians,
    shade_pixels,
    zero_one_loss,
)
from ...scene.datasets.base import Dataset
from ...scene.gaussians import load_ply
from ...training.extension import Appearance, StoredSceneParts
from ...training.trainer import TrainConfig, Trainer
from ...utils import atomic_write, atomic_write_bytes

__all__ = [
    "SHADER_RENDER_MODES",
    "ShaderConfig",
    "GaussianShaderAppearance",
    "make_trainer",
    "load_shader_trainer",
    "load_shader_scene",
    "ShadedScene",
    "shaded_scene_from",
    "shading_metrics",
]

ENVMAP_PT = "envmap.pt"
ENVMAP_PNG = "envmap.png"
ENVMAP_NPY = "envmap.npy"
SHADER_RENDER_MODES = ("normals", "diffuse", "specular", "residual", "environment")
_BASE_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


@dataclass
class ShaderConfig:
    """Options of ``--method gaussianshader`` (official GaussianShader defaults unless stated)."""

    residual_sh_degree: int = 3
    """SH degree of the residual colour (bands 1..d; 0 = no residual). Replaces --sh-degree.

    3, the degree plain 3DGS uses (the authors' code sets it with ``--brdf_dim``; the paper does
    not fix it): on the demo at 160x120, 600 steps (BENCHMARKS.md, issue 5) it raised the glossy
    PSNR from 22.53 dB (degree 1) to 22.78 dB, past plain 3DGS's 22.59 dB."""
    env_resolution: int = 32
    """Cube-map face resolution of the learned environment (official: 64; 32 is cheaper on CPU)."""
    env_min_resolution: int = 8
    """Coarsest mip level; levels halve the resolution down to this."""
    env_init: float = 0.5
    """Initial constant radiance of the environment map."""
    env_lr: float = 1.6e-2
    """Adam learning rate of the environment texels (official initial value, kept constant)."""
    env_max: float = 1.0
    """Texels are clamped to [0, env_max] before each step (the official code clamps to [0, 1])."""
    min_roughness: float = 0.08
    """Roughness of the sharpest prefiltered level (nvdiffrec's 0.08)."""
    max_roughness: float = 0.5
    """Roughness of the second-coarsest level; the coarsest is prefiltered at roughness 1."""
    prefilter_cutoff: float = 0.99
    """Fraction of the GGX lobe's mass kept by the prefilter (nvdiffrec's cutoff)."""
    lut_size: int = 32
    """Resolution of the split-sum BRDF lookup table."""
    tint_model: Literal["official", "paper"] = "official"
    """How the tint enters the split sum: "official" ``L (tint A + B)`` (authors' code) or "paper"
    ``tint L (A + B)`` (the paper's ``c_d + s L_s``); see splatlab.rendering.shading.gaussianshader."""
    init_tint: float = 0.1
    """Initial specular tint (F0), all channels."""
    init_roughness: float = 0.5
    """Initial roughness (official default 0.6)."""
    lr_tint: float = 5e-2
    """Learning rate of the tint logits (official 2e-4 over 30k steps). 5e-2 (was 5e-3) lets the
    chrome ball's tint reach its F0 (~0.86 from 0.1, ~4 logit units) within 600 steps; with
    ``lr_roughness`` 5e-2 and deferred shading: glossy 23.19 dB (vs 23.06), environment
    correlation 0.37 (vs 0.14) on the demo (benchmarks/results/shading_env.md)."""
    lr_roughness: float = 5e-2
    """Learning rate of the roughness logits (official 2e-4 over 30k steps; was 5e-3)."""
    lr_normal_res: float = 1e-3
    """Learning rate of the normal residuals (official 2e-4 over 30k steps). 1e-2 helped at 80x60
    (glossy 24.44 vs 23.88 dB at 600 steps) but hurt at 160x120 (22.32 vs 22.78 dB), so it stays."""
    lambda_normal: float = 0.2
    """Weight of the normal-consistency loss (official lambda_predicted_normal)."""
    lambda_zero_one: float = 1e-3
    """Weight of the alpha zero-one regulariser (official lambda_zero_one)."""
    lambda_delta: float = 1e-3
    """Weight of the normal-residual regulariser (official lambda_delta_reg)."""
    normal_reg_from_iter: int = 0
    """First step of the normal-consistency loss (official normal_reg_from_iter)."""
    normal_reg_until_iter: int = 30_000
    """Last step of the normal-consistency loss (official normal_reg_util_iter)."""
    alpha_erode_px: int = 2
    """Radius of the erosion of the alpha used as the normal-loss weight."""
    ambient: bool = False
    """Add the authors' ambient term ``(1 - tint) E(n)`` (E: the environment's irradiance along
    the normal, its coarsest prefiltered level); the paper does not have it."""
    diffuse_activation: Literal["clamp", "sigmoid"] = "clamp"
    """"clamp" ``max(C0 sh0 + 0.5, 0)`` or the authors' "sigmoid" ``sigmoid(C0 sh0 + 0.5 - log 3)``."""
    residual_from_iter: int = 0
    """The residual colour is zero (SH degree 0) before this training step, so the split sum
    has to explain the view dependence first."""
    lambda_residual: float = 0.0
    """Weight of an L2 penalty on the residual colour's SH coefficients (mean of shN^2)."""
    normal_loss_two_way: bool = True
    """The normal-consistency loss also moves the depth (the two-way depth-normal consistency of
    3DGS-DR / GS-IR); False: the depth normals are held fixed (GaussianShader). With deferred
    shading and lr 5e-2 on the demo at 600 steps: glossy 23.19 -> 25.30 dB, test 29.77 -> 30.56
    dB, shading-normal error 16.3 -> 13.1 deg, environment correlation 0.37 -> 0.77."""
    lambda_env_smooth: float = 0.0
    """Weight of a total-variation penalty on the environment texels (within faces)."""
    shading: Literal["gaussian", "deferred"] = "deferred"
    """"deferred": normal, tint and roughness blended first, the reflection looked up once per
    pixel along its ray (3DGS-DR's order); "gaussian": the split sum per Gaussian, then blended
    (GaussianShader's code; scenes stored without this field are read as "gaussian"). On the demo
    at 600 steps deferred raised glossy PSNR 22.77 -> 23.06 dB, test PSNR 29.63 -> 29.71 dB and the
    learned-vs-true environment correlation -0.26 -> 0.14 (benchmarks/results/shading_env.md)."""

    def validate(self) -> None:
        """Raise ValueError naming the bad field."""
        if not 0 <= self.residual_sh_degree <= 3:
            raise ValueError(f"residual_sh_degree must be in 0..3, got {self.residual_sh_degree}")
        for name in ("init_tint", "init_roughness"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        for name in (
            "lambda_normal",
            "lambda_zero_one",
            "lambda_delta",
            "env_lr",
            "lr_tint",
            "lr_roughness",
            "lr_normal_res",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.diffuse_activation not in ("clamp", "sigmoid"):
            raise ValueError(
                f"diffuse_activation must be 'clamp' or 'sigmoid', got {self.diffuse_activation!r}"
            )
        for name in ("lambda_residual", "lambda_env_smooth", "residual_from_iter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.shading not in ("gaussian", "deferred"):
            raise ValueError(f"shading must be 'gaussian' or 'deferred', got {self.shading!r}")
        if self.tint_model not in ("official", "paper"):
            raise ValueError(f"tint_model must be 'official' or 'paper', got {self.tint_model!r}")
        if self.env_max <= 0:
            raise ValueError(f"env_max must be positive, got {self.env_max}")

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> ShaderConfig:
        """The config of a stored run or scene (unknown keys ignored); one stored before
        deferred shading existed keeps its per-Gaussian shading and one-way normal loss."""
        return _shader_config_from(values)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class GaussianShaderAppearance(Appearance):
    """GaussianShader's shading (split-sum GGX with a learnable cube map) as the trainer's
    appearance, and the renderer of stored GaussianShader scenes (:class:`ShadedScene`).

    Args:
        config: the :class:`ShaderConfig`.
        env: a ready environment map (stored scenes); built in :meth:`attach` when training.
        env_rotation: params frame -> environment frame (None: the same).
    """

    name = "gaussianshader"
    description = "GaussianShader: split-sum GGX shading with a learned environment map"
    Config = ShaderConfig
    section = "shader"
    needs_depth = True
    render_modes = SHADER_RENDER_MODES

    def __init__(
        self,
        config: ShaderConfig | None = None,
        env: EnvironmentMap | None = None,
        env_rotation: Tensor | None = None,
    ) -> None:
        super().__init__(config)
        self.env = env
        self.env_rotation = env_rotation
        self.env_optimizer: torch.optim.Optimizer | None = None
        self._trainer: weakref.ref[Trainer] | None = None
        self.lut = split_sum_lut(self.config.lut_size) if env is not None else None
        if env is not None:
            self.lut = self.lut.to(env.base.device)

    # -------------------------------------------------------------- training hooks
    def adjust_train_config(self, cfg: Any) -> Any:
        return dataclasses.replace(cfg, sh_degree=self.config.residual_sh_degree)

    def extra_channels(self) -> dict[str, int]:
        return dict(SHADING_KEYS)

    def param_lrs(self) -> dict[str, float]:
        sc = self.config
        return {"tint": sc.lr_tint, "roughness": sc.lr_roughness, "normal_res": sc.lr_normal_res}

    def attach(self, trainer: Trainer) -> None:
        sc = self.config
        with torch.no_grad():
            trainer.params["tint"].fill_(_logit(sc.init_tint))
            trainer.params["roughness"].fill_(_logit(sc.init_roughness))
        self.env = EnvironmentMap(
            sc.env_resolution, sc.env_min_resolution, sc.env_init, sc.min_roughness,
            sc.max_roughness, sc.prefilter_cutoff,
        ).to(trainer.device)
        self.env_optimizer = torch.optim.Adam([self.env.base], lr=sc.env_lr, eps=1e-15)
        self.lut = split_sum_lut(sc.lut_size).to(trainer.device)
        self._trainer = weakref.ref(trainer)

    def _residual_off(self) -> bool:
        """True while training is before ``residual_from_iter``."""
        if self.config.residual_from_iter <= 0 or self._trainer is None:
            return False
        trainer = self._trainer()
        return trainer is not None and trainer.step < self.config.residual_from_iter

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.env_optimizer] if self.env_optimizer is not None else []

    def aux_state_dict(self) -> dict[str, Any]:
        self._project_env()
        return {
            "env_base": self.env.base.detach().cpu(),
            "env_optimizer": self.env_optimizer.state_dict(),
            "shader_cfg": dataclasses.asdict(self.config),
        }

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        if "env_base" not in state:
            raise CheckpointError(
                "the checkpoint has no environment map: it was not trained with --method gaussianshader"
            )
        base = state["env_base"]
        if tuple(base.shape) != tuple(self.env.base.shape):
            raise CheckpointError(
                f"checkpoint environment map is {list(base.shape)} but ShaderConfig asks for "
                f"{list(self.env.base.shape)}; use env_resolution={base.shape[1]}"
            )
        with torch.no_grad():
            self.env.base.copy_(base.to(self.env.base.device))
        self.env_optimizer.load_state_dict(state["env_optimizer"])

    def loss(self, trainer: Trainer, step: int, out: dict[str, Any], gt: Tensor) -> Tensor | None:
        sc = self.config
        loss = gt.new_zeros(())
        alpha = out["alpha"][..., 0]
        weight = erode_alpha(alpha.detach(), sc.alpha_erode_px)
        if sc.lambda_normal > 0 and sc.normal_reg_from_iter <= step < sc.normal_reg_until_iter:
            depth = out["depth"][..., 0]
            n_ref, valid = normals_from_depth(
                depth if sc.normal_loss_two_way else depth.detach(), out["viewmat"], out["K"]
            )
            loss = loss + sc.lambda_normal * normal_consistency_loss(
                out["normal"], n_ref, weight * valid, detach_ref=not sc.normal_loss_two_way
            )
        if sc.lambda_residual > 0 and trainer.params["shN"].numel() > 0:
            loss = loss + sc.lambda_residual * trainer.params["shN"].square().mean()
        if sc.lambda_env_smooth > 0:
            b = self.env.base
            tv = (b[:, 1:] - b[:, :-1]).abs().mean() + (b[:, :, 1:] - b[:, :, :-1]).abs().mean()
            loss = loss + sc.lambda_env_smooth * tv
        if sc.lambda_zero_one > 0:
            loss = loss + sc.lambda_zero_one * zero_one_loss(alpha)
        if sc.lambda_delta > 0:
            loss = loss + sc.lambda_delta * delta_normal_loss(out["delta"][..., 0], weight)
        return loss

    def export(self, trainer: Trainer, ply_path: Path) -> None:
        """The environment map beside the PLY: ``envmap.pt`` (cube map + conventions),
        ``envmap.npy`` and ``envmap.png`` (equirectangular, z up). The environment is in the
        TRAINING (normalised) frame; ``envmap.pt`` stores the dataset transform so a reader can
        rotate lookups into it."""
        self.export_environment(Path(ply_path).parent, trainer.dataset.transform)

    def evaluate(self, trainer: Trainer) -> dict[str, Any] | None:
        ds = trainer.dataset
        if not all(k in ds.meta for k in ("labels", "normals", "glossy_labels")):
            return None
        return shading_metrics(trainer)

    def summary(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"glossy PSNR {metrics['psnr_glossy']:.2f} dB, matte {metrics['psnr_matte']:.2f} dB, "
            f"normal error {metrics['normal_error_deg']:.1f} deg"
        ]

    def viewer_parts(self, trainer: Trainer) -> StoredSceneParts:
        return StoredSceneParts(render_fn=trainer.render, render_modes=("RGB", *SHADER_RENDER_MODES))

    @classmethod
    def open_stored(cls, loaded: Any, params: Any) -> StoredSceneParts | None:
        shaded = shaded_scene_from(loaded, params)
        if shaded is None:
            return None

        def render_fn(*args: Any, **kwargs: Any) -> Any:
            return shaded.render(*args, **kwargs)

        return StoredSceneParts(render_fn=render_fn, render_modes=shaded.viewer_render_modes, scene=shaded)

    # -------------------------------------------------------------- rendering
    @torch.no_grad()
    def _project_env(self) -> None:
        """Clamp the texels to [0, env_max] (the official code clamps after each step; the
        trainer has no post-step hook, so this runs before every use and every save)."""
        self.env.base.clamp_(0.0, self.config.env_max)

    def shade(self, params: Any, viewmat: Tensor, sh_degree: int) -> ShadedGaussians:
        """Per-Gaussian shading for a camera [4, 4]."""
        return shade_gaussians(
            params,
            camera_center(viewmat),
            self.env,
            self.lut,
            0 if self._residual_off() else sh_degree,
            tint_model=self.config.tint_model,
            env_rotation=self.env_rotation,
            ambient=self.config.ambient and not self._deferred(),  # deferred: per pixel
            diffuse_activation=self.config.diffuse_activation,
        )

    def _deferred(self) -> bool:
        return self.config.shading == "deferred"

    def _gaussian_channels(self, sh: ShadedGaussians) -> dict[str, Tensor]:
        if not self._deferred():
            return {"rgb": sh.color, "normal": sh.normal, "delta": sh.normal_res_norm}
        return {
            "rgb": sh.diffuse + sh.residual,
            "normal": sh.normal,
            "delta": sh.normal_res_norm,
            "tint": sh.tint,
            "rough": sh.roughness,
        }

    def _pixel_specular(self, out: dict[str, Any], viewmat: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
        """Deferred mode: (specular, ambient) [H, W, 3] of a render with tint / rough channels."""
        sc = self.config
        return shade_pixels(
            out["normal"], out["tint"], out["rough"], out["alpha"], viewmat, K, self.env,
            self.lut, sc.tint_model, self.env_rotation, sc.ambient,
        )

    def channels(self, params: Any, viewmat: Tensor, sh_degree: int) -> dict[str, Tensor]:
        self._project_env()
        return self._gaussian_channels(self.shade(params, viewmat, sh_degree))

    def finish(self, out: dict[str, Any]) -> dict[str, Any]:
        if self._deferred():
            spec, amb = self._pixel_specular(out, out["viewmat"], out["K"])
            out["rgb"] = out["rgb"] + spec + amb
        out["img"] = out["rgb"]
        return out

    def render_buffers(
        self,
        params: Any,
        viewmat: Tensor,  # [4, 4]
        K: Tensor,  # [3, 3]
        width: int,
        height: int,
        sh_degree: int,
        background: Tensor,  # [3]
        buffers: bool = False,
        **raster: Any,
    ) -> dict[str, Any]:
        """One rasterization of colour, normal, normal-residual magnitude and expected depth (plus
        diffuse / specular / residual when ``buffers``).

        Returns a dict: ``img`` [H, W, 3] (composited on the background), ``normal`` [H, W, 3]
        (alpha-blended, not normalised), ``delta`` [H, W, 1], ``depth`` [H, W, 1] (expected),
        ``alpha`` [H, W, 1], ``info``; with ``buffers`` also ``diffuse``, ``specular``,
        ``residual`` [H, W, 3] (no background).
        """
        self._project_env()
        sh = self.shade(params, viewmat, sh_degree)
        chans = self._gaussian_channels(sh)
        if buffers:
            chans.update(diffuse=sh.diffuse, residual=sh.residual)
            if not self._deferred():
                chans["specular"] = sh.specular
        out, alpha, info = render_channels(
            params, viewmat[None], K[None], width, height, chans,
            backgrounds={"rgb": background}, depth=True, **raster,
        )
        res: dict[str, Any] = {k: v[0] for k, v in out.items()}
        res["img"] = res.pop("rgb")
        res.update(alpha=alpha[0], info=info)
        if self._deferred():
            spec, amb = self._pixel_specular(res, viewmat, K)
            res["img"] = res["img"] + spec + amb
            if buffers:
                res["specular"] = spec
                res["diffuse"] = res["diffuse"] + amb
            del res["tint"], res["rough"]
        return res

    def render(
        self,
        params: Any,
        viewmat: Tensor,  # [4, 4]
        K: Tensor,  # [3, 3]
        width: int,
        height: int,
        sh_degree: int,
        background: Tensor,  # [3]
        render_mode: str = "RGB",
        **raster: Any,
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """The base modes (RGB, D, ED, RGB+D, RGB+ED) plus the viewer's shading modes:
        "normals" (world normals mapped to [0, 1]), "diffuse", "specular", "residual" (+0.5),
        "environment" (the learned environment seen along the camera rays)."""
        if render_mode == "environment":
            return self._render_environment(viewmat, K, width, height)
        if render_mode not in _BASE_MODES + SHADER_RENDER_MODES:
            raise ValueError(
                f"render_mode must be one of {_BASE_MODES + SHADER_RENDER_MODES}, got {render_mode!r}"
            )
        buffers = render_mode in ("diffuse", "specular", "residual")
        o = self.render_buffers(
            params, viewmat, K, width, height, sh_degree, background, buffers=buffers, **raster
        )
        alpha, info = o["alpha"], o["info"]
        if render_mode == "RGB":
            img = o["img"]
        elif render_mode == "ED":
            img = o["depth"]
        elif render_mode == "D":
            img = o["depth"] * alpha
        elif render_mode == "RGB+ED":
            img = torch.cat([o["img"], o["depth"]], -1)
        elif render_mode == "RGB+D":
            img = torch.cat([o["img"], o["depth"] * alpha], -1)
        elif render_mode == "normals":
            n = torch.nn.functional.normalize(o["normal"], dim=-1)
            img = (n * 0.5 + 0.5) * alpha
        elif render_mode == "residual":
            img = o["residual"] + 0.5 * alpha
        else:
            img = o[render_mode]
        return img, alpha, info

    @torch.no_grad()
    def _render_environment(
        self, viewmat: Tensor, K: Tensor, width: int, height: int
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        dev = self.env.base.device
        v, u = torch.meshgrid(
            torch.arange(height, device=dev) + 0.5,
            torch.arange(width, device=dev) + 0.5,
            indexing="ij",
        )
        cam = torch.stack(
            [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1
        )
        dirs = cam.reshape(-1, 3) @ viewmat[:3, :3]  # R^T d
        if self.env_rotation is not None:
            dirs = dirs @ self.env_rotation.to(dirs).T
        img = sample_cube(self.env.base, dirs).reshape(height, width, 3)
        return img, torch.ones_like(img[..., :1]), {}

    # -------------------------------------------------------------- files
    def export_environment(
        self, folder: Path, transform: np.ndarray | None = None, height: int = 128
    ) -> dict[str, Path]:
        """Write envmap.pt / envmap.npy / envmap.png into ``folder`` (atomically)."""
        import imageio.v3 as iio

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._project_env()
        latlong = self.env.to_latlong(height).cpu().numpy().astype(np.float32)
        state = {
            "cube": self.env.base.detach().cpu(),
            "cube_layout": "OpenGL faces +x,-x,+y,-y,+z,-z; see splatlab.rendering.shading.envmap",
            "transform": torch.as_tensor(
                np.eye(4) if transform is None else np.asarray(transform), dtype=torch.float64
            ),
            "shader_cfg": dataclasses.asdict(self.config),
        }
        with atomic_write(folder / ENVMAP_PT, "wb") as f:
            torch.save(state, f)
        buf = io.BytesIO()
        np.save(buf, latlong)
        atomic_write_bytes(folder / ENVMAP_NPY, buf.getvalue())
        png = iio.imwrite(
            "<bytes>", (np.clip(latlong, 0, 1) * 255 + 0.5).astype(np.uint8), extension=".png"
        )
        atomic_write_bytes(folder / ENVMAP_PNG, png)
        return {"pt": folder / ENVMAP_PT, "npy": folder / ENVMAP_NPY, "png": folder / ENVMAP_PNG}


@torch.no_grad()
def export_buffers(trainer: Trainer, folder: Path, ids: list[int] | None = None) -> list[Path]:
    """PNG images of the diffuse, specular, residual (+0.5) and normal ((n + 1) / 2) buffers of a
    GaussianShader trainer's views (default: test views, else train views),
    ``<kind>_<view>.png``, and the environment map."""
    import imageio.v3 as iio

    app = _shader_of(trainer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else (trainer.dataset.test_ids or trainer.dataset.train_ids)
    written = []
    for i in ids:
        vm, K, w, h = trainer.camera(i)
        for kind in ("diffuse", "specular", "residual", "normals"):
            img, _, _ = trainer.render(vm, K, w, h, render_mode=kind)
            arr = (img.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            p = folder / f"{kind}_{i:04d}.png"
            atomic_write_bytes(p, iio.imwrite("<bytes>", arr, extension=".png"))
            written.append(p)
    app.export_environment(folder, trainer.dataset.transform)
    return written


def _shader_of(trainer: Trainer) -> GaussianShaderAppearance:
    if not isinstance(trainer.appearance, GaussianShaderAppearance):
        raise CheckpointError(
            f"{trainer.run_dir} was not trained with --method gaussianshader "
            f"({trainer.components.describe()})"
        )
    return trainer.appearance


def make_trainer(
    dataset: Dataset, cfg: TrainConfig, shader_cfg: ShaderConfig | None = None, **kw: Any
) -> Trainer:
    """A trainer with the GaussianShader appearance (``kw``: on_step, on_event, configs, ...)."""
    cfg = dataclasses.replace(cfg, appearance=GaussianShaderAppearance.name)
    configs = {**kw.pop("configs", {}), "shader": shader_cfg or ShaderConfig()}
    return Trainer(dataset, cfg, configs=configs, **kw)


def load_shader_trainer(run_dir: Path, dataset: Dataset | None = None, **overrides: Any) -> Trainer:
    """A GaussianShader trainer restored from a run directory (config.json + latest checkpoint)."""
    from ...training.trainer import load_trainer

    trainer = load_trainer(Path(run_dir), dataset, **overrides)
    _shader_of(trainer)
    return trainer


def load_shader_scene(
    ply_path: Path, transform: np.ndarray | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.ParameterDict, EnvironmentMap]:
    """Read a scene exported by :meth:`GaussianShaderTrainer.export_ply` (the PLY and the
    ``envmap.pt`` beside it). ``transform``: as in :func:`splatlab.scene.gaussians.load_ply`."""
    ply_path = Path(ply_path)
    params = load_ply(ply_path, transform=transform)
    missing = [k for k in SHADING_KEYS if k not in params]
    if missing:
        raise DataError(
            f"{ply_path} lacks the GaussianShader properties {missing}; it was not exported by "
            "`splatlab train --method gaussianshader`"
        )
    env_path = ply_path.parent / ENVMAP_PT
    if not env_path.is_file():
        raise DataError(
            f"{env_path} is missing: a GaussianShader scene keeps its environment map beside the PLY"
        )
    state = _load_envmap(env_path)
    cfg = state.get("shader_cfg", {})
    base = state["cube"]
    env = EnvironmentMap(
        base.shape[1],
        cfg.get("env_min_resolution", min(8, base.shape[1])),
        0.5,
        cfg.get("min_roughness", 0.08),
        cfg.get("max_roughness", 0.5),
        cfg.get("prefilter_cutoff", 0.99),
        base=base,
    )
    return params.to(device), env.to(device)


class ShadedScene:
    """A stored GaussianShader scene rendered without its dataset or trainer (the viewer's static
    path): ``ShadedScene(params, env, shader_cfg).render(viewmat, K, w, h, render_mode=...)`` with
    the modes of :meth:`GaussianShaderAppearance.render` (RGB, depth modes, normals, diffuse,
    specular, residual, environment)."""

    viewer_render_modes: tuple[str, ...] = ("RGB", *SHADER_RENDER_MODES)

    def __init__(
        self,
        params: Any,
        env: EnvironmentMap,
        shader_cfg: ShaderConfig | None = None,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
        env_rotation: Tensor | None = None,
    ) -> None:
        missing = [k for k in SHADING_KEYS if k not in params]
        if missing:
            raise DataError(f"the scene lacks the GaussianShader attributes {missing}")
        self.params = params
        self.appearance = GaussianShaderAppearance(shader_cfg, env=env, env_rotation=env_rotation)
        self.shader_cfg = self.appearance.config
        self.env = env
        self._bg = torch.tensor(background, dtype=torch.float32, device=params["means"].device)

    @torch.no_grad()
    def render(
        self,
        viewmat: Tensor,
        K: Tensor,
        width: int,
        height: int,
        sh_degree: int | None = None,
        background: Tensor | None = None,
        render_mode: str = "RGB",
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        deg = self.shader_cfg.residual_sh_degree if sh_degree is None else sh_degree
        bg = self._bg if background is None else background
        return self.appearance.render(self.params, viewmat, K, width, height, deg, bg, render_mode)

    @torch.no_grad()
    def render_buffers(self, viewmat: Tensor, K: Tensor, width: int, height: int, buffers: bool = False) -> dict[str, Any]:
        return self.appearance.render_buffers(
            self.params, viewmat, K, width, height, self.shader_cfg.residual_sh_degree, self._bg, buffers
        )


def shaded_scene_from(loaded: Any, params: Any | None = None) -> ShadedScene | None:
    """The :class:`ShadedScene` of a :class:`~splatlab.scene.checkpoint.LoadedScene` trained with
    ``--method gaussianshader`` (environment from the checkpoint, or ``envmap.pt`` beside a PLY),
    or None for other scenes."""
    params = loaded.params if params is None else params
    if any(k not in params for k in SHADING_KEYS):
        return None
    aux = (loaded.extra or {}).get("aux") or {}
    rotation = None
    if "env_base" in aux:
        cfg = _shader_config_from(aux.get("shader_cfg") or {})
        base = aux["env_base"].float()
    else:
        env_path = Path(loaded.source).parent / ENVMAP_PT
        if not env_path.is_file():
            raise DataError(
                f"{loaded.source} has GaussianShader attributes but no environment map: put the "
                f"run's {ENVMAP_PT} beside it (written by `splatlab train --method gaussianshader`)"
            )
        state = _load_envmap(env_path)
        cfg = _shader_config_from(state.get("shader_cfg") or {})
        base = state["cube"].float()
        # the PLY is in original coordinates, the environment in the training frame
        T = np.asarray(state.get("transform", np.eye(4)), dtype=np.float64)
        if not np.allclose(T, np.eye(4)):
            A = T[:3, :3]
            rotation = torch.as_tensor(A / np.cbrt(np.linalg.det(A)), dtype=torch.float32)
    env = EnvironmentMap(
        base.shape[1],
        min(cfg.env_min_resolution, base.shape[1]),
        cfg.env_init,
        cfg.min_roughness,
        cfg.max_roughness,
        cfg.prefilter_cutoff,
        base=base,
    )
    return ShadedScene(params, env.to(params["means"].device), cfg, env_rotation=rotation)


def _load_envmap(path: Path) -> dict[str, Any]:
    """``envmap.pt`` read with ``weights_only=True`` (tensors, numbers, strings: no code runs
    from a scene file). Files written before the transform was stored as a tensor are refused."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise DataError(
            f"{path} is not a plain-tensor environment map (it may hold code, or come from an "
            "older splatlab); re-export the scene with `splatlab export RUN` to rewrite it"
        ) from e
    if not isinstance(state, dict) or "cube" not in state:
        raise DataError(f"{path} has no 'cube' entry: not an environment map written by splatlab")
    return state


def _shader_config_from(values: dict[str, Any]) -> ShaderConfig:
    names = {f.name for f in dataclasses.fields(ShaderConfig)}
    kept = {k: v for k, v in values.items() if k in names}
    if values and "shading" not in values:  # stored before deferred shading existed: keep
        kept["shading"] = "gaussian"  # that run's shading and one-way normal loss (resume too)
        kept.setdefault("normal_loss_two_way", False)
    return ShaderConfig(**kept)


@torch.no_grad()
def shading_metrics(trainer: Trainer, ids: list[int] | None = None) -> dict[str, Any]:
    """Ground-truth comparisons on the demo scene (needs ``dataset.meta`` labels / normals):

    * ``psnr_glossy`` / ``psnr_matte``: PSNR over the pixels (pooled over views) whose label is
      a glossy object (``meta["glossy_labels"]``) / any other object;
    * ``normal_error_deg``: mean angle between rendered normals and ``meta["normals"]`` on object
      pixels with alpha > 0.5 (a GaussianShader trainer's shading normals);
    * ``depth_normal_error_deg``: the same for the normals of the rendered expected depth (any
      trainer, so plain 3DGS is comparable).
    """
    ds = trainer.dataset
    meta = ds.meta
    if "labels" not in meta or "normals" not in meta or "glossy_labels" not in meta:
        raise DataError(
            f"dataset {ds.root} has no ground-truth labels/normals (use the demo scene)"
        )
    ids = ids if ids is not None else (ds.test_ids or ds.train_ids)
    glossy = torch.tensor(list(meta["glossy_labels"]), device=trainer.device)
    se = {"glossy": [0.0, 0], "matte": [0.0, 0]}
    ang, ang_d = [], []
    for i in ids:
        vm, K, w, h = trainer.camera(i)
        gt = trainer.image(i)
        labels = torch.as_tensor(np.asarray(meta["labels"][i]), device=trainer.device).long()
        n_gt = torch.as_tensor(
            np.asarray(meta["normals"][i]), device=trainer.device, dtype=torch.float32
        )
        if isinstance(trainer.appearance, GaussianShaderAppearance):
            o = trainer.appearance.render_buffers(
                trainer.params, vm, K, w, h, trainer.cfg.sh_degree, trainer.background(),
                **trainer.raster_options(),
            )
            img, depth, alpha = o["img"], o["depth"][..., 0], o["alpha"][..., 0]
            n = torch.nn.functional.normalize(o["normal"], dim=-1)
        else:
            out, a, _ = trainer.render(vm, K, w, h, render_mode="RGB+ED")
            img, depth, alpha, n = out[..., :3], out[..., 3], a[..., 0], None
        img = img.clamp(0, 1)
        is_glossy = torch.isin(labels, glossy)
        for name, m in (("glossy", is_glossy), ("matte", (labels > 0) & ~is_glossy)):
            se[name][0] += float(((img - gt) ** 2)[m].sum())
            se[name][1] += int(m.sum()) * 3
        fg = (labels > 0) & (alpha > 0.5)
        if n is not None:
            cos = (n * n_gt).sum(-1).clamp(-1, 1)[fg]
            ang.append(torch.rad2deg(torch.arccos(cos)))
        nd, valid = normals_from_depth(depth, vm, K)
        cos_d = (nd * n_gt).sum(-1).clamp(-1, 1)[fg & valid]
        ang_d.append(torch.rad2deg(torch.arccos(cos_d)))
    res: dict[str, Any] = {"n_views": len(ids)}
    for name, (s, c) in se.items():
        mse = s / max(c, 1)
        res[f"psnr_{name}"] = float(10 * math.log10(1.0 / max(mse, 1e-12)))
    res["normal_error_deg"] = float(torch.cat(ang).mean()) if ang else None
    res["depth_normal_error_deg"] = float(torch.cat(ang_d).mean()) if ang_d else None
    return res
