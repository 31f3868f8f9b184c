"""SwiftBrush (Nguyen & Tran, CVPR 2024, arXiv 2312.05239): image-free distillation of a
text-to-image diffusion model into a ONE-step student by variational score distillation (VSD).

Three networks, all initialised from the teacher's UNet:

- the frozen teacher ``eps_psi`` (its weights are never updated),
- the LoRA teacher ``eps_phi``: the same UNet with LoRA adapters (``peft``; rank 64, alpha 108,
  on ``to_q`` / ``to_v``, as the official ``train_swiftbrush.py`` run command), which learns the
  score of the student's own output distribution. As in the official script, ONE UNet serves as
  both: adapters disabled = frozen teacher, enabled = LoRA teacher (the base weights are frozen,
  only the ``lora_`` parameters train), which saves a full UNet of memory;
- the student ``f_theta``: a full trainable copy that maps pure noise at t = T - 1 (999) to x0.

One training step (official ``train_swiftbrush.py``; the VSD loss of ProlificDreamer with the
NeRF replaced by the student):

1. student: ``z ~ N(0, I)``, ``eps_hat = f_theta(z, T-1, y)``,
   ``x0 = (z - sqrt(1 - abar_{T-1}) eps_hat) / sqrt(abar_{T-1})`` (the re-parameterisation that
   makes a noise predictor output an image; the official code hard-codes ``abar = 0.0047``, the
   value of SD's schedule at 999; we read it from the scheduler's ``alphas_cumprod``);
2. VSD step: ``t ~ U{20..980}``, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``; both teachers
   with classifier-free guidance (scale 4.5, the official script applies it to the LoRA teacher
   too); ``grad = w(t) (eps_teacher_cfg - eps_lora_cfg)``. Weighting: the SwiftBrush paper (eq. 7,
   from ProlificDreamer eq. 9) writes a generic ``w(t)``; the official code uses
   ``w(t) = sigma_t^2 = 1 - abar_t`` (``score_gradient = sigma_t**2 * (teacher_pred - lora_pred)``),
   the same as ProlificDreamer's implementation (threestudio ``stable_diffusion_vsd_guidance``:
   ``w = 1 - alphas[t]``). Loss ``0.5 * MSE(x0, stopgrad(x0 - grad))``, whose gradient in x0 is
   ``grad / numel``; Adam, gradient clipping (1.0), then the student's EMA;
3. LoRA step on the student's DETACHED x0: ``t ~ U{0..T-1}``, the denoising loss
   ``MSE(sqrt(abar_t) eps_phi(x_t, t, y'), sqrt(abar_t) eps)`` (the official weighting) with
   ``y'`` the empty prompt for 10% of the samples (drawn per sample; the official script drops
   the whole batch's prompts with probability 0.1, the same share in expectation); gradient
   clipping, Adam on the LoRA parameters.

Teachers that predict v (SD 2.1 768 px; ``prediction_type = "v_prediction"``) are supported
beyond the paper: every noise estimate is the v output converted to epsilon
(``eps = sqrt(abar) v + sqrt(1 - abar) x_t``), so steps 2-3 keep their formulas and weightings,
and the student's x0 is ``sqrt(abar) z - sqrt(1 - abar) v_hat``. This matters for small models:
the epsilon re-parameterisation divides the student's error by ``sqrt(abar_999) = 0.069``
(a 14.6x amplification), the v one does not.

All randomness comes from one ``torch.Generator`` whose state is checkpointed, so a resumed run
continues exactly as an uninterrupted one. Checkpoints are written atomically (temporary file +
``os.replace``) and hold the student, its EMA, the LoRA parameters only (not the frozen base),
both optimisers and the generator state.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import CheckpointError

__all__ = [
    "SwiftBrushConfig",
    "SwiftBrushTrainer",
    "student_t",
    "predict_x0",
    "one_step_generate",
    "add_lora",
    "lora_parameters",
    "prediction_type",
    "eps_from_output",
    "x0_from_output",
]


@dataclass
class SwiftBrushConfig:
    """Hyper-parameters of SwiftBrush training (defaults: the official SD 2.1-base run)."""

    guidance_scale: float = 4.5
    """Classifier-free guidance of the frozen teacher in the VSD gradient."""
    lora_guidance_scale: float | None = None
    """CFG of the LoRA teacher in the VSD gradient (None: = guidance_scale, as the official code)."""
    lora_rank: int = 64
    """LoRA rank r on to_q / to_v."""
    lora_alpha: float = 108.0
    """LoRA alpha (the update is scaled by alpha / r)."""
    lora_target_modules: tuple[str, ...] = ("to_q", "to_v")
    """Module names the LoRA adapts (peft ``target_modules``; official: to_q / to_v). A UNet with
    attention at few resolutions may need more (to_k, to_out.0, conv1, conv2) for the LoRA teacher
    to follow the student's distribution."""
    lr: float = 1e-6
    """Adam learning rate of the student."""
    lr_lora: float = 1e-3
    """Adam learning rate of the LoRA teacher."""
    t_min: int = 20
    """Smallest VSD timestep (official: 0.02 T)."""
    t_max: int = 980
    """Largest VSD timestep, inclusive (official: randint(20, 981))."""
    empty_prompt_prob: float = 0.1
    """Share of empty prompts in the LoRA step (what CFG of the LoRA teacher needs)."""
    max_grad_norm: float = 1.0
    """Gradient clipping of both updates (total norm)."""
    ema_decay: float = 0.9999
    """Student EMA decay; effective decay min(decay, (1 + k) / (10 + k)) as diffusers' EMAModel."""
    batch_size: int = 16
    """Prompts per step."""
    seed: int = 0
    """Seed of the trainer's generator (noise, timesteps, prompts, empty-prompt drops)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas of both optimisers."""
    adam_eps: float = 1e-8
    """Adam epsilon of both optimisers."""
    student_timestep: int | None = None
    """The timestep the student is fed with its pure-noise input (None: T - 1 = 999, the paper).
    A lower value is an ablation outside the paper: the teacher it starts from then keeps more of
    the noise in its x0 (``sqrt(abar_t) z``), so the student starts noise-dependent."""


