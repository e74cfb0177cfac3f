"""Login, sessions, CSRF, invitations and who may see what: SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from support import make_user
from web_client import WebClient

from app.db import session_scope
from app.main import create_app
from app.models import Invite, Job, LoginFailure, Study, StudyReader, User, WebSession
from app.models.types import utcnow


@pytest.fixture
def web(env) -> WebClient:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    make_user("bob", "bob-password", "researcher")
    make_user("root", "root-password", "admin")
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield WebClient(client)


def _count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_wrong_password_is_refused_with_a_clear_message(web: WebClient) -> None:
    response = web.login("alice", "not-her-password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert "sb_session" not in response.cookies
    assert _count(WebSession) == 0


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(web: WebClient) -> None:
    response = web.login("nobody", "whatever-password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


def test_login_rotates_the_session_and_logout_ends_it(web: WebClient) -> None:
    first = web.login("alice", "alice-password")
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie_1 = web.client.cookies.get("sb_session")
    assert web.get("/jobs").status_code == 200
    second = web.login("alice", "alice-password")
    cookie_2 = web.client.cookies.get("sb_session")
    assert second.status_code == 303 and cookie_1 != cookie_2
    # Rotation: the old session is gone from the server, not merely replaced in the browser.
    assert _count(WebSession) == 1
    logout = web.post_form("/logout", {}, token_from="/jobs", follow_redirects=False)
    assert logout.status_code == 303
    assert _count(WebSession) == 0
    web.client.cookies.set("sb_session", cookie_2)  # a stolen copy of the cookie is now useless
    page = web.get("/jobs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_session_cookie_flags(web: WebClient) -> None:
    response = web.login("alice", "alice-password")
    header = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "sb_session" in v
    )
    assert "HttpOnly" in header and "SameSite=lax" in header.replace("samesite", "SameSite")


def test_post_without_csrf_token_is_refused_and_changes_nothing(web: WebClient) -> None:
    web.login("alice", "alice-password")
    response = web.client.post("/studies", data={"name": "sneaky"})
    assert response.status_code == 403
    assert "security token" in response.text
    bad = web.client.post("/studies", data={"name": "sneaky", "csrf_token": "forged.token"})
    assert bad.status_code == 403
    htmx = web.client.post("/studies", data={"name": "x"}, headers={"HX-Request": "true"})
    assert htmx.status_code == 403
    assert _count(Study) == 0


def test_csrf_header_works_for_htmx_requests(web: WebClient) -> None:
    from web_client import csrf_from

    study_id = _study_of("alice")
    web.login("alice", "alice-password")
    token = csrf_from(web.get("/studies").text)
    response = web.client.post(
        f"/studies/{study_id}/invites",
        data={"label": "via htmx"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 200 and 'id="invite-link"' in response.text
    assert _count(Invite) == 1
    refused = web.client.post(
        f"/studies/{study_id}/invites", data={"label": "x"}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 403 and _count(Invite) == 1


def test_csrf_token_from_before_login_is_useless_after_login(web: WebClient) -> None:
    from web_client import csrf_from

    old_token = csrf_from(web.get("/login").text)
    web.login("alice", "alice-password")
    response = web.client.post("/studies", data={"name": "x", "csrf_token": old_token})
    assert response.status_code == 403


def test_unknown_and_foreign_job_ids_are_404_pages(web: WebClient) -> None:
    web.login("alice", "alice-password")
    assert "no job 999" in web.get("/jobs/999").text
    assert web.get("/jobs/999").status_code == 404
    with session_scope() as db:
        bob = db.scalar(select(User).where(User.username == "bob"))
        db.add(Job(type="image_stats", queue="cpu", params={}, owner_id=bob.id))
    with session_scope() as db:
        job_id = db.scalar(select(Job.id))
    assert web.get(f"/jobs/{job_id}").status_code == 404
    assert web.get("/jobs/not-a-number").status_code == 422
    assert web.get("/no/such/page").status_code == 404


def _study_of(username: str, name: str = "Study A") -> int:
    with session_scope() as db:
        owner = db.scalar(select(User).where(User.username == username))
        study = Study(name=name, owner_id=owner.id)
        db.add(study)
        db.flush()
        return study.id


def _study_with_invite(web: WebClient) -> tuple[int, str]:
    study_id = _study_of("alice")
    web.login("alice", "alice-password")
    page = web.post_form(
        f"/studies/{study_id}/invites", {"label": "Dr R"}, token_from=f"/studies/{study_id}"
    )
    link = page.text.split('id="invite-link" value="')[1].split('"')[0]
    web.post_form("/logout", {}, token_from="/studies")
    return study_id, link.split("/invite/")[1]


def test_invite_is_single_use_and_scopes_the_reader(web: WebClient) -> None:
    study_id, token = _study_with_invite(web)
    page = web.get(f"/invite/{token}")
    assert page.status_code == 200 and "Study A" in page.text
    assert _count(StudyReader) == 0  # looking at the link does not use it
    accepted = web.post_form(f"/invite/{token}", {}, token_from=f"/invite/{token}")
    assert accepted.status_code == 200 and "Study A" in accepted.text
    assert str(accepted.url).endswith(f"/read/{study_id}")
    assert _count(StudyReader) == 1
    # A reader sees reading pages only.
    assert web.get("/jobs").status_code == 403
    assert web.get("/studies").status_code == 403
    assert web.get(f"/studies/{study_id}").status_code == 403
    assert web.get("/read/12345").status_code == 403
    # Second use of the same link.
    again = web.client.post(f"/invite/{token}", data={"csrf_token": _token(web)})
    assert again.status_code == 410 and "already been used" in again.text
    assert _count(StudyReader) == 1


def _token(web: WebClient) -> str:
    from web_client import csrf_from

    return csrf_from(web.get("/read").text)


def test_expired_invite_is_refused(web: WebClient) -> None:
    _, token = _study_with_invite(web)
    with session_scope() as db:
        db.execute(update(Invite).values(expires_at=utcnow() - timedelta(minutes=1)))
    response = web.get(f"/invite/{token}")
    assert response.status_code == 410 and "expired" in response.text
    users_before = _count(User)
    accept = web.post_form(f"/invite/{token}", {}, token_from="/login")
    assert accept.status_code == 410
    assert _count(User) == users_before


def test_unknown_invite_token_is_404(web: WebClient) -> None:
    response = web.get("/invite/not-a-real-token")
    assert response.status_code == 404 and "not valid" in response.text


def test_researchers_see_only_their_own_studies(web: WebClient) -> None:
    study_id, _ = _study_with_invite(web)
    web.login("bob", "bob-password")
    assert web.get(f"/studies/{study_id}").status_code == 404
    assert "Study A" not in web.get("/studies").text
    web.post_form("/logout", {}, token_from="/studies")
    web.login("root", "root-password")
    assert web.get(f"/studies/{study_id}").status_code == 200


def test_anonymous_visitors_are_sent_to_login(web: WebClient) -> None:
    for path in ("/jobs", "/studies", "/read", "/jobs/1"):
        response = web.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"
    api = web.get("/jobs", headers={"Accept": "application/json"}, follow_redirects=False)
    assert api.status_code == 401


def test_security_headers(web: WebClient) -> None:
    headers = web.get("/login").headers
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def _set_failure_times(seconds_ago: int) -> None:
    with session_scope() as db:
        db.execute(update(LoginFailure).values(at=utcnow() - timedelta(seconds=seconds_ago)))


def test_repeated_wrong_passwords_lock_the_account_for_a_while(web: WebClient) -> None:
    for _ in range(5):
        assert web.login("alice", "guess-password").status_code == 401
    # Even the right password waits: a guesser must not learn that the sixth guess was right.
    blocked = web.login("ALICE", "alice-password")
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text and "Try again in 15 minutes" in blocked.text
    assert 890 <= int(blocked.headers["retry-after"]) <= 900
    assert "sb_session" not in blocked.cookies and _count(WebSession) == 0
    # Other accounts are unaffected (5 failures from one address is below the address limit).
    assert web.login("bob", "bob-password").status_code == 303
    _set_failure_times(901)
    assert web.login("alice", "alice-password").status_code == 303
    # Success forgives the account's failures.
    assert web.login("alice", "guess-password").status_code == 401
    assert web.login("alice", "alice-password").status_code == 303


def test_unknown_usernames_are_limited_like_real_ones(web: WebClient) -> None:
    for _ in range(5):
        assert web.login("nobody", "guess-password").status_code == 401
    assert web.login("nobody", "guess-password").status_code == 429


def test_many_usernames_from_one_address_are_limited(web: WebClient) -> None:
    # Password spraying: one guess per account, many accounts, from one client address.
    for i in range(30):
        assert web.login(f"user{i}", "Winter2026!").status_code == 401
    assert web.login("alice", "alice-password").status_code == 429
    with session_scope() as db:
        assert db.scalar(select(func.count()).select_from(LoginFailure)) == 30


def test_resolving_the_principal_leaves_no_transaction_open(web: WebClient) -> None:
    # FastAPI runs the endpoint in a later thread-pool hop than this dependency; a request that
    # held its pooled connection while waiting for a thread deadlocked 200 concurrent readers
    # until the pool timeout (found by bench/reading_load.py).
    from starlette.requests import Request

    from app.db import get_sessionmaker
    from app.deps import SESSION_COOKIE, optional_principal

    web.login("alice", "alice-password")
    cookie = web.client.cookies.get(SESSION_COOKIE)
    scope = {
        "type": "http",
        "headers": [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())],
        "app": web.client.app,  # type: ignore[attr-defined]
    }
    with get_sessionmaker()() as db:
        principal = optional_principal(Request(scope), db)
        assert principal is not None and principal.user.username == "alice"
        assert not db.in_transaction()


def test_old_parameter_hashes_sign_in_and_are_rehashed(web: WebClient) -> None:
    from argon2 import PasswordHasher
    from argon2.profiles import RFC_9106_LOW_MEMORY

    from app.auth import passwords

    old = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash("alice-password")
    with session_scope() as db:
        db.execute(update(User).where(User.username == "alice").values(password_hash=old))
    assert web.login("alice", "alice-password").status_code == 303
    with session_scope() as db:
        stored = db.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored != old and passwords.check_password("alice-password", stored) == (
        passwords.Verdict(True, False)
    )


def test_password_changed_during_the_check_refuses_the_sign_in(web: WebClient) -> None:
    # The check runs outside any transaction; what it checked must still be the password
    # when the session is created.
    from app.auth import service
    from app.auth.passwords import hash_password

    with session_scope() as db:
        candidate = service.find_candidate(db, "alice")
    assert candidate.user_id is not None
    with session_scope() as db:
        db.execute(
            update(User)
            .where(User.id == candidate.user_id)
            .values(password_hash=hash_password("changed-password"))
        )
    with session_scope() as db, pytest.raises(service.AuthError) as refused:
        service.complete_sign_in(db, candidate, hours=1)
    assert refused.value.status_code == 401
    assert _count(WebSession) == 0
    with session_scope() as db:
        token = service.complete_sign_in(db, service.find_candidate(db, "alice"), hours=1)
    assert token and _count(WebSession) == 1
