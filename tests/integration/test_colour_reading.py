"""Issue 17, the reading page in colour: a study of colour photographs (scikit-learn's bundled
JPEGs, tests/colour_fixtures.py) walked by a reader over HTTP. Every image is served as one RGB
PNG format and length, a colour image keeps its colours, a grey image of the study comes as
three equal channels, and the blinding audit still finds nothing but the pixels."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import numpy as np
import pytest
from colour_fixtures import colour_crops
from PIL import Image as PILImage
from sqlalchemy import select
from web_client import session_clients

from app.auth.service import create_user
from app.db import session_scope
from app.domain.blinding import stored_png_length
from app.domain.reader_study import StudyDesign
from app.imagesets.service import create_image_set
from app.main import create_app
from app.models import Image, Role, ScheduleEntry, Study, StudyItem, User
from app.reading.blinding_audit import Served, audit_blinding
from app.studies.blinding_gate import methods_line, simulated_walks
from app.studies.design import DisplayOptions, ReadingOptions
from app.studies.service import assign_reader, create_study

DESIGN = StudyDesign(n_images=12, synthetic_share=0.5, repeat_share=0.25, seed=17)
READING = ReadingOptions(confidence="none", reason_required=False)
SIZE = 96


def _png(image: PILImage.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out.getvalue()


def _set(owner_id: int, name: str, rows: list[tuple[str, bytes, str]]) -> int:
    """An image set uploaded through ingest: rows of (file name, bytes, origin)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        lines = ["file,source,label"]
        for file_name, data, origin in rows:
            zf.writestr(file_name, data)
            lines.append(f"{file_name},{origin},{'flower' if 'flower' in file_name else 'china'}")
        zf.writestr("manifest.csv", "\n".join(lines) + "\n")
    buffer.seek(0)
    with session_scope() as db:
        image_set = create_image_set(
            db, owner_id=owner_id, name=name, default_origin=None, upload_path_or_file=buffer
        )
        return image_set.id


@pytest.fixture
def browser(sqlite_env) -> Iterator:  # type: ignore[no-untyped-def]
    app = create_app()
    with session_clients(app) as make:
        yield make


def test_a_colour_study_serves_every_image_as_one_rgb_format(browser) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as db:
        owner_id = create_user(db, username="dana", password=None, role=Role.researcher).id
        reader_id = create_user(db, username="reader", password=None, role=Role.reader).id
    # Real: colour photographs as JPEGs at 64 px, and two grey ones; synthetic: 48 px PNGs,
    # as a small colour GAN writes them.
    real = [
        (f"{name}-real-{i}.jpg", _png(crop, "JPEG"), "real")
        for name in ("china", "flower")
        for i, crop in enumerate(colour_crops(name, 4, side=64, seed=1))
    ] + [
        (f"china-grey-{i}.png", _png(crop.convert("L")), "real")
        for i, crop in enumerate(colour_crops("china", 2, side=64, seed=2))
    ]
    synthetic = [
        (f"{name}-gen-{i}.png", _png(crop), "synthetic")
        for name in ("china", "flower")
        for i, crop in enumerate(colour_crops(name, 4, side=48, seed=3))
    ]
    set_ids = [_set(owner_id, "Dermoscopy clinic", real), _set(owner_id, "GAN samples", synthetic)]
    with session_scope() as db:
        study = create_study(
            db, owner=db.get(User, owner_id), name="Colour realism", instructions="",  # type: ignore[arg-type]
            image_set_ids=set_ids, design=DESIGN, reading=READING,
            display_options=DisplayOptions(size=SIZE),
        )  # fmt: skip
        assign_reader(db, study, reader_id)
        study_id = study.id
        assert study.design["geometry"]["colour"] is True
        assert study.leakage_audit["passed"] is True, study.leakage_audit  # type: ignore[index]
        assert "8-bit RGB PNG" in (methods_line(study) or "")

    reader = browser(reader_id)
    walk: list[Served] = []
    # The whole walk over HTTP: one PNG header, one encoding, nothing but pixels differs.
    assert audit_blinding(reader.client, study_id, observations=walk) == []
    assert len(walk) == 12 + 3 and {o.status for o in walk} == {200}
    assert {o.byte_length for o in walk} == {stored_png_length(SIZE, SIZE, 3)}

    with session_scope() as db:
        names = dict(
            db.execute(
                select(ScheduleEntry.opaque_id, Image.original_name)
                .join(StudyItem, StudyItem.id == ScheduleEntry.study_item_id)
                .join(Image, Image.id == StudyItem.image_id)
                .where(ScheduleEntry.opaque_id.in_([o.opaque_id for o in walk]))
            ).all()
        )
    spreads: dict[str, float] = {}
    for served in walk:
        # A reload of the presentation: the reader's own image, as the page showed it.
        data = reader.get(f"/read/{study_id}/image/{served.opaque_id}").content
        assert len(data) == served.byte_length
        with PILImage.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB" and im.size == (SIZE, SIZE)
            pixels = np.asarray(im).astype(int)
        spreads[names[served.opaque_id]] = float(np.abs(pixels[..., 0] - pixels[..., 2]).mean())
    grey = {n: s for n, s in spreads.items() if "grey" in n}
    colour = {n: s for n, s in spreads.items() if "grey" not in n}
    assert colour and min(colour.values()) > 3, colour  # the photographs keep their colour
    assert grey and all(s == 0 for s in grey.values()), grey  # grey: three equal channels
    assert {"real", "gen"} <= {n.split("-")[1] for n in colour}


def test_a_study_of_grey_sets_stays_grey(browser) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as db:
        owner_id = create_user(db, username="erin", password=None, role=Role.researcher).id
    rows = [
        (f"{name}-{origin}-{i}.png", _png(crop.convert("L")), origin)
        for origin in ("real", "synthetic")
        for name in ("china", "flower")
        for i, crop in enumerate(colour_crops(name, 4, side=64, seed=4))
    ]
    set_ids = [
        _set(owner_id, "Grey real", [r for r in rows if r[2] == "real"]),
        _set(owner_id, "Grey synthetic", [r for r in rows if r[2] == "synthetic"]),
    ]
    with session_scope() as db:
        study = create_study(
            db, owner=db.get(User, owner_id), name="Grey realism", instructions="",  # type: ignore[arg-type]
            image_set_ids=set_ids, design=DESIGN, reading=READING,
            display_options=DisplayOptions(size=SIZE),
        )  # fmt: skip
        study_id = study.id
        assert "colour" not in study.design["geometry"]
    with session_scope() as db:
        walks = simulated_walks(db, db.get(Study, study_id), walks=1)  # type: ignore[arg-type]
    assert {p.byte_length for p in walks[0]} == {stored_png_length(SIZE, SIZE)}
