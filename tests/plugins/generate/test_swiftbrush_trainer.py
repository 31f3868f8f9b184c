"""SwiftBrush VSD trainer on tiny random diffusers models (SD 2.1-base's schedule)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402

from splatlab.errors import CheckpointError  # noqa: E402
from splatlab.plugins.generate.swiftbrush import (  # noqa: E402
    SwiftBrushConfig,
    SwiftBrushTrainer,
    add_lora,
    eps_from_output,
    lora_parameters,
    predict_x0,
    x0_from_output,
)

# scheduler/scheduler_config.json of stabilityai/stable-diffusion-2-1-base (a PNDM config; the
# DDPM scheduler reads the same training schedule from it, as the official training script does)
SD21_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
L, D = 7, 16  # tokens, text width


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=D,
        attention_head_dim=2,
        norm_num_groups=4,
    )


def scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    return DDPMScheduler.from_config({**SD21_SCHEDULER, "prediction_type": prediction_type})


def make_trainer(unet=None, prediction_type: str = "epsilon", **cfg) -> SwiftBrushTrainer:
    torch.manual_seed(1)
    embeds = torch.randn(6, L, D)
    null = torch.zeros(1, L, D)
    base = dict(batch_size=2, lora_rank=4, lora_alpha=8.0, lr=1e-3, lr_lora=1e-2, seed=3)
    base.update(cfg)
    return SwiftBrushTrainer(
        unet or tiny_unet(), scheduler(prediction_type), embeds, null, (4, 8, 8), SwiftBrushConfig(**base)
    )


def _inputs(b: int = 2, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn((b, 4, 8, 8), generator=g),
        torch.randint(0, 1000, (b,), generator=g),
        torch.randn((b, L, D), generator=g),
    )


def test_lora_starts_as_identity_and_only_lora_params_get_gradients() -> None:
    base = tiny_unet()
    x, t, e = _inputs()
    with torch.no_grad():
        ref = base(x, t, encoder_hidden_states=e).sample
    lora = add_lora(copy.deepcopy(base), rank=4, alpha=8.0)
    params = lora_parameters(lora)
    names_b = [n for n in params if "lora_B" in n]
    # peft on to_q / to_v of every attention: 2 attentions x (self + cross) x (q, v) x (A, B)
    assert len(params) > 0 and len(names_b) == len(params) // 2
    assert all(("to_q" in n) or ("to_v" in n) for n in params)
    assert all(float(params[n].detach().abs().max()) == 0.0 for n in names_b)  # B = 0 at the start
    with torch.no_grad():
        out = lora(x, t, encoder_hidden_states=e).sample
        lora.disable_adapters()
        off = lora(x, t, encoder_hidden_states=e).sample
        lora.enable_adapters()
    assert float((out - ref).abs().max()) == 0.0
    assert float((off - ref).abs().max()) == 0.0
    # the LoRA step: gradients reach the LoRA parameters only
    tr = make_trainer(base)
    x0 = torch.randn(2, 4, 8, 8)
    loss = tr.lora_loss(x0, tr.sample_batch())
    loss.backward()
    with_grad = {n for n, p in tr.lora_unet.named_parameters() if p.grad is not None}
    assert with_grad == set(lora_parameters(tr.lora_unet))
    assert all("lora_" in n for n in with_grad)
    g_b = sum(float(p.grad.abs().sum()) for n, p in tr.lora_unet.named_parameters() if "lora_B" in n)
    assert g_b > 0.0  # B moves first (dL/dA = 0 while B = 0)
    assert all(p.grad is None for p in tr.student.parameters())


class _FixedEps(torch.nn.Module):
    """A 'UNet' that returns a fixed epsilon and records the timestep it was called with."""

    def __init__(self, eps: torch.Tensor) -> None:
        super().__init__()
        self.eps = eps
        self.t = None

    def forward(self, x, t, encoder_hidden_states=None):
        self.t = t
        return type("Out", (), {"sample": self.eps})()


def test_x0_reparameterisation_matches_the_scheduler_at_t999() -> None:
    sch = scheduler()
    abar = float(sch.alphas_cumprod[999])
    assert abar == pytest.approx(0.0047, abs=1e-4)  # the constant the official code hard-codes
    g = torch.Generator().manual_seed(0)
    z = torch.randn((2, 4, 8, 8), generator=g)
    eps = torch.randn((2, 4, 8, 8), generator=g)
    net = _FixedEps(eps)
    x0 = predict_x0(net, sch, z, torch.zeros(2, L, D))
    assert net.t.tolist() == [999, 999]
    expect = (z - (1 - abar) ** 0.5 * eps) / abar**0.5
    assert float((x0 - expect).abs().max()) < 1e-4
    # forward-noising the student's x0 with its own eps at t = 999 gives back the input noise
    back = sch.add_noise(x0, eps, torch.tensor([999, 999]))
    assert float((back - z).abs().max()) < 1e-4


def _unet_outputs_by_hand(tr, x0, e, state, t):
    """Replay the VSD gradient's random draws from generator ``state`` and return abar and the raw
    UNet outputs (teacher cond / uncond, LoRA cond / uncond) at the same x_t."""
    tr.generator.set_state(state)
    t2 = tr._randint(20, 981, 2)
    eps = tr._randn(2, 4, 8, 8)
    assert torch.equal(t, t2)
    abar = tr.alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    null = tr.null_embed.expand(2, -1, -1)
    with torch.no_grad():
        tr.lora_unet.disable_adapters()
        tc, tu = (tr.lora_unet(xt, t, encoder_hidden_states=c).sample for c in (e, null))
        tr.lora_unet.enable_adapters()
        lc, lu = (tr.lora_unet(xt, t, encoder_hidden_states=c).sample for c in (e, null))
    return abar, tc, tu, lc, lu


def _vsd_against_hand(tr):
    """Make the LoRA teacher differ from the frozen one, take a VSD gradient at a random x0 and
    return (x0, embeds, grad, abar, teacher cond, uncond, LoRA cond, uncond) with the UNet
    outputs recomputed from the same draws."""
    with torch.no_grad():
        for p in lora_parameters(tr.lora_unet).values():
            p.copy_(torch.randn_like(p) * 0.3)
    x0 = torch.randn(2, 4, 8, 8)
    e = tr.sample_batch()
    state = tr.generator.get_state()
    grad, t = tr.vsd_gradient(x0, e)
    assert grad.abs().max() > 0
    return (x0, e, grad, *_unet_outputs_by_hand(tr, x0, e, state, t))


def test_vsd_gradient_formula_and_loss_gradient() -> None:
    tr = make_trainer()
    x0, e, grad, abar, tc, tu, lc, lu = _vsd_against_hand(tr)
    s = 4.5
    expect = (1 - abar) * ((tu + s * (tc - tu)) - (lu + s * (lc - lu)))
    assert float((grad - expect).abs().max()) < 1e-4 * float(expect.abs().max())
    # 0.5 MSE(x0, sg(x0 - grad)) has gradient grad / numel in x0
    x = x0.clone().requires_grad_(True)
    loss = 0.5 * torch.nn.functional.mse_loss(x, (x - grad).detach())
    loss.backward()
    assert float((x.grad - grad / grad.numel()).abs().max()) < 1e-9
    # VSD timesteps stay in [20, 980]
    ts = torch.cat([tr._randint(tr.config.t_min, tr.config.t_max + 1, 4000)])
    assert int(ts.min()) == 20 and int(ts.max()) == 980


def test_one_vsd_step_moves_the_student_and_not_the_frozen_teacher() -> None:
    teacher = tiny_unet()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    tr = make_trainer(teacher, lr=1e-2)
    with torch.no_grad():  # LoRA != teacher, so the VSD gradient is not zero
        for p in lora_parameters(tr.lora_unet).values():
            p.copy_(torch.randn_like(p) * 0.3)
    base_before = {n: p.clone() for n, p in tr.lora_unet.named_parameters() if "lora_" not in n}
    lora_before = {n: p.clone() for n, p in lora_parameters(tr.lora_unet).items()}
    student_before = {n: p.detach().clone() for n, p in tr.student.named_parameters()}
    loss, x0 = tr.vsd_step(tr.sample_batch())
    assert loss > 0
    moved = max(float((p.detach() - student_before[n]).abs().max()) for n, p in tr.student.named_parameters())
    assert moved > 1e-4  # Adam moves by ~lr
    assert all(torch.equal(p, base_before[n]) for n, p in tr.lora_unet.named_parameters() if "lora_" not in n)
    assert all(torch.equal(p, lora_before[n]) for n, p in lora_parameters(tr.lora_unet).items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    # the clip: total gradient norm after clipping <= max_grad_norm
    norm = torch.nn.utils.get_total_norm([p.grad for p in tr.student.parameters() if p.grad is not None])
    assert float(norm) <= 1.0 + 1e-5


def test_full_step_ema_and_first_vsd_loss_is_zero() -> None:
    tr = make_trainer()
    init = {n: p.detach().clone() for n, p in tr.student.named_parameters()}
    log = tr.step()
    # LoRA == teacher at the start (B = 0, same CFG): the first VSD gradient is exactly zero
    assert log["loss_vsd"] == 0.0 and log["loss_lora"] > 0
    # EMA decay at step k: min(0.9999, (1 + k) / (10 + k)), diffusers' EMAModel warm-up; k = 0 -> 0.1
    for n, p in tr.student.named_parameters():
        expect = 0.1 * init[n] + 0.9 * p.detach()
        assert float((tr.ema[n] - expect).abs().max()) < 1e-6, n
    ema_student = tr.ema_student()
    n0, p0 = next(iter(ema_student.named_parameters()))
    assert torch.equal(p0, tr.ema[n0]) and not p0.requires_grad
    assert tr.step_count == 1


def test_resume_after_checkpoint_continues_identically(tmp_path) -> None:
    ref = make_trainer()
    for _ in range(3):
        ref.step()
    a = make_trainer()
    a.train(2, checkpoint_path=tmp_path / "ckpt.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # atomic write: no temp left
    b = make_trainer()
    b.load_checkpoint(tmp_path / "ckpt.pt")
    assert b.step_count == 2
    b.train(3)
    for (n, p), (_, q) in zip(ref.student.named_parameters(), b.student.named_parameters()):
        assert torch.equal(p, q), n
    for n in ref.ema:
        assert torch.equal(ref.ema[n], b.ema[n]), n
    for n, p in lora_parameters(ref.lora_unet).items():
        assert torch.equal(p, lora_parameters(b.lora_unet)[n]), n
    # a checkpoint of another teacher is refused with the file named
    other = make_trainer(tiny_unet(seed=9))
    with pytest.raises(CheckpointError, match="different teacher"):
        other.load_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="config differs"):
        make_trainer(lr=5e-4).load_checkpoint(tmp_path / "ckpt.pt")


def test_v_prediction_conversions_agree_with_diffusers_velocity() -> None:
    sch = scheduler("v_prediction")
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn((3, 4, 8, 8), generator=g)
    eps = torch.randn((3, 4, 8, 8), generator=g)
    t = torch.tensor([0, 500, 999])
    xt = sch.add_noise(x0, eps, t)
    v = sch.get_velocity(x0, eps, t)  # diffusers' own definition of the v target
    abar = sch.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert float((eps_from_output(v, xt, abar, "v_prediction") - eps).abs().max()) < 1e-4
    assert float((x0_from_output(v, xt, abar, "v_prediction") - x0).abs().max()) < 1e-4
    # epsilon prediction: the output is the noise estimate
    assert torch.equal(eps_from_output(eps, xt, abar, "epsilon"), eps)
    assert float((x0_from_output(eps, xt, abar, "epsilon") - x0).abs().max()) < 1e-3
    # the student of a v predictor at t = 999: x0 = sqrt(abar) z - sqrt(1 - abar) v (no 1/sqrt(abar))
    z = torch.randn((2, 4, 8, 8), generator=g)
    vhat = torch.randn((2, 4, 8, 8), generator=g)
    out = predict_x0(_FixedEps(vhat), sch, z, torch.zeros(2, L, D))
    a = float(sch.alphas_cumprod[999])
    assert float((out - (a**0.5 * z - (1 - a) ** 0.5 * vhat)).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="'sample'"):
        predict_x0(_FixedEps(vhat), scheduler("sample"), z, torch.zeros(2, L, D))


def test_v_prediction_trainer_uses_the_same_recipe_in_epsilon_space() -> None:
    tr = make_trainer(prediction_type="v_prediction")
    assert tr.step()["loss_vsd"] == 0.0  # LoRA == teacher at the start, as for epsilon
    x0, e, grad, abar, tc, tu, lc, lu = _vsd_against_hand(tr)
    null = tr.null_embed.expand(2, -1, -1)
    s = 4.5
    # eps_teacher - eps_lora = sqrt(abar) (v_teacher - v_lora): the x_t terms cancel
    expect = (1 - abar) * abar.sqrt() * ((tu + s * (tc - tu)) - (lu + s * (lc - lu)))
    assert float((grad - expect).abs().max()) < 1e-4 * float(expect.abs().max())
    # the LoRA step's loss: the official alpha_t-weighted epsilon MSE, epsilon read from v
    state = tr.generator.get_state()
    loss = tr.lora_loss(x0, e)
    tr.generator.set_state(state)
    tl = tr._randint(0, 1000, 2)
    eps = tr._randn(2, 4, 8, 8)
    drop = torch.rand((2,), generator=tr.generator) < tr.config.empty_prompt_prob
    cond = torch.where(drop.view(-1, 1, 1), null, e)
    ab = tr.alphas_cumprod[tl].view(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    with torch.no_grad():
        v = tr.lora_unet(xt, tl, encoder_hidden_states=cond).sample
    eps_hat = ab.sqrt() * v + (1 - ab).sqrt() * xt
    ref = torch.nn.functional.mse_loss(ab.sqrt() * eps_hat, ab.sqrt() * eps)
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-5)


def test_student_timestep_option_feeds_that_timestep_and_its_abar() -> None:
    """``student_timestep`` (an ablation outside the paper) changes only the student's input
    timestep and the abar of its x0; None keeps the paper's T - 1; out of range is refused."""
    sch = scheduler("v_prediction")
    g = torch.Generator().manual_seed(4)
    z = torch.randn((2, 4, 8, 8), generator=g)
    vhat = torch.randn((2, 4, 8, 8), generator=g)
    net = _FixedEps(vhat)
    out = predict_x0(net, sch, z, torch.zeros(2, L, D), t=700)
    a = float(sch.alphas_cumprod[700])
    assert a == pytest.approx(0.0825, abs=1e-3)  # 17.6x the abar of t = 999
    assert net.t.tolist() == [700, 700]
    assert float((out - (a**0.5 * z - (1 - a) ** 0.5 * vhat)).abs().max()) < 1e-5
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match=r"\[0, 999\]"):
            predict_x0(net, sch, z, torch.zeros(2, L, D), t=bad)
    assert make_trainer().student_timestep == 999
    tr = make_trainer(prediction_type="v_prediction", student_timestep=700)
    seen = []
    hook = tr.student.register_forward_pre_hook(lambda m, args: seen.append(args[1].tolist()))
    tr.step()
    hook.remove()
    assert seen == [[700, 700]]
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        make_trainer(student_timestep=1000)


