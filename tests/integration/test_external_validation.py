"""External validation on real data (issue 17, seed 004): scikit-learn's handwritten 3s and 8s
split into two "hospitals", the second scanned with less contrast and more noise (a
distribution shift), with the same label names. A classifier trained on
hospital A through the command line is tested on all of hospital B beside A's own test split:
both AUCs finite with DeLong intervals, the external one lower. A dataset with other labels
(3 against 5) is refused with a message that says which labels differ, and the job page and
the utility table show the external rows. In-process on SQLite, the CLI too (typer's CliRunner)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_in_process import invoke_cli
from evaluation_fixtures import import_folder
from PIL import Image as PILImage
from support import Env, make_user

from app.db import session_scope
from app.evaluation.requests import ClassifierRequest
from app.evaluation.service import start_classifier
from app.evaluation.utility import utility_matrix
from app.jobs.specs import SpecError
from app.models import Dataset, Job, JobStatus
from app.web.templating import templates

OWNER = "erin@example.org"
NOISE_SEED = 0


def _write_site(dest: Path, classes: dict[int, str], parity: int, shifted: bool) -> Path:
    """Class folders of 8x8 digits (every other image, by `parity`, so the sites share no
    image) and patients.csv with each image its own patient; `shifted` scales the contrast
    to 40% around mid-grey and adds Gaussian noise (sd 45 of 255), a second scanner."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(NOISE_SEED)
    rows = []
    for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = classes.get(int(target))
        if label is None or index % 2 != parity:
            continue
        pixels = np.asarray(image, dtype=float) * (255.0 / 16.0)
        if shifted:
            pixels = 128 + 0.4 * (pixels - 128) + rng.normal(0, 45, pixels.shape)
        name = f"digit-{index:04d}.png"
        (dest / label).mkdir(parents=True, exist_ok=True)
        out = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        PILImage.fromarray(out, mode="L").save(dest / label / name)
        rows.append((f"{label}/{name}", Path(name).stem))
    with (dest / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id"])
        writer.writerows(rows)
    return dest


def _import(owner_id: int, name: str, source: Path) -> int:
    dataset_id = import_folder(owner_id, name, source, 16)
    with session_scope() as db:
        found = db.get(Dataset, dataset_id)
        assert found is not None and found.content_hash, found and found.errors
        return dataset_id


def _cli_json(*args: str) -> dict[str, Any]:
    done: subprocess.CompletedProcess[str] = invoke_cli(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.fixture
def sites(sqlite_env: Env) -> dict[str, int]:
    owner = make_user(OWNER, "erin-password-1", "researcher")
    root = sqlite_env.home / "imports"
    a = _write_site(root / "site-a", {3: "three", 8: "eight"}, parity=0, shifted=False)
    # Folder names give the label names in name order, the same at both sites: the unit tests
    # check that another order maps by name.
    b = _write_site(root / "site-b", {3: "three", 8: "eight"}, parity=1, shifted=True)
    c = _write_site(root / "site-c", {3: "three", 5: "five"}, parity=1, shifted=False)
    return {
        "owner": owner,
        "a": _import(owner, "Hospital A digits", a),
        "b": _import(owner, "Hospital B digits (noisy scanner)", b),
        "c": _import(owner, "Hospital C digits (3 vs 5)", c),
    }


def test_classifier_validated_on_a_second_site(sqlite_env: Env, sites: dict[str, int]) -> None:
    with session_scope() as db:
        a = db.get(Dataset, sites["a"])
        assert a is not None
        values = {"preset": "tiny-cpu", "epochs": "8", "batch_size": "32"}
        # Other labels (3 vs 5): refused before anything is queued, saying what differs.
        with pytest.raises(SpecError) as caught:
            start_classifier(
                db,
                None,
                a,
                ClassifierRequest.from_form({**values, "external_dataset_id": str(sites["c"])}),
            )
        assert caught.value.field == "external_dataset_id"
        assert "Hospital C digits (3 vs 5) cannot validate this classifier" in caught.value.message
        assert "it lacks 'eight'; it has 'five' besides" in caught.value.message
        with pytest.raises(SpecError, match="is the training dataset"):
            start_classifier(
                db,
                None,
                a,
                ClassifierRequest.from_form({**values, "external_dataset_id": str(sites["a"])}),
            )
        with pytest.raises(SpecError, match="There is no dataset 999 that you can see"):
            start_classifier(
                db, None, a, ClassifierRequest.from_form({**values, "external_dataset_id": "999"})
            )
        db.rollback()

    result = _cli_json(
        "run",
        "train-classifier",
        "--dataset",
        "Hospital A digits",
        "--epochs",
        "8",
        "--batch-size",
        "32",
        "--external-dataset",
        "Hospital B digits (noisy scanner)",
        "--json",
    )
    external = result["external_tests"][str(sites["b"])]
    assert external["dataset_name"] == "Hospital B digits (noisy scanner)"
    with session_scope() as db:
        b = db.get(Dataset, sites["b"])
        assert b is not None
        assert external["n"] == b.n_images  # every image of the external site, not a split
    internal, shifted = result["macro_auc"], external["macro_auc"]
    assert internal is not None and shifted is not None
    # Shown with `pytest -s`: the figures the README quotes.
    print(f"\nexternal validation: internal macro AUC {internal:.3f}, external {shifted:.3f}")
    assert 0.5 < shifted < internal <= 1.0, (internal, shifted)
    for label in ("three", "eight"):
        low, high = external["auc_ci"][label]
        assert 0.0 <= low < external["auc"][label] < high <= 1.0
        assert result["auc_ci"][label] is None or result["auc_ci"][label][0] <= result["auc"][label]

    with session_scope() as db:
        job = db.get(Job, result["job_id"])
        assert job is not None and job.status is JobStatus.succeeded
        page = templates.env.get_template("evaluation/job_result.html").render(job=job)
        rows = utility_matrix([job])
        macros = templates.env.get_template("evaluation/macros.html").module
        table = str(macros.utility_table(rows, job.result["label_names"], {}))  # type: ignore[attr-defined]
    assert "external: Hospital B digits (noisy scanner)" in page
    assert f"{shifted:.3f}" in page and "not a paired DeLong test" in page
    low, high = external["auc_ci"]["eight"]
    assert f"[{low:.3f}, {high:.3f}]" in page
    assert "↳ external: Hospital B digits (noisy scanner)" in table and f"{shifted:.3f}" in table
