"""Sampling after FID early stopping (issue 17): `run sample` reads the best checkpoint unless
`--checkpoint last`, says so and warns that psi does nothing to a DCGAN; the training page
offers both checkpoints and the sampling job's page names the one it read.

A tiny DCGAN trained on the demo X-rays with a constant FID (a plateau from the first
snapshot: best at 0.016 kimg, stopped at 0.048); the commands run in this process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from cli_in_process import invoke_cli
from evaluation_fixtures import import_cxr
from fastapi.testclient import TestClient
from gan_fixtures import ConstantFeatures
from support import Env, make_user
from web_client import WebClient

from app.db import session_scope
from app.gans.service import start_training
from app.main import create_app
from app.models import Dataset, Job, JobStatus
from ml.training.gan_config import GanConfig
from workers.runner import execute

OWNER = "pia@example.org"


def _stopped_training(env: Env, owner: int) -> int:
    extractor = env.home / "flat.pt"
    torch.jit.script(ConstantFeatures()).save(str(extractor))
    config = GanConfig(
        resolution=32,
        batch_size=16,
        kimg=1.0,
        tick_kimg=0.016,
        snapshot_ticks=1,
        fid_features=str(extractor),
        fid_images=16,
        fid_patience=2,
        arch_options={"base_channels": 8},
    )
    with session_scope() as db:
        dataset = db.get(Dataset, import_cxr(env, owner))
        assert dataset is not None
        job_id = start_training(db, owner_id=owner, dataset=dataset, config=config, queue="cpu").id
        db.commit()
    execute(job_id)
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.status is JobStatus.succeeded, job.error
        assert job.result["stopped_early"] and job.result["kimg"] < 1.0
    return job_id


def _sample(*args: str) -> tuple[dict[str, Any], str]:
    done: subprocess.CompletedProcess[str] = invoke_cli("run", "sample", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :]), done.stderr


def test_best_checkpoint_by_default_last_on_request_psi_warned(sqlite_env: Env) -> None:
    owner = make_user(OWNER, "pia-password-1", "researcher")
    train_id = _stopped_training(sqlite_env, owner)

    best, said = _sample(
        *("--job", str(train_id), "--per-class", "2", "--truncation-psi", "0.5"),
        *("--owner", OWNER, "--json"),
    )
    assert best["checkpoint_file"] == "best.pt" and best["kimg"] == 0.016
    assert "sampling the best checkpoint" in said
    assert "warning: Truncation psi 0.5 is ignored: dcgan has no mapping network" in said
    assert best["truncation_psi"] == 0.5 and best["truncation_applied"] is False

    last, said = _sample(
        *("--job", str(train_id), "--per-class", "2", "--checkpoint", "last"),
        *("--out", str(sqlite_env.home / "last"), "--json"),
    )
    assert last["checkpoint_file"] == "checkpoint.pt" and last["kimg"] == 0.048
    assert "sampling the last checkpoint" in said and "warning" not in said
    assert Path(last["folder"], "manifest.csv").read_text().count(last["checkpoint_sha256"]) == 4

    wrong = invoke_cli("run", "sample", "--job", str(train_id), "--checkpoint", "first")
    assert wrong.returncode == 1 and "--checkpoint: Checkpoint: best" in wrong.stderr

    with TestClient(create_app()) as client:
        web = WebClient(client)
        assert web.login(OWNER, "pia-password-1").status_code == 303
        training = web.get(f"/jobs/{train_id}").text
        assert '<option value="best" selected>best: lowest FID (0.0 at 0.016 kimg)' in training
        assert '<option value="last">last: 0.048 kimg (FID 0.0)' in training
        assert "dcgan has no mapping network: truncation psi is ignored" in training
        page = web.get(f"/jobs/{best['job_id']}").text
        assert "the <strong>best</strong> one" in page and "FID 0.0 at 0.016 kimg" in page
        assert "Truncation psi 0.5 is ignored" in page
        image_set = web.get(f"/imagesets/{best['image_set_id']}").text
        assert "best checkpoint (FID 0.0), psi 0.5 ignored: no mapping network" in image_set
