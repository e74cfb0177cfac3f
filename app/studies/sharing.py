"""Sharing a study read-only with other researchers (co-investigators, statisticians).

A collaborator sees the study page, results and exports; only the owner (or an admin) changes
the study, its readers, invitations and shares.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.models import Role, Study, StudyShare, User


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
