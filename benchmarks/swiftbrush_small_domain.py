"""SwiftBrush on a small domain trained here: does VSD distillation give a one-step student that
beats the teacher at one step and approaches it at 25 steps?

Domain (procedural, 16 x 16 RGB, pixel space): a disk, square or ring in red, green, blue or
yellow on a light-grey background, random position / size / colour jitter; captions
"a <colour> <shape>" (12 prompts). Same model family as SD: a ``UNet2DConditionModel`` teacher
(epsilon prediction, or v with ``--prediction-type v_prediction``; SD 2.1-base's scaled-linear
DDPM schedule) conditioned on a tiny
``CLIPTextModel`` (random, frozen: it only has to tell 12 captions apart), trained here with 10%
empty captions for classifier-free guidance. The student is distilled by
``splatlab.plugins.generate.swiftbrush.SwiftBrushTrainer`` from prompts only (no images).

Measures, for the teacher (DDIM, trailing spacing, CFG 4.5) at 1 / 4 / 25 steps and the student
at 1 step: the Frechet distance between generated and real images in the penultimate features of
a small CNN trained here to classify shape and colour, the text alignment (share of images whose
shape AND colour the classifier reads as the prompt's), and the wall time per image.

    python benchmarks/swiftbrush_small_domain.py --work /tmp/sb-small --teacher-steps 900 --student-steps 600
"""

from __future__ import annotations

import argparse
import json
import string
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = ("disk", "square", "ring")
COLOURS = {"red": (0.85, 0.15, 0.15), "green": (0.15, 0.65, 0.2), "blue": (0.15, 0.3, 0.85), "yellow": (0.9, 0.8, 0.1)}
PROMPTS = [(s, c) for s in SHAPES for c in COLOURS]
SIZE = 16
SD21_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1,
}


