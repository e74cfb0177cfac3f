"""Users, sessions and invitations: the rules, independent of HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.auth.passwords import hash_password
from app.auth.tokens import new_token, token_hash
from app.models import Invite, Role, Study, StudyReader, User, WebSession
from app.models.types import utcnow


class AuthError(Exception):
    """A refusal with a message fit to show the person."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class Owned(Protocol):
    @property
    def owner_id(self) -> int | None: ...


@dataclass(frozen=True)
class Principal:
    """Who is asking: the user and, for invitation sessions, the one study they may read."""

    user: User
    session: WebSession

    @classmethod
    def acting_for(cls, user: User) -> Principal:
        """The user's own rights without a web session. The demo loader and a sweep's later
        stages act for their owner this way, so they pass the same access rule as the user
        would in the browser rather than a parameter that bypasses it."""
        return cls(user=user, session=WebSession(user_id=user.id, study_id=None))

    @property
    def role(self) -> Role:
        return self.user.role

    @property
    def study_scope(self) -> int | None:
        return self.session.study_id

    @property
    def is_researcher(self) -> bool:
        return self.session.study_id is None and self.user.role in {Role.researcher, Role.admin}

    @property
    def is_admin(self) -> bool:
        return self.session.study_id is None and self.user.role is Role.admin

    # The one access rule for owned things (jobs, datasets, image sets, sweeps, studies): the
    # owner and admins. Seeing and changing share it today; callers ask for what they mean, so
    # a rule that splits them (shared read access) changes here only.
    def can_see(self, owned: Owned) -> bool:
        return self.is_admin or owned.owner_id == self.user.id

    def can_change(self, owned: Owned) -> bool:
        return self.is_admin or owned.owner_id == self.user.id

    @property
    def visible_owner(self) -> int | None:
        """The owner id a listing is limited to; None: everyone's (admins)."""
        return None if self.is_admin else self.user.id


def acting_for(db: Session, user_id: int) -> Principal:
    """`Principal.acting_for` the user with this id (who must exist)."""
    user = db.get(User, user_id)
    if user is None:
        raise AuthError(f"There is no user {user_id}.")
    return Principal.acting_for(user)


def may_see(principal: Principal | None, owned: Owned) -> bool:
    """`Principal.can_see` for services that the CLI also calls without a principal (an
    operator at the server's shell sees everything)."""
    return principal is None or principal.can_see(owned)


MIN_PASSWORD_LENGTH = 8


