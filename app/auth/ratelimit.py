"""Sign-in rate limit: a sliding window of failures per username and per client address.

The rule is a pure function of failure times; the database only stores them, so every app
process shares one count.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import LoginFailure


@dataclass(frozen=True)
class Limits:
    per_username: int
    per_address: int
    window_s: int


def wait_seconds(failures: Sequence[datetime], now: datetime, limit: int, window_s: int) -> int:
    """Seconds until another attempt is allowed; 0 when one is allowed now.

    Blocked while ``limit`` or more failures lie within the window; the block lifts when enough
    of them leave it for the count to drop below the limit.
    """
    window = timedelta(seconds=window_s)
    recent = sorted(t for t in failures if now - t < window)
    if limit <= 0 or len(recent) < limit:
        return 0
    # The (len - limit + 1)th oldest must leave the window for the count to fall to limit - 1.
    frees_at = recent[len(recent) - limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The address a sign-in is counted against.

    The socket peer, unless it is one of the ``trusted`` proxies (addresses or networks): then
    the nearest X-Forwarded-For hop that is not a trusted proxy. Anyone can send the header, so
    without a configured proxy it is ignored: a client who picked a fresh address for every
    attempt would never reach the per-address limit.
    """
    networks = [_network(t) for t in trusted]
    if not peer or not _trusted(peer, networks):
        return peer or "unknown"
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    # Every hop is one of ours (or none was sent): the request came from the proxies' side.
    return hops[0] if hops else peer


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text.strip(), strict=False)


def _trusted(
    address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a name or garbage in the header: never one of our proxies
        return False
    return any(ip in network for network in networks)


def normalise(username: str) -> str:
    return username.strip().lower()[:120]


def _times(db: Session, column: object, value: str, since: datetime) -> list[datetime]:
    return list(db.scalars(select(LoginFailure.at).where(column == value, LoginFailure.at > since)))


def retry_after(db: Session, username: str, address: str, now: datetime, limits: Limits) -> int:
    since = now - timedelta(seconds=limits.window_s)
    by_name = _times(db, LoginFailure.username, normalise(username), since)
    by_address = _times(db, LoginFailure.address, address, since)
    return max(
        wait_seconds(by_name, now, limits.per_username, limits.window_s),
        wait_seconds(by_address, now, limits.per_address, limits.window_s),
    )


def record_failure(db: Session, username: str, address: str, now: datetime, window_s: int) -> None:
    # Pruning here keeps the table to one window's worth of rows without a separate job.
    db.execute(delete(LoginFailure).where(LoginFailure.at <= now - timedelta(seconds=window_s)))
    db.add(LoginFailure(username=normalise(username), address=address[:64], at=now))


def clear(db: Session, username: str) -> None:
    """A successful sign-in forgives that account's failures (not the address's)."""
    db.execute(delete(LoginFailure).where(LoginFailure.username == normalise(username)))
