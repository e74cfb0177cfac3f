"""The reader's side of a study, on SQLite and PostgreSQL: schedule, resume, answers, access and
blinding. Images are real paediatric chest X-rays; the "synthetic" ones are derived from them
and arrive as a PNG with tEXt chunks and a JPEG with EXIF, in other sizes, as a generator's
output would, so blinding has something to hide."""

from __future__ import annotations

import functools
import hashlib
import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import event, func, select, update
from support import make_user
from web_client import WebClient, csrf_from

from app.auth.service import create_user, start_session
from app.auth.tokens import sign
from app.db import get_sessionmaker, session_scope
from app.deps import SESSION_COOKIE
from app.domain.answers import AnswerInput
from app.domain.blinding import canonical_png, png_chunk_types
from app.domain.reader_study import (
    ImageRef,
    Selection,
    StudyDesign,
    reader_schedule,
    reader_seed,
    select_images,
)
from app.imagesets.storage import blinded_path
from app.main import create_app
from app.models import (
    Answer,
    Image,
    ImageSet,
    Origin,
    Role,
    ScheduleEntry,
    Study,
    StudyItem,
    StudyReader,
    User,
)
from app.reading import service
from app.reading.blinding_audit import audit_blinding, html_problems
from app.studies.design import ReadingOptions, SecondQuestion, StoredDesign
from ml.data.collections import available_collections
from ml.data.images import load_image

PASSWORD = "reader-password-1"
DESIGN = StoredDesign(
    selection=StudyDesign(
        n_images=12, synthetic_share=0.5, repeat_share=0.25, practice_images=2, seed=7
    ),
    reading=ReadingOptions(
        confidence="1-5",
        reason_required=True,
        second_question=SecondQuestion("Is there consolidation?", ("yes", "no")),
    ),
)
TOTAL = 2 + 12 + 3  # practice + scored + ceil(25% of 12) repeats
VALID = {"answer": "real", "confidence": "4", "second_answer": "yes"}


@dataclass(frozen=True)
class Source:
    name: str
    origin: Origin
    label: str
    source: str | None
    data: bytes  # the upload as it arrived


@functools.lru_cache(maxsize=1)
def _sources() -> tuple[tuple[Source, bytes], ...]:
    """Each upload with its blinded PNG, decoded once per test run."""
    cxr = available_collections()["paediatric-cxr"]
    uploads = [
        Source(path.name, Origin.real, label, None, path.read_bytes())
        for path, label in zip(cxr.files, cxr.labels, strict=True)
    ]
    for i, (path, label) in enumerate(zip(cxr.files[:8], cxr.labels[:8], strict=True)):
        with PILImage.open(path) as im:
            grey = im.convert("L").transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        out = io.BytesIO()
        if i % 2:
            info = PngImagePlugin.PngInfo()
            info.add_text("Software", "GeneratorX-v2.1 synthetic")
            grey.resize((400, 520)).save(out, format="PNG", pnginfo=info)
            name, source = f"gen_{i:04d}_seed42.png", "ganA-64k"
        else:
            exif = PILImage.Exif()
            exif[0x0131] = "GeneratorY synthetic sampler"
            grey.resize((640, 480)).save(out, format="JPEG", quality=90, exif=exif.tobytes())
            name, source = f"sample_{i:04d}.jpeg", "ganB-128k"
        uploads.append(Source(name, Origin.synthetic, label, source, out.getvalue()))
    return tuple((u, canonical_png(load_image(u.data))) for u in uploads)