def student_t(scheduler: Any, t: int | None = None) -> int:
    """The student's input timestep: ``t`` when given (checked to lie in [0, T - 1]), else the
    last training timestep T - 1 (999 for SD), as the paper."""
    last = int(scheduler.config.num_train_timesteps) - 1
    if t is None:
        return last
    if not 0 <= int(t) <= last:
        raise ValueError(f"the student's timestep must lie in [0, {last}], got {t}")
    return int(t)


PREDICTION_TYPES = ("epsilon", "v_prediction")


def prediction_type(scheduler: Any) -> str:
    """The UNet's output parameterisation as its scheduler states it: ``"epsilon"`` (SD 2.1-base,
    the official SwiftBrush teacher) or ``"v_prediction"`` (SD 2.1 768 px). ValueError otherwise."""
    pt = scheduler.config.get("prediction_type", "epsilon")
    if pt not in PREDICTION_TYPES:
        raise ValueError(f"SwiftBrush needs an epsilon- or v-prediction teacher, got {pt!r}")
    return pt


def eps_from_output(out: Tensor, xt: Tensor, abar: Tensor, pt: str) -> Tensor:
    """The noise estimate of a UNet output at noise level ``abar``: the output itself for epsilon
    prediction; ``sqrt(abar) v + sqrt(1 - abar) x_t`` for v prediction (v = sqrt(abar) eps -
    sqrt(1 - abar) x0, Salimans & Ho 2022). ``abar`` broadcasts against ``xt``."""
    if pt == "epsilon":
        return out
    return abar.sqrt() * out + (1.0 - abar).sqrt() * xt


