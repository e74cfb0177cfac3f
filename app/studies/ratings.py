"""A study's answers as plain records: statistics ratings, export rows, image references.

Both study kinds end up in the same shapes, so the results page, the exports and the CLI never
ask which kind they are looking at. Readers appear under their pseudonym and images under a
per-study label (``img{StudyItem.id}``), never the storage key or the person's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.ratings import Rating
from app.models import (
    Answer,
    ExternalRating,
    Image,
    ImageSet,
    Origin,
    ScheduleEntry,
    Study,
    StudyItem,
    StudyKind,
    StudyReader,
)

# Column order of the long CSV export; answer_rows() yields dicts with exactly these keys.
ANSWER_COLUMNS = (
    "reader",
    "image",
    "truth",
    "source_set",
    "label",
    "source",
    "answer",
    "confidence",
    "reason",
    "second_answer",
    "shown_at",
    "answered_at",
    "duration_ms",
    "position",
    "repeat",
    "practice",
    # The researcher's reason to open the study although its blinding audit found a leak;
    # on every row, so no answer travels without it.
    "blinding_override",
)


@dataclass(frozen=True)
class ImageRef:
    """Where the researcher-only thumbnail of a study image lives."""

    label: str
    study_item_id: int
    image_set_id: int
    image_id: int
    original_name: str
    source: str | None


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> list[Any]:
    """Sort key that puts img2 before img10, the order a person expects."""
    # isdecimal, not isdigit: "²" is a digit int() refuses, and a reader may be called "R1²".
    return [int(part) if part.isdecimal() else part for part in _DIGITS.split(text)]


def image_label(item_id: int) -> str:
    # The item id is per study and says nothing about the file, unlike Image.key or its name.
    return f"img{item_id}"


def pseudonym(reader: StudyReader) -> str:
    return reader.pseudonym or f"R{reader.id}"


def _truth(origin: Origin) -> str:
    return "fake" if origin is Origin.synthetic else "real"


def _reading_query(study: Study, *, include_practice: bool) -> Any:
    query = (
        select(Answer, ScheduleEntry, StudyItem, Image, ImageSet, StudyReader)
        .join(ScheduleEntry, Answer.schedule_entry_id == ScheduleEntry.id)
        .join(StudyItem, ScheduleEntry.study_item_id == StudyItem.id)
        .join(Image, StudyItem.image_id == Image.id)
        .join(ImageSet, Image.image_set_id == ImageSet.id)
        .join(StudyReader, ScheduleEntry.study_reader_id == StudyReader.id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.id, ScheduleEntry.position)
    )
    if not include_practice:
        query = query.where(ScheduleEntry.practice.is_(False))
    return query


def _external(db: Session, study: Study) -> list[ExternalRating]:
    query = select(ExternalRating).where(ExternalRating.study_id == study.id)
    return list(db.scalars(query.order_by(ExternalRating.id)))


def study_ratings(db: Session, study: Study) -> list[Rating]:
    """One Rating per scored answer; practice answers never reach the statistics."""
    if study.kind is StudyKind.imported:
        return [
            Rating(
                reader=r.reader,
                image=r.image,
                truth=r.truth,  # type: ignore[arg-type]  # validated on import
                answer=r.answer,  # type: ignore[arg-type]
                confidence=r.confidence,
                source=r.source,
            )
            for r in _external(db, study)
        ]
    ratings: list[Rating] = []
    for answer, entry, item, image, _set, reader in db.execute(
        _reading_query(study, include_practice=False)
    ):
        synthetic = image.origin is Origin.synthetic
        ratings.append(
            Rating(
                reader=pseudonym(reader),
                image=image_label(item.id),
                truth=_truth(image.origin),  # type: ignore[arg-type]
                answer=answer.answer,
                confidence=answer.confidence,
                # A real image has no generator, whatever its row says.
                source=image.source if synthetic else None,
                repeat=entry.repeat,
            )
        )
    return ratings


def answer_rows(db: Session, study: Study) -> list[dict[str, Any]]:
    """Every answer with every recorded field, practice included (flagged), for export."""
    if study.kind is StudyKind.imported:
        return [
            {
                **dict.fromkeys(ANSWER_COLUMNS),
                "reader": r.reader,
                "image": r.image,
                "truth": r.truth,
                "source": r.source,
                "answer": r.answer,
                "confidence": r.confidence,
                "reason": r.reason,
                "repeat": False,
                "practice": False,
            }
            for r in _external(db, study)
        ]
    rows: list[dict[str, Any]] = []
    for answer, entry, item, image, image_set, reader in db.execute(
        _reading_query(study, include_practice=True)
    ):
        rows.append(
            {
                "reader": pseudonym(reader),
                "image": image_label(item.id),
                "truth": _truth(image.origin),
                "source_set": image_set.name,
                "label": image.label,
                "source": image.source if image.origin is Origin.synthetic else None,
                "answer": answer.answer,
                "confidence": answer.confidence,
                "reason": answer.reason,
                "second_answer": answer.second_answer,
                "shown_at": answer.shown_at,
                "answered_at": answer.answered_at,
                "duration_ms": answer.duration_ms,
                "position": entry.position,
                "repeat": entry.repeat,
                "practice": entry.practice,
                "blinding_override": study.blinding_override,
            }
        )
    return rows


def image_refs(db: Session, study: Study) -> dict[str, ImageRef]:
    """Image label -> thumbnail reference; empty for imported studies, which have no files."""
    if study.kind is StudyKind.imported:
        return {}
    query = (
        select(StudyItem, Image)
        .join(Image, StudyItem.image_id == Image.id)
        .where(StudyItem.study_id == study.id)
    )
    return {
        image_label(item.id): ImageRef(
            label=image_label(item.id),
            study_item_id=item.id,
            image_set_id=image.image_set_id,
            image_id=image.id,
            original_name=image.original_name,
            source=image.source,
        )
        for item, image in db.execute(query)
    }
