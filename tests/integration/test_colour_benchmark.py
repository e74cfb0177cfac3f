"""A colour dataset through the whole benchmark: scikit-learn's two photographs, cut into a small
labelled folder (tests/colour_fixtures.py), imported with colour "auto", a tiny GAN trained and
sampled, then the benchmark suite (classifiers real / synthetic / mixed, fidelity, nearest
neighbours) on a real worker. Every stage is checked to keep three channels: the stored rows,
the generator's output, the sampled PNGs, the classifiers' input and the pixel-space
neighbours' vectors."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from colour_fixtures import write_colour_folder
from evaluation_fixtures import gan_samples, wait_for_evaluations
from PIL import Image as PILImage
from sqlalchemy import select
from support import Env, make_user
from web_client import WebClient

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.imagesets.folder_upload import folder_zip
from app.imagesets.service import create_image_set
from app.imagesets.storage import original_path
from app.models import Dataset, Image, Job, JobStatus
from ml.data.colour import has_colour
from ml.data.store import open_dataset
from ml.sampling import load_generator
from workers.runner import execute

pytestmark = pytest.mark.worker


def _import_colour(env: Env, owner_id: int) -> int:
    source = write_colour_folder(env.home / "imports" / "photos", per_class=10, side=40).root
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=owner_id,
            name="Photos",
            source=source,
            options=parse_import_options("folder", resolutions="32"),
        )
        db.commit()
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    return dataset_id


def _colour_upload(env: Env, owner_id: int) -> dict[int, int]:
    """Colour crops imported as an image set: {image id: set id}."""
    folder = write_colour_folder(env.home / "upload", per_class=1, side=40).root
    upload = folder_zip(folder, env.home / "upload.zip")
    assert upload.n_images == 2
    with session_scope() as db:
        image_set = create_image_set(
            db,
            owner_id=owner_id,
            name="Colour photos",
            default_origin=None,
            upload_path_or_file=env.home / "upload.zip",
        )
        set_id = image_set.id
        rows = db.scalars(select(Image.id).where(Image.image_set_id == set_id))
        return {image_id: set_id for image_id in rows}


def test_colour_dataset_runs_through_the_benchmark(  # type: ignore[no-untyped-def]
    sqlite_env: Env, server_factory, worker_factory
) -> None:
    owner = make_user("cleo", "cleo-password-1", "researcher")
    dataset_id = _import_colour(sqlite_env, owner)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None and dataset.content_hash, dataset
        store = open_dataset(dataset.path)
    rows = np.asarray(store.images(32))
    assert store.channels == 3 and rows.shape[1:] == (3, 32, 32)
    assert np.abs(rows[:, 0].astype(int) - rows[:, 2].astype(int)).mean() > 5  # real colour

    train_id, set_id = gan_samples(owner, dataset_id)
    with session_scope() as db:
        train_job = db.get(Job, train_id)
        assert train_job is not None and train_job.artefact_dir
        checkpoint = Path(train_job.artefact_dir) / "checkpoint.pt"
        images = list(db.scalars(select(Image).where(Image.image_set_id == set_id)))
        originals = [original_path(i.key, i.source_format) for i in images]
    generator, state = load_generator(checkpoint)
    assert state["channels"] == 3
    with torch.no_grad():
        drawn = generator(torch.zeros(1, state["z_dim"]), torch.zeros(1, dtype=torch.long))
    assert drawn.shape[1] == 3
    assert len(originals) == 12
    for path in originals:
        with PILImage.open(path) as im:
            assert im.mode == "RGB" and im.size == (32, 32)

    server = server_factory(sqlite_env)
    worker_factory(sqlite_env, "worker-colour")
    web = WebClient(httpx.Client(base_url=server.url, timeout=60))
    assert web.login("cleo", "cleo-password-1").status_code == 303
    assert "3 (RGB colour)" in web.get(f"/datasets/{dataset_id}").text
    # The dataset page's thumbnails are the stored RGB rows.
    thumb = web.get(f"/datasets/{dataset_id}/images/0.png?res=32")
    with PILImage.open(io.BytesIO(thumb.content)) as im:
        assert im.mode == "RGB"
        assert np.array_equal(np.asarray(im), rows[0].transpose(1, 2, 0))

    page = f"/gans/{train_id}/benchmark"
    response = web.post_form(
        f"{page}/run",
        {
            "image_set_id": str(set_id),
            "preset": "tiny-cpu",
            "resolution": "32",
            "epochs": "2",
            "fid_resamples": "0",
        },
        token_from=page,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[-2000:]
    jobs = wait_for_evaluations(5)
    assert all(j.status is JobStatus.succeeded for j in jobs), [(j.id, j.error) for j in jobs]
    classifiers = [j for j in jobs if j.type == "train_classifier"]
    assert {j.params["train_on"] for j in classifiers} == {"real", "synthetic", "mixed"}
    for job in classifiers:
        assert job.artefact_dir
        best = torch.load(Path(job.artefact_dir) / "best.pt", weights_only=False)
        assert best["metadata"]["in_channels"] == 3
        assert job.result["synthetic_tests"][str(set_id)]["n"] == 12
    fidelity = next(j for j in jobs if j.type == "evaluate_fidelity")
    assert fidelity.result and fidelity.result["n_synthetic"] == 12
    assert np.isfinite(fidelity.result["synthetic_vs_train"]["fid"])
    neighbours = next(j for j in jobs if j.type == "nearest_neighbours")
    assert neighbours.artefact_dir
    with np.load(Path(neighbours.artefact_dir) / "neighbours_pixel.npz") as saved:
        assert len(saved["dcr"]) == 12
    gallery = web.get(f"/evaluation/neighbours/{neighbours.id}")
    assert gallery.status_code == 200 and f"/datasets/{dataset_id}/images/" in gallery.text
    # Galleries show a set's copies: in colour where the image has colour (a tiny GAN's
    # samples are still nearly grey, so uploaded colour photographs are checked).
    upload = _colour_upload(sqlite_env, owner)
    for image_id in upload:
        shown = web.get(f"/imagesets/{upload[image_id]}/images/{image_id}")
        with PILImage.open(io.BytesIO(shown.content)) as im:
            assert shown.status_code == 200 and im.mode == "RGB"
            assert has_colour(np.asarray(im))
    text = web.get(page).text
    assert "Floor: real test vs real train" in text