def password_problem(password: str) -> str | None:
    """The one password rule (CLI, admin pages, service): why it is refused, else None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Passwords need at least {MIN_PASSWORD_LENGTH} characters."
    return None


DISABLED_REFUSED = "This account is disabled. Ask an administrator to enable it."


def create_user(
    db: Session, *, username: str, password: str | None, role: Role, display_name: str = ""
) -> User:
    username = username.strip()
    if not username:
        raise AuthError("A username is required.")
    problem = password_problem(password) if password is not None else None
    if problem:
        raise AuthError(problem)
    if db.scalar(select(User).where(User.username == username)) is not None:
        raise AuthError(f"A user named {username!r} already exists.", 409)
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password) if password is not None else None,
        role=role,
    )
    db.add(user)
    db.flush()
    return user


SIGN_IN_REFUSED = "Wrong username or password."


@dataclass(frozen=True)
class Candidate:
    """The account a sign-in names, read before the (slow) password check; plain values, so
    the check needs no session and no connection."""

    user_id: int | None
    password_hash: str | None


def find_candidate(db: Session, username: str) -> Candidate:
    row = db.execute(
        select(User.id, User.password_hash).where(User.username == username.strip())
    ).first()
    return Candidate(row[0], row[1]) if row else Candidate(None, None)


def complete_sign_in(
    db: Session,
    candidate: Candidate,
    *,
    hours: int,
    old_token: str | None = None,
    new_hash: str | None = None,
) -> str:
    """After the password checked out against ``candidate``: a fresh session (the old one, if
    any, ended) and, when the hash used older parameters, the re-hash stored."""
    user = db.get(User, candidate.user_id) if candidate.user_id is not None else None
    # The check ran outside any transaction: if the password changed (or the account went)
    # meanwhile, what was checked is no longer the account's password.
    if user is None or user.password_hash != candidate.password_hash:
        raise AuthError(SIGN_IN_REFUSED, 401)
    # Only after the right password: a guesser learns nothing about which accounts exist.
    if user.disabled_at is not None:
        raise AuthError(DISABLED_REFUSED, 403)
    if new_hash is not None:
        user.password_hash = new_hash
    user.last_sign_in_at = utcnow()
    end_session(db, old_token)
    token, _ = start_session(db, user, hours=hours)
    return token


def start_session(
    db: Session, user: User, *, hours: int, study_id: int | None = None
) -> tuple[str, WebSession]:
    """A fresh session (never a reused one: rotation at login defeats session fixation)."""
    token = new_token()
    web_session = WebSession(
        token_hash=token_hash(token),
        user_id=user.id,
        study_id=study_id,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    db.add(web_session)
    db.flush()
    return token, web_session


def load_session(db: Session, token: str | None) -> Principal | None:
    if not token:
        return None
    # One round trip for both: this runs on every request.
    row = db.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == token_hash(token), User.disabled_at.is_(None))
    ).first()
    if row is None or row[0].expires_at <= utcnow():
        return None
    return Principal(user=row[1], session=row[0])


def end_session(db: Session, token: str | None) -> None:
    if token:
        db.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def create_invite(
    db: Session, *, study: Study, created_by: User, hours: int, label: str = ""
) -> tuple[str, Invite]:
    token = new_token()
    invite = Invite(
        token_hash=token_hash(token),
        study_id=study.id,
        label=label.strip()[:200],
        created_by_id=created_by.id,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    db.add(invite)
    db.flush()
    return token, invite


def study_accepted_by(db: Session, token: str, principal: Principal | None) -> int | None:
    """The study of an invitation that the signed-in caller already accepted, else None."""
    if principal is None:
        return None
    invite = db.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))
    if invite is None or invite.used_at is None or invite.reader_id != principal.user.id:
        return None
    return invite.study_id


def invited_study(db: Session, token: str) -> tuple[Invite, Study | None]:
    """A still usable invitation and its study; AuthError says why a link is not usable."""
    invite = find_invite(db, token)
    return invite, db.get(Study, invite.study_id)


def find_invite(db: Session, token: str) -> Invite:
    invite = db.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))
    if invite is None:
        raise AuthError(
            "This invitation link is not valid. Ask the study owner for a new one.", 404
        )
    if invite.used_at is not None:
        raise AuthError("This invitation link has already been used. Links work once.", 410)
    if invite.expires_at <= utcnow():
        raise AuthError("This invitation link has expired. Ask the study owner for a new one.", 410)
    return invite


def accept_invite(db: Session, token: str) -> tuple[User, Invite]:
    """Consume the invitation: a new pseudonymous reader, assigned to the study."""
    invite = find_invite(db, token)
    # Claim the invite with a conditional UPDATE first: of two concurrent submits, only one
    # matches ``used_at IS NULL``, so a double click cannot mint two readers.
    now = utcnow()
    claimed = db.execute(
        update(Invite).where(Invite.id == invite.id, Invite.used_at.is_(None)).values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthError("This invitation link has already been used. Links work once.", 410)
    # Pseudonymous on purpose: exports identify readers by this name, not a person's.
    reader = create_user(
        db,
        username=f"reader-{invite.study_id}-{invite.id}-{new_token()[:6]}",
        password=None,
        role=Role.reader,
        display_name=invite.label or f"Reader {invite.id}",
    )
    db.add(StudyReader(study_id=invite.study_id, user_id=reader.id))
    invite.used_at = now
    invite.reader_id = reader.id
    db.flush()
    return reader, invite
