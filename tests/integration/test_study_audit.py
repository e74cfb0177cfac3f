"""``synthbench study audit``: the blinding audit for any study from the command line, on a
study read through the services; it passes, leaves no trace, and fails on planted leaks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, select, update
from study_fixtures import BuiltStudy, build_read_study
from typer.testing import CliRunner, Result

from app.cli import cli
from app.db import Base, session_scope
from app.imagesets.storage import display_path
from app.models import Image, Origin, ScheduleEntry, StudyItem, StudyReader
from app.studies.blinding_gate import CHANNELS


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


def _display_keys(study_id: int, origin: Origin) -> list[str]:
    with session_scope() as db:
        return list(
            db.scalars(
                select(Image.key)
                .join(StudyItem, StudyItem.image_id == Image.id)
                .where(StudyItem.study_id == study_id, Image.origin == origin)
            )
        )


def _replace_rendering(study_id: int, key: str, shape: tuple[int, int]) -> None:
    """What a second rendering pipeline would leave: another size for one origin."""
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with display_path(study_id, key).open("wb") as fh:
        np.save(fh, pixels, allow_pickle=False)


def test_audit_passes_and_leaves_no_trace(study: BuiltStudy) -> None:
    before = _counts()
    passed = _audit(str(study.study_id))
    assert passed.exit_code == 0, passed.output
    assert passed.stdout.startswith(f"Study {study.study_id} ('CXR realism'): blinding audit")
    assert "passed (48 stored opaque ids checked" in passed.stdout
    as_json = _audit(str(study.study_id), "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    channels = report.pop("channels")
    assert report == {
        "study": {"id": study.study_id, "name": "CXR realism"},
        "ok": True,
        "stored_opaque_ids": 48,
        "findings": [],
    }
    # Every non-content channel, fitted against the truth over three throwaway readers.
    assert [c["channel"] for c in channels] == list(CHANNELS)
    assert all(c["passed"] and c["walks"] == 3 for c in channels), channels
    assert "Leakage channels (AUC against the truth" in passed.stdout
    # The walk answered every image as a throwaway reader, all rolled back.
    assert _counts() == before

    missing = _audit("999")
    assert missing.exit_code == 1 and "There is no study 999." in missing.stderr


def test_audit_fails_on_each_planted_leak(study: BuiltStudy) -> None:
    # Served bytes are written by the reading route itself (one encoder, no metadata), so the
    # leaks left to plant are a second rendering (another size for one origin) and ids.
    for key in _display_keys(study.study_id, Origin.synthetic):
        _replace_rendering(study.study_id, key, (256, 256))
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
    report = json.loads(failed.stdout)
    findings = report["findings"]
    assert any(f.startswith("images differ in size, bit depth or colour type") for f in findings)
    assert any(f.startswith("stored opaque ids: ids share a") for f in findings), findings
    assert not any("served opaque ids" in f for f in findings)  # fresh ones are still random
    # The statistical gate sees the same leak from the outside: size and length give it away.
    leaks = {c["channel"] for c in report["channels"] if not c["passed"]}
    assert {"byte_length", "dimensions"} <= leaks
    assert any(f.startswith("leakage channel byte length: AUC 1.000") for f in findings)
    assert _counts() == before

    # The plain listing names each finding and prints the channel table.
    listed = _audit(str(study.study_id))
    assert listed.exit_code == 1
    assert listed.stdout.startswith(f"Study {study.study_id} ('CXR realism'): ")
    assert "- images differ in size, bit depth or colour type: " in listed.stdout
    assert "(256, 256, 8, 0, 0, 0, 0)" in listed.stdout
    assert "SEPARATES THE SOURCES" in listed.stdout
