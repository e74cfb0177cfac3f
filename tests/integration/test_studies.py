"""Creating studies from image sets through the web form, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import make_user
from web_client import WebClient, csrf_from

from app.db import session_scope
from app.main import create_app
from app.models import Image, ImageSet, Origin, Study, StudyItem, StudyReader
from app.studies.design import load_design


def _image_set(owner_id: int, name: str, origin: Origin, n: int, source: str | None) -> int:
    with session_scope() as db:
        image_set = ImageSet(name=name, owner_id=owner_id)
        db.add(image_set)
        db.flush()
        for i in range(n):
            db.add(
                Image(
                    image_set_id=image_set.id,
                    key=f"{name}-{i:03d}",
                    origin=origin,
                    label="normal" if i % 2 else "pneumonia",
                    source=source,
                    original_name=f"{name}_{i}.png",
                    sha256=hashlib.sha256(f"{name}-{i}".encode()).hexdigest(),
                    source_format="png",
                    width=64,
                    height=64,
                )
            )
        return image_set.id


@pytest.fixture
def setup(env):  # type: ignore[no-untyped-def]
    alice = make_user("alice", "alice-password", "researcher")
    make_user("bob", "bob-password", "researcher")
    make_user("rita", "rita-password", "reader")
    real = _image_set(alice, "real", Origin.real, 20, None)
    fake = _image_set(alice, "fake", Origin.synthetic, 20, "ckpt-1")
    with TestClient(create_app()) as client:
        web = WebClient(client)
        web.login("alice", "alice-password")
        yield web, real, fake


def _form(real: int, fake: int, **overrides: str) -> dict:
    data = {
        "name": "Study 1",
        "n_images": "16",
        "synthetic_percent": "50",
        "practice_images": "2",
        "repeat_percent": "25",
        "stratify_label": "on",
        "reason_required": "on",
        "seed": "7",
    }
    data.update(overrides)
    return data


def _create_study(web: WebClient, real: int, fake: int) -> str:
    token = csrf_from(web.get("/studies/new").text)
    created = web.client.post(
        "/studies",
        data={**_form(real, fake), "image_set_ids": [str(real), str(fake)], "csrf_token": token},
        follow_redirects=False,
    )
    return str(created.headers["location"])


def _count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_study_from_two_sets_selects_stratified_images(setup) -> None:  # type: ignore[no-untyped-def]
    web, real, fake = setup
    token = csrf_from(web.get("/studies/new").text)
    response = web.client.post(
        "/studies",
        data={**_form(real, fake), "image_set_ids": [str(real), str(fake)], "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    with session_scope() as db:
        study = db.scalar(select(Study))
        items = db.execute(
            select(StudyItem.practice, Image.origin, Image.label)
            .join(Image, Image.id == StudyItem.image_id)
            .where(StudyItem.study_id == study.id)
        ).all()
        design = load_design(study.design)
    scored = [(o, lab) for p, o, lab in items if not p]
    assert len(scored) == 16 and sum(p for p, _, _ in items) == 2
    assert sorted(scored).count((Origin.real, "normal")) == 4
    assert sorted(scored).count((Origin.synthetic, "pneumonia")) == 4
    assert design.selection.seed == 7 and design.reading.reason_required
    page = web.get(response.headers["location"])
    assert "8 real + 8 synthetic, 2 practice" in page.text


def test_impossible_design_is_refused_and_nothing_is_stored(setup) -> None:  # type: ignore[no-untyped-def]
    web, real, fake = setup
    token = csrf_from(web.get("/studies/new").text)
    response = web.client.post(
        "/studies",
        data={
            **_form(real, fake, n_images="60"),
            "image_set_ids": [str(real), str(fake)],
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert "only 20 synthetic images are available" in response.text
    assert _count(Study) == 0 and _count(StudyItem) == 0


def test_someone_elses_image_set_cannot_be_used(setup) -> None:  # type: ignore[no-untyped-def]
    web, real, fake = setup
    web.post_form("/logout", {}, token_from="/studies")
    web.login("bob", "bob-password")
    token = csrf_from(web.get("/studies/new").text)
    response = web.client.post(
        "/studies",
        data={**_form(real, fake), "image_set_ids": [str(real)], "csrf_token": token},
    )
    assert response.status_code == 422
    assert f"no image set {real} that you can see" in response.text
    assert _count(Study) == 0


def test_assign_existing_reader_once(setup) -> None:  # type: ignore[no-untyped-def]
    web, real, fake = setup
    study_path = _create_study(web, real, fake)
    with session_scope() as db:
        from app.models import User

        rita = db.scalar(select(User.id).where(User.username == "rita"))
    for _ in range(2):  # a double submit assigns once
        web.post_form(f"{study_path}/readers", {"user_id": str(rita)}, token_from=study_path)
    assert _count(StudyReader) == 1
    assert "not started" in web.get(study_path).text


def test_sharing_a_study_lets_a_colleague_read_it_but_not_change_it(setup) -> None:  # type: ignore[no-untyped-def]
    web, real, fake = setup
    study_path = _create_study(web, real, fake)
    readable = [study_path, f"{study_path}/results", f"{study_path}/export.csv"]

    with TestClient(create_app()) as other:
        bob = WebClient(other)
        bob.login("bob", "bob-password")
        assert all(bob.get(p).status_code == 404 for p in readable)
        assert "Study 1" not in bob.get("/studies").text

        # Only researchers can be collaborators; a typo or a reader gets the same answer.
        for name in ("rita", "nobody"):
            refused = web.post_form(
                f"{study_path}/shares", {"username": name}, token_from=study_path
            )
            assert f"There is no researcher named &#39;{name}&#39;." in refused.text
        shared = web.post_form(f"{study_path}/shares", {"username": "bob"}, token_from=study_path)
        assert "Shared with bob to read." in shared.text
        again = web.post_form(f"{study_path}/shares", {"username": "bob"}, token_from=study_path)
        assert "already shared with bob" in again.text

        assert all(bob.get(p).status_code == 200 for p in readable)
        listing = bob.get("/studies").text
        assert "Study 1" in listing and "alice (shared with you)" in listing
        page = bob.get(study_path).text
        assert "Shared with you to read." in page and "Create invitation link" not in page
        for action, data in (
            ("invites", {"label": "x"}),
            ("readers", {"user_id": "1"}),
            ("shares", {"username": "bob"}),
        ):
            changed = bob.post_form(f"{study_path}/{action}", data, token_from=study_path)
            assert changed.status_code == 403, action
            assert "only its owner can change it" in changed.text
        assert _count(StudyReader) == 0

        bob_id = _user_id("bob")
        web.post_form(f"{study_path}/shares/{bob_id}/remove", {}, token_from=study_path)
        assert all(bob.get(p).status_code == 404 for p in readable)


def _user_id(username: str) -> int:
    from app.models import User

    with session_scope() as db:
        return int(db.scalar(select(User.id).where(User.username == username)))