def _build_study(owner_id: int, reader_ids: list[int], *, name: str = "CXR realism") -> int:
    """A study as the studies feature would leave it: images stored, items selected, readers
    assigned in order."""
    with session_scope() as db:
        sets = {o: ImageSet(name=f"{o.value} set", owner_id=owner_id) for o in Origin}
        db.add_all(sets.values())
        db.flush()
        images = []
        for upload, png in _sources():
            key = secrets.token_hex(16)
            path = blinded_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            with PILImage.open(io.BytesIO(upload.data)) as im:
                width, height = im.size
            images.append(
                Image(
                    image_set_id=sets[upload.origin].id,
                    key=key,
                    origin=upload.origin,
                    label=upload.label,
                    source=upload.source,
                    original_name=upload.name,
                    sha256=hashlib.sha256(upload.data).hexdigest(),
                    source_format=upload.name.rsplit(".", 1)[1],
                    width=width,
                    height=height,
                )
            )
        db.add_all(images)
        study = Study(
            name=name,
            instructions="Decide whether each chest X-ray is real or synthetic.",
            owner_id=owner_id,
            design=DESIGN.to_json(),
        )
        db.add(study)
        db.flush()
        refs = {i.key: ImageRef(i.key, i.origin.value, i.label, i.source) for i in images}
        pools = [[r for r in refs.values() if r.origin == o] for o in ("real", "synthetic")]
        chosen = select_images(*pools, DESIGN.selection)
        by_key = {i.key: i for i in images}
        for practice, part in ((False, chosen.scored), (True, chosen.practice)):
            db.add_all(
                StudyItem(study_id=study.id, image_id=by_key[r.key].id, practice=practice)
                for r in part
            )
        for user_id in reader_ids:
            db.add(StudyReader(study_id=study.id, user_id=user_id))
            db.flush()  # ids in this order: the join order
        return study.id


def _owner(username: str) -> int:
    # No password: argon2 costs a quarter second a hash and login is test_auth's business.
    with session_scope() as db:
        return create_user(db, username=username, password=None, role=Role.researcher).id


@pytest.fixture
def world(env) -> dict[str, int]:  # type: ignore[no-untyped-def]
    ids = {
        "alice": _owner("alice"),
        "r1": make_user("r1", PASSWORD, "reader"),
        "r2": make_user("r2", PASSWORD, "reader"),
    }
    ids["study"] = _build_study(ids["alice"], [ids["r1"], ids["r2"]])
    return ids


@pytest.fixture
def login(world) -> Iterator:  # type: ignore[no-untyped-def]
    """A browser signed in as someone: a real server-side session behind a signed cookie."""
    app = create_app()
    clients: list[TestClient] = []

    def make(username: str, *, study_scope: int | None = None) -> WebClient:
        with session_scope() as db:
            user = db.scalars(select(User).where(User.username == username)).one()
            token, _ = start_session(db, user, hours=1, study_id=study_scope)
        client = TestClient(app, base_url="http://testserver").__enter__()
        clients.append(client)
        client.cookies.set(SESSION_COOKIE, sign(app.state.secret_key, "session", token))
        return WebClient(client)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _entries(username: str, study_id: int) -> list[ScheduleEntry]:
    with session_scope() as db:
        return list(
            db.scalars(
                select(ScheduleEntry)
                .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
                .join(User, User.id == StudyReader.user_id)
                .where(User.username == username, StudyReader.study_id == study_id)
                .order_by(ScheduleEntry.position)
            )
        )


def _reader_row(username: str, study_id: int) -> StudyReader:
    with session_scope() as db:
        return db.scalars(
            select(StudyReader)
            .join(User, User.id == StudyReader.user_id)
            .where(User.username == username, StudyReader.study_id == study_id)
        ).one()


def _count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _shown_entry(html: str) -> str:
    match = re.search(r'name="entry" value="([^"]+)"', html)
    assert match, "no image on the page"
    return match.group(1)


def _post(web: WebClient, study_id: int, entry: str, *, htmx: bool = True, **fields: str):  # type: ignore[no-untyped-def]
    token = csrf_from(web.get("/read").text)
    data = {"csrf_token": token, "entry": entry, **fields}
    headers = {"HX-Request": "true"} if htmx else {}
    return web.client.post(
        f"/read/{study_id}/answer", data=data, headers=headers, follow_redirects=False
    )


