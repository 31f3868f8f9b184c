"""Writes lseg_official_layout.json: the state_dict keys and shapes of the OFFICIAL LSeg network.

How it was produced (run once, by hand, not by the tests): the official sources
isl-org/lang-seg@bb00b21 (modules/models/lseg_net.py, lseg_blocks.py, lseg_vit.py) and
openai/CLIP@d05afc4 (clip/model.py) are extracted from git mirrors into a temporary folder and
imported unchanged. The only substitutions are for side effects that need a network or a GPU:
``clip.load("ViT-B/32")`` builds OpenAI's own ``clip.model.CLIP`` with the ViT-B/32
hyper-parameters that ``clip.model.build_model`` derives from the released weights (randomly
initialised), ``clip.tokenize`` returns zeros, and ``pandas`` (imported, unused) is an empty
module file; timm.create_model is called with pretrained=False (the ImageNet weights would be
overwritten by the checkpoint anyway). LSegNet is built exactly as LSegModule does for demo_e200.ckpt (backbone
clip_vitl16_384, features 256, arch_option 0, block_depth 0, activation lrelu) on the meta
device, and its keys get the Lightning module's ``net.`` prefix.

Usage: python make_lseg_layout.py <lang-seg git dir> <CLIP git dir>
"""

import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch


def extract(git_dir: str, rev: str, path: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(subprocess.check_output(["git", "--git-dir", git_dir, "show", f"{rev}:{path}"]))


def main() -> None:
    lang_seg, clip_dir = sys.argv[1], sys.argv[2]
    tmp = Path(tempfile.mkdtemp())
    for f in ("lseg_net.py", "lseg_blocks.py", "lseg_vit.py"):
        extract(lang_seg, "bb00b21", f"modules/models/{f}", tmp / "lsegpkg" / f)
    (tmp / "lsegpkg" / "__init__.py").write_text("")
    extract(clip_dir, "d05afc4", "clip/model.py", tmp / "openai_clip_model.py")
    sys.path.insert(0, str(tmp))
    import openai_clip_model

    def load(name, device="cpu", jit=False):
        assert name == "ViT-B/32"
        return openai_clip_model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12), None

    sys.modules["clip"] = types.SimpleNamespace(
        load=load, tokenize=lambda labels: torch.zeros(len(labels), 77, dtype=torch.long)
    )
    (tmp / "pandas.py").write_text("")  # imported by lseg_net.py, unused
    import timm

    create = timm.create_model
    timm.create_model = lambda name, pretrained=False, **kw: create(
        name, pretrained=False, **kw
    )  # no download
    from lsegpkg.lseg_net import LSegNet

    with torch.device("meta"):
        net = LSegNet(
            labels=["other"],
            backbone="clip_vitl16_384",
            features=256,
            crop_size=480,
            arch_option=0,
            block_depth=0,
            activation="lrelu",
        )
    layout = {f"net.{k}": list(v.shape) for k, v in net.state_dict().items()}
    out = Path(__file__).with_name("lseg_official_layout.json")
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in layout.items()]
    out.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(layout)} keys -> {out}")


if __name__ == "__main__":
    main()
