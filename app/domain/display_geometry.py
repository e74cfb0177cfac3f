"""One display geometry for every image of a study, real or synthetic.

A study shows every image as a ``size`` x ``size`` 8-bit square, grey or, in a colour study,
RGB (``colour``: every image of the study, a grey one with three equal channels, so the PNG
format is the same for all). The aspect rule is the
same for every source: ``crop`` (the default) keeps the centred square of side min(w, h), so no
image ever carries a border the geometry added; ``pad`` centres the whole image on black,
which lets a non-square source show black bands (the leakage gate reports that as the
"border" channel). Where sources differ in native resolution, every square can first be
brought to the study's lowest native side (``native``), so every image reaches the screen
through the same up-sampling and the sharpness of resampling is not a tell.

Repeats must not be recognisable by their bytes: every presentation is dithered with its own
seed, +-1 grey level on ``DITHER_SHARE`` of the pixels (a level at 0 or 255 moves inward); in
colour the three channels of a chosen pixel move together, so a grey image stays grey.
The largest change of any pixel is 1 level; the mean squared error is DITHER_SHARE, so
the PSNR of a presentation against the undithered image is 10 log10(255^2 / DITHER_SHARE),
68.1 dB: far below anything a display or an eye resolves.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

AspectRule = Literal["crop", "pad"]
DEFAULT_DISPLAY_SIZE = 512
MIN_DISPLAY_SIZE, MAX_DISPLAY_SIZE = 64, 1024
DITHER_SHARE = 0.01
DITHER_MAX_CHANGE = 1
DITHER_PSNR_DB = 10 * math.log10(255**2 / DITHER_SHARE)
# Edge lines whose values span at most this many grey levels read as a flat band (padding plus
# dither, or a collimator edge); content rows of an X-ray vary far more.
FLAT_LINE_RANGE = 2


@dataclass(frozen=True)
class DisplayGeometry:
    size: int = DEFAULT_DISPLAY_SIZE
    aspect: AspectRule = "crop"
    # Side every square is brought to before the final resampling; None keeps native sizes.
    native: int | None = None
    # Every image served as RGB: set when any image set of the study holds colour.
    colour: bool = False

    def __post_init__(self) -> None:
        if not MIN_DISPLAY_SIZE <= self.size <= MAX_DISPLAY_SIZE:
            raise ValueError(
                f"display size must be {MIN_DISPLAY_SIZE}-{MAX_DISPLAY_SIZE}, got {self.size}"
            )
        if self.aspect not in ("crop", "pad"):
            raise ValueError(f"aspect must be 'crop' or 'pad', got {self.aspect!r}")
        if self.native is not None and self.native < 1:
            raise ValueError(f"native side must be >= 1, got {self.native}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # A grey study stores (and its audit records) exactly what it stored before colour.
        if not self.colour:
            del data["colour"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DisplayGeometry:
        data = data or {}
        return cls(
            size=int(data.get("size", DEFAULT_DISPLAY_SIZE)),
            aspect=data.get("aspect", "crop"),
            native=int(data["native"]) if data.get("native") else None,
            colour=bool(data.get("colour", False)),
        )


def square_side(width: int, height: int, aspect: AspectRule) -> int:
    """Side of the square an image of this size becomes under the aspect rule, before any
    resampling: what "native resolution" means for a study."""
    return min(width, height) if aspect == "crop" else max(width, height)


def lowest_native(sizes: Iterable[tuple[int, int]], aspect: AspectRule) -> int | None:
    """The smallest native square side over (width, height) pairs; None for no images."""
    sides = [square_side(w, h, aspect) for w, h in sizes]
    return min(sides) if sides else None


def render(pixels: NDArray[np.floating], geometry: DisplayGeometry) -> NDArray[np.uint8]:
    """A float [0, 1] image as the study shows it: squared by the aspect rule, brought to the
    native side when the study matches resolution, resampled to the display size.

    Grey study: a 2-D image in, ``(size, size)`` out. Colour study: a ``(3, h, w)`` or a 2-D
    image in (grey repeated in all three channels), ``(size, size, 3)`` out, each channel
    through the same geometry."""
    arr = np.asarray(pixels, dtype=np.float32)
    channels = arr[None] if arr.ndim == 2 else arr
    if geometry.colour and channels.ndim == 3 and channels.shape[0] == 1:
        channels = np.repeat(channels, 3, axis=0)
    expected = 3 if geometry.colour else 1
    shape_ok = channels.ndim == 3 and channels.shape[0] == expected and 0 not in channels.shape
    if not shape_ok or (not geometry.colour and arr.ndim != 2):
        kind = "(3, h, w) colour or 2-D grey" if geometry.colour else "2-D grey"
        raise ValueError(f"expected a non-empty {kind} image, got shape {arr.shape}")
    if not np.isfinite(channels).all():
        raise ValueError("image contains NaN or infinite values")
    out = np.stack([_render_plane(plane, geometry) for plane in channels], axis=-1)
    return out if geometry.colour else out[..., 0]


def _render_plane(plane: NDArray[np.float32], geometry: DisplayGeometry) -> NDArray[np.uint8]:
    arr = np.clip(plane, 0.0, 1.0)
    square = _centre_crop(arr) if geometry.aspect == "crop" else _centre_pad(arr)
    if geometry.native is not None and geometry.native < square.shape[0]:
        square = _resize(square, geometry.native)
    square = _resize(square, geometry.size)
    return np.rint(square.astype(np.float64) * 255).astype(np.uint8)


def _centre_crop(arr: NDArray[np.float32]) -> NDArray[np.float32]:
    height, width = arr.shape
    side = min(height, width)
    # An odd leftover pixel is cut from the bottom / right, as padding puts it there.
    top, left = (height - side) // 2, (width - side) // 2
    return arr[top : top + side, left : left + side]


def _centre_pad(arr: NDArray[np.float32]) -> NDArray[np.float32]:
    height, width = arr.shape
    side = max(height, width)
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    out[top : top + height, left : left + width] = arr
    return out


def _resize(square: NDArray[np.float32], side: int) -> NDArray[np.float32]:
    if square.shape == (side, side):
        return square
    # Float ("F" mode) Lanczos: one quantisation at the end; Pillow widens the kernel when
    # shrinking (anti-aliasing). Lanczos overshoots at edges, hence the clip.
    resized = Image.fromarray(square).resize((side, side), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def presentation_seed(token: str) -> int:
    """A 64-bit seed from a presentation's opaque id: the same presentation always gets the
    same dither (a reload is byte-identical), two presentations practically never do."""
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")


def dither(pixels: NDArray[np.uint8], seed: int, share: float = DITHER_SHARE) -> NDArray[np.uint8]:
    """+-1 level on ``share`` of the pixels, chosen and signed by ``seed``; an (h, w, 3) image's
    chosen pixels move in all three channels by the same step."""
    arr = np.asarray(pixels)
    # One row per pixel: a grey image draws exactly the numbers it drew before colour existed.
    flat = np.array(arr, dtype=np.int16).reshape(arr.shape[0] * arr.shape[1], -1)
    rng = np.random.default_rng(seed)
    count = max(1, round(share * flat.shape[0]))
    where = rng.choice(flat.shape[0], size=count, replace=False)
    step = rng.choice(np.array([-1, 1], dtype=np.int16), size=count)
    moved = flat[where] + step[:, None]
    # At the ends of the range the step turns inward, so every chosen pixel changes by 1.
    moved[moved < 0] = 1
    moved[moved > 255] = 254
    flat[where] = moved
    return flat.reshape(arr.shape).astype(np.uint8)


def flat_border_lines(pixels: NDArray[np.uint8], tolerance: int = FLAT_LINE_RANGE) -> int:
    """Rows and columns, counted inward from each of the four edges, whose values span no
    more than ``tolerance`` grey levels: the bands padding leaves, as a reader sees them."""
    arr = np.asarray(pixels, dtype=np.int16)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    row_flat = (arr.max(axis=1) - arr.min(axis=1)) <= tolerance
    col_flat = (arr.max(axis=0) - arr.min(axis=0)) <= tolerance
    return sum(_run_length(line) for line in (row_flat, row_flat[::-1], col_flat, col_flat[::-1]))


def _run_length(flags: NDArray[np.bool_]) -> int:
    not_flat = np.flatnonzero(~flags)
    return int(not_flat[0]) if not_flat.size else len(flags)
