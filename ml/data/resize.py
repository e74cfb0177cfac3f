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

__all__ = ["RULES", "ResizeRule", "square_image", "to_square"]


def to_square(
    pixels: NDArray[np.floating], size: int, rule: ResizeRule = "pad"
) -> NDArray[np.float32]:
    """Return a float32 (size, size) image in [0, 1]; see the module docstring for the rules."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected a non-empty 2-D grey image, got shape {arr.shape}")
    _check(size, rule)
    if not np.isfinite(arr).all():
        # Lanczos would smear one NaN over its whole kernel footprint.
        raise ValueError("image contains NaN or infinite values")
    height, width = arr.shape
    if rule == "crop":
        top, left, side = _crop_box(height, width)
        return np.clip(_resize(arr[top : top + side, left : left + side], size, size), 0.0, 1.0)
    # Resize first, then pad: padding first would let Lanczos blur black into the border.
    new_h, new_w = _fit(height, width, size)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = _resize(arr, new_w, new_h)
    return np.clip(out, 0.0, 1.0, out=out)


def square_image(image: Image.Image, size: int, rule: ResizeRule = "pad") -> NDArray[np.float32]:
    """`to_square` of a 32-bit float ("F") Pillow image, equal to it bit for bit.

    For a decoder that already holds a Pillow image (`ml.data.images.load_grey_image`): going
    through numpy and back would copy the full-size image twice for nothing. The caller
    vouches that every value is finite (NaN and infinity are not looked for here).
    """
    if image.mode != "F":
        raise ValueError(f'expected a 32-bit float ("F") image, got mode {image.mode}')
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"expected a non-empty image, got size {image.size}")
    _check(size, rule)
    if rule == "crop":
        top, left, side = _crop_box(height, width)
        if (side, side) != (height, width):
            image = image.crop((left, top, left + side, top + side))
        out = np.array(_pil_resize(image, size, size), dtype=np.float32)
        return np.clip(out, 0.0, 1.0, out=out)
    new_h, new_w = _fit(height, width, size)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.asarray(_pil_resize(image, new_w, new_h))
    return np.clip(out, 0.0, 1.0, out=out)


def _check(size: int, rule: str) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _crop_box(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the centred square; an odd surplus is cut from the bottom / right."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def _fit(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) scaled so the long side is `size`, neither below 1 nor above `size`."""
    scale = size / max(height, width)
    return min(size, max(1, round(height * scale))), min(size, max(1, round(width * scale)))


def _pil_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample=Image.Resampling.LANCZOS)


def _resize(arr: NDArray[np.float32], width: int, height: int) -> NDArray[np.float32]:
    """`arr` at (height, width): `arr` itself when it already is, else a read-only array.
    Callers copy it into a new array (clip, pad), so copying here too would be wasted."""
    if arr.shape == (height, width):
        return arr
    # A 2-D float32 array becomes an "F" image by itself; passing mode= is deprecated in Pillow 11.
    image = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    if image.mode != "F":
        raise RuntimeError(f"expected a 32-bit float Pillow image, got mode {image.mode}")
    return np.asarray(_pil_resize(image, width, height), dtype=np.float32)
