"""Argon2id password hashing, and checking passwords without starving the web process.

Parameters: OWASP's Password Storage Cheat Sheet's first Argon2id configuration, m=19 MiB,
t=2, p=1 (OWASP rates it equal to m=46 MiB, t=1). argon2-cffi's own default (m=64 MiB, t=3,
p=4) is about five times the memory traffic per check, and a burst of sign-ins on a small
server must be hashed within seconds, not minutes. p=1 keeps one check on one core, so the
concurrency limit below maps checks onto cores. Hashes made with other parameters still
verify (a hash carries its own) and are re-hashed at the next sign-in.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from dataclasses import dataclass

from anyio import CapacityLimiter, to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1

_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)
# Verifying against this when the user does not exist keeps login time independent of
# whether the username is known.
_DUMMY_HASH = _hasher.hash("synthbench-timing-equaliser")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    needs_rehash: bool = False  # right password, hash made with other parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    return check_password(password, password_hash).ok


def check_password(password: str, password_hash: str | None) -> Verdict:
    """CPU-bound (tens of ms) and GIL-free while hashing: run it in a thread, not on the loop."""
    try:
        ok = _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return Verdict(False)
    return Verdict(ok, ok and _hasher.check_needs_rehash(password_hash or ""))


def default_concurrency(configured: int | None = None) -> int:
    """Checks at once per process: the configured number, else the CPUs it may run on."""
    if configured is not None and configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# One limiter per event loop: anyio's limiter belongs to the loop that first waits on it, and
# tests run several apps (each TestClient its own loop) in one process.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter(concurrency: int) -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(concurrency)
    return limiter


async def check_password_off_loop(
    password: str, password_hash: str | None, concurrency: int | None = None
) -> Verdict:
    """check_password on a worker thread, at most ``concurrency`` at once in this process.

    A burst queues here, on the event loop, holding neither a thread of the request pool nor
    a database connection; more checks at once than cores would only make each one slower
    (and, with the loop's threads all hashing, uvicorn's health check can go unanswered).
    """
    limiter = _limiter(default_concurrency(concurrency))
    return await to_thread.run_sync(check_password, password, password_hash, limiter=limiter)


async def hash_password_off_loop(password: str, concurrency: int | None = None) -> str:
    limiter = _limiter(default_concurrency(concurrency))
    return await to_thread.run_sync(hash_password, password, limiter=limiter)
