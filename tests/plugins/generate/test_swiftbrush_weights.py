"""Weight loading of the SwiftBrush teacher / student (splatlab.models.diffusion) and the
generate plugin on a tiny random diffusers pipeline written to disk."""

from __future__ import annotations

import json
import shutil
import string

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from splatlab.errors import CheckpointError, SplatlabError, WeightsNotFoundError  # noqa: E402
from splatlab.models.diffusion import (  # noqa: E402
    STUDENT_ID,
    TEACHER_ID,
    DiffusionWeightsNotFoundError,
    load_student,
    load_teacher,
)

SCHED = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1,
}
D = 16


def _unet(seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=D, attention_head_dim=2, norm_num_groups=4,
    )


def write_tiny_pipeline(root, seed: int = 0, prediction_type: str = "epsilon"):
    """A complete diffusers SD-layout folder with tiny random parts (16 px images, 8 px latents)."""
    _unet(seed).save_pretrained(root / "unet")
    DDPMScheduler.from_config({**SCHED, "prediction_type": prediction_type}).save_pretrained(root / "scheduler")
    torch.manual_seed(seed + 1)
    AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4,
        norm_num_groups=4, sample_size=16,
    ).save_pretrained(root / "vae")
    chars = string.ascii_lowercase + string.digits + ",.!?'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tdir = root / "tokenizer_src"
    tdir.mkdir()
    (tdir / "vocab.json").write_text(json.dumps(vocab))
    (tdir / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tdir / "vocab.json"), str(tdir / "merges.txt"), model_max_length=16).save_pretrained(root / "tokenizer")
    shutil.rmtree(tdir)
    torch.manual_seed(seed + 2)
    CLIPTextModel(
        CLIPTextConfig(vocab_size=len(vocab), hidden_size=D, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    ).save_pretrained(root / "text_encoder")
    return root


@pytest.fixture
def no_weights_here(monkeypatch, tmp_path):
    """Empty weight folders and HF cache, so nothing installed on the machine is found."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPLATLAB_WEIGHTS", str(tmp_path / "splatlab-weights"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_missing_teacher_weights_say_what_to_download_and_where(no_weights_here) -> None:
    with pytest.raises(DiffusionWeightsNotFoundError) as ei:
        load_teacher(TEACHER_ID)
    msg = str(ei.value)
    assert isinstance(ei.value, WeightsNotFoundError) and isinstance(ei.value, SplatlabError)
    assert isinstance(ei.value, FileNotFoundError)
    assert "stabilityai/stable-diffusion-2-1-base" in msg
    assert "huggingface-cli download stabilityai/stable-diffusion-2-1-base" in msg
    assert str(no_weights_here / "hf-cache") in msg  # the HF cache it looked in
    assert str(no_weights_here / "splatlab-weights" / "stable-diffusion-2-1-base") in msg
    assert "https://huggingface.co/stabilityai/stable-diffusion-2-1-base" in msg


def test_missing_student_and_bad_paths(no_weights_here, tmp_path) -> None:
    with pytest.raises(DiffusionWeightsNotFoundError, match="thuanz123/swiftbrush"):
        load_student(STUDENT_ID)
    with pytest.raises(DiffusionWeightsNotFoundError, match=r"does not exist.*stable-diffusion-2-1-base"):
        load_teacher(tmp_path / "no" / "such" / "sd21")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "scheduler").mkdir()
    with pytest.raises(DiffusionWeightsNotFoundError, match=r"not a complete diffusers pipeline folder \(no unet/"):
        load_teacher(tmp_path / "half")


def test_teacher_from_folder_and_from_hub_name_in_weights_dir(no_weights_here, tmp_path) -> None:
    src = write_tiny_pipeline(tmp_path / "pipe")
    comps = load_teacher(src)
    assert comps.vae is not None and comps.tokenizer is not None and comps.text_encoder is not None
    assert float(comps.scheduler.alphas_cumprod[999]) == pytest.approx(0.0047, abs=1e-4)
    ref = _unet(0).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in comps.unet.state_dict().items())
    assert not any(p.requires_grad for p in comps.unet.parameters())
    # the hub id resolves to a folder named like the repo in $SPLATLAB_WEIGHTS
    shutil.copytree(src, no_weights_here / "splatlab-weights" / "stable-diffusion-2-1-base")
    comps2 = load_teacher(TEACHER_ID)
    assert comps2.source.endswith("stable-diffusion-2-1-base")
    # SD 2.1 768 px predicts v: accepted (the trainer converts v to epsilon); x0 prediction is not
    write_tiny_pipeline(tmp_path / "vpred", prediction_type="v_prediction")
    assert load_teacher(tmp_path / "vpred").scheduler.config.prediction_type == "v_prediction"
    write_tiny_pipeline(tmp_path / "x0pred", prediction_type="sample")
    with pytest.raises(CheckpointError, match="'sample'"):
        load_teacher(tmp_path / "x0pred")


def test_student_from_unet_folder_and_single_file(no_weights_here, tmp_path) -> None:
    from safetensors.torch import save_file

    teacher = write_tiny_pipeline(tmp_path / "pipe")
    student = _unet(7)
    student.save_pretrained(tmp_path / "student_unet")
    save_file(student.state_dict(), str(tmp_path / "student.safetensors"))
    ref = student.state_dict()
    for src in (tmp_path / "student_unet", tmp_path / "student.safetensors"):
        comps = load_student(src, teacher=teacher)
        assert comps.vae is not None and comps.text_encoder is not None  # the teacher's
        assert all(torch.equal(v, ref[k]) for k, v in comps.unet.state_dict().items()), src
    bad = {k: v for k, v in list(ref.items())[:-3]}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="3 missing keys"):
        load_student(tmp_path / "bad.safetensors", teacher=teacher)
    with pytest.raises(DiffusionWeightsNotFoundError, match="stable-diffusion-2-1-base"):
        load_student(tmp_path / "student_unet")  # the teacher it needs is not here


def test_plugin_generates_with_a_local_student_and_places_the_card(no_weights_here, tmp_path) -> None:
    from splatlab.plugins.base import PluginInputs
    from splatlab.plugins.generate.plugin import SwiftBrushOptions, SwiftBrushPlugin

    pipe = write_tiny_pipeline(tmp_path / "pipe", seed=3)
    opts = SwiftBrushOptions(prompt="a red apple", student=str(pipe), teacher=str(pipe), fit_steps=20,
                             key_tolerance=0.0, pos_x=1.0, pos_y=2.0, pos_z=3.0, scale=0.5, model_device="cpu")
    calls = []
    rep = SwiftBrushPlugin().run(PluginInputs(), opts, lambda f, m="": calls.append(f))
    img = rep.images["image"]
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8 and img.std() > 0
    n = int(rep.metrics["n_asset_gaussians"])
    assert n > 0 and rep.scene["means"].shape[0] == n
    c = rep.scene["means"].mean(0).tolist()
    assert c == pytest.approx([1.0, 2.0, 3.0], abs=0.3)
    assert calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    assert rep.files["asset.ply"][:4] == b"ply\n"
    # same seed, same image
    rep2 = SwiftBrushPlugin().run(PluginInputs(), opts)
    assert np.array_equal(rep2.images["image"], img)


def test_cli_run_without_weights_prints_the_download_hint(no_weights_here, tmp_path, capsys) -> None:
    from splatlab.app.plugin_cli import plugin_main

    rc = plugin_main(["run", "swiftbrush", "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr()
    text = err.out + err.err
    assert rc == 2
    assert "thuanz123/swiftbrush" in text and "huggingface-cli download" in text
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_student_saved_at_another_timestep_is_sampled_at_it(no_weights_here, tmp_path) -> None:
    """``save_student`` records the student's input timestep in ``swiftbrush.json``;
    ``load_student`` reads it back and the plugin samples at it; a broken record is refused,
    naming the file."""
    from splatlab.plugins.generate.plugin import SwiftBrushOptions, generate_image
    from splatlab.plugins.generate.swiftbrush import (
        SwiftBrushConfig,
        SwiftBrushTrainer,
        one_step_generate,
    )

    pipe = write_tiny_pipeline(tmp_path / "pipe", seed=3)
    comps = load_teacher(pipe)
    null = torch.zeros(1, 16, D)
    tr = SwiftBrushTrainer(comps.unet, comps.scheduler, torch.randn(2, 16, D), null, (4, 8, 8),
                           SwiftBrushConfig(batch_size=1, lora_rank=2, lora_alpha=4.0, student_timestep=700))
    out = tr.save_student(tmp_path / "student")
    assert json.loads((out / "swiftbrush.json").read_text())["student_timestep"] == 700
    st = load_student(out, teacher=pipe)
    assert st.student_timestep == 700
    assert load_student(pipe, teacher=pipe).student_timestep is None  # the paper's 999
    opts = SwiftBrushOptions(prompt="a red apple", student=str(out), teacher=str(pipe), seed=5)
    img, _ = generate_image(opts, "cpu")
    ids = st.tokenizer(["a red apple"], padding="max_length", max_length=st.tokenizer.model_max_length,
                       truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = st.text_encoder(ids)[0]
    by_t = {}
    for t in (700, None):
        x = one_step_generate(st.unet, st.scheduler, embeds, (4, 8, 8), torch.Generator().manual_seed(5), st.vae, t=t)
        by_t[t] = (x[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    assert np.array_equal(img, by_t[700])
    assert not np.array_equal(by_t[700], by_t[None])
    (out / "swiftbrush.json").write_text('{"student_timestep": "late"}')
    with pytest.raises(CheckpointError, match=r"swiftbrush\.json: student_timestep must be an integer"):
        load_student(out, teacher=pipe)
    (out / "swiftbrush.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"swiftbrush\.json is not a SwiftBrush student record"):
        load_student(out, teacher=pipe)