def test_schedule_built_on_first_visit_reproducible_and_per_reader(world, login) -> None:  # type: ignore[no-untyped-def]
    study_id = world["study"]
    assert _count(ScheduleEntry) == 0
    # The second reader to join visits first: pseudonym and seed follow join order, not visits.
    r2 = login("r2")
    page = r2.get(f"/read/{study_id}")
    assert page.status_code == 200
    second = _entries("r2", study_id)
    assert len(second) == TOTAL
    assert _reader_row("r2", study_id).pseudonym == "R02"
    first_page_entry = _shown_entry(page.text)
    assert first_page_entry == second[0].opaque_id and second[0].first_shown_at is not None
    assert f'href="/read/{study_id}/image/{second[1].opaque_id}"' in page.text  # prefetch
    assert 'alt="Image 1 of 17"' in page.text and ">1 / 17<" in page.text
    assert 'id="practice-banner"' in page.text
    # A reload changes nothing: same sequence, same ids, same first showing.
    r2.get(f"/read/{study_id}")
    assert [(e.opaque_id, e.first_shown_at) for e in _entries("r2", study_id)] == [
        (e.opaque_id, e.first_shown_at) for e in second
    ]

    # r1's first visit is two requests at once: both build the same order, one insert wins.
    maker = get_sessionmaker()

    def reader(db):  # type: ignore[no-untyped-def]
        study = db.get(Study, study_id)
        row = db.scalars(
            select(StudyReader).where(
                StudyReader.study_id == study_id, StudyReader.user_id == world["r1"]
            )
        ).one()
        return study, row

    raced: list[str] = []
    with maker() as loser, maker() as winner:
        study, row = reader(loser)

        def win_first(*_args) -> None:  # type: ignore[no-untyped-def]
            raced.append("schedule")
            service.ensure_schedule(winner, *reader(winner))
            winner.commit()

        event.listen(loser, "before_flush", win_first, once=True)
        service.ensure_schedule(loser, study, row)
        loser.commit()
    r1 = login("r1")
    assert _shown_entry(r1.get(f"/read/{study_id}").text) == _entries("r1", study_id)[0].opaque_id
    first = _entries("r1", study_id)
    row = _reader_row("r1", study_id)
    assert row.pseudonym == "R01" and row.started_at is not None
    assert row.reader_seed == reader_seed(7, 0) & service.SEED_MASK
    assert _reader_row("r2", study_id).reader_seed == reader_seed(7, 1) & service.SEED_MASK

    # The stored seed alone rebuilds the stored order.
    with session_scope() as db:
        items = db.scalars(select(StudyItem).where(StudyItem.study_id == study_id)).all()
        origin = {i.id: db.get(Image, i.image_id).origin.value for i in items}
    selection = Selection(
        scored=tuple(ImageRef(str(i.id), origin[i.id]) for i in items if not i.practice),
        practice=tuple(ImageRef(str(i.id), origin[i.id]) for i in items if i.practice),
    )
    rebuilt = reader_schedule(selection, row.reader_seed, 0.25)
    assert [(int(s.image_key), s.practice, s.repeat) for s in rebuilt] == [
        (e.study_item_id, e.practice, e.repeat) for e in first
    ]
    # Different readers, different orders over the same images; every id fresh and unique.
    assert [e.study_item_id for e in first] != [e.study_item_id for e in second]
    # (each reader repeats their own draw of images, so compare the sets)
    assert {e.study_item_id for e in first} == {e.study_item_id for e in second}
    ids = [e.opaque_id for e in [*first, *second]]
    assert len(set(ids)) == 2 * TOTAL
    assert [e.practice for e in first] == [True, True] + [False] * (TOTAL - 2)
    assert sum(e.repeat for e in first) == 3

    # And two submits of one answer at once store it once.
    entries = first
    with maker() as loser, maker() as winner:
        study, row = reader(loser)
        form = AnswerInput(answer="real", confidence="2", second_answer="no")

        def answer_first(*_args) -> None:  # type: ignore[no-untyped-def]
            raced.append("answer")
            service.record_answer(winner, reader(winner)[1], entries[0].opaque_id, form)
            winner.commit()

        event.listen(loser, "before_flush", answer_first, once=True)
        stored = service.record_answer(loser, row, entries[0].opaque_id, form)
        loser.commit()
        assert stored.answer == "real"
    assert _count(Answer) == 1 and raced == ["schedule", "answer"]