def x0_from_output(out: Tensor, xt: Tensor, abar: Tensor, pt: str) -> Tensor:
    """The clean-sample estimate of a UNet output: ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)``
    for epsilon prediction, ``sqrt(abar) x_t - sqrt(1 - abar) v`` for v prediction (no division
    by ``sqrt(abar)``, which is 0.069 at SD's t = 999)."""
    if pt == "epsilon":
        return (xt - (1.0 - abar).sqrt() * out) / abar.sqrt()
    return abar.sqrt() * xt - (1.0 - abar).sqrt() * out


def predict_x0(unet: Any, scheduler: Any, noise: Tensor, embeds: Tensor, t: int | None = None) -> Tensor:
    """The student's one-step output.

    Args:
        unet: epsilon- or v-prediction ``UNet2DConditionModel`` (as ``scheduler`` states).
        scheduler: its training scheduler (``alphas_cumprod`` [T], ``prediction_type``).
        noise: pure Gaussian noise, the input at t = T - 1. [B, C, H, W]
        embeds: text embeddings. [B, L, D]
        t: the input timestep (None: T - 1, the paper's; see ``SwiftBrushConfig.student_timestep``).

    Returns:
        x0 at abar = alphas_cumprod[t]: (noise - sqrt(1 - abar) eps_hat) / sqrt(abar) for an
        epsilon predictor (the paper's re-parameterisation), sqrt(abar) noise - sqrt(1 - abar) v_hat
        for a v predictor. [B, C, H, W]
    """
    pt = prediction_type(scheduler)
    t = student_t(scheduler, t)
    abar = scheduler.alphas_cumprod[t].to(noise.device, torch.float32)
    ts = torch.full((noise.shape[0],), t, dtype=torch.long, device=noise.device)
    out = unet(noise, ts, encoder_hidden_states=embeds).sample
    return x0_from_output(out, noise, abar, pt)


