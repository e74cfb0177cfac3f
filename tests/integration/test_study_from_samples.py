"""One click from a sampling job to a reader study, in-process with the real app: a tiny GAN
trained and sampled on the demo X-rays, the matched real set checked against the dataset's
own rows, reuse on a second click, shortfalls, other people's jobs, wrong jobs, CSRF."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from evaluation_fixtures import dataset_with_gan_samples
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import func, select
from support import Env, make_user
from web_client import WebClient, csrf_from

from app.db import session_scope
from app.gans.service import parse_sample_options, start_sampling
from app.imagesets.storage import original_path
from app.main import create_app
from app.models import Dataset, Image, ImageSet, Job, JobStatus, Origin, Study, StudyImageSet
from app.studies.design import load_design
from app.studies.from_samples import MATCHED_KIND
from app.web.templating import templates
from ml.data.store import open_dataset
from ml.data.training_images import class_name
from workers.runner import execute

RES = 32  # the resolution evaluation_fixtures trains its tiny GAN at


@dataclass
class Setup:
    web: WebClient
    dataset_id: int
    train_id: int
    sample_id: int
    synthetic_id: int
    owner_id: int


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # Training the GAN is the slow part: one installation for the whole module.
    from support import activate

    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("from_samples")
    env = Env(home, f"sqlite:///{home / 'synthbench.sqlite'}", f"sqla+sqlite:///{home / 'b.db'}")
    activate(env, monkeypatch)
    yield env
    from app.db import get_engine

    get_engine().dispose()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def setup(module_env: Env) -> Iterator[Setup]:
    owner = make_user("rhea", "rhea-password-1", "researcher")
    make_user("otto", "otto-password-1", "researcher")
    dataset_id, train_id, synthetic_id = dataset_with_gan_samples(module_env, owner)
    with session_scope() as db:
        sample_id = db.scalar(select(Job.id).where(Job.type == "sample"))
    assert sample_id is not None
    with TestClient(create_app()) as client:
        web = WebClient(client)
        assert web.login("rhea", "rhea-password-1").status_code == 303
        yield Setup(web, dataset_id, train_id, sample_id, synthetic_id, owner)


def _click(web: WebClient, job_id: int, **data: str):  # type: ignore[no-untyped-def]
    return web.post_form(
        f"/jobs/{job_id}/study", data, token_from=f"/jobs/{job_id}", follow_redirects=False
    )


def _study_id(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 303, response.text[-2000:]
    match = re.fullmatch(r"/studies/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def _labels(image_set_id: int) -> Counter[str | None]:
    with session_scope() as db:
        rows = db.execute(
            select(Image.label, func.count())
            .where(Image.image_set_id == image_set_id)
            .group_by(Image.label)
        ).all()
    return Counter({label: n for label, n in rows})


def _sets_of(study_id: int) -> list[int]:
    with session_scope() as db:
        query = select(StudyImageSet.image_set_id).where(StudyImageSet.study_id == study_id)
        return sorted(db.scalars(query))


def _check_real_images_are_dataset_rows(real_id: int, dataset_id: int) -> Counter[str]:
    """Every real image is a row of the dataset at the GAN's resolution, with that row's
    class as label; returns the images per split."""
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        store = open_dataset(dataset.path)
        images = list(db.scalars(select(Image).where(Image.image_set_id == real_id)))
        for image in images:
            db.expunge(image)
    pixels = store.images(RES)
    splits: Counter[str] = Counter()
    for image in images:
        assert image.origin is Origin.real and image.source is None
        assert (image.width, image.height, image.source_format) == (RES, RES, "png")
        split, row = re.fullmatch(r"(\w+)-(\d+)\.png", image.original_name).groups()
        entry = store.entries[int(row)]
        assert entry.split == split
        assert image.label == class_name(store.info.label_names, store.label_tuple(entry))
        stored = np.asarray(PILImage.open(original_path(image.key, "png")))
        assert np.array_equal(stored, pixels[int(row)])
        splits[split] += 1
    return splits


def test_one_click_makes_a_stratified_study_with_matched_real_images(setup: Setup) -> None:
    page = setup.web.get(f"/jobs/{setup.sample_id}")
    assert page.status_code == 200
    study_id = _study_id(_click(setup.web, setup.sample_id))
    shown = setup.web.get(f"/studies/{study_id}").text
    assert "Reader study created with 12 synthetic and 12 real images" in shown

    with session_scope() as db:
        study = db.get(Study, study_id)
        assert study is not None and study.owner_id == setup.owner_id
        assert study.name == "Reader study: Tiny GAN samples"
        design = load_design(study.design).selection
    assert design.stratify_by_label and design.stratify_by_source
    assert (design.n_synthetic, design.n_real, design.practice_images) == (12, 12, 0)
    sets = _sets_of(study_id)
    assert setup.synthetic_id in sets and len(sets) == 2
    real_id = next(s for s in sets if s != setup.synthetic_id)

    synthetic = _labels(setup.synthetic_id)
    assert synthetic == Counter({"normal": 6, "pneumonia": 6})
    assert _labels(real_id) == synthetic
    splits = _check_real_images_are_dataset_rows(real_id, setup.dataset_id)
    # Held-out splits are used up before the GAN's own training split is touched.
    with session_scope() as db:
        dataset = db.get(Dataset, setup.dataset_id)
        assert dataset is not None
        available = dataset.info["splits"]
    held_out = available.get("test", 0) + available.get("val", 0)
    assert splits["test"] + splits["val"] == min(held_out, 12)
    assert splits["test"] == min(available.get("test", 0), 12)

    with session_scope() as db:
        real = db.get(ImageSet, real_id)
        assert real is not None and real.owner_id == setup.owner_id
        assert real.kind == MATCHED_KIND and "[match " in real.description


def test_a_second_click_makes_a_second_study_on_the_same_real_set(setup: Setup) -> None:
    first = _study_id(_click(setup.web, setup.sample_id))
    second = _study_id(_click(setup.web, setup.sample_id, name="Round two", n_images="8"))
    assert first != second and _sets_of(first) == _sets_of(second)
    assert "reused the matched real set" in setup.web.get(f"/studies/{second}").text
    with session_scope() as db:
        matched = db.scalar(
            select(func.count())
            .select_from(ImageSet)
            .where(
                ImageSet.kind == MATCHED_KIND,
                ImageSet.description.contains(f"synthetic set {setup.synthetic_id} "),
            )
        )
        study = db.get(Study, second)
        assert study is not None
        design = load_design(study.design).selection
    assert matched == 1
    assert study.name == "Round two" and (design.n_synthetic, design.n_real) == (4, 4)


def test_more_samples_than_real_images_takes_what_exists_and_says_so(setup: Setup) -> None:
    with session_scope() as db:
        train = db.get(Job, setup.train_id)
        assert train is not None
        job = start_sampling(
            db,
            owner_id=setup.owner_id,
            train_job=train,
            options=parse_sample_options("Many samples", 10),
            queue="cpu",
        )
        db.commit()
        big_id = job.id
    execute(big_id)
    with session_scope() as db:
        big = db.get(Job, big_id)
        assert big is not None and big.status is JobStatus.succeeded, big.error
        big_set = big.result["image_set_id"]
    study_id = _study_id(_click(setup.web, big_id))
    shown = setup.web.get(f"/studies/{study_id}").text
    assert "only 8 real image(s) for 10 synthetic" in shown
    assert "with 20 synthetic and 16 real images" in shown
    real_id = next(s for s in _sets_of(study_id) if s != big_set)
    assert _labels(real_id) == Counter({"normal": 8, "pneumonia": 8})
    assert sum(_check_real_images_are_dataset_rows(real_id, setup.dataset_id).values()) == 16


def _error_after(web: WebClient, job_id: int, response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{job_id}"
    return web.get(f"/jobs/{job_id}").text


def test_wrong_jobs_get_a_clear_error(setup: Setup) -> None:
    studies_before = _count_studies()
    training = _error_after(setup.web, setup.train_id, _click(setup.web, setup.train_id))
    assert "flash-error" in training
    assert "is a train_gan job; a reader study starts from a sampling job" in training

    with session_scope() as db:
        failed = Job(
            type="sample",
            status=JobStatus.failed,
            owner_id=setup.owner_id,
            params={"train_job_id": setup.train_id, "name": "Broken"},
            error="out of memory",
        )
        db.add(failed)
        db.flush()
        failed_id = failed.id
    shown = _error_after(setup.web, failed_id, _click(setup.web, failed_id))
    assert "Sampling job" in shown and "has status failed; only a finished, successful" in shown

    bad_count = _error_after(
        setup.web, setup.sample_id, _click(setup.web, setup.sample_id, n_images="1")
    )
    assert "a whole number from 2" in bad_count
    assert _count_studies() == studies_before


def test_other_researchers_get_404_and_csrf_is_required(setup: Setup) -> None:
    studies_before = _count_studies()
    no_token = setup.web.client.post(f"/jobs/{setup.sample_id}/study", data={})
    assert no_token.status_code == 403
    with TestClient(create_app()) as client:
        other = WebClient(client)
        assert other.login("otto", "otto-password-1").status_code == 303
        response = other.post_form(
            f"/jobs/{setup.sample_id}/study", {}, token_from="/jobs", follow_redirects=False
        )
        assert response.status_code == 404
        missing = other.post_form("/jobs/999999/study", {}, token_from="/jobs")
        assert missing.status_code == 404
    assert _count_studies() == studies_before


def _count_studies() -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(Study)) or 0)


def test_the_partial_shows_the_button_for_a_finished_sampling_job_only(setup: Setup) -> None:
    partial = templates.get_template("jobs/sample_study.html")
    with session_scope() as db:
        sample = db.get(Job, setup.sample_id)
        train = db.get(Job, setup.train_id)
        html = partial.render(job=sample, csrf_token="tok")
        assert "Create a reader study" not in partial.render(job=train, csrf_token="tok")
    assert f'action="/jobs/{setup.sample_id}/study"' in html
    assert "Create a reader study from these samples" in html
    assert csrf_from(html) == "tok"
    assert 'value="Reader study: Tiny GAN samples"' in html
