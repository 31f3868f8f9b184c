"""The texture anomaly data set: masks mark exactly the changed pixels, splits do not overlap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splatlab.errors import DataError
from splatlab.plugins.inspect.anomaly.data import (
    DEFECTS_HELD_OUT,
    DEFECTS_SEEN,
    add_defect,
    make_texture_set,
    perlin_noise,
    texture,
)


@pytest.mark.parametrize("kind", DEFECTS_SEEN + DEFECTS_HELD_OUT)
def test_defect_changes_only_masked_pixels(kind: str) -> None:
    rng = np.random.default_rng(3)
    img = texture("brick")[:96, :96].copy()
    for _ in range(5):
        out, mask = add_defect(img, kind, rng, "brick")
        changed = np.abs(out - img).max(-1) > 1e-6
        assert not (changed & ~mask).any()  # nothing outside the mask changed
        assert changed[mask].mean() > 0.5  # and most of the mask did
        assert 0.001 < mask.mean() < 0.2


def test_texture_set_shapes_labels_and_determinism() -> None:
    a = make_texture_set("grass", n_train=5, n_test_good=3, n_per_defect=2, size=64, seed=1)
    b = make_texture_set("grass", n_train=5, n_test_good=3, n_per_defect=2, size=64, seed=1)
    assert a.train.shape == (5, 64, 64, 3) and a.test.shape == (11, 64, 64, 3)
    assert a.labels.tolist() == [0] * 3 + [1] * 8
    assert a.defects[:3] == ["good"] * 3 and a.defects[3:5] == ["cut-paste"] * 2
    assert not a.masks[:3].any() and all(m.any() for m in a.masks[3:])
    np.testing.assert_array_equal(a.test, b.test)
    assert a.train.min() >= 0 and a.train.max() <= 1
    # training crops come from the left 60 % of the texture, test crops from the right 40 %:
    # locate every crop in the texture by template matching
    tex = np.ascontiguousarray(texture("grass")[..., 0])
    split = int(0.6 * tex.shape[1])
    for crop, test in [(c, False) for c in a.train] + [(c, True) for c in a.test[:3]]:
        r = cv2.matchTemplate(tex, np.ascontiguousarray(crop[..., 0]), cv2.TM_SQDIFF)
        best, _, (x, _), _ = cv2.minMaxLoc(r)
        assert best < 1e-2  # found (a different place differs by >> 1)
        assert (x >= split) if test else (x + 64 <= split)
    with pytest.raises(DataError, match="unknown texture"):
        make_texture_set("marble")


def test_perlin_noise_is_smooth_and_bounded() -> None:
    n = perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    assert np.abs(n).max() <= 1.5
    assert np.abs(np.diff(n, axis=0)).max() < 0.2  # smooth at the pixel scale
    assert n.std() > 0.1
