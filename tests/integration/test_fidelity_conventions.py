"""A fidelity job end to end on the demo X-rays in the clean-fid convention: the CLI JSON and
the job page name the convention beside the FID, give its bootstrap interval, and flag it as
computed from fewer images than Inception's 2048 feature dimensions (issue 17)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_in_process import invoke_cli
from evaluation_fixtures import import_cxr
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from support import Env, make_user
from web_client import WebClient

from app.db import session_scope
from app.main import create_app
from app.models import Dataset, Job
from ml.data.store import open_dataset

pytestmark = pytest.mark.worker


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{") :])


def _synthetic_folder(dataset_path: str, folder: Path) -> None:
    """The real training X-rays, blurred and shifted in brightness: a 'synthetic' set."""
    store = open_dataset(dataset_path)
    images = store.images(32)
    for n, row in enumerate(store.indices("train").tolist()):
        label = next(k for k, v in store.entries[row].labels.items() if v == 1)
        (folder / label).mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(images[row], dtype=np.float64)
        blurred = (pixels + np.roll(pixels, 1, axis=0) + np.roll(pixels, 1, axis=1)) / 3 + 20
        PILImage.fromarray(blurred.clip(0, 255).astype(np.uint8)).save(folder / label / f"{n}.png")


@pytest.mark.timeout(600)  # Inception and PIL resizes of about 30 X-rays on the CPU
def test_clean_fid_convention_interval_and_small_n_flag_in_json_and_page(
    sqlite_env: Env,
) -> None:
    owner = make_user("fay", "fay-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        path = dataset.path
    _synthetic_folder(path, sqlite_env.home / "blurred")
    imported = _json(
        invoke_cli(
            "imageset", "import", str(sqlite_env.home / "blurred"),
            "--name", "Blurred", "--owner", "fay", "--json",
        )
    )  # fmt: skip
    assert imported["name"] == "Blurred"

    bad = invoke_cli("run", "fidelity", "--real", "CXR", "--synthetic", "Blurred",
                     "--fid-resize", "bicubic")  # fmt: skip
    assert bad.returncode == 1 and "--fid-resize" in bad.stderr and "clean" in bad.stderr

    result = _json(
        invoke_cli(
            "run", "fidelity", "--real", "CXR", "--synthetic", "Blurred",
            "--fid-resize", "clean", "--fid-resamples", "40", "--json",
        )
    )  # fmt: skip
    assert result["extractor"] == "inception_v3_fid_clean" and result["fid_resize"] == "clean"
    assert "clean-fid convention" in result["fid_convention"]
    assert "PIL bicubic" in result["fid_convention"]
    assert result["fid_resamples"] == 40
    for key in ("synthetic_vs_train", "synthetic_matched_vs_train", "floor_test_vs_train"):
        scores = result[key]
        assert scores["dim"] == 2048 and scores["fid_small_n"] is True, key
        low, high = scores["fid_interval"]
        assert 0 <= low <= high and np.isfinite(high), key

    with session_scope() as db:  # jobs run from the CLI have no owner; give fay this one
        job = db.get(Job, result["job_id"])
        assert job is not None
        job.owner_id = owner
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        web.login("fay", "fay-password-1")
        page = web.get(f"/jobs/{result['job_id']}").text
    assert "FID convention: clean-fid convention" in page
    n = min(result["synthetic_vs_train"]["n_a"], result["synthetic_vs_train"]["n_b"])
    assert f"n {n} &lt; d 2048: read KID" in page
    assert "interval of the biased estimator" in page
    interval = result["synthetic_vs_train"]["fid_interval"]
    assert re.search(rf"\[{interval[0]:.4g}, {interval[1]:.4g}\]", page)
