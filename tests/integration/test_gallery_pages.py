"""The nearest-neighbour gallery pages through every synthetic image, most at risk first.

A privacy job is stored as workers/evaluation.py stores one (its result, gallery.json with the
riskiest 48, neighbours_pixel.npz and quality_pixel.npz), from `memorisation_report` over real
images: 300 scikit-learn digits as the synthetic set, 30 of them copies of training images."""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits
from sqlalchemy import insert, select
from support import make_user
from web_client import WebClient

from app.db import session_scope
from app.evaluation.gallery import PAGE_SIZE
from app.jobs.service import artefact_dir_for
from app.main import create_app
from app.models import Dataset, DatasetStatus, Image, ImageSet, Job, JobStatus, Origin, User
from ml.metrics.neighbours import memorisation_report, release_verdict

N_SYNTHETIC = 300
LEVEL = "p5"


@pytest.fixture
def web(sqlite_env) -> WebClient:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        web.login("alice", "alice-password")
        yield web


def _report():  # type: ignore[no-untyped-def]
    digits = load_digits()
    images = digits.data.astype(np.float32)
    order = np.random.default_rng(5).permutation(len(images))
    train, test = images[order[:900]], images[order[900:1100]]
    syn_rows = order[1100 : 1100 + N_SYNTHETIC]
    syn = images[syn_rows]
    syn[:30] = train[:30]
    labels = [str(digits.target[r]) for r in syn_rows]
    return memorisation_report(syn, train, test, k=3), labels


def _store(with_arrays: bool = True) -> tuple[int, list[int], Any]:
    """The job's id, the image ids in synthetic order, the report."""
    report, labels = _report()
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "alice")).one()
        dataset = Dataset(name="Digits", owner_id=owner.id, status=DatasetStatus.ready, info={})
        dataset.format = "folder"
        image_set = ImageSet(name="Samples", owner_id=owner.id, kind="samples")
        db.add_all([dataset, image_set])
        db.flush()
        rows = [
            {
                "image_set_id": image_set.id,
                "key": f"digit{i:05d}",
                "origin": Origin.synthetic,
                "label": f"digit {labels[i]}",
                "original_name": f"{i}.png",
                "sha256": f"{i:064x}",
                "source_format": "png",
                "width": 8,
                "height": 8,
            }
            for i in range(N_SYNTHETIC)
        ]
        db.execute(insert(Image), rows)
        ids = list(
            db.scalars(
                select(Image.id).where(Image.image_set_id == image_set.id).order_by(Image.key)
            )
        )
        summary = report.summary()
        verdict = asdict(release_verdict(summary, alpha=0.05, level=LEVEL, comparisons=1))
        job = Job(
            type="nearest_neighbours",
            queue="cpu",
            params={"dataset_id": dataset.id, "image_set_id": image_set.id, "resolution": 8},
            owner_id=owner.id,
            status=JobStatus.succeeded,
            progress=1.0,
        )
        job.result = {
            "image_set_id": image_set.id,
            "resolution": 8,
            "k": 3,
            "level": LEVEL,
            "alpha": 0.05,
            "spaces": {"pixel": summary},
            "verdicts": {"pixel": verdict},
            "release": {"passes": verdict["passes"], "reasons": [verdict["reason"]]},
            "n_gallery": PAGE_SIZE,
        }
        db.add(job)
        db.flush()
        out = artefact_dir_for(job.id)
        job.artefact_dir = str(out)
        _write_artefacts(out, report, ids, labels, with_arrays)
        return job.id, ids, report


def _write_artefacts(out, report, ids, labels, with_arrays: bool) -> None:  # type: ignore[no-untyped-def]
    """What workers/evaluation.py writes, with the same keys."""
    out.mkdir(parents=True)
    gallery = [
        {
            "image_id": ids[i],
            "label": f"digit {labels[i]}",
            "dcr": float(report.dcr[i]),
            "nndr": float(report.nndr[i]),
            "flagged": bool(report.flagged[LEVEL][i]),
            "neighbours": [
                {"row": int(j), "distance": float(d)}
                for j, d in zip(report.neighbour_indices[i], report.neighbour_distances[i])
            ],
        }
        for i in report.risk_order()[:PAGE_SIZE].tolist()
    ]
    stored = {"pixel": {"summary": report.summary(), "gallery": gallery}}
    (out / "gallery.json").write_text(json.dumps(stored, indent=1), encoding="utf-8")
    if not with_arrays:
        return
    np.savez_compressed(
        out / "neighbours_pixel.npz",
        image_ids=np.asarray(ids),
        dcr=report.dcr,
        nndr=report.nndr,
        neighbour_rows=report.neighbour_indices,
        neighbour_distances=report.neighbour_distances,
        baseline_dcr=report.baseline_dcr,
    )
    scored = np.arange(0, N_SYNTHETIC, 2)  # the worker scores a sample, not every image
    np.savez_compressed(
        out / "quality_pixel.npz",
        image_ids=np.asarray(ids)[scored],
        neighbour_rows=report.neighbour_indices[scored, 0],
        quality_psnr=np.linspace(20, 30, scored.size),
        quality_ssim=np.linspace(0.5, 0.9, scored.size),
    )


def _shown(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'alt="synthetic image (\d+)"', page)]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_every_image_is_on_one_page_in_the_reports_risk_order(web: WebClient) -> None:
    job_id, ids, report = _store()
    url = f"/evaluation/neighbours/{job_id}"
    pages = -(-N_SYNTHETIC // PAGE_SIZE)
    shown: list[int] = []
    for page in range(1, pages + 1):
        response = web.get(f"{url}?page={page}")
        assert response.status_code == 200, page
        on_page = _shown(response.text)
        last = min(page * PAGE_SIZE, N_SYNTHETIC)
        assert len(on_page) == last - (page - 1) * PAGE_SIZE
        text = _text(response.text)
        assert (
            f"Page {page} of {pages}: ranks {(page - 1) * PAGE_SIZE + 1} to {last} of 300" in text
        )
        shown += on_page
    order = report.risk_order()
    assert shown == [ids[i] for i in order]
    flagged = int(report.flagged[LEVEL].sum())
    assert 30 <= flagged < N_SYNTHETIC  # the planted copies, and not everything
    second = web.get(f"{url}?page=2").text
    # Labels come from the set's rows; flags from the stored threshold; neighbour rows as stored.
    first_on_two = order[PAGE_SIZE]
    assert second.count("<strong>flagged</strong>") == int(
        report.flagged[LEVEL][order[PAGE_SIZE : 2 * PAGE_SIZE]].sum()
    )
    row = report.neighbour_indices[first_on_two, 0]
    assert f"/images/{row}.png?res=8" in second
    assert "digit " in _text(second) and "no label" not in _text(second)
    assert 'href="?page=1"' in second and 'href="?page=3"' in second
    assert "No images on this page" in web.get(f"{url}?page={pages + 1}").text
    assert web.get(f"{url}?page=0").status_code == 422


def test_a_job_without_the_arrays_shows_its_first_page_only(web: WebClient) -> None:
    job_id, ids, report = _store(with_arrays=False)
    page = web.get(f"/evaluation/neighbours/{job_id}").text
    assert _shown(page) == [ids[i] for i in report.risk_order()[:PAGE_SIZE]]
    assert "Gallery pages" not in page
