"""Rules for managing accounts, free of the database: what an administrator may change."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

ROLES = ("admin", "researcher", "reader")
# Usernames appear in URLs, exports and the CLI: keep them to characters that need no quoting.
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,119}$")


def username_problem(username: str) -> str | None:
    name = username.strip()
    if not name:
        return "A username is required."
    if not USERNAME_RE.match(name):
        return (
            "Usernames are up to 120 letters, digits and . _ @ - (starting with a letter or digit)."
        )
    return None


def role_problem(role: str) -> str | None:
    return None if role in ROLES else f"Unknown role {role!r}: choose one of {', '.join(ROLES)}."


def last_admin_problem(
    active_admin_ids: Collection[int], target_id: int, *, new_role: str, new_active: bool
) -> str | None:
    """Refuse a change that would leave no active administrator: nobody could undo it from
    the browser. `active_admin_ids` are the active admins before the change."""
    stays_admin = new_role == "admin" and new_active
    if target_id not in active_admin_ids or stays_admin:
        return None
    if set(active_admin_ids) - {target_id}:
        return None
    return (
        "This is the last active administrator: make another user an administrator "
        "before disabling or demoting this one."
    )


def invite_state(*, used_at: datetime | None, expires_at: datetime, now: datetime) -> str:
    """open, used or expired (a revoked invitation is one that was made to expire now)."""
    if used_at is not None:
        return "used"
    if expires_at <= now:
        return "expired"
    return "open"
