"""Sharing a study read-only with other researchers (co-investigators, statisticians).

A collaborator sees the study page, results and exports; only the owner (or an admin) changes
the study, its readers, invitations and shares.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.domain.forbidden import Forbidden
from app.domain.not_found import NotFound
from app.models import Invite, Role, Study, StudyShare, User


class StudyNotFound(NotFound):
    noun = "study"


class ShareError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def can_change(study: Study, principal: Principal) -> bool:
    return principal.can_change(study)


def can_view(db: Session, study: Study, principal: Principal) -> bool:
    return can_change(study, principal) or is_shared_with(db, study.id, principal.user.id)


def is_shared_with(db: Session, study_id: int, user_id: int) -> bool:
    return bool(
        db.scalar(
            select(exists().where(StudyShare.study_id == study_id, StudyShare.user_id == user_id))
        )
    )


def study_for(db: Session, study_id: int, principal: Principal, *, change: bool = False) -> Study:
    """The study if the principal may see it (and, with ``change``, modify it).

    Someone who may not see it gets the same 404 as for a missing id, so ids are not probed;
    a collaborator it is shared with learns only that changes are the owner's.
    """
    study = db.get(Study, study_id)
    if study is None or not can_view(db, study, principal):
        raise StudyNotFound(study_id)
    if change and not can_change(study, principal):
        raise Forbidden("This study is shared with you to read; only its owner can change it.")
    return study


def listed_studies(db: Session, principal: Principal) -> tuple[list[Study], dict[int, str]]:
    """The studies the principal may see, newest first, and their owners' usernames."""
    query = select(Study).order_by(Study.id.desc())
    if not principal.is_admin:
        query = query.where(visible_studies(principal))
    studies = list(db.scalars(query))
    owner_ids = {s.owner_id for s in studies}
    owners = {u.id: u.username for u in db.scalars(select(User).where(User.id.in_(owner_ids)))}
    return studies, owners


def invites_of(db: Session, study: Study) -> list[Invite]:
    return list(
        db.scalars(select(Invite).where(Invite.study_id == study.id).order_by(Invite.id.desc()))
    )


def visible_studies(principal: Principal):  # type: ignore[no-untyped-def]
    """A filter for ``select(Study)``: own studies and those shared with the principal."""
    shared = select(StudyShare.study_id).where(StudyShare.user_id == principal.user.id)
    return (Study.owner_id == principal.user.id) | Study.id.in_(shared)


def share(db: Session, study: Study, username: str) -> User:
    username = username.strip()
    user = db.scalar(select(User).where(User.username == username))
    # The same answer for an unknown name and a reader account: the owner needs a researcher.
    if user is None or user.role not in {Role.researcher, Role.admin}:
        raise ShareError(f"There is no researcher named {username!r}.")
    if user.id == study.owner_id:
        raise ShareError("The owner already sees the study.")
    if is_shared_with(db, study.id, user.id):
        raise ShareError(f"The study is already shared with {username}.")
    db.add(StudyShare(study_id=study.id, user_id=user.id))
    db.flush()
    return user


def unshare(db: Session, study: Study, user_id: int) -> None:
    db.execute(
        delete(StudyShare).where(StudyShare.study_id == study.id, StudyShare.user_id == user_id)
    )


def collaborators(db: Session, study: Study) -> list[User]:
    return list(
        db.scalars(
            select(User)
            .join(StudyShare, StudyShare.user_id == User.id)
            .where(StudyShare.study_id == study.id)
            .order_by(User.username)
        )
    )
