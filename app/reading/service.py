"""A reader's side of a study: their sequence, where they are in it, and their answers.

Rules live here, not in the routes: who may read, how a sequence is built (reproducibly, from
the study seed and the reader's join order), which image is current and what a repeated submit
means; what makes an answer valid is in app.domain.answers. Services flush; callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.domain.answers import (
    AnswerInput,
    Feedback,
    InvalidAnswer,
    ReadingError,
    parse_answer,
    practice_feedback_for,
)
from app.domain.blinding import opaque_id as new_opaque_id
from app.domain.reader_study import ImageRef, Selection, reader_schedule, reader_seed
from app.models import Answer, Image, ScheduleEntry, Study, StudyItem, StudyKind, StudyReader
from app.models.types import utcnow
from app.reading.sequence_cache import Presentation, Sequence, sequence_of
from app.studies import blinding_gate
from app.studies.design import ReadingOptions, load_design

# reader_seed() gives 64 unsigned bits; the column is a signed BigInteger. The masked value is
# the seed actually used, so the stored seed alone rebuilds the order exactly.
SEED_MASK = (1 << 62) - 1


class NotAReader(ReadingError):
    status_code, default = 403, "You are not a reader of this study."


class NotYourImage(ReadingError):
    status_code, default = 404, "This image is not part of your reading list."


class AlreadyAnswered(ReadingError):
    status_code = 409
    default = (
        "You have already answered this image, and answers cannot be changed. "
        "Reload the page to continue with the next image."
    )


class NotCurrent(ReadingError):
    status_code = 409
    default = (
        "This image is not the one being shown. Reload the page to continue where you left off."
    )


class StudyNotReadable(ReadingError):
    status_code = 409


@dataclass(frozen=True)
class ReadingView:
    """Everything the reading page shows, none of it identifying the image."""

    state: Literal["empty", "reading", "done"]
    reading: ReadingOptions
    answered: int
    total: int
    entry: Presentation | None = None
    next_opaque_id: str | None = None

    @property
    def position(self) -> int:
        return self.answered + 1


# --- statements of the answer path, built once ----------------------------------------------
# Every request of a reader runs these; building a statement costs about as much Python as
# running it, so they are made at import and only their parameters change.

_READER = (
    select(StudyReader, Study)
    .join(Study, Study.id == StudyReader.study_id)
    .where(StudyReader.study_id == bindparam("study_id"), StudyReader.user_id == bindparam("user"))
)
_CURRENT = (
    select(ScheduleEntry)
    .outerjoin(Answer, Answer.schedule_entry_id == ScheduleEntry.id)
    .where(ScheduleEntry.study_reader_id == bindparam("reader"), Answer.id.is_(None))
    .order_by(ScheduleEntry.position)
    .limit(1)
)
_ANSWERED = select(func.count()).where(Answer.study_reader_id == bindparam("reader"))
# This entry's answer, if any, and how many answers the reader has given: one round trip.
# (The reader as well as the entry: an entry id from a stale cached sequence then never
# matches another reader's answer.)
_STORED = select(Answer).where(
    Answer.schedule_entry_id == bindparam("entry"), Answer.study_reader_id == bindparam("reader")
)
_STORED_AND_ANSWERED = select(
    _STORED.with_only_columns(Answer.id).scalar_subquery(), _ANSWERED.scalar_subquery()
)
_MARK_SHOWN = (
    update(ScheduleEntry)
    .where(ScheduleEntry.id == bindparam("entry"), ScheduleEntry.first_shown_at.is_(None))
    .values(first_shown_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)

# --- who may read -------------------------------------------------------------------------


def reader_for(
    db: Session, *, study_id: int, user_id: int, study_scope: int | None
) -> tuple[Study, StudyReader]:
    """The study and this user's place in it, for any role assigned as a reader."""
    if study_scope is not None and study_scope != study_id:
        raise NotAReader()
    # One round trip for both: every reading request starts here.
    row = db.execute(_READER, {"study_id": study_id, "user": user_id}).first()
    if row is None:
        raise NotAReader()
    study_reader, study = row
    if study.kind is StudyKind.imported:
        raise NotAReader("This study's answers were collected elsewhere; there is nothing to read.")
    return study, study_reader


