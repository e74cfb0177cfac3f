"""GAN training and sampling as jobs: the web form, a real worker (SQLite + embedded broker,
PostgreSQL + Redis), a worker SIGKILLed mid-training whose job resumes from its checkpoint,
the job page (curves, snapshot slider), and samples imported as a synthetic image set."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from dataset_fixtures import write_folder
from evaluation_fixtures import import_cxr
from sqlalchemy import select
from support import Env, load_job, make_user, wait_for_job
from web_client import WebClient

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.jobs.specs import SpecError
from app.models import Image, ImageSet, Job, JobStatus, Origin
from ml.training.cyclegan_config import CycleGanConfig
from workers.runner import execute

pytestmark = pytest.mark.worker


def _snapshots(job: Job) -> list[dict]:
    path = Path(job.artefact_dir or "") / "snapshots.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_train_from_the_form_survive_sigkill_then_sample(  # type: ignore[no-untyped-def]
    stack: Env, monkeypatch, server_factory, worker_factory
) -> None:
    # The restarted worker takes the job over once its heartbeat is this old (never sooner).
    monkeypatch.setenv("SYNTHBENCH_HEARTBEAT_TIMEOUT_S", "10")
    owner = make_user("gina", "gina-password-1", "researcher")
    dataset_id = import_cxr(stack, owner)
    server = server_factory(stack)
    worker = worker_factory(stack, "worker-1")
    web = WebClient(httpx.Client(base_url=server.url, timeout=30))
    assert web.login("gina", "gina-password-1").status_code == 303
    assert "Train a GAN" in web.get(f"/datasets/{dataset_id}").text

    bad = web.post_form(
        "/gans",
        {"dataset": str(dataset_id), "preset": "tiny-cpu", "resolution": "64"},
        token_from="/gans/new",
    )
    assert bad.status_code == 422 and "stored at 32 px, not 64" in bad.text

    response = web.post_form(
        "/gans",
        {
            "dataset": str(dataset_id),
            "preset": "tiny-cpu",
            "kimg": "0.5",
            "tick_kimg": "0.048",
            "snapshot_ticks": "1",
            "queue": "gpu",
        },
        token_from="/gans/new",
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[-1500:]
    job_id = int(re.fullmatch(r"/jobs/(\d+)", response.headers["location"]).group(1))

    # Kill the worker (its whole process group, SIGKILL: no chance to clean up) once the run
    # has checkpointed at least twice, then start another worker.
    wait_for_job(job_id, lambda j: len(_snapshots(j)) >= 2, timeout=180)
    worker.stop(sig=9)
    killed_at = _snapshots(load_job(job_id))[-1]["kimg"]
    assert load_job(job_id).status is JobStatus.running
    worker_factory(stack, "worker-2")
    job = wait_for_job(job_id, lambda j: j.status.finished, timeout=180)
    assert job.status is JobStatus.succeeded, job.error
    assert job.attempts == 2 and job.result["kimg"] == pytest.approx(0.5, abs=0.02)

    folder = Path(job.artefact_dir or "")
    ticks = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == list(range(1, len(ticks) + 1))  # no gap, no repeat
    shots = _snapshots(job)
    assert [s["snapshot"] for s in shots] == list(range(1, len(shots) + 1))
    assert shots[-1]["kimg"] > killed_at
    log = (stack.home / "worker-2.log").read_text()
    assert f"job {job_id} was running on" in log and "requeued" in log

    page = web.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert page.text.count('class="chart line-chart"') >= 1
    assert f'max="{len(shots)}"' in page.text  # the snapshot slider spans every snapshot
    assert job.result["dataset_hash"] in page.text
    first = web.get(f"/gans/{job_id}/grid", params={"snapshot": 1})
    assert first.status_code == 200 and "grid-0001.png" in first.text
    grid = web.get(f"/jobs/{job_id}/files/grids/grid-0001.png")
    assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
    assert web.get(f"/gans/{job_id}/grid", params={"snapshot": 999}).status_code == 404
    assert web.get(f"/jobs/{job_id}/files/../../secret_key").status_code in (404, 422)

    sampled = web.post_form(
        f"/gans/{job_id}/sample",
        {"name": "Tiny DCGAN samples", "per_class": "5", "truncation_psi": "1", "seed": "0"},
        token_from=f"/jobs/{job_id}",
        follow_redirects=False,
    )
    assert sampled.status_code == 303
    sample_id = int(re.fullmatch(r"/jobs/(\d+)", sampled.headers["location"]).group(1))
    sample_job = wait_for_job(sample_id, lambda j: j.status.finished, timeout=180)
    assert sample_job.status is JobStatus.succeeded, sample_job.error
    set_id = sample_job.result["image_set_id"]
    with session_scope() as db:
        image_set = db.get(ImageSet, set_id)
        assert image_set is not None and image_set.kind == "sampling"
        images = list(db.scalars(select(Image).where(Image.image_set_id == set_id)))
    assert len(images) == 10 and {i.origin for i in images} == {Origin.synthetic}
    assert {i.label for i in images} == {"normal", "pneumonia"}
    assert {i.source for i in images} == {sample_job.result["source"]}
    assert f"/imagesets/{set_id}" in web.get(f"/jobs/{sample_id}").text


def test_translate_job_imports_a_synthetic_set(sqlite_env: Env) -> None:
    owner = make_user("tom", "tom-password-1", "researcher")
    source_a = write_folder(sqlite_env.home / "imports" / "a").root
    source_b = write_folder(sqlite_env.home / "imports" / "b").root
    ids = []
    for name, source in (("A", source_a), ("B", source_b)):
        with session_scope() as db:
            dataset, job = start_import(
                db,
                owner_id=owner,
                name=name,
                source=source,
                options=parse_import_options("folder", resolutions="16", rule="crop"),
            )
            db.commit()
            ids.append((dataset.id, job.id))
        execute(ids[-1][1])
    config = CycleGanConfig(
        resolution=16,
        kimg=0.008,
        tick_kimg=0.004,
        snapshot_ticks=1,
        base_channels=4,
        n_blocks=1,
        d_layers=2,
        device="auto",
    )
    with session_scope() as db:
        from app.gans.service import start_translation
        from app.models import Dataset

        a, b = db.get(Dataset, ids[0][0]), db.get(Dataset, ids[1][0])
        with pytest.raises(SpecError, match="not stored at that resolution"):
            start_translation(
                db,
                owner_id=owner,
                dataset_a=a,
                dataset_b=b,
                config=replace(config, resolution=32),
                name="x",
            )
        job = start_translation(
            db, owner_id=owner, dataset_a=a, dataset_b=b, config=config, name="A in B's style"
        )
        db.commit()
        job_id = job.id
    execute(job_id)
    job = load_job(job_id)
    assert job.status is JobStatus.succeeded, job.error
    with session_scope() as db:
        image_set = db.get(ImageSet, job.result["image_set_id"])
        assert image_set is not None and image_set.kind == "translation"
        images = list(db.scalars(select(Image).where(Image.image_set_id == image_set.id)))
    assert len(images) == job.result["n_translated"] > 0
    assert {i.origin for i in images} == {Origin.synthetic}
    assert {i.source for i in images} == {job.result["group"]}
    # Paired quality of each source against its round trip, by the shared metrics module.
    assert set(job.result["translated_cycle"]) == {
        "cycle_l1", "cycle_psnr", "cycle_ssim", "cycle_ms_ssim", "cycle_ms_gmsd", "cycle_mdsi",
        "cycle_haarpsi",
    }  # fmt: skip
    assert 0.0 <= job.result["translated_cycle"]["cycle_ms_ssim"] <= 1.0
    # A retried job (worker died after the import) finds its set instead of importing again.
    from app.gans.service import import_outputs

    assert import_outputs(job_id, job.result) == {"image_set_id": image_set.id}
    with session_scope() as db:
        assert len(list(db.scalars(select(ImageSet).where(ImageSet.name == "A in B's style")))) == 1


def test_translate_form_validates_and_launches(sqlite_env: Env) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    owner = make_user("una", "una-password-1", "researcher")
    ids = []
    for name in ("A", "B"):
        source = write_folder(sqlite_env.home / "imports" / name).root
        with session_scope() as db:
            dataset, job = start_import(
                db,
                owner_id=owner,
                name=name,
                source=source,
                options=parse_import_options("folder", resolutions="16,32"),
            )
            db.commit()
            ids.append(dataset.id)
            job_id = job.id
        execute(job_id)
    with TestClient(create_app()) as client:
        web = WebClient(client)
        assert web.login("una", "una-password-1").status_code == 303
        assert "Translate between datasets" in web.get("/jobs").text
        form = {
            "dataset_a": str(ids[0]),
            "dataset_b": str(ids[1]),
            "resolution": "32",
            "kimg": "0.008",
            "batch_size": "1",
            "tick_kimg": "0.004",
            "snapshot_ticks": "1",
            "seed": "0",
            "split": "test",
            "name": "A as B",
        }
        bad = web.post_form(
            "/gans/translate", {**form, "resolution": "64"}, token_from="/gans/translate"
        )
        assert bad.status_code == 422 and "not stored at that resolution" in bad.text
        assert 'value="0.008"' in bad.text  # typed values kept
        tiny = web.post_form(
            "/gans/translate", {**form, "resolution": "16"}, token_from="/gans/translate"
        )
        assert tiny.status_code == 422 and "PatchGAN sees nothing at 16 px" in tiny.text
        with session_scope() as db:
            assert db.scalar(select(Job).where(Job.type == "translate")) is None
        good = web.post_form(
            "/gans/translate",
            {**form, "resolution": "32"},
            token_from="/gans/translate",
            follow_redirects=False,
        )
        assert good.status_code == 303, good.text[-1500:]
        job_id = int(re.fullmatch(r"/jobs/(\d+)", good.headers["location"]).group(1))
    job = load_job(job_id)
    assert job.type == "translate" and job.owner_id == owner
    assert job.params["config"]["resolution"] == 32 and job.params["name"] == "A as B"
    assert job.params["dataset_a_id"] == ids[0] and job.params["translate_split"] == "test"
