"""What an administrator does to accounts and invitations, independent of HTTP.

Every function flushes but never commits: the route commits once the whole change is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.auth import service
from app.auth.passwords import hash_password
from app.auth.service import AuthError
from app.domain import accounts
from app.domain import not_found as domain_not_found
from app.models import Invite, Role, Study, User, WebSession
from app.models.types import utcnow


class NotFound(domain_not_found.NotFound):
    """An id that names no row: a 404 page, never a 500 or a silent no-op."""

    def __init__(self, message: str) -> None:
        super().__init__(message, message)


@dataclass(frozen=True)
class InviteRow:
    invite: Invite
    study_name: str
    created_by: str
    reader: str | None
    state: str


def list_users(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.username)))


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user #{user_id}.")
    return user


def create_user(
    db: Session, *, username: str, password: str, role: str, display_name: str = ""
) -> User:
    problem = (
        accounts.username_problem(username)
        or accounts.role_problem(role)
        or service.password_problem(password)
    )
    if problem:
        raise AuthError(problem)
    return service.create_user(
        db,
        username=username.strip(),
        password=password,
        role=Role(role),
        display_name=display_name.strip()[:200],
    )


def _active_admin_ids(db: Session) -> set[int]:
    # Locked (PostgreSQL) so that two administrators demoting each other at once are checked
    # one after the other: the second then sees the first's change and is refused.
    rows = db.scalars(
        select(User.id).where(User.role == Role.admin, User.disabled_at.is_(None)).with_for_update()
    ).all()
    return set(rows)


def _end_sessions(db: Session, user: User) -> None:
    db.execute(delete(WebSession).where(WebSession.user_id == user.id))


def set_active(db: Session, user_id: int, active: bool) -> tuple[User, bool]:
    """Enable or disable; returns the user and whether anything changed (a second submit of
    the same form changes nothing). Disabling ends every session the user has."""
    user = get_user(db, user_id)
    if user.is_active == active:
        return user, False
    problem = accounts.last_admin_problem(
        _active_admin_ids(db), user.id, new_role=user.role.value, new_active=active
    )
    if problem:
        raise AuthError(problem, 409)
    user.disabled_at = None if active else utcnow()
    if not active:
        _end_sessions(db, user)
    db.flush()
    return user, True


def set_role(db: Session, user_id: int, role: str) -> tuple[User, bool]:
    user = get_user(db, user_id)
    problem = accounts.role_problem(role)
    if problem:
        raise AuthError(problem)
    if user.role.value == role:
        return user, False
    problem = accounts.last_admin_problem(
        _active_admin_ids(db), user.id, new_role=role, new_active=user.is_active
    )
    if problem:
        raise AuthError(problem, 409)
    user.role = Role(role)
    # Sessions carry no role (it is read from the user on each request), but an old session
    # of someone demoted should not outlive the decision: they sign in again.
    _end_sessions(db, user)
    db.flush()
    return user, True


def set_password(db: Session, user_id: int, password: str) -> User:
    """The administrator types the new password and tells the person; their sessions end,
    so whoever held the old password is signed out everywhere."""
    user = get_user(db, user_id)
    problem = service.password_problem(password)
    if problem:
        raise AuthError(problem)
    user.password_hash = hash_password(password)
    _end_sessions(db, user)
    db.flush()
    return user


def list_studies(db: Session) -> list[Study]:
    return list(db.scalars(select(Study).order_by(Study.id.desc())))


def list_invites(db: Session, now: datetime | None = None) -> list[InviteRow]:
    now = now or utcnow()
    invites = db.scalars(select(Invite).order_by(Invite.created_at.desc(), Invite.id.desc()))
    studies: dict[int, str] = {sid: name for sid, name in db.execute(select(Study.id, Study.name))}
    names: dict[int, str] = {uid: name for uid, name in db.execute(select(User.id, User.username))}
    return [
        InviteRow(
            invite=i,
            study_name=studies.get(i.study_id, "?"),
            created_by=names.get(i.created_by_id, "?"),
            reader=names.get(i.reader_id) if i.reader_id is not None else None,
            state=accounts.invite_state(used_at=i.used_at, expires_at=i.expires_at, now=now),
        )
        for i in invites
    ]


def create_invite(
    db: Session, *, study_id: int, created_by: User, hours: int, label: str = ""
) -> str:
    study = db.get(Study, study_id)
    if study is None:
        raise NotFound(f"There is no study #{study_id}.")
    token, _ = service.create_invite(
        db, study=study, created_by=created_by, hours=hours, label=label
    )
    return token


def revoke_invite(db: Session, invite_id: int) -> bool:
    """Make an open invitation expire now (the row stays, for the record). False when it was
    no longer open: a second click, or a link used meanwhile."""
    invite = db.get(Invite, invite_id)
    if invite is None:
        raise NotFound(f"There is no invitation #{invite_id}.")
    now = utcnow()
    state = accounts.invite_state(used_at=invite.used_at, expires_at=invite.expires_at, now=now)
    if state != "open":
        return False
    invite.expires_at = now
    db.flush()
    return True