def test_lora_target_modules_reach_the_resnet_convolutions_and_start_as_identity() -> None:
    wide = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")
    tr = make_trainer(lora_target_modules=wide)
    official = lora_parameters(add_lora(tiny_unet(), rank=4, alpha=8.0))
    params = lora_parameters(tr.lora_unet)
    # the official set is contained, and every resnet's conv1 / conv2 is adapted too
    assert set(official) < set(params)
    convs = {n.split(".lora_")[0] for n in params if ".conv1." in n or ".conv2." in n}
    n_resnets = sum(1 for n, _ in tiny_unet().named_modules() if n.endswith(".conv1"))
    assert len(convs) == 2 * n_resnets > 0
    assert all(float(p.detach().abs().max()) == 0.0 for n, p in params.items() if "lora_B" in n)
    x, t, e = _inputs()
    with torch.no_grad():
        ref = tiny_unet()(x, t, encoder_hidden_states=e).sample
        out = tr.lora_unet(x, t, encoder_hidden_states=e).sample
    assert float((out - ref).abs().max()) == 0.0
    # one LoRA step moves the conv adapters' B (they take part in the teacher's output)
    loss = tr.lora_loss(torch.randn(2, 4, 8, 8), tr.sample_batch())
    loss.backward()
    g_conv = sum(float(p.grad.abs().sum()) for n, p in tr.lora_unet.named_parameters()
                 if "lora_B" in n and (".conv1." in n or ".conv2." in n))
    assert g_conv > 0.0
