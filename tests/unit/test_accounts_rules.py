"""The pure rules behind the admin pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.auth.service import password_problem
from app.domain.accounts import invite_state, last_admin_problem, role_problem, username_problem

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["ada", "rosa.m", "r_2", "a@b.org", "x" * 120])
def test_usernames_accepted(name: str) -> None:
    assert username_problem(name) is None


@pytest.mark.parametrize("name", ["", "   ", "has space", "-dash", "x" * 121, "a/b", "é"])
def test_usernames_refused(name: str) -> None:
    assert username_problem(name)


def test_roles() -> None:
    assert role_problem("reader") is None
    assert "Unknown role" in (role_problem("root") or "")


def test_password_rule_is_the_services() -> None:
    assert password_problem("1234567") == "Passwords need at least 8 characters."
    assert password_problem("12345678") is None


def test_last_active_admin_cannot_be_disabled_or_demoted() -> None:
    assert last_admin_problem({1}, 1, new_role="admin", new_active=False)
    assert last_admin_problem({1}, 1, new_role="researcher", new_active=True)


def test_an_admin_may_go_while_another_stays() -> None:
    assert last_admin_problem({1, 2}, 1, new_role="researcher", new_active=True) is None
    assert last_admin_problem({1, 2}, 2, new_role="admin", new_active=False) is None


def test_changes_to_non_admins_and_no_op_changes_pass() -> None:
    assert last_admin_problem({1}, 5, new_role="reader", new_active=False) is None
    assert last_admin_problem({1}, 1, new_role="admin", new_active=True) is None
    # A disabled admin being demoted does not change who can administer.
    assert last_admin_problem({1}, 7, new_role="reader", new_active=False) is None


def test_invite_states() -> None:
    later, earlier = NOW + timedelta(hours=1), NOW - timedelta(seconds=1)
    assert invite_state(used_at=None, expires_at=later, now=NOW) == "open"
    assert invite_state(used_at=None, expires_at=earlier, now=NOW) == "expired"
    assert invite_state(used_at=None, expires_at=NOW, now=NOW) == "expired"
    assert invite_state(used_at=earlier, expires_at=earlier, now=NOW) == "used"
