"""The one Dataset every parser produces (nerfstudio transforms.json, COLMAP, Blender-synthetic,
photos -> SfM, the procedural demo).

Cameras follow ``splatlab.scene.cameras``: OpenCV world-to-camera ``viewmat`` [4, 4] and pinhole
``K`` [3, 3] of the image as it is loaded (after undistortion and ``downscale``). Images are loaded
lazily, one at a time (never all in memory unless cached by the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError


@dataclass
class Frame:
    """One posed image."""

    name: str  # stable identifier (file name relative to the dataset root)
    viewmat: np.ndarray  # [4, 4] float64, world-to-camera, OpenCV
    K: np.ndarray  # [3, 3] float64, intrinsics of the loaded (undistorted, downscaled) image
    width: int
    height: int
    image_path: Path | None = None  # file the pixels come from (after undistortion/downscale cache)
    mask_path: Path | None = None  # optional foreground mask (nonzero = keep)


@dataclass
class Dataset:
    """Posed images, optional SfM points, and the normalisation applied to world coordinates.

    ``transform`` maps ORIGINAL world coordinates to the normalised ones in which ``frames`` and
    ``points`` are expressed: x_norm = transform[:3, :3] @ x_orig + transform[:3, 3]
    (a similarity: rotation times ``scale``). Exports apply its inverse so files stay in the
    original coordinates.
    """

    root: Path
    frames: list[Frame]
    points: np.ndarray | None = None  # [P, 3] float32 SfM points (normalised coordinates)
    points_rgb: np.ndarray | None = None  # [P, 3] uint8
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4, 4]
    scale: float = 1.0  # isotropic scale inside ``transform``
    train_ids: list[int] = field(default_factory=list)
    test_ids: list[int] = field(default_factory=list)
    background: tuple[float, float, float] | None = None  # for RGBA data composited on a colour
    # Optional loader override (procedural scenes keep pixels in memory): index -> [H, W, 3] float32
    image_loader: Callable[[int], np.ndarray] | None = None
    meta: dict = field(default_factory=dict)  # format-specific extras (e.g. SfM statistics)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def viewmats(self) -> np.ndarray:
        """[C, 4, 4] float64"""
        return np.stack([f.viewmat for f in self.frames])

    @property
    def Ks(self) -> np.ndarray:
        """[C, 3, 3] float64"""
        return np.stack([f.K for f in self.frames])

    def load_image(self, i: int) -> np.ndarray:
        """RGB image i as float32 [H, W, 3] in [0, 1] (RGBA composited on ``background``)."""
        if self.image_loader is not None:
            return self.image_loader(i)
        from .images import read_rgb

        frame = self.frames[i]
        if frame.image_path is None:
            raise DataError(f"frame {frame.name!r} of {self.root} has no image file")
        return read_rgb(
            frame.image_path, background=self.background, expect_hw=(frame.height, frame.width)
        )

    def load_mask(self, i: int) -> np.ndarray | None:
        """Foreground mask of frame i as bool [H, W], or None."""
        frame = self.frames[i]
        if frame.mask_path is None:
            return None
        from .images import read_mask

        return read_mask(frame.mask_path, expect_hw=(frame.height, frame.width))

    def scene_extent(self) -> float:
        """Radius of the camera centres around their mean, times 1.1 (the 3DGS 'scene scale'
        used by densification thresholds)."""
        from ..cameras import camera_centers

        c = camera_centers(self.viewmats)
        return float(np.linalg.norm(c - c.mean(0), axis=1).max() * 1.1) or 1.0


def split_every_nth(n_frames: int, every: int = 8) -> tuple[list[int], list[int]]:
    """The 3DGS/Mip-NeRF 360 split: every ``every``-th view (0, 8, 16, ...) is a test view."""
    test = [i for i in range(n_frames) if i % every == 0] if n_frames > 1 else []
    train = [i for i in range(n_frames) if i not in set(test)]
    return train, test