@torch.no_grad()
def one_step_generate(
    unet: Any,
    scheduler: Any,
    embeds: Tensor,
    shape: tuple[int, int, int],
    generator: torch.Generator | None = None,
    vae: Any = None,
    t: int | None = None,
) -> Tensor:
    """Images from a one-step student.

    Args:
        embeds: text embeddings. [B, L, D]
        shape: the UNet's sample shape (C, H, W).
        vae: ``AutoencoderKL`` to decode latents (divided by its scaling factor), or None for a
            pixel-space model whose x0 is the image in [-1, 1].
        t: the student's input timestep (None: T - 1, as it was trained by the paper's recipe).

    Returns:
        images in [0, 1]. [B, 3, H', W']
    """
    dev = embeds.device
    noise = torch.randn((embeds.shape[0], *shape), generator=generator, dtype=torch.float32).to(dev)
    x0 = predict_x0(unet, scheduler, noise, embeds.to(torch.float32), t)
    if vae is not None:
        x0 = vae.decode(x0 / vae.config.scaling_factor).sample
    return ((x0.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def add_lora(
    unet: Any,
    rank: int,
    alpha: float,
    adapter_name: str = "default",
    target_modules: tuple[str, ...] | list[str] = ("to_q", "to_v"),
) -> Any:
    """Add LoRA adapters to ``unet``'s ``target_modules`` (default ``to_q`` / ``to_v``, the
    official script's) through peft (``unet.add_adapter``,
    B initialised to zero so the adapted UNet starts as the identity), freeze every other
    parameter. Returns ``unet``."""
    from peft import LoraConfig

    config = LoraConfig(
        r=int(rank), lora_alpha=float(alpha), target_modules=list(target_modules), init_lora_weights=True
    )
    unet.requires_grad_(False)
    unet.add_adapter(config, adapter_name=adapter_name)
    for name, p in unet.named_parameters():
        p.requires_grad_("lora_" in name)
    return unet


def lora_parameters(unet: Any) -> dict[str, Tensor]:
    """name -> parameter of the LoRA adapters of ``unet``."""
    return {n: p for n, p in unet.named_parameters() if "lora_" in n}


def _fingerprint(unet: Any) -> list[float]:
    """A few numbers that identify the frozen base weights (resume checks them)."""
    out = []
    for n, p in unet.named_parameters():
        if "lora_" not in n and len(out) < 4:
            out.append(float(p.detach().double().abs().sum()))
    return out


class SwiftBrushTrainer:
    """Alternating VSD (student) / denoising (LoRA) updates; see the module docstring.

    Args:
        teacher_unet: the pretrained epsilon- or v-prediction UNet (copied; the argument is
            untouched). For a v predictor every noise estimate of the recipe (the VSD gradient,
            the LoRA step's loss) is the v output converted to epsilon, so the recipe's
            formulas and weightings are the same for both.
        scheduler: its DDPM training scheduler (``alphas_cumprod`` [T]).
        prompt_embeds: the training prompts' text embeddings (prompts only, no images). [P, L, D]
        null_embed: the empty prompt's embedding. [1, L, D] or [L, D]
        sample_shape: (C, H, W) of the UNet's input (latents, or pixels for a pixel-space model).
        config: :class:`SwiftBrushConfig`.
        device: where the networks run.
    """

    def __init__(
        self,
        teacher_unet: Any,
        scheduler: Any,
        prompt_embeds: Tensor,
        null_embed: Tensor,
        sample_shape: tuple[int, int, int],
        config: SwiftBrushConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = cfg = config or SwiftBrushConfig()
        self.prediction_type = prediction_type(scheduler)
        if not 0 <= cfg.t_min <= cfg.t_max < scheduler.config.num_train_timesteps:
            raise ValueError(f"need 0 <= t_min <= t_max < T, got {cfg.t_min}, {cfg.t_max}")
        self.device = torch.device(device)
        self.scheduler = scheduler
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)  # [T]
        self.prompt_embeds = prompt_embeds.to(self.device, torch.float32)
        self.null_embed = null_embed.reshape(1, *prompt_embeds.shape[1:]).to(self.device, torch.float32)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.student_timestep = student_t(scheduler, cfg.student_timestep)
        # student: a full trainable copy of the teacher
        self.student = copy.deepcopy(teacher_unet).to(self.device).requires_grad_(True).train()
        self.ema = {n: p.detach().clone() for n, p in self.student.named_parameters()}
        # teacher + LoRA teacher in one UNet (adapters off = frozen teacher)
        self.lora_unet = add_lora(
            copy.deepcopy(teacher_unet).to(self.device), cfg.lora_rank, cfg.lora_alpha,
            target_modules=cfg.lora_target_modules,
        ).train()
        self.teacher_fingerprint = _fingerprint(self.lora_unet)
        self.opt = torch.optim.Adam(
            self.student.parameters(), lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps
        )
        self.opt_lora = torch.optim.Adam(
            list(lora_parameters(self.lora_unet).values()),
            lr=cfg.lr_lora,
            betas=cfg.adam_betas,
            eps=cfg.adam_eps,
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step_count = 0

    # ---------------------------------------------------------------------------- pieces
    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.generator).to(self.device)

    def _randint(self, lo: int, hi: int, n: int) -> Tensor:  # hi exclusive
        return torch.randint(lo, hi, (n,), generator=self.generator).to(self.device)

    def sample_batch(self) -> Tensor:
        """Prompt embeddings of one batch, drawn with replacement. [B, L, D]"""
        idx = self._randint(0, self.prompt_embeds.shape[0], self.config.batch_size)
        return self.prompt_embeds[idx]

    def _noisy(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps

    def _eps(self, out: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return eps_from_output(out, xt, self.alphas_cumprod[t].view(-1, 1, 1, 1), self.prediction_type)

    def _cfg(self, xt: Tensor, t: Tensor, embeds: Tensor, scale: float) -> Tensor:
        """Guided noise estimate (CFG is linear, so guiding v then converting equals converting
        then guiding)."""
        b = xt.shape[0]
        both = torch.cat([self.null_embed.expand(b, -1, -1), embeds])
        out = self.lora_unet(torch.cat([xt, xt]), torch.cat([t, t]), encoder_hidden_states=both).sample
        uncond, cond = out.chunk(2)
        return self._eps(uncond + scale * (cond - uncond), xt, t)

    def vsd_gradient(self, x0: Tensor, embeds: Tensor) -> tuple[Tensor, Tensor]:
        """``(grad = (1 - abar_t) (eps_teacher_cfg - eps_lora_cfg) [B, C, H, W], t [B])`` at a
        fresh t ~ U{t_min..t_max} and noise; no gradient flows through it."""
        cfg = self.config
        b = x0.shape[0]
        t = self._randint(cfg.t_min, cfg.t_max + 1, b)
        eps = self._randn(*x0.shape)
        with torch.no_grad():
            xt = self._noisy(x0.detach(), eps, t)
            self.lora_unet.disable_adapters()
            try:
                eps_teacher = self._cfg(xt, t, embeds, cfg.guidance_scale)
            finally:
                self.lora_unet.enable_adapters()
            s_lora = cfg.guidance_scale if cfg.lora_guidance_scale is None else cfg.lora_guidance_scale
            eps_lora = self._cfg(xt, t, embeds, s_lora)
            w = (1.0 - self.alphas_cumprod[t]).view(-1, 1, 1, 1)  # sigma_t^2 (official w(t))
            grad = torch.nan_to_num(w * (eps_teacher - eps_lora))
        return grad, t

    def vsd_step(self, embeds: Tensor) -> tuple[float, Tensor]:
        """One student update. Returns (loss, the student's x0 detached [B, C, H, W])."""
        cfg = self.config
        noise = self._randn(embeds.shape[0], *self.sample_shape)
        x0 = predict_x0(self.student, self.scheduler, noise, embeds, self.student_timestep)
        grad, _ = self.vsd_gradient(x0, embeds)
        loss = 0.5 * F.mse_loss(x0.float(), (x0 - grad).detach().float(), reduction="mean")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.max_grad_norm)
        self.opt.step()
        return float(loss.detach()), x0.detach()

    def lora_loss(self, x0: Tensor, embeds: Tensor) -> Tensor:
        """The LoRA teacher's denoising loss on (detached) student samples ``x0``, with the
        empty prompt for a ``empty_prompt_prob`` share of the samples."""
        cfg = self.config
        b = x0.shape[0]
        t = self._randint(0, len(self.alphas_cumprod), b)
        eps = self._randn(*x0.shape)
        xt = self._noisy(x0.detach(), eps, t)
        drop = torch.rand((b,), generator=self.generator).to(self.device) < cfg.empty_prompt_prob
        cond = torch.where(drop.view(-1, 1, 1), self.null_embed.expand(b, -1, -1), embeds)
        pred = self._eps(self.lora_unet(xt, t, encoder_hidden_states=cond).sample, xt, t)
        a = self.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)  # official: alpha_t-weighted MSE
        return F.mse_loss((a * pred).float(), (a * eps).float(), reduction="mean")

    def lora_step(self, x0: Tensor, embeds: Tensor) -> float:
        """One LoRA update on the student's samples. Returns the loss."""
        loss = self.lora_loss(x0, embeds)
        self.opt_lora.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            list(lora_parameters(self.lora_unet).values()), self.config.max_grad_norm
        )
        self.opt_lora.step()
        return float(loss.detach())

    @torch.no_grad()
    def ema_update(self) -> None:
        k = self.step_count
        decay = min(self.config.ema_decay, (1.0 + k) / (10.0 + k))
        for n, p in self.student.named_parameters():
            self.ema[n].lerp_(p.detach(), 1.0 - decay)

    def step(self) -> dict[str, float]:
        """One iteration: VSD update of the student, LoRA update, EMA. Returns the losses."""
        embeds = self.sample_batch()
        loss_vsd, x0 = self.vsd_step(embeds)
        loss_lora = self.lora_step(x0, embeds)
        self.ema_update()
        self.step_count += 1
        return {"loss_vsd": loss_vsd, "loss_lora": loss_lora}

    def train(
        self,
        steps: int,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        progress: Callable[[float, str], None] | None = None,
    ) -> list[dict[str, float]]:
        """Run until ``step_count == steps`` (a resumed trainer continues where it stopped),
        checkpointing every ``checkpoint_every`` steps and at the end when a path is given."""
        log = []
        start = self.step_count
        while self.step_count < steps:
            log.append(self.step())
            if progress is not None:
                progress((self.step_count - start) / max(1, steps - start), f"step {self.step_count}")
            if checkpoint_path and checkpoint_every and self.step_count % checkpoint_every == 0:
                self.save_checkpoint(checkpoint_path)
        if checkpoint_path:
            self.save_checkpoint(checkpoint_path)
        return log

    # ---------------------------------------------------------------------------- the student
    def ema_student(self) -> Any:
        """A copy of the student carrying the EMA weights (eval mode, frozen)."""
        m = copy.deepcopy(self.student)
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(self.ema[n])
        return m.requires_grad_(False).eval()

    def save_student(self, folder: str | os.PathLike, ema: bool = True) -> Path:
        """The (EMA) student as a diffusers UNet folder, which ``load_student`` reads, with its
        input timestep in ``swiftbrush.json`` (so a student trained at another timestep than
        999 is sampled at the one it learned)."""
        import json

        from ...models.diffusion import STUDENT_META
        from ...utils import atomic_write_bytes

        folder = Path(folder)
        (self.ema_student() if ema else self.student).save_pretrained(folder)
        meta = {"student_timestep": self.student_timestep, "prediction_type": self.prediction_type}
        atomic_write_bytes(folder / STUDENT_META, json.dumps(meta).encode())
        return folder

    # ---------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "splatlab-swiftbrush-1",
            "step": self.step_count,
            "config": asdict(self.config),
            "teacher_fingerprint": self.teacher_fingerprint,
            "student": {k: v.detach().cpu() for k, v in self.student.state_dict().items()},
            "ema": {k: v.cpu() for k, v in self.ema.items()},
            "lora": {k: v.detach().cpu() for k, v in lora_parameters(self.lora_unet).items()},
            "opt": self.opt.state_dict(),
            "opt_lora": self.opt_lora.state_dict(),
            "generator": self.generator.get_state(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write the training state atomically (temporary file in the same folder, fsync,
        ``os.replace``): a crash leaves the previous checkpoint intact."""
        from ...utils import atomic_write

        path = Path(path)
        with atomic_write(path, "wb") as f:
            torch.save(self.state_dict(), f)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Resume from :meth:`save_checkpoint`'s file (this trainer must be built on the same
        teacher and config). CheckpointError naming the file otherwise."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable SwiftBrush checkpoint ({type(e).__name__}: {e})") from e
        if not isinstance(state, dict) or state.get("format") != "splatlab-swiftbrush-1":
            raise CheckpointError(f"{path} is not a SwiftBrush checkpoint written by splatlab")
        fp = state["teacher_fingerprint"]
        if not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(fp, self.teacher_fingerprint)):
            raise CheckpointError(f"{path} was trained from a different teacher than this trainer's")
        mine = asdict(self.config)
        diff = {k: (state["config"].get(k), v) for k, v in mine.items() if state["config"].get(k) != v
                and not (isinstance(v, tuple) and list(v) == state["config"].get(k))}
        if diff:
            raise CheckpointError(f"{path}: its config differs from this trainer's: {diff}")
        self.student.load_state_dict(state["student"])
        with torch.no_grad():
            for k, v in state["ema"].items():
                self.ema[k].copy_(v)
            params = lora_parameters(self.lora_unet)
            if set(params) != set(state["lora"]):
                raise CheckpointError(f"{path}: its LoRA parameters do not match this trainer's")
            for k, v in state["lora"].items():
                params[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
        self.opt_lora.load_state_dict(state["opt_lora"])
        self.generator.set_state(state["generator"])
        self.step_count = int(state["step"])
