"""Annotated dependencies: the database session and who is asking."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.service import Principal, load_session
from app.auth.tokens import unsign
from app.db import get_sessionmaker
from app.domain.forbidden import Forbidden as Forbidden

SESSION_COOKIE = "sb_session"

T = TypeVar("T")


class LoginRequired(Exception):
    """Raised for anonymous visitors of protected pages; handled as a redirect to /login."""


def get_db() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


DbDep = Annotated[Session, Depends(get_db)]


def _session_token(request: Request) -> str | None:
    return unsign(request.app.state.secret_key, "session", request.cookies.get(SESSION_COOKIE))


def optional_principal(request: Request, db: DbDep) -> Principal | None:
    principal = load_session(db, _session_token(request))
    # End the read here: FastAPI runs the endpoint in a later threadpool hop, and a request
    # waiting for a thread must not hold a pooled connection (threads waiting for connections
    # held by requests waiting for threads is a deadlock that only the pool timeout breaks).
    # Loaded objects stay usable: sessions are made with expire_on_commit=False.
    db.commit()
    request.state.principal = principal
    return principal


@dataclass(frozen=True)
class Caller:
    """Who is asking, not looked up yet: the routes a reader calls on every image resolve it
    inside their own unit of work (`in_one_unit`), so that the lookup shares the request's one
    thread hop, one pooled connection and one transaction."""

    token: str | None

    def principal(self, db: Session) -> Principal:
        principal = load_session(db, self.token)
        if principal is None:
            raise LoginRequired
        return principal


async def read_caller(request: Request) -> Caller:
    # async and free of I/O: no thread hop, no connection.
    return Caller(_session_token(request))


async def session_factory() -> Callable[[], Session]:
    # A dependency, so that the study audit can point the reading routes at its throwaway
    # sessions, as it does `get_db`.
    return get_sessionmaker()


Sessions = Annotated[Callable[[], Session], Depends(session_factory)]


async def in_one_unit(sessions: Callable[[], Session], work: Callable[[Session], T]) -> T:
    """`work` in one threadpool hop with its own session, closed in that thread. A request
    takes a connection only once it has a thread, and gives it back before it lets go of the
    thread, so requests waiting for threads never hold connections (the deadlock that
    `optional_principal`'s commit avoids for the other routes)."""

    def run() -> T:
        with sessions() as db:
            return work(db)

    return await run_in_threadpool(run)


def require_login(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise LoginRequired
    return principal


def require_researcher(principal: Annotated[Principal, Depends(require_login)]) -> Principal:
    if not principal.is_researcher:
        raise Forbidden("This page is for researchers.")
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_login)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This page is for administrators.")
    return principal


LateUser = Annotated[Caller, Depends(read_caller)]
MaybeUser = Annotated[Principal | None, Depends(optional_principal)]
CurrentUser = Annotated[Principal, Depends(require_login)]
Researcher = Annotated[Principal, Depends(require_researcher)]
Admin = Annotated[Principal, Depends(require_admin)]