# --- the sequence -------------------------------------------------------------------------


def _has_schedule(db: Session, study_reader: StudyReader) -> bool:
    found = db.scalar(
        select(ScheduleEntry.id).where(ScheduleEntry.study_reader_id == study_reader.id).limit(1)
    )
    return found is not None


def _selection(db: Session, study: Study) -> Selection:
    rows = db.execute(
        select(StudyItem, Image)
        .join(Image, Image.id == StudyItem.image_id)
        .where(StudyItem.study_id == study.id)
    ).all()
    # The item id, not the image key, goes into the schedule: it is what entries point at.
    # (reader_schedule sorts by key itself, so the query's row order cannot matter.)
    refs = {
        practice: tuple(
            ImageRef(str(item.id), image.origin.value, image.label, image.source)
            for item, image in rows
            if item.practice is practice
        )
        for practice in (False, True)
    }
    return Selection(scored=refs[False], practice=refs[True])


def ensure_schedule(db: Session, study: Study, study_reader: StudyReader) -> None:
    """Build the reader's sequence on their first visit; later calls do nothing.

    Two first visits at once both compute the same order (it is a function of the seed) and
    race to insert it; the unique (reader, position) key lets one win and the other reload.
    Call it at the start of a unit of work: losing the race rolls the session back.
    """
    if _has_schedule(db, study_reader):
        return
    selection = _selection(db, study)
    if not selection.scored and not selection.practice:
        return  # nothing selected yet: the page says so, and the next visit tries again
    try:
        blinding_gate.ensure_open(db, study)
    except blinding_gate.GateClosed as exc:
        raise StudyNotReadable(str(exc)) from exc
    design = load_design(study.design)
    index = db.scalar(
        select(func.count())
        .select_from(StudyReader)
        .where(StudyReader.study_id == study.id, StudyReader.id < study_reader.id)
    )
    index = int(index or 0)
    seed = reader_seed(design.selection.seed, index) & SEED_MASK
    try:
        schedule = reader_schedule(selection, seed, design.selection.repeat_share)
    except ValueError as exc:
        raise StudyNotReadable(f"This study cannot be read yet: {exc}.") from exc
    study_reader.reader_seed = seed
    study_reader.pseudonym = f"R{index + 1:02d}"
    study_reader.started_at = utcnow()
    db.add_all(
        ScheduleEntry(
            study_reader_id=study_reader.id,
            position=item.position,
            study_item_id=int(item.image_key),
            practice=item.practice,
            repeat=item.repeat,
            # A repeat gets a fresh id like any other entry, so nothing marks it as seen before.
            opaque_id=new_opaque_id(),
        )
        for item in schedule
    )
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        if not _has_schedule(db, study_reader):
            raise
        db.refresh(study_reader)


def current_entry(db: Session, study_reader: StudyReader) -> ScheduleEntry | None:
    """The first position without an answer: leaving and coming back resumes exactly there."""
    return db.scalar(_CURRENT, {"reader": study_reader.id})


def progress(db: Session, study_reader: StudyReader) -> tuple[int, int]:
    """(answered, total) over the reader's whole sequence, practice and repeats included."""
    total = (
        select(func.count())
        .where(ScheduleEntry.study_reader_id == study_reader.id)
        .scalar_subquery()
    )
    answered = (
        select(func.count()).where(Answer.study_reader_id == study_reader.id).scalar_subquery()
    )
    row = db.execute(select(answered, total)).one()
    return int(row[0] or 0), int(row[1] or 0)


def mark_shown(db: Session, entry: ScheduleEntry) -> None:
    """Only the first showing counts: a reload must not reset the reader's clock."""
    if entry.first_shown_at is None:
        entry.first_shown_at = utcnow()
        db.flush()


def _mark_shown_once(db: Session, entry_id: int) -> None:
    # The same rule as mark_shown in one statement, without loading the entry first.
    db.execute(_MARK_SHOWN, {"entry": entry_id, "now": utcnow()})


def _answered(db: Session, study_reader: StudyReader) -> int:
    count = db.scalar(_ANSWERED, {"reader": study_reader.id})
    return int(count or 0)


