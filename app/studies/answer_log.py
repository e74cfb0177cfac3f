"""A study's answers as the results page reads them, extended by each new answer.

During a live study answers keep arriving, and the first results page after each one had to
read every answer again (10,000 rows at 20 readers x 500 images). Answers are only ever added,
or deleted together with their reader, so the log of what was read stays valid as long as the
answers up to the last id read are the same rows: same count, same sum of ids and same latest
answer time (the signals of app.studies.results_cache.study_state). Then only the answers with
a larger id are read and merged in; anything else reads the study again from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from itertools import chain
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.checked_first import FirstPresentations, checked_first
from app.domain.ratings import Rating
from app.models import Answer, ScheduleEntry, Study, StudyKind, StudyReader
from app.studies.ratings import (
    RATING_COLUMNS,
    answer_rows,
    rating_from_row,
    reading_query,
    study_ratings,
)

_LOG_COLUMNS = (
    Answer.id,
    Answer.answered_at,
    ScheduleEntry.position,
    ScheduleEntry.practice,
    Answer.duration_ms,
    Answer.reason,
    *RATING_COLUMNS,
)


@dataclass(frozen=True)
class Reason:
    """A reason a reader wrote with a scored answer, as the results page lists it."""

    reader: str
    image: str
    truth: str
    answer: str
    reason: str


@dataclass(frozen=True)
class StudyReading:
    """What the results page reads from a study's answers."""

    ratings: list[Rating]  # as study_ratings()
    times_ms: list[int | None]  # each scored answer's time (None: not recorded), no practice
    reasons: list[Reason]  # of scored answers with a written reason, in answer order

    @cached_property
    def first(self) -> FirstPresentations:
        """The first presentations, checked once for every analysis of this reading."""
        return checked_first(self.ratings)


class _Logged(NamedTuple):
    position: int
    rating: Rating
    practice: bool
    duration_ms: int | None
    reason: str | None


@dataclass(frozen=True)
class _ReaderLog:
    """One reader's answers in schedule order, and what the page takes from them."""

    answers: tuple[_Logged, ...]
    ratings: tuple[Rating, ...]
    times_ms: tuple[int | None, ...]
    reasons: tuple[Reason, ...]

    @classmethod
    def of(cls, answers: Iterable[_Logged]) -> _ReaderLog:
        ordered = tuple(sorted(answers, key=lambda a: a.position))
        scored = [a for a in ordered if not a.practice]
        return cls(
            answers=ordered,
            ratings=tuple(a.rating for a in scored),
            times_ms=tuple(a.duration_ms for a in scored),
            reasons=tuple(
                Reason(a.rating.reader, a.rating.image, a.rating.truth, a.rating.answer, a.reason)
                for a in scored
                if a.reason
            ),
        )


@dataclass(frozen=True)
class AnswerLog:
    """The answers of a reading study read so far; never mutated, extended into a new log."""

    study_id: int
    count: int
    id_sum: int
    last_id: int | None
    latest: datetime | None
    readers: dict[int, _ReaderLog]  # by StudyReader.id

    def reading(self) -> StudyReading:
        # Readers in id order, each in schedule order: the order of study_ratings().
        logs = [self.readers[i] for i in sorted(self.readers)]
        return StudyReading(
            ratings=list(chain.from_iterable(log.ratings for log in logs)),
            times_ms=list(chain.from_iterable(log.times_ms for log in logs)),
            reasons=list(chain.from_iterable(log.reasons for log in logs)),
        )

    def extended(self, rows: Sequence[Any]) -> AnswerLog:
        """This log with ``rows`` (of _LOG_COLUMNS, ids above last_id) merged in."""
        if not rows:
            return self
        added: dict[int, list[_Logged]] = {}
        for row in rows:
            reader_id, logged = _logged(row)
            added.setdefault(reader_id, []).append(logged)
        readers = dict(self.readers)
        for reader_id, answers in added.items():
            before = readers[reader_id].answers if reader_id in readers else ()
            readers[reader_id] = _ReaderLog.of([*before, *answers])
        ids = [row[0] for row in rows]  # Answer.id and Answer.answered_at lead _LOG_COLUMNS
        times = [row[1] for row in rows]
        return AnswerLog(
            study_id=self.study_id,
            count=self.count + len(rows),
            id_sum=self.id_sum + sum(ids),
            last_id=max(ids),
            latest=max(times) if self.latest is None else max(self.latest, *times),
            readers=readers,
        )


def _logged(row: Any) -> tuple[int, _Logged]:
    _id, _at, position, practice, duration_ms, reason, *rating_row = row
    logged = _Logged(position, rating_from_row(*rating_row), practice, duration_ms, reason)
    return rating_row[0], logged  # RATING_COLUMNS start with StudyReader.id


def _empty(study: Study) -> AnswerLog:
    return AnswerLog(study.id, 0, 0, None, None, {})


def _unchanged_up_to_last(db: Session, study: Study, log: AnswerLog) -> bool:
    """Whether the study's answers with ids up to the log's last are exactly those read."""
    assert log.last_id is not None
    query = (
        select(func.count(Answer.id), func.sum(Answer.id), func.max(Answer.answered_at))
        .join(StudyReader, Answer.study_reader_id == StudyReader.id)
        .where(StudyReader.study_id == study.id, Answer.id <= log.last_id)
    )
    count, id_sum, latest = db.execute(query).one()
    return (count, id_sum, latest) == (log.count, log.id_sum, log.latest)


def read_answers(db: Session, study: Study, previous: AnswerLog | None = None) -> AnswerLog:
    """The study's answer log: ``previous`` extended by the answers added since it was read
    when its answers are still all there unchanged, else read from scratch."""
    query = reading_query(study, _LOG_COLUMNS, include_practice=True)
    if (
        previous is not None
        and previous.study_id == study.id
        and previous.last_id is not None
        and _unchanged_up_to_last(db, study, previous)
    ):
        return previous.extended(db.execute(query.where(Answer.id > previous.last_id)).all())
    return _empty(study).extended(db.execute(query).all())


def imported_reading(db: Session, study: Study) -> StudyReading:
    """The reading of an imported study (a few rows, read whole): no times, no practice."""
    reasons = [
        Reason(r["reader"], r["image"], r["truth"], r["answer"], r["reason"])
        for r in answer_rows(db, study)
        if r["reason"] and not r["practice"]
    ]
    return StudyReading(study_ratings(db, study), [], reasons)


def is_incremental(study: Study) -> bool:
    """Reading studies grow answer by answer; imported ratings are read whole."""
    return study.kind is not StudyKind.imported
