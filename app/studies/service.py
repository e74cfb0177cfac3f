"""Creating studies from image sets and managing their readers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain.reader_study import ImageRef, StudyDesign, select_images
from app.models import (
    Answer,
    Image,
    ImageSet,
    Role,
    ScheduleEntry,
    Study,
    StudyImageSet,
    StudyItem,
    StudyReader,
    User,
)
from app.studies import blinding_gate, display
from app.studies.design import DisplayOptions, ReadingOptions, StoredDesign


class StudyDesignError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ReaderProgress:
    reader: StudyReader
    user: User
    answered: int
    total: int


def _image_ref(image: Image) -> ImageRef:
    # The key the domain sees is the row id: stable, and meaningless to anyone reading along.
    return ImageRef(
        key=str(image.id), origin=image.origin.value, label=image.label, source=image.source
    )


def visible_image_sets(db: Session, user: User) -> list[ImageSet]:
    query = select(ImageSet).order_by(ImageSet.id.desc())
    if user.role is not Role.admin:
        query = query.where(ImageSet.owner_id == user.id)
    return list(db.scalars(query))


def create_study(
    db: Session,
    *,
    owner: User,
    name: str,
    instructions: str,
    image_set_ids: list[int],
    design: StudyDesign,
    reading: ReadingOptions,
    display_options: DisplayOptions | None = None,
) -> Study:
    """Select the images now, so every reader of the study sees the same set; render them in
    the study's geometry and run the leakage gate (the study opens to readers if it passes)."""
    display_options = display_options or DisplayOptions()
    allowed = {s.id for s in visible_image_sets(db, owner)}
    unknown = [i for i in image_set_ids if i not in allowed]
    if unknown:
        raise StudyDesignError([f"There is no image set {unknown[0]} that you can see."])
    images = list(db.scalars(select(Image).where(Image.image_set_id.in_(image_set_ids))))
    real = [_image_ref(i) for i in images if i.origin.value == "real"]
    synthetic = [_image_ref(i) for i in images if i.origin.value == "synthetic"]
    problems = design.validate(real, synthetic)
    if problems:
        raise StudyDesignError(problems)
    selection = select_images(real, synthetic, design)
    study = Study(
        name=name,
        instructions=instructions,
        owner_id=owner.id,
        design={
            **StoredDesign(selection=design, reading=reading, display=display_options).to_json(),
            "notes": list(selection.notes),
        },
    )
    db.add(study)
    db.flush()
    db.add_all(StudyImageSet(study_id=study.id, image_set_id=i) for i in image_set_ids)
    db.add_all(StudyItem(study_id=study.id, image_id=int(r.key)) for r in selection.scored)
    db.add_all(
        StudyItem(study_id=study.id, image_id=int(r.key), practice=True) for r in selection.practice
    )
    db.flush()
    chosen = display.study_images(db, study.id)
    geometry = display.geometry_for(
        display_options,
        [(i.width, i.height) for i in chosen],
        colour=display.sets_in_colour(db, image_set_ids),
    )
    study.design = {**study.design, "geometry": geometry.to_json()}
    unrendered = display.render_study(db, study, geometry)
    blinding_gate.run_gate(db, study, geometry, unrendered=unrendered)
    return study


def assignable_readers(db: Session, study: Study) -> list[User]:
    assigned = select(StudyReader.user_id).where(StudyReader.study_id == study.id)
    query = (
        select(User)
        .where(User.role.in_([Role.reader, Role.researcher]), User.id.not_in(assigned))
        .order_by(User.username)
    )
    return list(db.scalars(query))


def assign_reader(db: Session, study: Study, user_id: int) -> StudyReader:
    user = db.get(User, user_id)
    if user is None or user.role is Role.admin:
        raise StudyDesignError(["That user cannot be assigned as a reader."])
    existing = db.scalar(
        select(StudyReader).where(StudyReader.study_id == study.id, StudyReader.user_id == user_id)
    )
    if existing is not None:
        return existing
    reader = StudyReader(study_id=study.id, user_id=user_id)
    db.add(reader)
    db.flush()
    return reader


def reader_progress(db: Session, study: Study) -> list[ReaderProgress]:
    readers = db.execute(
        select(StudyReader, User)
        .join(User, User.id == StudyReader.user_id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.id)
    ).all()
    totals = dict(
        db.execute(
            select(ScheduleEntry.study_reader_id, func.count())
            .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
            .where(StudyReader.study_id == study.id)
            .group_by(ScheduleEntry.study_reader_id)
        ).all()
    )
    answered = dict(
        db.execute(
            select(Answer.study_reader_id, func.count())
            .join(StudyReader, StudyReader.id == Answer.study_reader_id)
            .where(StudyReader.study_id == study.id)
            .group_by(Answer.study_reader_id)
        ).all()
    )
    return [
        ReaderProgress(reader=r, user=u, answered=answered.get(r.id, 0), total=totals.get(r.id, 0))
        for r, u in readers
    ]


def study_counts(db: Session, study: Study) -> dict[str, int]:
    rows = db.execute(
        select(StudyItem.practice, Image.origin, func.count())
        .join(Image, Image.id == StudyItem.image_id)
        .where(StudyItem.study_id == study.id)
        .group_by(StudyItem.practice, Image.origin)
    ).all()
    counts = {"real": 0, "synthetic": 0, "practice": 0}
    for practice, origin, n in rows:
        counts["practice" if practice else origin.value] += n
    return counts
