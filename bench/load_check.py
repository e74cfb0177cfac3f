"""The database against the clients' log after a load run: nothing lost, nothing twice, every
answer stored for the reader, image and value the reader saw accepted."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

from load_faults import Accepted, LoadLog
from load_study import LoadStudy
from sqlalchemy import func, select


@dataclass(frozen=True)
class StoredAnswer:
    answer: str
    username: str  # through the answer's own reader row
    entry_reader_id: int  # the reader the entry (image presentation) belongs to
    answer_reader_id: int
    entry: str
    position: int  # 1-based, as the page shows it
    image_key: str


@dataclass
class Integrity:
    logged: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)  # in the log, not in the database
    duplicated: list[str] = field(default_factory=list)  # more than one per reader and image
    misattributed: list[str] = field(default_factory=list)  # other reader, image or value
    unconfirmed: list[str] = field(default_factory=list)  # stored, never seen accepted

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.misattributed or self.unconfirmed)

    def line(self) -> str:
        return (
            f"{self.logged} answers in the clients' log, {self.stored} in the database: "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated, "
            f"{len(self.misattributed)} misattributed, {len(self.unconfirmed)} unconfirmed"
        )

    def examples(self, limit: int = 5) -> list[str]:
        kinds = (self.lost, self.duplicated, self.misattributed, self.unconfirmed)
        return [item for kind in kinds for item in kind[:limit]]


def _stored(study_id: int) -> tuple[list[StoredAnswer], int]:
    from app.db import session_scope
    from app.models import Answer, Image, ScheduleEntry, StudyItem, StudyReader, User

    with session_scope() as db:
        rows = db.execute(
            select(
                Answer.answer,
                User.username,
                ScheduleEntry.study_reader_id,
                Answer.study_reader_id,
                ScheduleEntry.opaque_id,
                ScheduleEntry.position + 1,
                Image.key,
            )
            .join(ScheduleEntry, ScheduleEntry.id == Answer.schedule_entry_id)
            .join(StudyReader, StudyReader.id == Answer.study_reader_id)
            .join(User, User.id == StudyReader.user_id)
            .join(StudyItem, StudyItem.id == ScheduleEntry.study_item_id)
            .join(Image, Image.id == StudyItem.image_id)
            .where(StudyReader.study_id == study_id)
        ).all()
        # Rows the joins above drop (an answer tied to nothing sensible) still count as stored.
        total = int(db.scalar(select(func.count()).select_from(Answer)) or 0)
    return [StoredAnswer(*row) for row in rows], total


@cache
def _display_pixels(study_id: int, key: str):  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.models import Study
    from app.studies.display import display_pixels

    with session_scope() as db:
        return display_pixels(db, db.get(Study, study_id), key)


def _served_sha256(study_id: int, key: str, entry: str) -> str:
    """What the server must have sent for this presentation: the study's rendering of the
    stored image, dithered with the presentation's own seed (app.studies.display)."""
    from app.studies.display import served_png

    return hashlib.sha256(served_png(_display_pixels(study_id, key), entry)).hexdigest()


def _mismatch(study: LoadStudy, logged: Accepted, stored: StoredAnswer) -> str | None:
    expected_user = study.username(logged.reader)
    if stored.username != expected_user or stored.answer_reader_id != stored.entry_reader_id:
        return f"{logged.entry}: sent by {expected_user}, stored for {stored.username}"
    if stored.answer != logged.answer:
        return f"{logged.entry}: {logged.answer!r} sent, {stored.answer!r} stored"
    if logged.position is not None and stored.position != logged.position:
        return f"{logged.entry}: shown at position {logged.position}, stored at {stored.position}"
    if logged.image_sha256 and logged.image_sha256 != _served_sha256(
        study.study_id, stored.image_key, stored.entry
    ):
        return f"{logged.entry}: the image shown is not {stored.image_key}, stored with it"
    return None


def _duplicates(log: LoadLog, stored: list[StoredAnswer]) -> list[str]:
    found = []
    # The load study has no repeats: one answer per reader and image is the rule.
    per_image = Counter((s.username, s.image_key) for s in stored)
    found += [f"{u} has {n} answers for image {k}" for (u, k), n in per_image.items() if n > 1]
    per_entry = Counter(a.entry for a in log.accepted)
    found += [
        f"entry {e} was answered {n} times by its reader" for e, n in per_entry.items() if n > 1
    ]
    return found


def compare(log: LoadLog, study: LoadStudy) -> Integrity:
    stored, total = _stored(study.study_id)
    by_entry = {s.entry: s for s in stored}
    logged = {a.entry: a for a in log.accepted}
    result = Integrity(logged=len(log.accepted), stored=total)
    result.lost = [
        f"{study.username(a.reader)} {e}" for e, a in logged.items() if e not in by_entry
    ]
    result.unconfirmed = [f"{s.username} {e}" for e, s in by_entry.items() if e not in logged]
    result.duplicated = _duplicates(log, stored)
    if total != len(stored):
        result.misattributed.append(f"{total - len(stored)} answers outside the study's readers")
    for entry, accepted in logged.items():
        problem = entry in by_entry and _mismatch(study, accepted, by_entry[entry])
        if problem:
            result.misattributed.append(problem)
    return result


def restart_problems(log: LoadLog, planned: int) -> list[str]:
    """Each planned restart happened, and a new server (new PIDs, main and workers) took over."""
    found = []
    if len(log.restarts) != planned:
        found.append(f"{len(log.restarts)} of {planned} restarts happened")
    for r in log.restarts:
        if r.new_pid == r.old_pid or not r.new_workers or r.new_workers & r.old_workers:
            found.append(f"no new server process after {r.signal}: {r}")
    return found


def problems(log: LoadLog, expected: int, planned_restarts: int, integrity: Integrity) -> list[str]:
    """Everything that makes a run fail, most telling first."""
    found = [*log.errors[:5]]
    if len(log.errors) > 5:
        found.append(f"... and {len(log.errors) - 5} more client errors")
    if len(log.accepted) != expected:
        found.append(f"{len(log.accepted)} of {expected} answers were accepted")
    found += restart_problems(log, planned_restarts)
    if not integrity.ok:
        found += [integrity.line(), *integrity.examples()]
    return found
