"""The glossary page, and the metric headers that link to it, through the web app on a real
database: every entry has its anchor, every link a template makes lands on an entry, and a real
results page (imported ratings) links its TOST, kappa, MRMC and Wilson headers there."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from support import ROOT, make_user
from web_client import WebClient

from app.db import session_scope
from app.demo.content import simulated_ratings_csv
from app.main import create_app
from app.studies.imports import import_ratings
from app.web.glossary import TERMS

LINK = re.compile(r'href="/glossary#([a-z-]+)"')


@pytest.fixture
def client(sqlite_env) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def _anchors(html: str) -> set[str]:
    return set(re.findall(r'id="([a-z-]+)"', html))


def test_glossary_is_public_and_has_an_entry_for_every_term(client: TestClient) -> None:
    page = client.get("/glossary")
    assert page.status_code == 200
    anchors = _anchors(page.text)
    assert set(TERMS) <= anchors, set(TERMS) - anchors
    # The entries say what the numbers need, not just their names.
    for phrase in ("real-vs-real floor", "small sample", "DeLong", "Hillis", "Fleiss", "TOST"):
        assert phrase.lower() in page.text.lower(), phrase


def test_every_glossary_link_in_the_templates_names_an_entry() -> None:
    used: set[str] = set()
    for path in (ROOT / "templates").rglob("*.html"):
        used |= set(re.findall(r'\bg\("([a-z-]+)"', path.read_text(encoding="utf-8")))
    assert {"auc", "delong", "fid", "fid-floor", "dcr", "release-gate", "tost", "mrmc"} <= used
    assert used <= set(TERMS), used - set(TERMS)


def test_results_headers_link_to_their_glossary_entries(client: TestClient) -> None:
    owner = make_user("alice", "alice-password", "researcher")
    with session_scope() as db:
        study = import_ratings(
            db, owner_id=owner, name="Glossary links", csv_text=simulated_ratings_csv()
        )
        study_id = study.id
    web = WebClient(client)
    assert web.login("alice", "alice-password").status_code == 303
    page = web.get(f"/studies/{study_id}/results")
    assert page.status_code == 200
    linked = set(LINK.findall(page.text))
    assert {"wilson", "tost", "dprime", "kappa", "mrmc"} <= linked, linked
    glossary = _anchors(client.get("/glossary").text)
    assert linked <= glossary

    # The launch form names each seed preset for the workflow it reproduces.
    form = web.get("/gans/new").text
    assert "Benchmark by resolution, classes and samples" in form and "(seed 000)" in form
