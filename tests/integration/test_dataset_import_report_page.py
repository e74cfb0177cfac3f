"""The dataset page and report.txt of a DICOM + CSV import with an image without PatientID:
the patient note and the same counts as the import's last progress line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataset_fixtures import write_dicom_encodings
from fastapi.testclient import TestClient
from markupsafe import escape
from support import Env, make_user
from web_client import WebClient

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.main import create_app
from app.models import Dataset, DatasetStatus
from workers.runner import execute


@pytest.fixture
def web(sqlite_env: Env) -> Iterator[WebClient]:
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        assert web.login("alice", "alice-password").status_code == 303
        yield web


def test_page_and_report_show_the_patient_note_and_the_progress_counts(
    web: WebClient, sqlite_env: Env
) -> None:
    data = write_dicom_encodings(sqlite_env.home / "imports" / "held-out")
    messages: list[str] = []
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=None,
            name="held-out DICOMs",
            source=data.root,
            options=parse_import_options("dicom-csv", resolutions="16"),
        )
        dataset_id, job_id = dataset.id, job.id
    execute(job_id, listener=lambda done, total, message: messages.append(message))
    with session_scope() as db:
        stored = db.get(Dataset, dataset_id)
        assert stored is not None and stored.status is DatasetStatus.ready
        errors, info = list(stored.errors), dict(stored.info)

    assert info["summary"] == messages[-1] == "9/9 images read, 8 imported, 2 problem(s)"
    [note] = info["notes"]
    assert note.startswith("1 image had no PatientID and was treated as a separate patient")

    page = web.get(f"/datasets/{dataset_id}")
    assert page.status_code == 200
    assert escape(note) in page.text
    assert f'<p id="report-summary">{escape(info["summary"])}:</p>' in page.text
    for line in errors:
        assert escape(line) in page.text

    report = web.get(f"/datasets/{dataset_id}/report.txt")
    assert report.status_code == 200
    assert report.text.splitlines() == [note, *errors]
