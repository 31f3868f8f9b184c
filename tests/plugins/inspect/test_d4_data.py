"""D4 data: the procedural toy set's spectral signature, crops, and the shared photos (skipped
when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from splatlab.plugins.inspect.deepfake.data import (
    DATA_ROOT,
    load_photo,
    photo_paths,
    random_crops,
    toy_set,
)
from splatlab.plugins.inspect.deepfake.dct import dct2_numpy


def test_toy_set_synthetic_images_carry_an_upsampling_signature() -> None:
    real, fake = toy_set(6, 16, seed=0)
    assert real.shape == fake.shape == (6, 16, 16, 3) and real.dtype == np.uint8
    # pixel repetition: every 2 x 2 block is constant
    np.testing.assert_array_equal(fake[:, ::2, ::2], fake[:, 1::2, 1::2])

    # ... so the top half of the DCT spectrum is weaker than in the real images
    def high(x):
        return np.abs(dct2_numpy(x.transpose(0, 3, 1, 2) / 255.0))[..., 8:, 8:].mean()

    assert high(fake) < 0.5 * high(real)


def test_random_crops_skip_flat_regions() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 40:] = rng.integers(0, 255, (40, 40, 3))
    crops = random_crops(img, 16, 5, rng, min_std=0.04)
    assert crops.shape == (5, 16, 16, 3)
    assert all(c.std() / 255 >= 0.04 for c in crops)
    assert random_crops(img, 64, 3, rng).shape == (0, 64, 64, 3)  # larger than the image


@pytest.mark.data
def test_shared_photos_are_found_and_cropped() -> None:
    found = photo_paths()
    if not found:
        pytest.skip(f"no photos under {DATA_ROOT} (kodak / fox / sceaux_castle)")
    if "kodak" in found:
        assert len(found["kodak"]) == 24
        img = load_photo(found["kodak"][0], 2)
        assert img.shape in ((256, 384, 3), (384, 256, 3)) and img.dtype == np.uint8
        c = random_crops(img, 64, 4, np.random.default_rng(0))
        assert c.shape == (4, 64, 64, 3)
    assert photo_paths(DATA_ROOT / "nowhere") == {}
