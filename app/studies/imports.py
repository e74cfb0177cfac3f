"""Import ratings collected elsewhere as an analysis-only study (kind "imported")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.domain.ratings import Rating
from app.domain.ratings_import import ParsedRatings, parse_ratings_csv
from app.models import ExternalRating, Study, StudyKind

# Column widths of the tables (app/models/study.py): PostgreSQL rejects longer values outright,
# SQLite would store them, so both are held to the same limit here.
MAX_NAME = 200
MAX_READER = 200
MAX_IMAGE = 500
MAX_SOURCE = 200


class ImportRatingsError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:5]))
        self.errors = errors


def _too_long(ratings: list[Rating]) -> list[str]:
    problems: list[str] = []
    limits = (("reader", MAX_READER), ("image", MAX_IMAGE), ("source", MAX_SOURCE))
    for field, limit in limits:
        long = sorted({v for r in ratings if len(v := getattr(r, field) or "") > limit})
        problems += [f"{field} {v[:40]!r}... is longer than {limit} characters" for v in long]
    return problems


def _truth_conflicts(ratings: list[Rating]) -> list[str]:
    # Statistics would take each row's word for it, but an image is either real or fake, and
    # a disagreement means a typo somewhere that would silently flip someone's score.
    truth: dict[str, str] = {}
    conflicting: set[str] = set()
    for r in ratings:
        if truth.setdefault(r.image, r.truth) != r.truth:
            conflicting.add(r.image)
    return [
        f"image {image!r} is marked real on some rows and fake on others"
        for image in sorted(conflicting)
    ]


def name_problems(name: str) -> list[str]:
    if not name.strip():
        return ["The study needs a name."]
    if len(name.strip()) > MAX_NAME:
        return [f"The study name is longer than {MAX_NAME} characters."]
    return []


def validate_import(name: str, csv_text: str) -> tuple[ParsedRatings, list[str]]:
    """The parsed file and every problem found with it or the name (empty when ok)."""
    parsed = parse_ratings_csv(csv_text)
    errors = name_problems(name) + parsed.errors
    if parsed.ok:
        errors += _too_long(parsed.ratings) + _truth_conflicts(parsed.ratings)
    return parsed, errors


def _store_imported(
    db: Session,
    owner_id: int,
    name: str,
    ratings: Sequence[Rating],
    reasons: Mapping[tuple[str, str], str],
) -> Study:
    """The imported study and one ExternalRating per checked rating (the caller commits)."""
    study = Study(name=name.strip(), owner_id=owner_id, kind=StudyKind.imported, design={})
    db.add(study)
    db.flush()
    # One executemany instead of an ORM object per row: files can have many thousand rows.
    db.execute(
        insert(ExternalRating),
        [
            {
                "study_id": study.id,
                "reader": r.reader,
                "image": r.image,
                "truth": r.truth,
                "answer": r.answer,
                "confidence": r.confidence,
                "reason": reasons.get((r.reader, r.image)),
                "source": r.source,
            }
            for r in ratings
        ],
    )
    return study


def import_ratings(db: Session, *, owner_id: int, name: str, csv_text: str) -> Study:
    """Create an imported study with one ExternalRating per CSV row, or nothing at all.

    Every check runs before anything is added to the session, so a bad file raises
    ImportRatingsError listing all its problems and leaves the database untouched. The caller
    commits.
    """
    parsed, errors = validate_import(name, csv_text)
    if errors:
        raise ImportRatingsError(errors)
    return _store_imported(db, owner_id, name, parsed.ratings, parsed.reasons)


def import_imrmc(db: Session, *, owner_id: int, name: str, text: str) -> Study:
    """Create an imported study from an iMRMC input file (see app/domain/imrmc_format.py),
    or nothing at all: a bad file raises ImportRatingsError naming each problem's line."""
    from app.domain.imrmc_format import parse_imrmc, ratings_from_imrmc

    parsed = parse_imrmc(text)
    errors = name_problems(name) + parsed.errors
    ratings = ratings_from_imrmc(parsed, text) if parsed.ok else []
    errors += _too_long(ratings) + _truth_conflicts(ratings)
    if errors:
        raise ImportRatingsError(errors)
    return _store_imported(db, owner_id, name, ratings, {})
