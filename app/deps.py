"""Annotated dependencies: the database session and who is asking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.auth.service import Principal, load_session
from app.auth.tokens import unsign
from app.db import get_sessionmaker
from app.domain.forbidden import Forbidden as Forbidden

SESSION_COOKIE = "sb_session"


class LoginRequired(Exception):
    """Raised for anonymous visitors of protected pages; handled as a redirect to /login."""


def get_db() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


DbDep = Annotated[Session, Depends(get_db)]


def optional_principal(request: Request, db: DbDep) -> Principal | None:
    token = unsign(request.app.state.secret_key, "session", request.cookies.get(SESSION_COOKIE))
    principal = load_session(db, token)
    # End the read here: FastAPI runs the endpoint in a later threadpool hop, and a request
    # waiting for a thread must not hold a pooled connection (threads waiting for connections
    # held by requests waiting for threads is a deadlock that only the pool timeout breaks).
    # Loaded objects stay usable: sessions are made with expire_on_commit=False.
    db.commit()
    request.state.principal = principal
    return principal


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


MaybeUser = Annotated[Principal | None, Depends(optional_principal)]
CurrentUser = Annotated[Principal, Depends(require_login)]
Researcher = Annotated[Principal, Depends(require_researcher)]
Admin = Annotated[Principal, Depends(require_admin)]