def render(shape: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """float32 [3, SIZE, SIZE] in [-1, 1]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    cy, cx = rng.uniform(5.5, 10.5, 2)
    r = rng.uniform(3.5, 5.5)
    if shape == "disk":
        m = np.hypot(yy - cy, xx - cx) < r
    elif shape == "square":
        m = (np.abs(yy - cy) < r * 0.85) & (np.abs(xx - cx) < r * 0.85)
    else:
        d = np.hypot(yy - cy, xx - cx)
        m = (d < r) & (d > r * 0.5)
    bg = 0.88 + rng.uniform(-0.04, 0.04)
    img = np.full((SIZE, SIZE, 3), bg, np.float32)
    col = np.clip(np.asarray(COLOURS[colour]) + rng.uniform(-0.06, 0.06, 3), 0, 1)
    img[m] = col
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 2 - 1).transpose(2, 0, 1)


def dataset(n_per_prompt: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, (s, c) in enumerate(PROMPTS):
        for _ in range(n_per_prompt):
            xs.append(render(s, c, rng))
            ys.append(k)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = string.ascii_lowercase + " "
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                       bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    del chars

    @torch.no_grad()
    def encode(texts: list[str]) -> torch.Tensor:
        ids = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
        return enc(ids)[0]

    return encode


def make_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )


def train_teacher(unet, sched, x, y, embeds, null, steps: int, batch: int, log) -> float:
    """Denoising training with 10% empty captions; the target is epsilon or v as ``sched``'s
    ``prediction_type`` says (v = sqrt(abar) eps - sqrt(1 - abar) x0, diffusers' get_velocity)."""
    v_pred = sched.config.prediction_type == "v_prediction"
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    ac = sched.alphas_cumprod
    t0 = time.perf_counter()
    for i in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        x0, e = x[idx], embeds[y[idx]]
        drop = torch.rand(batch, generator=g) < 0.1
        e = torch.where(drop.view(-1, 1, 1), null.expand(batch, -1, -1), e)
        t = torch.randint(0, 1000, (batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        target = sched.get_velocity(x0, eps, t) if v_pred else eps
        loss = F.mse_loss(unet(xt, t, encoder_hidden_states=e).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        if i % 100 == 0 or i == steps - 1:
            log(f"teacher step {i} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")
    return time.perf_counter() - t0


@torch.no_grad()
def ddim_sample(unet, k: int, embeds, null, guidance: float, seed: int, chunk: int = 96,
                prediction_type: str = "epsilon") -> torch.Tensor:
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config({**SD21_SCHEDULER, "timestep_spacing": "trailing",
                                      "prediction_type": prediction_type})
    ddim.set_timesteps(k)
    out = []
    g = torch.Generator().manual_seed(seed)
    for s in range(0, len(embeds), chunk):
        e = embeds[s:s + chunk]
        b = len(e)
        x = torch.randn((b, 3, SIZE, SIZE), generator=g)
        for t in ddim.timesteps:
            tt = torch.full((2 * b,), int(t))
            eu, ec = unet(torch.cat([x, x]), tt, encoder_hidden_states=torch.cat([null.expand(b, -1, -1), e])).sample.chunk(2)
            x = ddim.step(eu + guidance * (ec - eu), t, x).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


@torch.no_grad()
def student_sample(unet, sched, embeds, seed: int, chunk: int = 96, t: int | None = None) -> torch.Tensor:
    from splatlab.plugins.generate.swiftbrush import one_step_generate

    g = torch.Generator().manual_seed(seed)
    outs = [one_step_generate(unet, sched, embeds[s:s + chunk], (3, SIZE, SIZE), g, t=t) * 2 - 1
            for s in range(0, len(embeds), chunk)]
    return torch.cat(outs)


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(64, 64), torch.nn.ReLU(),
        )
        self.shape = torch.nn.Linear(64, len(SHAPES))
        self.colour = torch.nn.Linear(64, len(COLOURS))

    def forward(self, x):
        h = self.f(x)
        return h, self.shape(h), self.colour(h)


def train_classifier(x, y, steps: int = 600, seed: int = 1) -> Classifier:
    torch.manual_seed(seed)  # the metric network must not depend on what ran before it
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), 2e-3)
    g = torch.Generator().manual_seed(seed)
    ys, yc = y // len(COLOURS), y % len(COLOURS)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        _, ls, lc = clf(x[idx])
        loss = F.cross_entropy(ls, ys[idx]) + F.cross_entropy(lc, yc[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@torch.no_grad()
def evaluate(clf, imgs, y, real_feats) -> tuple[float, float]:
    h, ls, lc = clf(imgs)
    ok = (ls.argmax(1) == y // len(COLOURS)) & (lc.argmax(1) == y % len(COLOURS))
    return frechet(h.numpy(), real_feats), float(ok.float().mean())


@torch.no_grad()
def evaluate_all(clfs, imgs, y, reals) -> dict[str, float]:
    """FD and alignment under every metric classifier: the first classifier's figures (the
    table's historic ones) plus the mean and std over all of them."""
    out: dict[str, float] = {}
    fds, accs = [], []
    for clf, real_feats in zip(clfs, reals):
        fd, acc = evaluate(clf, imgs, y, real_feats)
        fds.append(fd)
        accs.append(acc)
    out.update(fd=fds[0], align=accs[0])
    for k, v in (("fd", fds), ("align", accs)):
        out[f"{k}_mean"], out[f"{k}_std"] = float(np.mean(v)), float(np.std(v))
    return out


def diversity(imgs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over prompts of the per-pixel standard deviation across that prompt's samples
    (images in [-1, 1]): 0 when every sample of a prompt is the same image (mode collapse)."""
    return float(torch.stack([imgs[y == k].std(0).mean() for k in torch.unique(y)]).mean())


def save_grid(path: Path, imgs: torch.Tensor, per_row: int) -> None:
    """A PNG of the first ``per_row`` images of each prompt (images [N, 3, 16, 16] in [0, 1])."""
    from PIL import Image

    n = len(imgs) // len(PROMPTS)
    rows = [imgs[i * n: i * n + per_row] for i in range(len(PROMPTS))]
    a = torch.cat([torch.cat(list(r), 2) for r in rows], 1).clamp(0, 1)
    Image.fromarray((a.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize(
        (a.shape[2] * 4, a.shape[1] * 4), Image.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/swiftbrush-small"))
    ap.add_argument("--teacher-steps", type=int, default=900)
    ap.add_argument("--student-steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--student-batch", type=int, default=16)
    ap.add_argument("--eval-per-prompt", type=int, default=40)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--student-lr", type=float, default=1e-4)
    ap.add_argument("--guidance", type=float, default=4.5,
                    help="CFG of the teachers in the VSD gradient (official 4.5; the teacher's own "
                         "samples keep 4.5)")
    ap.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), default="epsilon",
                    help="the teacher's parameterisation (SD 2.1-base: epsilon; SD 2.1 768: v). With v the "
                         "student's x0 at t = 999 is sqrt(abar) z - sqrt(1 - abar) v, with no 1 / sqrt(abar) "
                         "= 14.6 amplification of its error")
    ap.add_argument("--student-timestep", type=int, default=None,
                    help="the student's input timestep (default T - 1 = 999, the paper's); lower is an "
                         "ablation outside the paper")
    ap.add_argument("--lora-targets", default="to_q,to_v",
                    help="modules the LoRA teacher adapts (official to_q,to_v; this UNet has attention at "
                         "its 8 x 8 level only, so e.g. to_q,to_k,to_v,to_out.0,conv1,conv2 reaches more)")
    ap.add_argument("--probe-timesteps", default="",
                    help="comma list: only score the teacher's x0 from pure noise at each of these "
                         "timesteps (a student's starting point there), write probe.json and stop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--metric-seeds", default="1,2,3",
                    help="seeds of the metric classifiers (FD / alignment: the first seed's "
                         "figures and the mean and std over all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from splatlab.plugins.generate.swiftbrush import SwiftBrushConfig, SwiftBrushTrainer

    args.work.mkdir(parents=True, exist_ok=True)
    logf = open(args.work / "log.txt", "a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    sched = DDPMScheduler.from_config({**SD21_SCHEDULER, "prediction_type": args.prediction_type})
    encode = text_encoder()
    texts = [f"a {c} {s}" for s, c in PROMPTS]
    embeds, null = encode(texts), encode([""])
    x, y = dataset(500, seed=0)  # 6000 training images (teacher and classifier)
    log(f"data {tuple(x.shape)}")
    teacher_dir = args.work / "teacher"
    if (teacher_dir / "config.json").is_file():
        kept = json.loads((args.work / "teacher_time.json").read_text()).get("prediction_type", "epsilon")
        if kept != args.prediction_type:
            raise SystemExit(f"{teacher_dir} was trained for {kept}, not {args.prediction_type}: use another --work")
        teacher = UNet2DConditionModel.from_pretrained(teacher_dir)
        results["teacher_train_s"] = json.loads((args.work / "teacher_time.json").read_text())["s"]
        log("teacher loaded")
    else:
        teacher = make_unet()
        s = train_teacher(teacher, sched, x, y, embeds, null, args.teacher_steps, args.batch, log)
        teacher.save_pretrained(teacher_dir)
        (args.work / "teacher_time.json").write_text(json.dumps({"s": s, "prediction_type": args.prediction_type}))
        results["teacher_train_s"] = s
    teacher.eval().requires_grad_(False)

    clfs = [train_classifier(x, y, seed=int(sd)) for sd in args.metric_seeds.split(",")]
    xr, yr = dataset(args.eval_per_prompt, seed=123)  # held-out real images
    with torch.no_grad():
        reals = [c(x[:2000])[0].numpy() for c in clfs]

    def score(name: str, imgs, labels, **extra) -> dict:
        r = {**evaluate_all(clfs, imgs, labels, reals), "diversity": diversity(imgs, labels), **extra}
        results[name] = r
        save_grid(args.work / f"grid_{name}.png", imgs, 8)
        log(f"{name}: FD {r['fd']:.3f} align {r['align']:.3f} | over {len(clfs)} metric nets: FD "
            f"{r['fd_mean']:.1f} +- {r['fd_std']:.1f}, "
            f"align {r['align_mean']:.3f} +- {r['align_std']:.3f} | diversity {r['diversity']:.3f}")
        return r

    score("real", xr, yr)

    ye = torch.arange(len(PROMPTS)).repeat_interleave(args.eval_per_prompt)
    ee = embeds[ye]
    for k in (1, 4, 25):
        t0 = time.perf_counter()
        imgs = ddim_sample(teacher, k, ee, null, 4.5, seed=7, prediction_type=args.prediction_type)
        dt = (time.perf_counter() - t0) / len(ee)
        score(f"teacher_{k}", imgs, ye, s_per_image=dt)

    if args.probe_timesteps:
        probe = {}
        for t in (int(v) for v in args.probe_timesteps.split(",")):
            probe[t] = score(f"init_t{t}", student_sample(teacher, sched, ee, seed=7, t=t), ye)
        (args.work / "probe.json").write_text(json.dumps({"real": results["real"], **probe}, indent=2))
        return

    # the student's starting point: the teacher's x0 at the student's timestep (999 unless
    # --student-timestep) from pure noise, no CFG
    imgs = student_sample(teacher, sched, ee, seed=7, t=args.student_timestep)
    score("student_init", imgs, ye)

    ckpt = args.work / "swiftbrush.pt"
    cfg = SwiftBrushConfig(lora_rank=args.lora_rank, lora_alpha=args.lora_rank * 108 / 64, lr=args.student_lr,
                           guidance_scale=args.guidance, lr_lora=1e-3, batch_size=args.student_batch, seed=0,
                           student_timestep=args.student_timestep,
                           lora_target_modules=tuple(args.lora_targets.split(",")))
    tr = SwiftBrushTrainer(teacher, sched, embeds, null, (3, SIZE, SIZE), cfg)
    if ckpt.is_file():
        tr.load_checkpoint(ckpt)
        log(f"resumed the student at step {tr.step_count}")
    t0 = time.perf_counter()
    done = tr.step_count
    while tr.step_count < args.student_steps:
        n = min(args.student_steps, tr.step_count + 50)
        logs = tr.train(n, checkpoint_path=ckpt)
        log(f"student step {tr.step_count} vsd {np.mean([v['loss_vsd'] for v in logs]):.2e} "
            f"lora {np.mean([v['loss_lora'] for v in logs]):.4f} ({time.perf_counter() - t0:.0f} s)")
    prev = json.loads((args.work / "student_time.json").read_text())["s"] if (args.work / "student_time.json").is_file() and done else 0.0
    results["student_train_s"] = prev + time.perf_counter() - t0
    (args.work / "student_time.json").write_text(json.dumps({"s": results["student_train_s"]}))
    for name, net in (("student_ema", tr.ema_student()), ("student_raw", tr.student.eval())):
        t0 = time.perf_counter()
        imgs = student_sample(net, sched, ee, seed=7, t=args.student_timestep)
        dt = (time.perf_counter() - t0) / len(ee)
        score(name, imgs, ye, s_per_image=dt)
    tr.save_student(args.work / "student")
    grid = {k: v for k, v in results.items()}
    (args.work / "results.json").write_text(json.dumps(grid, indent=2))
    log(json.dumps(grid))


if __name__ == "__main__":
    main()
