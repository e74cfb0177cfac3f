"""GET /gans/estimate: the training form's memory and run-time estimate, through the app."""

from __future__ import annotations

from evaluation_fixtures import import_cxr
from fastapi.testclient import TestClient
from support import Env, make_user
from web_client import WebClient

from app.db import session_scope
from app.gans.estimates import format_mb, memory_estimate, model_size
from app.gans.options import gan_config
from app.gans.service import start_training
from app.main import create_app
from app.models import Dataset, JobStatus
from app.models.types import utcnow
from ml.data.training_images import TrainingImages

FORM = {
    "preset": "tiny-cpu",
    "arch": "dcgan",
    "resolution": "32",
    "batch_size": "16",
    "kimg": "60",
    "tick_kimg": "",
    "snapshot_ticks": "",
    "augment": "none",
    "ema_kimg": "0.5",
    "fid_features": "none",
    "queue": "cpu",
}


def _succeeded_training(owner_id: int, dataset_id: int, images_per_second: float) -> int:
    """A finished train_gan job as the worker leaves it: the row from the launch path, then
    the handler's result (GanResult fields + device) and the succeeded status."""
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        config = gan_config({}, preset="tiny-cpu", resolutions=(32,))
        job = start_training(db, owner_id=owner_id, dataset=dataset, config=config, queue="cpu")
        job.status = JobStatus.succeeded
        job.progress = 1.0
        job.finished_at = utcnow()
        job.result = {
            "kimg": 1.0,
            "ticks": 10,
            "snapshots": 5,
            "best_fid": None,
            "best_kimg": None,
            "stopped_early": False,
            "images_per_second": images_per_second,
            "class_names": ["none positive"],
            "checkpoint": "checkpoint.pt",
            "out": job.artefact_dir,
            "epsilon": None,
            "delta": None,
            "dataset_hash": dataset.content_hash,
            "device": "cpu",
        }
        db.commit()
        return job.id


def test_estimate_memory_run_time_errors_and_access(sqlite_env: Env) -> None:
    owner = make_user("ines", "ines-password-1", "researcher")
    other = make_user("omar", "omar-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        n_classes = TrainingImages(dataset.path, 32, "train").n_classes
    size = model_size("dcgan", 32, n_classes, {"base_channels": 32})  # the tiny-cpu networks
    expected_mb = format_mb(memory_estimate(size, ema=True).total)
    query = {**FORM, "dataset": str(dataset_id)}

    with TestClient(create_app()) as client:
        anonymous = client.get("/gans/estimate", params=query, follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].startswith("/login")

        web = WebClient(client)
        assert web.login("ines", "ines-password-1").status_code == 303
        form_page = web.get(f"/gans/new?dataset={dataset_id}")
        assert 'id="estimate"' in form_page.text and 'hx-get="/gans/estimate"' in form_page.text

        first = web.get("/gans/estimate", params=query)
        assert first.status_code == 200
        assert f"at least {expected_mb} for weights and optimiser state" in first.text
        assert "Activations come on top" in first.text
        assert "No measured run of dcgan at 32 px yet" in first.text
        assert "tiny-cpu preset" in first.text

        # Another researcher's finished run calibrates everyone's estimate (speed only).
        job_id = _succeeded_training(other, dataset_id, 125.0)
        second = web.get("/gans/estimate", params=query)
        assert f"about 8 min on cpu, from job #{job_id}&#39;s measured 125 images/s" in (
            second.text
        ), second.text  # 60 kimg at 125 images/s = 480 s
        assert "No measured run" not in second.text
        # ...but only for the same arch and resolution.
        progan = web.get("/gans/estimate", params={**query, "arch": "progan", "preset": ""})
        assert "No measured run of progan at 32 px yet" in progan.text

        bad = web.get("/gans/estimate", params={**query, "resolution": "64"})
        assert bad.status_code == 200
        assert "The dataset is stored at 32 px, not 64." in bad.text
        assert "MB" not in bad.text
        not_a_number = web.get("/gans/estimate", params={**query, "kimg": "lots"})
        assert "is not a number" in not_a_number.text
        missing = web.get("/gans/estimate", params={**query, "dataset": "999"})
        assert "Choose one of your ready datasets." in missing.text
