"""splatlab's own .slsc format as a scene format: a golden bitstream pins the format (encoder
bytes and decoded values, as CompressAI's tests/expected), the transform convention of the
other writers, and pruning by significance over the given cameras."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from splatlab.scene.formats import load_scene_file, save_scene_file
from splatlab.scene.formats.slsc import decode_scene, encode_scene

EXPECTED = Path(__file__).parent / "expected"
GOLDEN = EXPECTED / "slsc_v1_q3.slsc"
GOLDEN_VALUES = EXPECTED / "slsc_v1_q3.npz"


def scene(n: int = 256) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    protos = torch.randn(8, 3, 3, generator=g) * 0.2
    return {
        "means": torch.rand(n, 3, generator=g) * 2 - 1,
        "scales": torch.rand(n, 3, generator=g) - 4.5,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g),
        "sh0": torch.rand(n, 1, 3, generator=g) - 0.5,
        "shN": protos[torch.randint(0, 8, (n,), generator=g)],
    }


def _encode() -> bytes:
    return encode_scene(scene(), 3, kmeans_iterations=5, seed=0)


def test_golden_bitstream(tmp_path: Path) -> None:
    data = _encode()
    if os.environ.get("SPLATLAB_REGENERATE_GOLDEN"):  # after an intended format change
        EXPECTED.mkdir(exist_ok=True)
        GOLDEN.write_bytes(data)
        d = decode_scene(data)
        np.savez(GOLDEN_VALUES, **{k: v.detach().numpy() for k, v in d.items()})
    golden = GOLDEN.read_bytes()
    assert golden[:4] == b"SLSC" and golden[4] == 1
    assert data == golden, "the .slsc encoder output changed: bump VERSION and regenerate"
    decoded = decode_scene(golden)
    values = np.load(GOLDEN_VALUES)
    assert sorted(values.files) == sorted(decoded.keys())
    for k in values.files:
        assert np.array_equal(decoded[k].detach().numpy(), values[k]), k
    assert decoded["means"].shape[0] == round(256 * 0.9)  # quality 3 prunes 10 %


def test_transform_convention_and_pruning_cameras(tmp_path: Path) -> None:
    from splatlab.rendering.random_scenes import random_scene

    r = random_scene(800, 48, 36, sh_degree=1, seed=3, coverage=3.0)
    p = {"means": r["means"], "scales": torch.log(r["scales"]), "quats": r["quats"],
         "opacities": torch.logit(r["opacities"]), "sh0": r["colors"][:, :1],
         "shN": r["colors"][:, 1:4]}
    c, s = np.cos(0.5), np.sin(0.5)
    T = np.array([[0.5 * c, -0.5 * s, 0, 0.2], [0.5 * s, 0.5 * c, 0, 0.0], [0, 0, 0.5, -0.3], [0, 0, 0, 1.0]])
    cams = [(r["viewmats"][i].numpy(), r["Ks"][i].numpy(), 48, 36) for i in range(len(r["viewmats"]))]
    path = save_scene_file(tmp_path / "s.slsc", p, transform=T, quality=2, cameras=cams)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.slsc"]  # atomic, no temp left
    back = load_scene_file(path, transform=T)  # normalised frame again
    assert back["means"].shape[0] == round(800 * 0.8)  # quality 2 prunes 20 %
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(p["means"].numpy()).query(back["means"].detach().numpy())
    assert dist.max() < 0.01
    # pruning followed the cameras: what the views see is kept (the render barely changes)
    from splatlab.rendering.splats import render_splats

    with torch.no_grad():
        a = render_splats(p, r["viewmats"], r["Ks"], 48, 36)[0].clamp(0, 1)
        b = render_splats(back, r["viewmats"], r["Ks"], 48, 36)[0].clamp(0, 1)
    mse = float((a - b).pow(2).mean())
    assert 10 * np.log10(1 / max(mse, 1e-12)) > 25.0