def _index_in(db: Session, study_reader: StudyReader, entry_id: int) -> tuple[Sequence, int]:
    sequence = sequence_of(db, study_reader)
    index = sequence.index_of_entry(entry_id)
    if index is None:  # not in the copy this process holds: read the sequence again
        sequence = sequence_of(db, study_reader, fresh=True)
        index = sequence.index_of_entry(entry_id)
        if index is None:
            raise LookupError(f"schedule entry {entry_id} is not in its reader's sequence")
    return sequence, index


def _view_at(reading: ReadingOptions, sequence: Sequence, index: int, answered: int) -> ReadingView:
    following = sequence.at(index + 1)
    return ReadingView(
        "reading",
        reading,
        answered,
        len(sequence.entries),
        sequence.entries[index],
        following.opaque_id if following else None,
    )


def reading_view(db: Session, study: Study, study_reader: StudyReader) -> ReadingView:
    """What the reading page shows now; the current image is marked as shown."""
    reading = load_design(study.design).reading
    sequence = sequence_of(db, study_reader)
    if not sequence.entries:
        return ReadingView("empty", reading, 0, 0)
    answered = _answered(db, study_reader)
    entry = current_entry(db, study_reader)
    if entry is None:
        return ReadingView("done", reading, answered, len(sequence.entries))
    mark_shown(db, entry)
    sequence, index = _index_in(db, study_reader, entry.id)
    return _view_at(reading, sequence, index, answered)


def view_after(
    db: Session, study: Study, study_reader: StudyReader, advance: Advance | None
) -> ReadingView:
    """The view after an answer: known without reading the answers again when ``advance`` is
    (the answers are exactly the entries up to the one just answered), else as reading_view."""
    if advance is None:
        return reading_view(db, study, study_reader)
    reading = load_design(study.design).reading
    sequence, index = advance
    answered, total = index + 1, len(sequence.entries)
    following = sequence.at(index + 1)
    if following is None:
        return ReadingView("done", reading, answered, total)
    _mark_shown_once(db, following.entry_id)
    return _view_at(reading, sequence, index + 1, answered)


def done_view(db: Session, study: Study, study_reader: StudyReader) -> ReadingView | None:
    """The finish page's view, or None while images are left to answer."""
    answered, total = progress(db, study_reader)
    if total == 0 or answered < total:
        return None
    return ReadingView("done", load_design(study.design).reading, answered, total)


def image_key_for(db: Session, study_reader: StudyReader, opaque_id: str) -> str:
    """The stored image behind one of this reader's entries; NotYourImage for anything else,
    the same for an id that does not exist and one that belongs to someone else."""
    sequence = sequence_of(db, study_reader)
    index = sequence.index_of(opaque_id)
    if index is None:
        raise NotYourImage("This image is not available.")
    return sequence.entries[index].image_key


# --- answers ------------------------------------------------------------------------------

# The reader's sequence and the index in it of the entry just answered, when the answers are
# exactly the entries up to it: the next view then needs no query to find its entry.
Advance = tuple[Sequence, int]


def _answer_of(db: Session, reader_id: int, entry_id: int) -> Answer | None:
    return db.scalar(_STORED, {"entry": entry_id, "reader": reader_id})


def _repeat_or_conflict(reading: ReadingOptions, form: AnswerInput, stored: Answer) -> Answer:
    try:
        parsed = parse_answer(reading, form)
    except InvalidAnswer:
        raise AlreadyAnswered() from None
    if parsed.same_judgement(stored):
        return stored  # a double click or a retried request: nothing is stored twice
    raise AlreadyAnswered()


def _reading_options(db: Session, study_id: int) -> ReadingOptions:
    # Usually no query: reader_for put the study in the session's identity map.
    study = db.get(Study, study_id)
    if study is None:  # the reader row cascades with its study, so this is a programming error
        raise LookupError(f"study {study_id} does not exist")
    return load_design(study.design).reading


def record_answer(
    db: Session, study_reader: StudyReader, opaque_id: str, form: AnswerInput
) -> Answer:
    """Store the reader's answer to the image now shown; idempotent for an identical resubmit."""
    return answer_and_advance(db, study_reader, opaque_id, form)[0]


