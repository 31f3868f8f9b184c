"""The classification task of the ICM family: object-aimed demo views, the classifier, accuracy,
and the end-to-end ICM loss and evaluation with one label per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatlab.errors import DataError
from splatlab.plugins.compress.icm.arr import ARR
from splatlab.plugins.compress.icm.codec import CodecConfig, MeanScaleHyperprior
from splatlab.plugins.compress.icm.task import (
    N_OBJECTS,
    OBJECT_LABELS,
    ClassNet,
    ViewSet,
    accuracy,
    demo_object_views,
)
from splatlab.plugins.compress.icm.train import (
    evaluate,
    image_batches,
    task_score,
    train_classifier,
    train_codec,
)


@pytest.fixture(scope="module")
def views() -> ViewSet:
    return demo_object_views("train", 64, per_class=6)


def test_object_views_show_the_labelled_object_at_the_centre(views: ViewSet) -> None:
    from splatlab.scene.synthetic import LABEL_NAMES

    assert views.images.shape == (6 * N_OBJECTS, 64, 64, 3) and views.images.dtype == np.uint8
    assert np.bincount(views.labels, minlength=N_OBJECTS).tolist() == [6] * N_OBJECTS
    assert [LABEL_NAMES[k] for k in OBJECT_LABELS] == [
        "red cube", "green cylinder", "striped ball", "chrome ball", "glossy blue ball"]
    # the centre of a red-cube view is red, of a green-cylinder view green, of a blue-ball view blue
    centre = views.images[:, 24:40, 24:40].reshape(len(views.images), -1, 3).astype(float)
    med = np.median(centre, axis=1)
    for cls, channel in ((0, 0), (1, 1), (4, 2)):
        m = med[views.labels == cls]
        assert np.all(m[:, channel] > m.max(1) - 1e-9), (cls, m)
    again = demo_object_views("train", 64, per_class=6)
    assert np.array_equal(again.images, views.images)  # deterministic
    other = demo_object_views("test", 64, per_class=6)
    assert not np.array_equal(other.images, views.images)  # another seed, other cameras
    with pytest.raises(DataError, match="split"):
        demo_object_views("holdout", 64)


def test_accuracy_and_classifier_shapes() -> None:
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == pytest.approx(0.75)
    with pytest.raises(DataError, match="differ"):
        accuracy(np.array([0, 1]), np.array([0, 1, 2]))
    net = ClassNet(N_OBJECTS, 4)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, N_OBJECTS)
    assert net(torch.rand(1, 3, 128, 96)).shape == (1, N_OBJECTS)  # size-agnostic (pooling)


def test_image_batches_crop_flip_and_keep_labels(views: ViewSet) -> None:
    x, lab = next(image_batches(views.images, views.labels, 64, 32, seed=1))
    assert x.shape == (32, 3, 64, 64) and lab.dtype == torch.int64
    # whole-image crops: every sample is a view or its mirror image, with that view's label
    imgs = torch.from_numpy(views.images).permute(0, 3, 1, 2).float() / 255
    for xi, li in zip(x, lab):
        d = torch.stack([(imgs - xi).abs().amax((1, 2, 3)),
                         (imgs.flip(-1) - xi).abs().amax((1, 2, 3))]).amin(0)
        j = int(d.argmin())
        assert float(d[j]) == 0.0 and int(views.labels[j]) == int(li)
    with pytest.raises(DataError, match="one label per image"):
        next(image_batches(views.images, np.zeros((3, 64, 64), np.int64), 64, 2))


def test_classifier_learns_the_objects_and_the_icm_loss_runs(views: ViewSet) -> None:
    net = train_classifier(views, steps=120, batch=10, size=64, width=8)
    acc = task_score(net, views)
    assert acc >= 0.8, acc  # 5 classes: chance is 0.2
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    torch.manual_seed(0)
    codec, arr = MeanScaleHyperprior(CodecConfig(8, 8)), ARR(4, 4)
    arr.init_palette(views.images)
    stats = train_codec(codec, image_batches(views.images, views.labels, 64, 4), 2,
                        mse_weight=0.0, task_net=net, task_weight=1.0, arr=arr)
    assert np.isfinite(stats["loss"]) and stats["ce"] > 0
    ev = evaluate(codec, views, net, arr, with_ms_ssim=False)
    assert np.isnan(ev.miou) and 0.0 <= ev.accuracy <= 1.0
    assert ev.bpp == pytest.approx(np.mean([8 * len(b) / 64**2 for b in ev.bitstreams]))
