"""Whether an import keeps colour: the `colour` option (auto, grey, rgb) and the test `auto` uses.

Many grey films are saved as RGB files (a JPEG from a PACS export, a screenshot), so the file's
mode says little: `auto` looks at the pixels of a few files spread over the dataset, at a
reduced size, and calls the dataset colour when any of them has pixels whose channels differ
by more than compression noise. One colour image is enough: a dataset is stored with one
channel count, and dropping a colour image's chroma loses what a dermoscopy set is about.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

COLOUR_MODES = ("auto", "grey", "rgb")
# JPEG's chroma subsampling and rounding move a grey pixel's channels apart by a few codes.
CHROMA_CODES = 12
# Share of pixels that must show chroma: a coloured annotation mark or logo on a grey film
# stays under it.
CHROMA_SHARE = 0.02
SAMPLE_FILES = 16
_PROBE_SIDE = 64

__all__ = ["COLOUR_MODES", "has_colour", "image_has_colour", "resolve_colour", "sample_paths"]


def has_colour(rgb: NDArray[np.integer] | NDArray[np.floating], scale: float = 255.0) -> bool:
    """Whether an (h, w, 3) image, in codes of `scale`, holds colour beyond compression noise."""
    arr = np.asarray(rgb, dtype=np.float32) * (255.0 / scale)
    if arr.ndim != 3 or arr.shape[-1] < 3 or arr.size == 0:
        return False
    spread = arr[..., :3].max(axis=-1) - arr[..., :3].min(axis=-1)
    return float(np.mean(spread > CHROMA_CODES)) > CHROMA_SHARE


def image_has_colour(data: bytes) -> bool:
    """Whether a PNG or JPEG file's pixels are colour; False for anything else (DICOM, not an
    image): those are decoded as grey."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("PNG", "JPEG") or im.mode in ("1", "L", "LA", "I", "F"):
                return False
            if im.mode.startswith("I;16"):
                return False
            im.draft("RGB", (_PROBE_SIDE, _PROBE_SIDE))  # JPEG: decode at 1/2..1/8 scale
            im.thumbnail((_PROBE_SIDE, _PROBE_SIDE), Image.Resampling.NEAREST)
            return has_colour(np.asarray(im.convert("RGB")))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def sample_paths(paths: Sequence[Path | None], n: int = SAMPLE_FILES) -> list[Path]:
    """Up to `n` paths spread evenly over `paths` (datasets are often sorted by class)."""
    real = [p for p in paths if p is not None]
    if len(real) <= n:
        return real
    picks = np.linspace(0, len(real) - 1, n).round().astype(int)
    return [real[i] for i in sorted(set(picks.tolist()))]


def resolve_colour(mode: str, paths: Sequence[Path | None]) -> bool:
    """True when an import in `mode` stores RGB: always for "rgb", never for "grey", and for
    "auto" when a sample of the files is colour (`image_has_colour`)."""
    if mode not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {COLOUR_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "rgb"
    for path in sample_paths(paths):
        try:
            if image_has_colour(path.read_bytes()):
                return True
        except OSError:
            continue  # the import reports the unreadable file itself
    return False
