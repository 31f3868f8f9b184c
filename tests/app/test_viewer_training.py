"""attach_training_viewer on a real (short) training run."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
from viewer_util import free_port

from splatlab.app.viewer import attach_training_viewer
from splatlab.scene.synthetic import DemoConfig, make_demo_scene
from splatlab.training.trainer import TrainConfig, Trainer


def test_training_viewer_follows_pauses_and_resumes(tmp_path):
    ds = make_demo_scene(DemoConfig(n_views=8, test_every=4))
    trainer = Trainer(
        ds, TrainConfig(out=tmp_path / "run", steps=60, checkpoint_every=0, refine_start_iter=1000)
    )
    seen = []
    trainer.on_step = seen.append  # the viewer must keep calling the previous callback
    tv = attach_training_viewer(trainer, host="127.0.0.1", port=free_port())
    try:
        assert urllib.request.urlopen(f"http://127.0.0.1:{tv.port}/", timeout=5).status == 200
        tv.gui["refresh_s"].value = 0.5
        n0 = tv.viewer.source.version
        thread = threading.Thread(target=trainer.train)
        thread.start()
        deadline = time.monotonic() + 60
        while len(tv.history) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        trainer.control.pause()
        time.sleep(1.0)  # the step in flight finishes
        step_paused = trainer.step
        time.sleep(1.5)
        assert trainer.step == step_paused, "training must not advance while paused"
        trainer.control.resume()
        thread.join(timeout=120)
        assert not thread.is_alive()
        time.sleep(1.5)  # one more refresher cycle
        assert [s.step for s in seen] == [h[0] for h in tv.history] and seen[-1].step == 60
        assert tv.refreshes >= 1 and tv.viewer.source.version > n0
        x, y = tv.gui["plot"].data
        np.testing.assert_allclose(y, [h[1] for h in tv.history])
        # the viewer's snapshot is the trained scene
        snap = tv.viewer.source.snapshot()
        np.testing.assert_array_equal(
            snap["means"].numpy(), trainer.params["means"].detach().numpy()
        )
    finally:
        tv.stop()
    assert trainer.on_step == seen.append


def test_training_viewer_queries_the_live_feature_field(tmp_path):
    """``train --features ... --view``: the Query / Segment tabs act on the trainer's own
    decoder and teacher while it trains."""
    from splatlab.methods.feature3dgs.distill import (
        FeatureConfig,
        features_of,
        make_feature_trainer,
    )

    ds = make_demo_scene(DemoConfig(n_views=8, test_every=4, width=64, height=48))
    trainer = make_feature_trainer(
        ds,
        TrainConfig(
            out=tmp_path / "run",
            steps=40,
            checkpoint_every=0,
            refine_start_iter=1000,
            init_opacity=0.5,
        ),
        FeatureConfig(teacher="labels", dim=4, labels_dim=32, loss="cosine", lr_features=1e-2),
    )
    tv = attach_training_viewer(trainer, host="127.0.0.1", port=free_port())
    try:
        v = tv.viewer
        assert v.feature_field is not None and v.feature_field.decoder is features_of(trainer).decoder
        assert "query heatmap" in v.modes and "Query" in v.panels
        trainer.train()
        # a 40-step, 4-D field separates only some labels: query the one it separates best
        names = ds.meta["label_names"][1:]
        prompt = max(
            names, key=lambda n: int(v.feature_field.text_scores(trainer.params, n)[1].gt(0).sum())
        )
        v.panel("Query").handles["prompt"].value = prompt
        v.panel("Query").handles["threshold"].value = -1.0  # every Gaussian closer to it than to the others
        for cb in v.panel("Query").handles["select"]._impl.update_cb:
            cb(None)
        want = v.feature_field.select_text(trainer.params, prompt, -1.0)
        np.testing.assert_array_equal(v.selection(), want.numpy())
        assert 0 < want.sum() < len(want)
        with np.testing.assert_raises(RuntimeError):  # a live scene cannot be edited
            v.source.replace(v.source.snapshot())
    finally:
        tv.stop()
