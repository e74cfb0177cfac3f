"""Images as a study shows them: one geometry for every source, rendered once, served at one
byte length with a per-presentation dither.

Rendering (decode, square, resample) costs what the source costs: a 1024 px DICOM takes far
longer than a 96 px PNG. It therefore happens once, when the study is created, into
``display_path`` files of raw pixels; serving then does the same work for every image (load a
fixed-size array, dither it, write a stored PNG), so neither the bytes nor the response time
depend on where an image came from.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.blinding import encode_grey_png_stored, encode_rgb_png_stored
from app.domain.display_geometry import (
    DisplayGeometry,
    dither,
    lowest_native,
    presentation_seed,
    render,
)
from app.imagesets.storage import BLINDED_SIZE, blinded_path, display_path, original_path
from app.models import Image, Study, StudyItem
from app.studies.design import DisplayOptions, load_design

# Long enough for the prefetched next image to be reused, private so no shared cache keeps it.
IMAGE_CACHE = "private, max-age=600"
# The only headers an image response sets itself; identical for every image of every study.
SERVED_HEADERS = {"Cache-Control": IMAGE_CACHE}
SERVED_MEDIA_TYPE = "image/png"
# PNG colour type 2: ingest writes a colour image's blinded copy as RGB, a grey one as type 0.
_PNG_RGB = 2
_IHDR_COLOUR_TYPE_AT = 25


@dataclass(frozen=True)
class SourceResolution:
    """Native sizes of one image set's images of one origin, for the design form."""

    image_set_id: int
    origin: str
    count: int
    min_side: int  # the smallest min(w, h): the square a centre-crop keeps
    max_side: int
    min_size: tuple[int, int]
    max_size: tuple[int, int]


def source_resolutions(db: Session, image_set_ids: Iterable[int]) -> list[SourceResolution]:
    rows = db.execute(
        select(Image.image_set_id, Image.origin, Image.width, Image.height).where(
            Image.image_set_id.in_(list(image_set_ids))
        )
    ).all()
    groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for set_id, origin, width, height in rows:
        groups.setdefault((set_id, origin.value), []).append((width, height))
    out = []
    for (set_id, origin), sizes in sorted(groups.items()):
        by_side = sorted(sizes, key=lambda s: (min(s), max(s)))
        out.append(
            SourceResolution(
                set_id,
                origin,
                len(sizes),
                min(min(s) for s in sizes),
                max(min(s) for s in sizes),
                by_side[0],
                by_side[-1],
            )
        )
    return out


def geometry_for(
    options: DisplayOptions, sizes: Iterable[tuple[int, int]], *, colour: bool = False
) -> DisplayGeometry:
    """The study's geometry: its options, the lowest native side when resolution is matched
    and the images do not already share one, and whether it is shown in colour."""
    sizes = list(sizes)
    native = None
    if options.match_resolution:
        sides = {min(w, h) if options.aspect == "crop" else max(w, h) for w, h in sizes}
        if len(sides) > 1:
            native = lowest_native(sizes, options.aspect)
    return DisplayGeometry(size=options.size, aspect=options.aspect, native=native, colour=colour)


def sets_in_colour(db: Session, image_set_ids: Iterable[int]) -> bool:
    """Whether any image of these sets is colour, read from the colour type of the blinded
    copy ingest wrote (RGB exactly when the upload had colour).

    Decided per study, over whole sets rather than the images the selection drew, so that
    one PNG format (bit depth, colour type, byte length) holds for every image a reader is
    served, and a study of a colour set is colour whichever images were drawn. Grey images
    of a colour study are served with three equal channels: colour type alone then says
    nothing about the source."""
    keys = db.scalars(select(Image.key).where(Image.image_set_id.in_(list(image_set_ids))))
    for key in keys:
        try:
            with blinded_path(key).open("rb") as fh:
                head = fh.read(_IHDR_COLOUR_TYPE_AT + 1)
        except OSError:
            continue  # rendering reports the missing file, and the gate stays closed
        if len(head) > _IHDR_COLOUR_TYPE_AT and head[_IHDR_COLOUR_TYPE_AT] == _PNG_RGB:
            return True
    return False