def test_resume_finish_and_done_page(world, login) -> None:  # type: ignore[no-untyped-def]
    study_id = world["study"]
    web = login("r1")
    assert web.get(f"/read/{study_id}/done", follow_redirects=False).status_code == 303
    web.get(f"/read/{study_id}")
    entries = _entries("r1", study_id)
    fragments = []
    for entry in entries[:3]:
        response = _post(web, study_id, entry.opaque_id, **VALID)
        assert response.status_code == 200, response.text
        fragments.append(response.text)
    # Practice answers say whether they were right; the second closes the practice block.
    assert 'id="practice-feedback"' in fragments[0]
    assert "Practice is over" in fragments[1]
    assert 'id="practice-feedback"' not in fragments[2]
    assert fragments[2].lstrip().startswith('<section id="reading-panel"')
    assert ">4 / 17<" in fragments[2] and entries[3].opaque_id in fragments[2]
    with session_scope() as db:
        reader = db.get(StudyReader, _reader_row("r1", study_id).id)
        assert service.current_entry(db, reader).position == 3
        assert service.progress(db, reader) == (3, TOTAL)

    # Their study list shows how far they got and offers to continue.
    listing = web.get("/read").text
    assert f"3 / {TOTAL}" in listing and ">Continue</a>" in listing

    # A new browser session for the same person lands exactly where they stopped.
    again = login("r1")
    assert _shown_entry(again.get(f"/read/{study_id}").text) == entries[3].opaque_id

    # A plain form post (no htmx) answers too and comes back to the reading page.
    plain = _post(again, study_id, entries[3].opaque_id, htmx=False, **VALID)
    assert plain.status_code == 303 and plain.headers["location"] == f"/read/{study_id}"
    assert _shown_entry(again.get(plain.headers["location"]).text) == entries[4].opaque_id
    for entry in entries[4:]:
        last = _post(again, study_id, entry.opaque_id, **VALID)
        assert last.status_code == 200
    assert "Thank you — 17 images rated" in last.text and 'data-state="done"' in last.text
    assert _reader_row("r1", study_id).finished_at is not None
    done = again.get(f"/read/{study_id}/done")
    assert done.status_code == 200 and "Thank you — 17 images rated" in done.text
    assert "Thank you — 17 images rated" in again.get(f"/read/{study_id}").text
    with session_scope() as db:
        answers = db.scalars(select(Answer)).all()
    assert len(answers) == TOTAL
    assert all(a.shown_at is not None and a.confidence == 4.0 for a in answers)


INVALID = [
    ({"answer": "fake"}, "Please say briefly why you think this image is fake."),
    ({"answer": "uncertain", "reason": "   "}, "Please say briefly why you are uncertain."),
    ({"answer": "maybe"}, "Choose Real, Fake or Uncertain."),
    ({"confidence": "6"}, "from 1 to 5, not 6"),
    ({"confidence": "0"}, "from 1 to 5, not 0"),
    ({"confidence": "3.5"}, "Confidence must be a whole number from 1 to 5."),
    ({"confidence": ""}, "Set your confidence (1 to 5)."),
    ({"second_answer": "perhaps"}, "choose yes, no"),
    ({"answer": "fake", "reason": "x" * 2001}, "keep it to 2000"),
    ({"duration_ms": "-4"}, "reading time must be a whole number"),
    ({"duration_ms": "86400001"}, "reading time must be a whole number"),
]


def test_answer_rules(world, login) -> None:  # type: ignore[no-untyped-def]
    study_id = world["study"]
    r1, r2 = login("r1"), login("r2")
    r1.get(f"/read/{study_id}")
    r2.get(f"/read/{study_id}")
    mine, theirs = _entries("r1", study_id), _entries("r2", study_id)
    current = mine[0].opaque_id

    # Invalid answers: a clear message in the error slot only, so what the reader chose and
    # typed stays on screen; nothing stored.
    for fields, message in INVALID:
        response = _post(r1, study_id, current, **{**VALID, **fields})
        assert response.status_code == 422, fields
        assert message in response.text, (fields, response.text)
        assert response.headers["HX-Retarget"] == "#answer-error"
        assert response.text.startswith('<div id="answer-error"'), fields
    plain = _post(r1, study_id, current, htmx=False, **{**VALID, "answer": "fake"})
    assert plain.status_code == 422 and "<html" in plain.text and "why you think" in plain.text
    assert _count(Answer) == 0

    # A double submit stores one answer; a different second answer is refused.
    first = _post(r1, study_id, current, **VALID, duration_ms="2100")
    double = _post(r1, study_id, current, **VALID, duration_ms="2350")
    assert first.status_code == double.status_code == 200
    assert _count(Answer) == 1
    changed = _post(r1, study_id, current, **{**VALID, "answer": "fake", "reason": "too smooth"})
    assert changed.status_code == 409 and "already answered" in changed.text
    with session_scope() as db:
        stored = db.scalars(select(Answer)).one()
    assert (stored.answer, stored.reason, stored.duration_ms) == ("real", None, 2100)

    ahead = _post(r1, study_id, mine[5].opaque_id, **VALID)
    assert ahead.status_code == 409 and "This image is not the one being shown." in ahead.text

    # Someone else's entry and a made-up one are the same 404, for answers and for images.
    assert _post(r1, study_id, theirs[0].opaque_id, **VALID).status_code == 404
    assert _post(r1, study_id, "no-such-id", **VALID).status_code == 404
    foreign = r1.get(f"/read/{study_id}/image/{theirs[0].opaque_id}")
    unknown = r1.get(f"/read/{study_id}/image/{'x' * 32}")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.text == unknown.text
    assert r1.get(f"/read/{study_id}/image/{mine[1].opaque_id}").status_code == 200
    assert _count(Answer) == 1

    reasoned = {**VALID, "answer": "fake", "reason": " ribs too even "}
    assert _post(r1, study_id, mine[1].opaque_id, **reasoned).status_code == 200
    with session_scope() as db:
        reasons = db.scalars(select(Answer.reason).order_by(Answer.id)).all()
    assert reasons == [None, "ribs too even"]