def answer_and_advance(
    db: Session, study_reader: StudyReader, opaque_id: str, form: AnswerInput
) -> tuple[Answer, Advance | None]:
    """record_answer, and where the reader now is when that is known without another query."""
    reading = _reading_options(db, study_reader.study_id)
    reader_id = study_reader.id  # still readable after a rollback expires the row
    sequence = sequence_of(db, study_reader)
    index = sequence.index_of(opaque_id)
    if index is None:
        raise NotYourImage()
    shown = sequence.entries[index]
    stored_id, answered = db.execute(
        _STORED_AND_ANSWERED, {"entry": shown.entry_id, "reader": reader_id}
    ).one()
    if stored_id is not None:
        stored = _answer_of(db, reader_id, shown.entry_id)
        assert stored is not None  # answers are deleted only with their reader
        return _repeat_or_conflict(reading, form, stored), None
    parsed = parse_answer(reading, form)
    current = current_entry(db, study_reader)
    if current is None or current.id != shown.entry_id:
        # An identical submit running beside this one may have stored the answer since we
        # looked above, which moves the reader on: that is a repeat, not a stale page.
        stored = _answer_of(db, reader_id, shown.entry_id)
        if stored is not None:
            return _repeat_or_conflict(reading, form, stored), None
        if current is not None and sequence.index_of_entry(current.id) is None:
            # This process's copy of the sequence is not the reader's (their row was deleted
            # and made again under the same id and start): read it again for the next request.
            _index_in(db, study_reader, current.id)
        raise NotCurrent()
    answer = Answer(
        schedule_entry_id=shown.entry_id,
        study_reader_id=study_reader.id,
        answer=parsed.answer,
        confidence=parsed.confidence,
        reason=parsed.reason,
        second_answer=parsed.second_answer,
        shown_at=current.first_shown_at,
        duration_ms=parsed.duration_ms,
    )
    db.add(answer)
    try:
        db.flush()
    except IntegrityError:
        # Another request stored an answer for this entry between our check and our insert.
        db.rollback()
        stored = _answer_of(db, reader_id, shown.entry_id)
        if stored is None:
            raise
        return _repeat_or_conflict(reading, form, stored), None
    # Every answer belongs to one of the reader's entries, at most one each: the count says
    # whether this was the last one, and whether the answers are exactly entries 0..index.
    answered = int(answered or 0) + 1
    if answered == len(sequence.entries) and study_reader.finished_at is None:
        study_reader.finished_at = utcnow()
        db.flush()
    return answer, ((sequence, index) if answered == index + 1 else None)


def practice_feedback(db: Session, study_reader: StudyReader, answer: Answer) -> Feedback | None:
    """Whether a practice answer was right, when the study gives feedback; never for scored
    images, whose truth the reader must not learn."""
    sequence, index = _index_in(db, study_reader, answer.schedule_entry_id)
    if not sequence.entries[index].practice:
        return None  # scored: no query at all
    if not _reading_options(db, study_reader.study_id).practice_feedback:
        return None
    origin = db.scalar(
        select(Image.origin)
        .join(StudyItem, StudyItem.image_id == Image.id)
        .join(ScheduleEntry, ScheduleEntry.study_item_id == StudyItem.id)
        .where(ScheduleEntry.id == answer.schedule_entry_id)
    )
    if origin is None:
        return None
    following = sequence.at(index + 1)
    last_practice = following is not None and not following.practice
    return practice_feedback_for(answer.answer, origin.value == "synthetic", last_practice)


def reader_studies(db: Session, principal: Principal) -> list[tuple[Study, StudyReader]]:
    """The studies this reader is assigned to (an invitation session: its one study)."""
    query = (
        select(Study, StudyReader)
        .join(StudyReader, StudyReader.study_id == Study.id)
        .where(StudyReader.user_id == principal.user.id)
        .order_by(Study.id)
    )
    if principal.study_scope is not None:
        query = query.where(Study.id == principal.study_scope)
    return [(study, reader) for study, reader in db.execute(query).all()]
