"""One sign-in, in three steps, so that no database connection is held while a password is
hashed: read (rate limit, account) in one short transaction, check the password off the event
loop with no connection held, then record the outcome in a second short transaction.

Holding a connection across the check is what made a burst of 200 sign-ins time out on the
connection pool: each check takes tens of milliseconds of CPU, and the connections ran out
long before the cores did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import passwords, ratelimit, service
from app.db import in_transaction


@dataclass(frozen=True)
class Blocked:
    wait_s: int


@dataclass(frozen=True)
class Refused:
    message: str
    status_code: int


@dataclass(frozen=True)
class SignedIn:
    token: str


Outcome = Blocked | Refused | SignedIn


@dataclass(frozen=True)
class Attempt:
    username: str
    password: str
    address: str
    now: datetime
    old_token: str | None = None


async def sign_in(
    attempt: Attempt, limits: ratelimit.Limits, *, hours: int, concurrency: int | None = None
) -> Outcome:
    """Raises app.db.DatabaseBusy when the database stays unavailable through its retries."""

    def read(db: Session) -> tuple[int, service.Candidate]:
        # Checked before the password: while blocked, even the right password must not tell
        # a guesser that it was right.
        wait = ratelimit.retry_after(db, attempt.username, attempt.address, attempt.now, limits)
        if wait:
            return wait, service.Candidate(None, None)
        return 0, service.find_candidate(db, attempt.username)

    wait, candidate = await run_in_threadpool(in_transaction, read)
    if wait:
        return Blocked(wait)
    verdict = await passwords.check_password_off_loop(
        attempt.password, candidate.password_hash, concurrency
    )
    if not verdict.ok or candidate.user_id is None:

        def record_failure(db: Session) -> None:
            ratelimit.record_failure(
                db, attempt.username, attempt.address, attempt.now, limits.window_s
            )

        await run_in_threadpool(in_transaction, record_failure)
        return Refused(service.SIGN_IN_REFUSED, 401)
    new_hash = None
    if verdict.needs_rehash:
        new_hash = await passwords.hash_password_off_loop(attempt.password, concurrency)

    def record_success(db: Session) -> str:
        ratelimit.clear(db, attempt.username)
        return service.complete_sign_in(
            db, candidate, hours=hours, old_token=attempt.old_token, new_hash=new_hash
        )

    try:
        token = await run_in_threadpool(in_transaction, record_success)
    except service.AuthError as exc:
        return Refused(exc.message, exc.status_code)
    return SignedIn(token)
