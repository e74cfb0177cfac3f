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
    return _pseudonym(reader.id, reader.pseudonym)


def _pseudonym(reader_id: int, name: str | None) -> str:
    return name or f"R{reader_id}"


def _truth(origin: Origin) -> str:
    return "fake" if origin is Origin.synthetic else "real"


# Columns, not ORM objects: a study of 20 readers x 500 images has 10,000 answer rows, and
# building six mapped objects per row cost seconds on every new answer.
RATING_COLUMNS = (
    StudyReader.id,
    StudyReader.pseudonym,
    StudyItem.id,
    Image.origin,
    Image.source,
    Answer.answer,
    Answer.confidence,
    ScheduleEntry.repeat,
)
_ROW_COLUMNS = (
    *RATING_COLUMNS,
    ImageSet.name,
    Image.label,
    Answer.reason,
    Answer.second_answer,
    Answer.shown_at,
    Answer.answered_at,
    Answer.duration_ms,
    ScheduleEntry.position,
    ScheduleEntry.practice,
)


def reading_query(study: Study, columns: tuple[Any, ...], *, include_practice: bool) -> Any:
    query = (
        select(*columns)
        .select_from(Answer)
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
    query = reading_query(study, RATING_COLUMNS, include_practice=False)
    return [rating_from_row(*row) for row in db.execute(query)]


def rating_from_row(
    reader_id: int,
    name: str | None,
    item_id: int,
    origin: Origin,
    source: str | None,
    answer: str,
    confidence: float | None,
    repeat: bool,
) -> Rating:
    """The Rating of one row of RATING_COLUMNS (one answer of a reading study)."""
    return Rating(
        reader=_pseudonym(reader_id, name),
        image=image_label(item_id),
        truth=_truth(origin),  # type: ignore[arg-type]
        answer=answer,  # type: ignore[arg-type]
        confidence=confidence,
        # A real image has no generator, whatever its row says.
        source=source if origin is Origin.synthetic else None,
        repeat=repeat,
    )


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
    query = reading_query(study, _ROW_COLUMNS, include_practice=True)
    for (
        reader_id, name, item_id, origin, source, answer, confidence, repeat,
        set_name, label, reason, second_answer, shown_at, answered_at, duration_ms,
        position, practice,
    ) in db.execute(query):  # fmt: skip
        rows.append(
            {
                "reader": _pseudonym(reader_id, name),
                "image": image_label(item_id),
                "truth": _truth(origin),
                "source_set": set_name,
                "label": label,
                "source": source if origin is Origin.synthetic else None,
                "answer": answer,
                "confidence": confidence,
                "reason": reason,
                "second_answer": second_answer,
                "shown_at": shown_at,
                "answered_at": answered_at,
                "duration_ms": duration_ms,
                "position": position,
                "repeat": repeat,
                "practice": practice,
                "blinding_override": study.blinding_override,
            }
        )
    return rows


def image_refs(db: Session, study: Study) -> dict[str, ImageRef]:
    """Image label -> thumbnail reference; empty for imported studies, which have no files."""
    if study.kind is StudyKind.imported:
        return {}
    query = (
        select(StudyItem.id, Image.image_set_id, Image.id, Image.original_name, Image.source)
        .join(Image, StudyItem.image_id == Image.id)
        .where(StudyItem.study_id == study.id)
    )
    return {
        image_label(item_id): ImageRef(
            label=image_label(item_id),
            study_item_id=item_id,
            image_set_id=set_id,
            image_id=image_id,
            original_name=name,
            source=source,
        )
        for item_id, set_id, image_id, name, source in db.execute(query)
    }
