"""The NVRC-style INR video codec: bitstream round trip in another process, corrupt files,
rate from bytes vs the entropy model, the temporal upsampling, the x264 / x265 anchors, the plugin."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.plugins.base import PluginInputs, SimpleCamera
from splatlab.plugins.compress import rd
from splatlab.plugins.compress.inr.model import Arch, upsample_all
from splatlab.plugins.compress.inr.video import (
    VideoOptions,
    decode_video,
    encode_video,
    sequence_psnr,
    upsample_video,
)
from splatlab.plugins.compress.inr.video_plugin import InrVideoCodec, InrVideoOptions, orbit_cameras

NEED_FFMPEG = "ffmpeg is not installed; install it: apt-get install ffmpeg"


def moving_pattern(t: int = 8, h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    frames = [
        np.stack([128 + 100 * np.sin((xx + 2 * k) / 5), 128 + 80 * np.cos(yy / 4 + k / 3),
                  np.full((h, w), 90.0)], -1)
        for k in range(t)
    ]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def encoded():
    video = moving_pattern()
    res = encode_video(video, VideoOptions(steps=150, lmbda=1e-3, t_log2=2, n_levels=4))
    return video, res


def test_encodes_a_moving_pattern_and_decodes_what_the_encoder_reports(encoded):
    video, res = encoded
    assert res.decoded.shape == video.shape
    # 150 steps on 8 frames of 24x32: measured 24.2 dB at 698 bytes (0.91 bpp)
    assert sequence_psnr(res.decoded, video) > 22.0
    assert np.array_equal(decode_video(res.data), res.decoded)


def test_rate_from_bytes_is_within_2_percent_of_the_entropy_estimate(encoded):
    _, res = encoded
    ratio = res.estimated_bits["total"] / (8 * len(res.data))
    assert 0.98 <= ratio <= 1.02, ratio


def test_a_file_decodes_bit_exactly_in_another_process(encoded, tmp_path):
    _, res = encoded
    f = tmp_path / "v.inrv"
    f.write_bytes(res.data)
    code = textwrap.dedent(f"""
        import hashlib, pathlib
        from splatlab.plugins.compress.inr.video import decode_video
        out = decode_video(pathlib.Path({str(f)!r}).read_bytes())
        print(hashlib.sha256(out.tobytes()).hexdigest())
    """)
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.strip() == hashlib.sha256(res.decoded.tobytes()).hexdigest()


def test_truncated_corrupted_and_foreign_files_give_clear_errors(encoded):
    _, res = encoded
    data = res.data
    with pytest.raises(DataError, match="clip.inrv.*truncated"):
        decode_video(data[: len(data) - 5], "clip.inrv")
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    with pytest.raises(DataError, match="clip.inrv.*checksum"):
        decode_video(bytes(flipped), "clip.inrv")
    with pytest.raises(DataError, match="clip.inrv.*not an INR video"):
        decode_video(b"iC" + data[2:], "clip.inrv")
    with pytest.raises(DataError, match="too short"):
        decode_video(b"iV\x01", "clip.inrv")


def test_with_one_slice_per_frame_the_planes_are_the_image_codecs():
    arch = Arch(height=12, width=20, n_levels=3)
    g = torch.Generator().manual_seed(0)
    levels = [torch.randint(-4, 5, (5, h, w), generator=g).double() for h, w in arch.grid_sizes()]
    got = upsample_video(levels, arch, 5, 0, torch.arange(5), fixed=True)
    for t in range(5):
        ref = upsample_all([lvl[t] for lvl in levels], arch, fixed=True)
        assert torch.equal(got[t : t + 1], ref)


def test_temporal_upsampling_interpolates_between_slices():
    arch = Arch(height=8, width=8, n_levels=1)
    # two slices (t_log2 = 2, 8 frames) of constant value 0 and 4
    levels = [torch.stack([torch.zeros(8, 8), torch.full((8, 8), 4.0)])]
    x = upsample_video(levels, arch, 8, 2, torch.arange(8))[:, 0, 0, 0]
    # two 2x steps of (3a + b) / 4: [0, 4] -> [0, 1, 3, 4] -> the values below (by hand)
    assert torch.equal(x, torch.tensor([0.0, 0.25, 0.75, 1.5, 2.5, 3.25, 3.75, 4.0]))


def test_rejects_bad_input():
    with pytest.raises(DataError, match=r"uint8 \[T, H, W, 3\]"):
        encode_video(np.zeros((4, 16, 16), np.uint8))
    with pytest.raises(DataError, match="outside"):
        encode_video(np.zeros((2, 4, 16, 3), np.uint8))


def test_orbit_keeps_the_pivot_centred():
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    cam = SimpleCamera(np.eye(4, dtype=np.float32), K.astype(np.float32), 64, 48)
    cams = orbit_cameras(cam, 5, 30.0, pivot_depth=3.0, max_side=32)
    pivot = np.array([0.0, 0.0, 3.0, 1.0])
    for c in cams:
        p = c.viewmat.astype(np.float64) @ pivot
        uv = (c.K @ p[:3])[:2] / p[2]
        assert np.allclose(uv, [16, 12], atol=1e-3) and abs(p[2] - 3.0) < 1e-4
        assert (c.width, c.height) == (32, 24)
    # the end views are 30 degrees apart
    r0, r1 = cams[0].viewmat[:3, :3], cams[-1].viewmat[:3, :3]
    ang = np.degrees(np.arccos((np.trace(r0 @ r1.T) - 1) / 2))
    assert abs(ang - 30.0) < 1e-3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason=NEED_FFMPEG)
def test_x264_and_x265_anchors_code_and_decode_the_frames():
    video = moving_pattern(16, 48, 64)
    for codec in ("x264", "x265"):
        hi, data, dec = rd.video_anchor_point(codec, video, 20)
        lo, _, _ = rd.video_anchor_point(codec, video, 44)
        assert dec.shape == video.shape and hi.num_bytes == len(data)
        assert hi.psnr > 33.0 and hi.num_bytes > lo.num_bytes and hi.psnr > lo.psnr + 5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason=NEED_FFMPEG)
def test_plugin_reads_a_video_file_and_reports_against_the_anchors(tmp_path: Path):
    video = moving_pattern(8, 24, 32)
    mp4 = tmp_path / "clip.mkv"
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "32x24",
         "-i", "-", "-c:v", "ffv1", str(mp4)], input=video.tobytes(), check=True)
    inputs = PluginInputs.from_path(mp4)
    rep = InrVideoCodec().run(inputs, InrVideoOptions(steps=40, frames=8, max_side=32))
    assert rep.metrics["frames"] == 8 and rep.metrics["bytes"] == len(rep.files["video.inrv"])
    assert rep.metrics["psnr_db"] > 15.0
    assert set(rep.tables["rd points"]["codec"]) == {"x264", "x265", "INR video (ours)"}
    assert np.array_equal(decode_video(rep.files["video.inrv"]).shape, (8, 24, 32, 3))


def test_plugin_on_a_scene_renders_an_orbit():
    from splatlab.plugins.base import make_scene_renderer
    from splatlab.rendering.random_scenes import random_scene

    sc = random_scene(400, 48, 32, sh_degree=0, seed=3)
    params = {
        "means": sc["means"], "quats": sc["quats"], "scales": sc["scales"].log(),
        "opacities": torch.logit(sc["opacities"]), "sh0": sc["colors"],
        "shN": torch.zeros(400, 0, 3),
    }
    cam = SimpleCamera(np.eye(4, dtype=np.float32), sc["Ks"][0].numpy(), 48, 32)
    inputs = PluginInputs(params=params, render=make_scene_renderer(params), camera=cam)
    rep = InrVideoCodec().run(inputs, InrVideoOptions(steps=30, frames=4, max_side=48, anchors=False))
    orig = rep.images["original (4 frames)"].astype(np.float64)
    first, last = orig[:, :48], orig[:, -48:]
    assert rep.metrics["frames"] == 4 and np.abs(first - last).mean() > 2.0  # the camera moved
    assert rep.metrics["bytes"] == len(rep.files["video.inrv"])
