"""The command line does what the web does (issue 17): `run sample --dicom` writes folders that
`imageset import` reads back (the DICOMs decode to the sampled pixels and stay synthetic),
`run sample` picks classes and registers the set for a user, and `--json` carries what the
pages show: each job's energy and a synthetic-trained classifier's DeLong comparison.

The demo X-rays as a dataset and a tiny GAN are made in-process, and every command under test
runs in this process too (typer's CliRunner), on SQLite."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from cli_in_process import invoke_cli
from evaluation_fixtures import import_cxr, import_folder, train_tiny_gan
from PIL import Image as PILImage
from sqlalchemy import select
from support import Env, make_user

from app.db import session_scope
from app.demo.digits import write_digits_dataset
from app.evaluation.requests import ClassifierRequest
from app.evaluation.service import start_classifier
from app.imagesets.storage import original_path
from app.models import Dataset, Image, ImageSet, Job, JobStatus, Origin
from ml.data.images import load_image
from workers.runner import execute

OWNER = "dora@example.org"
DIGITS = "Digits"
CLASSIFIER = {"preset": "tiny-cpu", "epochs": "3", "batch_size": "32"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return invoke_cli(*args)


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


def _images(set_id: int) -> list[Image]:
    with session_scope() as db:
        images = list(db.scalars(select(Image).where(Image.image_set_id == set_id)))
        for image in images:
            db.expunge(image)
        return images


def _assert_energy(resources: dict[str, Any]) -> None:
    # What the job page's Compute and Energy rows show: an estimate, or why there is none.
    assert resources["wall_s"] > 0 and resources["device"] and resources["attempts"] == 1
    assert "energy_kwh" in resources or resources["energy_note"]


def _import_digits(env: Env, owner_id: int) -> int:
    # The demo X-rays leave 3 test images, too few for a DeLong comparison to have numbers.
    source, _ = write_digits_dataset(env.home / "imports" / "digits")
    return import_folder(owner_id, DIGITS, source, 16)


def _real_classifier(dataset_id: int) -> tuple[int, dict[str, Any]]:
    values = {**CLASSIFIER, "train_on": "real", "test_set_ids": ""}
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        job_id = start_classifier(db, None, dataset, ClassifierRequest.from_form(values)).id
        db.commit()
    execute(job_id)
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.status is JobStatus.succeeded, job.error
        return job_id, dict(job.result)


def test_dicom_samples_import_back_as_the_sampled_synthetic_images(sqlite_env: Env) -> None:
    owner = make_user(OWNER, "dora-password-1", "researcher")
    train_id = train_tiny_gan(owner, import_cxr(sqlite_env, owner))
    sampled = _json(
        _cli(
            *("run", "sample", "--job", str(train_id), "--per-class", "3", "--classes", "1"),
            *("--dicom", "--out", str(sqlite_env.home / "run"), "--json"),
        )
    )
    assert sampled["per_class"] == {"pneumonia": 3} and "image_set_id" not in sampled
    _assert_energy(sampled["resources"])
    folder = Path(sampled["folder"])

    pngs = _json(
        _cli("imageset", "import", str(folder), "--name", "PNG", "--owner", OWNER,
             "--json")
    )  # fmt: skip
    assert pngs["n_images"] == 3 and pngs["left_out"] == ["dicom"]
    dicoms = _json(
        _cli("imageset", "import", str(folder / "dicom"), "--name", "DICOM",
             "--owner", OWNER, "--json")
    )  # fmt: skip
    images = _images(dicoms["image_set_id"])
    assert len(images) == 3
    for image in images:
        assert image.origin is Origin.synthetic and image.label == "pneumonia"
        assert image.source_format == "dicom" and image.source == sampled["source"]
        stored = original_path(image.key, image.source_format)
        png = np.asarray(PILImage.open(folder / image.original_name.replace(".dcm", ".png")))
        decoded = load_image(stored.read_bytes()).pixels
        assert np.array_equal(np.rint(decoded * 255).astype(np.uint8), png), image.original_name
        assert "SYNTHETIC" in list(pydicom.dcmread(stored).ImageType)
    with session_scope() as db:
        assert {s.owner_id for s in db.scalars(select(ImageSet))} == {owner}


# Two classifiers, a GAN and its samples on the CPU: minutes when the machine is busy.
@pytest.mark.timeout(600)
def test_sampling_for_a_user_and_the_delong_comparison_in_json(sqlite_env: Env) -> None:
    owner = make_user(OWNER, "dora-password-1", "researcher")
    dataset_id = _import_digits(sqlite_env, owner)
    train_id = train_tiny_gan(owner, dataset_id, resolution=16)
    with session_scope() as db:
        train_job = db.get(Job, train_id)
        assert train_job is not None
        eight = train_job.result["class_names"].index("eight")
    owned = _json(
        _cli(
            *("run", "sample", "--job", str(train_id), "--per-class", "30"),
            *("--classes", f"three,{eight}", "--owner", OWNER, "--name", "Owned", "--json"),
        )
    )
    assert owned["per_class"] == {"three": 30, "eight": 30}
    with session_scope() as db:
        image_set = db.get(ImageSet, owned["image_set_id"])
        assert image_set is not None and image_set.name == "Owned"
        assert image_set.owner_id == owner and image_set.kind == "sampling"
    images = _images(owned["image_set_id"])
    assert Counter(i.label for i in images) == {"three": 30, "eight": 30}
    assert {i.origin for i in images} == {Origin.synthetic}

    real_id, real = _real_classifier(dataset_id)
    synthetic = _json(
        _cli(
            *("run", "train-classifier", "--dataset", DIGITS, "--train-on", "synthetic:Owned"),
            *("--epochs", CLASSIFIER["epochs"], "--batch-size", CLASSIFIER["batch_size"]),
            "--json",
        )
    )
    _assert_energy(synthetic["resources"])
    assert synthetic["reference_job_id"] == real_id and synthetic["delong_note"] == ""
    assert set(synthetic["delong"]) == set(synthetic["label_names"])
    compared = 0
    for label, cmp in synthetic["delong"].items():
        if "note" in cmp:
            continue  # a label without both classes among the test images has no AUC
        compared += 1
        # AUC(real-trained) - AUC(synthetic-trained), each the model's own test AUC.
        assert cmp["auc_a"] == pytest.approx(real["auc"][label])
        assert cmp["auc_b"] == pytest.approx(synthetic["auc"][label])
        assert cmp["difference"] == pytest.approx(cmp["auc_a"] - cmp["auc_b"])
        assert cmp["ci_low"] <= cmp["difference"] <= cmp["ci_high"]
        assert 0.0 <= cmp["p_value"] <= 1.0
    assert compared >= 1
