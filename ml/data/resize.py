"""Bring a grey [0, 1] image to a square of a given side, the shape every network here expects.

Two documented rules, because the choice changes what a model sees:

* "pad" keeps the whole image: it is scaled so its long side equals `size`, then letterboxed
  with black (0.0), centred; when the margin is odd the extra pixel goes bottom / right.
  Nothing of the anatomy is lost, at the cost of black bands a GAN must learn to draw.
* "crop" cuts the centred square of the short side first (odd surplus: the extra pixel is cut
  from the bottom / right), then scales it. No bands, but the edges of the long side are lost.

Scaling is Lanczos on a 32-bit float ("F" mode) Pillow image, so downsampling is
anti-aliased and no precision is lost to 8-bit rounding. Lanczos rings (overshoots) at sharp
edges, so the result is clipped back to [0, 1].
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

ResizeRule = Literal["pad", "crop"]
RULES: tuple[ResizeRule, ...] = ("pad", "crop")

__all__ = ["RULES", "ResizeRule", "to_square"]


def to_square(
    pixels: NDArray[np.floating], size: int, rule: ResizeRule = "pad"
) -> NDArray[np.float32]:
    """Return a float32 (size, size) image in [0, 1]; see the module docstring for the rules."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not np.isfinite(arr).all():
        # Lanczos would smear one NaN over its whole kernel footprint.
        raise ValueError("image contains NaN or infinite values")
    height, width = arr.shape
    if rule == "crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return np.clip(_resize(arr[top : top + side, left : left + side], size, size), 0.0, 1.0)
    # Resize first, then pad: padding first would let Lanczos blur black into the border.
    scale = size / max(height, width)
    new_h = min(size, max(1, round(height * scale)))
    new_w = min(size, max(1, round(width * scale)))
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = _resize(arr, new_w, new_h)
    return np.clip(out, 0.0, 1.0, out=out)


def _resize(arr: NDArray[np.float32], width: int, height: int) -> NDArray[np.float32]:
    """`arr` at (height, width): `arr` itself when it already is, else a read-only array.
    Callers copy it into a new array (clip, pad), so copying here too would be wasted."""
    if arr.shape == (height, width):
        return arr
    # A 2-D float32 array becomes an "F" image by itself; passing mode= is deprecated in Pillow 11.
    image = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    if image.mode != "F":
        raise RuntimeError(f"expected a 32-bit float Pillow image, got mode {image.mode}")
    resized = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32)
