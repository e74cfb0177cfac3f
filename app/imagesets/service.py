"""Image sets: create one from an upload (all images or none), list, look up, summarise."""

from __future__ import annotations

import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.domain.not_found import NotFound
from app.imagesets.ingest import IngestEntry, IngestLimits, Upload, read_upload
from app.imagesets.storage import blinded_path, images_root, original_path
from app.models import Image, ImageSet, Origin

MAX_SET_NAME = 200
MAX_DESCRIPTION = 5000


class IngestError(Exception):
    """The upload was refused; `errors` lists every problem, each fit to show the uploader."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class ImageSetNotFound(NotFound):
    noun = "image set"


@dataclass(frozen=True)
class ImageSetSummary:
    total: int
    # (value, count) pairs, most common first; None stands for "not given".
    by_origin: list[tuple[str, int]]
    by_label: list[tuple[str | None, int]]
    by_source: list[tuple[str | None, int]]


def create_image_set(
    db: Session,
    *,
    owner_id: int,
    name: str,
    default_origin: Origin | None,
    upload_path_or_file: Upload,
    description: str = "",
    limits: IngestLimits | None = None,
) -> ImageSet:
    """Validate the whole upload, then store every image and row, or nothing at all.

    Files are staged under the images root (same file system, so the final move is a rename),
    moved into place only once the rows are flushed, and removed again if the commit fails.
    """
    name, description = name.strip(), description.strip()
    errors: list[str] = []
    if not name:
        errors.append("An image set needs a name.")
    elif len(name) > MAX_SET_NAME:
        errors.append(f"The name is longer than {MAX_SET_NAME} characters.")
    if len(description) > MAX_DESCRIPTION:
        errors.append(f"The description is longer than {MAX_DESCRIPTION} characters.")
    staging = images_root() / "tmp" / secrets.token_hex(8)
    staging.mkdir(parents=True)
    placed: list[Path] = []
    try:

        def stage(entry: IngestEntry, original: bytes, blinded: bytes) -> None:
            (staging / f"{entry.key}.original").write_bytes(original)
            (staging / f"{entry.key}.blinded").write_bytes(blinded)

        # A bad name does not stop the upload being checked: the researcher hears everything.
        report = read_upload(
            upload_path_or_file,
            default_origin=default_origin,
            limits=limits,
            on_image=None if errors else stage,
        )
        errors.extend(report.errors)
        if errors:
            raise IngestError(errors)
        image_set = ImageSet(name=name, description=description, owner_id=owner_id)
        db.add(image_set)
        db.flush()
        db.add_all(_image_row(image_set.id, entry) for entry in report.entries)
        # Constraint violations surface here, before a single file is in place.
        db.flush()
        for entry in report.entries:
            for staged, final in (
                (f"{entry.key}.original", original_path(entry.key, entry.source_format)),
                (f"{entry.key}.blinded", blinded_path(entry.key)),
            ):
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / staged, final)
                placed.append(final)
        db.commit()
    except BaseException:
        db.rollback()
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return image_set


def _image_row(image_set_id: int, entry: IngestEntry) -> Image:
    return Image(
        image_set_id=image_set_id,
        key=entry.key,
        origin=entry.origin,
        label=entry.label,
        source=entry.source,
        original_name=entry.name,
        sha256=entry.sha256,
        source_format=entry.source_format,
        width=entry.width,
        height=entry.height,
    )


def list_image_sets(db: Session, owner_id: int | None) -> list[ImageSet]:
    """Newest first; `owner_id=None` lists everyone's (for administrators)."""
    query = select(ImageSet).order_by(ImageSet.id.desc())
    if owner_id is not None:
        query = query.where(ImageSet.owner_id == owner_id)
    return list(db.scalars(query))


def origin_counts(db: Session, image_set_ids: list[int]) -> dict[int, dict[str, int]]:
    """{set id: {"real": n, "synthetic": m}} in one query, for list pages."""
    counts: dict[int, dict[str, int]] = {i: {o.value: 0 for o in Origin} for i in image_set_ids}
    if not image_set_ids:
        return counts
    query = (
        select(Image.image_set_id, Image.origin, func.count())
        .where(Image.image_set_id.in_(image_set_ids))
        .group_by(Image.image_set_id, Image.origin)
    )
    for set_id, origin, n in db.execute(query):
        counts[set_id][Origin(origin).value] = int(n)
    return counts


def get_image_set(db: Session, image_set_id: int, principal: Principal) -> ImageSet:
    image_set = db.get(ImageSet, image_set_id)
    if image_set is None or not principal.can_see(image_set):
        raise ImageSetNotFound(image_set_id)
    return image_set


def get_image(db: Session, image_set: ImageSet, image_id: int) -> Image:
    image = db.get(Image, image_id)
    if image is None or image.image_set_id != image_set.id:
        raise NotFound(image_id, f"There is no image {image_id} in image set {image_set.id}.")
    return image


def list_images(db: Session, image_set: ImageSet, *, offset: int, limit: int) -> list[Image]:
    query = (
        select(Image)
        .where(Image.image_set_id == image_set.id)
        .order_by(Image.id)
        .offset(offset)
        .limit(limit)
    )
    return list(db.scalars(query))


def set_summary(db: Session, image_set: ImageSet) -> ImageSetSummary:
    rows = db.execute(
        select(Image.origin, Image.label, Image.source, func.count())
        .where(Image.image_set_id == image_set.id)
        .group_by(Image.origin, Image.label, Image.source)
    ).all()
    by_origin: Counter[str] = Counter()
    by_label: Counter[str | None] = Counter()
    by_source: Counter[str | None] = Counter()
    for origin, label, source, n in rows:
        by_origin[Origin(origin).value] += n
        by_label[label] += n
        by_source[source] += n
    return ImageSetSummary(
        total=sum(by_origin.values()),
        by_origin=_ordered(by_origin),
        by_label=_ordered(by_label),
        by_source=_ordered(by_source),
    )


def _ordered(counter: Counter[Any]) -> list[tuple[Any, int]]:
    # Most common first, ties by name, "not given" (None) last: stable across page loads.
    return sorted(counter.items(), key=lambda kv: (kv[0] is None, -kv[1], str(kv[0])))
