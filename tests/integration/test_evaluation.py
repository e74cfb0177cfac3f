"""Evaluation jobs end to end: the benchmark page of a GAN launches classifiers, fidelity and
privacy jobs on a real worker (SQLite + embedded broker, PostgreSQL + Redis), then attribution
and domain-feature checks; the command line runs the same jobs in-process, and a synthetic
set salted with copies of training images is flagged (with 3 real test images the release gate,
an exact test, cannot fail it, and says so)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cli_in_process import invoke_cli
from evaluation_fixtures import (
    dataset_with_gan_samples,
    evaluation_jobs,
    import_cxr,
    wait_for_evaluations,
)
from PIL import Image as PILImage
from sqlalchemy import select
from support import Env, make_user
from web_client import WebClient

from app.db import session_scope
from app.models import Dataset, Job, JobStatus
from ml.data.store import open_dataset

pytestmark = pytest.mark.worker


def _post(web: WebClient, url: str, page: str, data: dict[str, Any]) -> httpx.Response:
    response = web.post_form(url, data, token_from=page, follow_redirects=False)
    assert response.status_code == 303, response.text[-2000:]
    return response


# PostgreSQL + Redis only: what this run adds to the suite is every evaluation job's result
# stored in PostgreSQL's JSON (which refuses NaN) and its message through Redis. On SQLite and
# the embedded broker the same suite runs from the page in tests/browser/
# test_evaluation_browser.py, and each of its jobs from the command line in the test below.
@pytest.mark.parametrize(
    "stack",
    [pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.redis])],
    indirect=True,
)
def test_benchmark_page_runs_the_suite_on_a_worker(  # type: ignore[no-untyped-def]
    stack: Env, server_factory, worker_factory
) -> None:
    owner = make_user("bea", "bea-password-1", "researcher")
    _, gan_id, set_id = dataset_with_gan_samples(stack, owner)
    server = server_factory(stack)
    worker_factory(stack, "worker-1")
    web = WebClient(httpx.Client(base_url=server.url, timeout=60))
    assert web.login("bea", "bea-password-1").status_code == 303
    page = f"/gans/{gan_id}/benchmark"
    first = web.get(page)
    assert first.status_code == 200 and "Tiny GAN samples" in first.text
    assert "release gate: not checked" in first.text
    assert f'href="{page}"' in web.get(f"/jobs/{gan_id}").text

    # A bad field starts nothing at all.
    bad = _post(web, f"{page}/run", page, {"image_set_id": str(set_id), "resolution": "64"})
    assert "stored at 32 px, not 64" in web.get(bad.headers["location"]).text
    assert evaluation_jobs() == []

    _post(
        web,
        f"{page}/run",
        page,
        {
            "image_set_id": str(set_id),
            "preset": "tiny-cpu",
            "resolution": "32",
            "alpha": "0.05",
            "job_name": " Run  A ",
        },
    )
    jobs = wait_for_evaluations(5)
    # The suite's one Name field goes before each job's own name, so they stay distinct.
    names = [j.name or "" for j in jobs]
    assert all(n.startswith("Run A · ") for n in names) and len(set(names)) == 5, names
    assert [j.type for j in jobs].count("train_classifier") == 3
    assert all(j.status is JobStatus.succeeded for j in jobs), [(j.id, j.error) for j in jobs]
    by_source = {j.params["train_on"]: j for j in jobs if j.type == "train_classifier"}
    assert set(by_source) == {"real", "synthetic", "mixed"}
    assert by_source["synthetic"].result["n_train_real"] == 0
    assert by_source["synthetic"].result["n_train_synthetic"] == 12
    # Every classifier of the suite is also scored on the set (a test-set column).
    for job in by_source.values():
        on_set = job.result["synthetic_tests"][str(set_id)]
        assert on_set["n"] == 12 and on_set["trained_on_it"] is (job.params["train_on"] != "real")
    for job in jobs:  # every job records its wall time, device and energy estimate
        assert job.resources and job.resources["wall_s"] > 0
        assert job.resources["device"].startswith("cpu") and job.resources["energy_kwh"] >= 0

    text = web.get(page).text
    assert "AUC(real) \u2212 AUC(this)" in text and "reference" in text
    assert "macro AUC on synthetic set: Tiny GAN samples" in text and "(its training set)" in text
    assert "an anecdote, not an estimate" in text  # 3 real test images
    assert "Floor: real test vs real train" in text
    assert "release gate: passes" in text or "release gate: fails" in text
    assert "Image quality against the nearest real training image" in text and "HaarPSI" in text
    assert "line-chart" in text  # the ROC curves
    fragment = web.get(page, headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<div id="results"') and "Floor: real test" in fragment

    real_id, synthetic_id = by_source["real"].id, by_source["synthetic"].id
    _post(
        web,
        f"{page}/attribution",
        page,
        {
            "real_job_id": str(real_id),
            "synthetic_job_id": str(synthetic_id),
            "methods": ["integrated_gradients", "grad_cam"],
            "n_images": "2",
            "job_name": "Where they look",
        },
    )
    _post(
        web,
        f"{page}/neighbours",
        page,
        {"image_set_id": str(set_id), "classifier_job_id": str(real_id), "resolution": "32"},
    )
    jobs = wait_for_evaluations(7)
    assert all(j.status is JobStatus.succeeded for j in jobs), [(j.id, j.error) for j in jobs]
    attribution = next(j for j in jobs if j.type == "attribution")
    assert attribution.name == "Where they look"
    assert attribution.result["ig_max_abs_delta"] < 0.05
    overlay = attribution.result["items"][0]["files"]["grad_cam"]["synthetic"]
    png = web.get(f"/jobs/{attribution.id}/files/{overlay}")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert f"/jobs/{attribution.id}/files/{overlay}" in web.get(page).text

    neighbours = [j for j in jobs if j.type == "nearest_neighbours"][-1]
    assert set(neighbours.result["spaces"]) == {"pixel", "domain"}
    gallery = web.get(f"/evaluation/neighbours/{neighbours.id}").text
    assert "domain space" in gallery and "pixel space" in gallery
    assert gallery.count(f"/imagesets/{set_id}/images/") == 2 * neighbours.result["n_gallery"]
    assert "release gate:" in web.get(f"/imagesets/{set_id}").text
    classifier_page = web.get(f"/jobs/{real_id}").text
    assert "Test AUC" in classifier_page and 'id="energy"' in classifier_page
    dataset_id = by_source["real"].params["dataset_id"]
    dashboard = web.get(f"/datasets/{dataset_id}/benchmark").text
    assert f'href="/jobs/{real_id}"' in dashboard and f'href="/jobs/{synthetic_id}"' in dashboard
    assert "Benchmark points" in dashboard
    assert f"/evaluation/neighbours/{neighbours.id}" in dashboard
    compared = web.get("/gans/compare", params={"ids": str(gan_id)}).text
    assert f"Run #{gan_id}" in compared and "/files/grids/" in compared
    assert web.get("/gans/compare", params={"ids": "99999"}).status_code == 404
    picker = web.get("/gans/compare").text
    assert f'name="ids" value="{gan_id}"' in picker
    ticked = web.get("/gans/compare", params=[("ids", str(gan_id)), ("ids", str(gan_id))]).text
    assert ticked.count(f"Run #{gan_id}") == 1  # a run ticked twice is shown once
    assert web.get(f"{page}/nonsense").status_code in (404, 405)
    assert web.get("/gans/99999/benchmark").status_code == 404


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # In this process: the test is about what each command does, not about its process, and a
    # fresh interpreter importing torch costs seconds per command.
    return invoke_cli(*args)


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.index("{")
    return json.loads(result.stdout[start:])


def _planted_folder(dataset_path: str, folder: Path) -> int:
    """Every real training image copied as a 'synthetic' one, plus as many noise images: a
    generator that memorised its training set, with some filler."""
    store = open_dataset(dataset_path)
    rows = store.indices("train")
    images = store.images(32)
    rng = np.random.default_rng(0)
    for n, row in enumerate(rows.tolist()):
        entry = store.entries[row]
        label = next(name for name, v in entry.labels.items() if v == 1)
        (folder / label).mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.asarray(images[row])).save(folder / label / f"copy{n}.png")
        noise = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        PILImage.fromarray(noise).save(folder / label / f"noise{n}.png")
    return len(rows)


def test_cli_runs_each_job_and_a_planted_copy_fails_the_gate(sqlite_env: Env) -> None:
    owner = make_user("carl", "carl-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        path = dataset.path
    n_train = _planted_folder(path, sqlite_env.home / "leaky")

    bad = _cli(
        "imageset",
        "import",
        str(sqlite_env.home / "nowhere"),
        "--name",
        "x",
        "--owner",
        "carl",
    )
    assert bad.returncode == 1 and "is not a folder" in bad.stderr
    imported = _json(
        _cli(
            "imageset",
            "import",
            str(sqlite_env.home / "leaky"),
            "--name",
            "Leaky",
            "--owner",
            "carl",
            "--json",
        )
    )
    assert imported["name"] == "Leaky"

    real = _json(
        _cli(
            "run",
            "train-classifier",
            "--dataset",
            "CXR",
            "--epochs",
            "3",
            "--test-on",
            "Leaky",
            "--json",
        )
    )
    assert real["train_on"] == "real" and real["n_train_synthetic"] == 0
    leaky = real["synthetic_tests"][str(imported["image_set_id"])]
    assert leaky["n"] == 2 * n_train and leaky["trained_on_it"] is False
    assert 0.0 <= (real["macro_auc"] or 0.0) <= 1.0
    synthetic = _json(
        _cli(
            "run",
            "train-classifier",
            "--dataset",
            "CXR",
            "--train-on",
            "synthetic:Leaky",
            "--epochs",
            "3",
            "--json",
        )
    )
    assert synthetic["n_train_real"] == 0 and synthetic["n_train_synthetic"] == 2 * n_train
    unknown = _cli("run", "train-classifier", "--dataset", "CXR", "--train-on", "synthetic:nope")
    assert unknown.returncode == 1 and "No image set" in unknown.stderr

    with session_scope() as db:
        real_job = db.scalars(
            select(Job).where(Job.type == "train_classifier").order_by(Job.id)
        ).first()
        assert real_job is not None
        real_job_id = real_job.id
    leak = _json(
        _cli(
            "run",
            "neighbours",
            "--real",
            "CXR",
            "--synthetic",
            "Leaky",
            "--domain",
            str(real_job_id),
            "--json",
        )
    )
    pixel = leak["spaces"]["pixel"]
    # Half the set are exact copies, all flagged. But only 3 real test images set the
    # threshold, so chance alone could flag about half as well: the exact gate (alpha 0.05
    # split over the two spaces) cannot call it copying here, and its reason says how many
    # flagged images it would take (tests/unit/test_release_gate.py has the power on digits).
    assert pixel["share_flagged"]["p5"] >= 0.45 and pixel["n_test"] == 3
    assert leak["alpha"] == 0.05 and "exchangeable" in leak["release"]["methods"]
    for space, verdict in leak["verdicts"].items():
        summary = leak["spaces"][space]
        assert verdict["alpha"] == 0.025 and verdict["p_value"] == summary["p_value"]["p5"]
        assert verdict["passes"] is (verdict["p_value"] > 0.025)
        assert "fails this set at" in verdict["reason"] or "certifies nothing" in verdict["reason"]
    assert leak["verdicts"]["pixel"]["passes"] is True
    assert leak["release"]["passes"] is all(v["passes"] for v in leak["verdicts"].values())
    gallery = json.loads(
        (Path(_job_dir(leak_job_type="nearest_neighbours")) / "gallery.json").read_text()
    )
    top = gallery["pixel"]["gallery"][0]
    assert top["flagged"] and top["dcr"] == pytest.approx(0.0, abs=1e-3)
    # Paired quality against the nearest real image, in the CLI JSON: a planted copy matches.
    assert set(leak["quality"]) == {"pixel", "domain"}
    assert leak["quality"]["pixel"]["n"] == 2 * n_train
    assert top["quality"]["ssim"] == pytest.approx(1.0, abs=1e-3)
    assert top["quality"]["haarpsi"] == pytest.approx(1.0, abs=1e-3)

    domain_fid = _json(
        _cli(
            "run",
            "fidelity",
            "--real",
            "CXR",
            "--synthetic",
            "Leaky",
            "--features",
            f"domain:{real_job_id}",
            "--json",
        )
    )
    assert (
        domain_fid["floor_test_vs_train"]["fid"] >= 0
        and domain_fid["synthetic_vs_train"]["n_b"] == 2 * n_train
    )
    with session_scope() as db:
        synthetic_job = db.scalars(
            select(Job).where(Job.type == "train_classifier").order_by(Job.id.desc())
        ).first()
        assert synthetic_job is not None
        synthetic_job_id = synthetic_job.id
    explained = _json(
        _cli(
            "run",
            "attribution",
            "--real-job",
            str(real_job_id),
            "--synthetic-job",
            str(synthetic_job_id),
            "--n-images",
            "2",
            "--json",
        )
    )
    assert len(explained["items"]) >= 1 and explained["methods"] == [
        "integrated_gradients",
        "grad_cam",
    ]


def _job_dir(leak_job_type: str) -> str:
    with session_scope() as db:
        job = db.scalars(
            select(Job).where(Job.type == leak_job_type).order_by(Job.id.desc())
        ).first()
        assert job is not None and job.artefact_dir
        return job.artefact_dir