def study_images(db: Session, study_id: int) -> list[Image]:
    return list(
        db.scalars(
            select(Image)
            .join(StudyItem, StudyItem.image_id == Image.id)
            .where(StudyItem.study_id == study_id)
            .order_by(Image.id)
        ).unique()
    )


def study_geometry(db: Session, study: Study) -> DisplayGeometry:
    """The stored geometry; studies from before geometries existed get the default rule."""
    stored = (study.design or {}).get("geometry")
    if stored:
        return DisplayGeometry.from_json(stored)
    options = load_design(study.design or {}).display
    return geometry_for(options, [(i.width, i.height) for i in study_images(db, study.id)])


def source_pixels(image: Image, *, colour: bool = False) -> NDArray[np.float32]:
    """The image as uploaded, decoded to float [0, 1]: grey (2-D), or for a colour study
    (3, h, w) with a grey source repeated in all three channels. A study restored from a
    backup without originals falls back to the 512 px blinded copy with its padding cut off
    again."""
    from ml.data.images import load_image, load_rgb_image

    original = original_path(image.key, image.source_format)
    if original.is_file():
        data = original.read_bytes()
        if colour:
            return load_rgb_image(data, name_hint=image.original_name)
        return load_image(data, name_hint=image.original_name).pixels
    with PILImage.open(io.BytesIO(blinded_path(image.key).read_bytes())) as im:
        im.load()
        if im.mode == "RGB" and not colour:  # a grey study shows luminance (BT.601)
            im = im.convert("L")
        elif colour and im.mode == "L":
            im = im.convert("RGB")
        arr = np.asarray(im, dtype=np.float32) / float(65535 if im.mode.startswith("I") else 255)
    if arr.ndim == 3:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    elif colour:  # a 16-bit grey copy: its precision kept, repeated
        arr = np.repeat(arr[None], 3, axis=0)
    # Undo app.domain.blinding's fit-and-pad using the native size recorded at ingest.
    scale = BLINDED_SIZE / max(image.width, image.height)
    new_w = min(BLINDED_SIZE, max(1, round(image.width * scale)))
    new_h = min(BLINDED_SIZE, max(1, round(image.height * scale)))
    top, left = (BLINDED_SIZE - new_h) // 2, (BLINDED_SIZE - new_w) // 2
    return arr[..., top : top + new_h, left : left + new_w]


def render_study(
    db: Session, study: Study, geometry: DisplayGeometry, *, only_missing: bool = False
) -> list[str]:
    """Write every study image's display pixels; returns the original names of images whose
    files are missing or undecodable (they cannot be served, and the gate stays closed)."""
    unrendered = []
    for image in study_images(db, study.id):
        path = display_path(study.id, image.key)
        if only_missing and path.is_file():
            continue
        try:
            pixels = render(source_pixels(image, colour=geometry.colour), geometry)
        except (OSError, ValueError):
            unrendered.append(image.original_name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed: a reader never loads a half-written file.
        partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        with partial.open("wb") as fh:
            np.save(fh, pixels, allow_pickle=False)
        os.replace(partial, path)
    return unrendered


def display_pixels(db: Session, study: Study, key: str) -> NDArray[np.uint8]:
    """The study's rendering of one image; renders what is missing (a study from before
    display geometries, or restored from a backup) all at once, so the cost is paid on one
    request rather than on each source's first showing."""
    path = display_path(study.id, key)
    if not path.is_file():
        render_study(db, study, study_geometry(db, study), only_missing=True)
    return np.load(path, allow_pickle=False)


def served_png(pixels: NDArray[np.uint8], presentation: str) -> bytes:
    """The bytes a reader receives for one presentation: dithered with the presentation's own
    seed, so a repeat is not byte-identical to its first showing, and stored so the length is
    the same for every image of the study (grey, or RGB for every image of a colour study)."""
    dithered = dither(pixels, presentation_seed(presentation))
    return (
        encode_rgb_png_stored(dithered) if dithered.ndim == 3 else encode_grey_png_stored(dithered)
    )
