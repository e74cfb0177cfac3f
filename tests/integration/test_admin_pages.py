"""Administrator pages in the browser: users (create, disable, password, role) and
invitations (create, list, revoke), on SQLite and PostgreSQL. Who may open them at all is
the access matrix's business (tests/integration/test_access_matrix.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from access_world import _study
from fastapi.testclient import TestClient
from support import Env, make_user
from web_client import WebClient

from app.db import session_scope
from app.main import create_app
from app.models import Invite, User

USERS = "/admin/users"
INVITATIONS = "/admin/invitations"


@contextmanager
def _browser() -> Iterator[WebClient]:
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield WebClient(client)


@contextmanager
def _signed_in(username: str, password: str) -> Iterator[WebClient]:
    with _browser() as web:
        assert web.login(username, password).status_code == 303
        yield web


def _post(web: WebClient, url: str, **data: str) -> str:
    """Submit like a browser and follow the redirect: the page with its flash."""
    response = web.post_form(url, data, token_from=USERS)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response.text


def _user(username: str) -> User:
    with session_scope() as db:
        user = db.query(User).filter_by(username=username).one()
        db.expunge(user)
        return user


@pytest.fixture
def admin(env: Env) -> Iterator[WebClient]:
    make_user("ada", "ada-password-1", "admin")
    with _signed_in("ada", "ada-password-1") as web:
        yield web


def test_admin_creates_a_user_who_can_sign_in(admin: WebClient) -> None:
    page = admin.get(USERS).text
    assert 'href="/admin/users"' in page and 'href="/admin/invitations"' in page  # the nav
    page = _post(
        admin, USERS, username="nina", display_name="Nina M", role="researcher",
        password="nina-password-1",
    )  # fmt: skip
    assert "User nina created (researcher)." in page
    assert _user("nina").role.value == "researcher"
    with _signed_in("nina", "nina-password-1") as nina:
        jobs = nina.get("/jobs").text
        # Researchers see no admin links, and are refused the pages.
        assert 'href="/admin/users"' not in jobs
        assert nina.get(USERS).status_code == 403
    assert "nina" in admin.get(USERS).text


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"username": "ada", "password": "long-enough-1", "role": "reader"}, 409, "already exists"),
        ({"username": "bo", "password": "short", "role": "reader"}, 400, "at least 8 characters"),
        ({"username": "b o", "password": "long-enough-1", "role": "reader"}, 400, "Usernames"),
        ({"username": "bo", "password": "long-enough-1", "role": "root"}, 400, "Unknown role"),
    ],
)
def test_create_user_form_errors(
    admin: WebClient, form: dict[str, str], status: int, message: str
) -> None:
    response = admin.post_form(USERS, form, token_from=USERS)
    assert response.status_code == status
    assert message in response.text
    # The form comes back filled in, the password never.
    assert f'name="username" maxlength="120" required value="{form["username"]}"' in response.text
    assert form["password"] not in response.text
    with session_scope() as db:
        assert db.query(User).count() == 1


def test_disabling_ends_sessions_and_refuses_sign_in(admin: WebClient) -> None:
    nina_id = make_user("nina", "nina-password-1", "researcher")
    with _signed_in("nina", "nina-password-1") as nina:
        assert nina.get("/jobs", follow_redirects=False).status_code == 200
        page = _post(admin, f"{USERS}/{nina_id}/active", active="false")
        assert "nina is disabled (signed out everywhere)." in page
        assert re.search(r"disabled since \d{4}-\d\d-\d\d", page)
        # The browser still holds its cookie; the session behind it is gone.
        assert nina.get("/jobs", follow_redirects=False).headers["location"].startswith("/login")
        refused = nina.login("nina", "nina-password-1")
        assert refused.status_code == 403 and "This account is disabled" in refused.text
        # A wrong password still says only "wrong": nothing about the account's state.
        assert "Wrong username or password." in nina.login("nina", "not-her-password").text
    # A second click of the same button changes nothing.
    assert "nina is already disabled" in _post(admin, f"{USERS}/{nina_id}/active", active="false")
    assert "nina is enabled." in _post(admin, f"{USERS}/{nina_id}/active", active="true")
    with _signed_in("nina", "nina-password-1"):
        pass
    assert _user("nina").last_sign_in_at is not None


def test_password_reset_signs_the_user_out(admin: WebClient) -> None:
    nina_id = make_user("nina", "nina-password-1", "researcher")
    with _signed_in("nina", "nina-password-1") as nina:
        weak = _post(admin, f"{USERS}/{nina_id}/password", password="short")
        assert "Passwords need at least 8 characters." in weak
        assert nina.get("/jobs", follow_redirects=False).status_code == 200  # nothing changed
        page = _post(admin, f"{USERS}/{nina_id}/password", password="fresh-password-2")
        assert "New password set for nina" in page
        assert nina.get("/jobs", follow_redirects=False).status_code == 303
        assert nina.login("nina", "nina-password-1").status_code == 401
        assert nina.login("nina", "fresh-password-2").status_code == 303


def test_role_change_takes_effect(admin: WebClient) -> None:
    nina_id = make_user("nina", "nina-password-1", "researcher")
    assert "nina is now reader." in _post(admin, f"{USERS}/{nina_id}/role", role="reader")
    with _signed_in("nina", "nina-password-1") as nina:
        assert nina.get("/jobs").status_code == 403
    assert "Unknown role" in _post(admin, f"{USERS}/{nina_id}/role", role="root")
    assert _user("nina").role.value == "reader"


def test_the_last_active_admin_cannot_lock_everyone_out(admin: WebClient) -> None:
    ada_id = _user("ada").id
    for url, data in (("active", {"active": "false"}), ("role", {"role": "researcher"})):
        page = _post(admin, f"{USERS}/{ada_id}/{url}", **data)
        assert "This is the last active administrator" in page
    ada = _user("ada")
    assert ada.role.value == "admin" and ada.disabled_at is None
    # A disabled admin does not count: promoting one is not enough...
    bo_id = make_user("bo", "bo-password-1", "admin")
    _post(admin, f"{USERS}/{bo_id}/active", active="false")
    page = _post(admin, f"{USERS}/{ada_id}/role", role="researcher")
    assert "This is the last active administrator" in page
    # ...an active one is: then ada may step down (and her admin session ends with it).
    _post(admin, f"{USERS}/{bo_id}/active", active="true")
    response = admin.post_form(f"{USERS}/{ada_id}/role", {"role": "researcher"}, token_from=USERS)
    assert response.status_code == 200
    assert _user("ada").role.value == "researcher"
    assert admin.get(USERS, follow_redirects=False).headers["location"].startswith("/login")


@pytest.mark.parametrize(
    ("url", "data"),
    [
        (f"{USERS}/9999/active", {"active": "false"}),
        (f"{USERS}/9999/role", {"role": "reader"}),
        (f"{USERS}/9999/password", {"password": "long-enough-1"}),
        (f"{INVITATIONS}/9999/revoke", {}),
        (INVITATIONS, {"study_id": "9999"}),
    ],
)
def test_unknown_ids_are_404_pages(admin: WebClient, url: str, data: dict[str, str]) -> None:
    response = admin.post_form(url, data, token_from=USERS)
    assert response.status_code == 404
    assert "There is no" in response.text and "<html" in response.text


def test_invitations_are_listed_shown_once_and_revoked(admin: WebClient) -> None:
    owner = make_user("rosa", "rosa-password-1", "researcher")
    _, study_id = _study(owner, "Rosa's")
    page = admin.get(INVITATIONS).text
    assert f'<option value="{study_id}">#{study_id} Rosa&#39;s study</option>' in page

    def invite(label: str) -> str:
        response = admin.post_form(
            INVITATIONS, {"study_id": str(study_id), "label": label}, token_from=INVITATIONS
        )
        assert response.status_code == 200
        found = re.search(r'id="invite-link" value="([^"]+)"', response.text)
        assert found
        return found.group(1)

    used_link, revoked_link = invite("Reader A"), invite("Reader B")
    listing = admin.get(INVITATIONS).text
    # Only the hash is stored: the list never shows a link again.
    assert used_link not in listing and revoked_link not in listing
    assert listing.count('<td class="state">open</td>') == 2

    with _browser() as reader:
        path = used_link.removeprefix("http://testserver")
        reader.post_form(path, {}, token_from=path)
        assert reader.get(f"/read/{study_id}").status_code == 200

    with session_scope() as db:
        open_id = db.query(Invite).filter_by(label="Reader B").one().id
    revoked = _post(admin, f"{INVITATIONS}/{open_id}/revoke")
    assert f"Invitation #{open_id} revoked." in revoked
    assert re.search(r'<td class="state">used by reader-\d+-\d+-', revoked)
    assert '<td class="state">expired</td>' in revoked
    assert f"Invitation #{open_id} was not open." in _post(admin, f"{INVITATIONS}/{open_id}/revoke")
    with _browser() as stranger:
        gone = stranger.get(revoked_link.removeprefix("http://testserver"))
        assert gone.status_code == 410 and "expired" in gone.text
