"""The 3DGS trainer: Gaussians fitted to posed images with the rasterizer of ``splatlab.rendering``.

Follows the 3DGS paper (Kerbl et al. 2023) and gsplat's ``simple_trainer`` defaults: initialise from
SfM points (or random points in a box), one Adam optimizer per parameter with the paper's learning
rates (means scaled by the scene extent and decayed exponentially to 1% over the run), SH degree
raised every ``sh_degree_interval`` steps, loss (1 - lambda) L1 + lambda D-SSIM with lambda = 0.2,
densification by gsplat's DefaultStrategy (with the opacity reset that gsplat 1.5.3 skips) or
MCMCStrategy (3DGS-MCMC, with opacity and scale regularisers). Checkpoints are written atomically
every ``checkpoint_every`` steps and on interruption; ``resume=True`` continues from the latest.

The trainer is composed, never subclassed, per method: a registered strategy, one appearance and any
fields (:mod:`splatlab.training.extension`), resolved by name through
:mod:`splatlab.training.registry`; all their channels are rasterized in ONE call per step.

Library code does not print: progress reaches the caller through ``on_step`` / ``on_event``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, DataError
from ..rendering.channels import render_channels
from ..rendering.metrics import psnr, ssim
from ..scene import checkpoint as ckpt
from ..scene.datasets.base import Dataset
from ..scene.gaussians import init_gaussians, random_init_points, save_ply
from ..utils import atomic_write_json
from . import registry
from .extension import Appearance, Extension, Field


@dataclass
class TrainConfig:
    """Options of ``splatlab train`` (3DGS / gsplat simple_trainer defaults unless stated)."""

    out: Path = Path("runs/scene")
    """Run directory: config.json, ckpts/, scene.ply, metrics.json, renders/."""
    method: str = "3dgs"
    """Shortcut: a registered strategy ('3dgs': clone/split/prune, 'mcmc': 3DGS-MCMC) or appearance
    ('gaussianshader': reflective shading, with 3dgs densification); see `splatlab methods`."""
    strategy: str | None = None
    """Densification strategy by registered name (overrides --method)."""
    appearance: str | None = None
    """Appearance by registered name: 'sh' (3DGS colour), 'gaussianshader' (overrides --method)."""
    fields: tuple[str, ...] = ()
    """Extra per-Gaussian fields by registered name (e.g. 'features'; the CLI's --features adds it)."""
    steps: int = 30_000
    """Training steps (one image each)."""
    downscale: int = 1
    """Load images downscaled by this integer factor (cached on disk)."""
    test_every: int = 8
    """Every n-th view is a test view (0, n, 2n, ...), as the 3DGS papers do."""
    sh_degree: int = 3
    """Final spherical-harmonics degree (0..3)."""
    sh_degree_interval: int = 1000
    """Raise the active SH degree by one every this many steps."""
    init: Literal["sfm", "triangulate", "random"] = "sfm"
    """Initial Gaussians: 'sfm' the dataset's SfM points, or, when it has none, points triangulated
    from its known poses (pycolmap); 'triangulate' always triangulates; 'random' uniform in a box
    (also the fallback when triangulation finds < 100 points)."""
    init_num_points: int = 100_000
    """Number of random initial points (init='random' or a dataset without points)."""
    init_extent: float = 3.0
    """Half size of the random-init box, in units of the scene extent."""
    init_opacity: float = 0.1
    """Initial opacity."""
    init_scale: float = 1.0
    """Factor on the initial size (RMS distance to the 3 nearest neighbours)."""
    ssim_lambda: float = 0.2
    """Weight of D-SSIM in the loss (1 - l) L1 + l (1 - SSIM)."""
    lr_means: float = 1.6e-4
    """Learning rate of the means, times the scene extent; decays exponentially."""
    lr_means_final_ratio: float = 0.01
    """Final / initial learning rate of the means."""
    lr_scales: float = 5e-3
    """Learning rate of the log-scales."""
    lr_quats: float = 1e-3
    """Learning rate of the quaternions."""
    lr_opacities: float = 5e-2
    """Learning rate of the logit-opacities."""
    lr_sh0: float = 2.5e-3
    """Learning rate of the SH DC coefficients."""
    lr_shN: float = 2.5e-3 / 20
    """Learning rate of the higher SH coefficients."""
    random_background: bool = False
    """Composite renders on a random colour each step (gsplat's random_bkgd)."""
    antialiased: bool = False
    """Mip-Splatting-style antialiased rasterization (opacity compensation)."""
    num_downscales: int = 0
    """Coarse-to-fine training (nerfstudio splatfacto, OpenSplat): the first steps see the images
    and cameras downscaled by 2^num_downscales, the resolution doubling every
    ``resolution_schedule`` steps until it is full. 0: full resolution throughout. Applies to the
    plain 3DGS appearance without feature fields."""
    resolution_schedule: int = 3000
    """Steps per resolution level of the coarse-to-fine schedule (``num_downscales``)."""
    refine_start_iter: int = 500
    """First step of densification."""
    refine_stop_iter: int = 15_000
    """Last step of densification."""
    refine_every: int = 100
    """Densify every this many steps."""
    reset_every: int = 3000
    """Reset opacities every this many steps (3dgs method)."""
    grow_grad2d: float = 2e-4
    """Screen-space gradient threshold for clone/split (3dgs method)."""
    prune_opa: float = 0.005
    """Opacity under which Gaussians are pruned (3dgs) or relocated (mcmc)."""
    prune_scale3d: float = 0.1
    """Prune Gaussians larger than this times the scene extent, after the first opacity reset (3dgs)."""
    refine_scale2d_stop_iter: int = 0
    """Until this step, also split Gaussians wider than 5 % of the image (and, after the first
    reset, prune those wider than 15 %), as OpenSplat / splatfacto do until step 4000; 0: off
    (gsplat's default, the official 3DGS code's behaviour)."""
    absgrad: bool = False
    """Use absolute gradients for densification (AbsGS; set grow_grad2d ~ 8e-4 with it)."""
    mcmc_cap_max: int = 1_000_000
    """Maximum number of Gaussians (mcmc method)."""
    mcmc_noise_lr: float = 5e5
    """Position noise scale (mcmc method)."""
    opacity_reg: float = 0.0
    """Opacity regulariser weight (the mcmc method uses 0.01 when this is 0)."""
    scale_reg: float = 0.0
    """Scale regulariser weight (the mcmc method uses 0.01 when this is 0)."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and at the end / on interruption)."""
    keep_checkpoints: int = 3
    """How many checkpoints to keep."""
    resume: bool = False
    """Continue from the latest checkpoint in ``out``."""
    tensorboard: bool = False
    """Log losses to ``out/tb`` (needs the tensorboard package)."""
    device: str = "auto"
    """'auto' (CUDA if available), 'cpu' or 'cuda'."""
    seed: int = 0
    """Random seed."""

    def effective_regs(self) -> tuple[float, float]:
        """(opacity, scale) regulariser weights of the resolved strategy."""
        return registry.get("strategy", registry.resolve(self).strategy)().regularisers(self)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fields"] = list(self.fields)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


class TrainControl:
    """Shared between the training loop and a live viewer: ``lock`` is held while parameters change
    (step, densification), so a reader holding it sees a consistent scene; ``pause()`` /
    ``resume()`` stop and continue the loop between steps; ``stop()`` ends training cleanly."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._running = threading.Event()
        self._running.set()
        self.stop_requested = False

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self) -> None:
        self.stop_requested = True
        self._running.set()

    def wait_if_paused(self) -> None:
        self._running.wait()


@dataclass
class StepStats:
    step: int
    loss: float
    psnr: float
    n_gaussians: int
    its_per_s: float
    sh_degree: int


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    n_gaussians: int
    wall_time_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Fits Gaussians to a :class:`Dataset`. Use :meth:`train`, then :meth:`evaluate`.

    Args:
        dataset: the posed images.
        cfg: the options; ``cfg.method`` / ``strategy`` / ``appearance`` / ``fields`` name the
            registered extensions it trains with (:func:`splatlab.training.registry.resolve`).
        on_step, on_event: progress callbacks (library code does not print).
        configs: section -> options dataclass of an extension (e.g. ``{"shader": ShaderConfig()}``);
            absent sections take the extension's defaults.
        extensions: ready-made extension instances (e.g. a field holding its teacher), used
            instead of building the registered class of the same name.
    """

    def __init__(
        self,
        dataset: Dataset,
        cfg: TrainConfig,
        on_step: Callable[[StepStats], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        *,
        configs: dict[str, Any] | None = None,
        extensions: list[Extension] | None = None,
    ) -> None:
        if not dataset.train_ids:
            raise DataError(f"dataset {dataset.root} has no training views")
        self.components = registry.resolve(cfg)
        given = {e.name: e for e in extensions or []}
        configs = configs or {}

        def build(kind: str, name: str) -> Any:
            if name in given:
                return given[name]
            cls = registry.get(kind, name)
            return cls(configs.get(cls.section) if cls.section else None)

        self.appearance: Appearance = build("appearance", self.components.appearance)
        self.fields: list[Field] = [build("field", f) for f in self.components.fields]
        self.strategy_spec = registry.get("strategy", self.components.strategy)()
        for ext in self.extensions:
            cfg = ext.adjust_train_config(cfg)
        if not 0 <= cfg.sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {cfg.sh_degree}")
        if cfg.num_downscales < 0 or cfg.resolution_schedule < 1:
            raise ValueError(
                f"num_downscales must be >= 0 and resolution_schedule >= 1, got {cfg.num_downscales} "
                f"and {cfg.resolution_schedule}"
            )
        if cfg.num_downscales > 0 and (self.fields or self.components.appearance != "sh"):
            raise registry.MethodError(
                f"--num-downscales {cfg.num_downscales} (coarse-to-fine) supports the plain 3DGS "
                f"appearance only; this run uses appearance {self.components.appearance!r} and "
                f"fields {list(self.components.fields)}: train at full resolution (--num-downscales 0)"
            )
        self.dataset = dataset
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.on_step = on_step or (lambda s: None)
        self.on_event = on_event or (lambda s: None)
        self.run_dir = Path(cfg.out)
        self.control = TrainControl()
        self.scene_scale = dataset.scene_extent()
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.images: dict[int | tuple[int, int], Tensor] = {}
        self.step = 0
        self.params, self.optimizers = self._init_params()
        for ext in self.extensions:
            ext.attach(self)
        self.strategy, self.strategy_state = self.strategy_spec.build(cfg, self.scene_scale)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.schedulers = [self._means_scheduler()]

    @property
    def extensions(self) -> list[Extension]:
        """The appearance, then the fields."""
        return [self.appearance, *self.fields]

    def extension(self, name: str) -> Extension:
        """The extension (appearance or field) registered as ``name`` (KeyError if absent)."""
        for ext in self.extensions:
            if ext.name == name:
                return ext
        raise KeyError(f"this trainer has no extension {name!r} ({self.components.describe()})")

    # -------------------------------------------------------------- setup
    def _init_params(self) -> tuple[torch.nn.ParameterDict, dict[str, torch.optim.Optimizer]]:
        cfg, ds = self.cfg, self.dataset
        pts = rgb = None
        if cfg.init == "sfm" and ds.points is not None and len(ds.points) >= 4:
            pts, rgb = ds.points, ds.points_rgb
        elif cfg.init != "random" and ds.image_loader is None:
            pts, rgb = self._triangulated_points()
        if pts is None:
            pts = random_init_points(cfg.init_num_points, cfg.init_extent * self.scene_scale, seed=cfg.seed)
        params = init_gaussians(
            pts, rgb, sh_degree=cfg.sh_degree, init_opacity=cfg.init_opacity, init_scale=cfg.init_scale,
            extras=self.extra_channels(), seed=cfg.seed, device=self.device,
        )
        return params, self._make_optimizers(params)

    def _triangulated_points(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Points triangulated from the dataset's known poses (None when too few are found)."""
        from ..errors import SfMError
        from ..scene.datasets.triangulate import triangulate_known_poses

        try:
            xyz, rgb, st = triangulate_known_poses(self.dataset)
        except SfMError as e:
            self.on_event(f"no initial points from the known poses ({e}); random initialisation")
            return None, None
        if len(xyz) < 100:
            self.on_event(f"only {len(xyz)} points triangulated from the known poses; random initialisation")
            return None, None
        self.on_event(
            f"initial points: {len(xyz):,} triangulated from {st['images']} posed images "
            f"({st['mean_reprojection_error']:.2f} px, track length {st['mean_track_length']:.1f})"
        )
        return xyz, rgb

    def extra_channels(self) -> dict[str, int]:
        """Extra per-Gaussian parameters (name -> width) of all extensions, zero-initialised."""
        out: dict[str, int] = {}
        for ext in self.extensions:
            for k, w in ext.extra_channels().items():
                if k in out:
                    raise registry.MethodError(
                        f"two extensions both add the per-Gaussian parameter {k!r} ({self.components.describe()})"
                    )
                out[k] = w
        return out

    def aux_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers of parameters that are not per-Gaussian (e.g. an environment map)."""
        return [o for ext in self.extensions for o in ext.aux_optimizers()]

    def config_json(self) -> dict[str, Any]:
        """What ``config.json`` records: the options, the data, and each extension's section."""
        out: dict[str, Any] = {"train": self.cfg.to_json(), "data": str(self.dataset.root)}
        out["components"] = dataclasses.asdict(self.components)
        for ext in self.extensions:
            if ext.section:
                out[ext.section] = ext.config_json()
        return out

    def aux_state_dict(self) -> dict[str, Any]:
        """State of non-per-Gaussian parameters and their optimizers, stored in checkpoints."""
        out: dict[str, Any] = {}
        for ext in self.extensions:
            out.update(ext.aux_state_dict())
        return out

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`aux_state_dict` (called on resume)."""
        for ext in self.extensions:
            ext.load_aux_state_dict(state)

    def param_lrs(self) -> dict[str, float]:
        """Learning rate of every per-Gaussian parameter (extensions add their extras)."""
        cfg = self.cfg
        lrs = {
            "means": cfg.lr_means * self.scene_scale,
            "scales": cfg.lr_scales,
            "quats": cfg.lr_quats,
            "opacities": cfg.lr_opacities,
            "sh0": cfg.lr_sh0,
            "shN": cfg.lr_shN,
        }
        for ext in self.extensions:
            lrs.update(ext.param_lrs())
        return lrs

    def _make_optimizers(self, params: torch.nn.ParameterDict) -> dict[str, torch.optim.Optimizer]:
        lrs = self.param_lrs()
        missing = [k for k in params.keys() if k not in lrs]
        if missing:
            raise ValueError(f"no learning rate for parameter(s) {missing}; add them to param_lrs()")
        # fused=True: one kernel per parameter instead of ~10 elementwise ops; on the 2-core CPU
        # the six Adam steps of a 23k-Gaussian scene take 0.8 instead of 2.8 ms
        # (benchmarks/train_step_parts.py).
        fused = self.device.type in ("cpu", "cuda")
        return {
            name: torch.optim.Adam(
                [{"params": p, "lr": lrs[name], "name": name}], eps=1e-15, betas=(0.9, 0.999), fused=fused
            )
            for name, p in params.items()
        }

    def _means_scheduler(self) -> torch.optim.lr_scheduler.ExponentialLR:
        gamma = self.cfg.lr_means_final_ratio ** (1.0 / max(self.cfg.steps, 1))
        return torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"], gamma=gamma)

    # -------------------------------------------------------------- data
    def train_downscale(self, step: int) -> int:
        """Image downscale factor of the coarse-to-fine schedule at ``step`` (1: full size)."""
        levels = self.cfg.num_downscales - step // max(self.cfg.resolution_schedule, 1)
        return 2 ** max(levels, 0)

    def image(self, i: int, downscale: int = 1) -> Tensor:
        """Ground-truth image i as float32 [H, W, 3] on the training device (loaded once).
        ``downscale`` d > 1: the box-filtered image of (H // d, W // d) pixels (the top-left
        (H // d) d x (W // d) d pixels averaged in d x d blocks), cached too."""
        if downscale > 1:
            key = (i, downscale)
            if key not in self.images:
                full = self.image(i)
                h, w = full.shape[0] // downscale, full.shape[1] // downscale
                crop = full[: h * downscale, : w * downscale].permute(2, 0, 1)[None]
                self.images[key] = torch.nn.functional.avg_pool2d(crop, downscale)[0].permute(1, 2, 0).contiguous()
            return self.images[key]
        if i not in self.images:
            img = self.dataset.load_image(i)
            f = self.dataset.frames[i]
            if img.shape[:2] != (f.height, f.width):
                raise DataError(
                    f"image of frame {f.name!r} is {img.shape[1]}x{img.shape[0]} but its camera says "
                    f"{f.width}x{f.height}; fix the intrinsics or the --downscale cache"
                )
            self.images[i] = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).to(self.device)
        return self.images[i]

    def camera(self, i: int, downscale: int = 1) -> tuple[Tensor, Tensor, int, int]:
        """(viewmat, K, width, height) of view i; ``downscale`` d > 1: the camera of
        :meth:`image` (i, d): intrinsics / d (pixel i covers [i, i + 1)), size // d."""
        f = self.dataset.frames[i]
        vm = torch.tensor(f.viewmat, dtype=torch.float32, device=self.device)
        K = torch.tensor(f.K, dtype=torch.float32, device=self.device)
        if downscale > 1:
            K = K.clone()
            K[:2] /= downscale
            return vm, K, f.width // downscale, f.height // downscale
        return vm, K, f.width, f.height

    def background(self) -> Tensor:
        bg = self.dataset.background or (0.0, 0.0, 0.0)
        return torch.tensor(bg, dtype=torch.float32, device=self.device)

    # -------------------------------------------------------------- rendering
    def raster_options(self) -> dict[str, Any]:
        """The rasterize options of this run (antialiasing, absgrad)."""
        return {
            "rasterize_mode": "antialiased" if self.cfg.antialiased else "classic",
            "absgrad": self.cfg.absgrad,
        }

    def render(
        self,
        viewmat: Tensor,  # [4, 4]
        K: Tensor,  # [3, 3]
        width: int,
        height: int,
        sh_degree: int | None = None,
        background: Tensor | None = None,  # [3]
        render_mode: str = "RGB",
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Render the current Gaussians: ([H, W, D], [H, W, 1], info). ``render_mode``: RGB, D,
        ED, RGB+D, RGB+ED or one of the appearance's ``render_modes``."""
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        bg = self.background() if background is None else background
        return self.appearance.render(
            self.params, viewmat, K, width, height, deg, bg, render_mode, **self.raster_options()
        )

    # -------------------------------------------------------------- training
    def _order(self) -> list[int]:
        ids = list(self.dataset.train_ids)
        self.rng.shuffle(ids)
        return ids

    def train(self) -> TrainResult:
        """Run (or resume) training to ``cfg.steps``; checkpoints on interruption, then re-raises."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            self.resume()
        elif self.step == 0 and ckpt.latest_checkpoint(self.run_dir) is not None:
            raise CheckpointError(
                f"{self.run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
            )
        atomic_write_json(self.run_dir / ckpt.CONFIG_JSON, self.config_json())
        writer = self._tensorboard()
        order: list[int] = []
        t0 = time.perf_counter()
        t_last, step_last = t0, self.step
        start_step = self.step
        try:
            for step in range(self.step, cfg.steps):
                self.control.wait_if_paused()
                self.step = step
                if self.control.stop_requested:  # a clean stop: ``step`` steps are done
                    break
                self.control.lock.acquire()
                if not order:
                    order = self._order()
                i = order.pop()
                d = self.train_downscale(step)
                gt = self.image(i, d)
                vm, K, w, h = self.camera(i, d)
                sh_deg = min(step // max(cfg.sh_degree_interval, 1), cfg.sh_degree)
                bg = torch.rand(3, device=self.device) if cfg.random_background else None
                out = self.forward(step, i, vm, K, w, h, sh_deg, bg)
                img, info = out["img"], out["info"]
                if cfg.random_background:  # the ground truth was composited on the dataset background
                    gt = gt + (bg - self.background()) * (1.0 - self._gt_alpha(i, out["alpha"]))
                self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
                loss = self.compute_loss(step, out, gt)
                loss.backward()
                for opt in [*self.optimizers.values(), *self.aux_optimizers()]:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for sched in self.schedulers:
                    sched.step()
                self.strategy_spec.post_backward(self.strategy, self, step, info)
                self.control.lock.release()
                now = time.perf_counter()
                if now - t_last > 0.5 or step == cfg.steps - 1:
                    with torch.no_grad():
                        p = float(psnr(img.detach().clamp(0, 1), gt).item())
                    stats = StepStats(step + 1, float(loss.item()), p, len(self.params["means"]),
                                      (step + 1 - step_last) / (now - t_last), sh_deg)
                    self.on_step(stats)
                    if writer is not None:
                        writer.add_scalar("train/loss", stats.loss, step)
                        writer.add_scalar("train/psnr", stats.psnr, step)
                        writer.add_scalar("train/num_gaussians", stats.n_gaussians, step)
                    t_last, step_last = now, step + 1
                if cfg.checkpoint_every > 0 and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                    self.step = step + 1
                    self.save()
            else:
                self.step = cfg.steps
        except KeyboardInterrupt:
            if self.control.lock._is_owned():  # type: ignore[attr-defined]
                self.control.lock.release()
            # self.step is the step that was running: its update may be half-applied, so the
            # checkpoint records the parameters as they are and the step count that produced them.
            self.save()
            self.on_event(f"interrupted at step {self.step}; checkpoint written to {self.run_dir}")
            if writer is not None:
                writer.close()
            return TrainResult(self.run_dir, self.step, len(self.params["means"]),
                               time.perf_counter() - t0, interrupted=True)
        wall = time.perf_counter() - t0
        self.save()
        self.export_ply(self.run_dir / ckpt.SCENE_PLY)
        for ext in self.extensions:
            ext.after_train(self)
        if writer is not None:
            writer.close()
        return TrainResult(self.run_dir, self.step - start_step, len(self.params["means"]), wall,
                           interrupted=self.control.stop_requested)

    def forward(
        self, step: int, i: int, vm: Tensor, K: Tensor, w: int, h: int, sh_degree: int, bg: Tensor | None
    ) -> dict[str, Any]:
        """One training render of view i in ONE rasterization of every extension's channels:
        {"img" [H, W, 3], "alpha" [H, W, 1], "info", each channel by name [H, W, c], "view", ...}."""
        bg = self.background() if bg is None else bg
        chans = dict(self.appearance.channels(self.params, vm, sh_degree))
        for f in self.fields:
            for name, c in f.channels(self.params).items():
                if name in chans:
                    raise registry.MethodError(f"two extensions render a channel named {name!r}")
                chans[name] = c
        out, alpha, info = render_channels(
            self.params, vm[None], K[None], w, h, chans, backgrounds={"rgb": bg},
            depth=self.appearance.needs_depth, **self.raster_options(),
        )
        res: dict[str, Any] = {k: v[0] for k, v in out.items()}
        res.update(alpha=alpha[0], info=info, view=i, viewmat=vm, K=K)
        return self.appearance.finish(res)

    def compute_loss(self, step: int, out: dict[str, Any], gt: Tensor) -> Tensor:
        """(1 - l) L1 + l D-SSIM, the strategy's opacity / scale regularisers, and every
        extension's terms."""
        cfg = self.cfg
        img = out["img"]
        l1 = (img - gt).abs().mean()
        ssim_v = ssim(img[None], gt[None]).mean()
        loss = (1.0 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1.0 - ssim_v)
        opacity_reg, scale_reg = self.strategy_spec.regularisers(cfg)
        if opacity_reg > 0:
            loss = loss + opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
        if scale_reg > 0:
            loss = loss + scale_reg * torch.exp(self.params["scales"]).mean()
        for ext in self.extensions:
            term = ext.loss(self, step, out, gt)
            if term is not None:
                loss = loss + term
        return loss

    def _gt_alpha(self, i: int, render_alpha: Tensor) -> Tensor:
        mask = self.dataset.load_mask(i)
        if mask is None:
            alpha = self.dataset.meta.get("alpha")
            if alpha is None:
                return torch.ones_like(render_alpha)
            a = torch.as_tensor(np.asarray(alpha[i], dtype=np.float32), device=self.device)[..., None]
        else:
            a = torch.as_tensor(mask, dtype=torch.float32, device=self.device)[..., None]
        h, w = render_alpha.shape[:2]
        if a.shape[:2] != (h, w):  # a coarse-to-fine step: box-filter like image(i, d)
            d = a.shape[0] // h
            a = torch.nn.functional.avg_pool2d(a[: h * d, : w * d].permute(2, 0, 1)[None], d)[0].permute(1, 2, 0)
        return a

    def _tensorboard(self):  # noqa: ANN202
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("--tensorboard needs the tensorboard package: pip install 'splatlab[tensorboard]'") from e
        return SummaryWriter(str(self.run_dir / "tb"))

    # -------------------------------------------------------------- files
    def save(self) -> Path:
        """Write a checkpoint of the current step (atomic)."""
        extra = ckpt.dataset_extra(self.dataset)
        extra["scene_scale"] = self.scene_scale
        extra["schedulers"] = [s.state_dict() for s in self.schedulers]
        extra["rng"] = self.rng.bit_generator.state
        extra["torch_rng"] = torch.get_rng_state()
        extra["aux"] = self.aux_state_dict()
        return ckpt.save_checkpoint(
            self.run_dir, self.step, self.params, self.optimizers, self.strategy_state, extra,
            keep_last=self.cfg.keep_checkpoints,
        )

    def resume(self) -> int:
        """Load the latest checkpoint of the run directory; returns its step."""
        path = ckpt.latest_checkpoint(self.run_dir)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {self.run_dir / 'ckpts'}; start without --resume")
        data = ckpt.load_checkpoint(path, map_location=self.device)
        self.params = ckpt.restore_params(data).to(self.device)
        self.optimizers = self._make_optimizers(self.params)
        ckpt.restore_optimizers(data, self.optimizers)
        state = data.get("strategy_state") or {}
        self.strategy_state.update({k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in state.items()})
        self.schedulers = [self._means_scheduler()]
        extra = data.get("extra", {})
        for s, sd in zip(self.schedulers, extra.get("schedulers", [])):
            s.load_state_dict(sd)
        if "rng" in extra:
            self.rng.bit_generator.state = extra["rng"]
        if "torch_rng" in extra:
            torch.set_rng_state(extra["torch_rng"])
        self.load_aux_state_dict(extra.get("aux") or {})
        self.step = int(data["step"])
        self.on_event(f"resumed from {path} at step {self.step}")
        return self.step

    def export_ply(self, path: Path) -> Path:
        """INRIA PLY in the dataset's ORIGINAL coordinates (extensions write what goes with it)."""
        save_ply(path, self.params, transform=self.dataset.transform)
        for ext in self.extensions:
            ext.export(self, Path(path))
        return path

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, write_renders: bool = True, lpips_net: str | None = "alex") -> dict[str, Any]:
        """PSNR / SSIM (/ LPIPS when its weights are present) on the test views; writes
        ``renders/test/*.png`` (render | ground truth) and ``metrics.json``."""
        import imageio.v3 as iio

        ids = self.dataset.test_ids or self.dataset.train_ids
        split = "test" if self.dataset.test_ids else "train"
        lpips_fn, lpips_note = None, None
        if lpips_net is not None:
            from ..errors import WeightsNotFoundError
            from ..rendering.metrics import load_lpips

            try:
                lpips_fn = load_lpips(lpips_net, device=self.device)
            except WeightsNotFoundError as e:
                lpips_note = str(e)
        rows = []
        out_dir = self.run_dir / "renders" / split
        t0 = time.perf_counter()
        for i in ids:
            vm, K, w, h = self.camera(i)
            img, _, _ = self.render(vm, K, w, h)
            img = img.clamp(0, 1)
            gt = self.image(i)
            row = {"view": self.dataset.frames[i].name, "psnr": float(psnr(img, gt)), "ssim": float(ssim(img[None], gt[None])[0])}
            if lpips_fn is not None:
                row["lpips"] = float(lpips_fn(img[None], gt[None])[0])
            rows.append(row)
            if write_renders:
                out_dir.mkdir(parents=True, exist_ok=True)
                pair = torch.cat([img, gt], dim=1).cpu().numpy()
                iio.imwrite(out_dir / f"{len(rows) - 1:04d}.png", (pair * 255 + 0.5).astype(np.uint8))
        render_s = (time.perf_counter() - t0) / max(len(ids), 1)
        metrics: dict[str, Any] = {
            "split": split,
            "n_views": len(rows),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ssim": float(np.mean([r["ssim"] for r in rows])),
            "lpips": float(np.mean([r["lpips"] for r in rows])) if lpips_fn is not None else None,
            "lpips_note": lpips_note,
            "n_gaussians": len(self.params["means"]),
            "step": self.step,
            "seconds_per_render": render_s,
            "per_view": rows,
        }
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        return metrics

    def evaluate_extensions(self) -> dict[str, dict[str, Any]]:
        """Each extension's own metrics (name -> metrics), for those that have any."""
        out = {}
        for ext in self.extensions:
            m = ext.evaluate(self)
            if m is not None:
                out[ext.name] = m
        return out


def make_trainer(dataset: Dataset, cfg: TrainConfig, **kw: Any) -> Trainer:
    """``Trainer(dataset, cfg, **kw)`` (kw: on_step, on_event, configs, extensions)."""
    return Trainer(dataset, cfg, **kw)


def stored_train_config(stored: dict[str, Any], run_dir: Path, **overrides: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig and extension configs (section -> dataclass) recorded in a config.json.
    Runs written before the registry (no ``fields``) get the fields whose section is present."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in stored["train"].items() if k in fields}
    kw["fields"] = tuple(kw.get("fields") or ())
    for cls in registry.registered()["field"].values():
        if cls.section and cls.section in stored and cls.name not in kw["fields"]:
            kw["fields"] = (*kw["fields"], cls.name)
    kw["out"] = Path(run_dir)
    kw.update(overrides)
    cfg = TrainConfig(**kw)
    configs = {
        # an extension's Config may read its older stored forms itself (``from_stored``)
        cls.section: (getattr(cls.Config, "from_stored", None) or partial(dataclass_from, cls.Config))(
            stored[cls.section])
        for cls in registry.extension_classes()
        if cls.section and cls.Config is not None and cls.section in stored
    }
    return cfg, configs


def load_trainer(run_dir: Path, dataset: Dataset | None = None, **overrides: Any) -> Trainer:
    """A Trainer restored from a run directory (its config.json and latest checkpoint), with the
    extensions its config names, resolved through the registry. The dataset is reloaded from the
    path stored in config.json unless given."""
    cfg_path = Path(run_dir) / ckpt.CONFIG_JSON
    if not cfg_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory (no {ckpt.CONFIG_JSON}); train one with `splatlab train`")
    stored = ckpt.load_json(cfg_path)
    if not isinstance(stored, dict) or not isinstance(stored.get("train"), dict) or "data" not in stored:
        raise CheckpointError(
            f"{cfg_path} has no 'train' / 'data' sections: it was not written by `splatlab train`; "
            "restore it from the run or retrain"
        )
    try:
        cfg, configs = stored_train_config(stored, Path(run_dir), **overrides)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: invalid options ({e}); restore it from the run or retrain") from e
    cfg.resume = True
    if dataset is None:
        from ..scene.datasets import load_dataset
        from ..scene.synthetic import DEMO_ROOT, make_demo_scene

        data = stored["data"]
        if data == DEMO_ROOT:
            dataset = make_demo_scene()
        else:
            dataset = load_dataset(Path(data), downscale=cfg.downscale, test_every=cfg.test_every)
    trainer = Trainer(dataset, cfg, configs=configs)
    trainer.resume()
    return trainer


def dataclass_from(cls: type, values: dict[str, Any]) -> Any:
    """A config dataclass from its JSON form (unknown keys ignored, paths restored)."""
    out = cls()
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            if isinstance(getattr(out, f.name), Path) or ("Path" in str(f.type) and isinstance(v, str)):
                v = Path(v)
            setattr(out, f.name, v)
    return out