def test_who_may_read(world, login) -> None:  # type: ignore[no-untyped-def]
    study_a = world["study"]
    carol = _owner("carol")
    with session_scope() as db:
        study_b = Study(name="Study B", owner_id=world["alice"], design=DESIGN.to_json())
        db.add(study_b)
        db.flush()
        db.add(StudyReader(study_id=study_b.id, user_id=world["r2"]))
        db.add(StudyReader(study_id=study_a, user_id=carol))
        study_b_id = study_b.id

    r1 = login("r1")
    assert r1.get(f"/read/{study_b_id}").status_code == 403
    assert r1.get(f"/read/{study_b_id}/done").status_code == 403
    assert _post(r1, study_b_id, "anything", **VALID).status_code == 403
    assert r1.get(f"/read/{study_b_id}/image/{'x' * 32}").status_code == 404
    assert r1.get("/read/999999").status_code == 403

    # A session scoped to study B (as an invitation makes) cannot open study A, although
    # the same person reads both.
    assert login("r2").get(f"/read/{study_a}").status_code == 200
    r2 = login("r2", study_scope=study_b_id)
    assert r2.get(f"/read/{study_a}").status_code == 403
    assert _post(r2, study_a, "anything", **VALID).status_code == 403
    empty = r2.get(f"/read/{study_b_id}")
    assert empty.status_code == 200 and 'id="reading-state"' in empty.text

    # A researcher assigned as a reader reads; the owner, not assigned, does not.
    assert 'id="reading-panel"' in login("carol").get(f"/read/{study_a}").text
    assert login("alice").get(f"/read/{study_a}").status_code == 403


def test_blinding_audit_passes_and_catches_a_leak(world, login) -> None:  # type: ignore[no-untyped-def]
    study_id = world["study"]
    web = login("r1")
    web.get(f"/read/{study_id}")
    entry = _entries("r1", study_id)[0]
    image = web.get(f"/read/{study_id}/image/{entry.opaque_id}")
    assert set(image.headers) == {
        "content-type",
        "content-length",
        "cache-control",
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "x-frame-options",
        "cross-origin-opener-policy",
    }
    assert image.headers["cache-control"] == "private, max-age=600"

    # Both origins, as served: the same bare 512x512 8-bit grey PNG.
    with session_scope() as db:
        keys = {
            origin: db.scalars(
                select(Image.key)
                .join(StudyItem, StudyItem.image_id == Image.id)
                .where(StudyItem.study_id == study_id, Image.origin == origin)
            ).first()
            for origin in Origin
        }
    for key in keys.values():
        data = blinded_path(key).read_bytes()
        assert png_chunk_types(data) == ["IHDR", "IDAT", "IEND"]
        with PILImage.open(io.BytesIO(data)) as im:
            assert (im.size, im.mode, im.info) == ((512, 512), "L", {})

    assert audit_blinding(web.client, study_id) == []
    assert _reader_row("r1", study_id).finished_at is not None

    # The audit is not vacuous: an original name that shows up in the page is reported.
    with session_scope() as db:
        db.execute(
            update(Image)
            .where(Image.key == keys[Origin.synthetic])
            .values(original_name="Submit.png")
        )
    problems = audit_blinding(login("r2").client, study_id)
    assert any("contains 'Submit'" in p for p in problems)
    from app.reading.blinding_audit import _facts

    leaky = '<p class="hint">This one is synthetic</p><img src="/read/1/image/abc.png">'
    found = html_problems(leaky, _facts(study_id), "probe", feedback_allowed=False)
    assert any("'synthetic'" in p for p in found) and any("abc.png" in p for p in found)
