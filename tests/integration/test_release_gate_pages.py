"""The release gate's test on the pages: a privacy job as the worker stores it shows its
p-value, alpha and methods line on the set, job and gallery pages; a job stored before the
gate was a test (max_share, no p-values) still renders there."""

from __future__ import annotations

import html
import re
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sqlalchemy import select
from support import make_user
from web_client import WebClient

from app.db import session_scope
from app.main import create_app
from app.models import Dataset, DatasetStatus, ImageSet, Job, JobStatus, User
from ml.metrics.neighbours import memorisation_report, release_verdict


@pytest.fixture
def web(sqlite_env) -> WebClient:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        web.login("alice", "alice-password")
        yield web


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _digits_result(set_id: int) -> dict[str, Any]:
    """A nearest-neighbours result built as workers/evaluation.py builds it, from real images:
    digits with 10% planted copies of training images, in one (pixel) space."""
    images = load_digits().data.astype(np.float32)
    order = np.random.default_rng(5).permutation(len(images))
    train, test, syn = images[order[:1000]], images[order[1000:1200]], images[order[1200:1400]]
    syn[:20] = train[:20]
    summary = memorisation_report(syn, train, test, k=2).summary()
    verdict = asdict(release_verdict(summary, alpha=0.05, level="p5", comparisons=1))
    return {
        "image_set_id": set_id,
        "resolution": 8,
        "k": 2,
        "level": "p5",
        "alpha": 0.05,
        "spaces": {"pixel": summary},
        "verdicts": {"pixel": verdict},
        "release": {
            "passes": verdict["passes"],
            "reasons": [verdict["reason"]],
            "methods": verdict["methods"],
        },
        "n_gallery": 0,
    }


def _old_result(set_id: int) -> dict[str, Any]:
    """As stored before the gate was a test: a share cap, no counts below the threshold."""
    sentence = (
        "3 of 16 synthetic images (18.8%) are closer to a training image than 95% of real "
        "test images are; the gate allows 1.0%."
    )
    space = {
        "dcr": {"median": 0.1},
        "baseline_dcr": {"median": 0.2},
        "share_flagged": {"p1": 0.05, "p5": 0.188},
        "coarse_baseline": False,
    }
    verdict = {"passes": False, "share_flagged": 0.188, "max_share": 0.01, "level": "p5"}
    return {
        "image_set_id": set_id,
        "resolution": 32,
        "k": 5,
        "level": "p5",
        "max_share": 0.01,
        "spaces": {"pixel": space},
        "verdicts": {"pixel": {**verdict, "reason": sentence}},
        "release": {"passes": False, "reasons": [sentence]},
        "n_gallery": 0,
    }


def _store(result_for: Any) -> tuple[int, int]:
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "alice")).one()
        dataset = Dataset(
            name=f"Digits {result_for.__name__}",
            owner_id=owner.id,
            status=DatasetStatus.ready,
            info={},
            format="folder",
        )
        image_set = ImageSet(name="Samples", owner_id=owner.id, kind="upload")
        db.add_all([dataset, image_set])
        db.flush()
        job = Job(
            type="nearest_neighbours",
            queue="cpu",
            params={"dataset_id": dataset.id, "image_set_id": image_set.id, "resolution": 8},
            owner_id=owner.id,
            status=JobStatus.succeeded,
            progress=1.0,
            result=result_for(image_set.id),
        )
        db.add(job)
        db.flush()
        return image_set.id, job.id


def test_the_pages_state_the_test_p_value_alpha_and_assumptions(web: WebClient) -> None:
    set_id, job_id = _store(_digits_result)
    for url in (f"/imagesets/{set_id}", f"/jobs/{job_id}", f"/evaluation/neighbours/{job_id}"):
        page = web.get(url)
        assert page.status_code == 200, url
        text = _text(page.text)
        assert "release gate: fails" in text, url
        assert re.search(r"exact one-sided test: p = [0-9.e-]+ <= alpha = 0\.05", text), url
    for url in (f"/jobs/{job_id}", f"/evaluation/neighbours/{job_id}"):
        text = _text(web.get(url).text)
        assert "Release gate at alpha = 0.05. One-sided exact test" in text, url
        assert "exchangeable" in text and "beta-binomial" in text, url
        per_space = r"release gate at p5: \d+ flagged, exact one-sided p = \S+, \u03b1 = 0\.05"
        assert re.search(per_space, text), url


def test_a_result_stored_before_the_test_still_renders(web: WebClient) -> None:
    set_id, job_id = _store(_old_result)
    for url in (f"/imagesets/{set_id}", f"/jobs/{job_id}", f"/evaluation/neighbours/{job_id}"):
        page = web.get(url)
        assert page.status_code == 200, url
        text = _text(page.text)
        assert "3 of 16 synthetic images" in text and "release gate: fails" in text, url
        assert "exact one-sided p" not in text and "One-sided exact test" not in text, url
