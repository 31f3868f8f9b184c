"""Densification strategies: gsplat's ``DefaultStrategy`` and ``MCMCStrategy``, usable on every device.

gsplat's strategies are small state machines over a ParameterDict and run on CPU tensors with two
exceptions, both fixed here without copying their logic:

* ``DefaultStrategy`` (gsplat 1.5.3) never resets opacities: its test
  ``step % self.reset_every == 0 & step > 0`` parses as the chained comparison
  ``(step % reset_every == (0 & step)) and ((0 & step) > 0)``, which is always False.
  :class:`Default3DGSStrategy` performs the reset the 3DGS paper prescribes (every
  ``reset_every`` steps while refining, opacities set to ``2 * prune_opa``).
* ``MCMCStrategy`` calls two CUDA-only ops: ``compute_relocation`` (the relocation of
  3DGS-MCMC, Kheradmand et al. 2024, Eq. 9) and ``quat_scale_to_covar_preci`` (for the position
  noise). :class:`MCMC3DGSStrategy` swaps in the same formulas in PyTorch while a step runs on a
  non-CUDA device, and leaves gsplat's code path untouched on CUDA.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy, MCMCStrategy
from gsplat.strategy import ops as gsplat_ops
from torch import Tensor

from ..rendering.backends.torch import quat_scale_to_covar


@dataclass
class Default3DGSStrategy(DefaultStrategy):
    """gsplat's DefaultStrategy with the opacity reset that 1.5.3 skips."""

    def step_post_backward(  # type: ignore[override]
        self,
        params: torch.nn.ParameterDict | dict[str, torch.nn.Parameter],
        optimizers: dict[str, torch.optim.Optimizer],
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        packed: bool = False,
    ) -> None:
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            gsplat_ops.reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)


def relocation_torch(
    opacities: Tensor,  # [N]
    scales: Tensor,  # [N, 3]
    ratios: Tensor,  # [N]
    binoms: Tensor,  # [n_max, n_max]
) -> tuple[Tensor, Tensor]:
    """New opacity and scale of a Gaussian split into ``ratios`` copies (3DGS-MCMC Eq. 9).

    new_o = 1 - (1 - o)^(1/n);  new_s = o / (sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k
    new_o^(k+1) / sqrt(k+1)) * s. Same signature and clamping of ``ratios`` as gsplat's CUDA op.
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(min=1, max=n_max).long()
    new_o = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    # denominators for every possible n at once: D[n] = sum_{i<=n} sum_{k<i} C(i-1,k) (-1)^k o^(k+1)/sqrt(k+1)
    k = torch.arange(n_max, device=opacities.device, dtype=opacities.dtype)
    sign_sqrt = (-1.0) ** k / torch.sqrt(k + 1.0)  # [K]
    powers = new_o[:, None] ** (k[None] + 1.0)  # [N, K]
    inner = powers * sign_sqrt  # [N, K]
    per_i = inner @ binoms.to(opacities.dtype).T  # [N, n_max]: row i-1 of binoms -> term for i
    cum = torch.cumsum(per_i, dim=1)  # [N, n_max]: sum over i = 1..(col+1)
    denom = cum.gather(1, (n - 1)[:, None]).squeeze(1)
    coeff = opacities / denom
    return new_o, coeff[:, None] * scales


def _quat_scale_to_covar_preci_torch(
    quats: Tensor,
    scales: Tensor,
    compute_covar: bool = True,
    compute_preci: bool = True,
    triu: bool = False,
) -> tuple[Tensor | None, Tensor | None]:
    if triu:
        raise ValueError("triu=True is not used by the strategies and not provided on CPU")
    covars = quat_scale_to_covar(quats, scales) if compute_covar else None
    precis = quat_scale_to_covar(quats, 1.0 / scales) if compute_preci else None
    return covars, precis


@contextlib.contextmanager
def _torch_ops_for(device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        yield
        return
    saved = (gsplat_ops.compute_relocation, gsplat_ops.quat_scale_to_covar_preci)
    gsplat_ops.compute_relocation = relocation_torch
    gsplat_ops.quat_scale_to_covar_preci = _quat_scale_to_covar_preci_torch
    try:
        yield
    finally:
        gsplat_ops.compute_relocation, gsplat_ops.quat_scale_to_covar_preci = saved


@dataclass
class MCMC3DGSStrategy(MCMCStrategy):
    """gsplat's MCMCStrategy, with its two CUDA ops replaced by PyTorch on other devices."""

    def step_post_backward(  # type: ignore[override]
        self,
        params: torch.nn.ParameterDict | dict[str, torch.nn.Parameter],
        optimizers: dict[str, torch.optim.Optimizer],
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        lr: float,
    ) -> None:
        with _torch_ops_for(params["means"].device):
            super().step_post_backward(params, optimizers, state, step, info, lr)


