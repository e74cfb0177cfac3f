"""Image set upload and browsing through the app: SQLite and PostgreSQL, real files on disk."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import func, select
from support import make_user
from web_client import WebClient, csrf_from

from app.config import get_settings
from app.db import session_scope
from app.imagesets.storage import blinded_path, images_root, original_path
from app.main import create_app
from app.models import Image, ImageSet, Origin
from ml.data.collections import available_collections

CXR = available_collections()["paediatric-cxr"].files


def make_zip(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_ZIP = make_zip(
    ("normal.jpeg", CXR[0].read_bytes()),
    ("pneumonia.jpeg", CXR[9].read_bytes()),
    ("gen/0001.jpeg", CXR[4].read_bytes()),
    ("manifest.csv", b"file,source,label,group\nnormal.jpeg,real,normal,\n"
     b"pneumonia.jpeg,real,pneumonia,\ngen/0001.jpeg,synthetic,normal,ckpt-20k\n"),
)  # fmt: skip


@pytest.fixture
def web(env) -> WebClient:  # type: ignore[no-untyped-def]
    # Only alice here: each user costs an argon2 hash, so tests add the others they need.
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield WebClient(client)


def upload(web: WebClient, data: bytes, *, name: str = "Set A", origin: str = "", **kw):
    token = csrf_from(web.get("/imagesets").text)
    return web.client.post(
        "/imagesets",
        data={"csrf_token": token, "name": name, "origin": origin, "description": "CXR test"},
        files={"file": ("set.zip", data, "application/zip")},
        follow_redirects=False,
        **kw,
    )


def count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def stored_files() -> list[Path]:
    root = images_root()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_upload_stores_rows_and_files_and_shows_the_set(web: WebClient) -> None:
    web.login("alice", "alice-password")
    response = upload(web, GOOD_ZIP)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    with session_scope() as db:
        image_set = db.scalar(select(ImageSet))
        images = list(db.scalars(select(Image).order_by(Image.original_name)))
    assert location == f"/imagesets/{image_set.id}"
    assert (image_set.name, image_set.description, image_set.kind) == (
        "Set A",
        "CXR test",
        "upload",
    )
    assert [(i.original_name, i.origin, i.label, i.source) for i in images] == [
        ("gen/0001.jpeg", Origin.synthetic, "normal", "ckpt-20k"),
        ("normal.jpeg", Origin.real, "normal", None),
        ("pneumonia.jpeg", Origin.real, "pneumonia", None),
    ]
    files = stored_files()
    assert len(files) == 6  # an original and a blinded copy each, nothing left in staging
    for image in images:
        assert original_path(image.key, "jpeg").is_file()
        assert blinded_path(image.key).is_file()
        assert "normal" not in str(blinded_path(image.key))
    page = web.get(location)
    assert page.status_code == 200
    assert "created with 3 images" in page.text
    assert "pneumonia.jpeg" in page.text and "ckpt-20k" in page.text
    picture = web.get(f"{location}/images/{images[0].id}")
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert picture.headers["cache-control"] == "private, max-age=3600"
    assert "content-disposition" not in picture.headers
    assert PILImage.open(io.BytesIO(picture.content)).size == (512, 512)
    listing = web.get("/imagesets").text
    assert "Set A" in listing


def test_bad_upload_is_422_lists_every_problem_and_stores_nothing(web: WebClient) -> None:
    web.login("alice", "alice-password")
    upload(web, make_zip(("first.jpeg", CXR[1].read_bytes())), name="Existing", origin="real")
    files_before, images_before = stored_files(), count(Image)
    bad = make_zip(
        ("ok.jpeg", CXR[2].read_bytes()),
        ("notes.png", b"not an image at all"),
        ("../escape.jpeg", CXR[3].read_bytes()),
        ("unlisted.jpeg", CXR[5].read_bytes()),
        ("manifest.csv", b"file,source\nok.jpeg,real\nnotes.png,gan\nmissing.png,real\n"),
    )
    response = upload(web, bad, name="Broken set")
    assert response.status_code == 422
    text = response.text
    assert "Nothing was stored" in text and "5 problems" in text
    for fragment in (
        "../escape.jpeg: unsafe path",
        "unknown source &#39;gan&#39;",
        "missing.png is not in the zip",
        "notes.png: not a supported image",
        "unlisted.jpeg: not listed in manifest.csv",
    ):
        assert fragment in text, fragment
    assert 'value="Broken set"' in text  # the form keeps what was typed
    # A problem found only after good images were staged: the staged files go too.
    late = make_zip(("ok.jpeg", CXR[2].read_bytes()), ("zz.png", b"text"))
    assert upload(web, late, name="Late", origin="synthetic").status_code == 422
    assert (count(ImageSet), count(Image)) == (1, images_before)
    assert stored_files() == files_before


def test_missing_file_and_bad_origin_are_422(web: WebClient) -> None:
    web.login("alice", "alice-password")
    token = csrf_from(web.get("/imagesets").text)
    response = web.client.post(
        "/imagesets", data={"csrf_token": token, "name": "x", "origin": "alien"}
    )
    assert response.status_code == 422
    assert "Choose a zip file" in response.text and "real or synthetic" in response.text
    assert count(ImageSet) == 0


def test_oversized_upload_is_413_before_the_body_is_read(
    web: WebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    web.login("alice", "alice-password")
    token = csrf_from(web.get("/imagesets").text)
    monkeypatch.setenv("SYNTHBENCH_MAX_UPLOAD_BYTES", "1000")
    get_settings.cache_clear()
    try:
        response = web.client.post(
            "/imagesets",
            data={"csrf_token": token, "name": "big", "origin": "real"},
            files={"file": ("set.zip", GOOD_ZIP, "application/zip")},
        )
        assert response.status_code == 413
        assert "over the 1,000 bytes limit" in response.text
        # 413 rather than 403 without a token: the length is checked before the CSRF check,
        # which is what reads (and spools to disk) the whole body.
        no_token = web.client.post(
            "/imagesets", files={"file": ("set.zip", GOOD_ZIP, "application/zip")}
        )
        assert no_token.status_code == 413
        chunked = web.client.post(
            "/imagesets",
            content=iter([b"--x\r\n"]),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 411
    finally:
        # Not monkeypatch.undo(): that would also undo the env fixture's settings.
        monkeypatch.delenv("SYNTHBENCH_MAX_UPLOAD_BYTES")
        get_settings.cache_clear()
    assert count(ImageSet) == 0 and stored_files() == []


def test_other_researchers_get_404_and_admins_see_the_set(web: WebClient) -> None:
    make_user("bob", "bob-password", "researcher")
    make_user("root", "root-password", "admin")
    web.login("alice", "alice-password")
    location = upload(web, GOOD_ZIP).headers["location"]
    with session_scope() as db:
        image_id = db.scalar(select(Image.id))
    web.post_form("/logout", {}, token_from="/imagesets")
    web.login("bob", "bob-password")
    page = web.get(location)
    assert page.status_code == 404 and "no image set" in page.text
    assert web.get(f"{location}/images/{image_id}").status_code == 404
    assert "Set A" not in web.get("/imagesets").text
    web.post_form("/logout", {}, token_from="/imagesets")
    web.login("root", "root-password")
    assert web.get(location).status_code == 200
    assert web.get(f"{location}/images/{image_id}").status_code == 200
    assert web.get(f"{location}/images/{image_id + 999}").status_code == 404


def test_readers_get_403(web: WebClient) -> None:
    make_user("rita", "rita-password", "reader")
    web.login("rita", "rita-password")
    assert web.get("/imagesets").status_code == 403
    token = csrf_from(web.get("/read").text)
    response = web.client.post(
        "/imagesets",
        data={"csrf_token": token, "name": "x", "origin": "real"},
        files={"file": ("set.zip", GOOD_ZIP, "application/zip")},
    )
    assert response.status_code == 403
    assert count(ImageSet) == 0


def test_upload_without_csrf_token_is_403_and_stores_nothing(web: WebClient) -> None:
    web.login("alice", "alice-password")
    response = web.client.post(
        "/imagesets",
        data={"name": "sneaky", "origin": "real"},
        files={"file": ("set.zip", GOOD_ZIP, "application/zip")},
    )
    assert response.status_code == 403 and "security token" in response.text
    assert count(ImageSet) == 0 and stored_files() == []
