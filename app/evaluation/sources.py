"""Synthetic image sets as arrays for the evaluation jobs.

A set's images are read from the stored originals (the sampler's PNGs or DICOMs, or an upload),
never from the blinded copies readers see: blinding rescales every image to 512 px, which
would change the pixels FID and nearest neighbours are measured on. Each image is brought to
the dataset's resolution with the same pad-and-Lanczos rule dataset preparation uses.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.imagesets.storage import original_path
from app.models import Image, ImageSet
from ml.data.images import load_image
from ml.data.resize import to_square


@dataclass(frozen=True)
class SetArrays:
    images: np.ndarray  # (N, C, R, R) float32 in [-1, 1]
    labels: list[str]  # the image's label ('' when the set has none)
    image_ids: list[int]


class SetUnusable(ValueError):
    """The set cannot be compared with this dataset (empty, unreadable or wrong labels)."""


def _channels_of(path: Path, channels: int) -> np.ndarray:
    """(C, H, W) in [0, 1]."""
    if channels == 1:
        return load_image(path, name_hint=path.name).pixels[None]
    with PILImage.open(io.BytesIO(path.read_bytes())) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return rgb.transpose(2, 0, 1)


def load_set(
    db: Session, image_set_id: int, resolution: int, channels: int, *, limit: int | None = None
) -> SetArrays:
    image_set = db.get(ImageSet, image_set_id)
    if image_set is None:
        raise SetUnusable(f"There is no image set {image_set_id}.")
    query = select(Image).where(Image.image_set_id == image_set_id).order_by(Image.id)
    if limit:
        query = query.limit(limit)
    rows = list(db.scalars(query))
    if not rows:
        raise SetUnusable(f"Image set {image_set.name!r} has no images.")
    images = np.empty((len(rows), channels, resolution, resolution), dtype=np.float32)
    for i, row in enumerate(rows):
        planes = _channels_of(original_path(row.key, row.source_format), channels)
        for c in range(channels):
            images[i, c] = to_square(planes[c], resolution, "pad")
    images = images * 2.0 - 1.0
    return SetArrays(images, [row.label or "" for row in rows], [row.id for row in rows])