def binomials(n_max: int = 51) -> Tensor:
    """Pascal's triangle [n_max, n_max] as gsplat's MCMC state holds it."""
    b = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            b[n, k] = math.comb(n, k)
    return b


# ------------------------------------------------------------------------- registered strategies


class StrategySpec:
    """A densification strategy as the trainer uses it (registered in ``splatlab.methods``).

    ``build(cfg, scene_scale)`` returns gsplat's (strategy, state) from the TrainConfig's options;
    ``post_backward`` calls the strategy after the optimizer step with the arguments it needs;
    ``regularisers(cfg)`` gives the (opacity, scale) regulariser weights it trains with.
    """

    kind = "strategy"
    name = ""
    description = ""
    incompatible: tuple[str, ...] = ()

    def build(self, cfg: Any, scene_scale: float) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def post_backward(self, strategy: Any, trainer: Any, step: int, info: dict[str, Any]) -> None:
        strategy.step_post_backward(
            trainer.params, trainer.optimizers, trainer.strategy_state, step, info, packed=False
        )

    def regularisers(self, cfg: Any) -> tuple[float, float]:
        return cfg.opacity_reg, cfg.scale_reg


class Default3DGS(StrategySpec):
    """3DGS clone / split / prune with opacity resets (options: grow_grad2d, prune_opa, refine_*,
    reset_every, absgrad)."""

    name = "3dgs"
    description = "clone / split / prune densification with opacity resets (3DGS)"

    def build(self, cfg: Any, scene_scale: float) -> tuple[Any, dict[str, Any]]:
        strategy = Default3DGSStrategy(
            prune_opa=cfg.prune_opa, grow_grad2d=cfg.grow_grad2d,
            refine_start_iter=cfg.refine_start_iter, refine_stop_iter=cfg.refine_stop_iter,
            refine_every=cfg.refine_every, reset_every=cfg.reset_every, absgrad=cfg.absgrad,
            prune_scale3d=cfg.prune_scale3d,
            refine_scale2d_stop_iter=cfg.refine_scale2d_stop_iter,
            verbose=False,
        )
        return strategy, strategy.initialize_state(scene_scale=scene_scale)


class MCMC(StrategySpec):
    """3DGS-MCMC: relocation of dead Gaussians and position noise (options: mcmc_cap_max,
    mcmc_noise_lr, refine_*, prune_opa; opacity and scale regularisers default to 0.01)."""

    name = "mcmc"
    description = "3DGS-MCMC relocation + noise, capped Gaussian count"

    def build(self, cfg: Any, scene_scale: float) -> tuple[Any, dict[str, Any]]:
        strategy = MCMC3DGSStrategy(
            cap_max=cfg.mcmc_cap_max, noise_lr=cfg.mcmc_noise_lr,
            refine_start_iter=cfg.refine_start_iter, refine_stop_iter=cfg.refine_stop_iter,
            refine_every=cfg.refine_every, min_opacity=cfg.prune_opa,
        )
        return strategy, strategy.initialize_state()

    def post_backward(self, strategy: Any, trainer: Any, step: int, info: dict[str, Any]) -> None:
        strategy.step_post_backward(
            trainer.params, trainer.optimizers, trainer.strategy_state, step, info,
            lr=trainer.schedulers[0].get_last_lr()[0],
        )

    def regularisers(self, cfg: Any) -> tuple[float, float]:
        return cfg.opacity_reg or 0.01, cfg.scale_reg or 0.01
