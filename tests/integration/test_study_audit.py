"""``synthbench study audit``: the blinding audit for any study from the command line, on a
study read through the services; it passes, leaves no trace, and fails on planted leaks."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from sqlalchemy import func, select, update
from study_fixtures import BuiltStudy, build_read_study
from typer.testing import CliRunner, Result

from app.cli import cli
from app.db import Base, session_scope
from app.imagesets.storage import blinded_path
from app.models import Image, Origin, ScheduleEntry, StudyItem, StudyReader


@pytest.fixture
def study(env) -> BuiltStudy:  # type: ignore[no-untyped-def]
    # Both databases: the walk runs in a transaction rolled back through savepoints.
    return build_read_study()


def _audit(*args: str) -> Result:
    return CliRunner().invoke(cli, ["study", "audit", *args])


def _counts() -> dict[str, int]:
    with session_scope() as db:
        return {
            t.name: int(db.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def _scored_keys(study_id: int) -> dict[Origin, str]:
    with session_scope() as db:
        return {
            origin: db.scalars(
                select(Image.key)
                .join(StudyItem, StudyItem.image_id == Image.id)
                .where(
                    StudyItem.study_id == study_id,
                    StudyItem.practice.is_(False),
                    Image.origin == origin,
                )
                .order_by(Image.id)
            ).first()
            for origin in Origin
        }


def _resave(key: str, **options: object) -> None:
    """Re-encode a stored image with Pillow: same pixels, another encoder."""
    path = blinded_path(key)
    with PILImage.open(path) as im:
        image = im.copy()
    size, mode = options.pop("size", None), options.pop("mode", None)
    if size:
        image = image.resize(size)  # type: ignore[arg-type]
    if mode:
        image = image.convert(mode)  # type: ignore[arg-type]
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    path.write_bytes(out.getvalue())


def test_audit_passes_and_leaves_no_trace(study: BuiltStudy) -> None:
    before = _counts()
    passed = _audit(str(study.study_id))
    assert passed.exit_code == 0, passed.output
    assert passed.stdout.startswith(f"Study {study.study_id} ('CXR realism'): blinding audit")
    assert "passed (48 stored opaque ids checked" in passed.stdout
    as_json = _audit(str(study.study_id), "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "study": {"id": study.study_id, "name": "CXR realism"},
        "ok": True,
        "stored_opaque_ids": 48,
        "findings": [],
    }
    # The walk answered every image as a throwaway reader, all rolled back.
    assert _counts() == before

    missing = _audit("999")
    assert missing.exit_code == 1 and "There is no study 999." in missing.stderr


def test_audit_fails_on_each_planted_leak(study: BuiltStudy) -> None:
    keys = _scored_keys(study.study_id)
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made by a GAN")
    _resave(keys[Origin.synthetic], pnginfo=text)  # metadata
    _resave(keys[Origin.real])  # no metadata, but another encoder's IDAT, zlib and filters
    with session_scope() as db:  # one reader's ids made sequential, hence guessable
        entries = db.scalars(
            select(ScheduleEntry)
            .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
            .where(StudyReader.user_id == study.readers["r1"])
        ).all()
        for entry in entries:
            db.execute(
                update(ScheduleEntry)
                .where(ScheduleEntry.id == entry.id)
                .values(opaque_id=f"study{study.study_id}-reader01-{entry.position:016d}")
            )
    before = _counts()
    failed = _audit(str(study.study_id), "--json")
    assert failed.exit_code == 1, failed.output
    findings = json.loads(failed.stdout)["findings"]
    assert any("PNG chunks ['IHDR', 'tEXt', 'IDAT'" in f for f in findings), findings
    assert any(f.startswith("images differ in PNG encoding") for f in findings), findings
    assert any(f.startswith("stored opaque ids: ids share a") for f in findings), findings
    assert not any("served opaque ids" in f for f in findings)  # fresh ones are still random
    assert _counts() == before

    # A different size or mode is reported as such; the plain listing names each finding.
    _resave(keys[Origin.synthetic], size=(256, 256), mode="RGB")
    listed = _audit(str(study.study_id))
    assert listed.exit_code == 1
    assert listed.stdout.startswith(f"Study {study.study_id} ('CXR realism'): ")
    assert "- images differ in size, bit depth or colour type: " in listed.stdout
    assert "(256, 256, 8, 2, 0, 0, 0)" in listed.stdout
